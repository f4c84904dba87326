"""Failed attempts whose retry was never queued are queued again, once."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from advhpo.search import OUTSIDE_REASON, create_or_check_study, fail_reason, requeue_dropped
from advhpo.storage import RetryLostTrial, open_storage, original_trial_number, requeue_interrupted
from tests.search._factories import fail_as_lost, mnist_settings

# Trials made by study.ask() are not heartbeated by Optuna, which says so each time.
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")


def _failed(
    study: optuna.Study, *, lost: bool = False, **user_attrs: object
) -> optuna.trial.FrozenTrial:
    trial = study.ask()
    for key, value in user_attrs.items():
        study._storage.set_trial_user_attr(trial._trial_id, key, value)
    if lost:
        fail_as_lost(study._storage, trial._trial_id)
    else:
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    return study._storage.get_trial(trial._trial_id)


def _lost_retry(storage: optuna.storages.RDBStorage) -> RetryLostTrial:
    callback = storage.get_heartbeat_stale_trial_callback()
    assert isinstance(callback, RetryLostTrial)
    return callback


def test_attempts_left_without_their_retry_are_queued_again_once(
    storage_url: str, study_name: str
) -> None:
    storage = open_storage(storage_url, max_retry=1)
    study = create_or_check_study(study_name, storage, mnist_settings())
    # Killed between telling the stop and queueing it; failed as lost, but the acknowledgement
    # of that write was lost and Optuna skipped the retry.
    dropped = _failed(study, interrupted=True, fail_reason="Interrupted: stopped")
    lost = _failed(study, lost=True)
    # Left alone: a diverged trial, one failed by hand in optuna-dashboard while it ran, and
    # an interrupted one whose retry exists.
    _failed(study, fail_reason="DivergenceError: loss nan")
    _failed(study)
    requeued = _failed(study, interrupted=True, fail_reason="Interrupted: stopped")
    assert requeue_interrupted(study, requeued, max_requeues=5)

    assert requeue_dropped(study, _lost_retry(storage), max_requeues=5) == [
        dropped.number,
        lost.number,
    ]
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    assert sorted(original_trial_number(t) for t in waiting) == sorted(
        [dropped.number, lost.number, requeued.number]
    )
    assert requeue_dropped(study, _lost_retry(storage), max_requeues=5) == []

    # A retry of the lost retry would be its second lost attempt: beyond max_retry=1.
    (lost_again,) = [t for t in waiting if original_trial_number(t) == lost.number]
    storage.set_trial_state_values(lost_again._trial_id, TrialState.RUNNING)
    fail_as_lost(storage, lost_again._trial_id)
    assert requeue_dropped(study, _lost_retry(storage), max_requeues=5) == []

    # A queued retry failed by hand (optuna-dashboard's API takes any unfinished trial) does
    # not read as its interrupted predecessor, and stays failed.
    (queued,) = [t for t in waiting if original_trial_number(t) == dropped.number]
    storage.set_trial_state_values(queued._trial_id, TrialState.FAIL)
    assert fail_reason(storage.get_trial(queued._trial_id)) == OUTSIDE_REASON
    assert requeue_dropped(study, _lost_retry(storage), max_requeues=5) == []


def test_one_attempt_queued_again_by_two_workers_gets_one_retry(
    storage_url: str, study_name: str
) -> None:
    storage = open_storage(storage_url)
    study = create_or_check_study(study_name, storage, mnist_settings())
    attempt = _failed(study, interrupted=True, fail_reason="Interrupted: stopped")
    other = optuna.load_study(study_name=study_name, storage=open_storage(storage_url))
    assert requeue_interrupted(study, attempt, max_requeues=5)
    retry = study.ask()  # run, and finished, before the second worker's request
    study.tell(retry, [0.9, 0.1])
    other.get_trials()  # its trial cache now holds the finished retry
    assert requeue_interrupted(other, attempt, max_requeues=5)

    for seen_by in (study, other):
        assert [t.state for t in seen_by.get_trials()] == [TrialState.FAIL, TrialState.COMPLETE]
