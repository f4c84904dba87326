"""Pareto-front helpers: the clean-vs-FGSM front and its hypervolume against (0, 0)."""

from __future__ import annotations

import random

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from advhpo.search import accuracy_front, front, front_points, hypervolume


def _grid_trials(seed: int, n: int) -> list[FrozenTrial]:
    # Values on a coarse grid: many ties and exact duplicates, where fronts are easy to get wrong.
    rng = random.Random(seed)
    return [
        optuna.trial.create_trial(values=[rng.randint(0, 6) / 6, rng.randint(0, 6) / 6])
        for _ in range(n)
    ]


@pytest.mark.parametrize("seed", range(5))
def test_the_accuracy_front_is_optunas_best_trials(seed: int) -> None:
    study = optuna.create_study(directions=["maximize", "maximize"])
    study.add_trials(_grid_trials(seed, 60))
    trials = study.get_trials()
    assert [t.number for t in accuracy_front(trials)] == sorted(t.number for t in study.best_trials)
    assert front(study) == accuracy_front(trials)


def test_the_accuracy_front_ignores_a_third_objective() -> None:
    trials = [
        optuna.trial.create_trial(values=[0.9, 0.5, 100.0]),
        optuna.trial.create_trial(values=[0.9, 0.4, 1.0]),  # cheaper, but worse on accuracy
    ]
    for i, t in enumerate(trials):
        t.number = i
    assert [t.number for t in accuracy_front(trials)] == [0]


def test_a_cost_studys_front_is_the_accuracy_front() -> None:
    # Optuna's best_trials is the 3-D front here and would keep trial 1 for its low cost.
    study = optuna.create_study(directions=["maximize", "maximize", "minimize"])
    for values in ([0.9, 0.5, 100.0], [0.8, 0.4, 10.0], [0.9, 0.5, 100.0]):
        study.add_trial(optuna.trial.create_trial(values=values))
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL))
    study.add_trial(optuna.trial.create_trial(values=[0.95, 0.6, 1.0], state=TrialState.PRUNED))
    assert [t.number for t in study.best_trials] == [0, 1, 2]
    assert [t.number for t in front(study)] == [0, 2]
    assert front_points(study) == [(0.9, 0.5), (0.9, 0.5)]


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        ([], 0.0),
        ([(0.5, 0.5)], 0.25),
        ([(1.0, 0.2), (0.2, 1.0)], 0.2 + 0.2 * 0.8),
        ([(1.0, 0.2), (0.2, 1.0), (0.1, 0.1)], 0.36),  # a dominated point adds nothing
        ([(0.5, 0.5), (0.5, 0.5)], 0.25),  # duplicates count once
        ([(0.9, 0.0), (0.0, 0.9)], 0.0),  # on the reference axes: no area
    ],
)
def test_hypervolume(points: list[tuple[float, float]], expected: float) -> None:
    assert hypervolume(points) == pytest.approx(expected)
