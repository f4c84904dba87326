"""One self-contained HTML report of a study: plotly.js embedded once, every figure inline."""

from __future__ import annotations

import datetime
import html
import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import plotly.io as pio
import plotly.offline
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial

from advhpo._errors import StorageError
from advhpo._umask import umask
from advhpo.dashboards._eps_cache import CheckpointCurves, EpsCurve, stored_eps_curve
from advhpo.dashboards._importance import param_importances
from advhpo.dashboards._plots import (
    eps_curve_figure,
    hypervolume_figure,
    importance_figure,
    learning_figure,
    parallel_figure,
    pareto_figure,
    trial_label,
)
from advhpo.dashboards._study_data import StudyData, curve_trials
from advhpo.search import MASKING_GAP, format_params, hypervolume, masking_flag, settings_dict
from advhpo.storage import unwritable_reason

FIGURES = ("pareto", "hypervolume", "importance", "parallel", "eps", "learning")
"""The report's figures, in page order (ids ``fig-<name>``)."""

# (step, done, total): the report's phases, for a progress bar.
ReportProgress = Callable[[str, int, int], None]

_PLOT_CONFIG = {"displaylogo": False, "responsive": True}


@dataclass(frozen=True)
class ReportSummary:
    """What :func:`write_report` wrote.

    Attributes:
        path: The HTML file.
        n_trials: Completed trials shown.
        front_size: Trials on the clean/FGSM front.
        hypervolume: The front's hypervolume (reference (0, 0)).
        size_bytes: The file's size.
        seconds: Time taken to build and write it.
    """

    path: Path
    n_trials: int
    front_size: int
    hypervolume: float
    size_bytes: int
    seconds: float


def render_report(
    data: StudyData,
    *,
    test_curves: CheckpointCurves | None = None,
    source: str | None = None,
    progress: ReportProgress | None = None,
) -> str:
    """The report of ``data`` as one HTML document that needs no network.

    Args:
        data: The study (see :func:`load_study_data`).
        test_curves: Test-set eps curves measured from checkpoints (``advhpo report --test``);
            default ``None``: the validation curves the workers stored.
        source: Where the study lives (a masked storage URL), for the header. Default none.
        progress: Called as each phase starts.
    """
    steps = len(data.objectives) + 1 + len(FIGURES) + 1
    step = 0

    def advance(what: str) -> None:
        nonlocal step
        if progress is not None:
            progress(what, step, steps)
        step += 1

    directions = [
        StudyDirection.MINIMIZE if d == "minimize" else StudyDirection.MAXIMIZE
        for d in data.settings.directions()
    ]
    importances = param_importances(
        data.trials,
        data.objectives,
        directions,
        progress=lambda target: advance(f"importance: {target}"),
    )
    curves, curve_source = _curves(data, test_curves)
    builders: dict[str, Callable[[], Any]] = {
        "pareto": lambda: pareto_figure(data),
        "hypervolume": lambda: hypervolume_figure(data),
        "importance": lambda: importance_figure(importances, data.objectives),
        "parallel": lambda: parallel_figure(data),
        "eps": lambda: eps_curve_figure(data, curves, curve_source),
        "learning": lambda: learning_figure(data),
    }
    divs: dict[str, str] = {}
    for name in FIGURES:
        advance(f"figure: {name}")
        divs[name] = pio.to_html(
            builders[name](),
            include_plotlyjs=False,
            full_html=False,
            div_id=f"fig-{name}",
            config=_PLOT_CONFIG,
        )
    advance("writing")
    page = _page(data, divs, test_curves, source)
    if progress is not None:
        progress("done", steps, steps)
    return page


def check_report_path(out: Path) -> None:
    """Refuse, before any work, a report path that :func:`write_report` could not write.

    ``out``'s folder may not exist yet (it is made), but its nearest existing ancestor must be
    a writable folder, and ``out`` itself must not be a folder.

    Raises:
        StorageError: ``out`` cannot be written.
    """
    out = Path(out)
    if out.is_dir():
        raise StorageError(f"cannot write {out}: it is a folder; name the HTML file")
    reason = unwritable_reason(out.parent)
    if reason is not None:
        raise StorageError(f"cannot write {out}: {reason}")


def write_report(
    data: StudyData,
    out: Path,
    *,
    test_curves: CheckpointCurves | None = None,
    source: str | None = None,
    progress: ReportProgress | None = None,
) -> ReportSummary:
    """Render the report (see :func:`render_report`) and write it to ``out`` atomically.

    Raises:
        StorageError: ``out`` cannot be written.
    """
    start = time.perf_counter()
    page = render_report(data, test_curves=test_curves, source=source, progress=progress)
    out = Path(out)
    tmp: str | None = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
        # A report is for sharing: the mode open() would give, not mkstemp's private 0600.
        os.fchmod(fd, 0o666 & ~umask())
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(page)
        os.replace(tmp, out)
        tmp = None
    except OSError as e:
        raise StorageError(f"cannot write {out}: {e.strerror or e}") from e
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return ReportSummary(
        path=out,
        n_trials=len(data.trials),
        front_size=len(data.front),
        hypervolume=hypervolume([(_v(t, 0), _v(t, 1)) for t in data.front]),
        size_bytes=out.stat().st_size,
        seconds=time.perf_counter() - start,
    )


