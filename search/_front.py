"""The Pareto front of clean vs FGSM accuracy and its hypervolume."""

from __future__ import annotations

from collections.abc import Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

MASKING_GAP = 0.2  # FGSM − PGD accuracy above this suggests gradient masking


def front(study: optuna.Study) -> list[FrozenTrial]:
    """The completed trials no other completed trial dominates (Optuna's ``best_trials``)."""
    return sorted(study.best_trials, key=lambda t: t.number)


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
