"""Why a trial failed, as the launcher's lines and the exports tell it."""

from __future__ import annotations

from optuna.trial import FrozenTrial, TrialState

FAIL_REASON_ATTR = "fail_reason"  # user attribute: ``Type: message`` of what ended the attempt

# A failed trial without a reason of its own was failed by another worker for its missing
# heartbeats: its worker died without a word, so nothing else could have written one.
LOST_REASON = "lost: its worker stopped sending heartbeats (killed, out of memory or suspended)"


def fail_reason(trial: FrozenTrial) -> str | None:
    """The reason a FAIL trial failed; ``None`` for a trial in any other state."""
    if trial.state != TrialState.FAIL:
        return None
    reason = trial.user_attrs.get(FAIL_REASON_ATTR)
    return str(reason) if reason else LOST_REASON
