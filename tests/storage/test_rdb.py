"""Opening the study storage: engine settings per backend, failures, heartbeats and retries."""

from __future__ import annotations

import contextlib
import sqlite3
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import make_url

from advhpo import ConfigError, StorageError
from advhpo.storage import (
    GRACE_ATTR,
    LOST_ATTR,
    open_storage,
    original_trial_number,
    requeue_interrupted,
    retry_callback,
)

PASSWORD = "s3cret-pw"

# Trials made by study.ask() are not heartbeated by Optuna, which says so each time.
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")


def _study(storage: RDBStorage, name: str) -> optuna.Study:
    return optuna.create_study(
        study_name=name, storage=storage, directions=["maximize", "maximize"]
    )


def _trial_id(storage: RDBStorage, study: optuna.Study, number: int) -> int:
    study_id = storage.get_study_id_from_name(study.study_name)
    return storage.get_trial_id_from_study_id_trial_number(study_id, number)


def test_a_study_round_trips_through_the_storage(storage_url: str, study_name: str) -> None:
    study = _study(open_storage(storage_url), study_name)
    trial = study.ask()
    study.tell(trial, [trial.suggest_float("lr", 1e-4, 1e-1, log=True), 0.5])
    loaded = optuna.load_study(study_name=study_name, storage=open_storage(storage_url))
    assert [t.state for t in loaded.trials] == [TrialState.COMPLETE]
    assert loaded.trials[0].values[1] == 0.5


def test_heartbeat_and_retry_settings_reach_optuna(storage_url: str) -> None:
    storage = open_storage(storage_url, heartbeat_interval=7, grace_period=30)
    assert storage.get_heartbeat_interval() == 7
    assert storage.grace_period == 30
    callback = storage.get_heartbeat_stale_trial_callback()
    assert isinstance(callback, RetryHeartbeatStaleTrialCallback)


def test_a_failed_trial_is_retried_max_retry_times_under_its_original_number(
    storage_url: str, study_name: str
) -> None:
    storage = open_storage(storage_url, max_retry=2)
    study = _study(storage, study_name)
    study.tell(study.ask(), [0.0, 0.0])  # trial 0: unrelated
    callback = storage.get_heartbeat_stale_trial_callback()
    assert callback is not None
    retried_numbers = []
    for _ in range(3):  # the original run and two retries, all lost
        trial = study.ask()
        retried_numbers.append(original_trial_number(trial))
        trial_id = _trial_id(storage, study, trial.number)
        storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
        callback(study, storage.get_trial(trial_id))
    assert retried_numbers == [1, 1, 1]
    assert [t.number for t in study.trials] == [0, 1, 2, 3]  # no third retry
    assert original_trial_number(study.trials[3]) == 1
    assert original_trial_number(study.trials[0]) == 0


def test_interruptions_do_not_use_up_the_retries_of_a_lost_trial(
    storage_url: str, study_name: str
) -> None:
    storage = open_storage(storage_url, max_retry=2)
    study = _study(storage, study_name)
    callback = storage.get_heartbeat_stale_trial_callback()
    assert callback is not None

    def end() -> FrozenTrial:
        trial = study.ask()
        trial_id = _trial_id(storage, study, trial.number)
        storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
        return storage.get_trial(trial_id)

    for _ in range(3):  # three Ctrl-Cs: each attempt is queued again
        assert requeue_interrupted(study, end(), max_requeues=5)
    callback(study, end())  # then lost twice: both retried
    callback(study, end())
    callback(study, end())  # a third loss exceeds max_retry=2
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 6
    assert {original_trial_number(t) for t in study.trials} == {0}
    assert study.trials[5].system_attrs["retry_history"] == [0, 1, 2, 3, 4]


def test_a_retry_queued_by_optuna_s_own_callback_counts_its_history_as_lost() -> None:
    # Made before lost attempts were counted apart: its three earlier attempts were all lost
    # as far as anyone can tell, so with max_retry=3 it gets no fourth retry.
    old = optuna.trial.create_trial(
        state=TrialState.FAIL, system_attrs={"failed_trial": 0, "retry_history": [0, 1, 2]}
    )
    fresh = optuna.trial.create_trial(state=TrialState.FAIL)
    callback = retry_callback(3)
    assert not callback.will_retry(old)
    assert callback.will_retry(fresh)


