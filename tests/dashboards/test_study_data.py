"""Reading a study for pictures: its front, completion order, what is left out."""

from __future__ import annotations

import datetime
from collections.abc import Callable

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from advhpo._errors import ConfigError
from advhpo.dashboards import NoCompletedTrialError, load_study_data


def test_study_data_keeps_completed_trials_in_completion_order(
    storage_url: str,
    study_name: str,
    new_study: Callable[..., optuna.Study],
    trial_factory: Callable[..., FrozenTrial],
) -> None:
    study = new_study(storage_url, study_name)
    base = datetime.datetime(2024, 5, 1)
    finish_minutes = [30, 10, 20]  # trial 1 finished first
    for minutes, clean in zip(finish_minutes, (0.9, 0.8, 0.7), strict=True):
        t = trial_factory(clean, 1.0 - clean)
        t.datetime_start = base
        t.datetime_complete = base + datetime.timedelta(minutes=minutes)
        study.add_trial(t)
    study.add_trial(trial_factory(0.99, 0.99, state=TrialState.PRUNED, attrs={"skipped": "x"}))
    study.add_trial(
        trial_factory(0.5, 0.5, state=TrialState.PRUNED, attrs={"early_stopped_at_epoch": 1})
    )
    study.add_trial(trial_factory(0.5, 0.5, state=TrialState.FAIL))
    study.add_trial(trial_factory(0.2, 0.2, attrs={"baseline": "thesis-mnist"}))

    data = load_study_data(optuna.load_study(study_name=study_name, storage=storage_url))

    assert [t.number for t in data.trials] == [1, 2, 0, 6]
    assert [t.number for t in data.front] == [0, 1, 2]
    assert [t.number for t in data.baselines] == [6]
    assert data.states == {"COMPLETE": 4, "EARLY_STOPPED": 1, "FAIL": 1}  # skipped not counted
    assert data.objectives == ("clean_acc", "fgsm_acc")


def test_a_study_without_completed_trials_says_so(
    sqlite_url: str,
    new_study: Callable[..., optuna.Study],
    trial_factory: Callable[..., FrozenTrial],
) -> None:
    study = new_study(sqlite_url, "empty")
    study.add_trial(trial_factory(0.5, 0.5, state=TrialState.FAIL))
    with pytest.raises(NoCompletedTrialError, match=r"'empty' has no completed trial yet.*1 fail"):
        load_study_data(study)


def test_a_study_not_made_by_advhpo_is_a_config_error() -> None:
    study = optuna.create_study(directions=["maximize", "maximize"])
    with pytest.raises(ConfigError, match="not created by advhpo"):
        load_study_data(study)
