"""The Pareto front of clean vs FGSM accuracy and its hypervolume."""

from __future__ import annotations

import math
from collections.abc import Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

MASKING_GAP = 0.2  # FGSM − PGD accuracy above this suggests gradient masking


def front(study: optuna.Study) -> list[FrozenTrial]:
    """The completed trials no other completed trial beats on both clean and FGSM accuracy.

    The 2-D front also for a ``cost`` study: Optuna's ``best_trials`` would be the 3-D front,
    which keeps slow-but-cheap trials that lose on both accuracies, and the report, the
    progress line and ``advhpo pareto`` must all show the same trials.
    """
    done = [
        t
        for t in completed(study)
        if t.values is not None and all(math.isfinite(v) for v in t.values[:2])
    ]
    return accuracy_front(done)


def accuracy_front(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The trials whose (clean, FGSM) accuracy no other trial dominates, by trial number.

    A trial is dominated by one at least as good on both accuracies and better on one; equal
    points are all kept, as in Optuna's ``best_trials``. O(n log n).

    Args:
        trials: Completed trials; ``values[0]`` is clean and ``values[1]`` FGSM accuracy.
    """
    ranked = sorted(
        (t for t in trials if t.values is not None),
        key=lambda t: (-_values(t)[0], -_values(t)[1]),
    )
    best: list[FrozenTrial] = []
    top_fgsm = -math.inf  # best FGSM accuracy among strictly higher clean accuracies
    i = 0
    while i < len(ranked):
        clean = _values(ranked[i])[0]
        j = i
        while j < len(ranked) and _values(ranked[j])[0] == clean:
            j += 1
        group_top = _values(ranked[i])[1]  # sorted descending within equal clean accuracy
        if group_top > top_fgsm:
            best.extend(t for t in ranked[i:j] if _values(t)[1] == group_top)
            top_fgsm = group_top
        i = j
    return sorted(best, key=lambda t: t.number)


def hypervolume(
    points: Sequence[Sequence[float]], reference: tuple[float, float] = (0.0, 0.0)
) -> float:
    """Area dominated by 2-D maximisation ``points`` above ``reference`` (default (0, 0))."""
    pts = sorted(((x, y) for x, y in points if x > reference[0] and y > reference[1]), reverse=True)
    area, best_y = 0.0, reference[1]
    for x, y in pts:  # x descending: each point adds the strip it raises above best_y
        if y > best_y:
            area += (x - reference[0]) * (y - best_y)
            best_y = y
    return area


def front_points(study: optuna.Study) -> list[tuple[float, float]]:
    """The front's (clean, FGSM) accuracies, in trial-number order."""
    return [(t.values[0], t.values[1]) for t in front(study) if t.values is not None]


def completed(study: optuna.Study) -> list[FrozenTrial]:
    """COMPLETE trials, in number order."""
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def format_params(params: dict[str, object]) -> str:
    """``name=value`` pairs on one line, floats to 3 significant digits."""
    return " ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )


def masking_flag(trial: FrozenTrial) -> bool:
    """Whether FGSM accuracy exceeds PGD accuracy by more than :data:`MASKING_GAP`."""
    pgd = trial.user_attrs.get("pgd_acc")
    return pgd is not None and trial.values is not None and trial.values[1] - pgd > MASKING_GAP


def _values(trial: FrozenTrial) -> list[float]:
    values: list[float] | None = trial.values  # FrozenTrial.values is untyped
    assert values is not None
    return values