def test_an_interrupted_trial_is_left_failed_after_max_requeues(
    storage_url: str, study_name: str
) -> None:
    storage = open_storage(storage_url)
    study = _study(storage, study_name)
    queued = []
    for _ in range(3):
        trial = study.ask()
        trial_id = _trial_id(storage, study, trial.number)
        storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
        queued.append(requeue_interrupted(study, storage.get_trial(trial_id), max_requeues=2))
    assert queued == [True, True, False]
    assert len(study.trials) == 3


def _lost_trial(storage_url: str, study_name: str) -> tuple[optuna.Study, optuna.Trial]:
    """A study whose one running trial sent a heartbeat, then nothing for the grace period."""
    storage = open_storage(storage_url, heartbeat_interval=1, grace_period=2)
    study = _study(storage, study_name)
    lost = study.ask()
    storage.record_heartbeat(_trial_id(storage, study, lost.number))
    time.sleep(3.1)  # > grace_period, also with SQLite's whole-second timestamps
    return study, lost


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_trial_without_heartbeat_is_failed_and_requeued(
    storage_url: str, study_name: str
) -> None:
    study, lost = _lost_trial(storage_url, study_name)
    fail_stale_trials(study)
    failed, queued = study.get_trials(deepcopy=False)
    assert [failed.state, queued.state] == [TrialState.FAIL, TrialState.WAITING]
    # Marked as judged lost, so its failure is not taken for one made by hand; its retry
    # starts unjudged.
    assert LOST_ATTR in failed.system_attrs and LOST_ATTR not in queued.system_attrs
    assert original_trial_number(study.ask()) == lost.number


def _judged_lost(storage_url: str, study_name: str) -> tuple[RDBStorage, FrozenTrial]:
    """A storage whose stale check has just judged the study's one trial lost, not failed it."""
    _, lost = _lost_trial(storage_url, study_name)
    storage = open_storage(storage_url, heartbeat_interval=1, grace_period=2, create=False)
    study_id = storage.get_study_id_from_name(study_name)
    assert storage._get_stale_trial_ids(study_id) == [lost._trial_id]
    return storage, storage.get_trial(lost._trial_id)


def _fail_by_hand(storage_url: str, trial_id: int) -> None:
    """optuna-dashboard's Fail Trial, from another process."""
    open_storage(storage_url, create=False).set_trial_state_values(trial_id, TrialState.FAIL)


def test_a_trial_judged_lost_but_never_failed_carries_no_mark(
    storage_url: str, study_name: str
) -> None:
    # The judging worker died between its judgement and its FAIL.
    storage, lost = _judged_lost(storage_url, study_name)
    storage.record_heartbeat(lost._trial_id)
    _fail_by_hand(storage_url, lost._trial_id)  # later: nothing may say it was lost
    assert LOST_ATTR not in storage.get_trial(lost._trial_id).system_attrs


def test_a_trial_failed_by_hand_after_it_was_judged_lost_keeps_no_mark(
    storage_url: str, study_name: str
) -> None:
    storage, lost = _judged_lost(storage_url, study_name)
    _fail_by_hand(storage_url, lost._trial_id)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        storage.set_trial_state_values(lost._trial_id, TrialState.FAIL)  # fail_stale_trials' own
    assert LOST_ATTR not in storage.get_trial(lost._trial_id).system_attrs


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_trial_is_judged_lost_by_its_own_worker_s_grace_period(
    storage_url: str, study_name: str
) -> None:
    # A host started with --grace-period 30 heartbeats every 5 s; one with 2 must not take
    # those trials for lost between two beats.
    storage = open_storage(storage_url, heartbeat_interval=1, grace_period=2)
    study = _study(storage, study_name)
    patient, undeclared = study.ask(), study.ask()
    storage.set_trial_system_attr(patient._trial_id, GRACE_ATTR, 30)
    for trial in (patient, undeclared):
        storage.record_heartbeat(trial._trial_id)
    time.sleep(3.1)  # > 2 s, also with SQLite's whole-second timestamps; < 30 s
    fail_stale_trials(study)
    assert storage.get_trial(patient._trial_id).state == TrialState.RUNNING
    assert storage.get_trial(undeclared._trial_id).state == TrialState.FAIL


