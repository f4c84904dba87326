"""What counts against a study's trial budget."""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

from advhpo.search._requeue import retried_attempts, retry_due
from advhpo.storage import RetryLostTrial, original_trial_number

EARLY_STOP_ATTR = "early_stopped_at_epoch"


def spends_budget(trial: FrozenTrial) -> bool:
    """True for a trial the budget paid for: COMPLETE, or stopped early by ``--early-stop``.

    An early-stopped trial was evaluated and judged, so it uses up its place; trials pruned
    as budget overshoot or failed ones do not.
    """
    return trial.state == TrialState.COMPLETE or stopped_early(trial)


def stopped_early(trial: FrozenTrial) -> bool:
    """True for a trial that ``--early-stop`` pruned after an epoch.

    The attribute's value, not its presence, decides: a retry inherits its predecessor's user
    attributes, and Optuna cannot delete one, so each attempt sets it to ``None`` first.
    """
    return trial.state == TrialState.PRUNED and trial.user_attrs.get(EARLY_STOP_ATTR) is not None


def budget_counts(study: optuna.Study) -> tuple[int, int]:
    """``(spent, running)``: trials that used the budget, and trials that still may."""
    trials = study.get_trials(
        deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    )
    running = sum(t.state == TrialState.RUNNING for t in trials)
    return sum(spends_budget(t) for t in trials), running


def lineages_ahead(
    trials: list[FrozenTrial],
    original: int,
    lost_retry: RetryLostTrial | None,
    max_requeues: int,
) -> set[int]:
    """Trials ahead of trial ``original`` that hold a place in the budget, by original number.

    A trial and its retries are one lineage, ranked by its first attempt's number: a retry is
    queued only after the write that failed its predecessor, so a new trial can be made in
    between, and ranked by its own number the retry would step back for it and its
    checkpointed epochs be trained again with other parameters. A lineage holds a place
    while one of its attempts is queued, running or spent the budget, or while its failed
    last attempt waits for the retry about to be queued.

    Args:
        trials: All trials of the study.
        original: Original number of the lineage asking for a place (it does not count).
        lost_retry: The storage's callback for lost trials (``None``: lost ones stay failed).
        max_requeues: Interruptions of one trial after which it is left failed.
    """
    retried = retried_attempts(trials)

    def holds_place(trial: FrozenTrial) -> bool:
        if trial.state in (TrialState.RUNNING, TrialState.WAITING) or spends_budget(trial):
            return True
        return trial.number not in retried and retry_due(trial, lost_retry, max_requeues)

    return {
        key
        for trial in trials
        if (key := original_trial_number(trial)) < original and holds_place(trial)
    }
