"""Creating a study and running its workers on this host, with progress and a summary."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState
from sqlalchemy.exc import SQLAlchemyError

from advhpo._errors import ConfigError
from advhpo.search._baselines import baseline_params, enqueue_baselines
from advhpo.search._budget import EARLY_STOP_ATTR, budget_counts, stopped_early
from advhpo.search._fail_reason import fail_reason
from advhpo.search._front import format_params, front_points, hypervolume
from advhpo.search._settings import (
    SETTINGS_ATTR,
    StudySettings,
    check_compatible,
)
from advhpo.search._worker import WorkerSpec, worker_main
from advhpo.storage import INTERRUPTED_ATTR

_POLL_SECONDS = 1.0


def create_or_check_study(
    name: str,
    storage: optuna.storages.BaseStorage,
    settings: StudySettings,
    *,
    baselines: bool = False,
) -> optuna.Study:
    """Create the study with ``settings``, or check an existing one has the same settings.

    Args:
        name: Study name.
        storage: Its storage.
        settings: The settings it must have.
        baselines: Enqueue the thesis baselines the study lacks. Default False.

    Raises:
        ConfigError: The name is blank, the study exists with other settings or other
            objectives, or ``baselines`` asks for values outside its space.
    """
    if not name.strip():
        raise ConfigError("a study name must not be blank")
    if baselines:
        baseline_params(settings)  # refuse a space without the thesis's values before creating
    study = optuna.create_study(
        study_name=name, storage=storage, directions=settings.directions(), load_if_exists=True
    )
    if SETTINGS_ATTR not in study.user_attrs:
        directions = [d.name.lower() for d in study.directions]
        if directions != settings.directions() or study.get_trials(deepcopy=False):
            raise ConfigError(
                f"study {name!r} was not created by advhpo (objectives {directions}); "
                "pick a new name"
            )
        with warnings.catch_warnings():
            # Metric names are experimental in Optuna but shown by optuna-dashboard.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(settings.objectives()))
        study.set_user_attr(SETTINGS_ATTR, settings.to_json())
    check_compatible(study, settings)
    if baselines:
        enqueue_baselines(study, settings)
    return study


@dataclass(frozen=True)
class Placement:
    """Where worker ``i`` runs: a device string, its GPU pin and CPU threads."""

    device: str
    cuda_visible: str | None
    threads: int | None


def _usable_cores() -> int:
    """The cores this process may run on (taskset, a container's cpuset), not the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def _visible_gpus() -> list[str]:
    """The ``CUDA_VISIBLE_DEVICES`` entry of each GPU this process sees, in torch's order.

    A worker pins its GPU by setting ``CUDA_VISIBLE_DEVICES`` itself, which the driver reads
    as physical ids; under an inherited ``CUDA_VISIBLE_DEVICES=2,3`` (a scheduler's share),
    ``cuda:0`` must pin to ``2``, not to physical GPU 0.
    """
    import torch

    count = torch.cuda.device_count()
    inherited = os.environ.get("CUDA_VISIBLE_DEVICES")
    if inherited is None:
        return [str(i) for i in range(count)]
    return [entry.strip() for entry in inherited.split(",")][:count]


def place_workers(devices: str, workers: int | None, trials_per_gpu: int) -> list[Placement]:
    """Assign workers to devices.

    Args:
        devices: ``"auto"``, ``"cpu"`` or a list like ``"cuda:0,cuda:1"``.
        workers: Worker count; default one per GPU slot, or 1 on the CPU.
        trials_per_gpu: Workers sharing each GPU.

    Returns:
        One placement per worker. GPU workers see only their GPU (``CUDA_VISIBLE_DEVICES``);
        CPU workers split the cores between them.

    Raises:
        ConfigError: A malformed device list, or a GPU this host does not have.
    """
    gpus: list[str]
    if devices == "auto":
        gpus = _visible_gpus()
    elif devices == "cpu":
        gpus = []
    else:
        visible = None
        gpus = []
        for item in devices.split(","):
            kind, _, index = item.strip().partition(":")
            if kind != "cuda" or not index.isdigit():
                raise ConfigError(f"bad device {item!r} in --devices; use cpu, auto or cuda:N,…")
            visible = _visible_gpus() if visible is None else visible
            if int(index) >= len(visible):
                seen = f"cuda:0 to cuda:{len(visible) - 1}" if visible else "no CUDA GPU"
                raise ConfigError(f"--devices {item.strip()}: this host has {seen} visible")
            gpus.append(visible[int(index)])
    if gpus:
        slots = [g for g in gpus for _ in range(trials_per_gpu)]
        n = workers or len(slots)
        return [Placement("cuda", slots[i % len(slots)], None) for i in range(n)]
    n = workers or 1
    threads = max(1, _usable_cores() // n)
    return [Placement("cpu", None, threads) for _ in range(n)]


@dataclass(frozen=True)
class RunOptions:
    """How to run the workers of one host (not stored with the study)."""

    storage_url: str
    artifacts: str
    data_dir: str | None
    offline: bool
    placements: list[Placement]
    timeout: float | None
    heartbeat_interval: int = 10
    grace_period: int = 60


class StudyInterrupted(Exception):
    """The launcher was told to stop (Ctrl-C, SIGTERM): its workers checkpointed their trials,
    which are queued again, and exited before the budget was met.

    Attributes:
        signum: The first signal received.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


LineFn = Callable[[str], None]
StatusFn = Callable[[int, int, int, float], None]  # done, budget, front size, hypervolume


def run_workers(
    name: str,
    budget: int,
    options: RunOptions,
    storage: optuna.storages.BaseStorage,
    *,
    log: LineFn,
    status: StatusFn,
) -> dict[int, int]:
    """Start the workers, report progress until they exit, and return the failed ones.

    Returns:
        Exit code by worker index, for the workers that did not exit with 0 (a negative code
        is the signal that killed the worker).

    Ctrl-C (SIGINT) or SIGTERM is passed on to the workers, which stop after checkpointing;
    a second one kills them at once.

    Raises:
        StudyInterrupted: Once the workers have exited, if a signal stopped them.
    """
    deadline = time.time() + options.timeout if options.timeout else None
    ctx = multiprocessing.get_context("spawn")
    procs = []
    for i, place in enumerate(options.placements):
        spec = WorkerSpec(
            study_name=name,
            storage_url=options.storage_url,
            artifacts=options.artifacts,
            data_dir=options.data_dir,
            offline=options.offline,
            device=place.device,
            cuda_visible=place.cuda_visible,
            threads=place.threads,
            worker_id=i,
            deadline=deadline,
            heartbeat_interval=options.heartbeat_interval,
            grace_period=options.grace_period,
        )
        p = ctx.Process(target=_worker_entry, args=(spec,), name=f"advhpo-worker-{i}")
        with _pinned_env(place.cuda_visible):
            p.start()
        procs.append(p)

    interrupts: list[int] = []  # the signals received

    def forward(signum: int, frame: object) -> None:
        interrupts.append(signum)
        for p in procs:
            if p.pid is not None and p.is_alive():
                os.kill(p.pid, signal.SIGKILL if len(interrupts) > 1 else signal.SIGTERM)
        log("stopping: running trials checkpoint and stop (again to kill them now)")

    old_int = signal.signal(signal.SIGINT, forward)
    old_term = signal.signal(signal.SIGTERM, forward)
    study = optuna.load_study(study_name=name, storage=storage)
    seen: set[int] = set()
    try:
        while any(p.is_alive() for p in procs):
            _poll(study, budget, seen, log, status)
            time.sleep(_POLL_SECONDS)
        _poll(study, budget, seen, log, status)
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
        for p in procs:
            p.join()
    if interrupts:
        raise StudyInterrupted(interrupts[0])
    return {i: int(p.exitcode or 0) for i, p in enumerate(procs) if p.exitcode != 0}


@contextlib.contextmanager
def _pinned_env(cuda_visible: str | None) -> Iterator[None]:
    """Start a child with only its GPU visible: the variable is in its environment from exec,
    before anything in the child (an import, a CUDA call) could look at the devices."""
    if cuda_visible is None:
        yield
        return
    old = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = cuda_visible
    try:
        yield
    finally:
        if old is None:
            del os.environ["CUDA_VISIBLE_DEVICES"]
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = old


def _worker_entry(spec: WorkerSpec) -> None:
    raise SystemExit(worker_main(spec))


def _poll(study: optuna.Study, budget: int, seen: set[int], log: LineFn, status: StatusFn) -> None:
    """One progress update; skipped while the database is unreachable (the workers wait)."""
    with contextlib.suppress(optuna.exceptions.StorageInternalError, SQLAlchemyError):
        _report(study, budget, seen, log, status)


def _report(
    study: optuna.Study, budget: int, seen: set[int], log: LineFn, status: StatusFn
) -> None:
    trials = study.get_trials(deepcopy=False)
    for t in trials:
        if t.number in seen or t.state in (TrialState.RUNNING, TrialState.WAITING):
            continue
        seen.add(t.number)
        if t.state == TrialState.COMPLETE and t.values is not None:
            pgd = t.user_attrs.get("pgd_acc")
            resumed = t.user_attrs.get("resumed_from_epoch")
            # Trials added by other tools (e.g. Optuna's own add_trial) lack our attributes.
            log(
                f"trial {t.number} done: clean {t.values[0]:.4f}  fgsm {t.values[1]:.4f}  "
                + (f"pgd {pgd:.4f}  " if pgd is not None else "")
                + format_params(t.params)
                + (f"  (resumed from epoch {resumed})" if resumed else "")
            )
        elif t.state == TrialState.FAIL and t.user_attrs.get(INTERRUPTED_ATTR):
            log(f"trial {t.number} interrupted: checkpointed and queued again for resume")
        elif t.state == TrialState.FAIL:
            log(f"trial {t.number} failed: {fail_reason(t)}")
        elif stopped_early(t):
            share = t.user_attrs.get("early_stop_share", 0.0)
            log(
                f"trial {t.number} stopped early after epoch {t.user_attrs[EARLY_STOP_ATTR]}: "
                f"dominated by {share:.0%} of the completed trials  {format_params(t.params)}"
            )
    points = front_points(study)
    status(budget_counts(study)[0], budget, len(points), hypervolume(points))
