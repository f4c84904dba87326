"""How much of a reproduction protocol to run, and the bookkeeping its stages share."""

from __future__ import annotations

import dataclasses
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from advhpo._errors import ConfigError
from advhpo.objectives._objective import ProgressFn

# run_trial's phases, as the stage of a protocol names them on a progress bar.
_PHASES = {"train": "training (member-epochs)", "eval": "evaluating (images)"}


@dataclass(frozen=True)
class Fidelity:
    """The knobs of a reproduction protocol that trade faithfulness for time.

    The protocols fix everything else (nets, attack radii, adversarial methods, schedules); a
    run at reduced fidelity is the same protocol on fewer images or epochs, and says so in its
    output.

    Attributes:
        epochs: Passes over the training images per trained net; for the GAN protocol, cycles
            (one cycle is one epoch). Default 5.
        train_subset: Training images (a fixed random subset of the official 60,000 MNIST or
            50,000 CIFAR-10 images; ``None``: all of them). Default ``None``.
        eval_subset: Test images of the final scores (``None``: all 10,000). Default ``None``.
        curve_subset: Test images of the FGSM and PGD accuracy-vs-eps curves, the costliest part
            (``steps`` gradient passes per radius, image and member). Default 1,000.
        epoch_eval: Test images scored (clean and FGSM accuracy) after every epoch or cycle.
            Default 1,000.
        members: Nets in the vote. Default 5.
        pgd_steps: PGD iterations (step 2.5 * eps / steps, random start). Default 10.
        seed: Seed of the first net; net ``k`` of a vote uses ``seed + k``. Default 0.
    """

    epochs: int = 5
    train_subset: int | None = None
    eval_subset: int | None = None
    curve_subset: int = 1000
    epoch_eval: int = 1000
    members: int = 5
    pgd_steps: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "curve_subset", "epoch_eval", "members", "pgd_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("train_subset", "eval_subset"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be >= 1, got {value}")

    def to_dict(self) -> dict[str, Any]:
        """The fidelity as JSON-ready plain data."""
        return dataclasses.asdict(self)


def stage_progress(progress: ProgressFn | None, stage: str) -> ProgressFn | None:
    """``progress`` with ``run_trial``'s phases renamed ``"<stage>: training …"`` and so on.

    Args:
        progress: The caller's progress callback, or ``None``.
        stage: What is running, e.g. ``"undefended"``.

    Returns:
        A callback for :func:`run_trial`, or ``None`` when ``progress`` is ``None``.
    """
    if progress is None:
        return None
    report = progress

    def update(phase: str, done: int, total: int) -> None:
        report(f"{stage}: {_PHASES.get(phase, phase)}", done, total)

    return update


def eval_progress(
    progress: ProgressFn | None, stage: str, total: int, phase: str = "eval"
) -> Callable[[int], None] | None:
    """A counter for ``evaluate``-style ``progress`` hooks, which report work done since.

    Args:
        progress: The caller's progress callback, or ``None``.
        stage: What is being scored.
        total: Units of work in all.
        phase: The phase's name on the bar. Default ``"eval"`` (counting images).
    """
    report = stage_progress(progress, stage)
    if report is None:
        return None
    done = [0]

    def count(n: int) -> None:
        done[0] += n
        report(phase, done[0], total)

    return count


def machine() -> dict[str, Any]:
    """Where a result was measured: device-independent host facts and the current load.

    Returns:
        ``host``, ``torch_threads`` and ``load_avg`` (1-minute load average; other work on the
        cores slows wall times, not accuracies).
    """
    return {
        "host": platform.node(),
        "torch_threads": torch.get_num_threads(),
        "load_avg": round(os.getloadavg()[0], 2),
    }
