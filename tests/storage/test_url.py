"""Storage URLs: resolution order, masking of secrets, and validation."""

from __future__ import annotations

import pytest

from advhpo import StorageError
from advhpo.storage import (
    DEFAULT_STORAGE_URL,
    STORAGE_ENV,
    check_url,
    mask_url,
    resolve_storage_url,
)


def test_an_explicit_url_beats_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STORAGE_ENV, "sqlite:///env.db")
    assert resolve_storage_url("sqlite:///arg.db") == "sqlite:///arg.db"


def test_the_environment_beats_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STORAGE_ENV, " postgresql://db/advhpo ")
    assert resolve_storage_url(None) == "postgresql://db/advhpo"


@pytest.mark.parametrize("env", [None, "", "  "])
def test_without_argument_or_environment_the_default_is_used(
    monkeypatch: pytest.MonkeyPatch, env: str | None
) -> None:
    if env is None:
        monkeypatch.delenv(STORAGE_ENV, raising=False)
    else:
        monkeypatch.setenv(STORAGE_ENV, env)
    assert resolve_storage_url(None) == DEFAULT_STORAGE_URL == "sqlite:///advhpo.db"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (
            "postgresql+psycopg2://bob:s3cret@db:5432/advhpo",
            "postgresql+psycopg2://bob:***@db:5432/advhpo",
        ),
        ("mysql+pymysql://bob:p%40ss@db/advhpo", "mysql+pymysql://bob:***@db/advhpo"),
        ("postgresql://bob@db/advhpo?password=s3cret", "postgresql://bob@db/advhpo?password=***"),
        ("postgresql://bob@db/advhpo", "postgresql://bob@db/advhpo"),
        ("sqlite:///runs/a.db", "sqlite:///runs/a.db"),
    ],
)
def test_mask_url_hides_only_the_password(url: str, masked: str) -> None:
    assert mask_url(url) == masked


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://bob:s3cret@db:notaport/advhpo",  # does not parse
        "postgresql://bob:s3cr@et@db/advhpo",  # a raw "@" in the password
        "bob:s3cret@db/advhpo",  # no scheme
        "postgresql://bob:s3/cr:et@db/advhpo",
    ],
)
def test_mask_url_hides_the_password_of_malformed_urls(url: str) -> None:
    masked = mask_url(url)
    assert "s3" not in masked and "cr" not in masked and "et@" not in masked
    assert "bob:***@db" in masked


@pytest.mark.parametrize("url", ["", "::::", "@", "://@", "a:b", "\x00"])
def test_mask_url_never_raises(url: str) -> None:
    assert isinstance(mask_url(url), str)


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///runs/a.db",
        "sqlite:////abs/a.db",
        "postgresql://bob@db/advhpo",
        "postgresql+psycopg2://bob:pw@db:5432/advhpo",
        "mysql+pymysql://bob@db/advhpo",
        "mysql+pymysql://bob:p%40ss@db/advhpo",
        "sqlite:////runs/a@b@c/a.db",  # "@" in a file path is no password
    ],
)
def test_check_url_accepts_sqlite_files_postgresql_and_mysql(url: str) -> None:
    assert check_url(url).database is not None


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("not a url", "malformed storage URL"),
        ("postgresql://bob:s3cret@db:notaport/x", "malformed storage URL"),
        ("oracle://bob:s3cret@db/x", "unsupported storage URL"),
        ("redis://bob:s3cret@localhost", "unsupported storage URL"),
        ("postgres://bob:s3cret@db/x", r"write postgresql://"),
        ("sqlite://", "in-memory"),
        ("sqlite:///:memory:", "in-memory"),
        ("sqlite:///file:a.db?mode=memory&uri=true", "in-memory"),
        ("sqlite:///file:a.db?uri=true", "URI filenames"),
        ("sqlite:///a.db?timeout=abc", "take no query options .got timeout."),
        ("postgresql://bob:s3cr@et@127.0.0.1:1/x", "write an '@' .* as %40"),
        ("mysql+pymysql://bob:s3cret@@db/x", "as %40"),
    ],
)
def test_check_url_rejects_what_many_workers_cannot_share(url: str, words: str) -> None:
    with pytest.raises(StorageError, match=words) as info:
        check_url(url)
    assert "s3cret" not in str(info.value) and "et@" not in str(info.value)
    assert len(str(info.value).splitlines()) == 1
