"""Retrying trials whose worker died: the heartbeat callback and a retry's original number."""

from __future__ import annotations

import warnings

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, Trial

from advhpo._errors import ConfigError


def retry_callback(max_retry: int) -> RetryHeartbeatStaleTrialCallback:
    """The callback that re-queues a heartbeat-stale trial as a new WAITING trial.

    Args:
        max_retry: How often one trial (counting from its original) is re-queued before it is
            left failed. ``0`` never re-queues.

    Raises:
        ConfigError: ``max_retry`` is negative.
    """
    if max_retry < 0:
        raise ConfigError(f"max_retry must be >= 0, got {max_retry}")
    with warnings.catch_warnings():
        # Experimental since Optuna 2.8 and still so in 5.0; we rely on it knowingly, and a
        # warning in every worker's log at every start would only hide real ones.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RetryHeartbeatStaleTrialCallback(max_retry=max_retry)


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
