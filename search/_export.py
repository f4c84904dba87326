"""A study's trials as plain rows, for ``advhpo export`` (CSV or JSON)."""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

import optuna

from advhpo.search._budget import EARLY_STOP_ATTR
from advhpo.search._fail_reason import FAIL_REASON_ATTR, fail_reason
from advhpo.search._settings import stored_settings
from advhpo.search._space import BASELINE_ATTR

# Scalar user attributes worth a column; lists (eps curves, histories) stay in the JSON form.
# The last three tell apart what the state alone does not: a thesis baseline, a trial pruned
# by early stopping (it spent budget) and one pruned as budget overshoot (it never ran).
_ATTRS = (
    "pgd_acc",
    "transfer_acc",
    "train_seconds",
    "eval_seconds",
    "resumed_from_epoch",
    FAIL_REASON_ATTR,
    "host",
    "device",
    BASELINE_ATTR,
    EARLY_STOP_ATTR,
    "skipped",
)


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """One flat row per trial: number, state, objectives, params and scalar attributes."""
    rows = []
    objectives = stored_settings(study).objectives()
    for t in study.get_trials(deepcopy=False):
        row: dict[str, Any] = {"number": t.number, "state": t.state.name}
        values = t.values or [None] * len(objectives)
        row.update(zip(objectives, values, strict=True))
        row.update({f"params_{k}": v for k, v in t.params.items()})
        # An objective's column holds its value: a cost study's train_seconds objective is
        # not overwritten by the attribute of that name (absent on trials told by hand).
        row.update({k: t.user_attrs.get(k) for k in _ATTRS if k not in objectives})
        row[FAIL_REASON_ATTR] = fail_reason(t)
        row["datetime_start"] = t.datetime_start.isoformat() if t.datetime_start else None
        row["duration_seconds"] = t.duration.total_seconds() if t.duration else None
        rows.append(row)
    return rows


def export_text(study: optuna.Study, fmt: str) -> str:
    """The study's trials as CSV (flat rows) or JSON (rows plus every user attribute).

    Raises:
        ValueError: ``fmt`` is neither ``"csv"`` nor ``"json"``.
    """
    rows = trial_rows(study)
    if fmt == "json":
        attrs = {t.number: t.user_attrs for t in study.get_trials(deepcopy=False)}
        full = [{**r, "user_attrs": attrs[r["number"]]} for r in rows]
        # Strict JSON: a NaN or infinity (a loss stored before divergence was caught) is null.
        return json.dumps(_finite({"study": study.study_name, "trials": full}), allow_nan=False)
    if fmt != "csv":
        raise ValueError(f"unknown export format {fmt!r}; use csv or json")
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    if not rows:  # still a header: what a script reading the file expects
        objectives = stored_settings(study).objectives()
        columns = ["number", "state", *objectives]
        columns += [k for k in (*_ATTRS, "datetime_start", "duration_seconds") if k not in columns]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float inside it replaced by ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
