"""Study commands: ``run``, ``resume``, ``status``, ``pareto``, ``studies``."""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from advhpo.cli._common import (
    eps_option,
    err_console,
    new_progress,
    one_line_errors,
    positive_int,
)
from advhpo.cli._train import DatasetName

if TYPE_CHECKING:
    import optuna


def study_name_arg(value: str) -> str:
    """Typer callback: a new study needs a name that shows in listings and the dashboard."""
    if not value.strip():
        raise typer.BadParameter("a study name must not be blank")
    return value


def positive_seconds(value: float | None) -> float | None:
    """Typer callback: a time limit must be a positive number of seconds."""
    if value is not None and not value > 0:  # also refuses nan
        raise typer.BadParameter(f"must be > 0 seconds, got {value}")
    return value


def share_arg(value: float | None) -> float | None:
    """Typer callback: a share of trials in (0, 1]."""
    if value is not None and not 0 < value <= 1:  # also refuses nan
        raise typer.BadParameter(f"must be in (0, 1], got {value}")
    return value


StorageOpt = Annotated[
    str | None,
    typer.Option(help="SQLAlchemy URL (env: ADVHPO_STORAGE; default sqlite:///advhpo.db)."),
]
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        callback=positive_int,
        help="Worker processes on this host (default: 1 on the CPU, one per GPU slot).",
    ),
]
DevicesOpt = Annotated[str, typer.Option(help="auto, cpu, or cuda:0,cuda:1,…")]
PerGpuOpt = Annotated[int, typer.Option(callback=positive_int, help="Workers sharing one GPU.")]
DataDirOpt = Annotated[Path | None, typer.Option(help="Dataset folder (env: ADVHPO_DATA_DIR).")]
OfflineOpt = Annotated[bool, typer.Option(help="Never download datasets.")]
ArtifactsOpt = Annotated[
    Path | None,
    typer.Option(
        help="Checkpoint folder (default: X.artifacts beside a SQLite file X.db, "
        "./advhpo-artifacts for a server database)."
    ),
]
TimeoutOpt = Annotated[
    float | None,
    typer.Option(callback=positive_seconds, help="Start no new trial after this many seconds."),
]
QuietOpt = Annotated[bool, typer.Option(help="No progress bar or per-trial lines.")]


def _grace_seconds(value: int) -> int:
    # The heartbeat comes every grace/6 s, at least every second: a grace of one second would
    # judge a healthy trial lost between two heartbeats.
    if value < 2:
        raise typer.BadParameter(f"must be >= 2 (seconds), got {value}")
    return value


