"""What counts against a study's trial budget."""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

EARLY_STOP_ATTR = "early_stopped_at_epoch"


def spends_budget(trial: FrozenTrial) -> bool:
    """True for a trial the budget paid for: COMPLETE, or stopped early by ``--early-stop``.

    An early-stopped trial was evaluated and judged, so it uses up its place; trials pruned
    as budget overshoot or failed ones do not.
    """
    if trial.state == TrialState.COMPLETE:
        return True
    return trial.state == TrialState.PRUNED and EARLY_STOP_ATTR in trial.user_attrs


def budget_counts(study: optuna.Study) -> tuple[int, int]:
    """``(spent, running)``: trials that used the budget, and trials that still may."""
    trials = study.get_trials(
        deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    )
    running = sum(t.state == TrialState.RUNNING for t in trials)
    return sum(spends_budget(t) for t in trials), running
