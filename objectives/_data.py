"""MNIST and CIFAR-10 as in-memory uint8 tensors, and the fixed train/validation split.

Files are parsed here (IDX, CIFAR-10 binary and CIFAR-10 python pickles) rather than through
torchvision's dataset classes: those build one PIL image per sample, whereas a whole dataset
read as one numpy buffer loads in well under a second. torchvision is only used to download.
"""

from __future__ import annotations

import contextlib
import gzip
import itertools
import os
import pickle
import shutil
import struct
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from advhpo._errors import ConfigError, DataError
from advhpo.objectives._config import DATASETS, IMAGE_SHAPE, check_choice, check_val_fraction

DATA_DIR_ENV = "ADVHPO_DATA_DIR"

NUM_CLASSES = 10

# The validation split must be the same for every trial, worker and host, so it is drawn from a
# generator with this constant seed, never from the trial seed or the global RNG.
_SPLIT_SEED = 20_240_601

_IDX_IMAGES_MAGIC = 2051
_IDX_LABELS_MAGIC = 2049

# (train images, train labels, test images, test labels), as named by the original distribution.
_MNIST_DIR = Path("MNIST") / "raw"
_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

_CIFAR_BIN_DIR = "cifar-10-batches-bin"
_CIFAR_BIN_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
_CIFAR_BIN_TEST = "test_batch.bin"
_CIFAR_PY_DIR = "cifar-10-batches-py"
_CIFAR_PY_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_PY_TEST = "test_batch"
_CIFAR_PIXELS = 3 * 32 * 32
# Every official CIFAR-10 file holds exactly this many records; module-level so tests can use
# tiny synthetic files instead of writing 180 MB.
_CIFAR_PER_FILE = 10_000

_Array = npt.NDArray[Any]

# Keyed on (dataset name, resolved data dir). Holding the lock while loading makes concurrent
# first calls from several threads read the files once instead of racing.
_CACHE: dict[tuple[str, Path], tuple[ImageSet, ImageSet]] = {}
_CACHE_LOCK = threading.Lock()


