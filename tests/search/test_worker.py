"""The worker's objective: what one attempt of a trial records about itself."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import optuna
import pytest
import torch
from optuna.trial import TrialState

import advhpo.objectives
from advhpo.objectives import DatasetSplits
from advhpo.search import (
    LOST_REASON,
    WorkerSpec,
    create_or_check_study,
    fail_reason,
    suggest_config,
)
from advhpo.search._worker import _Objective
from advhpo.storage import CheckpointStore, open_storage, retry_callback
from tests.search._factories import mnist_settings


# The test asks for trials by hand, without Study.optimize's heartbeat thread.
@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
def test_a_retry_that_dies_silently_is_told_as_lost_not_as_its_predecessor(
    tmp_path: Path, tiny_splits: DatasetSplits, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    storage = open_storage(url)
    settings = mnist_settings(budget=2)
    study = create_or_check_study("s", storage, settings)
    # Attempt 1 was stopped by Ctrl-C, said so, and was queued again; the retry inherits its
    # user attributes.
    first = study.ask()
    suggest_config(first, settings)
    storage.set_trial_user_attr(first._trial_id, "fail_reason", "Interrupted: stopped")
    storage.set_trial_state_values(first._trial_id, TrialState.FAIL)
    retry_callback(3)(study, storage.get_trial(first._trial_id))

    def die(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt  # stands in for SIGKILL: no handler of the worker runs

    monkeypatch.setattr(advhpo.objectives, "run_trial", die)
    spec = WorkerSpec("s", url, str(tmp_path / "art"), None, True, "cpu", None, 1, 0, None)
    stop = SimpleNamespace(requested=False)
    store = CheckpointStore(tmp_path)
    objective = _Objective(spec, settings, tiny_splits, torch.device("cpu"), store, stop)  # type: ignore[arg-type]
    retry = study.ask()
    assert retry.number == first.number + 1  # the queued retry, not a new trial
    with pytest.raises(KeyboardInterrupt):
        objective(retry)

    storage.set_trial_state_values(retry._trial_id, TrialState.FAIL)  # the heartbeat check
    lost = storage.get_trial(retry._trial_id)
    assert fail_reason(lost) == LOST_REASON
    assert fail_reason(storage.get_trial(first._trial_id)) == "Interrupted: stopped"
    assert fail_reason(optuna.trial.create_trial(values=[0.9, 0.1])) is None
