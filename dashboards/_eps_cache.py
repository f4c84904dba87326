"""Accuracy-vs-eps curves: stored validation ones, and test-set ones measured from checkpoints.

Measuring FGSM and PGD over the eps grid on the test set costs minutes per trial on a CPU, so
each result is cached in a JSON file beside the trial's checkpoint, keyed by the checkpoint
file (its size and modification time: a retrained trial is measured again), its epoch, and a
digest of the test images scored.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from optuna.trial import FrozenTrial
from torch import nn

from advhpo.objectives import ImageSet, TrialConfig, eps_curves, restore_ensemble_trainer
from advhpo.storage import CheckpointStore, original_trial_number

_CACHE_FORMAT = 1  # bump when the cached payload changes
_CACHE_SUFFIX = ".eps-test.json"


@dataclass(frozen=True)
class EpsCurve:
    """Accuracy of one trial's ensemble vote under attack, over a grid of L∞ radii.

    Attributes:
        eps: The radii (pixel units), ascending; 0 is the clean accuracy.
        fgsm_acc: Accuracy under white-box FGSM at each radius.
        pgd_acc: Accuracy under white-box PGD at each radius; ``None`` when not measured
            (the validation curves the workers store hold FGSM only).
        split: ``"val"`` (stored by the worker) or ``"test"`` (measured from a checkpoint).
        n_images: Images scored (``None``: unknown).
        epoch: The checkpoint's epoch, for test curves.
    """

    eps: tuple[float, ...]
    fgsm_acc: tuple[float, ...]
    pgd_acc: tuple[float, ...] | None
    split: str
    n_images: int | None
    epoch: int | None = None


@dataclass(frozen=True)
class CheckpointCurves:
    """Test-set curves of some trials, and what became of the others.

    Attributes:
        curves: Curve by trial number.
        measured: Trials measured now.
        cached: Trials read from the cache.
        missing: Trials without a checkpoint (their stored validation curves remain).
        foreign: Trials whose checkpoint file is another study's: one deleted and made again
            under the same name, or another database's sharing the folder (their stored
            validation curves remain).
        cache_errors: Cache files that could not be written (the next report measures again).
    """

    curves: dict[int, EpsCurve]
    measured: list[int] = field(default_factory=list)
    cached: list[int] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)
    foreign: list[int] = field(default_factory=list)
    cache_errors: list[str] = field(default_factory=list)


def stored_eps_curve(trial: FrozenTrial) -> EpsCurve | None:
    """The validation curve a worker stored with ``trial`` (user attribute ``eps_curve``).

    Returns:
        The curve, or ``None`` when the trial has none or it is malformed.
    """
    raw = trial.user_attrs.get("eps_curve")
    if not isinstance(raw, dict):
        return None
    eps = _floats(raw.get("eps"))
    fgsm_acc = _floats(raw.get("fgsm_acc"))
    if not eps or fgsm_acc is None or len(fgsm_acc) != len(eps):
        return None
    pgd_acc = _floats(raw.get("pgd_acc"))
    n = trial.user_attrs.get("n_eval")
    return EpsCurve(
        eps=eps,
        fgsm_acc=fgsm_acc,
        pgd_acc=pgd_acc if pgd_acc is not None and len(pgd_acc) == len(eps) else None,
        split="val",
        n_images=n if isinstance(n, int) else None,
    )


def measure_eps_curve(
    members: Sequence[nn.Module],
    data: ImageSet,
    eps_grid: Sequence[float],
    device: torch.device,
    *,
    pgd_steps: int = 10,
    pgd_step_size: float | None = None,
    seed: int = 0,
    split: str = "test",
    progress: Callable[[int], None] | None = None,
) -> EpsCurve:
    """FGSM and PGD accuracy of the members' vote on ``data`` at every radius of ``eps_grid``.

    Members are put in eval mode and attacked in it, through the mean of their logits, as in
    :func:`advhpo.objectives.evaluate`.

    Args:
        members: The ensemble's networks, on ``device``.
        data: The images (uint8) and labels to score.
        eps_grid: Radii in pixel units.
        device: Where to compute.
        pgd_steps: PGD iterations. Default 10.
        pgd_step_size: PGD step (``None``: 2.5 * eps / steps, Madry et al.). Default ``None``.
        seed: Seed of PGD's random starts. Default 0.
        split: The name of the split ``data`` comes from, recorded in the curve. Default
            ``"test"``.
        progress: Called with the number of images just scored.
    """
    grid = [float(e) for e in eps_grid]
    curves = eps_curves(
        members,
        data,
        grid,
        device,
        steps=pgd_steps,
        step_size=pgd_step_size,
        seed=seed,
        progress=progress,
    )
    return EpsCurve(
        eps=tuple(grid),
        fgsm_acc=tuple(curves["fgsm_acc"]),
        pgd_acc=tuple(curves["pgd_acc"]),
        split=split,
        n_images=len(data),
    )


def checkpoint_eps_curves(
    study_name: str,
    trials: Sequence[FrozenTrial],
    store: CheckpointStore,
    test: ImageSet,
    device: torch.device,
    progress: Callable[[int, int], None] | None = None,
    starts: Mapping[int, datetime.datetime | None] | None = None,
) -> CheckpointCurves:
    """Test-set FGSM and PGD curves of ``trials``, from their last checkpoints, cached.

    Each trial's ensemble is rebuilt from its checkpoint (found by its original trial
    number, so a retried trial's checkpoint is used) and scored over its config's eps grid
    with its PGD settings. Results are cached beside the checkpoint; a cached result is used
    while the checkpoint file and the test images are unchanged.

    Checkpoint files are named by study name and trial number only. As the worker does
    before it resumes one, a checkpoint is used only when the start of the trial's first
    attempt it records is that trial's; checkpoints and cache files written before workers
    recorded it cannot be told apart and are used.

    Args:
        study_name: The study the trials belong to.
        trials: The trials to measure.
        store: The study's checkpoints.
        test: The test images to score (e.g. the first N of the test split).
        device: Where to compute.
        progress: Called with (images scored, images to score) across all trials measured.
        starts: When each trial of the study started, by trial number: a retry's original
            need not be among ``trials``. Default: the start of each of ``trials``, so a
            retry's checkpoint goes unchecked.

    Raises:
        StorageError: A checkpoint exists but is unreadable.
        ConfigError: A checkpoint's config is malformed.
    """
    digest = _digest(test)
    result = CheckpointCurves(curves={})
    todo: list[tuple[FrozenTrial, int, Path, tuple[int, int]]] = []
    origins: dict[int, str | None] = {}
    for trial in trials:
        key = original_trial_number(trial)
        origins[trial.number] = _origin(trial, key, starts)
        checkpoint = store.path(study_name, key)
        stamp = _stamp(checkpoint)
        if stamp is None:
            result.missing.append(trial.number)
            continue
        cached = _read_cache(_cache_path(checkpoint), stamp, digest)
        if cached is not None and not _mismatch(cached[1], origins[trial.number]):
            result.curves[trial.number] = cached[0]
            result.cached.append(trial.number)
        elif cached is not None:
            result.foreign.append(trial.number)
        else:
            todo.append((trial, key, checkpoint, stamp))
    total = len(todo) * len(test)
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    if todo:
        advance(0)
    for trial, key, checkpoint, stamp in todo:
        loaded = store.load(study_name, key)
        if loaded is None:  # removed since we looked
            result.missing.append(trial.number)
            total -= len(test)
            continue
        epoch, state = loaded
        recorded = state.get("origin_started")
        if _mismatch(recorded, origins[trial.number]):
            result.foreign.append(trial.number)
            total -= len(test)
            continue
        cfg = TrialConfig.from_dict(state["config"])
        trainer = restore_ensemble_trainer(cfg, device, state["trainer"])
        curve = measure_eps_curve(
            trainer.models(),
            test,
            cfg.eps_grid,
            device,
            pgd_steps=cfg.pgd_steps,
            pgd_step_size=cfg.pgd_step_size,
            seed=cfg.seed,
            progress=advance,
        )
        curve = dataclasses.replace(curve, epoch=epoch)
        result.curves[trial.number] = curve
        result.measured.append(trial.number)
        error = _write_cache(_cache_path(checkpoint), stamp, digest, curve, recorded)
        if error is not None:
            result.cache_errors.append(error)
    return result


def _origin(
    trial: FrozenTrial, key: int, starts: Mapping[int, datetime.datetime | None] | None
) -> str | None:
    """When trial ``key``, the first attempt of ``trial``, started, as the worker records it."""
    if starts is not None:
        start = starts.get(key)
    else:
        start = trial.datetime_start if key == trial.number else None
    return None if start is None else start.isoformat()


def _mismatch(recorded: object, expected: str | None) -> bool:
    """Whether a checkpoint recording ``recorded`` is certainly not the expected trial's."""
    return recorded is not None and expected is not None and recorded != expected


