"""A study read once for pictures: its settings, its completed trials and their accuracy front."""

from __future__ import annotations

import datetime
import math
from collections import Counter
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from advhpo._errors import AdvhpoError, ConfigError
from advhpo.search import StudySettings, accuracy_front, stored_settings

# Trial user attributes written by the workers. Spelled out rather than imported so that a
# report still reads studies written by older or newer workers that lack some of them.
BASELINE_ATTR = "baseline"  # thesis preset name on the baseline trials of --baselines
SKIPPED_ATTR = "skipped"  # PRUNED as budget overshoot: never ran, ignored everywhere
EARLY_STOP_ATTR = "early_stopped_at_epoch"  # PRUNED after an epoch by early stopping


class NoCompletedTrialError(AdvhpoError):
    """The study has no completed trial yet, so there is nothing to draw."""


@dataclass(frozen=True)
class StudyData:
    """What the report shows of one study, read from the storage once.

    Attributes:
        name: The study name.
        settings: The advhpo settings the study was created with.
        objectives: Objective names in study order (``clean_acc``, ``fgsm_acc`` and, for a
            ``cost`` study, ``train_seconds``).
        trials: COMPLETE trials in completion order (budget-overshoot trials excluded).
        front: The completed trials no other completed trial beats on both clean and FGSM
            accuracy, by trial number (the 2-D front, also for a ``cost`` study).
        baselines: The thesis-baseline trials among ``trials``, by trial number.
        states: Trials by state name, plus ``EARLY_STOPPED`` (pruned by early stopping,
            counted apart from ``PRUNED``); budget-overshoot trials are not counted.
    """

    name: str
    settings: StudySettings
    objectives: tuple[str, ...]
    trials: list[FrozenTrial]
    front: list[FrozenTrial]
    baselines: list[FrozenTrial]
    states: dict[str, int]


def load_study_data(study: optuna.Study) -> StudyData:
    """Read ``study`` for a report: one query for all trials.

    Raises:
        ConfigError: The study was not created by advhpo, or has fewer than two objectives.
        NoCompletedTrialError: No trial of the study has completed yet.
    """
    settings = stored_settings(study)
    if len(study.directions) < 2:
        raise ConfigError(f"study {study.study_name!r} has one objective; a front needs two")
    every = [t for t in study.get_trials(deepcopy=False) if SKIPPED_ATTR not in t.user_attrs]
    states = Counter(_state_name(t) for t in every)
    done = [
        t
        for t in every
        if t.state == TrialState.COMPLETE
        and t.values is not None
        and all(math.isfinite(v) for v in t.values[:2])
    ]
    if not done:
        raise NoCompletedTrialError(
            f"study {study.study_name!r} has no completed trial yet "
            f"({_describe(states) or 'no trials'}): nothing to report"
        )
    done.sort(key=_completion_key)
    return StudyData(
        name=study.study_name,
        settings=settings,
        objectives=settings.objectives(),
        trials=done,
        front=accuracy_front(done),
        baselines=sorted(
            (t for t in done if t.user_attrs.get(BASELINE_ATTR)), key=lambda t: t.number
        ),
        states={s: states[s] for s in _STATE_ORDER if states[s]},
    )


def curve_trials(data: StudyData) -> list[FrozenTrial]:
    """The trials the report draws curves of: the front, then the baselines not on it."""
    numbers = {t.number for t in data.front}
    return [*data.front, *(t for t in data.baselines if t.number not in numbers)]


_STATE_ORDER = ("COMPLETE", "EARLY_STOPPED", "PRUNED", "FAIL", "RUNNING", "WAITING")
_NEVER = datetime.datetime.max


def _state_name(trial: FrozenTrial) -> str:
    if trial.state == TrialState.PRUNED and trial.user_attrs.get(EARLY_STOP_ATTR) is not None:
        return "EARLY_STOPPED"
    return trial.state.name


def _describe(states: Counter[str]) -> str:
    return ", ".join(f"{n} {s.lower().replace('_', ' ')}" for s, n in states.items())


def _completion_key(trial: FrozenTrial) -> tuple[datetime.datetime, int]:
    return (trial.datetime_complete or trial.datetime_start or _NEVER, trial.number)
