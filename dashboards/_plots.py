"""The report's figures: pure functions from a study's data to Plotly figures."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial
from plotly.subplots import make_subplots

from advhpo.dashboards._eps_cache import EpsCurve
from advhpo.dashboards._hypervolume import hypervolume_history
from advhpo.dashboards._importance import FRONT_TARGET, Importances
from advhpo.dashboards._study_data import BASELINE_ATTR, StudyData, curve_trials
from advhpo.search import MASKING_GAP, masking_flag

FRONT_COLOR = "#d62728"
DOMINATED_COLOR = "#9e9e9e"
MASKING_COLOR = "#ff7f0e"
BASELINE_COLOR = "#111111"
# One colour per front trial, the same in every figure; repeats after 24 trials.
_TRIAL_COLORS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd",
    "#e6550d", "#31a354", "#756bb1", "#636363", "#6baed6", "#fd8d3c", "#74c476", "#9e9ac8",
)  # fmt: skip
_HEIGHT = 520
_TEMPLATE = "plotly_white"
_NA = "n/a"


def trial_label(trial: FrozenTrial) -> str:
    """``#12``, or ``#0 thesis-mnist`` for a baseline trial."""
    baseline = trial.user_attrs.get(BASELINE_ATTR)
    return f"#{trial.number}" + (f" {baseline}" if baseline else "")


def trial_colors(data: StudyData) -> dict[int, str]:
    """A colour per trial of :func:`curve_trials`, by trial number."""
    return {
        t.number: _TRIAL_COLORS[i % len(_TRIAL_COLORS)] for i, t in enumerate(curve_trials(data))
    }


def pareto_figure(data: StudyData) -> go.Figure:
    """Clean vs FGSM accuracy of every completed trial, the front highlighted.

    The front is drawn as the staircase bounding the area it dominates; trials whose FGSM
    accuracy exceeds their PGD accuracy by more than the masking gap are ringed; thesis
    baselines are stars. Hovering a point shows its accuracies and parameters.
    """
    baseline_numbers = {t.number for t in data.baselines}
    special = baseline_numbers | {t.number for t in data.front}  # baselines: stars, front or not
    eps = data.settings.eval_eps
    fig = go.Figure()
    others = [t for t in data.trials if t.number not in special]
    fig.add_trace(_points(others, "other trials", DOMINATED_COLOR, size=6, opacity=0.55, data=data))
    front = sorted(data.front, key=lambda t: _v(t, 0))
    fig.add_trace(
        go.Scatter(
            x=[_v(t, 0) for t in front],
            y=[_v(t, 1) for t in front],
            mode="lines",
            line={"color": FRONT_COLOR, "width": 2, "shape": "vh"},
            name="Pareto front",
            hoverinfo="skip",
        )
    )
    fig.add_trace(
        _points(
            [t for t in front if t.number not in baseline_numbers],
            "front trials",
            FRONT_COLOR,
            size=10,
            data=data,
        )
    )
    masked = [t for t in data.front if masking_flag(t)]
    if masked:
        fig.add_trace(
            go.Scatter(
                x=[_v(t, 0) for t in masked],
                y=[_v(t, 1) for t in masked],
                mode="markers",
                marker={
                    "symbol": "circle-open",
                    "size": 20,
                    "color": MASKING_COLOR,
                    "line": {"width": 2},
                },
                name=f"gradient masking? (FGSM − PGD > {MASKING_GAP:g})",
                hoverinfo="skip",
            )
        )
    if data.baselines:
        fig.add_trace(
            _points(
                data.baselines,
                "thesis baselines",
                BASELINE_COLOR,
                size=16,
                symbol="star",
                data=data,
                text=[str(t.user_attrs.get(BASELINE_ATTR)) for t in data.baselines],
            )
        )
    fig.update_layout(
        title=f"Clean vs FGSM accuracy (eps = {eps:g}, validation split)",
        xaxis_title="clean accuracy",
        yaxis_title=f"FGSM accuracy at eps = {eps:g}",
        legend={"orientation": "h", "y": -0.15},
        hovermode="closest",
    )
    return _finish(fig)


def hypervolume_figure(data: StudyData) -> go.Figure:
    """Hypervolume of the clean/FGSM front (reference (0, 0)) after each completed trial."""
    history = hypervolume_history((_v(t, 0), _v(t, 1)) for t in data.trials)
    order = list(range(1, len(history) + 1))
    fig = go.Figure(
        go.Scatter(
            x=order,
            y=history,
            mode="lines+markers" if len(history) <= 200 else "lines",
            line={"shape": "hv", "color": FRONT_COLOR},
            marker={"size": 5},
            customdata=[t.number for t in data.trials],
            hovertemplate="completed trial %{x} (trial #%{customdata})<br>"
            "hypervolume %{y:.4f}<extra></extra>",
            name="hypervolume",
        )
    )
    fig.update_layout(
        title="Hypervolume of the front after each completed trial (reference point (0, 0))",
        xaxis_title="completed trials, in completion order",
        yaxis_title="hypervolume (clean × FGSM accuracy)",
        showlegend=False,
    )
    return _finish(fig)


