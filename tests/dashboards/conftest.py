"""Fixtures of the dashboards tests: synthetic studies, a real tiny checkpoint, MNIST files.

Helpers are handed out as fixtures: with ``--import-mode=importlib`` test modules cannot import
this file.
"""

from __future__ import annotations

import gzip
import math
import os
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from optuna.trial import FrozenTrial, TrialState

from advhpo.objectives import (
    DatasetSplits,
    ImageSet,
    NetConfig,
    TrialConfig,
    eps_curve_grid,
    make_ensemble_trainer,
)
from advhpo.search import StudySettings, create_or_check_study, space_distributions
from advhpo.storage import CheckpointStore, open_storage

DISTRIBUTIONS = space_distributions("mnist")
PARAMS = {
    "layers": 1,
    "dropout": 0.25,
    "lr": 0.01,
    "weight_decay": 1e-5,
    "adv_method": "fgsm",
    "ensemble": 1,
    "adv_eps": 0.3,
}

CHROMIUM_ENV = "ADVHPO_TEST_CHROMIUM"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def make_trial(
    clean: float,
    fgsm: float,
    *,
    params: dict[str, Any] | None = None,
    attrs: dict[str, Any] | None = None,
    state: TrialState = TrialState.COMPLETE,
    extra_values: tuple[float, ...] = (),
) -> FrozenTrial:
    """A finished trial with the user attributes a worker writes (overridable by ``attrs``)."""
    p = dict(PARAMS if params is None else params)
    grid = eps_curve_grid(0.3)
    user_attrs: dict[str, Any] = {
        "pgd_acc": fgsm * 0.9,
        "transfer_acc": fgsm,
        "eps_curve": {"eps": list(grid), "fgsm_acc": [clean * (1 - e) for e in grid]},
        "n_eval": 64,
        "train_seconds": 10.0,
        "epoch_history": [[{"epoch": e, "loss": 2.0 / e, "seconds": 1.0} for e in (1, 2)]],
        "epoch_values": [
            {"epoch": e, "clean_acc": clean * e / 2, "fgsm_acc": fgsm * e / 2} for e in (1, 2)
        ],
        **(attrs or {}),
    }
    done = state in (TrialState.COMPLETE,)
    return optuna.trial.create_trial(
        state=state,
        params=p,
        distributions={k: DISTRIBUTIONS[k] for k in p},
        values=[clean, fgsm, *extra_values] if done else None,
        user_attrs=user_attrs,
    )


def random_trial(rng: random.Random) -> FrozenTrial:
    """A completed trial of the default MNIST space whose FGSM accuracy follows adv_eps."""
    method = rng.choice(["none", "fgsm", "fgsm_rs"])
    params: dict[str, Any] = {
        "layers": rng.randint(1, 3),
        "dropout": rng.uniform(0.0, 0.5),
        "lr": math.exp(rng.uniform(math.log(1e-3), math.log(0.1))),
        "weight_decay": math.exp(rng.uniform(math.log(1e-6), math.log(1e-3))),
        "adv_method": method,
        "ensemble": rng.choice([1, 3, 5, 7]),
    }
    eps = 0.0 if method == "none" else rng.uniform(0.01, 0.3)
    if eps:
        params["adv_eps"] = eps
    clean = min(0.99, 0.85 + 0.04 * params["layers"] - 0.1 * eps + rng.gauss(0, 0.01))
    fgsm = max(0.0, min(clean, 0.02 + 2.5 * eps + rng.gauss(0, 0.02)))
    return make_trial(clean, fgsm, params=params)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite study file under the test's temporary directory."""
    return f"sqlite:///{tmp_path / 'studies.db'}"


NewStudy = Callable[..., optuna.Study]


@pytest.fixture
def new_study() -> NewStudy:
    """``new_study(url, name, **settings)``: an advhpo study (default: MNIST, eval eps 0.3)."""

    def create(url: str, name: str, **settings: Any) -> optuna.Study:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        full = {"dataset": "mnist", "budget": 50, "eval_eps": 0.3, **settings}
        return create_or_check_study(name, open_storage(url), StudySettings(**full))

    return create


@pytest.fixture(scope="session")
def trial_factory() -> Callable[..., FrozenTrial]:
    """:func:`make_trial`, for test modules."""
    return make_trial


@pytest.fixture(scope="session")
def random_trials() -> Callable[[int, int], list[FrozenTrial]]:
    """``random_trials(n, seed)``: ``n`` completed trials of the default MNIST space."""

    def make(n: int, seed: int) -> list[FrozenTrial]:
        rng = random.Random(seed)
        return [random_trial(rng) for _ in range(n)]

    return make


@dataclass(frozen=True)
class Checkpoint:
    """A real trained ensemble's checkpoint, as a worker leaves it."""

    store: CheckpointStore
    study_name: str
    key: int
    cfg: TrialConfig
    trainer: Any


@pytest.fixture
def tiny_checkpoint(tmp_path: Path, tiny_splits: DatasetSplits) -> Checkpoint:
    """Trial 0 of study ``tiny``: 3 tiny nets trained 1 epoch on tiny images, checkpointed."""
    cfg = TrialConfig(
        dataset="mnist",
        # Four channels and a 16-wide head: real code paths, a few ms per attack step.
        net=NetConfig(dataset="mnist", blocks=((4,),), dense=(16,)),
        epochs=1,
        batch_size=32,
        ensemble=3,
        seed=7,
        eval_eps=0.3,
        eps_grid=(0.0, 0.1, 0.2, 0.3),
        pgd_steps=3,
    )
    trainer = make_ensemble_trainer(cfg, torch.device("cpu"))
    trainer.train_epoch(tiny_splits.train)
    store = CheckpointStore(tmp_path / "artifacts")
    state = {"config": cfg.to_dict(), "trainer": trainer.state_dict(), "train_seconds": 1.0}
    store.save("tiny", 0, 1, state)
    return Checkpoint(store, "tiny", 0, cfg, trainer)


def write_mnist(root: Path, train: ImageSet, test: ImageSet) -> Path:
    """Write ``train`` and ``test`` as gzipped MNIST IDX files under ``root/MNIST/raw``."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, data in (("train", train), ("t10k", test)):
        n = len(data)
        images = struct.pack(">4I", 2051, n, 28, 28) + data.images.numpy().tobytes()
        labels = struct.pack(">2I", 2049, n) + data.labels.to(torch.uint8).numpy().tobytes()
        (raw / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(images))
        (raw / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))
    return root


@pytest.fixture
def mnist_dir(tmp_path: Path, tiny_splits: DatasetSplits) -> Path:
    """A data folder holding tiny MNIST files (the test split is ``tiny_splits.test``)."""
    return write_mnist(tmp_path / "data", tiny_splits.train, tiny_splits.test)


@pytest.fixture
def chromium() -> str:
    """The headless Chromium of the browser tests (``$ADVHPO_TEST_CHROMIUM``).

    Unset: the tests skip. Set (as CI does): the browser must be there, or the tests fail.
    """
    path = os.environ.get(CHROMIUM_ENV)
    if not path:
        pytest.skip(f"{CHROMIUM_ENV} not set: browser tests need Debian's chromium")
    if not os.access(path, os.X_OK):
        pytest.fail(f"{CHROMIUM_ENV}={path} is not an executable browser")
    return path


@pytest.fixture
def screenshots() -> Path:
    """Where browser tests save their screenshots (git-ignored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
