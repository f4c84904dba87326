"""Hyperparameter importance per objective, with PED-ANOVA (fast, and conditional-aware)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import optuna
from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial

from advhpo.dashboards._study_data import BASELINE_ATTR

MIN_TRIALS = 5
"""Searched trials needed before importances mean anything."""

FRONT_TARGET = "front"
"""The label of the importance of reaching the Pareto front (all objectives at once)."""

# PED-ANOVA contrasts the best trials against all of them; Optuna advises at least five in the
# best group, so small studies use a larger top share than the default 10%.
_TOP_SHARE = 0.1
_MIN_TOP = 5
_MAX_TOP_SHARE = 0.5


@dataclass(frozen=True)
class Importances:
    """Parameter importances of a study.

    Attributes:
        by_target: For each objective name, and :data:`FRONT_TARGET`, the share of each
            parameter (summing to 1; empty when nothing could be told apart).
        n_trials: Searched trials the importances were computed from.
        note: Why there are none, when there are none (``None`` otherwise).
    """

    by_target: dict[str, dict[str, float]]
    n_trials: int
    note: str | None = None


def param_importances(
    trials: Sequence[FrozenTrial],
    objectives: Sequence[str],
    directions: Sequence[StudyDirection],
    progress: Callable[[str], None] | None = None,
) -> Importances:
    """How much each hyperparameter decides each objective, and reaching the front.

    Uses Optuna's PED-ANOVA evaluator: it fits no random forest (fANOVA needs scikit-learn
    and one forest per target), so 2,000 trials take well under a second per target, and it
    treats conditional parameters such as
    ``adv_eps`` (sampled only when ``adv_method`` is not ``"none"``) within the trials that
    have them instead of dropping them. Thesis-baseline trials are left out: their
    parameters are fixed placeholders, not samples of the search.

    Args:
        trials: Completed trials.
        objectives: Objective names in study order.
        directions: The objectives' directions.
        progress: Called with each target's name before it is computed.
    """
    searched = [t for t in trials if not t.user_attrs.get(BASELINE_ATTR) and t.params]
    if len(searched) < MIN_TRIALS:
        return Importances(
            {},
            len(searched),
            f"importances need {MIN_TRIALS} searched trials; have {len(searched)}",
        )
    study = _in_memory(searched, directions)
    top_share = min(_MAX_TOP_SHARE, max(_TOP_SHARE, _MIN_TOP / len(searched)))
    evaluator = PedAnovaImportanceEvaluator(target_quantile=top_share)
    targets: dict[str, Callable[[FrozenTrial], float] | None] = {
        name: _lower_is_better(i, d)
        for i, (name, d) in enumerate(zip(objectives, directions, strict=True))
    }
    # Optuna ranks by non-domination, then hypervolume share; when every trial has the same
    # values that ranking is its arbitrary tie-break, so there is nothing to tell apart.
    if len({tuple(t.values) for t in searched if t.values is not None}) > 1:
        targets[FRONT_TARGET] = None
    result: dict[str, dict[str, float]] = {}
    for name, target in targets.items():
        if progress is not None:
            progress(name)
        with warnings.catch_warnings():
            # PED-ANOVA warns that it treats lower targets as better (handled above) and when
            # few trials make all parameters look alike (shown as an empty chart instead).
            warnings.simplefilter("ignore")
            raw = get_param_importances(study, evaluator=evaluator, target=target, normalize=False)
        total = sum(raw.values())
        result[name] = (
            {} if total <= 0 else {k: v / total for k, v in sorted(raw.items(), key=_by_share)}
        )
    result.setdefault(FRONT_TARGET, {})
    return Importances(result, len(searched))


def _lower_is_better(index: int, direction: StudyDirection) -> Callable[[FrozenTrial], float]:
    sign = -1.0 if direction == StudyDirection.MAXIMIZE else 1.0

    def target(trial: FrozenTrial) -> float:
        assert trial.values is not None
        return sign * float(trial.values[index])

    return target


def _by_share(item: tuple[str, float]) -> tuple[float, str]:
    return (-item[1], item[0])


def _in_memory(trials: Sequence[FrozenTrial], directions: Sequence[StudyDirection]) -> optuna.Study:
    """The trials' params and values in an in-memory study, without their user attributes.

    PED-ANOVA reads the study's trials once per target; from the database that would fetch
    every trial's user attributes (eps curves, epoch records) each time.
    """
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "study created in memory" line
    try:
        study = optuna.create_study(directions=list(directions))
        study.add_trials(
            optuna.trial.create_trial(
                params=t.params, distributions=t.distributions, values=t.values
            )
            for t in trials
        )
    finally:
        optuna.logging.set_verbosity(verbosity)
    return study
