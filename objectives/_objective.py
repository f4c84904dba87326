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
from advhpo.objectives._ensemble import EnsembleTrainer, make_ensemble_trainer
from advhpo.objectives._evaluate import evaluate, vote_scores
from advhpo.objectives._training import PollFn

# (phase, done, total): phase "train" counts member-epochs, "eval" counts images.
ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class EpochEnd:
    """What :func:`run_trial` tells its ``on_epoch`` hook after each epoch.

    Attributes:
        epoch: The epoch just trained (1-based, counting checkpointed ones).
        train_seconds: Training time of this call so far (s), per-epoch validation excluded.
        scores: ``{"epoch", "clean_acc", "fgsm_acc"}`` of the vote on ``cfg.epoch_eval``
            validation images; ``None`` when ``cfg.epoch_eval`` is 0.
    """

    epoch: int
    train_seconds: float
    scores: dict[str, Any] | None


EpochFn = Callable[[EpochEnd, EnsembleTrainer], None]


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
    trainer: EnsembleTrainer | None = None,
    on_epoch: EpochFn | None = None,
    progress: ProgressFn | None = None,
    poll: PollFn | None = None,
) -> TrialOutcome:
    """Train ``cfg.ensemble`` members and evaluate their vote.

    Args:
        cfg: The trial's config.
        splits: The dataset, uint8, on any device (batches are moved as needed).
        device: Where to train and evaluate.
        trainer: Members to continue (e.g. restored from a checkpoint); default fresh ones
            from :func:`make_ensemble_trainer`.
        on_epoch: Called after every epoch with an :class:`EpochEnd` and the trainer, for
            checkpoints and early stopping; it may raise to stop the trial.
        progress: Called as work advances.
        poll: Called before every training step and after every batch of the final
            evaluation; it may raise to abandon the trial at once, between checkpoints (e.g.
            when the study's trial was failed from outside). Default: none.

    Returns:
        The members and their metrics: those of :func:`evaluate` plus ``train_seconds`` (the
        epochs run here, without per-epoch validation), ``epochs`` (per-member epoch records),
        ``epoch_values`` (per-epoch validation scores of the epochs run here),
        ``epoch_eval_seconds``, ``n_train``, ``eval_split``, ``device``, ``host``,
        ``torch_threads`` and ``config``.

    Raises:
        DivergenceError: A member's loss became NaN or infinite.
    """
    if device.type == "cpu":
        tune_cpu_allocator()
    train = splits.train.head(cfg.train_subset)
    held_out = splits.test if cfg.eval_split == "test" else splits.val
    eval_data = held_out.head(cfg.eval_subset)
    if trainer is None:
        trainer = make_ensemble_trainer(cfg, device)
    epoch_data = held_out.head(cfg.epoch_eval) if cfg.epoch_eval else None
    total_work = cfg.epochs * cfg.ensemble
    epoch_values: list[dict[str, Any]] = []
    train_seconds = epoch_eval_seconds = 0.0
    for epoch in range(trainer.epoch + 1, cfg.epochs + 1):
        start = time.perf_counter()
        if poll is None:  # a trainer written before polls existed takes no second argument
            trainer.train_epoch(train)
        else:
            trainer.train_epoch(train, poll)
        train_seconds += time.perf_counter() - start
        if progress is not None:
            progress("train", epoch * cfg.ensemble, total_work)
        scores = None
        if epoch_data is not None:
            start = time.perf_counter()
            clean, adv = vote_scores(trainer.models(), epoch_data, cfg.eval_eps, device)
            epoch_eval_seconds += time.perf_counter() - start
            scores = {"epoch": epoch, "clean_acc": clean, "fgsm_acc": adv}
            epoch_values.append(scores)
        if on_epoch is not None:
            on_epoch(EpochEnd(epoch, train_seconds, scores), trainer)
    eval_progress = None
    if progress is not None or poll is not None:
        done = [0]

        def eval_progress(n: int) -> None:
            done[0] += n
            if progress is not None:
                progress("eval", done[0], len(eval_data))
            if poll is not None:
                poll()

    members = trainer.models()
    metrics = evaluate(members, eval_data, cfg, device, eval_progress)
    return TrialOutcome(
        {
            **metrics,
            "train_seconds": train_seconds,
            "epochs": trainer.history(),
            "epoch_values": epoch_values,
            "epoch_eval_seconds": epoch_eval_seconds,
            "n_train": len(train),
            "eval_split": cfg.eval_split,
            "device": str(device),
            "host": platform.node(),
            "torch_threads": torch.get_num_threads(),
            "config": cfg.to_dict(),
        },
        members,
    )