def _cache_path(checkpoint: Path) -> Path:
    return checkpoint.with_name(checkpoint.stem + _CACHE_SUFFIX)


def _stamp(path: Path) -> tuple[int, int] | None:
    """(size, mtime in ns) of ``path``; ``None`` when it does not exist."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_size, st.st_mtime_ns


def _digest(data: ImageSet) -> str:
    h = hashlib.sha256()
    h.update(data.images.cpu().contiguous().numpy().tobytes())
    h.update(data.labels.cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _read_cache(
    path: Path, stamp: tuple[int, int], digest: str
) -> tuple[EpsCurve, str | None] | None:
    """The cached curve and the trial start its checkpoint recorded, if the cache is current."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if (
        not isinstance(raw, dict)
        or raw.get("format") != _CACHE_FORMAT
        or raw.get("checkpoint") != list(stamp)
        or raw.get("data") != digest
    ):
        return None
    eps, fgsm_acc, pgd_acc = (_floats(raw.get(k)) for k in ("eps", "fgsm_acc", "pgd_acc"))
    if not eps or fgsm_acc is None or pgd_acc is None:
        return None
    epoch, n, origin = raw.get("epoch"), raw.get("n_images"), raw.get("origin_started")
    curve = EpsCurve(
        eps,
        fgsm_acc,
        pgd_acc,
        "test",
        n if isinstance(n, int) else None,
        epoch if isinstance(epoch, int) else None,
    )
    return curve, origin if isinstance(origin, str) else None


def _write_cache(
    path: Path, stamp: tuple[int, int], digest: str, curve: EpsCurve, origin: object
) -> str | None:
    """Write the cache file atomically; the error message when it cannot be written."""
    payload: dict[str, Any] = {
        "format": _CACHE_FORMAT,
        "checkpoint": list(stamp),
        # The checkpoint's own record of its trial: a later report need not load it to check.
        "origin_started": origin if isinstance(origin, str) else None,
        "epoch": curve.epoch,
        "data": digest,
        "n_images": curve.n_images,
        "eps": list(curve.eps),
        "fgsm_acc": list(curve.fgsm_acc),
        "pgd_acc": list(curve.pgd_acc or ()),
    }
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f)
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        return f"cannot write {path}: {e.strerror or e}"
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return None


def _floats(value: object) -> tuple[float, ...] | None:
    if not isinstance(value, list | tuple):
        return None
    try:
        return tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