def importance_figure(importances: Importances, objectives: Sequence[str]) -> go.Figure:
    """Horizontal bars: each parameter's share of importance for each objective and the front."""
    fig = go.Figure()
    if importances.note is not None or not any(importances.by_target.values()):
        note = importances.note or (
            f"all parameters look alike in the best trials of {importances.n_trials}: "
            "run more trials"
        )
        return _empty(fig, note, "Hyperparameter importance (PED-ANOVA)")
    params = sorted(
        {p for shares in importances.by_target.values() for p in shares},
        key=lambda p: importances.by_target.get(FRONT_TARGET, {}).get(p, 0.0),
    )  # least important first: Plotly draws the first category at the bottom
    labels = {FRONT_TARGET: "reaching the front", **{o: o for o in objectives}}
    for target in (*objectives, FRONT_TARGET):
        shares = importances.by_target.get(target, {})
        fig.add_trace(
            go.Bar(
                y=params,
                x=[shares.get(p, 0.0) for p in params],
                orientation="h",
                name=labels[target],
                hovertemplate="%{y}: %{x:.1%}<extra>" + html.escape(labels[target]) + "</extra>",
            )
        )
    fig.update_layout(
        title=f"Hyperparameter importance (PED-ANOVA, {importances.n_trials} searched trials)",
        barmode="group",
        xaxis={"title": "share of importance", "tickformat": ".0%"},
        height=max(_HEIGHT, 90 * len(params)),
        legend={"orientation": "h", "y": -0.15},
    )
    return _finish(fig)


def parallel_figure(data: StudyData) -> go.Figure:
    """Parallel coordinates of every searched trial's parameters and objectives.

    Log-scaled parameters get log axes; categorical ones one tick per choice; a parameter a
    trial does not have (``adv_eps`` without adversarial training) sits at ``n/a`` below the
    axis' range. Lines are coloured by FGSM accuracy.
    """
    trials = [t for t in data.trials if not t.user_attrs.get(BASELINE_ATTR)]
    title = "Parameters and objectives of the searched trials"
    if not trials:
        return _empty(go.Figure(), "only baseline trials have completed", title)
    names: dict[str, BaseDistribution] = {}
    for t in trials:
        for name, dist in t.distributions.items():
            names.setdefault(name, dist)
    dims = [_param_dimension(name, dist, trials) for name, dist in names.items()]
    for i, objective in enumerate(data.objectives):
        dims.append({"label": objective, "values": [_v(t, i) for t in trials]})
    fig = go.Figure(
        go.Parcoords(
            dimensions=dims,
            line={
                "color": [_v(t, 1) for t in trials],
                "colorscale": "Viridis",
                "showscale": True,
                "colorbar": {"title": {"text": "FGSM acc"}},
            },
            labelangle=-20,
        )
    )
    fig.update_layout(title=title, margin={"l": 70, "r": 40, "t": 110, "b": 40})
    return _finish(fig)


def eps_curve_figure(data: StudyData, curves: Mapping[int, EpsCurve], source: str) -> go.Figure:
    """Accuracy vs L∞ radius under FGSM (left) and PGD (right) for the front and baselines.

    Args:
        data: The study.
        curves: A curve per trial number (stored validation ones or measured test ones).
        source: Where the curves come from, for the title.
    """
    fig = make_subplots(rows=1, cols=2, subplot_titles=("FGSM", "PGD"), shared_yaxes=True)
    colors = trial_colors(data)
    pgd_points = False
    for t in curve_trials(data):
        curve = curves.get(t.number)
        if curve is None:
            continue
        style = _trial_style(t, colors)
        label = html.escape(trial_label(t))
        fig.add_trace(
            go.Scatter(
                x=list(curve.eps),
                y=list(curve.fgsm_acc),
                name=label,
                legendgroup=label,
                hovertemplate=f"{label} ({curve.split})<br>eps %{{x:g}}: %{{y:.3f}}<extra></extra>",
                **style,
            ),
            row=1,
            col=1,
        )
        if curve.pgd_acc is not None:
            pgd_x, pgd_y = list(curve.eps), list(curve.pgd_acc)
        elif isinstance(t.user_attrs.get("pgd_acc"), int | float):
            # The workers store PGD at the evaluation radius only: one point per trial.
            pgd_x, pgd_y, pgd_points = [data.settings.eval_eps], [t.user_attrs["pgd_acc"]], True
        else:
            continue
        fig.add_trace(
            go.Scatter(
                x=pgd_x,
                y=pgd_y,
                name=label,
                legendgroup=label,
                showlegend=False,
                hovertemplate=f"{label} ({curve.split})<br>eps %{{x:g}}: %{{y:.3f}}<extra></extra>",
                **{**style, "mode": "lines+markers" if len(pgd_x) > 1 else "markers"},
            ),
            row=1,
            col=2,
        )
    if not fig.data:
        return _empty(go.Figure(), "no trial of the front has an eps curve", source)
    if pgd_points:
        fig.add_annotation(
            text="PGD at the evaluation eps only; `advhpo report --test` measures the curves",
            xref="x2 domain",
            yref="y2 domain",
            x=0.5,
            y=1.0,
            showarrow=False,
            font={"size": 11},
        )
    fig.update_xaxes(title_text="eps (L∞, pixel units)", matches="x")
    fig.update_yaxes(title_text="accuracy", range=[0, 1.02], row=1, col=1)
    fig.update_yaxes(showticklabels=True, row=1, col=2)
    fig.update_layout(title=f"Accuracy vs eps of the front trials ({source})")
    return _finish(fig)


