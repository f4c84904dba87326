"""advhpo.search: studies, the search space, and the workers that run trials."""

from __future__ import annotations

# The thesis radius is an objectives fact; re-exported for the search CLI's convenience.
from advhpo.objectives._config import default_eval_eps
from advhpo.search._baselines import baseline_params, enqueue_baselines
from advhpo.search._budget import EARLY_STOP_ATTR, budget_counts, spends_budget
from advhpo.search._early_stop import (
    EPOCH_VALUES_ATTR,
    EarlyStopRule,
    dominates,
    epoch_point,
    reference_points,
)
from advhpo.search._export import export_text, trial_rows
from advhpo.search._fail_reason import (
    FAIL_REASON_ATTR,
    LOST_REASON,
    OUTSIDE_REASON,
    fail_reason,
)
from advhpo.search._front import (
    MASKING_GAP,
    accuracy_front,
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
    StudyInterrupted,
    create_or_check_study,
    place_workers,
    run_workers,
)
from advhpo.search._requeue import requeue_dropped
from advhpo.search._sampler_state import (
    capture_sampler_state,
    load_sampler_state,
    restore_sampler_state,
    save_sampler_state,
)
from advhpo.search._settings import (
    DEFAULT_SAMPLER,
    DIRECTIONS,
    OBJECTIVES,
    SAMPLERS,
    StudySettings,
    check_compatible,
    settings_dict,
    stored_settings,
)
from advhpo.search._slot import SlotLease, live_workers
from advhpo.search._space import (
    BASELINE_ATTR,
    DEFAULT_SPACE,
    load_space_file,
    resolve_space,
    space_distributions,
    suggest_config,
)
from advhpo.search._worker import (
    WorkerSpec,
    fail_stale_trials,
    host_name,
    make_sampler,
    worker_main,
)

__all__ = [
    "BASELINE_ATTR",
    "DEFAULT_SAMPLER",
    "DEFAULT_SPACE",
    "DIRECTIONS",
    "EARLY_STOP_ATTR",
    "EPOCH_VALUES_ATTR",
    "FAIL_REASON_ATTR",
    "LOST_REASON",
    "MASKING_GAP",
    "OBJECTIVES",
    "OUTSIDE_REASON",
    "SAMPLERS",
    "EarlyStopRule",
    "Placement",
    "RunOptions",
    "SlotLease",
    "StudyInterrupted",
    "StudySettings",
    "WorkerSpec",
    "accuracy_front",
    "baseline_params",
    "budget_counts",
    "capture_sampler_state",
    "check_compatible",
    "completed",
    "create_or_check_study",
    "default_eval_eps",
    "dominates",
    "enqueue_baselines",
    "epoch_point",
    "export_text",
    "fail_reason",
    "fail_stale_trials",
    "format_params",
    "front",
    "front_points",
    "host_name",
    "hypervolume",
    "live_workers",
    "load_sampler_state",
    "load_space_file",
    "make_sampler",
    "masking_flag",
    "place_workers",
    "reference_points",
    "requeue_dropped",
    "resolve_space",
    "restore_sampler_state",
    "run_workers",
    "save_sampler_state",
    "settings_dict",
    "space_distributions",
    "spends_budget",
    "stored_settings",
    "suggest_config",
    "trial_rows",
    "worker_main",
]