GraceOpt = Annotated[
    int,
    typer.Option(
        callback=_grace_seconds,
        help="Seconds without a heartbeat (sent every grace/6 s) before a trial of these "
        "workers counts as lost and is retried from its checkpoint; stored on each trial, so "
        "every host judges it by this.",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object, nothing else.")]


def run(
    name: Annotated[str, typer.Argument(callback=study_name_arg, help="Study name.")],
    dataset: Annotated[DatasetName, typer.Option(help="Dataset of every trial.")],
    storage: StorageOpt = None,
    trials: Annotated[
        int,
        typer.Option(
            callback=positive_int,
            help="Trials wanted across all hosts: COMPLETE plus early-stopped.",
        ),
    ] = 20,
    workers: WorkersOpt = None,
    devices: DevicesOpt = "auto",
    trials_per_gpu: PerGpuOpt = 1,
    epochs: Annotated[int, typer.Option(callback=positive_int, help="Epochs per trial.")] = 2,
    train_subset: Annotated[
        int | None, typer.Option(callback=positive_int, help="Training images per trial.")
    ] = 6000,
    eval_subset: Annotated[
        int | None, typer.Option(callback=positive_int, help="Validation images per trial.")
    ] = 1000,
    eval_eps: Annotated[
        float | None,
        typer.Option(callback=eps_option, help="FGSM objective radius (0.3 MNIST, 0.05 CIFAR)."),
    ] = None,
    sampler: Annotated[
        str | None,
        typer.Option(
            help="gp, tpe, nsga2 or random. Default: an existing study's own, else gp "
            "(docs/results.md says why)."
        ),
    ] = None,
    space: Annotated[
        Path | None, typer.Option(help="TOML file overriding parts of the search space.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Base seed of the study.")] = 0,
    cost: Annotated[
        bool, typer.Option(help="Also minimise training seconds (a third objective).")
    ] = False,
    epoch_eval: Annotated[
        int,
        typer.Option(
            min=0, help="Validation images scored (clean, FGSM) after every epoch; 0: none."
        ),
    ] = 500,
    early_stop: Annotated[
        float | None,
        typer.Option(
            callback=share_arg,
            help="Stop a trial after an epoch when this share (in (0, 1]) of the completed "
            "trials' points at that epoch dominate its own (e.g. 0.5); stopped trials count "
            "against --trials.",
        ),
    ] = None,
    early_stop_min_trials: Annotated[
        int,
        typer.Option(callback=positive_int, help="Completed trials needed before any stop."),
    ] = 5,
    baselines: Annotated[
        bool,
        typer.Option(
            help="Enqueue the thesis net, undefended and FGSM-trained, as the first trials."
        ),
    ] = False,
    data_dir: DataDirOpt = None,
    offline: OfflineOpt = False,
    artifacts: ArtifactsOpt = None,
    timeout: TimeoutOpt = None,
    grace_period: GraceOpt = 60,
    quiet: QuietOpt = False,
    create_only: Annotated[
        bool,
        typer.Option(
            help="Create (or check) the study and exit: the one-time init step of a "
            "multi-host deployment, whose workers then join with `advhpo resume`."
        ),
    ] = False,
) -> None:
    """Create the study if absent and run workers until TRIALS trials are complete or stopped
    early."""
    with one_line_errors():
        from advhpo.search import (
            DEFAULT_SAMPLER,
            StudySettings,
            default_eval_eps,
            load_space_file,
        )

        settings = StudySettings(
            dataset=dataset.value,
            budget=trials,
            eval_eps=default_eval_eps(dataset.value) if eval_eps is None else eval_eps,
            epochs=epochs,
            train_subset=train_subset,
            eval_subset=eval_subset,
            seed=seed,
            sampler=DEFAULT_SAMPLER if sampler is None else sampler,
            space=None if space is None else load_space_file(space),
            cost=cost,
            epoch_eval=epoch_eval,
            early_stop=early_stop,
            early_stop_min_trials=early_stop_min_trials,
        )
        _run(
            name,
            storage,
            settings,
            create=True,
            workers=workers,
            devices=devices,
            trials_per_gpu=trials_per_gpu,
            data_dir=data_dir,
            offline=offline,
            artifacts=artifacts,
            timeout=timeout,
            grace_period=grace_period,
            quiet=quiet,
            create_only=create_only,
            baselines=baselines,
            # Studies made before GP became the default were TPE; rerunning their command
            # must continue them, not report a conflict over a flag the user never gave.
            stored_sampler=sampler is None,
        )


def resume(
    name: Annotated[str, typer.Argument(help="Study name.")],
    storage: StorageOpt = None,
    workers: WorkersOpt = None,
    devices: DevicesOpt = "auto",
    trials_per_gpu: PerGpuOpt = 1,
    data_dir: DataDirOpt = None,
    offline: OfflineOpt = False,
    artifacts: ArtifactsOpt = None,
    timeout: TimeoutOpt = None,
    grace_period: GraceOpt = 60,
    quiet: QuietOpt = False,
) -> None:
    """Continue a study to its budget with its stored settings (lost trials are retried)."""
    with one_line_errors():
        from advhpo.search import fail_stale_trials, stored_settings
        from advhpo.storage import open_storage

        rdb = open_storage(storage, create=False, **_heartbeat(grace_period))
        study = _load(name, rdb)
        fail_stale_trials(study)
        _run(
            name,
            storage,
            stored_settings(study),
            rdb=rdb,
            create=False,
            workers=workers,
            devices=devices,
            trials_per_gpu=trials_per_gpu,
            data_dir=data_dir,
            offline=offline,
            artifacts=artifacts,
            timeout=timeout,
            grace_period=grace_period,
            quiet=quiet,
        )


def _run(
    name: str,
    storage_url: str | None,
    settings: Any,
    *,
    rdb: Any = None,
    create: bool,
    workers: int | None,
    devices: str,
    trials_per_gpu: int,
    data_dir: Path | None,
    offline: bool,
    artifacts: Path | None,
    timeout: float | None,
    grace_period: int,
    quiet: bool,
    create_only: bool = False,
    baselines: bool = False,
    stored_sampler: bool = False,
) -> None:
    import optuna

    from advhpo.objectives import load_raw
    from advhpo.search import (
        RunOptions,
        StudyInterrupted,
        baseline_params,
        create_or_check_study,
        place_workers,
    )
    from advhpo.storage import (
        CheckpointStore,
        check_url,
        default_artifact_dir,
        mask_url,
        open_storage,
        resolve_storage_url,
    )

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own lines say what happens
    url = resolve_storage_url(storage_url)
    check_url(url)
    if baselines:
        baseline_params(settings)  # a space without the thesis's values: before any file
    placements = None
    if not create_only:
        # Bad devices and missing data must fail before any database file or study is created.
        placements = place_workers(devices, workers, trials_per_gpu)
        # Else every trial would fail on its first checkpoint.
        CheckpointStore(artifacts or default_artifact_dir(url)).check_writable()
        if rdb is None:
            # Rerunning a study's command with another dataset must say so before that dataset
            # is downloaded (or found missing offline), not after.
            _check_stored_study(name, url, settings, stored_sampler)
        # Fetch (or check) the dataset once here: parallel workers must not race to download it.
        load_raw(settings.dataset, data_dir, offline=offline)
    if rdb is None:  # resume passes the storage it already opened: one pool per launcher
        rdb = open_storage(url, create=create, **_heartbeat(grace_period))
    if stored_sampler:
        settings = _with_stored_sampler(name, rdb, settings)
    create_or_check_study(name, rdb, settings, baselines=baselines)
    if create_only or placements is None:
        if not quiet:
            err_console.print(f"study {name} ready on {mask_url(url)}: {settings.budget} trials")
        return
    options = RunOptions(
        storage_url=url,
        artifacts=str(artifacts or default_artifact_dir(url)),
        data_dir=None if data_dir is None else str(data_dir),
        offline=offline,
        placements=placements,
        timeout=timeout,
        **_heartbeat(grace_period),
    )
    if not quiet:
        err_console.print(
            f"study {name} on {mask_url(url)}: {settings.budget} trials, "
            f"{len(options.placements)} worker(s) on {options.placements[0].device}"
        )
    interrupted: StudyInterrupted | None = None
    try:
        failed = _with_progress(name, settings.budget, options, rdb, quiet)
    except StudyInterrupted as e:
        interrupted, failed = e, {}
    study = _load(name, rdb)
    if not quiet:
        _print_front(study)
    if interrupted is not None:
        # Not a success: the budget is unmet (scripts, `&&` chains and supervisors must see
        # it); 128 + the signal, as a shell reports a process it stopped.
        err_console.print(
            f"interrupted ({interrupted}): running trials were "
            f"checkpointed and queued again; `advhpo resume {name}` continues the study"
        )
        raise typer.Exit(128 + interrupted.signum)
    if failed:
        codes = ", ".join(f"worker {i}: exit code {code}" for i, code in failed.items())
        err_console.print(f"[bold red]error:[/] {len(failed)} worker(s) failed ({codes})")
        raise typer.Exit(1)


def _with_stored_sampler(name: str, rdb: Any, settings: Any) -> Any:
    """``settings`` with the sampler of the stored study ``name``, if advhpo made one."""
    import dataclasses

    from advhpo._errors import ConfigError
    from advhpo.search import stored_settings

    try:
        existing = stored_settings(_load(name, rdb))
    except ConfigError:  # no such study, or not advhpo's: create_or_check_study decides
        return settings
    return dataclasses.replace(settings, sampler=existing.sampler)


def _check_stored_study(name: str, url: str, settings: Any, stored_sampler: bool) -> None:
    """Refuse ``settings`` if the database at ``url`` already holds study ``name`` with others.

    Creates nothing: a missing database (or one out of reach) is left for the real open, after
    the dataset check, to create or report.
    """
    import dataclasses

    from advhpo._errors import ConfigError, StorageError
    from advhpo.search import check_compatible, stored_settings
    from advhpo.storage import open_storage

    try:
        peek = open_storage(url, create=False)
    except StorageError:
        return
    try:
        try:
            study = _load(name, peek)
            stored = stored_settings(study)
        except ConfigError:  # no such study, or not advhpo's: create_or_check_study decides
            return
        if stored_sampler:
            settings = dataclasses.replace(settings, sampler=stored.sampler)
        check_compatible(study, settings)
    finally:
        peek.engine.dispose()


def _heartbeat(grace_period: int) -> dict[str, int]:
    # Six heartbeats per grace period: one slow write does not make a live trial look lost.
    return {"heartbeat_interval": max(1, grace_period // 6), "grace_period": grace_period}


def _with_progress(name: str, budget: int, options: Any, rdb: Any, quiet: bool) -> dict[int, int]:
    from advhpo.search import run_workers

    if quiet:
        return run_workers(name, budget, options, rdb, log=lambda s: None, status=lambda *a: None)
    with new_progress(transient=False) as bar:
        task = bar.add_task("trials", total=budget)

        def status(done: int, total: int, size: int, hv: float) -> None:
            bar.update(
                task,
                completed=done,
                total=total,
                description=f"trials · front {size} · HV {hv:.4f}",
            )

        return run_workers(name, budget, options, rdb, log=bar.console.print, status=status)


def status(
    name: Annotated[str, typer.Argument(help="Study name.")],
    storage: StorageOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Trials by state, budget, front size, hypervolume, best per objective, live workers."""
    with one_line_errors():
        from optuna.trial import TrialState

        from advhpo.search import (
            budget_counts,
            front_points,
            hypervolume,
            live_workers,
            settings_dict,
            stored_settings,
        )

        study = _open_existing(name, storage)
        settings = stored_settings(study)
        trials = study.get_trials(deepcopy=False)
        states = {s.name: sum(t.state == s for t in trials) for s in TrialState}
        spent = budget_counts(study)[0]
        points = front_points(study)
        report: dict[str, Any] = {
            "study": name,
            "budget": settings.budget,
            "spent": spent,
            "states": states,
            "front_size": len(points),
            "hypervolume": hypervolume(points),
            "best_clean_acc": max((p[0] for p in points), default=None),
            "best_fgsm_acc": max((p[1] for p in points), default=None),
            "live_workers": live_workers(study),
            "settings": settings_dict(settings),
        }
        if as_json:
            typer.echo(json.dumps(report))
            return
        from rich.console import Console

        out = Console()
        early = spent - states["COMPLETE"]
        out.print(
            f"study {name}: {spent}/{settings.budget} trials done"
            + (f" ({early} stopped early)" if early else "")
            + " · "
            + " · ".join(f"{k.lower()} {v}" for k, v in states.items() if v)
        )
        best = " · ".join(
            f"best {label} {value:.4f}"
            for label, value in (
                ("clean", report["best_clean_acc"]),
                ("fgsm", report["best_fgsm_acc"]),
            )
            if value is not None
        )
        out.print(
            f"front {report['front_size']} trials · hypervolume {report['hypervolume']:.4f}"
            + (f" · {best}" if best else "")
        )
        out.print(f"live workers: {', '.join(report['live_workers']) or 'none'}")


def pareto(
    name: Annotated[str, typer.Argument(help="Study name.")],
    storage: StorageOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The Pareto front: trial, clean and FGSM accuracy, PGD accuracy, masking flag, params."""
    with one_line_errors():
        from advhpo.search import front, masking_flag, stored_settings

        study = _open_existing(name, storage)
        stored_settings(study)  # a study advhpo did not make has other objectives: refuse it
        rows = [
            {
                "number": t.number,
                "values": t.values,
                "pgd_acc": t.user_attrs.get("pgd_acc"),
                "gradient_masking": masking_flag(t),
                "params": t.params,
            }
            for t in front(study)
        ]
        if as_json:
            typer.echo(json.dumps({"study": name, "front": rows}))
            return
        _print_front(study)


class ExportFormat(enum.StrEnum):
    csv = "csv"
    json = "json"


def export(
    name: Annotated[str, typer.Argument(help="Study name.")],
    storage: StorageOpt = None,
    fmt: Annotated[ExportFormat, typer.Option("--format", help="csv or json.")] = (
        ExportFormat.csv
    ),
) -> None:
    """Print every trial of the study (state, objectives, params, PGD accuracy, timings)."""
    with one_line_errors():
        from advhpo.search import export_text

        typer.echo(export_text(_open_existing(name, storage), fmt.value), nl=False)


def studies(storage: StorageOpt = None) -> None:
    """List the studies in the storage with their trial counts."""
    with one_line_errors():
        import optuna

        from advhpo.storage import open_storage

        for s in optuna.get_all_study_summaries(open_storage(storage, create=False)):
            typer.echo(f"{s.study_name}\t{s.n_trials} trials")


def _open_existing(name: str, storage_url: str | None) -> optuna.Study:
    """An existing study, read-only use: a missing database or study is an error."""
    from advhpo.storage import open_storage

    return _load(name, open_storage(storage_url, create=False))


def _load(name: str, rdb: Any) -> optuna.Study:
    import optuna

    from advhpo._errors import ConfigError

    try:
        return optuna.load_study(study_name=name, storage=rdb)
    except KeyError as e:
        raise ConfigError(f"no study named {name!r} in this storage") from e


def _print_front(study: optuna.Study) -> None:
    from rich.console import Console
    from rich.table import Table

    from advhpo.search import format_params, front, masking_flag

    best = front(study)
    if not best:
        Console().print(f"study {study.study_name}: no completed trial yet")
        return
    cost = len(study.directions) > 2  # a --cost study: show what each front trial cost
    table = Table(title=f"Pareto front of {study.study_name} (validation split)")
    for col in ("trial", "clean", "fgsm", "pgd", *(("train s",) if cost else ()), "masking?"):
        table.add_column(col)
    table.add_column("params")
    for t in best:
        assert t.values is not None
        pgd = t.user_attrs.get("pgd_acc")
        table.add_row(
            str(t.number),
            f"{t.values[0]:.4f}",
            f"{t.values[1]:.4f}",
            "-" if pgd is None else f"{pgd:.4f}",
            *((f"{t.values[2]:.0f}",) if cost else ()),
            "yes" if masking_flag(t) else "",
            format_params(t.params),
        )
    Console().print(table)
