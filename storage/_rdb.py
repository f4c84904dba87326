"""Opening the study database with the engine settings, heartbeat and retries workers need."""

from __future__ import annotations

import contextlib
import importlib.util
import random
import sqlite3
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, Engine

from advhpo._errors import ConfigError, StorageError
from advhpo.storage._resilient import ResilientRDBStorage
from advhpo.storage._retry import retry_callback
from advhpo.storage._url import _sqlite_path, check_url, mask_url, resolve_storage_url

# Seconds a SQLite writer waits for the file lock before giving up with "database is locked".
# A write takes milliseconds; 60 s covers 8 workers plus a dashboard reading a large study.
_SQLITE_BUSY_TIMEOUT = 60
# Each worker is one process running one trial at a time: Optuna's calls from the main thread
# plus the heartbeat thread hold at most 2 connections; 2 more absorb a callback or dashboard
# thread. Many workers share one server, so a bigger pool would only eat max_connections.
_POOL_SIZE = 2
_MAX_OVERFLOW = 2
# Seconds after which an idle pooled connection is replaced: firewalls and proxies (pgbouncer,
# cloud NAT) silently drop idle connections after a few minutes.
_POOL_RECYCLE = 300
# Seconds to wait for a server that does not answer at all, instead of the OS TCP timeout (~2
# minutes); only for drivers known to take a ``connect_timeout`` argument.
_CONNECT_TIMEOUT = 10
_CONNECT_TIMEOUT_DRIVERS = frozenset({"psycopg2", "psycopg", "pymysql", "mysqldb"})
# pyproject.toml's extras, by the (backend, driver) each installs; "" is a URL naming no driver,
# which finds psycopg2 (_with_installed_driver).
_DRIVER_EXTRAS = {
    ("postgresql", ""): "postgres",
    ("postgresql", "psycopg2"): "postgres",
    ("mysql", "pymysql"): "mysql",
}
# Workers started together on a fresh database race to create Optuna's tables; the losers see
# "already exists" or a duplicate key and succeed on a retry, once the tables are there.
_INIT_ATTEMPTS = 8


