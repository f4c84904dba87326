"""Shared fixtures: tiny synthetic data, the real data dir, and the storage backends."""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pytest
import torch

from advhpo.objectives import DatasetSplits, ImageSet


def synthetic_images(n: int, seed: int, shape: tuple[int, int, int] = (1, 28, 28)) -> ImageSet:
    """Random uint8 images whose label is readable from the pixels (so nets can learn it)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    images = torch.randint(0, 60, (n, *shape), generator=g, dtype=torch.uint8)
    # A bright bar whose row encodes the label.
    for k in range(10):
        images[labels == k, :, 2 * k + 2, 4:24] = 255
    return ImageSet(images, labels.long())


@pytest.fixture
def tiny_splits() -> DatasetSplits:
    """128 training and 64 validation/test MNIST-shaped images."""
    return DatasetSplits(
        train=synthetic_images(128, 0), val=synthetic_images(64, 1), test=synthetic_images(64, 2)
    )


@pytest.fixture(scope="session")
def make_images() -> Callable[..., ImageSet]:
    """:func:`synthetic_images`, for module-scoped fixtures (tests cannot import this file)."""
    return synthetic_images


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    # Tiny tensors run faster single-threaded: intra-op threads only add overhead (100x on a
    # busy machine). End-to-end tests run the CLI in subprocesses with the default threads.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def real_data_dir() -> Path:
    """The directory holding real MNIST / CIFAR-10 ($ADVHPO_DATA_DIR); skips when unset."""
    value = os.environ.get("ADVHPO_DATA_DIR")
    if not value:
        pytest.skip("ADVHPO_DATA_DIR not set: real MNIST/CIFAR-10 not available")
    return Path(value)


POSTGRES_ENV = "ADVHPO_TEST_POSTGRES_URL"
MYSQL_ENV = "ADVHPO_TEST_MYSQL_URL"
SERVER_ENVS = {"postgresql": POSTGRES_ENV, "mysql": MYSQL_ENV}


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A storage URL per backend; servers come from ``$ADVHPO_TEST_POSTGRES_URL`` and
    ``$ADVHPO_TEST_MYSQL_URL``.

    When a variable is set its server must be reachable: the tests fail rather than skip, so a
    broken CI database is noticed.
    """
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'studies' / 'advhpo.db'}"
    env = SERVER_ENVS[request.param]
    url = os.environ.get(env)
    if not url:
        pytest.skip(f"{env} not set: {request.param} storage tests need a server")
    return url


@pytest.fixture
def study_name(storage_url: str) -> Iterator[str]:
    """A fresh study name; the study, if a test created it, is deleted afterwards."""
    name = f"advhpo-test-{uuid.uuid4().hex}"
    yield name
    # A shared server keeps what tests leave behind; a SQLite file goes with tmp_path anyway.
    if not storage_url.startswith("sqlite"):
        storage = optuna.storages.RDBStorage(storage_url)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                optuna.delete_study(study_name=name, storage=storage)
        except KeyError:  # the test created no study of this name
            pass
        finally:
            storage.engine.dispose()