def _running(started: datetime) -> FrozenTrial:
    return FrozenTrial(
        number=0, state=TrialState.RUNNING, value=None, datetime_start=started,
        datetime_complete=None, params={}, distributions={}, user_attrs={}, system_attrs={},
        intermediate_values={}, trial_id=0,
    )  # fmt: skip


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_running_trial_that_never_sent_a_heartbeat_is_failed_and_requeued(
    storage_url: str, study_name: str
) -> None:
    # E.g. a trial whose creation committed while the connection dropped: the retried call
    # created another, and nobody ever ran this one.
    storage = open_storage(storage_url, heartbeat_interval=1, grace_period=2)
    study = _study(storage, study_name)
    study_id = storage.get_study_id_from_name(study_name)
    long_ago = datetime.now() - timedelta(minutes=10)
    orphan = storage.create_new_trial(study_id, _running(long_ago))
    beating = storage.create_new_trial(study_id, _running(long_ago))
    storage.record_heartbeat(beating)  # a live worker's long trial
    just_asked = storage.create_new_trial(study_id)  # its first heartbeat is yet to come

    fail_stale_trials(study)  # Optuna's own, as every study.optimize runs it

    states = {t._trial_id: t.state for t in study.get_trials(deepcopy=False)}
    assert states[orphan] == TrialState.FAIL
    assert LOST_ATTR in storage.get_trial(orphan).system_attrs
    assert states[beating] == TrialState.RUNNING
    assert states[just_asked] == TrialState.RUNNING
    (retry,) = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    assert original_trial_number(retry) == storage.get_trial(orphan).number


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_two_workers_failing_one_lost_trial_at_once_queue_one_retry(
    storage_url: str, study_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    study, _ = _lost_trial(storage_url, study_name)
    workers = [
        optuna.load_study(
            study_name=study_name,
            storage=open_storage(storage_url, heartbeat_interval=1, grace_period=2, create=False),
        )
        for _ in range(2)
    ]
    # Each worker's check of the trial's state waits up to 1 s for the other's, so both read
    # it before either writes, unless the database makes the second wait for the first.
    meet = threading.Barrier(2)
    check = RDBStorage.check_trial_is_updatable

    def check_together(self: RDBStorage, trial_id: int, state: TrialState) -> None:
        with contextlib.suppress(threading.BrokenBarrierError):
            meet.wait(timeout=1)
        check(self, trial_id, state)

    monkeypatch.setattr(RDBStorage, "check_trial_is_updatable", check_together)
    errors: list[BaseException] = []

    def fail(worker: optuna.Study) -> None:
        try:
            fail_stale_trials(worker)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=fail, args=(worker,)) for worker in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert states == [TrialState.FAIL, TrialState.WAITING]  # one retry, not one per worker


def test_create_false_opens_an_existing_storage(storage_url: str, study_name: str) -> None:
    _study(open_storage(storage_url), study_name)
    storage = open_storage(storage_url, create=False)
    assert optuna.load_study(study_name=study_name, storage=storage).trials == []


def test_create_false_on_a_missing_sqlite_file_creates_nothing(tmp_path: Path) -> None:
    db = tmp_path / "typo" / "advhpo.db"
    with pytest.raises(StorageError, match="no such file"):
        open_storage(f"sqlite:///{db}", create=False)
    assert not db.parent.exists()


def test_create_false_on_an_empty_sqlite_file_says_it_holds_no_study(tmp_path: Path) -> None:
    db = tmp_path / "empty.db"
    db.touch()
    with pytest.raises(StorageError, match="holds no Optuna study tables"):
        open_storage(f"sqlite:///{db}", create=False)
    # Read-only commands leave it as it was (no WAL switch, no -wal/-shm files).
    assert db.stat().st_size == 0 and [p.name for p in tmp_path.iterdir()] == ["empty.db"]


def test_a_file_that_is_not_a_database_is_a_storage_error(tmp_path: Path) -> None:
    db = tmp_path / "notes.db"
    db.write_text("not a database, just notes\n" * 100)
    with pytest.raises(StorageError, match=r"open storage .*notes\.db: file is not a database"):
        open_storage(f"sqlite:///{db}")


def test_a_sqlite_file_is_created_in_wal_mode_with_a_busy_timeout(tmp_path: Path) -> None:
    db = tmp_path / "new" / "dir" / "advhpo.db"
    storage = open_storage(f"sqlite:///{db}")
    # WAL is a property of the file: any later connection, by any process, sees it.
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with storage.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 60_000


@pytest.mark.parametrize("storage_url", ["postgresql"], indirect=True)
def test_a_server_gets_a_small_health_checked_pool(storage_url: str) -> None:
    storage = open_storage(storage_url)
    assert storage.engine_kwargs["pool_pre_ping"] is True
    assert storage.engine_kwargs["pool_recycle"] == 300
    assert storage.engine_kwargs["connect_args"] == {"connect_timeout": 10}
    assert storage.engine.pool.size() == 2  # type: ignore[attr-defined]


