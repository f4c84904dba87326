"""The GAN paper's protocol: a perturbation generator trained against the classifier on MNIST.

The paper alternated a generator of L∞-bounded perturbations with the classifier, GAN-style,
at several generator:classifier ratios: 2:1, 4:1, a stepped 6-8-12 and an adaptive ratio that
keeps the generator's loss below 0.6. Here a ratio ``k`` means ``k`` generator updates before
every classifier update, on the same batch (see :class:`advhpo.objectives.MemberTrainer`), and
one **cycle** is one epoch of the classifier: a pass over the training images. The protocol
reports FGSM accuracy after every cycle and compares it with FGSM adversarial training
(Goodfellow's mixed loss) given the same training time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import torch

from advhpo.objectives._config import NetConfig, TrialConfig, check_choice, thesis_mnist
from advhpo.objectives._data import DatasetSplits
from advhpo.objectives._ensemble import EnsembleTrainer, make_ensemble_trainer
from advhpo.objectives._evaluate import evaluate
from advhpo.objectives._fidelity import Fidelity, eval_progress, machine, stage_progress
from advhpo.objectives._objective import EpochEnd, ProgressFn, run_trial

GAN_EPS = 0.3  # L∞ radius of the generator and of the attacks (pixel units), as on MNIST
STEPPED_RATIOS = (6, 8, 12)
GAN_SCHEDULES = ("2:1", "4:1", "6-8-12", "adaptive")
# FGSM training stops once it has trained as long as the longest generator run; this bound on
# its epochs per cycle only guards against a clock that does not advance.
_FGSM_MAX_EPOCHS_PER_CYCLE = 1000


class _BudgetSpent(Exception):
    """Stops the FGSM comparison run once it has trained as long as the generator runs."""


def stepped_schedule(ratios: Sequence[int], cycles: int) -> tuple[int, ...]:
    """``ratios`` stretched over ``cycles`` in equal runs, in order.

    Args:
        ratios: The steps of the schedule, e.g. ``(6, 8, 12)``.
        cycles: Cycles (epochs) of the run, >= 1.

    Returns:
        One ratio per cycle: ``(6, 8, 12)`` over 3 cycles is ``(6, 8, 12)``, over 6 cycles
        ``(6, 6, 8, 8, 12, 12)``, over 2 cycles ``(6, 8)``.
    """
    return tuple(ratios[c * len(ratios) // cycles] for c in range(cycles))


def gan_schedule_changes(name: str, cycles: int) -> dict[str, Any]:
    """The :class:`TrialConfig` fields that make the generator method follow a schedule.

    Args:
        name: ``"2:1"``, ``"4:1"``, ``"6-8-12"`` (:func:`stepped_schedule` over the cycles) or
            ``"adaptive"`` (from 1, one more generator step after every 50 classifier steps
            whose mean generator loss is above 0.6, at most 12).
        cycles: Cycles of the run.

    Raises:
        ConfigError: ``name`` is not one of :data:`GAN_SCHEDULES`.
    """
    check_choice("schedule", name, GAN_SCHEDULES)
    if name == "6-8-12":
        return {"gen_ratio_schedule": stepped_schedule(STEPPED_RATIOS, cycles)}
    if name == "adaptive":
        return {"gen_ratio": 1, "gen_adaptive": True, "gen_loss_threshold": 0.6}
    return {"gen_ratio": int(name.split(":")[0])}


def gan_config(
    fidelity: Fidelity,
    schedule: str | None,
    net: NetConfig | None = None,
    *,
    gen_input: str = "image",
) -> TrialConfig:
    """One training run of the protocol on MNIST at :data:`GAN_EPS`.

    Args:
        fidelity: Cycles (``epochs``), subsets, per-cycle images, PGD steps and seed.
        schedule: One of :data:`GAN_SCHEDULES` for the generator method, or ``None`` for
            the comparison: FGSM adversarial training (Goodfellow's mixed loss).
        net: The classifier; default the thesis MNIST net.
        gen_input: What the generator sees (:class:`TrialConfig`'s ``gen_input``). Default
            ``"image"``.

    Raises:
        ConfigError: ``schedule`` or ``gen_input`` is unknown.
    """
    cfg = TrialConfig(
        dataset="mnist",
        net=net or thesis_mnist(),
        epochs=fidelity.epochs,
        train_subset=fidelity.train_subset,
        val_fraction=0.0,
        adv_method="fgsm",
        adv_eps=GAN_EPS,
        seed=fidelity.seed,
        eval_eps=GAN_EPS,
        eval_split="test",
        eval_subset=fidelity.eval_subset,
        epoch_eval=fidelity.epoch_eval,
        eps_grid=(0.0, GAN_EPS),
        pgd_steps=fidelity.pgd_steps,
    )
    if schedule is None:
        return cfg
    changes = gan_schedule_changes(schedule, fidelity.epochs)
    return dataclasses.replace(cfg, adv_method="generator", gen_input=gen_input, **changes)


def reproduce_gan(
    splits: DatasetSplits,
    device: torch.device,
    fidelity: Fidelity | None = None,
    *,
    schedules: Sequence[str] = GAN_SCHEDULES,
    net: NetConfig | None = None,
    gen_input: str = "image",
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Train the classifier against the generator under each schedule, then FGSM training.

    Every run starts from the same seed. After each cycle the classifier's clean and FGSM
    accuracy (at :data:`GAN_EPS`) are scored on the first ``fidelity.epoch_eval`` test images;
    after the last, clean, FGSM and PGD accuracy on ``fidelity.eval_subset`` test images.
    FGSM adversarial training then runs epoch by epoch until it has trained as long as the
    longest generator run, and each schedule is compared with its last epoch that took no
    longer than the schedule itself ("equal training time", wall clock).

    Args:
        splits: MNIST; the protocol trains on ``splits.train`` (load it with
            ``val_fraction=0`` for all 60,000 images) and scores on ``splits.test``.
        device: Where to train and evaluate.
        fidelity: Default ``Fidelity()``: 5 cycles on all images.
        schedules: Which of :data:`GAN_SCHEDULES` to run, in order. Default all four.
        net: The classifier; default the thesis MNIST net.
        gen_input: What the generator sees: ``"image"`` or ``"gradient"`` (the image and the
            classifier's input gradient). Default ``"image"``.
        progress: Called as work advances, with phases named after the stage.

    Returns:
        JSON-ready: ``eps``, ``fidelity``, ``cycle`` (what a cycle is), ``schedules`` (per
        schedule: ``name``, per-cycle records ``cycles`` with ``cycle, train_seconds``
        (cumulative), ``gen_ratio`` (at the cycle's end), ``gen_loss`` (mean), ``loss``,
        ``clean_acc, fgsm_acc``; ``final`` scores; ``train_seconds``), ``fgsm_training`` (the
        same for the comparison run, and ``budget_seconds``), ``equal_time`` (one row per
        schedule), ``gen_input``, ``n_train``, ``wall_seconds``, ``device`` and the
        :func:`machine` facts.

    Raises:
        ConfigError: A schedule name or ``gen_input`` is unknown.
        DivergenceError: A loss became NaN or infinite.
    """
    fidelity = fidelity or Fidelity()
    start, host = time.perf_counter(), machine()
    runs = [
        _generator_run(
            splits, device, name, gan_config(fidelity, name, net, gen_input=gen_input), progress
        )
        for name in schedules
    ]
    budget = max((r["train_seconds"] for r in runs), default=0.0)
    fgsm_run = _fgsm_run(splits, device, fidelity, net, budget, progress)
    equal_time = []
    for run in runs:
        matched = _last_within(fgsm_run["cycles"], run["train_seconds"])
        last = run["cycles"][-1]
        equal_time.append(
            {
                "schedule": run["name"],
                "train_seconds": run["train_seconds"],
                "clean_acc": last["clean_acc"],
                "fgsm_acc": last["fgsm_acc"],
                "fgsm_training": {
                    k: matched[k] for k in ("cycle", "train_seconds", "clean_acc", "fgsm_acc")
                },
            }
        )
    return {
        "protocol": "gan",
        "dataset": "mnist",
        "eps": GAN_EPS,
        "fidelity": fidelity.to_dict(),
        "gen_input": gen_input,
        "cycle": "one epoch of the classifier over the training images; ratio k = k generator "
        "updates before every classifier update, on the same batch",
        "schedules": runs,
        "fgsm_training": fgsm_run,
        "equal_time": equal_time,
        "n_train": len(splits.train.head(fidelity.train_subset)),
        "n_cycle_eval": len(splits.test.head(fidelity.epoch_eval)),
        "wall_seconds": time.perf_counter() - start,
        "device": str(device),
        **host,
    }


def _cycle_record(end: EpochEnd, trainer: EnsembleTrainer) -> dict[str, Any]:
    """One cycle's scores and, for the generator method, its ratio and mean loss."""
    assert end.scores is not None  # epoch_eval >= 1 is a Fidelity invariant
    epoch = trainer.history()[0][-1]
    return {
        "cycle": end.epoch,
        "train_seconds": end.train_seconds,
        "gen_ratio": epoch.get("gen_ratio"),
        "gen_loss": epoch.get("gen_loss"),
        "loss": epoch["loss"],
        "clean_acc": end.scores["clean_acc"],
        "fgsm_acc": end.scores["fgsm_acc"],
    }


def _final(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: metrics[k] for k in ("clean_acc", "fgsm_acc", "pgd_acc", "n_eval", "eval_seconds")}


def _generator_run(
    splits: DatasetSplits,
    device: torch.device,
    name: str,
    cfg: TrialConfig,
    progress: ProgressFn | None,
) -> dict[str, Any]:
    cycles: list[dict[str, Any]] = []
    outcome = run_trial(
        cfg,
        splits,
        device,
        on_epoch=lambda end, trainer: cycles.append(_cycle_record(end, trainer)),
        progress=stage_progress(progress, f"generator {name}"),
    )
    return {
        "name": name,
        "config": {k: getattr(cfg, k) for k in gan_schedule_changes(name, cfg.epochs)},
        "cycles": cycles,
        "final": _final(outcome.metrics),
        "train_seconds": outcome.metrics["train_seconds"],
    }


def _fgsm_run(
    splits: DatasetSplits,
    device: torch.device,
    fidelity: Fidelity,
    net: NetConfig | None,
    budget: float,
    progress: ProgressFn | None,
) -> dict[str, Any]:
    """FGSM adversarial training, epoch by epoch, until it has trained ``budget`` seconds."""
    cfg = dataclasses.replace(
        gan_config(fidelity, None, net), epochs=_FGSM_MAX_EPOCHS_PER_CYCLE * fidelity.epochs
    )
    trainer = make_ensemble_trainer(cfg, device)
    cycles: list[dict[str, Any]] = []
    label = f"FGSM training (seconds of {budget:.0f})"

    def on_epoch(end: EpochEnd, trainer: EnsembleTrainer) -> None:
        cycles.append(_cycle_record(end, trainer))
        if progress is not None:
            progress(label, min(round(end.train_seconds), round(budget)), round(budget))
        if end.train_seconds >= budget or end.epoch >= cfg.epochs:
            raise _BudgetSpent

    # on_epoch always ends the run (budget spent or epoch cap), before run_trial's own scoring.
    with contextlib.suppress(_BudgetSpent):
        run_trial(cfg, splits, device, trainer=trainer, on_epoch=on_epoch)
    eval_data = splits.test.head(fidelity.eval_subset)
    counter = eval_progress(progress, "FGSM training", len(eval_data))
    metrics = evaluate(trainer.models(), eval_data, cfg, device, counter)
    return {
        "name": "fgsm",
        "cycles": cycles,
        "final": _final(metrics),
        "train_seconds": cycles[-1]["train_seconds"],
        "budget_seconds": budget,
    }


def _last_within(cycles: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """The last cycle finished within ``seconds`` of training (else the first one)."""
    within = [c for c in cycles if c["train_seconds"] <= seconds]
    return within[-1] if within else cycles[0]
