"""The HTML report: self-contained, one figure per section, the front and its flags right."""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import plotly.graph_objects as go
import plotly.offline
import pytest
from optuna.trial import FrozenTrial

from advhpo.dashboards import (
    FIGURES,
    CheckpointCurves,
    EpsCurve,
    StudyData,
    load_study_data,
    render_report,
    write_report,
)
from advhpo.dashboards._plots import (
    eps_curve_figure,
    hypervolume_figure,
    learning_figure,
    parallel_figure,
    pareto_figure,
)
from advhpo.search import StudySettings, create_or_check_study, front_points, hypervolume
from advhpo.storage import open_storage


@pytest.fixture(scope="module")
def study(
    tmp_path_factory: pytest.TempPathFactory,
    trial_factory: Callable[..., FrozenTrial],
    random_trials: Callable[[int, int], list[FrozenTrial]],
) -> optuna.Study:
    """30 searched trials, a masking front trial, and a thesis baseline off the front.

    Module-scoped (tests only read it): creating a SQLite study takes about a second.
    """
    url = f"sqlite:///{tmp_path_factory.mktemp('report') / 'studies.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    settings = StudySettings(dataset="mnist", budget=50, eval_eps=0.3)
    s = create_or_check_study("mnist-demo", open_storage(url), settings)
    s.add_trials(random_trials(30, 0))
    s.add_trial(trial_factory(0.999, 0.5, attrs={"pgd_acc": 0.1}))  # on the front, masked
    s.add_trial(trial_factory(0.5, 0.05, attrs={"baseline": "thesis-mnist"}))
    return s


def _trace(fig: go.Figure, name: str) -> Any:
    return next(t for t in fig.data if t.name == name)


def test_the_page_is_self_contained_with_every_figure(study: optuna.Study) -> None:
    page = render_report(load_study_data(study))
    assert page.count("Plotly.newPlot(") == len(FIGURES) == 6
    assert len(re.findall(r"\* plotly\.js v\d", page)) == 1  # the library, embedded once
    assert not re.search(r"<script[^>]+src=", page)  # nothing fetched
    ours = page.replace(plotly.offline.get_plotlyjs(), "")
    assert "http" not in ours and "mathjax" not in ours.lower()
    for name in FIGURES:
        assert f'id="fig-{name}"' in page
    assert "mnist-demo" in page and "thesis-mnist" in page


def test_the_front_table_flags_gradient_masking(study: optuna.Study) -> None:
    page = render_report(load_study_data(study))
    table = page[page.index('<table class="front">') : page.index("</table>")]
    masked = re.search(r'<tr class="masked"><td>#30</td>.*?</tr>', table)
    assert masked and '<span class="flag">yes</span>' in masked.group(0)
    assert '<tr class="off-front"><td>#31 thesis-mnist</td>' in table


def test_pareto_figure_highlights_the_front_and_marks_baselines(study: optuna.Study) -> None:
    data = load_study_data(study)
    fig = pareto_figure(data)
    front = _trace(fig, "front trials")
    assert sorted(zip(front.x, front.y, strict=True)) == sorted(front_points(study))
    assert len(_trace(fig, "other trials").x) == 30 - len(data.front) + 1
    baselines = _trace(fig, "thesis baselines")
    assert list(baselines.text) == ["thesis-mnist"] and baselines.marker.symbol == "star"
    assert len(_trace(fig, "gradient masking? (FGSM − PGD > 0.2)").x) == 1
    hover = front.hovertext[0]
    assert "layers=" in hover and "PGD" in hover  # params and accuracies on hover


def test_no_baseline_trace_without_baselines(
    sqlite_url: str,
    new_study: Callable[..., optuna.Study],
    random_trials: Callable[[int, int], list[FrozenTrial]],
) -> None:
    s = new_study(sqlite_url, "plain")
    s.add_trials(random_trials(5, 1))
    names = {t.name for t in pareto_figure(load_study_data(s)).data}
    assert "thesis baselines" not in names and "front trials" in names


def test_hypervolume_history_ends_at_the_fronts_hypervolume(study: optuna.Study) -> None:
    data = load_study_data(study)
    ys = list(hypervolume_figure(data).data[0].y)
    assert len(ys) == len(data.trials)
    assert ys[-1] == pytest.approx(hypervolume(front_points(study)))
    assert ys == sorted(ys)


def test_parallel_coordinates_put_missing_params_at_na(study: optuna.Study) -> None:
    data = load_study_data(study)
    dims = {d.label: d for d in parallel_figure(data).data[0].dimensions}
    eps = dims["adv_eps"]
    searched = [t for t in data.trials if "baseline" not in t.user_attrs]
    assert len(eps.values) == len(searched)  # baselines left out
    na = eps.tickvals[list(eps.ticktext).index("n/a")]
    without = [t for t in searched if "adv_eps" not in t.params]
    assert without and sum(v == na for v in eps.values) == len(without)
    assert "lr (log)" in dims and set(dims["adv_method"].ticktext) == {"none", "fgsm", "fgsm_rs"}


