"""Tests of the dataset loaders on tiny synthetic files, plus one test on the real datasets."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from advhpo._errors import ConfigError, DataError
from advhpo.objectives import _data
from advhpo.objectives._data import (
    DATA_DIR_ENV,
    DatasetSplits,
    ImageSet,
    load_raw,
    load_splits,
    resolve_data_dir,
)

N_TRAIN, N_TEST = 40, 12
# Synthetic CIFAR files hold this many records instead of 10,000 (see the ``cifar_small``
# fixture), so a whole synthetic CIFAR-10 is a few hundred kB.
CIFAR_PER_FILE = 6

MNIST_STEMS = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

Arrays = dict[str, np.ndarray[Any, Any]]


# -- synthetic files --------------------------------------------------------------------------


def _distinct_images(n: int, shape: tuple[int, ...], seed: int) -> np.ndarray[Any, Any]:
    """Random uint8 images whose first two bytes spell their index, so content identifies them."""
    images = np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)
    flat = images.reshape(n, -1)
    flat[:, 0] = np.arange(n) % 256
    flat[:, 1] = np.arange(n) // 256
    return images


def _index_of(images: torch.Tensor) -> torch.Tensor:
    flat = images.flatten(1).long()
    return flat[:, 0] + 256 * flat[:, 1]


def _idx_bytes(magic: int, payload: np.ndarray[Any, Any]) -> bytes:
    return struct.pack(f">{1 + payload.ndim}I", magic, *payload.shape) + payload.tobytes()


def _write(path: Path, data: bytes, gz: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def make_mnist(root: Path, gz: bool | tuple[bool, ...] = True) -> Arrays:
    """Write a tiny MNIST (``N_TRAIN``/``N_TEST`` images) to ``root/MNIST/raw``.

    ``gz`` picks compression for all four files, or per file in ``MNIST_STEMS`` order.
    """
    arrays: Arrays = {
        "train_images": _distinct_images(N_TRAIN, (28, 28), seed=1),
        "train_labels": (np.arange(N_TRAIN) % 10).astype(np.uint8),
        "test_images": _distinct_images(N_TEST, (28, 28), seed=2),
        "test_labels": (np.arange(N_TEST) * 3 % 10).astype(np.uint8),
    }
    flags = gz if isinstance(gz, tuple) else (gz,) * 4
    for (key, stem), flag in zip(MNIST_STEMS.items(), flags, strict=True):
        magic = 2051 if key.endswith("images") else 2049
        _write(root / "MNIST" / "raw" / stem, _idx_bytes(magic, arrays[key]), flag)
    return arrays


def mnist_path(root: Path, key: str, gz: bool = True) -> Path:
    return root / "MNIST" / "raw" / (MNIST_STEMS[key] + (".gz" if gz else ""))


def _cifar_arrays(seed: int) -> list[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]]:
    """Six (images (n, 3, 32, 32), labels (n,)) batches: five training ones, then the test one."""
    rng = np.random.default_rng(seed)
    out = []
    for b in range(6):
        images = _distinct_images(CIFAR_PER_FILE, (3, 32, 32), seed=seed * 10 + b)
        out.append((images, rng.integers(0, 10, CIFAR_PER_FILE).astype(np.uint8)))
    return out


def make_cifar_bin(root: Path, seed: int = 3) -> Arrays:
    batches = _cifar_arrays(seed)
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    for name, (images, labels) in zip(names, batches, strict=True):
        records = np.concatenate([labels[:, None], images.reshape(len(images), -1)], axis=1)
        _write(root / "cifar-10-batches-bin" / name, records.tobytes(), gz=False)
    return _cifar_expected(batches)


def make_cifar_py(root: Path, seed: int = 4) -> Arrays:
    batches = _cifar_arrays(seed)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name, (images, labels) in zip(names, batches, strict=True):
        batch = {
            b"batch_label": name.encode(),
            b"data": images.reshape(len(images), -1),
            b"labels": [int(x) for x in labels],
            b"filenames": [b"x.png"] * len(labels),
        }
        path = root / "cifar-10-batches-py" / name
        _write(path, pickle.dumps(batch, protocol=2), gz=False)
    return _cifar_expected(batches)


def _cifar_expected(batches: list[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]]) -> Arrays:
    return {
        "train_images": np.concatenate([images for images, _ in batches[:5]]),
        "train_labels": np.concatenate([labels for _, labels in batches[:5]]),
        "test_images": batches[5][0],
        "test_labels": batches[5][1],
    }


@pytest.fixture
def cifar_small(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_data, "_CIFAR_PER_FILE", CIFAR_PER_FILE)


def assert_matches(
    raw: tuple[ImageSet, ImageSet], expected: Arrays, shape: tuple[int, int, int]
) -> None:
    for split, data in zip(("train", "test"), raw, strict=True):
        images, labels = expected[f"{split}_images"], expected[f"{split}_labels"]
        assert data.images.shape == (len(images), *shape)
        assert data.images.dtype == torch.uint8
        assert data.images.is_contiguous()
        assert data.labels.dtype == torch.int64
        assert data.labels.shape == (len(images),)
        assert np.array_equal(data.images.numpy(), images.reshape(len(images), *shape))
        assert np.array_equal(data.labels.numpy(), labels.astype(np.int64))


def assert_one_line_error(exc: pytest.ExceptionInfo[DataError], path: Path | str) -> str:
    msg = str(exc.value)
    assert str(path) in msg
    assert "\n" not in msg
    return msg


# -- loading --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "gz", [True, False, (True, False, False, True)], ids=["gz", "raw", "mixed"]
)
def test_mnist_round_trips_exactly(tmp_path: Path, gz: bool | tuple[bool, ...]) -> None:
    expected = make_mnist(tmp_path, gz)
    assert_matches(load_raw("mnist", tmp_path, offline=True), expected, (1, 28, 28))


def test_mnist_prefers_uncompressed_file_when_both_exist(tmp_path: Path) -> None:
    expected = make_mnist(tmp_path, gz=False)
    for key in MNIST_STEMS:
        mnist_path(tmp_path, key).write_bytes(b"not gzip")  # would fail if it were read
    assert_matches(load_raw("mnist", tmp_path, offline=True), expected, (1, 28, 28))


def test_cifar_bin_round_trips_exactly(tmp_path: Path, cifar_small: None) -> None:
    expected = make_cifar_bin(tmp_path)
    assert_matches(load_raw("cifar10", tmp_path, offline=True), expected, (3, 32, 32))


def test_cifar_py_round_trips_exactly(tmp_path: Path, cifar_small: None) -> None:
    expected = make_cifar_py(tmp_path)
    assert_matches(load_raw("cifar10", tmp_path, offline=True), expected, (3, 32, 32))


def test_cifar_bin_is_preferred_over_py(tmp_path: Path, cifar_small: None) -> None:
    expected = make_cifar_bin(tmp_path, seed=5)
    make_cifar_py(tmp_path, seed=6)
    assert_matches(load_raw("cifar10", tmp_path, offline=True), expected, (3, 32, 32))


def test_cifar_channel_order_is_chw(tmp_path: Path, cifar_small: None) -> None:
    make_cifar_bin(tmp_path)
    record = bytearray([7]) + bytes([10]) * 1024 + bytes([20]) * 1024 + bytes([30]) * 1024
    path = tmp_path / "cifar-10-batches-bin" / "test_batch.bin"
    path.write_bytes(bytes(record) * CIFAR_PER_FILE)
    _, test = load_raw("cifar10", tmp_path, offline=True)
    assert test.labels.tolist() == [7] * CIFAR_PER_FILE
    assert test.images[:, 0].eq(10).all() and test.images[:, 1].eq(20).all()
    assert test.images[:, 2].eq(30).all()


# -- broken files ---------------------------------------------------------------------------

Breaker = Callable[[Path], Path]


def _remove(path: Path) -> Path:
    path.unlink()
    return path


def _truncate(path: Path, keep: int) -> Path:
    path.write_bytes(path.read_bytes()[:keep])
    return path


def _rewrite_idx(root: Path, key: str, magic: int, payload: np.ndarray[Any, Any]) -> Path:
    return _write(mnist_path(root, key, gz=False), _idx_bytes(magic, payload), gz=False)


def _flip_middle(path: Path) -> Path:
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 64):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


MNIST_BREAKERS: dict[str, tuple[bool, Breaker, str]] = {
    # name: (write .gz files?, break the tree and return the bad file, expected message part)
    "truncated raw": (
        False,
        lambda r: _truncate(mnist_path(r, "train_images", gz=False), 1000),
        "truncated: expected 31376 bytes",
    ),
    "truncated header": (
        False,
        lambda r: _truncate(mnist_path(r, "test_labels", gz=False), 5),
        "truncated",
    ),
    "trailing data": (
        False,
        lambda r: _write(
            mnist_path(r, "test_labels", gz=False),
            mnist_path(r, "test_labels", gz=False).read_bytes() + b"x",
            gz=False,
        ),
        "trailing data",
    ),
    "truncated gz stream": (
        True,
        lambda r: _truncate(mnist_path(r, "train_images"), 200),
        "not a valid gzip file",
    ),
    "truncated after gunzip": (
        True,
        lambda r: _write(
            mnist_path(r, "train_images", gz=False),
            gzip.decompress(mnist_path(r, "train_images").read_bytes())[:-7],
            gz=True,
        ),
        "truncated: expected 31376 bytes after gunzip, got 31369",
    ),
    "corrupt gz": (True, lambda r: _flip_middle(mnist_path(r, "train_images")), "gzip"),
    "not gzip": (
        True,
        lambda r: _write(mnist_path(r, "test_images"), b"hello", gz=False),
        "not a valid gzip file",
    ),
    "bad magic": (
        False,
        lambda r: _rewrite_idx(r, "train_labels", 2051, np.zeros(N_TRAIN, np.uint8)),
        "bad magic number 2051: expected 2049",
    ),
    "labels as images": (
        False,
        lambda r: _rewrite_idx(r, "train_images", 2049, np.zeros(N_TRAIN, np.uint8)),
        "bad magic number 2049: expected 2051",
    ),
    "wrong image size": (
        False,
        lambda r: _rewrite_idx(r, "train_images", 2051, np.zeros((N_TRAIN, 32, 32), np.uint8)),
        "expected 28x28 images",
    ),
    "label out of range": (
        False,
        lambda r: _rewrite_idx(r, "test_labels", 2049, np.full(N_TEST, 10, np.uint8)),
        "label 10 at index 0 is outside 0..9",
    ),
    "count mismatch": (
        False,
        lambda r: _rewrite_idx(r, "train_labels", 2049, np.zeros(N_TRAIN - 1, np.uint8)),
        f"holds {N_TRAIN - 1} labels but",
    ),
    "missing file": (
        True,
        lambda r: _remove(mnist_path(r, "test_images")).with_suffix(""),
        "missing",
    ),
}


@pytest.mark.parametrize("case", MNIST_BREAKERS, ids=list(MNIST_BREAKERS))
def test_broken_mnist_file_is_a_one_line_data_error(
    tmp_path: Path, fake_torchvision: types.SimpleNamespace, case: str
) -> None:
    gz, breaker, fragment = MNIST_BREAKERS[case]
    make_mnist(tmp_path, gz)
    bad = breaker(tmp_path)
    with pytest.raises(DataError) as exc:
        load_raw("mnist", tmp_path, offline=False)  # broken files must never trigger a download
    assert fragment in assert_one_line_error(exc, bad)
    # Nothing half-loaded was memoised: repaired files load normally.
    bad.unlink(missing_ok=True)
    expected = make_mnist(tmp_path, gz)
    assert_matches(load_raw("mnist", tmp_path, offline=True), expected, (1, 28, 28))


def _bin(root: Path, name: str) -> Path:
    return root / "cifar-10-batches-bin" / name


def _py(root: Path, name: str) -> Path:
    return root / "cifar-10-batches-py" / name


def _bin_with_label(root: Path, label: int) -> Path:
    path = _bin(root, "data_batch_3.bin")
    data = bytearray(path.read_bytes())
    data[3073 * 2] = label  # the label byte of record 2
    path.write_bytes(bytes(data))
    return path


def _pickle_to(path: Path, obj: object) -> Path:
    path.write_bytes(pickle.dumps(obj))
    return path


CIFAR_BREAKERS: dict[str, tuple[Callable[[Path], Arrays], Breaker, str]] = {
    "bin truncated": (
        make_cifar_bin,
        lambda r: _truncate(_bin(r, "data_batch_2.bin"), 3073 * CIFAR_PER_FILE - 1),
        f"expected {3073 * CIFAR_PER_FILE} bytes ({CIFAR_PER_FILE} records of 3073)",
    ),
    "bin label out of range": (
        make_cifar_bin,
        lambda r: _bin_with_label(r, 200),
        "label 200 at index 2 is outside 0..9",
    ),
    "bin missing": (
        make_cifar_bin,
        lambda r: _remove(_bin(r, "test_batch.bin")),
        "missing",
    ),
    "py garbage": (
        make_cifar_py,
        lambda r: _write(_py(r, "data_batch_4"), b"\x80\x02garbage", gz=False),
        "malformed CIFAR-10 pickle",
    ),
    "py truncated": (
        make_cifar_py,
        lambda r: _truncate(_py(r, "data_batch_1"), 100),
        "malformed CIFAR-10 pickle",
    ),
    "py missing keys": (
        make_cifar_py,
        lambda r: _pickle_to(_py(r, "test_batch"), {b"data": 1}),
        "expected a dict with b'data'",
    ),
    "py wrong shape": (
        make_cifar_py,
        lambda r: _pickle_to(
            _py(r, "test_batch"),
            {b"data": np.zeros((CIFAR_PER_FILE, 100), np.uint8), b"labels": [0] * CIFAR_PER_FILE},
        ),
        "b'data' is uint8 (6, 100)",
    ),
    "py label out of range": (
        make_cifar_py,
        lambda r: _pickle_to(
            _py(r, "test_batch"),
            {b"data": np.zeros((CIFAR_PER_FILE, 3072), np.uint8), b"labels": [0, 1, 2, 3, 4, -1]},
        ),
        "label -1 at index 5 is outside 0..9",
    ),
}


@pytest.mark.parametrize("case", CIFAR_BREAKERS, ids=list(CIFAR_BREAKERS))
def test_broken_cifar_file_is_a_one_line_data_error(
    tmp_path: Path, fake_torchvision: types.SimpleNamespace, cifar_small: None, case: str
) -> None:
    make, breaker, fragment = CIFAR_BREAKERS[case]
    make(tmp_path)
    bad = breaker(tmp_path)
    with pytest.raises(DataError) as exc:
        load_raw("cifar10", tmp_path)
    assert fragment in assert_one_line_error(exc, bad)
    bad.unlink(missing_ok=True)
    expected = make(tmp_path)
    assert_matches(load_raw("cifar10", tmp_path, offline=True), expected, (3, 32, 32))


def test_real_size_cifar_file_is_required(tmp_path: Path) -> None:
    # Without the cifar_small fixture the loader wants the official 10,000 records per file.
    make_cifar_bin(tmp_path)
    with pytest.raises(DataError, match="expected 30730000 bytes"):
        load_raw("cifar10", tmp_path, offline=True)


# -- absent datasets and downloading ---------------------------------------------------------


class _FailIfCalled:
    def __init__(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("offline mode must not download")


@pytest.fixture
def fake_torchvision(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    """Stand-in ``torchvision.datasets`` (no network, no slow import); tests set its classes."""
    datasets = types.SimpleNamespace(MNIST=_FailIfCalled, CIFAR10=_FailIfCalled)
    package = types.ModuleType("torchvision")
    package.datasets = datasets  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torchvision", package)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", datasets)
    return datasets


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_offline_empty_dir_is_a_one_line_data_error(
    tmp_path: Path, fake_torchvision: types.SimpleNamespace, name: str
) -> None:
    with pytest.raises(DataError) as exc:
        load_raw(name, tmp_path / "nothing", offline=True)
    msg = assert_one_line_error(exc, tmp_path / "nothing")
    assert name in msg and "offline" in msg and DATA_DIR_ENV in msg
    assert ("t10k-images-idx3-ubyte" if name == "mnist" else "test_batch.bin") in msg


def test_download_writes_files_that_are_then_parsed(
    tmp_path: Path, fake_torchvision: types.SimpleNamespace, cifar_small: None
) -> None:
    calls: list[tuple[str, bool]] = []
    expected: dict[str, Arrays] = {}

    def fake(name: str, make: Callable[[Path], Arrays]) -> Callable[..., None]:
        def download(root: str, train: bool = True, download: bool = False) -> None:
            assert download
            calls.append((name, train))
            expected[name] = make(Path(root))

        return download

    fake_torchvision.MNIST = fake("mnist", lambda r: make_mnist(r, gz=False))
    fake_torchvision.CIFAR10 = fake("cifar10", make_cifar_py)
    assert_matches(load_raw("mnist", tmp_path), expected["mnist"], (1, 28, 28))
    assert_matches(load_raw("cifar10", tmp_path), expected["cifar10"], (3, 32, 32))
    assert [name for name, _ in calls] == ["mnist", "cifar10"]


def test_failed_download_is_a_one_line_data_error(
    tmp_path: Path, fake_torchvision: types.SimpleNamespace
) -> None:
    def unreachable(**kwargs: object) -> None:
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried two mirrors")

    fake_torchvision.MNIST = unreachable
    with pytest.raises(DataError) as exc:
        load_raw("mnist", tmp_path)
    msg = assert_one_line_error(exc, tmp_path)
    assert "download" in msg and "Tried two mirrors" in msg
    assert isinstance(exc.value.__cause__, RuntimeError)
    assert ("mnist", tmp_path.resolve()) not in _data._CACHE


def test_a_failed_download_removes_the_folders_it_made(
    tmp_path: Path, fake_torchvision: types.SimpleNamespace
) -> None:
    def unreachable(**kwargs: object) -> None:
        raise RuntimeError("no network")

    fake_torchvision.MNIST = unreachable
    (tmp_path / "kept").mkdir()
    with pytest.raises(DataError):
        load_raw("mnist", tmp_path / "kept" / "a" / "b" / "c")
    assert [p.name for p in tmp_path.rglob("*")] == ["kept"]


@pytest.mark.parametrize(
    "cut", [ConnectionResetError("connection reset by peer"), KeyboardInterrupt()]
)
def test_a_download_cut_off_leaves_only_what_others_put_there(
    tmp_path: Path, fake_torchvision: types.SimpleNamespace, cut: BaseException
) -> None:
    # A partial file left behind would be reported as corrupt data on the next run; files
    # that appear meanwhile (another process's download into the same cache) are not ours.
    (tmp_path / "notes.txt").write_text("mine")

    def cut_off(root: str, **kwargs: object) -> None:
        raw = Path(root) / "MNIST" / "raw"
        raw.mkdir(parents=True)
        (raw / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b partial")
        (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"another process's")
        raise cut

    fake_torchvision.MNIST = cut_off
    with pytest.raises(DataError if isinstance(cut, Exception) else KeyboardInterrupt):
        load_raw("mnist", tmp_path)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["cifar-10-python.tar.gz", "notes.txt"]


def test_a_download_killed_long_ago_is_cleaned_up_by_the_next(
    tmp_path: Path, fake_torchvision: types.SimpleNamespace
) -> None:
    # SIGKILL runs no cleanup; a day-old download folder is nobody's any more, a fresh one may
    # be another process's download in progress.
    old, fresh = tmp_path / ".download-old", tmp_path / ".download-fresh"
    for folder in (old, fresh):
        (folder / "MNIST" / "raw").mkdir(parents=True)
    day_ago = time.time() - 2 * 24 * 3600
    os.utime(old, (day_ago, day_ago))
    fake_torchvision.MNIST = lambda **kwargs: None
    with pytest.raises(DataError):
        load_raw("mnist", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".download-fresh"]


def test_download_that_writes_nothing_is_a_data_error(
    tmp_path: Path, fake_torchvision: types.SimpleNamespace
) -> None:
    fake_torchvision.CIFAR10 = lambda **kwargs: None
    with pytest.raises(DataError, match="missing"):
        load_raw("cifar10", tmp_path)


def test_unknown_dataset_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="fashion"):
        load_raw("fashion", tmp_path)
    with pytest.raises(ConfigError, match="MNIST"):
        load_splits("MNIST", tmp_path)


# -- data dir and memoisation ----------------------------------------------------------------


def test_resolve_data_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tmp_path = tmp_path.resolve()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    assert resolve_data_dir(None) == tmp_path / "home" / ".cache" / "advhpo"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert resolve_data_dir(None) == tmp_path / "home" / ".cache" / "advhpo"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_data_dir(None) == tmp_path / "xdg" / "advhpo"
    monkeypatch.setenv(DATA_DIR_ENV, "")  # empty counts as unset
    assert resolve_data_dir(None) == tmp_path / "xdg" / "advhpo"
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "env"))
    assert resolve_data_dir(None) == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir(str(tmp_path / "arg" / "..")) == tmp_path
    assert resolve_data_dir("~/d") == tmp_path / "home" / "d"
    monkeypatch.chdir(tmp_path)
    assert resolve_data_dir("rel") == tmp_path / "rel"


def test_load_raw_is_memoised_per_name_and_resolved_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_mnist(tmp_path / "a")
    make_mnist(tmp_path / "b")
    train, test = load_raw("mnist", tmp_path / "a", offline=True)
    again = load_raw("mnist", str(tmp_path / "a" / ".." / "a"), offline=True)
    assert again[0].images is train.images and again[1].labels is test.labels
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "a"))
    assert load_raw("mnist", offline=True)[0].images is train.images
    other = load_raw("mnist", tmp_path / "b", offline=True)
    assert other[0].images is not train.images
    assert torch.equal(other[0].images, train.images)


def test_memoised_data_survives_file_removal(tmp_path: Path) -> None:
    make_mnist(tmp_path)
    train, _ = load_raw("mnist", tmp_path, offline=True)
    for key in MNIST_STEMS:
        mnist_path(tmp_path, key).unlink()
    assert load_raw("mnist", tmp_path, offline=True)[0] is train


# -- splits ---------------------------------------------------------------------------------


@pytest.mark.parametrize("val_fraction", [0.0, 0.1, 0.25, 0.49])
def test_splits_partition_the_training_set(tmp_path: Path, val_fraction: float) -> None:
    expected = make_mnist(tmp_path)
    splits = load_splits("mnist", tmp_path, offline=True, val_fraction=val_fraction)
    assert isinstance(splits, DatasetSplits)
    n_val = round(N_TRAIN * val_fraction)
    assert (len(splits.train), len(splits.val)) == (N_TRAIN - n_val, n_val)
    train_idx = _index_of(splits.train.images).tolist()
    val_idx = _index_of(splits.val.images).tolist()
    assert not set(train_idx) & set(val_idx)
    assert sorted(train_idx + val_idx) == list(range(N_TRAIN))
    # Every image kept its own label and pixels.
    for split, idx in ((splits.train, train_idx), (splits.val, val_idx)):
        assert np.array_equal(split.labels.numpy(), expected["train_labels"][idx])
        assert np.array_equal(split.images.numpy()[:, 0], expected["train_images"][idx])
        assert split.images.is_contiguous()
    assert train_idx != sorted(train_idx)  # shuffled, so head(n) is a random subset
    assert torch.equal(splits.test.images, load_raw("mnist", tmp_path)[1].images)


def test_splits_are_deterministic_across_dirs_and_global_seed(tmp_path: Path) -> None:
    make_mnist(tmp_path / "host1")
    make_mnist(tmp_path / "host2")
    torch.manual_seed(1)
    a = load_splits("mnist", tmp_path / "host1", offline=True, val_fraction=0.2)
    torch.manual_seed(2)
    b = load_splits("mnist", tmp_path / "host2", offline=True, val_fraction=0.2)
    c = load_splits("mnist", tmp_path / "host1", offline=True, val_fraction=0.2)
    for x in (b, c):
        assert torch.equal(a.val.images, x.val.images)
        assert torch.equal(a.train.images, x.train.images)
        assert torch.equal(a.train.labels, x.train.labels)


def test_splits_leave_the_memoised_raw_data_alone(tmp_path: Path) -> None:
    make_mnist(tmp_path)
    train, _ = load_raw("mnist", tmp_path, offline=True)
    before = train.images.clone()
    splits = load_splits("mnist", tmp_path, offline=True)
    splits.train.images.zero_()
    assert torch.equal(train.images, before)


@pytest.mark.parametrize("val_fraction", [-0.1, 0.5, 1.0])
def test_bad_val_fraction_is_a_config_error(tmp_path: Path, val_fraction: float) -> None:
    make_mnist(tmp_path)
    with pytest.raises(ConfigError, match="val_fraction"):
        load_splits("mnist", tmp_path, offline=True, val_fraction=val_fraction)


# -- ImageSet -------------------------------------------------------------------------------


def _tiny_set(n: int = 5) -> ImageSet:
    images = torch.arange(n * 4, dtype=torch.uint8).reshape(n, 1, 2, 2)
    return ImageSet(images, torch.arange(n, dtype=torch.int64))


def test_image_set_head() -> None:
    data = _tiny_set()
    assert len(data) == 5
    assert data.head(None) is data and data.head(5) is data and data.head(99) is data
    first = data.head(3)
    assert len(first) == 3
    assert torch.equal(first.images, data.images[:3])
    assert first.labels.tolist() == [0, 1, 2]
    assert len(data.head(0)) == 0
    with pytest.raises(ConfigError):
        data.head(-1)


def test_image_set_to_moves_both_tensors() -> None:
    data = _tiny_set()
    assert data.to("cpu") is data
    moved = data.to(torch.device("meta"))
    assert moved.images.device.type == "meta" and moved.labels.device.type == "meta"
    assert moved.images.shape == data.images.shape
    assert moved.labels.dtype == torch.int64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_image_set_round_trips_through_cuda() -> None:
    data = _tiny_set()
    back = data.to("cuda").to("cpu")
    assert torch.equal(back.images, data.images) and torch.equal(back.labels, data.labels)


@pytest.mark.parametrize(
    "images, labels",
    [
        (torch.zeros(3, 1, 2, 2, dtype=torch.uint8), torch.zeros(2, dtype=torch.int64)),
        (torch.zeros(3, 1, 2, 2), torch.zeros(3, dtype=torch.int64)),
        (torch.zeros(3, 2, 2, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64)),
        (torch.zeros(3, 1, 2, 2, dtype=torch.uint8), torch.zeros(3, dtype=torch.int32)),
    ],
    ids=["length", "float images", "3-d images", "int32 labels"],
)
def test_image_set_rejects_malformed_tensors(images: torch.Tensor, labels: torch.Tensor) -> None:
    with pytest.raises(DataError):
        ImageSet(images, labels)


# -- real data ------------------------------------------------------------------------------


MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.mark.real_data
def test_real_mnist_and_cifar10() -> None:
    data_dir = os.environ.get("ADVHPO_DATA_DIR")
    if not data_dir:
        pytest.skip("ADVHPO_DATA_DIR not set: real MNIST/CIFAR-10 not available")
    train, test = load_raw("mnist", data_dir, offline=True)
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert torch.bincount(train.labels).tolist() == MNIST_TRAIN_COUNTS
    assert torch.bincount(test.labels).tolist() == MNIST_TEST_COUNTS
    assert int(train.images.max()) == 255 and int(train.images.min()) == 0
    splits = load_splits("mnist", data_dir, offline=True)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (54000, 6000, 10000)

    train, test = load_raw("cifar10", data_dir, offline=True)
    assert train.images.shape == (50000, 3, 32, 32) and test.images.shape == (10000, 3, 32, 32)
    assert train.images.is_contiguous() and train.labels.dtype == torch.int64
    assert torch.bincount(train.labels).tolist() == [5000] * 10
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    splits = load_splits("cifar10", data_dir, offline=True)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (45000, 5000, 10000)