def open_storage(
    url: str | None = None,
    *,
    heartbeat_interval: int = 10,
    grace_period: int = 60,
    max_retry: int = 3,
    create: bool = True,
) -> ResilientRDBStorage:
    """Open the study storage for one worker process, with heartbeats and retries of lost trials.

    SQLite files are switched to WAL mode and given a 60 s busy timeout, so several local
    workers write concurrently without "database is locked" (the file must be on a local disk:
    WAL needs shared memory), and every transaction takes the file's write lock when it begins,
    so a trial's state is read and changed atomically, as under a server's row lock.
    PostgreSQL and MySQL connections are health-checked before use (``pool_pre_ping``), so
    workers survive a server restart, and recycled after 300 s.

    A trial whose worker stops sending heartbeats for ``grace_period`` seconds is marked failed
    by the next worker that starts a trial in ``study.optimize`` and re-queued up to
    ``max_retry`` times; :func:`original_trial_number` maps a retry back to its first trial.

    Args:
        url: A SQLAlchemy URL; resolved by :func:`resolve_storage_url`. Default: the argument
            is unset, so ``$ADVHPO_STORAGE`` or ``sqlite:///advhpo.db`` is used.
        heartbeat_interval: Seconds between heartbeats of a running trial. Default 10.
        grace_period: Seconds without a heartbeat after which a trial counts as lost; must
            exceed ``heartbeat_interval``. Default 60.
        max_retry: How often a lost trial is re-queued. Default 3.
        create: Create the SQLite file and Optuna's tables when missing. ``False`` (for
            commands that only read or resume) makes a missing database an error and creates
            nothing. Default ``True``.

    Returns:
        The storage, to pass as ``optuna.create_study(storage=...)``.

    Raises:
        ConfigError: A heartbeat or retry setting is out of range.
        StorageError: The URL is unusable, or the database cannot be reached, created or read.
            The message shows the URL with its password masked.
    """
    if heartbeat_interval < 1:
        raise ConfigError(f"heartbeat_interval must be >= 1 s, got {heartbeat_interval}")
    if grace_period <= heartbeat_interval:
        # Otherwise a healthy trial looks lost between two heartbeats and runs twice.
        raise ConfigError(
            f"grace_period ({grace_period} s) must exceed heartbeat_interval "
            f"({heartbeat_interval} s)"
        )
    callback = retry_callback(max_retry)
    text = resolve_storage_url(url)
    parsed = check_url(text)
    masked = mask_url(text)
    path = _sqlite_path(parsed)
    if path is not None:
        _prepare_sqlite(Path(path), masked, create=create)
        # pysqlite's own transaction handling is switched off; _serialise_sqlite begins them.
        engine_kwargs: dict[str, Any] = {
            "connect_args": {"timeout": _SQLITE_BUSY_TIMEOUT, "isolation_level": None}
        }
    else:
        text = _with_installed_driver(text, parsed)
        engine_kwargs = _server_engine_kwargs(parsed)
    # RDBStorage runs str.format on the URL (for a {SCHEMA_VERSION} placeholder): escape any
    # braces in a password or path.
    template = text.replace("{", "{{").replace("}", "}}")
    for attempt in range(_INIT_ATTEMPTS):
        try:
            with warnings.catch_warnings():
                # heartbeat_interval is "experimental" since Optuna 2.9; see retry_callback.
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = ResilientRDBStorage(
                    template,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period,
                    heartbeat_stale_trial_callback=callback,
                    skip_table_creation=not create,
                )
            if path is not None:
                _serialise_sqlite(storage.engine)
            return storage
        except (
            sa_exc.SQLAlchemyError,
            optuna.exceptions.StorageInternalError,
            ImportError,  # the driver module (e.g. psycopg2) is not installed
            RuntimeError,  # Optuna's schema version check
            TypeError,  # a URL query option the driver's connect() does not take
            ValueError,  # one it takes, with a value it cannot parse
        ) as e:
            if attempt + 1 < _INIT_ATTEMPTS and _is_creation_race(e):
                time.sleep(random.uniform(0.05, 0.2) * 2**attempt)
                continue
            raise StorageError(f"cannot open storage {masked}: {_reason(e, parsed, create)}") from e
    raise AssertionError("unreachable: the last attempt returns or raises")


def _prepare_sqlite(path: Path, masked: str, *, create: bool) -> None:
    """Create the file's directory and switch the file to WAL, which persists in the file."""
    if not path.exists():
        if not create:
            raise StorageError(f"cannot open storage {masked}: no such file {path}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StorageError(f"cannot open storage {masked}: {_first_line(e)}") from e
    elif not create and path.is_file() and path.stat().st_size == 0:
        # SQLite would take it for a new database and the WAL switch below would write it.
        raise StorageError(
            f"cannot open storage {masked}: an empty file holds no Optuna study tables"
        )
    for attempt in range(_INIT_ATTEMPTS):
        try:
            # Done with sqlite3 before SQLAlchemy connects: changing the journal mode needs the
            # only connection to the file; WAL lets readers and one writer work concurrently.
            with contextlib.closing(sqlite3.connect(path, timeout=_SQLITE_BUSY_TIMEOUT)) as conn:
                mode = str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0])
            break
        except sqlite3.OperationalError as e:
            # Other workers opening the same new file at once: wait and switch again.
            if attempt + 1 < _INIT_ATTEMPTS and "locked" in str(e).lower():
                time.sleep(random.uniform(0.05, 0.2) * 2**attempt)
                continue
            raise StorageError(f"cannot open storage {masked}: {_first_line(e)}") from e
        except sqlite3.Error as e:
            raise StorageError(f"cannot open storage {masked}: {_first_line(e)}") from e
    if mode.lower() != "wal":
        raise StorageError(
            f"cannot open storage {masked}: SQLite kept journal_mode={mode} instead of WAL"
        )


