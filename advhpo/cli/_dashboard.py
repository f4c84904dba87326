"""Picture commands: ``dashboard`` (optuna-dashboard, live) and ``report`` (one HTML file)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from advhpo.cli._common import err_console, new_progress, one_line_errors, positive_int
from advhpo.cli._study import DataDirOpt, OfflineOpt, QuietOpt, StorageOpt

if TYPE_CHECKING:
    import datetime
    from collections.abc import Mapping

    from rich.progress import Progress

    from advhpo.dashboards import CheckpointCurves, StudyData

ArtifactsOpt = Annotated[
    Path | None,
    typer.Option(
        help="The study's artifact folder (default: X.artifacts beside a SQLite file X.db, "
        "./advhpo-artifacts for a server database)."
    ),
]


def dashboard(
    storage: StorageOpt = None,
    host: Annotated[
        str,
        typer.Option(
            help="Interface to listen on. The dashboard can edit and delete studies: "
            "0.0.0.0 exposes that to the whole network."
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="TCP port; 0 picks a free one.")
    ] = 8080,
    artifacts: ArtifactsOpt = None,
) -> None:
    """Serve optuna-dashboard on the storage: Pareto front, importances, trials, artifacts.

    Binds to 127.0.0.1 unless --host says otherwise, prints its address, serves until Ctrl-C.
    """
    with one_line_errors():
        import optuna

        from advhpo.dashboards import is_loopback, make_dashboard_server, server_url
        from advhpo.storage import default_artifact_dir, mask_url, open_storage
        from advhpo.storage import resolve_storage_url as resolve

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        url = resolve(storage)
        rdb = open_storage(url, create=False)
        folder = artifacts or default_artifact_dir(url)
        server = make_dashboard_server(rdb, host=host, port=port, artifacts=folder)
        try:
            # stdout, flushed: scripts and tests read the address from the first line.
            typer.echo(f"optuna-dashboard for {mask_url(url)} on {server_url(server)}")
            err_console.print(f"artifacts: {folder} · Ctrl-C stops", highlight=False)
            if not is_loopback(host):
                err_console.print(
                    f"[bold yellow]warning:[/] listening on {host}: anyone who reaches this "
                    "machine can read, edit and delete these studies",
                    highlight=False,
                )
            server.serve_forever()
        except KeyboardInterrupt:
            err_console.print("stopped")
        finally:
            server.server_close()


def report(
    name: Annotated[str, typer.Argument(help="Study name.")],
    storage: StorageOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="The HTML file to write.")] = Path(
        "report.html"
    ),
    test: Annotated[
        bool,
        typer.Option(
            "--test",
            help="Measure the front's FGSM and PGD eps curves on the test split from the "
            "trials' checkpoints (cached beside them: a second report is fast).",
        ),
    ] = False,
    test_subset: Annotated[
        int | None,
        typer.Option(
            callback=positive_int,
            help="Test images per trial with --test (default: the study's eval subset).",
        ),
    ] = None,
    data_dir: DataDirOpt = None,
    offline: OfflineOpt = False,
    artifacts: ArtifactsOpt = None,
    device: Annotated[str, typer.Option(help="Where --test computes: auto, cpu, cuda:N.")] = (
        "auto"
    ),
    quiet: QuietOpt = False,
) -> None:
    """Write one HTML report of the study that opens offline (plotly.js is inside the file).

    Front (baselines marked), hypervolume, importances, parameters, eps and learning curves.
    """
    start = time.perf_counter()
    with one_line_errors():
        import optuna

        from advhpo.cli._study import _open_existing
        from advhpo.dashboards import check_report_path, load_study_data, write_report
        from advhpo.storage import mask_url, resolve_storage_url

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        check_report_path(out)  # before minutes of --test measuring, not after
        url = resolve_storage_url(storage)
        bar = new_progress(transient=True)
        bar.disable = quiet or not err_console.is_terminal  # no stray lines in logs
        with bar:
            task = bar.add_task("reading trials", total=None)
            study = _open_existing(name, url)
            data = load_study_data(study)
            curves = None
            if test:
                # A retry's checkpoint records its original's start; originals may have failed.
                starts = {t.number: t.datetime_start for t in study.get_trials(deepcopy=False)}
                curves = _measure(
                    data, url, test_subset, data_dir, offline, artifacts, device, bar, starts
                )
            bar.update(task, description="building report")

            def progress(step: str, done: int, total: int) -> None:
                bar.update(task, description=step, completed=done, total=total)

            summary = write_report(
                data, out, test_curves=curves, source=mask_url(url), progress=progress
            )
        if not quiet and curves is not None:
            _say_curves(curves)
        typer.echo(
            f"wrote {summary.path}: {summary.n_trials} completed trials, front of "
            f"{summary.front_size}, hypervolume {summary.hypervolume:.4f}, "
            f"{summary.size_bytes / 1e6:.1f} MB, in {time.perf_counter() - start:.1f} s"
        )


def _measure(
    data: StudyData,
    url: str,
    test_subset: int | None,
    data_dir: Path | None,
    offline: bool,
    artifacts: Path | None,
    device_spec: str,
    bar: Progress,
    starts: Mapping[int, datetime.datetime | None],
) -> CheckpointCurves:
    """Test-set eps curves of the front and the baselines, under the progress bar ``bar``."""
    from advhpo.dashboards import checkpoint_eps_curves, curve_trials
    from advhpo.objectives import load_raw, resolve_device
    from advhpo.storage import CheckpointStore, default_artifact_dir

    device = resolve_device(device_spec)
    n = test_subset or data.settings.eval_subset
    test_set = load_raw(data.settings.dataset, data_dir, offline=offline)[1].head(n)
    store = CheckpointStore(artifacts or default_artifact_dir(url))
    task = bar.add_task("test-set eps curves (images)", total=None)

    def progress(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    try:
        return checkpoint_eps_curves(
            data.name, curve_trials(data), store, test_set, device, progress=progress, starts=starts
        )
    finally:
        bar.remove_task(task)


def _say_curves(curves: CheckpointCurves) -> None:
    err_console.print(
        f"test-set eps curves: {len(curves.measured)} measured, {len(curves.cached)} cached"
        + (f", {len(curves.missing)} without a checkpoint" if curves.missing else "")
        + (f", {len(curves.foreign)} with another study's" if curves.foreign else ""),
        highlight=False,
    )
    if curves.foreign:
        foreign = ", ".join(f"#{n}" for n in sorted(curves.foreign))
        err_console.print(
            f"[bold yellow]warning:[/] the checkpoint file of trial(s) {foreign} belongs to "
            "another study of this name (made again after a delete, or another database "
            "sharing --artifacts): the report shows their stored validation curves",
            highlight=False,
        )
    if curves.missing:
        missing = ", ".join(f"#{n}" for n in sorted(curves.missing))
        err_console.print(
            f"[bold yellow]warning:[/] no checkpoint for trial(s) {missing} (see --artifacts): "
            "the report shows their stored validation curves",
            highlight=False,
        )
    for error in curves.cache_errors:
        err_console.print(f"[bold yellow]warning:[/] {error}", highlight=False)
