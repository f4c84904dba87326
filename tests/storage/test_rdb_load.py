"""Many worker processes on one database: no "database is locked", no lost or doubled trial."""

from __future__ import annotations

import logging
import multiprocessing
import queue
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from advhpo.storage import open_storage
from advhpo.storage._resilient import CLAIM_TOKEN_ATTR

WORKERS = 8
TRIALS_PER_WORKER = 15
CLAIMERS = 4
CLAIMS_PER_WORKER = 10


def _worker(url: str, study_name: str, barrier: Any, results: Any) -> None:
    """One worker process: open the storage, then ask and tell trials as fast as it can."""
    warnings.simplefilter("ignore")  # heartbeat-without-optimize and experimental notices
    optuna.logging.set_verbosity(logging.WARNING)
    errors: list[str] = []
    seconds = 0.0
    try:
        # All start together on a file that does not exist yet: the hardest case, since
        # they also race to create it, switch it to WAL and create Optuna's tables.
        barrier.wait(timeout=120)
        start = time.monotonic()
        study = optuna.create_study(
            study_name=study_name,
            storage=open_storage(url),
            directions=["maximize", "maximize"],
            load_if_exists=True,
        )
        for _ in range(TRIALS_PER_WORKER):
            trial = study.ask()
            x = trial.suggest_float("x", 0.0, 1.0)
            study.tell(trial, [x, 1.0 - x])
        seconds = time.monotonic() - start
    except BaseException as e:  # report everything, whatever it is, to the test
        errors.append(f"{type(e).__name__}: {e}")
    results.put((errors, seconds))


def _claimer(url: str, study_name: str, barrier: Any, results: Any) -> None:
    """One worker process: start queued trials together with the others, and finish them."""
    warnings.simplefilter("ignore")
    optuna.logging.set_verbosity(logging.WARNING)
    errors: list[str] = []
    numbers: list[int] = []
    try:
        study = optuna.load_study(study_name=study_name, storage=open_storage(url, create=False))
        barrier.wait(timeout=120)
        for _ in range(CLAIMS_PER_WORKER):
            trial = study.ask()
            numbers.append(trial.number)
            x = trial.suggest_float("x", 0.0, 1.0)  # the queued value
            study.tell(trial, [x, 1.0 - x])
    except BaseException as e:
        errors.append(f"{type(e).__name__}: {e}")
    results.put((errors, numbers))


def _run_processes(target: Any, url: str, study_name: str, n: int) -> list[Any]:
    """Start ``n`` spawned processes of ``target`` together; their reports, in arrival order."""
    # Spawned children import this module by name; make its package root importable for
    # them whatever way pytest was started.
    root = Path(__file__).resolve().parents[__name__.count(".")]
    sys.path.insert(0, str(root))
    try:
        ctx = multiprocessing.get_context("spawn")
        barrier = ctx.Barrier(n)
        results = ctx.Queue()
        procs = [
            ctx.Process(target=target, args=(url, study_name, barrier, results)) for _ in range(n)
        ]
        for p in procs:
            p.start()
        reports = []
        for _ in procs:
            try:
                reports.append(results.get(timeout=180))
            except queue.Empty:
                pytest.fail("a worker process neither finished nor reported an error")
        for p in procs:
            p.join(timeout=30)
    finally:
        sys.path.remove(str(root))
    assert [p.exitcode for p in procs] == [0] * n
    return reports


def test_queued_trials_claimed_at_once_are_each_started_once(
    storage_url: str, study_name: str
) -> None:
    storage = open_storage(storage_url)
    study = optuna.create_study(
        study_name=study_name, storage=storage, directions=["maximize", "maximize"]
    )
    n = CLAIMERS * CLAIMS_PER_WORKER
    for i in range(n):
        study.enqueue_trial({"x": i / n})
    storage.engine.dispose()
    # As many asks as queued trials: each ask must start a queued one, never make a new one.
    reports = _run_processes(_claimer, storage_url, study_name, CLAIMERS)
    assert [errors for errors, _ in reports] == [[]] * CLAIMERS
    numbers = sorted(number for _, worker_numbers in reports for number in worker_numbers)
    assert numbers == list(range(n))
    trials = optuna.load_study(study_name=study_name, storage=storage_url).get_trials()
    assert len(trials) == n and all(t.state == TrialState.COMPLETE for t in trials)
    assert all(t.values == [t.params["x"], 1.0 - t.params["x"]] for t in trials)
    assert len({t.system_attrs[CLAIM_TOKEN_ATTR] for t in trials}) == n


def test_eight_processes_share_one_sqlite_file_without_errors(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs' / 'load.db'}"
    start = time.monotonic()
    reports = _run_processes(_worker, url, "load", WORKERS)
    elapsed = time.monotonic() - start
    errors = [error for worker_errors, _ in reports for error in worker_errors]
    slowest = max(seconds for _, seconds in reports)
    assert errors == []
    study = optuna.load_study(study_name="load", storage=open_storage(url, create=False))
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == WORKERS * TRIALS_PER_WORKER
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted(t.number for t in trials) == list(range(WORKERS * TRIALS_PER_WORKER))
    print(
        f"{WORKERS} workers x {TRIALS_PER_WORKER} trials on SQLite: {elapsed:.1f} s in all,"
        f" {slowest:.1f} s for the slowest worker from its start signal"
    )
