"""The thesis protocol: its configs, its comparison table, its eps curves (tiny synthetic data)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
import torch

from advhpo import ConfigError
from advhpo.objectives import (
    PRESETS,
    THESIS_FIGURES,
    DatasetSplits,
    Fidelity,
    ImageSet,
    MemberTrainer,
    NetConfig,
    TrialConfig,
    eps_curves,
    evaluate,
    reproduce_thesis,
    run_trial,
    thesis_configs,
    thesis_fidelity,
)

CPU = torch.device("cpu")
TINY_NET = NetConfig(dataset="mnist", blocks=((8,),), dense=(32,))
TINY = Fidelity(epochs=1, curve_subset=32, epoch_eval=32, members=2, pgd_steps=2)


@pytest.fixture(scope="module")
def splits(make_images: Callable[..., ImageSet]) -> DatasetSplits:
    """1,024 synthetic training images: 8 SGD steps per epoch, enough to beat chance."""
    return DatasetSplits(
        train=make_images(1024, 0), val=make_images(64, 1), test=make_images(64, 2)
    )


@pytest.fixture(scope="module")
def result(splits: DatasetSplits) -> dict[str, Any]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only add overhead
    try:
        return reproduce_thesis("mnist", splits, CPU, TINY, net=TINY_NET)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize(("dataset", "eps"), [("mnist", 0.3), ("cifar10", 0.05)])
def test_configs_train_the_preset_undefended_then_with_fgsm_at_the_thesis_radius(
    dataset: str, eps: float
) -> None:
    undefended, adversarial = thesis_configs(dataset, thesis_fidelity(dataset))
    assert undefended.net == PRESETS[f"thesis-{dataset}"]()
    assert (undefended.adv_method, undefended.ensemble) == ("none", 1)
    assert (adversarial.adv_method, adversarial.adv_eps, adversarial.ensemble) == ("fgsm", eps, 5)
    for cfg in (undefended, adversarial):
        assert cfg.eval_eps == eps and cfg.eval_split == "test" and cfg.val_fraction == 0.0


def test_rows_put_the_thesis_figures_beside_our_stages(result: dict[str, Any]) -> None:
    figures, stages = THESIS_FIGURES["mnist"], result["stages"]
    rows = result["rows"]
    assert [r["thesis"] for r in rows] == [
        figures["clean_acc"],
        figures["fgsm_before"],
        figures["fgsm_after"],
        figures["fgsm_vote"],
    ]
    assert rows[0]["ours"] == stages["undefended"]["clean_acc"] and rows[0]["ours_pgd"] is None
    for row, key in zip(rows[1:], ("undefended", "adversarial", "vote"), strict=True):
        stage = stages[key]
        assert (row["ours"], row["ours_pgd"]) == (stage["fgsm_acc"], stage["pgd_acc"])
    assert "2-net vote" in rows[3]["metric"]


def test_the_single_net_is_member_zero_of_the_vote_trained_alone(
    result: dict[str, Any], splits: DatasetSplits
) -> None:
    stages = result["stages"]
    assert len(stages["vote"]["member_clean_acc"]) == TINY.members
    assert stages["adversarial"]["member_clean_acc"] == stages["vote"]["member_clean_acc"][:1]
    _, adversarial = thesis_configs("mnist", TINY, TINY_NET)
    alone = run_trial(dataclasses.replace(adversarial, ensemble=1), splits, CPU).metrics
    for key in ("clean_acc", "fgsm_acc", "pgd_acc", "transfer_acc"):
        assert stages["adversarial"][key] == alone[key]
    assert alone["clean_acc"] > 0.2  # above chance (0.1): the comparison is not of two zeros


def test_eps_curves_span_the_grid_on_the_curve_images(result: dict[str, Any]) -> None:
    for stage in result["stages"].values():
        curve = stage["eps_curve"]
        assert curve["eps"] == pytest.approx([0.06 * i for i in range(11)])  # 0 to 2 x 0.3
        assert len(curve["fgsm_acc"]) == len(curve["pgd_acc"]) == 11
        assert curve["n"] == TINY.curve_subset
        assert curve["fgsm_acc"][0] == curve["pgd_acc"][0]  # radius 0: clean accuracy


def test_eps_curves_agree_with_evaluate_at_its_radius(tiny_splits: DatasetSplits) -> None:
    cfg = TrialConfig(
        dataset="mnist", net=TINY_NET, batch_size=32, lr=0.05, eps_grid=(0.0, 0.3), pgd_steps=3
    )
    t = MemberTrainer(cfg, 0, CPU)
    for _ in range(4):
        t.train_epoch(tiny_splits.train)
    data = tiny_splits.val
    metrics = evaluate([t.model], data, cfg, CPU)
    curves = eps_curves([t.model], data, [0.0, 0.1, 0.3], CPU, steps=3, seed=cfg.seed)
    assert curves["fgsm_acc"][::2] == [metrics["clean_acc"], metrics["fgsm_acc"]]
    assert curves["pgd_acc"][::2] == [metrics["clean_acc"], metrics["pgd_acc"]]
    assert metrics["clean_acc"] > 0.3  # a net that learnt something: the check is not 0 == 0


def test_an_unknown_dataset_is_a_config_error(splits: DatasetSplits) -> None:
    with pytest.raises(ConfigError, match="unknown dataset"):
        reproduce_thesis("svhn", splits, CPU, TINY)