@pytest.mark.parametrize("storage_url", ["postgresql"], indirect=True)
def test_workers_survive_the_server_dropping_their_connections(
    storage_url: str, study_name: str
) -> None:
    app = f"advhpo-test-{uuid.uuid4().hex[:12]}"
    url = make_url(storage_url).update_query_dict({"application_name": app})
    storage = open_storage(url.render_as_string(hide_password=False))
    study = _study(storage, study_name)
    study.tell(study.ask(), [1.0, 1.0])
    # What a server restart does to pooled connections.
    admin = sqlalchemy.create_engine(storage_url)
    with admin.connect() as conn:
        killed = conn.execute(
            sqlalchemy.text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = :app"
            ),
            {"app": app},
        ).scalar()
    admin.dispose()
    assert killed and killed >= 1
    study.tell(study.ask(), [2.0, 2.0])
    assert len(study.trials) == 2


@pytest.mark.parametrize("storage_url", ["postgresql"], indirect=True)
def test_a_bare_postgresql_url_uses_the_installed_driver(storage_url: str) -> None:
    url = make_url(storage_url).set(drivername="postgresql")
    storage = open_storage(url.render_as_string(hide_password=False))
    assert storage.engine.dialect.driver in ("psycopg", "psycopg2")


@pytest.mark.parametrize("storage_url", ["postgresql"], indirect=True)
def test_a_missing_database_is_a_masked_storage_error(storage_url: str) -> None:
    missing = f"advhpo_missing_{uuid.uuid4().hex[:8]}"
    url = make_url(storage_url).set(database=missing, username="postgres", password=PASSWORD)
    with pytest.raises(StorageError, match=f'database "{missing}" does not exist') as info:
        open_storage(url.render_as_string(hide_password=False))
    assert "postgres:***@" in str(info.value)
    assert PASSWORD not in str(info.value) and PASSWORD not in repr(info.value)


def test_an_unreachable_server_is_a_quick_masked_storage_error() -> None:
    url = f"postgresql+psycopg2://advhpo:{PASSWORD}@127.0.0.1:1/advhpo"
    start = time.monotonic()
    with pytest.raises(StorageError) as info:
        open_storage(url)
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert message.startswith("cannot open storage postgresql+psycopg2://advhpo:***@127.0.0.1:1/")
    assert "Connection refused" in message
    assert len(message.splitlines()) == 1
    assert PASSWORD not in message and PASSWORD not in repr(info.value)


@pytest.mark.parametrize(
    ("url", "modules", "hint"),
    [
        ("postgresql+psycopg2", ["psycopg2"], "pip install 'advhpo[postgres]'"),
        ("postgresql", ["psycopg2", "psycopg"], "pip install 'advhpo[postgres]'"),
        ("mysql+pymysql", ["pymysql"], "pip install 'advhpo[mysql]'"),
        ("mysql+mysqldb", ["MySQLdb"], None),  # no extra of ours installs mysqlclient
    ],
)
def test_a_missing_driver_is_a_storage_error_naming_the_extra_that_installs_it(
    monkeypatch: pytest.MonkeyPatch, url: str, modules: list[str], hint: str | None
) -> None:
    for module in modules:  # None in sys.modules: importing it raises ImportError
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(StorageError, match="database driver not installed") as info:
        open_storage(f"{url}://bob:{PASSWORD}@127.0.0.1:1/advhpo")
    message = str(info.value)
    assert len(message.splitlines()) == 1 and PASSWORD not in message
    if hint is None:
        assert "advhpo[" not in message
    else:
        assert message.endswith(hint)


@pytest.mark.parametrize("query", ["foo=bar", "connect_timeout=abc"])
def test_a_query_option_the_driver_refuses_is_a_storage_error(query: str) -> None:
    # PyMySQL (a test dependency) takes unknown options as keyword arguments: a TypeError,
    # and int() of a bad timeout: a ValueError, both before any connection is tried.
    with pytest.raises(StorageError, match="cannot open storage") as info:
        open_storage(f"mysql+pymysql://bob:{PASSWORD}@127.0.0.1:1/advhpo?{query}")
    assert len(str(info.value).splitlines()) == 1
    assert PASSWORD not in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"heartbeat_interval": 0}, "heartbeat_interval"),
        ({"heartbeat_interval": 10, "grace_period": 10}, "must exceed"),
        ({"max_retry": -1}, "max_retry"),
    ],
)
def test_bad_settings_are_config_errors(tmp_path: Path, kwargs: dict[str, int], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        open_storage(f"sqlite:///{tmp_path / 'a.db'}", **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "a.db").exists()
