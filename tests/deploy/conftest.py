"""Fixtures of the deployment tests: the test PostgreSQL, a unique study, a cheap space."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import URL, make_url

from tests.conftest import POSTGRES_ENV
from tests.deploy._running import delete_study
from tests.search._factories import SMALL_SPACE


@pytest.fixture(scope="session")
def pg_url() -> URL:
    """The test PostgreSQL (``$ADVHPO_TEST_POSTGRES_URL``); skips when unset.

    When the variable is set the server must answer: the tests then fail rather than skip.
    """
    value = os.environ.get(POSTGRES_ENV)
    if not value:
        pytest.skip(f"{POSTGRES_ENV} not set: the deployment tests need a PostgreSQL server")
    return make_url(value)


@pytest.fixture
def study(pg_url: URL) -> Iterator[str]:
    """A unique study name on the test server; the study is deleted afterwards."""
    name = f"advhpo-deploy-{uuid.uuid4().hex[:12]}"
    yield name
    delete_study(pg_url, name)


@pytest.fixture
def space_file(tmp_path: Path) -> Path:
    """A search space of cheap trials, for the compose file's ``ADVHPO_SPACE_FILE`` mount."""
    path = tmp_path / "space.toml"
    path.write_text(SMALL_SPACE)
    return path