def test_eps_curves_use_test_curves_when_measured(study: optuna.Study) -> None:
    data = load_study_data(study)
    stored = eps_curve_figure(data, {}, "nothing")
    assert stored.layout.annotations[0].text.startswith("no trial")
    top, other = data.front[-1].number, data.front[0].number
    assert top != other
    measured = EpsCurve((0.0, 0.3), (0.9, 0.6), (0.9, 0.2), "test", 100, 2)
    test = CheckpointCurves({top: measured}, measured=[top], missing=[other])
    page = render_report(data, test_curves=test)
    assert "test split, 100 images, from the trials' last checkpoints" in page
    assert f"#{other}: no checkpoint, validation split" in page
    foreign = CheckpointCurves({top: measured}, measured=[top], foreign=[other])
    assert f"#{other}: another study's checkpoint, validation split" in render_report(
        data, test_curves=foreign
    )

    def row(number: int) -> str:
        found = re.search(rf"<td>#{number}</td>.*?</tr>", page)
        assert found
        return found.group(0)

    assert "<td>0.6000</td><td>0.2000</td>" in row(top)  # test FGSM and PGD at eps 0.3
    # A trial without a checkpoint has no test numbers (its curve is the validation one).
    assert "<td>–</td><td>–</td>" in row(other)
    fig = eps_curve_figure(data, {top: measured}, "test")
    pgd = [t for t in fig.data if t.xaxis == "x2" and list(t.y) == [0.9, 0.2]]
    assert len(pgd) == 1  # a full PGD curve instead of one stored point


def test_learning_curves_show_per_epoch_validation_and_loss(
    sqlite_url: str,
    new_study: Callable[..., optuna.Study],
    trial_factory: Callable[..., FrozenTrial],
) -> None:
    s = new_study(sqlite_url, "epochs")
    s.add_trial(trial_factory(0.9, 0.4))
    s.add_trial(trial_factory(0.8, 0.5, attrs={"epoch_values": None}))  # older worker
    fig = learning_figure(load_study_data(s))
    acc = [t for t in fig.data if t.xaxis == "x"]
    loss = [t for t in fig.data if t.xaxis == "x2"]
    assert [list(t.y) for t in acc] == [[0.45, 0.9], [0.2, 0.4]]  # clean, FGSM of trial 0
    assert len(loss) == 2 and list(loss[0].y) == [2.0, 1.0]


def test_a_cost_study_reports_training_seconds(
    sqlite_url: str,
    new_study: Callable[..., optuna.Study],
    trial_factory: Callable[..., FrozenTrial],
    random_trials: Callable[[int, int], list[FrozenTrial]],
) -> None:
    s = new_study(sqlite_url, "cost", cost=True)
    for t in random_trials(12, 2):
        assert t.values is not None
        s.add_trial(trial_factory(*t.values, params=t.params, extra_values=(42.0,)))
    data = load_study_data(s)
    page = render_report(data)
    assert data.objectives[-1] == "train_seconds" and "train_seconds" in page
    dims = [d.label for d in parallel_figure(data).data[0].dimensions]
    assert dims[-3:] == ["clean_acc", "fgsm_acc", "train_seconds"]


def test_text_from_the_study_is_escaped(
    sqlite_url: str,
    new_study: Callable[..., optuna.Study],
    trial_factory: Callable[..., FrozenTrial],
) -> None:
    s = new_study(sqlite_url, "</script><b>x</b>")
    s.add_trial(trial_factory(0.9, 0.5, attrs={"baseline": "<img src=y>"}))
    page = render_report(load_study_data(s))
    assert "<b>x</b>" not in page and "<img src=y>" not in page
    assert "&lt;/script&gt;&lt;b&gt;x&lt;/b&gt;" in page


def test_write_report_writes_the_file_and_summarises(study: optuna.Study, tmp_path: Path) -> None:
    steps: list[str] = []
    out = tmp_path / "sub" / "report.html"
    summary = write_report(load_study_data(study), out, progress=lambda s, d, t: steps.append(s))
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert summary.size_bytes == out.stat().st_size and summary.n_trials == 32
    assert summary.hypervolume == pytest.approx(hypervolume(front_points(study)))
    assert steps[0].startswith("importance") and steps[-1] == "done"
    assert not [p for p in out.parent.iterdir() if p.name != "report.html"]  # no temp file left


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_a_report_is_written_with_the_mode_a_new_file_gets(
    study: optuna.Study, tmp_path: Path, umask: int
) -> None:
    # Others on a shared host read a report when the umask lets them, as any file they get.
    out = tmp_path / "report.html"
    old = os.umask(umask)
    try:
        write_report(load_study_data(study), out)
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask


def test_report_data_survives_json(study: optuna.Study) -> None:
    # Every figure is plain JSON (numbers, strings), nothing Plotly would choke on offline.
    data: StudyData = load_study_data(study)
    for fig in (pareto_figure(data), parallel_figure(data), learning_figure(data)):
        json.loads(fig.to_json())
