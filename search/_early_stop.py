"""Early stopping for multi-objective trials, which Optuna's pruners cannot judge.

After epoch ``e`` a trial's validation point (clean, FGSM accuracy) is compared with the
epoch-``e`` points of the completed trials; when at least a set share of them dominate it, the
trial is unlikely to reach the front and stops.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from optuna.trial import FrozenTrial

Point = tuple[float, float]  # (clean accuracy, FGSM accuracy), both maximised

EPOCH_VALUES_ATTR = "epoch_values"


def dominates(a: Point, b: Point) -> bool:
    """True if ``a`` is at least as good as ``b`` in both accuracies and better in one."""
    return a[0] >= b[0] and a[1] >= b[1] and a != b


def epoch_point(trial: FrozenTrial, epoch: int) -> Point | None:
    """The trial's validation point after ``epoch``, if it recorded one."""
    for row in trial.user_attrs.get(EPOCH_VALUES_ATTR) or ():
        if row.get("epoch") == epoch:
            return float(row["clean_acc"]), float(row["fgsm_acc"])
    return None


@dataclass(frozen=True)
class EarlyStopRule:
    """When to stop a trial after an epoch.

    Attributes:
        fraction: Stop when at least this share of the reference points dominate the trial's
            point, in (0, 1].
        min_trials: Reference points needed before any trial is stopped (a young study's few
            completed trials say little).
    """

    fraction: float
    min_trials: int

    def share_dominating(self, point: Point, reference: Sequence[Point]) -> float:
        """Share of ``reference`` that dominates ``point`` (0 for an empty reference)."""
        if not reference:
            return 0.0
        return sum(dominates(r, point) for r in reference) / len(reference)

    def should_stop(self, point: Point, reference: Sequence[Point]) -> bool:
        """True once ``min_trials`` references exist and enough of them dominate ``point``."""
        return (
            len(reference) >= self.min_trials
            and self.share_dominating(point, reference) >= self.fraction
        )


def reference_points(completed: Iterable[FrozenTrial], epoch: int) -> list[Point]:
    """The epoch-``epoch`` points of completed trials (those that recorded one)."""
    points = (epoch_point(t, epoch) for t in completed)
    return [p for p in points if p is not None]