def learning_figure(data: StudyData) -> go.Figure:
    """Per-epoch curves of the front trials: validation accuracy (left), training loss (right).

    Validation accuracy comes from the ``epoch_values`` user attribute (clean solid, FGSM
    dotted); the loss is the mean over members of ``epoch_history``.
    """
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("validation accuracy per epoch (clean —, FGSM ···)", "training loss"),
    )
    colors = trial_colors(data)
    has_values = False
    for t in curve_trials(data):
        style = _trial_style(t, colors)
        label = html.escape(trial_label(t))
        shown = False
        values = _epoch_values(t)
        if values:
            has_values = True
            epochs = [v[0] for v in values]
            for col, (name, dash) in enumerate((("clean", "solid"), ("FGSM", "dot")), start=1):
                fig.add_trace(
                    go.Scatter(
                        x=epochs,
                        y=[v[col] for v in values],
                        name=label,
                        legendgroup=label,
                        showlegend=not shown,
                        hovertemplate=f"{label} epoch %{{x}}<br>{name} %{{y:.3f}}<extra></extra>",
                        **{**style, "line": {**style["line"], "dash": dash}},
                    ),
                    row=1,
                    col=1,
                )
                shown = True
        losses = _mean_losses(t)
        if losses:
            fig.add_trace(
                go.Scatter(
                    x=[e for e, _ in losses],
                    y=[loss for _, loss in losses],
                    name=label,
                    legendgroup=label,
                    showlegend=not shown,
                    hovertemplate=f"{label} epoch %{{x}}<br>loss %{{y:.4f}}<extra></extra>",
                    **style,
                ),
                row=1,
                col=2,
            )
    if not fig.data:
        return _empty(go.Figure(), "the front trials recorded no epochs", "Learning curves")
    if not has_values:
        fig.add_annotation(
            text="no per-epoch validation recorded (epoch_values)",
            xref="x domain",
            yref="y domain",
            x=0.5,
            y=0.5,
            showarrow=False,
        )
    fig.update_xaxes(title_text="epoch", dtick=1)
    fig.update_yaxes(title_text="accuracy", range=[0, 1.02], row=1, col=1)
    fig.update_yaxes(title_text="cross-entropy", row=1, col=2)
    fig.update_layout(title="Learning curves of the front trials")
    return _finish(fig)


def hover_text(trial: FrozenTrial, data: StudyData) -> str:
    """A trial's hover label: accuracies, PGD, cost, parameters (three per line), flags."""
    clean, adv = _v(trial, 0), _v(trial, 1)
    pgd = trial.user_attrs.get("pgd_acc")
    lines = [f"<b>{html.escape(trial_label(trial))}</b>"]
    acc = f"clean {clean:.4f} · FGSM {adv:.4f}"
    if isinstance(pgd, int | float):
        acc += f" · PGD {pgd:.4f}"
    lines.append(acc)
    seconds = trial.user_attrs.get("train_seconds")
    if isinstance(seconds, int | float):
        lines.append(f"training {seconds:.1f} s")
    items = [
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items()
    ]
    lines.extend(html.escape(" ".join(items[i : i + 3])) for i in range(0, len(items), 3))
    if masking_flag(trial):
        lines.append(f"⚠ FGSM − PGD > {MASKING_GAP:g}: gradient masking?")
    return "<br>".join(lines)


