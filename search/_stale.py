"""Trials whose worker is gone: failed, so that the storage's callback re-queues them."""

from __future__ import annotations

import warnings
from datetime import datetime, timedelta

import optuna
from optuna.trial import TrialState

from advhpo.storage import ResilientRDBStorage


def fail_stale_trials(study: optuna.Study, storage: optuna.storages.BaseStorage) -> None:
    """Fail (and so retry) the study's trials whose worker is gone.

    Those are Optuna's stale trials (no heartbeat for the grace period), and RUNNING trials
    that never recorded a heartbeat and started more than twice the grace period ago, which
    Optuna's check skips. A worker leaves one of those behind when its connection drops just
    as the database commits a new or claimed trial (the retried call makes or claims another),
    or when it dies between creating a trial and its first heartbeat; left RUNNING, such a
    trial would hold a place in the budget forever. Trials started without heartbeats (e.g. by
    ``optuna ask`` on the study) count as gone too.

    Args:
        study: The study to check.
        storage: The study's storage, from :func:`advhpo.storage.open_storage`; other
            storages get Optuna's check only.
    """
    with warnings.catch_warnings():
        # Experimental since Optuna 2.9 and stable in use; the warning would flood the logs.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    if isinstance(storage, ResilientRDBStorage) and storage.grace_period is not None:
        _fail_trials_without_heartbeat(study, storage, storage.grace_period)


def _fail_trials_without_heartbeat(
    study: optuna.Study, storage: ResilientRDBStorage, grace_period: int
) -> None:
    # datetime_start is the creating host's naive local time. A live trial records its first
    # heartbeat within milliseconds of starting, so clock skew between hosts can only misjudge
    # a trial in those milliseconds; twice the grace leaves room for slow first heartbeats.
    cutoff = datetime.now() - timedelta(seconds=2 * grace_period)
    old = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if t.datetime_start is not None and t.datetime_start < cutoff
    ]
    if not old:
        return
    beating = storage.trials_with_heartbeat([t._trial_id for t in old])
    callback = storage.get_heartbeat_stale_trial_callback()
    for t in old:
        if t._trial_id in beating:
            continue  # Optuna's check judges it by its last heartbeat
        try:
            if not storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker got there first
        if callback is not None:
            callback(study, storage.get_trial(t._trial_id))
