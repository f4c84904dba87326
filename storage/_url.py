"""Storage URLs: which one to use, whether it is usable, and how to print it without secrets."""

from __future__ import annotations

import os

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from advhpo._errors import StorageError

DEFAULT_STORAGE_URL = "sqlite:///advhpo.db"
"""The storage used when neither an argument nor ``$ADVHPO_STORAGE`` names one."""

STORAGE_ENV = "ADVHPO_STORAGE"
"""The environment variable naming the storage URL (e.g. a shared PostgreSQL)."""

# Backends Optuna's RDBStorage is tested against; anything else fails later and less clearly.
_BACKENDS = ("sqlite", "postgresql", "mysql")
# Query parameters that drivers accept as credentials (libpq reads ?password=...).
_SECRET_QUERY_KEYS = frozenset({"password", "passwd", "pwd", "sslpassword"})
_MASK = "***"


def resolve_storage_url(url: str | None) -> str:
    """Pick the storage URL: the argument, else ``$ADVHPO_STORAGE``, else the default.

    Args:
        url: An explicit URL (e.g. from ``--storage``), or ``None``.

    Returns:
        The URL to use, stripped of surrounding whitespace. It is not validated here; see
        :func:`check_url`.
    """
    if url is not None and url.strip():
        return url.strip()
    env = os.environ.get(STORAGE_ENV, "").strip()
    # An empty variable counts as unset: `ADVHPO_STORAGE= advhpo ...` should not mean "no URL".
    return env or DEFAULT_STORAGE_URL


def mask_url(url: str) -> str:
    """Return ``url`` with its password (and password-like query values) replaced by ``***``.

    Never raises: a URL that does not parse is masked textually, hiding everything between the
    user name and the last ``@``, so even a password holding a raw ``@`` is not shown.
    """
    if _netloc(url).count("@") > 1:
        # A raw "@" in the password makes the parser cut the password short and show its tail
        # as part of the host.
        return _mask_text(url)
    try:
        parsed = make_url(url)
        secret = {k: _MASK for k in parsed.query if k.lower() in _SECRET_QUERY_KEYS}
        if secret:
            parsed = parsed.update_query_dict(secret)
        text = parsed.render_as_string(hide_password=True)
    except Exception:  # whatever the parser rejects is masked textually instead
        return _mask_text(url)
    return text.replace("=%2A%2A%2A", f"={_MASK}")


def check_url(url: str) -> URL:
    """Parse a storage URL and check that many worker processes can share it.

    Args:
        url: A SQLAlchemy URL such as ``sqlite:///runs/mnist.db`` or
            ``postgresql+psycopg2://user:password@host:5432/advhpo``.

    Returns:
        The parsed URL.

    Raises:
        StorageError: The URL does not parse, names a backend other than SQLite, PostgreSQL or
            MySQL, or is an in-memory SQLite database (which each process would see empty).
    """
    parsed = _parse_url(url)
    backend = parsed.get_backend_name()
    if backend != "sqlite" and _netloc(url).count("@") > 1:
        # The parser cuts the password at the first "@" and takes the rest for the host, so a
        # connection would fail with the password's tail in the driver's message.
        raise StorageError(
            f"malformed storage URL {mask_url(url)}: write an '@' in the user name or "
            "password as %40"
        )
    if backend not in _BACKENDS:
        # "postgres://" is what Heroku-style services hand out; SQLAlchemy knows no such name.
        hint = " (write postgresql://)" if backend == "postgres" else ""
        raise StorageError(
            f"unsupported storage URL {mask_url(url)}: backend {backend!r} is not one of "
            f"{', '.join(_BACKENDS)}{hint}"
        )
    if backend == "sqlite":
        if _sqlite_path(parsed) is None:
            raise StorageError(
                f"unsupported storage URL {mask_url(url)}: an in-memory SQLite database is "
                "private to one process; use a file, e.g. sqlite:///advhpo.db"
            )
        if parsed.query.get("uri") == "true":
            raise StorageError(
                f"unsupported storage URL {mask_url(url)}: SQLite URI filenames are not "
                "supported; use a plain path, e.g. sqlite:///advhpo.db"
            )
        if parsed.query:
            # pysqlite would take them as connect arguments beside the busy timeout advhpo
            # sets (a bad value failing only once the file exists), or ignore them.
            raise StorageError(
                f"unsupported storage URL {mask_url(url)}: SQLite URLs take no query options "
                f"(got {', '.join(parsed.query)}); advhpo sets the busy timeout and journal "
                "mode itself"
            )
    return parsed


def _parse_url(url: str) -> URL:
    """Parse ``url`` without checking its backend; :class:`StorageError` when it does not parse."""
    try:
        return make_url(url)
    except ArgumentError as e:
        reason = "expected dialect[+driver]://[user[:password]@]host[:port]/database"
        raise StorageError(f"malformed storage URL {mask_url(url)}: {reason}") from e
    except ValueError as e:  # int() of the port
        raise StorageError(f"malformed storage URL {mask_url(url)}: bad port number") from e


def _sqlite_path(url: URL) -> str | None:
    """The database file of a SQLite URL, or ``None`` when it is in memory (or not SQLite)."""
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if database in ("", ":memory:") or url.query.get("mode") == "memory":
        return None
    return database


def _netloc(url: str) -> str:
    """The part between ``scheme://`` and the database path (the whole string if no scheme)."""
    rest = url.partition("://")[2] if "://" in url else url
    # The path starts at the first "/" after the last "@": a password may itself contain "/".
    at = rest.rfind("@")
    slash = rest.find("/", at + 1)
    return rest if slash < 0 else rest[:slash]


def _mask_text(url: str) -> str:
    """Hide everything between the first ``:`` of the credentials and the last ``@``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    netloc = _netloc(url)
    at = netloc.rfind("@")
    if at < 0:
        return url
    user, colon, _ = netloc[:at].partition(":")
    masked = f"{user}:{_MASK}" if colon else user
    return f"{scheme}{sep}{masked}{rest[at:]}"
