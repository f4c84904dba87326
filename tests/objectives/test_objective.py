"""``run_trial``: per-epoch validation, the epoch hook and what it reports."""

from __future__ import annotations

import pytest
import torch

from advhpo.objectives import (
    DatasetSplits,
    EnsembleTrainer,
    EpochEnd,
    NetConfig,
    TrialConfig,
    make_ensemble_trainer,
    run_trial,
)

CPU = torch.device("cpu")


def _cfg(**changes: object) -> TrialConfig:
    base: dict[str, object] = {
        "dataset": "mnist",
        "net": NetConfig(dataset="mnist", blocks=((8,),), padding=(1, 1), dense=(16,)),
        "lr": 0.05,
        "batch_size": 32,
        "epochs": 3,
        "ensemble": 2,
        "eval_eps": 0.8,
        "eps_grid": (0.0, 0.8),
        "pgd_steps": 2,
        "epoch_eval": 40,
    }
    return TrialConfig(**{**base, **changes})  # type: ignore[arg-type]


def test_every_epoch_is_validated_and_reported_to_the_hook(tiny_splits: DatasetSplits) -> None:
    ends: list[EpochEnd] = []
    modes: list[bool] = []

    def on_epoch(end: EpochEnd, trainer: EnsembleTrainer) -> None:
        ends.append(end)
        modes.append(any(m.training for m in trainer.models()))

    m = run_trial(_cfg(), tiny_splits, CPU, on_epoch=on_epoch).metrics
    assert [e.epoch for e in ends] == [1, 2, 3]
    assert [e.scores for e in ends] == m["epoch_values"]
    assert [row["epoch"] for row in m["epoch_values"]] == [1, 2, 3]
    for row in m["epoch_values"]:
        assert 0.0 <= row["fgsm_acc"] <= row["clean_acc"] <= 1.0
    # Training time accumulates and leaves the validation out.
    assert 0 < ends[0].train_seconds < ends[1].train_seconds < ends[2].train_seconds
    assert m["train_seconds"] == pytest.approx(ends[-1].train_seconds)
    assert m["epoch_eval_seconds"] > 0
    assert m["epoch_values"][-1]["clean_acc"] > 0.3  # the bar pattern is being learned


def test_validation_does_not_change_training(tiny_splits: DatasetSplits) -> None:
    with_eval = run_trial(_cfg(epochs=2), tiny_splits, CPU).members
    without = run_trial(_cfg(epochs=2, epoch_eval=0), tiny_splits, CPU).members
    for a, b in zip(with_eval, without, strict=True):
        for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
            assert torch.equal(pa, pb)


def test_no_epoch_eval_means_no_scores(tiny_splits: DatasetSplits) -> None:
    ends: list[EpochEnd] = []
    m = run_trial(
        _cfg(epochs=1, epoch_eval=0), tiny_splits, CPU, on_epoch=lambda e, t: ends.append(e)
    ).metrics
    assert m["epoch_values"] == [] and ends[0].scores is None


def test_a_restored_trainer_continues_from_its_epoch(tiny_splits: DatasetSplits) -> None:
    cfg = _cfg()
    trainer = make_ensemble_trainer(cfg, CPU)
    trainer.train_epoch(tiny_splits.train)
    trainer.train_epoch(tiny_splits.train)
    m = run_trial(cfg, tiny_splits, CPU, trainer=trainer).metrics
    assert [row["epoch"] for row in m["epoch_values"]] == [3]


class _Abandon(Exception):
    pass


@pytest.mark.parametrize(("strategy", "epochs_ended"), [("loop", 0), ("stacked", 1)])
def test_the_poll_runs_before_every_step_and_abandons_the_trial_mid_epoch(
    tiny_splits: DatasetSplits, strategy: str, epochs_ended: int
) -> None:
    # 128 images in batches of 32: 4 steps per epoch of a member (loop: one after the other;
    # stacked: both at once). Raising at the 6th poll stops inside member 1's first epoch
    # (loop) or inside the second epoch (stacked).
    cfg = _cfg(epoch_eval=0)
    trainer = make_ensemble_trainer(cfg, CPU, strategy)  # type: ignore[arg-type]
    polls, ends = [0], []

    def poll() -> None:
        polls[0] += 1
        if polls[0] == 6:
            raise _Abandon

    with pytest.raises(_Abandon):
        run_trial(
            cfg, tiny_splits, CPU, trainer=trainer, poll=poll, on_epoch=lambda e, t: ends.append(e)
        )
    assert polls[0] == 6
    assert len(ends) == epochs_ended


def test_the_poll_also_runs_between_evaluation_batches(tiny_splits: DatasetSplits) -> None:
    cfg = _cfg(epochs=1, epoch_eval=0, ensemble=1)
    evaluated, polls = [0], [0]

    def progress(phase: str, done: int, total: int) -> None:
        evaluated[0] += phase == "eval"

    def poll() -> None:
        polls[0] += 1

    run_trial(cfg, tiny_splits, CPU, progress=progress, poll=poll)
    assert evaluated[0] >= 1
    assert polls[0] == 4 + evaluated[0]  # before each of the 4 steps, after each eval batch