def _curves(data: StudyData, test: CheckpointCurves | None) -> tuple[dict[int, EpsCurve], str]:
    """The curve drawn per trial, and a caption naming their source."""
    stored = {t.number: c for t in curve_trials(data) if (c := stored_eps_curve(t)) is not None}
    n_val = {c.n_images for c in stored.values()} - {None}
    val_source = "validation split" + (
        f", {n_val.pop()} images" if len(n_val) == 1 else ""
    )  # set by the study's eval subset
    if test is None:
        return stored, val_source + ", stored by the workers"
    curves = {**stored, **test.curves}
    n_test = {c.n_images for c in test.curves.values()} - {None}
    source = "test split" + (f", {n_test.pop()} images" if len(n_test) == 1 else "")
    source += ", from the trials' last checkpoints"
    if test.missing:
        missing = ", ".join(f"#{n}" for n in sorted(test.missing))
        source += f"; {missing}: no checkpoint, {val_source}"
    if test.foreign:
        foreign = ", ".join(f"#{n}" for n in sorted(test.foreign))
        source += f"; {foreign}: another study's checkpoint, {val_source}"
    return curves, source


def _page(
    data: StudyData, divs: Mapping[str, str], test: CheckpointCurves | None, source: str | None
) -> str:
    s = data.settings
    hv = hypervolume([(_v(t, 0), _v(t, 1)) for t in data.front])
    done = data.states.get("COMPLETE", 0)
    generated = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    facts = [
        f"{s.dataset.upper()}",
        f"{done} completed of a budget of {s.budget}",
        f"front of {len(data.front)}",
        f"hypervolume {hv:.4f}",
        f"FGSM eps {s.eval_eps:g}",
    ]
    sections = [
        (
            "pareto",
            "Pareto front",
            "Each point is a completed trial, scored on the validation split. The red "
            "staircase bounds what the front dominates; hover a point for its parameters."
            + (" Stars are the thesis baselines." if data.baselines else ""),
            divs["pareto"] + _front_table(data, test.curves if test is not None else {}),
        ),
        (
            "hypervolume",
            "Hypervolume history",
            "The area the front dominates above (0, 0), after each completed trial in the "
            "order they completed: it rises when a trial extends the front.",
            divs["hypervolume"],
        ),
        (
            "importance",
            "Hyperparameter importance",
            "PED-ANOVA: how differently each parameter is distributed among the best trials "
            "than among all, per objective and for reaching the front. Conditional parameters "
            "(adv_eps) count among the trials that have them; baselines are left out.",
            divs["importance"],
        ),
        (
            "parallel",
            "Parallel coordinates",
            "One line per searched trial, coloured by FGSM accuracy; drag along an axis to "
            "filter. n/a: the trial has no such parameter.",
            divs["parallel"],
        ),
        (
            "eps",
            "Accuracy vs eps",
            "How the front trials' accuracy falls as the attack radius grows, under FGSM and "
            "the stronger PGD. A trial whose PGD curve sits far below its FGSM curve may be "
            "masking gradients.",
            divs["eps"],
        ),
        (
            "learning",
            "Learning curves",
            "Per-epoch validation accuracy (clean and FGSM, on the per-epoch subset) and "
            "training loss of the front trials.",
            divs["learning"],
        ),
        (
            "settings",
            "Study settings",
            "Fixed when the study was created; every worker used them.",
            _settings_table(data),
        ),
    ]
    nav = " · ".join(f'<a href="#{key}">{html.escape(title)}</a>' for key, title, _, _ in sections)
    body = "\n".join(
        f'<section id="{key}"><h2>{html.escape(title)}</h2>'
        f'<p class="caption">{html.escape(caption)}</p>\n{content}</section>'
        for key, title, caption, content in sections
    )
    subtitle = " · ".join(html.escape(f) for f in facts)
    where = f" · {html.escape(source)}" if source else ""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="advhpo report">
