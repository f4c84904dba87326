"""Per-trial training checkpoints on disk, written atomically, one file per trial."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from advhpo._errors import ConfigError, StorageError
from advhpo.storage._url import _parse_url, _sqlite_path

_FORMAT = 1  # bump when the checkpoint payload changes
_DEFAULT_ARTIFACT_DIR = "advhpo-artifacts"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_NAME = 64  # characters of the readable part; the hash keeps longer names distinct
# A save's temporary file older than this is a killed save's (SIGKILL, a second Ctrl-C, a
# power cut: nothing cleaned up); a live save writes for seconds.
_ABANDONED_SECONDS = 3600


def default_artifact_dir(url: str) -> Path:
    """Where checkpoints of the studies in ``url`` go unless told otherwise.

    Args:
        url: A storage URL (already resolved, e.g. by :func:`resolve_storage_url`).

    Returns:
        For a SQLite file ``runs/mnist.db``, the folder ``runs/mnist.artifacts`` beside it, so
        the two move together; for a server database, ``./advhpo-artifacts``.

    Raises:
        StorageError: ``url`` does not parse.
    """
    path = _sqlite_path(_parse_url(url))
    if path is None:
        return Path(_DEFAULT_ARTIFACT_DIR)
    db = Path(path)
    return db.with_name(f"{db.stem}.artifacts")


class CheckpointStore:
    """The latest training checkpoint of each trial, under ``root/<study>/trial-<key>.pt``.

    ``key`` is the trial's *original* number (:func:`original_trial_number`), so a retry of a
    trial whose worker died resumes from the checkpoint the dead worker left. A save replaces
    the previous checkpoint of the key atomically: a crash at any moment leaves either the old
    or the new checkpoint, never a truncated one.

    Args:
        root: The artifact directory (see :func:`default_artifact_dir`); created on first save.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def check_writable(self) -> None:
        """Fail now, not once per trial, if checkpoints cannot be written under the root.

        Creates nothing: a missing root only needs a writable folder as its nearest existing
        ancestor.

        Raises:
            StorageError: The root, or its nearest existing ancestor, is not a writable folder.
        """
        reason = unwritable_reason(self.root)
        if reason is not None:
            raise StorageError(f"cannot write checkpoints under {self.root}: {reason}")

    def path(self, study_name: str, key: int) -> Path:
        """The checkpoint file of trial ``key`` of ``study_name`` (which may not exist)."""
        _check_int("key", key)
        return self.root / _study_dir(study_name) / f"trial-{key}.pt"

    def save(self, study_name: str, key: int, epoch: int, state: dict[str, Any]) -> Path:
        """Store ``state`` as the checkpoint of trial ``key`` after ``epoch``, replacing any older.

        Args:
            study_name: The study the trial belongs to; any string.
            key: The trial's original number.
            epoch: The number of epochs completed, returned by :meth:`load`.
            state: What resuming needs: tensors, numbers, strings, and dicts, lists and tuples
                of them (``torch.load(weights_only=True)`` refuses other objects), e.g. model
                and optimizer state dicts and ``torch.Generator().get_state()``.

        Returns:
            The checkpoint file.

        Raises:
            ConfigError: ``key`` or ``epoch`` is not a non-negative integer.
            StorageError: The file cannot be written (disk full, permissions).
        """
        import torch  # here, not at module level: the CLI imports this package for --help

        _check_int("epoch", epoch)
        target = self.path(study_name, key)
        tmp: Path | None = None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # Same directory as the target, so os.replace is a rename within one filesystem.
            fd, name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=".tmp", dir=target.parent)
            tmp = Path(name)
            with os.fdopen(fd, "wb") as f:
                torch.save({"format": _FORMAT, "epoch": epoch, "state": state}, f)
                f.flush()
                # Data on disk before the rename: otherwise a power cut can leave the new name
                # pointing at an empty file.
                os.fsync(f.fileno())
            os.replace(tmp, target)
            tmp = None
            _fsync_dir(target.parent)
        except OSError as e:
            raise StorageError(f"cannot save checkpoint {target}: {e.strerror or e}") from e
        finally:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
        _remove_abandoned(target)
        return target

    def load(self, study_name: str, key: int) -> tuple[int, dict[str, Any]] | None:
        """The latest checkpoint of trial ``key``: ``(epoch, state)``, or ``None`` if there is none.

        Tensors are loaded onto the CPU; move them where they are needed.

        Raises:
            StorageError: The checkpoint file exists but is unreadable, truncated or not a
                checkpoint.
        """
        import torch

        file = self.path(study_name, key)
        try:
            payload = torch.load(file, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            return None
        except (PermissionError, NotADirectoryError) as e:  # the file is not the problem
            raise StorageError(f"cannot read checkpoint {file}: {e.strerror or e}") from e
        except Exception as e:  # torch raises many types for a bad file (zip, pickle, EOF...)
            raise StorageError(f"corrupt checkpoint {file}: {_first_line(e)}") from e
        if (
            not isinstance(payload, dict)
            or payload.get("format") != _FORMAT
            or not isinstance(payload.get("epoch"), int)
            or not isinstance(payload.get("state"), dict)
        ):
            raise StorageError(f"corrupt checkpoint {file}: not an advhpo checkpoint")
        return payload["epoch"], payload["state"]

    def remove(self, study_name: str, key: int) -> None:
        """Delete the checkpoint of trial ``key`` (once the trial is finished); no-op if none.

        Raises:
            StorageError: The file exists but cannot be deleted.
        """
        file = self.path(study_name, key)
        try:
            file.unlink(missing_ok=True)
            # Temporary files of saves killed mid-write (a dead worker) go too.
            for stale in file.parent.glob(f".{file.stem}.*.tmp"):
                stale.unlink(missing_ok=True)
        except OSError as e:
            raise StorageError(f"cannot remove checkpoint {file}: {e.strerror or e}") from e
        # The study directory stays even when empty: removing it could race with another
        # worker's save between its mkdir and its temporary file.


def unwritable_reason(folder: Path) -> str | None:
    """Why files could not be made under ``folder`` (created as needed), or ``None``.

    Creates nothing: a missing folder only needs a writable folder as its nearest existing
    ancestor.
    """
    place = Path(folder).absolute()
    while not place.exists():
        place = place.parent
    if not place.is_dir():
        return f"{place} is not a folder"
    if not os.access(place, os.W_OK | os.X_OK):
        return f"{place} is read-only"
    return None


def _remove_abandoned(target: Path) -> None:
    """Delete the temporary files that killed saves of ``target`` left (each as large as it)."""
    now = time.time()
    for stale in target.parent.glob(f".{target.stem}.*.tmp"):
        with contextlib.suppress(OSError):  # gone meanwhile, or not ours to delete
            if now - stale.stat().st_mtime > _ABANDONED_SECONDS:
                stale.unlink()


def _study_dir(study_name: str) -> str:
    """A directory name for ``study_name``: its safe characters plus a hash of the whole name.

    The hash keeps names that differ only in unsafe characters ("a/b", "a b") apart.
    """
    readable = _UNSAFE.sub("_", study_name).lstrip(".")[:_MAX_NAME] or "study"
    digest = hashlib.sha256(study_name.encode()).hexdigest()[:10]
    return f"{readable}-{digest}"


def _check_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{name} must be a non-negative integer, got {value!r}")


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX); a no-op where directories can't be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # Windows
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _first_line(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[0] if lines else type(e).__name__
