"""In headless Chromium: the report renders every plot offline; the dashboard draws the front.

The browser is Debian's ``chromium`` ($ADVHPO_TEST_CHROMIUM), driven by Playwright; screenshots
go to ``test-artifacts/``.
"""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
import pytest
from optuna.trial import FrozenTrial

from advhpo.dashboards import FIGURES, load_study_data, write_report

if TYPE_CHECKING:  # imported where used: without Playwright the tests skip, not error
    from playwright.sync_api import Browser, Page, Route

# Software WebGL: the parallel-coordinates plot draws its lines with WebGL, and a headless
# machine has no GPU.
_ARGS = ["--enable-unsafe-swiftshader", "--use-angle=swiftshader"]
_TIMEOUT_MS = 30_000


@pytest.fixture
def browser(chromium: str) -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=_ARGS)
        try:
            yield b
        finally:
            b.close()


def _watch(page: Page, errors: list[str]) -> None:
    """Record page errors and console messages of type error."""
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)


def test_report_renders_every_plot_from_disk_with_the_network_off(
    browser: Browser,
    sqlite_url: str,
    new_study: Callable[..., optuna.Study],
    trial_factory: Callable[..., FrozenTrial],
    random_trials: Callable[[int, int], list[FrozenTrial]],
    tmp_path: Path,
    screenshots: Path,
) -> None:
    study = new_study(sqlite_url, "browser-report")
    study.add_trials(random_trials(40, 3))
    study.add_trial(trial_factory(0.5, 0.05, attrs={"baseline": "thesis-mnist"}))
    out = tmp_path / "report.html"
    write_report(load_study_data(study), out)

    context = browser.new_context(offline=True, viewport={"width": 1400, "height": 900})
    attempted: list[str] = []

    def only_files(route: Route) -> None:
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            attempted.append(route.request.url)
            route.abort()

    context.route("**/*", only_files)
    page = context.new_page()
    errors: list[str] = []
    _watch(page, errors)
    page.goto(out.as_uri())
    # Every figure drawn: Plotly marks its div and fills it with SVG (and WebGL for parcoords).
    page.wait_for_function(
        f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {len(FIGURES)}",
        timeout=_TIMEOUT_MS,
    )
    drawn = page.evaluate(
        """() => Array.from(document.querySelectorAll('.plotly-graph-div')).map(d => ({
            id: d.id,
            plotted: d.classList.contains('js-plotly-plot') && !!d._fullLayout,
            points: d.querySelectorAll('.scatterlayer .point').length,
            lines: d.querySelectorAll('.scatterlayer .js-line').length,
            bars: d.querySelectorAll('.barlayer .point').length,
            canvases: d.querySelectorAll('canvas').length,
            axes: d.querySelectorAll('.parcoords .y-axis').length,
        }))"""
    )
    page.screenshot(path=str(screenshots / "report.png"), full_page=True)
    context.close()

    by_id = {d["id"]: d for d in drawn}
    assert sorted(by_id) == sorted(f"fig-{name}" for name in FIGURES)
    assert all(d["plotted"] for d in drawn)
    assert by_id["fig-pareto"]["points"] >= 41  # every completed trial, front and baseline
    assert by_id["fig-hypervolume"]["lines"] >= 1
    assert by_id["fig-importance"]["bars"] > 0
    assert by_id["fig-parallel"]["canvases"] > 0 and by_id["fig-parallel"]["axes"] >= 8
    assert by_id["fig-eps"]["lines"] > 0 and by_id["fig-learning"]["lines"] > 0
    assert errors == []
    assert attempted == []


def _first_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """The process's first stdout line, or a failure with its stderr."""
    lines: queue.Queue[str] = queue.Queue()
    stdout = proc.stdout
    assert stdout is not None
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        proc.kill()
        raise AssertionError(f"no address printed in {timeout} s") from None


def test_dashboard_started_by_advhpo_draws_the_study_front(
    browser: Browser,
    tmp_path: Path,
    new_study: Callable[..., optuna.Study],
    random_trials: Callable[[int, int], list[FrozenTrial]],
    screenshots: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'dash.db'}"
    name = "browser-dashboard"
    study = new_study(url, name)
    study.add_trials(random_trials(12, 4))
    study_id = study._study_id

    proc = subprocess.Popen(
        [sys.executable, "-m", "advhpo", "dashboard", "--storage", url, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = _first_line(proc, timeout=60)
        assert line.startswith(f"optuna-dashboard for {url} on http://127.0.0.1:"), line
        address = line.split(" on ")[1].strip()

        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        elsewhere: list[str] = []

        def only_the_dashboard(route: Route) -> None:
            if route.request.url.startswith(address):
                route.continue_()
            else:
                elsewhere.append(route.request.url)
                route.abort()

        context.route("**/*", only_the_dashboard)
        page = context.new_page()
        errors: list[str] = []
        _watch(page, errors)

        page.goto(f"{address}dashboard")
        listed = page.get_by_text(name).first
        listed.wait_for(timeout=_TIMEOUT_MS)
        listed.click()  # into the study, as a user would (the app routes without reloading)
        page.wait_for_url(f"{address}dashboard/studies/{study_id}", timeout=_TIMEOUT_MS)
        page.wait_for_function(
            "document.querySelectorAll('#graph-pareto-front .scatterlayer .point').length >= 12",
            timeout=_TIMEOUT_MS,
        )
        assert page.get_by_text(f"{name} (id={study_id})").count() >= 1
        page.screenshot(path=str(screenshots / "dashboard.png"), full_page=True)
        context.close()
        assert errors == []
        assert elsewhere == []
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C: a clean stop
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0
