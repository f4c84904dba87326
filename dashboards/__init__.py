"""advhpo.dashboards: a study as pictures (optuna-dashboard, and a self-contained HTML report).

Names are imported on first use, as Optuna does for its visualization package: the report's
modules pull in torch and plotly, which ``advhpo dashboard`` needs neither of (it starts in
well under a second instead of three).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from advhpo.dashboards._eps_cache import (
        CheckpointCurves,
        EpsCurve,
        checkpoint_eps_curves,
        measure_eps_curve,
        stored_eps_curve,
    )
    from advhpo.dashboards._hypervolume import hypervolume_history
    from advhpo.dashboards._importance import FRONT_TARGET, Importances, param_importances
    from advhpo.dashboards._report import (
        FIGURES,
        ReportSummary,
        check_report_path,
        render_report,
        write_report,
    )
    from advhpo.dashboards._server import (
        DEFAULT_HOST,
        DEFAULT_PORT,
        is_loopback,
        make_dashboard_server,
        server_url,
    )
    from advhpo.dashboards._study_data import (
        NoCompletedTrialError,
        StudyData,
        curve_trials,
        load_study_data,
    )

_MODULE_OF = {
    **dict.fromkeys(
        (
            "CheckpointCurves",
            "EpsCurve",
            "checkpoint_eps_curves",
            "measure_eps_curve",
            "stored_eps_curve",
        ),
        "_eps_cache",
    ),
    "hypervolume_history": "_hypervolume",
    **dict.fromkeys(("FRONT_TARGET", "Importances", "param_importances"), "_importance"),
    **dict.fromkeys(
        ("FIGURES", "ReportSummary", "check_report_path", "render_report", "write_report"),
        "_report",
    ),
    **dict.fromkeys(
        ("DEFAULT_HOST", "DEFAULT_PORT", "is_loopback", "make_dashboard_server", "server_url"),
        "_server",
    ),
    **dict.fromkeys(
        ("NoCompletedTrialError", "StudyData", "curve_trials", "load_study_data"),
        "_study_data",
    ),
}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "FIGURES",
    "FRONT_TARGET",
    "CheckpointCurves",
    "EpsCurve",
    "Importances",
    "NoCompletedTrialError",
    "ReportSummary",
    "StudyData",
    "check_report_path",
    "checkpoint_eps_curves",
    "curve_trials",
    "hypervolume_history",
    "is_loopback",
    "load_study_data",
    "make_dashboard_server",
    "measure_eps_curve",
    "param_importances",
    "render_report",
    "server_url",
    "stored_eps_curve",
    "write_report",
]
