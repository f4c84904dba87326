"""advhpo.search: studies, the search space, and the workers that run trials."""

from __future__ import annotations

# The thesis radius is an objectives fact; re-exported for the search CLI's convenience.
from advhpo.objectives._config import default_eval_eps
from advhpo.search._export import export_text, trial_rows
from advhpo.search._front import (
    MASKING_GAP,
    completed,
    format_params,
    front,
    front_points,
    hypervolume,
    masking_flag,
)
from advhpo.search._launch import (
    Placement,
    RunOptions,
    create_or_check_study,
    place_workers,
    run_workers,
)
from advhpo.search._settings import (
    DIRECTIONS,
    OBJECTIVES,
    SAMPLERS,
    StudySettings,
    check_compatible,
    settings_dict,
    stored_settings,
)
from advhpo.search._space import DEFAULT_SPACE, load_space_file, resolve_space, suggest_config
from advhpo.search._worker import WorkerSpec, fail_stale_trials, worker_main

__all__ = [
    "DEFAULT_SPACE",
    "DIRECTIONS",
    "MASKING_GAP",
    "OBJECTIVES",
    "SAMPLERS",
    "Placement",
    "RunOptions",
    "StudySettings",
    "WorkerSpec",
    "check_compatible",
    "completed",
    "create_or_check_study",
    "default_eval_eps",
    "export_text",
    "fail_stale_trials",
    "format_params",
    "front",
    "front_points",
    "hypervolume",
    "load_space_file",
    "masking_flag",
    "place_workers",
    "resolve_space",
    "run_workers",
    "settings_dict",
    "stored_settings",
    "suggest_config",
    "trial_rows",
    "worker_main",
]
