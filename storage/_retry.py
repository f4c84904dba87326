"""Retrying trials whose worker died: the heartbeat callback and a retry's original number."""

from __future__ import annotations

import warnings

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, Trial, TrialState

from advhpo._errors import ConfigError
from advhpo.storage._resilient import LOST_ATTR

LOST_RETRIES_ATTR = "advhpo:lost_retries"  # system attribute: lost attempts before this one
FAIL_REASON_ATTR = "fail_reason"  # user attribute: ``Type: message`` of what ended the attempt
INTERRUPTED_ATTR = "interrupted"  # user attribute: the attempt was stopped on request


class RetryLostTrial(RetryHeartbeatStaleTrialCallback):
    """Optuna's retry of a heartbeat-stale trial, with a budget for lost attempts only.

    A trial stopped on request (Ctrl-C, SIGTERM) is re-queued too, through
    :func:`requeue_interrupted`. Optuna's callback counts every entry of the retry history
    against ``max_retry``, so three interruptions would use up the retries of a worker that is
    then killed, and the trial would be dropped. Lost attempts are counted apart, in
    ``LOST_RETRIES_ATTR``; the retry history Optuna reads (``retry_history``,
    ``retried_trial_number``) is written as Optuna writes it.

    Args:
        max_retry: How often one trial (counting from its original) is re-queued after it was
            lost, before it is left failed. ``0`` never re-queues.
    """

    def __init__(self, max_retry: int) -> None:
        super().__init__(max_retry=max_retry)
        self.max_retry = max_retry

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if self.will_retry(trial):
            _queue_retry(study, trial, _lost_before(trial) + 1)

    def will_retry(self, trial: FrozenTrial) -> bool:
        """Whether this lost attempt is within ``max_retry`` and so gets a retry."""
        return _lost_before(trial) < self.max_retry


def _lost_before(trial: FrozenTrial) -> int:
    """Lost attempts of the trial before this one.

    A retry Optuna's own callback queued (advhpo before lost attempts were counted apart)
    carries no count: all of its history counted as lost then, and still does.
    """
    history = trial.system_attrs.get("retry_history", [])
    return int(trial.system_attrs.get(LOST_RETRIES_ATTR, len(history)))


def retry_callback(max_retry: int) -> RetryLostTrial:
    """The callback that re-queues a heartbeat-stale trial as a new WAITING trial.

    Args:
        max_retry: How often one trial (counting from its original) is re-queued after it was
            lost, before it is left failed. ``0`` never re-queues. Interruptions do not count.

    Raises:
        ConfigError: ``max_retry`` is negative.
    """
    if max_retry < 0:
        raise ConfigError(f"max_retry must be >= 0, got {max_retry}")
    with warnings.catch_warnings():
        # Experimental since Optuna 2.8 and still so in 5.0; we rely on it knowingly, and a
        # warning in every worker's log at every start would only hide real ones.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RetryLostTrial(max_retry)


def requeue_interrupted(study: optuna.Study, trial: FrozenTrial, max_requeues: int) -> bool:
    """Queue a trial that stopped on request again, so a later run continues its checkpoint.

    Args:
        study: The trial's study.
        trial: The failed, interrupted attempt.
        max_requeues: Interruptions of one trial after which it is left failed.

    Returns:
        Whether a retry was queued.
    """
    if not may_requeue_interrupted(trial, max_requeues):
        return False
    _queue_retry(study, trial, _lost_before(trial))
    return True


def may_requeue_interrupted(trial: FrozenTrial, max_requeues: int) -> bool:
    """Whether an interrupted attempt is within ``max_requeues`` and so gets a retry.

    Args:
        trial: The failed, interrupted attempt.
        max_requeues: Interruptions of one trial after which it is left failed.
    """
    # Optuna's retry_history(trial), read directly: that accessor is experimental and warns.
    history = trial.system_attrs.get("retry_history", [])
    return len(history) - _lost_before(trial) < max_requeues


def _queue_retry(study: optuna.Study, trial: FrozenTrial, lost: int) -> None:
    """A WAITING copy of ``trial``, with Optuna's retry attributes and ``lost`` lost attempts."""
    # The retry is a new attempt: nobody has judged it lost yet.
    inherited = {k: v for k, v in trial.system_attrs.items() if k != LOST_ATTR}
    system_attrs = {"failed_trial": trial.number, **inherited}
    system_attrs["retry_history"] = [*system_attrs.get("retry_history", []), trial.number]
    system_attrs[LOST_RETRIES_ATTR] = lost
    # Nor has it ended: failed by hand while it waits, it must not read as its predecessor.
    user_attrs = {**trial.user_attrs, FAIL_REASON_ATTR: None, INTERRUPTED_ATTR: False}
    study.add_trial(
        optuna.create_trial(
            state=TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            user_attrs=user_attrs,
            system_attrs=system_attrs,
        )
    )


def original_trial_number(trial: Trial | FrozenTrial) -> int:
    """The number of the trial that ``trial`` retries, or its own number if it is no retry.

    A retry of a retry still maps to the first trial, so checkpoints keyed by this number are
    found by every attempt of the same configuration.

    Args:
        trial: A running trial (from ``study.ask()`` or an objective) or a frozen one.
    """
    if isinstance(trial, Trial):
        # Optuna 5 dropped ``Trial.system_attrs``; fetch the frozen trial through the public
        # storage API instead (three cheap queries, once per trial).
        storage = trial.storage
        study_id = storage.get_study_id_from_name(trial.study.study_name)
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        frozen = storage.get_trial(trial_id)
    else:
        frozen = trial
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        number = RetryHeartbeatStaleTrialCallback.retried_trial_number(frozen)
    return frozen.number if number is None else number
