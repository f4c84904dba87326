"""The thesis baselines, enqueued as a study's first trials by ``--baselines``."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState

from advhpo._errors import ConfigError
from advhpo.objectives._config import default_eval_eps
from advhpo.search._settings import StudySettings
from advhpo.search._space import BASELINE_ATTR, resolve_space


def baseline_params(settings: StudySettings) -> dict[str, dict[str, Any]]:
    """The thesis training recipes as trial params, by baseline name.

    The thesis net itself is not in the searched family, so ``layers`` and ``dropout`` are
    placeholders (the space's lowest layers and the thesis's conv dropout); the trial trains
    the preset net named by its ``baseline`` attribute. Weight decay takes the space's lowest
    value, the nearest the log scale gets to the thesis's none.

    Raises:
        ConfigError: The study's space leaves out a value the thesis used.
    """
    space = resolve_space(settings.dataset, settings.space)
    preset = f"thesis-{settings.dataset}"
    common = {
        "layers": _lowest(space["layers"]),
        "dropout": 0.25,
        "lr": 0.01,
        "weight_decay": _lowest(space["weight_decay"]),
        "ensemble": 1,
    }
    recipes = {
        preset: {**common, "adv_method": "none"},
        f"{preset}-fgsm": {
            **common,
            "adv_method": "fgsm",
            "adv_eps": default_eval_eps(settings.dataset),
        },
    }
    for params in recipes.values():
        for name, value in params.items():
            if not _contains(space[name], value):
                raise ConfigError(
                    f"--baselines needs {name}={value} (the thesis's) inside the search space"
                )
    return recipes


def enqueue_baselines(study: optuna.Study, settings: StudySettings) -> int:
    """Enqueue the baselines the study does not hold yet.

    Returns:
        How many were enqueued (0 on a study that already has them, e.g. a second host).
    """
    present = {
        t.user_attrs.get(BASELINE_ATTR)
        for t in study.get_trials(deepcopy=False)
        if t.state != TrialState.FAIL
    }
    added = 0
    for name, params in baseline_params(settings).items():
        if name not in present:
            study.enqueue_trial(params, user_attrs={BASELINE_ATTR: name})
            added += 1
    return added


def _lowest(spec: dict[str, Any]) -> Any:
    return min(spec["choices"]) if "choices" in spec else spec["low"]


def _contains(spec: dict[str, Any], value: Any) -> bool:
    if "choices" in spec:
        return value in spec["choices"]
    return bool(spec["low"] <= value <= spec["high"])
