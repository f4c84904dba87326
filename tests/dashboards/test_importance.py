"""Importances per objective: PED-ANOVA finds the parameter that decides each objective."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial

from advhpo.dashboards import FRONT_TARGET, param_importances

MAX2 = [StudyDirection.MAXIMIZE, StudyDirection.MAXIMIZE]
OBJECTIVES = ("clean_acc", "fgsm_acc")


def _decided_trials(
    n: int, trial_factory: Callable[..., FrozenTrial], seed: int = 0
) -> list[FrozenTrial]:
    """Each objective decided by its own parameter, and only at its good end.

    The best clean accuracies need a high lr, the worst come from a low dropout: an importance
    computed in the wrong direction would name dropout. FGSM accuracy follows adv_eps, which is
    conditional on adv_method.
    """
    rng = random.Random(seed)
    trials = []
    for _ in range(n):
        method = rng.choice(["none", "fgsm"])
        params: dict[str, Any] = {
            "layers": rng.randint(1, 3),
            "dropout": rng.uniform(0, 0.5),
            "lr": 10 ** rng.uniform(-3, -1),
            "weight_decay": 10 ** rng.uniform(-6, -3),
            "adv_method": method,
            "ensemble": rng.choice([1, 3, 5, 7]),
        }
        if method != "none":
            params["adv_eps"] = rng.uniform(0.01, 0.3)
        clean = 0.5 + 0.3 * (params["lr"] > 0.05) - 0.3 * (params["dropout"] < 0.05)
        clean += rng.uniform(0, 0.01)
        fgsm = 2.0 * params.get("adv_eps", 0.0)
        trials.append(trial_factory(clean, fgsm, params=params))
    return trials


def test_each_objective_is_explained_by_its_own_parameter(
    trial_factory: Callable[..., FrozenTrial],
) -> None:
    imp = param_importances(_decided_trials(200, trial_factory), OBJECTIVES, MAX2)
    assert imp.note is None and imp.n_trials == 200
    assert max(imp.by_target["clean_acc"], key=imp.by_target["clean_acc"].__getitem__) == "lr"
    # adv_eps is conditional (absent when adv_method is "none"): it is still assessed.
    fgsm_top = max(imp.by_target["fgsm_acc"], key=imp.by_target["fgsm_acc"].__getitem__)
    assert fgsm_top in ("adv_eps", "adv_method")
    assert "adv_eps" in imp.by_target["fgsm_acc"]
    assert set(imp.by_target) == {"clean_acc", "fgsm_acc", FRONT_TARGET}
    for shares in imp.by_target.values():
        assert sum(shares.values()) == pytest.approx(1.0)


def test_baselines_are_left_out(trial_factory: Callable[..., FrozenTrial]) -> None:
    trials = _decided_trials(30, trial_factory)
    baseline = trial_factory(0.99, 0.9, attrs={"baseline": "thesis-mnist"})
    imp = param_importances([*trials, baseline], OBJECTIVES, MAX2)
    assert imp.n_trials == 30


def test_too_few_trials_give_a_note_not_numbers(
    trial_factory: Callable[..., FrozenTrial],
) -> None:
    imp = param_importances(_decided_trials(3, trial_factory), OBJECTIVES, MAX2)
    assert imp.by_target == {} and imp.note is not None and "have 3" in imp.note


def test_a_minimised_cost_objective_gets_its_own_importances(
    trial_factory: Callable[..., FrozenTrial],
) -> None:
    rng = random.Random(1)
    trials = []
    for t in _decided_trials(200, trial_factory):
        # The cheapest trials have a low weight decay; the dearest, three layers.
        seconds = 100.0 - 50 * (t.params["weight_decay"] < 3e-6) + 50 * (t.params["layers"] == 3)
        seconds += rng.uniform(0, 1)
        trials.append(trial_factory(*t.values, params=t.params, extra_values=(seconds,)))
    imp = param_importances(
        trials, (*OBJECTIVES, "train_seconds"), [*MAX2, StudyDirection.MINIMIZE]
    )
    shares = imp.by_target["train_seconds"]
    assert max(shares, key=shares.__getitem__) == "weight_decay"


def test_trials_that_all_tie_have_no_importances(
    trial_factory: Callable[..., FrozenTrial],
) -> None:
    # Every trial is on the front: which of them "reach" it is only Optuna's tie-break.
    tied = [trial_factory(0.5, 0.5, params=t.params) for t in _decided_trials(12, trial_factory)]
    imp = param_importances(tied, OBJECTIVES, MAX2)
    assert imp.note is None and imp.n_trials == 12
    assert imp.by_target == {"clean_acc": {}, "fgsm_acc": {}, FRONT_TARGET: {}}