<title>advhpo report: {html.escape(data.name)}</title>
<style>{_CSS}</style>
<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script>
</head>
<body data-figures="{len(FIGURES)}">
<header>
<h1>Study <code>{html.escape(data.name)}</code></h1>
<p class="facts">{subtitle}</p>
<p class="meta">generated {html.escape(generated)}{where}</p>
<nav>{nav}</nav>
</header>
<main>
{body}
</main>
</body>
</html>
"""


def _front_table(data: StudyData, test_curves: Mapping[int, EpsCurve]) -> str:
    """The front (and baselines) as a table, masking flags and any test-set accuracy included."""
    eps = data.settings.eval_eps
    cost = "train_seconds" in data.objectives
    head = ["trial", "clean", "FGSM", "PGD", "FGSM − PGD", "masking?", "transfer"]
    if test_curves:
        head += [f"test FGSM @{eps:g}", f"test PGD @{eps:g}"]
    head += ["train s", "params"]
    on_front = {t.number for t in data.front}
    rows = []
    for t in curve_trials(data):
        pgd = t.user_attrs.get("pgd_acc")
        gap = _v(t, 1) - pgd if isinstance(pgd, int | float) else None
        flagged = masking_flag(t)
        cells = [
            html.escape(trial_label(t)),
            f"{_v(t, 0):.4f}",
            f"{_v(t, 1):.4f}",
            _num(pgd),
            _num(gap),
            '<span class="flag">yes</span>' if flagged else "",
            _num(t.user_attrs.get("transfer_acc")),
        ]
        if test_curves:
            curve = test_curves.get(t.number)
            cells += [_at(curve, eps, "fgsm"), _at(curve, eps, "pgd")]
        seconds = _v(t, 2) if cost else t.user_attrs.get("train_seconds")
        cells += [_num(seconds, ".1f"), html.escape(format_params(t.params))]
        css = ""
        if flagged:
            css = ' class="masked"'
        elif t.number not in on_front:
            css = ' class="off-front"'
        rows.append(f"<tr{css}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    legend = (
        f"masking?: FGSM accuracy exceeds PGD accuracy by more than {MASKING_GAP:g}, a sign "
        "that the attack's gradients are uninformative rather than the model robust."
    )
    if any(t.number not in on_front for t in data.baselines):
        legend += " Greyed rows: baselines off the front."
    if test_curves:
        legend += " test: measured on the test split from the trial's last checkpoint."
    return (
        '<table class="front"><thead><tr>'
        + "".join(f"<th>{html.escape(h)}</th>" for h in head)
        + "</tr></thead><tbody>"
        + "".join(rows)
        + f'</tbody></table><p class="caption">{html.escape(legend)}</p>'
    )


def _settings_table(data: StudyData) -> str:
    rows: list[tuple[str, str]] = [("study", data.name), ("objectives", ", ".join(data.objectives))]
    for key, value in settings_dict(data.settings).items():
        text = value if isinstance(value, str) else json.dumps(value)
        rows.append((key, text))
    rows.append(("trials", ", ".join(f"{n} {s.lower()}" for s, n in data.states.items())))
    baselines = ", ".join(trial_label(t) for t in data.baselines) or "none"
    rows.append(("baselines", baselines))
    return (
        '<table class="settings"><tbody>'
        + "".join(
            f"<tr><th>{html.escape(k)}</th><td><code>{html.escape(v)}</code></td></tr>"
            for k, v in rows
        )
        + "</tbody></table>"
    )


def _at(curve: EpsCurve | None, eps: float, attack: str) -> str:
    """The curve's accuracy at the radius nearest ``eps``."""
    if curve is None:
        return "–"
    values = curve.fgsm_acc if attack == "fgsm" else curve.pgd_acc
    if not values:
        return "–"
    i = min(range(len(curve.eps)), key=lambda k: abs(curve.eps[k] - eps))
    return f"{values[i]:.4f}"


def _num(value: object, fmt: str = ".4f") -> str:
    return format(value, fmt) if isinstance(value, int | float) else "–"


def _v(trial: FrozenTrial, i: int) -> float:
    assert trial.values is not None
    return float(trial.values[i])


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
  color: #222; background: #fafafa; }
header { background: #fff; border-bottom: 1px solid #ddd; padding: 16px 32px; }
h1 { margin: 0 0 6px; font-size: 1.5em; }
h2 { margin: 0 0 4px; font-size: 1.2em; }
main { padding: 8px 32px 48px; max-width: 1400px; }
section { background: #fff; border: 1px solid #e3e3e3; border-radius: 6px; margin: 18px 0;
  padding: 16px 20px; }
.facts { margin: 0; font-size: 1.05em; }
.meta { margin: 4px 0 8px; color: #777; font-size: 0.85em; }
.caption { color: #555; font-size: 0.9em; margin: 4px 0 10px; }
nav a { margin-right: 4px; color: #1f5fa8; text-decoration: none; }
table { border-collapse: collapse; font-size: 0.85em; margin-top: 12px; }
th, td { border-bottom: 1px solid #e5e5e5; padding: 4px 10px; text-align: left;
  vertical-align: top; }
table.front td:nth-child(n+2):nth-child(-n+9) { font-variant-numeric: tabular-nums; }
tr.masked { background: #fff4e5; }
tr.off-front { color: #888; }
.flag { color: #c05600; font-weight: 600; }
table.settings th { width: 14em; font-weight: 600; }
code { font-size: 0.95em; }
"""
