"""Many local workers on one SQLite file: no "database is locked", no lost trial."""

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

WORKERS = 8
TRIALS_PER_WORKER = 15


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


def test_eight_processes_share_one_sqlite_file_without_errors(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs' / 'load.db'}"
    # Spawned children import this module by name; make its package root importable for
    # them whatever way pytest was started.
    root = Path(__file__).resolve().parents[__name__.count(".")]
    sys.path.insert(0, str(root))
    try:
        ctx = multiprocessing.get_context("spawn")
        barrier = ctx.Barrier(WORKERS)
        results = ctx.Queue()
        procs = [
            ctx.Process(target=_worker, args=(url, "load", barrier, results))
            for _ in range(WORKERS)
        ]
        start = time.monotonic()
        for p in procs:
            p.start()
        errors: list[str] = []
        slowest = 0.0
        for _ in procs:
            try:
                worker_errors, seconds = results.get(timeout=180)
            except queue.Empty:
                pytest.fail("a worker process neither finished nor reported an error")
            errors += worker_errors
            slowest = max(slowest, seconds)
        for p in procs:
            p.join(timeout=30)
        elapsed = time.monotonic() - start
    finally:
        sys.path.remove(str(root))
    assert errors == []
    assert [p.exitcode for p in procs] == [0] * WORKERS
    study = optuna.load_study(study_name="load", storage=open_storage(url, create=False))
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == WORKERS * TRIALS_PER_WORKER
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted(t.number for t in trials) == list(range(WORKERS * TRIALS_PER_WORKER))
    print(
        f"{WORKERS} workers x {TRIALS_PER_WORKER} trials on SQLite: {elapsed:.1f} s in all,"
        f" {slowest:.1f} s for the slowest worker from its start signal"
    )
