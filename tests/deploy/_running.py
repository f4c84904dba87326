"""Watching the local stand-ins of containers, and the connections they hold on PostgreSQL."""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Sequence

import optuna
import pytest
from optuna.trial import FrozenTrial
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool


class ConnectionCounter:
    """Samples ``pg_stat_activity`` in a thread: the peak connections per application name.

    Each local "host" gets its own ``PGAPPNAME`` (libpq reads it), so the count is exact per
    host even on a server that other tests share.
    """

    def __init__(self, server: URL, prefix: str) -> None:
        self.prefix = prefix
        self.peak: dict[str, int] = {}
        self._engine = create_engine(server, poolclass=NullPool)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> ConnectionCounter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._engine.dispose()

    def _sample(self) -> None:
        query = text(
            "SELECT application_name, count(*) FROM pg_stat_activity "
            "WHERE application_name LIKE :prefix GROUP BY application_name"
        )
        while not self._stop.wait(0.2):
            # A restarting server refuses samples for a moment: skip them.
            with contextlib.suppress(Exception), self._engine.connect() as conn:
                for app, count in conn.execute(query, {"prefix": self.prefix + "%"}):
                    self.peak[app] = max(self.peak.get(app, 0), int(count))


def wait_for(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    procs: Sequence[subprocess.Popen[bytes]] = (),
) -> None:
    """Poll ``predicate`` until it holds; fail after ``timeout`` s, or as soon as one of
    ``procs`` has exited (it would never make the predicate true)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        for proc in procs:
            if proc.poll() is not None:
                pytest.fail(f"{what}: {proc.args!r} exited {proc.returncode} first")
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM, as ``docker compose stop`` sends, then SIGKILL if the process lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def load_trials(server: URL, name: str) -> list[FrozenTrial]:
    """A study's trials, read through a connection of its own that is closed afterwards."""
    url = server.render_as_string(hide_password=False)
    storage = optuna.storages.RDBStorage(url, engine_kwargs={"poolclass": NullPool})
    try:
        return optuna.load_study(study_name=name, storage=storage).get_trials()
    finally:
        storage.engine.dispose()


def delete_study(server: URL, name: str) -> None:
    """Remove a test's study from the shared server (nothing if the test never created it)."""
    storage = optuna.storages.RDBStorage(server.render_as_string(hide_password=False))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optuna.delete_study(study_name=name, storage=storage)
    except KeyError:
        pass
    finally:
        storage.engine.dispose()
