"""``run_trial``: one trial config in, every number a study records out."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from advhpo.objectives._config import TrialConfig
from advhpo.objectives._data import DatasetSplits
from advhpo.objectives._device import tune_cpu_allocator
from advhpo.objectives._evaluate import evaluate
from advhpo.objectives._training import MemberTrainer, train_members

# (phase, done, total): phase "train" counts member-epochs, "eval" counts images.
ProgressFn = Callable[[str, int, int], None]
EpochFn = Callable[[int, list[MemberTrainer]], None]


@dataclass(frozen=True)
class TrialOutcome:
    """What a trial produced.

    Attributes:
        metrics: JSON-ready numbers (see :func:`run_trial`).
        members: The trained networks, in member order.
    """

    metrics: dict[str, Any]
    members: list[nn.Module]


def run_trial(
    cfg: TrialConfig,
    splits: DatasetSplits,
    device: torch.device,
    *,
    trainers: list[MemberTrainer] | None = None,
    on_epoch: EpochFn | None = None,
    progress: ProgressFn | None = None,
) -> TrialOutcome:
    """Train ``cfg.ensemble`` members and evaluate their vote.

    Args:
        cfg: The trial's config.
        splits: The dataset, uint8, on any device (batches are moved as needed).
        device: Where to train and evaluate.
        trainers: Members to continue (e.g. restored from a checkpoint); default fresh ones.
        on_epoch: Called after every epoch with the epoch number and the trainers (for
            checkpoints and early stopping; it may raise to stop the trial).
        progress: Called as work advances.

    Returns:
        The members and their metrics: those of :func:`evaluate` plus ``train_seconds``, ``epochs``
        (per-member epoch records), ``n_train``, ``eval_split``, ``device``, ``host``,
        ``torch_threads`` and ``config``.

    Raises:
        DivergenceError: A member's loss became NaN or infinite.
    """
    if device.type == "cpu":
        tune_cpu_allocator()
    train = splits.train.head(cfg.train_subset)
    held_out = splits.test if cfg.eval_split == "test" else splits.val
    eval_data = held_out.head(cfg.eval_subset)
    if trainers is None:
        trainers = [MemberTrainer(cfg, k, device) for k in range(cfg.ensemble)]
    total_work = cfg.epochs * len(trainers)
    start = time.perf_counter()
    for epoch in range(trainers[0].epoch + 1, cfg.epochs + 1):
        train_members(trainers, train)
        if progress is not None:
            progress("train", epoch * len(trainers), total_work)
        if on_epoch is not None:
            on_epoch(epoch, trainers)
    train_seconds = time.perf_counter() - start
    eval_progress = None
    if progress is not None:
        done = [0]

        def eval_progress(n: int) -> None:
            done[0] += n
            progress("eval", done[0], len(eval_data))

    members: list[nn.Module] = [t.model for t in trainers]
    metrics = evaluate(members, eval_data, cfg, device, eval_progress)
    return TrialOutcome(
        {
            **metrics,
            "train_seconds": train_seconds,
            "epochs": [t.history for t in trainers],
            "n_train": len(train),
            "eval_split": cfg.eval_split,
            "device": str(device),
            "host": platform.node(),
            "torch_threads": torch.get_num_threads(),
            "config": cfg.to_dict(),
        },
        members,
    )
