"""A reproduction result shown: rich tables on the terminal, JSON and a plotly page on disk."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from advhpo.cli._common import CIFAR10_TEST_NOTE

if TYPE_CHECKING:
    import plotly.graph_objects as go

_DATASET = {"mnist": "MNIST", "cifar10": "CIFAR-10"}
_STAGE_COLOURS = {"undefended": "#d62728", "adversarial": "#1f77b4", "vote": "#2ca02c"}
_RUN_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b")


def _acc(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _test_set(result: dict[str, Any], n: int) -> str:
    note = f", {CIFAR10_TEST_NOTE}" if result["dataset"] == "cifar10" else ""
    return f"{n:,} test images{note}"


def _stage_labels(result: dict[str, Any]) -> dict[str, str]:
    members = result["fidelity"]["members"]
    return {"undefended": "undefended", "adversarial": "FGSM-trained", "vote": f"vote of {members}"}


def _footer(result: dict[str, Any], what: str) -> str:
    return (
        f"{what}; {result['n_train']:,} training images; {result['wall_seconds']:.0f} s wall on "
        f"{result['device']} ({result['host']}, {result['torch_threads']} threads, load "
        f"{result['load_avg']:g} at start)"
    )


def print_thesis(result: dict[str, Any]) -> None:
    """The comparison table (thesis beside ours, PGD beside FGSM) and the eps curves."""
    console = Console()
    fid, stages = result["fidelity"], result["stages"]
    table = Table(
        title=f"Thesis protocol · {_DATASET[result['dataset']]} · "
        f"{_test_set(result, result['n_eval'])}"
    )
    for name in ("", "thesis", "ours", f"ours, PGD-{fid['pgd_steps']}"):
        table.add_column(name, justify="left" if not name else "right")
    for row in result["rows"]:
        table.add_row(row["metric"], _acc(row["thesis"]), _acc(row["ours"]), _acc(row["ours_pgd"]))
    console.print(table)

    labels = _stage_labels(result)
    n_curve = stages["vote"]["eps_curve"]["n"]
    curves = Table(title=f"Accuracy vs eps ({_test_set(result, n_curve)})")
    curves.add_column("eps", justify="right")
    for key in stages:
        curves.add_column(f"{labels[key]} FGSM", justify="right")
        curves.add_column("PGD", justify="right")
    for i, eps in enumerate(stages["undefended"]["eps_curve"]["eps"]):
        cells = [f"{eps:g}"]
        for stage in stages.values():
            cells += [
                _acc(stage["eps_curve"]["fgsm_acc"][i]),
                _acc(stage["eps_curve"]["pgd_acc"][i]),
            ]
        curves.add_row(*cells)
    console.print(curves)
    seconds = ", ".join(
        f"{labels[k]} {s['train_seconds']:.0f} s train / {s['eval_seconds']:.0f} s eval"
        for k, s in stages.items()
    )
    epochs = _count(fid["epochs"], "epoch")
    console.print(_footer(result, f"{epochs} per net; {seconds}"), highlight=False)


def print_gan(result: dict[str, Any]) -> None:
    """FGSM accuracy per cycle, the equal-time comparison and the final scores."""
    console = Console()
    eps, n_cycle = result["eps"], result["n_cycle_eval"]
    cycles = Table(title=f"Generator training: accuracy per cycle (first {n_cycle:,} test images)")
    for name in ("schedule", "cycle", "ratio", "gen loss", "train s", "clean", f"FGSM({eps:g})"):
        cycles.add_column(name, justify="left" if name == "schedule" else "right")
    for run in [*result["schedules"], result["fgsm_training"]]:
        name = "FGSM training" if run["name"] == "fgsm" else run["name"]
        for c in run["cycles"]:
            gen_loss = "–" if c["gen_loss"] is None else f"{c['gen_loss']:.3f}"
            cycles.add_row(
                name,
                str(c["cycle"]),
                "–" if c["gen_ratio"] is None else str(c["gen_ratio"]),
                gen_loss,
                f"{c['train_seconds']:.0f}",
                _acc(c["clean_acc"]),
                _acc(c["fgsm_acc"]),
            )
            name = ""
    console.print(cycles)

    equal = Table(title=f"Equal training time: generator vs FGSM training (eps {eps:g})")
    for name in (
        "schedule",
        "train s",
        "clean",
        "FGSM",
        "FGSM-trained: epochs",
        "s",
        "clean",
        "FGSM",
    ):
        equal.add_column(name, justify="left" if name == "schedule" else "right")
    for row in result["equal_time"]:
        fgsm = row["fgsm_training"]
        equal.add_row(
            row["schedule"],
            f"{row['train_seconds']:.0f}",
            _acc(row["clean_acc"]),
            _acc(row["fgsm_acc"]),
            str(fgsm["cycle"]),
            f"{fgsm['train_seconds']:.0f}",
            _acc(fgsm["clean_acc"]),
            _acc(fgsm["fgsm_acc"]),
        )
    console.print(equal)

    pgd_steps = result["fidelity"]["pgd_steps"]
    final = Table(title="After the last cycle")
    for name in ("run", "images", "clean", f"FGSM({eps:g})", f"PGD-{pgd_steps}({eps:g})"):
        final.add_column(name, justify="left" if name == "run" else "right")
    for run in [*result["schedules"], result["fgsm_training"]]:
        f = run["final"]
        name = "FGSM training" if run["name"] == "fgsm" else f"generator {run['name']}"
        final.add_row(
            name, f"{f['n_eval']:,}", _acc(f["clean_acc"]), _acc(f["fgsm_acc"]), _acc(f["pgd_acc"])
        )
    console.print(final)
    what = f"{_count(result['fidelity']['epochs'], 'cycle')} (a cycle is one epoch)"
    if result.get("gen_input", "image") == "gradient":  # results saved before lack the key
        what += "; the generator sees the classifier's input gradient"
    console.print(_footer(result, what), highlight=False)


def thesis_figure(result: dict[str, Any]) -> go.Figure:
    """FGSM (solid) and PGD (dashed) accuracy against eps per stage, thesis figures as crosses."""
    import plotly.graph_objects as go

    fig = go.Figure()
    labels, steps = _stage_labels(result), result["fidelity"]["pgd_steps"]
    for key, stage in result["stages"].items():
        curve, colour = stage["eps_curve"], _STAGE_COLOURS[key]
        for attack, y, dash in (("FGSM", "fgsm_acc", "solid"), (f"PGD-{steps}", "pgd_acc", "dash")):
            fig.add_trace(
                go.Scatter(
                    x=curve["eps"],
                    y=curve[y],
                    name=f"{labels[key]} · {attack}",
                    mode="lines+markers",
                    line={"color": colour, "dash": dash},
                )
            )
    thesis, eps = result["thesis"], result["eps"]
    fig.add_trace(
        go.Scatter(
            x=[eps, eps, eps],
            y=[thesis["fgsm_before"], thesis["fgsm_after"], thesis["fgsm_vote"]],
            text=["thesis: undefended", "thesis: FGSM-trained", "thesis: vote"],
            name="thesis figures (FGSM)",
            mode="markers",
            marker={"symbol": "x", "size": 12, "color": list(_STAGE_COLOURS.values())},
        )
    )
    fig.add_vline(x=eps, line_dash="dot", line_color="grey")
    n_curve = result["stages"]["vote"]["eps_curve"]["n"]
    fig.update_layout(
        title=f"Thesis protocol, {_DATASET[result['dataset']]}: accuracy vs eps "
        f"({_test_set(result, n_curve)})",
        xaxis_title="L∞ radius eps (pixel units in [0, 1])",
        yaxis_title="accuracy",
        yaxis_range=[0, 1.02],
        template="plotly_white",
    )
    return fig


def gan_figure(result: dict[str, Any]) -> go.Figure:
    """FGSM and clean accuracy per cycle against cumulative training seconds, per run."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    eps = result["eps"]
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=(f"FGSM({eps:g}) accuracy", "clean accuracy")
    )
    runs = [*result["schedules"], result["fgsm_training"]]
    for i, run in enumerate(runs):
        name = "FGSM training" if run["name"] == "fgsm" else f"generator {run['name']}"
        colour = "#d62728" if run["name"] == "fgsm" else _RUN_COLOURS[i % len(_RUN_COLOURS)]
        x = [c["train_seconds"] for c in run["cycles"]]
        text = [f"cycle {c['cycle']}, ratio {c['gen_ratio']}" for c in run["cycles"]]
        for col, key in ((1, "fgsm_acc"), (2, "clean_acc")):
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=[c[key] for c in run["cycles"]],
                    text=text,
                    name=name,
                    legendgroup=name,
                    showlegend=col == 1,
                    mode="lines+markers",
                    line={"color": colour},
                ),
                row=1,
                col=col,
            )
    fig.update_xaxes(title_text="training seconds (cumulative)")
    fig.update_yaxes(range=[0, 1.02])
    fig.update_layout(
        title=f"GAN-style generator training vs FGSM training, MNIST, after every cycle "
        f"(first {result['n_cycle_eval']:,} test images)",
        template="plotly_white",
    )
    return fig


def write_files(result: dict[str, Any], out: Path, stem: str) -> list[Path]:
    """Write ``STEM.json`` (the result) and ``STEM.html`` (its plot, plotly.js inlined).

    Returns:
        The paths written.
    """
    out.mkdir(parents=True, exist_ok=True)
    data, page = out / f"{stem}.json", out / f"{stem}.html"
    data.write_text(json.dumps(result, indent=1) + "\n")
    fig = thesis_figure(result) if result["protocol"] == "thesis" else gan_figure(result)
    fig.write_html(page, include_plotlyjs=True)
    return [data, page]
