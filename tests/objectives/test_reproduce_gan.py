"""The GAN protocol: ratio schedules, per-cycle records, FGSM training at equal time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from advhpo import ConfigError
from advhpo.objectives import (
    GAN_SCHEDULES,
    DatasetSplits,
    Fidelity,
    ImageSet,
    NetConfig,
    gan_config,
    reproduce_gan,
    stepped_schedule,
)

CPU = torch.device("cpu")
TINY_NET = NetConfig(dataset="mnist", blocks=((8,),), dense=(32,))
TINY = Fidelity(epochs=3, epoch_eval=32, pgd_steps=1)


@pytest.fixture(scope="module")
def result(make_images: Callable[..., ImageSet]) -> dict[str, Any]:
    """Two schedules of 3 one-step cycles (64 images, batch 128), then FGSM training."""
    splits = DatasetSplits(
        train=make_images(64, 0), val=make_images(32, 1), test=make_images(32, 2)
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only add overhead
    try:
        return reproduce_gan(splits, CPU, TINY, schedules=("2:1", "6-8-12"), net=TINY_NET)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize(
    ("cycles", "expected"),
    [(1, (6,)), (2, (6, 8)), (3, (6, 8, 12)), (5, (6, 6, 8, 8, 12)), (6, (6, 6, 8, 8, 12, 12))],
)
def test_the_stepped_schedule_spreads_its_ratios_evenly(
    cycles: int, expected: tuple[int, ...]
) -> None:
    assert stepped_schedule((6, 8, 12), cycles) == expected


@pytest.mark.parametrize(
    ("name", "fields"),
    [
        ("2:1", {"gen_ratio": 2, "gen_adaptive": False, "gen_ratio_schedule": ()}),
        ("4:1", {"gen_ratio": 4, "gen_adaptive": False, "gen_ratio_schedule": ()}),
        ("6-8-12", {"gen_adaptive": False, "gen_ratio_schedule": (6, 8, 12)}),
        ("adaptive", {"gen_ratio": 1, "gen_adaptive": True, "gen_loss_threshold": 0.6}),
    ],
)
def test_each_schedule_configures_the_generator_method(name: str, fields: dict[str, Any]) -> None:
    cfg = gan_config(TINY, name)
    assert (cfg.dataset, cfg.adv_method, cfg.adv_eps, cfg.eval_eps) == (
        "mnist",
        "generator",
        0.3,
        0.3,
    )
    assert {k: getattr(cfg, k) for k in fields} == fields


def test_the_generator_input_reaches_the_config_and_the_result(result: dict[str, Any]) -> None:
    assert gan_config(TINY, "2:1").gen_input == "image"
    assert gan_config(TINY, "2:1", gen_input="gradient").gen_input == "gradient"
    assert result["gen_input"] == "image"
    with pytest.raises(ConfigError, match="unknown gen_input"):
        gan_config(TINY, "2:1", gen_input="noise")


def test_the_comparison_is_fgsm_training_and_unknown_schedules_are_errors() -> None:
    cfg = gan_config(TINY, None)
    assert (cfg.adv_method, cfg.adv_eps) == ("fgsm", 0.3)
    assert set(GAN_SCHEDULES) == {"2:1", "4:1", "6-8-12", "adaptive"}
    with pytest.raises(ConfigError, match="unknown schedule"):
        gan_config(TINY, "3:1")


def test_every_cycle_is_scored_at_its_scheduled_ratio(result: dict[str, Any]) -> None:
    runs = {run["name"]: run for run in result["schedules"]}
    assert [c["gen_ratio"] for c in runs["2:1"]["cycles"]] == [2, 2, 2]
    assert [c["gen_ratio"] for c in runs["6-8-12"]["cycles"]] == [6, 8, 12]
    for run in runs.values():
        cycles = run["cycles"]
        assert [c["cycle"] for c in cycles] == [1, 2, 3]
        seconds = [c["train_seconds"] for c in cycles]
        assert seconds == sorted(seconds) and seconds[-1] == run["train_seconds"]
        assert all(0.0 <= c["fgsm_acc"] <= 1.0 and c["gen_loss"] >= 0.0 for c in cycles)
        assert run["final"]["n_eval"] == 32  # the whole (tiny) test set


def test_fgsm_training_runs_as_long_as_the_longest_schedule(result: dict[str, Any]) -> None:
    fgsm = result["fgsm_training"]
    budget = max(run["train_seconds"] for run in result["schedules"])
    assert fgsm["budget_seconds"] == budget
    seconds = [c["train_seconds"] for c in fgsm["cycles"]]
    assert seconds[-1] >= budget and all(s < budget for s in seconds[:-1])
    assert all(c["gen_ratio"] is None for c in fgsm["cycles"])


def test_each_schedule_meets_the_last_fgsm_epoch_within_its_time(result: dict[str, Any]) -> None:
    fgsm_cycles = result["fgsm_training"]["cycles"]
    for row, run in zip(result["equal_time"], result["schedules"], strict=True):
        matched = row["fgsm_training"]
        assert row["schedule"] == run["name"] and row["fgsm_acc"] == run["cycles"][-1]["fgsm_acc"]
        later = [c for c in fgsm_cycles if c["cycle"] > matched["cycle"]]
        assert matched["train_seconds"] <= run["train_seconds"] or matched["cycle"] == 1
        assert not later or later[0]["train_seconds"] > run["train_seconds"]
        assert matched == {k: fgsm_cycles[matched["cycle"] - 1][k] for k in matched}