def _serialise_sqlite(engine: Engine) -> None:
    """Make every transaction on ``engine`` take SQLite's write lock when it begins.

    Optuna reads a trial's state, then changes it, inside one session, and relies on the row
    lock of ``SELECT ... FOR UPDATE`` so that two workers cannot both change it: only one of
    two workers failing the same lost trial re-queues it, only one of two claiming a queued
    trial starts it. SQLite ignores FOR UPDATE, and pysqlite left alone begins a transaction
    only at the first write, so both workers read the old state and both act on it.
    ``BEGIN IMMEDIATE`` holds the lock from the first read; other workers wait (for the busy
    timeout) instead of failing. A worker's transactions last milliseconds; a read of a whole
    large study (a dashboard, ``advhpo status``) holds the lock longer, 1.3 s for 2,000 trials
    on 2 cores, and writers wait that long. Nothing is lost: a wait is not an error.
    """

    def begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    sqlalchemy.event.listen(engine, "begin", begin)


def _with_installed_driver(text: str, parsed: URL) -> str:
    """Name an installed PostgreSQL driver when the URL names none.

    SQLAlchemy 2.1 maps ``postgresql://`` to psycopg 3, 2.0 to psycopg2; either works with
    Optuna, so a bare URL should not fail just because the other one is installed.
    """
    if parsed.drivername != "postgresql":
        return text
    for driver in ("psycopg", "psycopg2"):
        if importlib.util.find_spec(driver) is not None:
            return f"postgresql+{driver}{text[text.index('://') :]}"
    return text  # neither: let SQLAlchemy name the missing module


def _server_engine_kwargs(parsed: URL) -> dict[str, Any]:
    """Pool settings for a database server shared by many worker processes."""
    connect_args: dict[str, Any] = {}
    if parsed.get_driver_name() in _CONNECT_TIMEOUT_DRIVERS and "connect_timeout" not in (
        parsed.query
    ):
        connect_args["connect_timeout"] = _CONNECT_TIMEOUT
    return {
        "pool_pre_ping": True,
        "pool_recycle": _POOL_RECYCLE,
        "pool_size": _POOL_SIZE,
        "max_overflow": _MAX_OVERFLOW,
        "connect_args": connect_args,
    }


def _is_creation_race(e: BaseException) -> bool:
    """Whether ``e`` is another worker creating the same tables or rows at the same moment.

    On SQLite that includes "database is locked": while the schema is being created, a
    transaction that read before it writes gets SQLITE_BUSY at once, without waiting for the
    busy timeout (SQLite's deadlock avoidance), so the whole setup is tried again.
    """
    if isinstance(e, sa_exc.IntegrityError) or isinstance(e.__cause__, sa_exc.IntegrityError):
        return True
    message = str(_driver_error(e)).lower()
    return "already exists" in message or "database is locked" in message


def _reason(e: BaseException, parsed: URL, create: bool) -> str:
    """One line saying why the storage did not open, without the password."""
    password = parsed.password
    if isinstance(e, ImportError):
        line = f"database driver not installed ({_first_line(e.__cause__ or e)})"
        backend, _, driver = parsed.drivername.partition("+")
        extra = _DRIVER_EXTRAS.get((backend, driver))
        if extra is not None:
            line += f"; install it with: pip install 'advhpo[{extra}]'"
    else:
        line = _first_line(_driver_error(e))
    if not create and ("does not exist" in line or "no such table" in line):
        line = f"it holds no Optuna study tables ({line})"
    if password:
        # Drivers rarely echo credentials, but a DSN parse error may; never print them.
        line = line.replace(password, "***")
    return line


def _driver_error(e: BaseException) -> BaseException:
    """The innermost error: Optuna wraps SQLAlchemy's, which wraps the driver's."""
    if isinstance(e, optuna.exceptions.StorageInternalError) and e.__cause__ is not None:
        e = e.__cause__
    if isinstance(e, sa_exc.DBAPIError) and e.orig is not None:
        return e.orig
    return e


def _first_line(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[0] if lines else type(e).__name__
