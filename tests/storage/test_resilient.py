"""Storage calls ride out a dropped connection; real errors still surface at once."""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import threading
import time
from typing import Any

import optuna
import pytest
from optuna.storages import RDBStorage
from optuna.trial import TrialState
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


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
def test_a_heartbeat_notes_a_trial_finished_by_another_process(
    storage_url: str, study_name: str
) -> None:
    storage = open_storage(storage_url)
    study = optuna.create_study(
        study_name=study_name, storage=storage, directions=["maximize", "maximize"]
    )
    trial, other_trial = study.ask(), study.ask()
    storage.record_heartbeat(trial._trial_id)
    assert not storage.finished_elsewhere(trial._trial_id)
    # optuna-dashboard's Fail Trial, in its own process.
    open_storage(storage_url, create=False).set_trial_state_values(trial._trial_id, TrialState.FAIL)
    assert not storage.finished_elsewhere(trial._trial_id)  # no heartbeat has looked yet
    storage.record_heartbeat(trial._trial_id)
    assert storage.finished_elsewhere(trial._trial_id)
    storage.record_heartbeat(other_trial._trial_id)
    assert not storage.finished_elsewhere(other_trial._trial_id)


def _lose_the_first_ack(
    monkeypatch: pytest.MonkeyPatch,
    owner: type[RDBStorage] = RDBStorage,
    method: str = "_create_new_trial",
) -> dict[str, int]:
    """The first call of ``owner.method`` commits, then its connection drops before the reply."""
    monkeypatch.setattr(resilient, "_FIRST_WAIT", 0.01)
    real = getattr(owner, method)
    calls = {"n": 0}

    def lossy(self: RDBStorage, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        result = real(self, *args, **kwargs)
        if calls["n"] == 1:
            error = optuna.exceptions.StorageInternalError("connection lost")
            error.__cause__ = sa_exc.OperationalError("COMMIT", {}, OSError("reset"), True)
            raise error
        return result

    monkeypatch.setattr(owner, method, lossy)
    return calls


def _waiting(user_attrs: dict[str, Any]) -> optuna.trial.FrozenTrial:
    return optuna.trial.create_trial(state=optuna.trial.TrialState.WAITING, user_attrs=user_attrs)


@pytest.mark.parametrize("via", ["enqueue", "storage"])
def test_a_queued_trial_whose_creation_ack_is_lost_is_made_once(
    storage_url: str, study_name: str, monkeypatch: pytest.MonkeyPatch, via: str
) -> None:
    storage = open_storage(storage_url)
    study = optuna.create_study(
        study_name=study_name, storage=storage, directions=["maximize", "maximize"]
    )
    calls = _lose_the_first_ack(monkeypatch)
    if via == "enqueue":  # through Optuna's cached storage, as workers and baselines do
        study.enqueue_trial({"lr": 0.05})
    else:  # the public storage call, as RetryFailedTrialCallback makes it
        storage.create_new_trial(study._study_id, template_trial=_waiting({"retry_of": 3}))
    trials = study.get_trials(deepcopy=False)
    assert calls["n"] == 2  # retried, and the retry found the committed trial
    assert len(trials) == 1 and trials[0].state == optuna.trial.TrialState.WAITING
    storage.engine.dispose()


def test_optunas_own_retry_of_a_tagged_creation_finds_the_first_copy(
    storage_url: str, study_name: str
) -> None:
    # Optuna's RDBStorage._create_new_trial retries a failed session itself, with the same
    # template: the repeat must return the trial the first attempt committed.
    storage = open_storage(storage_url)
    study_id = storage.create_new_study([optuna.study.StudyDirection.MAXIMIZE], study_name)
    template = _waiting({"k": 1})
    template.system_attrs = {resilient.CREATE_TOKEN_ATTR: "t0"}
    first = RDBStorage._create_new_trial(storage, study_id, template)
    again = RDBStorage._create_new_trial(storage, study_id, template)
    other = storage.create_new_trial(study_id, template_trial=_waiting({"k": 2}))
    assert again._trial_id == first._trial_id and again.number == first.number == 0
    assert [t.user_attrs["k"] for t in storage.get_all_trials(study_id)] == [1, 2]
    assert other != first._trial_id
    storage.engine.dispose()


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")  # study.ask
def test_a_new_trial_whose_creation_ack_is_lost_is_made_once(
    storage_url: str, study_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = open_storage(storage_url)
    study = optuna.create_study(
        study_name=study_name, storage=storage, directions=["maximize", "maximize"]
    )
    calls = _lose_the_first_ack(monkeypatch)
    trial = study.ask()  # no trial is waiting, so this makes an empty RUNNING trial
    trials = study.get_trials(deepcopy=False)
    assert calls["n"] == 2
    assert [(t.number, t.state) for t in trials] == [(0, optuna.trial.TrialState.RUNNING)]
    assert trial.number == 0
    storage.engine.dispose()


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")  # study.ask
def test_a_claim_whose_ack_is_lost_starts_one_trial(
    storage_url: str, study_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = open_storage(storage_url)
    study = optuna.create_study(
        study_name=study_name, storage=storage, directions=["maximize", "maximize"]
    )
    study.enqueue_trial({"lr": 0.01})
    study.enqueue_trial({"lr": 0.02})
    calls = _lose_the_first_ack(monkeypatch, ResilientRDBStorage, "_claim")
    trial = study.ask()
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert calls["n"] == 2  # retried, and the retry saw its own claim
    assert trial.number == 0
    assert states == [optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING]
    storage.engine.dispose()


def test_a_trial_claimed_by_another_request_is_not_claimed_again(
    storage_url: str, study_name: str
) -> None:
    storage = open_storage(storage_url)
    study_id = storage.create_new_study([optuna.study.StudyDirection.MAXIMIZE], study_name)
    trial_id = storage.create_new_trial(study_id, template_trial=_waiting({}))
    running = optuna.trial.TrialState.RUNNING
    assert storage.set_trial_state_values(trial_id, running)
    assert not storage.set_trial_state_values(trial_id, running)
    assert not storage._claim(trial_id, "another request's token")
    storage.set_trial_state_values(trial_id, optuna.trial.TrialState.COMPLETE, [0.5])
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        storage.set_trial_state_values(trial_id, running)
    storage.engine.dispose()


def test_a_retry_copies_no_claim_and_gets_its_own_creation_token(
    storage_url: str, study_name: str
) -> None:
    # RetryFailedTrialCallback copies the failed trial's system attributes into the retry.
    storage = open_storage(storage_url)
    study_id = storage.create_new_study([optuna.study.StudyDirection.MAXIMIZE], study_name)
    first_id = storage.create_new_trial(study_id, template_trial=_waiting({}))
    assert storage.set_trial_state_values(first_id, optuna.trial.TrialState.RUNNING)
    failed = storage.get_trial(first_id)
    assert resilient.CLAIM_TOKEN_ATTR in failed.system_attrs
    retry_id = storage.create_new_trial(study_id, template_trial=_retry_of(failed))
    retry = storage.get_trial(retry_id).system_attrs
    assert resilient.CLAIM_TOKEN_ATTR not in retry
    assert retry[resilient.CREATE_TOKEN_ATTR] != failed.system_attrs[resilient.CREATE_TOKEN_ATTR]
    assert storage.set_trial_state_values(retry_id, optuna.trial.TrialState.RUNNING)
    storage.engine.dispose()


def _retry_of(trial: optuna.trial.FrozenTrial) -> optuna.trial.FrozenTrial:
    return optuna.trial.create_trial(
        state=optuna.trial.TrialState.WAITING,
        system_attrs={**trial.system_attrs, "failed_trial": trial.number},
    )
