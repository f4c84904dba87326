"""Storage calls ride out a dropped connection; real errors still surface at once."""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import threading
import time

import optuna
import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from advhpo.storage import ResilientRDBStorage, is_transient, open_storage
from advhpo.storage import _resilient as resilient


def _wrapped(orig: BaseException) -> optuna.exceptions.StorageInternalError:
    """The error Optuna's RDB storage raises for a failed session, caused by ``orig``."""
    error = optuna.exceptions.StorageInternalError("commit failed")
    error.__cause__ = sa_exc.OperationalError("SELECT 1", {}, orig)
    return error


def test_connection_failures_are_transient_and_query_errors_are_not() -> None:
    assert is_transient(_wrapped(sqlite3.OperationalError("database is locked")))
    assert not is_transient(_wrapped(sqlite3.OperationalError("no such table: trials")))
    assert is_transient(sa_exc.PendingRollbackError("rollback first"))
    assert not is_transient(optuna.exceptions.StorageInternalError("value too long"))
    assert not is_transient(ValueError("x"))


def test_a_transient_failure_is_retried_until_it_passes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.setattr(resilient, "_FIRST_WAIT", 0.01)
    calls = {"n": 0}

    def flaky() -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            raise _wrapped(sqlite3.OperationalError("database is locked"))
        return "ok"

    assert resilient._retrying(flaky)() == "ok" and calls["n"] == 3


def test_a_real_error_is_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resilient, "_FIRST_WAIT", 0.01)
    calls = {"n": 0}

    def broken() -> None:
        calls["n"] += 1
        raise _wrapped(sqlite3.OperationalError("no such table: trials"))

    with pytest.raises(optuna.exceptions.StorageInternalError):
        resilient._retrying(broken)()
    assert calls["n"] == 1


def test_retries_give_up_after_the_outage_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resilient, "_FIRST_WAIT", 0.01)
    monkeypatch.setattr(resilient, "OUTAGE_SECONDS", 0.2)

    def down() -> None:
        raise _wrapped(sqlite3.OperationalError("database is locked"))

    with pytest.raises(optuna.exceptions.StorageInternalError):
        resilient._retrying(down)()


def test_open_storage_returns_the_resilient_storage(tmp_path: object) -> None:
    assert isinstance(open_storage(f"sqlite:///{tmp_path}/a.db"), ResilientRDBStorage)


class Outage:
    """A TCP proxy in front of the database that can go down and come back, like a server
    restart: while down, every connection is cut and new ones are refused."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self.conns: list[socket.socket] = []
        self._listen()

    def _listen(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        with contextlib.suppress(OSError):  # the listener closed: the outage began
            while True:
                client, _ = listener.accept()
                server = socket.create_connection(self.target)
                self.conns += [client, server]
                for a, b in ((client, server), (server, client)):
                    threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_RDWR)

    def cut(self, seconds: float) -> None:
        """Drop every connection now and refuse new ones for ``seconds``."""
        # close() alone leaves a blocked accept() listening on Linux; shutdown() wakes it.
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for c in self.conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
        self.conns.clear()
        threading.Timer(seconds, self._listen).start()


def test_storage_calls_wait_out_a_server_outage(storage_url: str, study_name: str) -> None:
    if not storage_url.startswith("postgresql"):
        pytest.skip("the outage is staged in front of the PostgreSQL server")
    url = make_url(storage_url)
    proxy = Outage((url.host or "127.0.0.1", url.port or 5432))
    storage = open_storage(url.set(port=proxy.port).render_as_string(hide_password=False))
    study = optuna.create_study(
        study_name=study_name, storage=storage, directions=["maximize", "maximize"]
    )
    study.add_trial(optuna.trial.create_trial(values=[0.5, 0.5]))
    proxy.cut(seconds=3.0)
    start = time.monotonic()
    # Without the retries this raises at once: the pool's connections are dead and the server
    # unreachable for three seconds. (Optuna retries trial creation itself, not this.)
    study.set_user_attr("after_the_outage", True)
    assert time.monotonic() - start >= 2.0
    assert study.user_attrs["after_the_outage"] is True
    assert [t.values for t in study.get_trials()] == [[0.5, 0.5]]
    storage.engine.dispose()