@dataclass(frozen=True, eq=False)
class ImageSet:
    """Images held in memory: uint8 (N, C, H, W) contiguous, labels int64 (N,).

    Pixels are raw bytes (0-255); scaling to [0, 1] is left to the consumer, so a dataset costs
    one byte per pixel wherever it lives. Equality is identity: comparing tensors element-wise
    would be ambiguous.

    Attributes:
        images: ``uint8`` tensor of shape ``(N, C, H, W)``.
        labels: ``int64`` tensor of shape ``(N,)``, class indices.

    Raises:
        DataError: The tensors have the wrong rank or dtype, or different lengths.
    """

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != torch.uint8:
            raise DataError(
                f"ImageSet images must be uint8 (N, C, H, W), got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        if self.labels.ndim != 1 or self.labels.dtype != torch.int64:
            raise DataError(
                f"ImageSet labels must be int64 (N,), got {self.labels.dtype} "
                f"{tuple(self.labels.shape)}"
            )
        if len(self.images) != len(self.labels):
            raise DataError(f"ImageSet has {len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device | str) -> ImageSet:
        """Both tensors on ``device``.

        Args:
            device: Target device, e.g. ``"cuda"`` or ``torch.device("cpu")``.

        Returns:
            ``self`` when both tensors are already there, else a new set.
        """
        target = torch.device(device)
        # Only host-to-GPU copies may be asynchronous; a non-blocking copy back to the host
        # could be read before it has landed.
        non_blocking = target.type == "cuda"
        images = self.images.to(target, non_blocking=non_blocking)
        labels = self.labels.to(target, non_blocking=non_blocking)
        if images is self.images and labels is self.labels:
            return self
        return ImageSet(images, labels)

    def head(self, n: int | None) -> ImageSet:
        """The first ``n`` images (views, no copy).

        Args:
            n: How many images to keep; ``None`` or ``n >= len(self)`` keeps all of them.

        Returns:
            ``self`` when everything is kept, else a new set sharing memory with this one.

        Raises:
            ConfigError: ``n`` is negative.
        """
        if n is None or n >= len(self):
            return self
        if n < 0:
            raise ConfigError(f"subset size must be >= 0, got {n}")
        return ImageSet(self.images[:n], self.labels[:n])


@dataclass(frozen=True, eq=False)
class DatasetSplits:
    """One dataset split three ways.

    Attributes:
        train: The official training set minus the validation split, in a fixed shuffled order
            (so ``train.head(n)`` is a random but reproducible subset).
        val: A deterministic validation split carved from the official training set, also in
            fixed shuffled order.
        test: The official test set, in file order.
    """

    train: ImageSet
    val: ImageSet
    test: ImageSet


def resolve_data_dir(data_dir: str | os.PathLike[str] | None) -> Path:
    """The directory datasets are read from (and downloaded into).

    Precedence: the explicit argument, then ``$ADVHPO_DATA_DIR``, then ``advhpo`` inside the
    user cache dir (``$XDG_CACHE_HOME``, default ``~/.cache``). Empty environment variables
    count as unset, and a relative ``$XDG_CACHE_HOME`` is ignored as the XDG spec asks.

    Args:
        data_dir: Explicit directory, or ``None`` to fall back as above.

    Returns:
        The absolute, ``~``-expanded, symlink-resolved path; it need not exist.
    """
    if data_dir is not None:
        path = Path(data_dir)
    elif os.environ.get(DATA_DIR_ENV):
        path = Path(os.environ[DATA_DIR_ENV])
    else:
        xdg = os.environ.get("XDG_CACHE_HOME", "")
        cache = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
        path = cache / "advhpo"
    return path.expanduser().resolve()


def load_raw(
    name: str, data_dir: str | os.PathLike[str] | None = None, *, offline: bool = False
) -> tuple[ImageSet, ImageSet]:
    """The official training and test sets, on the CPU.

    Memoised per process on ``(name, resolved dir)``: a long-lived worker reads the files once
    and every later call returns the very same tensors, which callers must therefore not modify
    in place. A failed load caches nothing.

    Files are looked for in the resolved dir: MNIST as ``MNIST/raw/<idx file>`` (uncompressed or
    ``.gz``), CIFAR-10 as ``cifar-10-batches-bin/`` or else ``cifar-10-batches-py/``. When
    none is there, torchvision downloads the dataset into the dir, unless ``offline``.

    Args:
        name: ``"mnist"`` or ``"cifar10"``.
        data_dir: Data directory; ``None`` resolves as :func:`resolve_data_dir` describes.
        offline: Never download; a missing dataset is an error. Default False.

    Returns:
        ``(train, test)``: 60,000/10,000 MNIST images of shape (1, 28, 28), or 50,000/10,000
        CIFAR-10 images of shape (3, 32, 32).

    Raises:
        ConfigError: ``name`` is not a known dataset.
        DataError: A file is missing, truncated or corrupt, the download failed, or the dataset
            is absent and ``offline`` is set.
    """
    check_choice("dataset", name, DATASETS)
    root = resolve_data_dir(data_dir)
    key = (name, root)
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
        if cached is None:
            cached = _load_mnist(root, offline) if name == "mnist" else _load_cifar10(root, offline)
            _CACHE[key] = cached
    return cached


def load_splits(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    offline: bool = False,
    val_fraction: float = 0.1,
) -> DatasetSplits:
    """Train, validation and test sets, with the same validation images on every host.

    The official training set is permuted by a ``torch.randperm`` drawn from a generator with a
    fixed seed (not the trial seed, not the global RNG); the first ``round(N * val_fraction)``
    images become ``val`` and the rest ``train``, both kept in that shuffled order. The splits
    are fresh copies; the memoised raw tensors of :func:`load_raw` are left untouched.

    Args:
        name: ``"mnist"`` or ``"cifar10"``.
        data_dir: Data directory; ``None`` resolves as :func:`resolve_data_dir` describes.
        offline: Never download; a missing dataset is an error. Default False.
        val_fraction: Share of the official training set held out, in [0, 0.5). Default 0.1.

    Returns:
        The three splits, on the CPU.

    Raises:
        ConfigError: ``name`` is unknown or ``val_fraction`` out of range.
        DataError: As :func:`load_raw`.
    """
    check_choice("dataset", name, DATASETS)
    check_val_fraction(val_fraction)
    train, test = load_raw(name, data_dir, offline=offline)
    n = len(train)
    n_val = round(n * val_fraction)
    generator = torch.Generator().manual_seed(_SPLIT_SEED)
    perm = torch.randperm(n, generator=generator)
    return DatasetSplits(
        train=_take(train, perm[n_val:]),
        val=_take(train, perm[:n_val]),
        test=test,
    )


def _take(data: ImageSet, index: torch.Tensor) -> ImageSet:
    return ImageSet(data.images.index_select(0, index), data.labels.index_select(0, index))


def _to_imageset(images: _Array, labels: _Array) -> ImageSet:
    return ImageSet(
        torch.from_numpy(images).contiguous(),
        torch.from_numpy(labels.astype(np.int64)).contiguous(),
    )


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _check_labels(path: Path, labels: _Array) -> None:
    bad = np.flatnonzero((labels < 0) | (labels >= NUM_CLASSES))
    if bad.size:
        i = int(bad[0])
        raise DataError(
            f"{path}: label {int(labels[i])} at index {i} is outside 0..{NUM_CLASSES - 1}"
        )


def _read_bytes(path: Path, what: str) -> bytes:
    """The file's contents, gunzipped when its name ends in ``.gz``; ``what`` names the file."""
    try:
        if path.suffix != ".gz":
            return path.read_bytes()
        with gzip.open(path, "rb") as f:
            return f.read()
    except FileNotFoundError as e:
        raise DataError(f"{path}: missing: expected {what}") from e
    except (OSError, EOFError, zlib.error) as e:
        # BadGzipFile is an OSError; a truncated gzip stream raises EOFError, a corrupt one
        # zlib.error. An OSError on a plain file means it is unreadable (permissions, I/O).
        problem = "not a valid gzip file" if path.suffix == ".gz" else "cannot be read"
        raise DataError(f"{path}: {problem} ({_one_line(e) or type(e).__name__})") from e


# -- MNIST ----------------------------------------------------------------------------------


def _mnist_candidates(root: Path, stem: str) -> tuple[Path, Path]:
    raw = root / _MNIST_DIR / stem
    return raw, raw.with_name(stem + ".gz")


def _find_mnist_file(root: Path, stem: str) -> Path | None:
    # The uncompressed file wins when both exist: no gunzip needed, and it is what a torchvision
    # download leaves behind.
    for path in _mnist_candidates(root, stem):
        if path.is_file():
            return path
    return None


def _load_mnist(root: Path, offline: bool) -> tuple[ImageSet, ImageSet]:
    found = [_find_mnist_file(root, stem) for stem in _MNIST_FILES]
    if all(path is None for path in found):
        expected = ", ".join(f"{stem}[.gz]" for stem in _MNIST_FILES)
        _download("mnist", root, offline, f"{root / _MNIST_DIR}/{{{expected}}}")
        found = [_find_mnist_file(root, stem) for stem in _MNIST_FILES]
    paths: list[Path] = []
    for stem, path in zip(_MNIST_FILES, found, strict=True):
        if path is None:
            raw, gz = _mnist_candidates(root, stem)
            raise DataError(
                f"{raw}: missing (neither it nor {gz.name} exists, but other MNIST files do; "
                "restore it or empty the directory to download afresh)"
            )
        paths.append(path)
    train_images, train_labels, test_images, test_labels = paths
    return (
        _mnist_pair(train_images, train_labels),
        _mnist_pair(test_images, test_labels),
    )


def _mnist_pair(images_path: Path, labels_path: Path) -> ImageSet:
    images = _read_idx(images_path, _IDX_IMAGES_MAGIC)
    labels = _read_idx(labels_path, _IDX_LABELS_MAGIC)
    if len(images) != len(labels):
        raise DataError(
            f"{labels_path}: holds {len(labels)} labels but {images_path} holds "
            f"{len(images)} images"
        )
    _check_labels(labels_path, labels)
    return _to_imageset(images.reshape(len(images), *IMAGE_SHAPE["mnist"]), labels)


def _read_idx(path: Path, magic: int) -> _Array:
    """An IDX file's uint8 payload: (N, rows, cols) for images, (N,) for labels."""
    kind = "images" if magic == _IDX_IMAGES_MAGIC else "labels"
    data = _read_bytes(path, f"the MNIST IDX {kind} file")
    after = " after gunzip" if path.suffix == ".gz" else ""
    ndim = 3 if magic == _IDX_IMAGES_MAGIC else 1
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(
            f"{path}: truncated: expected at least a {header}-byte IDX header{after}, "
            f"got {len(data)} bytes"
        )
    found_magic, *dims = struct.unpack(f">{1 + ndim}I", data[:header])
    if found_magic != magic:
        raise DataError(
            f"{path}: bad magic number {found_magic}: expected {magic} (IDX {kind} file)"
        )
    if ndim == 3 and tuple(dims[1:]) != IMAGE_SHAPE["mnist"][1:]:
        raise DataError(f"{path}: expected 28x28 images, header says {dims[1]}x{dims[2]}")
    expected = header + int(np.prod(dims))
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "trailing data"
        raise DataError(
            f"{path}: {problem}: expected {expected} bytes{after}, got {len(data)} "
            f"(the header promises {dims[0]} records)"
        )
    # frombuffer over immutable bytes is read-only, and torch wants a writable array.
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


# -- CIFAR-10 -------------------------------------------------------------------------------


def _load_cifar10(root: Path, offline: bool) -> tuple[ImageSet, ImageSet]:
    bin_dir, py_dir = root / _CIFAR_BIN_DIR, root / _CIFAR_PY_DIR
    bin_files = (*_CIFAR_BIN_TRAIN, _CIFAR_BIN_TEST)
    py_files = (*_CIFAR_PY_TRAIN, _CIFAR_PY_TEST)
    if not any((bin_dir / f).is_file() for f in bin_files) and not any(
        (py_dir / f).is_file() for f in py_files
    ):
        _download(
            "cifar10",
            root,
            offline,
            f"{bin_dir}/{{{','.join(bin_files)}}} or {py_dir}/{{{','.join(py_files)}}}",
        )
    if any((bin_dir / f).is_file() for f in bin_files):
        train = [_read_cifar_bin(bin_dir / f) for f in _CIFAR_BIN_TRAIN]
        test = [_read_cifar_bin(bin_dir / _CIFAR_BIN_TEST)]
    else:
        train = [_read_cifar_py(py_dir / f) for f in _CIFAR_PY_TRAIN]
        test = [_read_cifar_py(py_dir / _CIFAR_PY_TEST)]
    return _join(train), _join(test)


def _join(batches: list[tuple[_Array, _Array]]) -> ImageSet:
    # concatenate always copies, which turns the strided, read-only views over the file bytes
    # into the one contiguous, writable array torch.from_numpy wants.
    return _to_imageset(
        np.concatenate([images for images, _ in batches]),
        np.concatenate([labels for _, labels in batches]),
    )


def _read_cifar_bin(path: Path) -> tuple[_Array, _Array]:
    """One binary-version batch: records of 1 label byte then 3072 CHW pixel bytes."""
    data = _read_bytes(path, "a CIFAR-10 binary batch")
    n, record = _CIFAR_PER_FILE, 1 + _CIFAR_PIXELS
    if len(data) != n * record:
        raise DataError(
            f"{path}: expected {n * record} bytes ({n} records of {record}), got {len(data)}"
        )
    rows = np.frombuffer(data, dtype=np.uint8).reshape(n, record)
    labels = rows[:, 0].astype(np.int64)
    _check_labels(path, labels)
    # A strided view; _join makes the contiguous copy.
    return rows[:, 1:].reshape(n, *IMAGE_SHAPE["cifar10"]), labels


def _read_cifar_py(path: Path) -> tuple[_Array, _Array]:
    """One python-version batch: a pickled dict with b"data" (N, 3072) and b"labels"."""
    try:
        with path.open("rb") as f:
            batch = pickle.load(f, encoding="bytes")
    except FileNotFoundError as e:
        raise DataError(f"{path}: missing: expected a CIFAR-10 python batch") from e
    except Exception as e:
        # A damaged pickle can fail in many ways (UnpicklingError, EOFError, ValueError,
        # UnicodeDecodeError, ...); all of them mean the same thing here.
        raise DataError(
            f"{path}: malformed CIFAR-10 pickle ({type(e).__name__}: {_one_line(e)})"
        ) from e
    n = _CIFAR_PER_FILE
    expected = f"expected a dict with b'data' uint8 ({n}, {_CIFAR_PIXELS}) and {n} b'labels'"
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        keys = sorted(map(repr, batch)) if isinstance(batch, dict) else type(batch).__name__
        raise DataError(f"{path}: {expected}, got {keys}")
    data = batch[b"data"]
    try:
        labels = np.asarray(batch[b"labels"])
    except Exception as e:  # ragged or exotic objects; same reason as above
        raise DataError(f"{path}: {expected}; b'labels' is unusable ({_one_line(e)})") from e
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.shape
        != (
            n,
            _CIFAR_PIXELS,
        )
    ):
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: {expected}; b'data' is {got}")
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: {expected}; b'labels' is {labels.dtype} {labels.shape}")
    _check_labels(path, labels)
    return data.reshape(n, *IMAGE_SHAPE["cifar10"]), labels.astype(np.int64)


# -- download -------------------------------------------------------------------------------


def _download(name: str, root: Path, offline: bool, expected: str) -> None:
    """Fetch ``name`` into ``root`` with torchvision, or explain why it may not."""
    if offline:
        raise DataError(
            f"{name}: no dataset files in {root} (expected {expected}) and offline mode "
            f"forbids downloading; point --data-dir or ${DATA_DIR_ENV} at a directory "
            "holding them"
        )
    # Into a private folder first, moved into place only once complete: a download cut off
    # (no network, Ctrl-C) leaves no partial file for the next run to report as corrupt, and
    # two processes downloading into one cache never delete each other's files.
    made = list(itertools.takewhile(lambda p: not p.exists(), (root, *root.parents)))
    root.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_downloads(root)
    tmp = Path(tempfile.mkdtemp(prefix=_DOWNLOAD_PREFIX, dir=root))
    try:
        # Imported here: torchvision is slow to import and only needed for this one step.
        import torchvision.datasets

        if name == "mnist":
            # One construction fetches all four files; the test flag only picks what it parses.
            torchvision.datasets.MNIST(root=str(tmp), train=True, download=True)
        else:
            torchvision.datasets.CIFAR10(root=str(tmp), train=True, download=True)
        _move_into_place(tmp / _DOWNLOADED[name], root / _DOWNLOADED[name])
    except Exception as e:
        raise DataError(
            f"{name}: download into {root} failed ({type(e).__name__}: {_one_line(e)}); "
            f"without internet, place the files there or set --data-dir / ${DATA_DIR_ENV}"
        ) from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        # The folders made for it, deepest first, as far as the download left them empty.
        with contextlib.suppress(OSError):
            for folder in made:
                folder.rmdir()


# What torchvision's download leaves that the loaders read, relative to its root.
_DOWNLOADED = {"mnist": _MNIST_DIR, "cifar10": Path("cifar-10-batches-py")}
_DOWNLOAD_PREFIX = ".download-"
_ABANDONED_SECONDS = 24 * 3600  # a download folder this old belongs to a killed process


def _move_into_place(src: Path, dst: Path) -> None:
    """Put a downloaded dataset folder where the loaders look, in one rename if possible."""
    if not src.is_dir():
        return  # nothing downloaded: the loader then says which file is missing
    dst.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        dst.rmdir()  # an empty folder (an earlier cut-off run's) is in the way of the rename
    if not dst.exists():
        os.replace(src, dst)  # all the files appear at once, or none do
        return
    # The folder holds files of the user's (no dataset files, or this download would not
    # have run): add the downloaded ones beside them.
    for file in sorted(p for p in src.rglob("*") if p.is_file()):
        target = dst / file.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(file, target)


def _remove_abandoned_downloads(root: Path) -> None:
    """Delete download folders that killed processes left (SIGKILL runs no cleanup)."""
    for folder in root.glob(f"{_DOWNLOAD_PREFIX}*"):
        with contextlib.suppress(OSError):
            if time.time() - folder.stat().st_mtime > _ABANDONED_SECONDS:
                shutil.rmtree(folder)
