"""Why a trial failed, as the launcher's lines and the exports tell it."""

from __future__ import annotations

from optuna.trial import FrozenTrial, TrialState

from advhpo.storage import FAIL_REASON_ATTR, LOST_ATTR

__all__ = ["FAIL_REASON_ATTR", "LOST_REASON", "OUTSIDE_REASON", "fail_reason"]

# A worker failed the trial for its missing heartbeats: its own worker died without a word.
LOST_REASON = "lost: its worker stopped sending heartbeats (killed, out of memory or suspended)"
# Neither its worker nor another one failed it: someone did by hand, which is not undone.
OUTSIDE_REASON = (
    "failed from outside advhpo (optuna-dashboard's Fail Trial, or a script); not retried"
)


def fail_reason(trial: FrozenTrial) -> str | None:
    """The reason a FAIL trial failed; ``None`` for a trial in any other state.

    A trial failed without a reason of its own was either judged lost by a worker (which marks
    it in the same write, :data:`advhpo.storage.LOST_ATTR`) or failed from outside:
    optuna-dashboard's "Fail Trial" button writes the state and nothing else. Trials lost
    before workers marked them, or failed by a worker of an older advhpo, read as failed from
    outside.
    """
    if trial.state != TrialState.FAIL:
        return None
    reason = trial.user_attrs.get(FAIL_REASON_ATTR)
    if reason:
        return str(reason)
    return LOST_REASON if trial.system_attrs.get(LOST_ATTR) else OUTSIDE_REASON