def _points(
    trials: Sequence[FrozenTrial],
    name: str,
    color: str,
    *,
    size: int,
    data: StudyData,
    opacity: float = 1.0,
    symbol: str = "circle",
    text: Sequence[str] | None = None,
) -> go.Scatter:
    return go.Scatter(
        x=[_v(t, 0) for t in trials],
        y=[_v(t, 1) for t in trials],
        mode="markers+text" if text else "markers",
        text=list(text) if text else None,
        textposition="top center",
        marker={
            "color": color,
            "size": size,
            "symbol": symbol,
            "opacity": opacity,
            "line": {"width": 0.5, "color": "white"},
        },
        name=name,
        hovertext=[hover_text(t, data) for t in trials],
        hoverinfo="text",
    )


def _param_dimension(
    name: str, dist: BaseDistribution, trials: Sequence[FrozenTrial]
) -> dict[str, Any]:
    """One parcoords axis; missing values are placed at an ``n/a`` tick below the range."""
    raw = [t.params.get(name) for t in trials]
    if isinstance(dist, CategoricalDistribution):
        choices = list(dist.choices)
        index = {c: i for i, c in enumerate(choices)}
        values = [index.get(v, -1) for v in raw]
        ticks = list(range(len(choices)))
        text = [str(c) for c in choices]
        if -1 in values:
            ticks, text = [-1, *ticks], [_NA, *text]
        return {
            "label": name,
            "values": values,
            "tickvals": ticks,
            "ticktext": text,
            "range": [ticks[0] - 0.1, ticks[-1] + 0.1],
        }
    log = isinstance(dist, FloatDistribution | IntDistribution) and dist.log
    present = [float(v) for v in raw if isinstance(v, int | float)]
    low = float(getattr(dist, "low", min(present, default=0.0)))
    high = float(getattr(dist, "high", max(present, default=1.0)))
    lo, hi = (math.log10(low), math.log10(high)) if log else (low, high)
    if hi <= lo:
        hi = lo + 1.0
    axis = [lo + (hi - lo) * i / 4 for i in range(5)]
    labels = [_tick(10**x if log else x) for x in axis]
    bottom = lo - 0.12 * (hi - lo) if any(v is None for v in raw) else lo
    coords = [bottom if v is None else math.log10(float(v)) if log else float(v) for v in raw]
    if bottom < lo:
        axis, labels = [bottom, *axis], [_NA, *labels]
    return {
        "label": f"{name} (log)" if log else name,
        "values": coords,
        "tickvals": axis,
        "ticktext": labels,
        "range": [bottom, hi],
    }


def _tick(x: float) -> str:
    return f"{x:.2g}" if abs(x) < 0.01 and x != 0 else f"{x:.3g}"


def _trial_style(trial: FrozenTrial, colors: Mapping[int, str]) -> dict[str, Any]:
    color = colors.get(trial.number, BASELINE_COLOR)
    baseline = bool(trial.user_attrs.get(BASELINE_ATTR))
    return {
        "mode": "lines+markers",
        "line": {"color": color, "width": 2, "dash": "dash" if baseline else "solid"},
        "marker": {"color": color, "size": 6, "symbol": "star" if baseline else "circle"},
    }


def _epoch_values(trial: FrozenTrial) -> list[tuple[int, float, float]]:
    """``(epoch, clean, fgsm)`` rows of the ``epoch_values`` user attribute, malformed skipped."""
    rows = []
    raw = trial.user_attrs.get("epoch_values")
    for v in raw if isinstance(raw, list) else []:
        try:
            rows.append((int(v["epoch"]), float(v["clean_acc"]), float(v["fgsm_acc"])))
        except (KeyError, TypeError, ValueError):
            continue
    return sorted(rows)


def _mean_losses(trial: FrozenTrial) -> list[tuple[int, float]]:
    """Mean training loss over members per epoch, from ``epoch_history``."""
    sums: dict[int, list[float]] = {}
    raw = trial.user_attrs.get("epoch_history")
    for member in raw if isinstance(raw, list) else []:
        for record in member if isinstance(member, list) else []:
            try:
                loss = float(record["loss"])
                epoch = int(record["epoch"])
            except (KeyError, TypeError, ValueError):
                continue
            if math.isfinite(loss):
                sums.setdefault(epoch, []).append(loss)
    return [(e, sum(v) / len(v)) for e, v in sorted(sums.items())]


def _v(trial: FrozenTrial, i: int) -> float:
    assert trial.values is not None
    return float(trial.values[i])


def _empty(fig: go.Figure, message: str, title: str) -> go.Figure:
    fig.add_annotation(
        text=html.escape(message),
        xref="paper",
        yref="paper",
        x=0.5,
        y=0.5,
        showarrow=False,
        font={"size": 15},
    )
    fig.update_layout(title=title, xaxis={"visible": False}, yaxis={"visible": False}, height=260)
    return _finish(fig)


def _finish(fig: go.Figure) -> go.Figure:
    fig.update_layout(template=_TEMPLATE)
    if fig.layout.height is None:
        fig.update_layout(height=_HEIGHT)
    return fig
