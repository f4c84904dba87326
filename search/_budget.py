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
