"""Queueing again the failed trials whose retry was never queued."""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

from advhpo.search._fail_reason import LOST_REASON, fail_reason
from advhpo.storage import (
    INTERRUPTED_ATTR,
    RetryLostTrial,
    may_requeue_interrupted,
    requeue_interrupted,
)


def requeue_dropped(
    study: optuna.Study, lost_retry: RetryLostTrial | None, max_requeues: int
) -> list[int]:
    """Queue a retry of every failed attempt that should have one and has none.

    A retry is queued in a write of its own after the write that failed the attempt; a
    worker killed between the two (SIGKILL while a stopped trial is told), or an
    acknowledgement of the failing write lost in an outage (Optuna then skips the retry),
    leaves an attempt failed for good that was meant to continue. Interrupted attempts are
    queued again within ``max_requeues``, lost ones as ``lost_retry`` allows; attempts that
    failed for a reason of their own (a diverging loss) or were failed from outside (by hand,
    in optuna-dashboard) are left as they are. Two workers sweeping at once queue one retry:
    the storage makes each attempt's retry only once.

    Args:
        study: The study to sweep.
        lost_retry: The storage's callback for lost trials (``None``: lost ones stay failed).
        max_requeues: Interruptions of one trial after which it is left failed.

    Returns:
        The numbers of the attempts a retry was queued for.
    """
    trials = study.get_trials(deepcopy=False)
    retried = retried_attempts(trials)
    queued = []
    for trial in trials:
        if trial.number in retried or not retry_due(trial, lost_retry, max_requeues):
            continue
        if trial.user_attrs.get(INTERRUPTED_ATTR):
            requeue_interrupted(study, trial, max_requeues)
        elif lost_retry is not None:  # always so for a lost attempt that is due
            lost_retry(study, trial)
        queued.append(trial.number)
    return queued


def retry_due(trial: FrozenTrial, lost_retry: RetryLostTrial | None, max_requeues: int) -> bool:
    """Whether the attempt failed in a way that gets a retry, queued or not yet.

    Args:
        trial: Any attempt; only FAIL ones can be due.
        lost_retry: The storage's callback for lost trials (``None``: lost ones stay failed).
        max_requeues: Interruptions of one trial after which it is left failed.
    """
    if trial.state != TrialState.FAIL:
        return False
    if trial.user_attrs.get(INTERRUPTED_ATTR):
        return may_requeue_interrupted(trial, max_requeues)
    lost = fail_reason(trial) == LOST_REASON
    return lost and lost_retry is not None and lost_retry.will_retry(trial)


def retried_attempts(trials: list[FrozenTrial]) -> set[int]:
    """Numbers of the attempts among ``trials`` that a queued retry continues."""
    return {t.system_attrs["retry_history"][-1] for t in trials if _is_retry(t)}


def _is_retry(trial: FrozenTrial) -> bool:
    history = trial.system_attrs.get("retry_history")
    return isinstance(history, list) and bool(history)
