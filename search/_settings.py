"""Study settings: fixed when a study is created, stored with it, shared by every worker."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Literal

import optuna

from advhpo._errors import ConfigError
from advhpo.objectives._config import DATASETS, check_choice, check_eps

SETTINGS_ATTR = "advhpo_settings"
OBJECTIVES = ("clean_acc", "fgsm_acc")
DIRECTIONS: tuple[Literal["maximize"], Literal["maximize"]] = ("maximize", "maximize")
COST_OBJECTIVE = "train_seconds"  # the optional third objective, minimised
SAMPLERS = ("tpe", "nsga2", "gp", "random")
DEFAULT_SAMPLER = "gp"  # the best front in 100 trials (docs/results.md)


@dataclass(frozen=True)
class StudySettings:
    """What every trial of a study shares; stored as a study user attribute.

    Attributes:
        dataset: ``"mnist"`` or ``"cifar10"``.
        budget: Trials wanted across all workers and hosts: COMPLETE ones, plus those stopped
            early by ``early_stop``.
        eval_eps: L∞ radius of the FGSM objective (pixel units; default per dataset).
        epochs: Training epochs per trial (fidelity). Default 2.
        train_subset: Training images per trial (fidelity; ``None``: all). Default 6,000.
        eval_subset: Validation images scored per trial (``None``: all). Default 1,000.
        seed: Base seed: trial ``n`` trains from ``seed + 1000 * n``. Default 0.
        sampler: ``"tpe"``, ``"nsga2"``, ``"gp"`` or ``"random"``. Default ``"gp"``.
        space: Overrides of the default search space (see ``--space``); ``None``: defaults.
        cost: Add training seconds as a third objective, minimised. Default False.
        epoch_eval: Validation images scored (clean and FGSM) after every epoch, for learning
            curves and early stopping; 0: none. Default 500.
        early_stop: Stop a trial after an epoch when at least this share of the completed
            trials' points at that epoch dominate its point, in (0, 1]; ``None``: never.
        early_stop_min_trials: Completed trials needed before any early stop. Default 5.
    """

    dataset: str
    budget: int
    eval_eps: float
    epochs: int = 2
    train_subset: int | None = 6000
    eval_subset: int | None = 1000
    seed: int = 0
    sampler: str = DEFAULT_SAMPLER
    space: dict[str, dict[str, Any]] | None = None
    cost: bool = False
    epoch_eval: int = 500
    early_stop: float | None = None
    early_stop_min_trials: int = 5

    def __post_init__(self) -> None:
        check_choice("dataset", self.dataset, DATASETS)
        check_choice("sampler", self.sampler, SAMPLERS)
        check_eps("eval_eps", self.eval_eps)
        if self.budget < 1 or self.epochs < 1:
            raise ConfigError("budget and epochs must be >= 1")
        if self.epoch_eval < 0 or self.early_stop_min_trials < 1:
            raise ConfigError("epoch_eval must be >= 0 and early_stop_min_trials >= 1")
        if self.early_stop is not None:
            if not 0.0 < self.early_stop <= 1.0:
                raise ConfigError(f"early_stop must be in (0, 1], got {self.early_stop}")
            if self.epoch_eval == 0:
                raise ConfigError("early_stop needs per-epoch validation (epoch_eval > 0)")
        from advhpo.search._space import resolve_space  # the space module imports this one

        resolve_space(self.dataset, self.space)
        if self.space is not None and not self.space:
            # A --space file with no tables (the shipped space.toml) is the default space: a
            # study made with it must match the same study made without it.
            object.__setattr__(self, "space", None)

    def objectives(self) -> tuple[str, ...]:
        """Objective names in study order."""
        return (*OBJECTIVES, COST_OBJECTIVE) if self.cost else OBJECTIVES

    def directions(self) -> list[Literal["maximize", "minimize"]]:
        """Optuna directions matching :meth:`objectives`."""
        return [*DIRECTIONS, "minimize"] if self.cost else list(DIRECTIONS)

    def to_json(self) -> str:
        """Stable JSON form (sorted keys), as stored with the study."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> StudySettings:
        """Inverse of :meth:`to_json`."""
        try:
            return cls(**json.loads(text))
        except (TypeError, ValueError) as e:
            raise ConfigError(f"the study's stored settings are unreadable: {e}") from e


def stored_settings(study: optuna.Study) -> StudySettings:
    """The settings an existing advhpo study was created with.

    Raises:
        ConfigError: The study was not created by advhpo.
    """
    text = study.user_attrs.get(SETTINGS_ATTR)
    if not isinstance(text, str):
        raise ConfigError(f"study {study.study_name!r} was not created by advhpo (no settings)")
    return StudySettings.from_json(text)


def check_compatible(study: optuna.Study, wanted: StudySettings) -> None:
    """Raise :class:`ConfigError` if ``wanted`` differs from the study's stored settings.

    The objective directions are checked too: a study made elsewhere with other objectives
    cannot be continued.
    """
    names = study.metric_names
    directions = [d.name.lower() for d in study.directions]
    if directions != wanted.directions() or (
        names is not None and tuple(names) != wanted.objectives()
    ):
        raise ConfigError(
            f"study {study.study_name!r} has objectives {names or '?'} {directions}; asked for "
            f"{wanted.objectives()} {wanted.directions()}"
        )
    stored = stored_settings(study)
    diffs = [
        f"{f.name}={getattr(stored, f.name)!r} (asked {getattr(wanted, f.name)!r})"
        for f in dataclasses.fields(StudySettings)
        if getattr(stored, f.name) != getattr(wanted, f.name)
    ]
    if diffs:
        raise ConfigError(
            f"study {study.study_name!r} exists with other settings: {'; '.join(diffs)}; "
            "use `advhpo resume` to continue it as it is, or pick a new name"
        )


def settings_dict(settings: StudySettings) -> dict[str, Any]:
    """Plain-data view, for JSON output."""
    return dataclasses.asdict(settings)
