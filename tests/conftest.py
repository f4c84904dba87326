"""Shared fixtures: tiny synthetic datasets for unit tests, the real data dir for e2e ones."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

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
