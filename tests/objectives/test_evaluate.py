"""Ensemble voting and the evaluation metrics."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from advhpo.objectives import (
    DatasetSplits,
    MeanLogits,
    MemberTrainer,
    NetConfig,
    TrialConfig,
    evaluate,
    vote,
    vote_scores,
)

CPU = torch.device("cpu")


class Fixed(nn.Module):
    """A 'model' that returns the same logits for every input row."""

    def __init__(self, logits: list[float]) -> None:
        super().__init__()
        self.logits = torch.tensor(logits)

    def forward(self, x: Tensor) -> Tensor:
        return self.logits.expand(x.shape[0], -1)


def test_vote_takes_the_majority_label_even_against_the_mean_logits() -> None:
    # Members 0 and 1 say class 0 weakly; member 2 says class 1 with huge confidence.
    members = [Fixed([1.0, 0.0, 0.0]), Fixed([1.0, 0.0, 0.0]), Fixed([0.0, 50.0, 0.0])]
    labels, member_labels = vote(members, torch.zeros(4, 1))
    assert labels.tolist() == [0] * 4
    assert member_labels[:, 0].tolist() == [0, 0, 1]
    assert MeanLogits(members)(torch.zeros(1, 1)).argmax().item() == 1


def test_vote_ties_go_to_the_highest_mean_probability() -> None:
    members = [Fixed([3.0, 0.0, 0.0]), Fixed([0.0, 1.0, 0.0])]
    assert vote(members, torch.zeros(1, 1))[0].item() == 0
    members = [Fixed([1.0, 0.0, 0.0]), Fixed([0.0, 3.0, 0.0])]
    assert vote(members, torch.zeros(1, 1))[0].item() == 1


def test_mean_logits_averages_members() -> None:
    ens = MeanLogits([Fixed([2.0, 0.0]), Fixed([0.0, 4.0])])
    assert torch.equal(ens(torch.zeros(1, 1)), torch.tensor([[1.0, 2.0]]))


@pytest.fixture
def trained(tiny_splits: DatasetSplits) -> tuple[TrialConfig, list[nn.Module]]:
    cfg = TrialConfig(
        dataset="mnist",
        net=NetConfig(dataset="mnist", blocks=((8,),), dense=(32,)),
        lr=0.05,
        batch_size=32,
        ensemble=3,
        eval_eps=0.8,  # the bar pattern is so easy that smaller radii may not break it
        eps_grid=(0.0, 0.1, 0.8),
        pgd_steps=3,
    )
    trainers = [MemberTrainer(cfg, k, CPU) for k in range(3)]
    for _ in range(5):
        for t in trainers:
            t.train_epoch(tiny_splits.train)
    return cfg, [t.model for t in trainers]


def test_evaluate_reports_consistent_metrics(
    tiny_splits: DatasetSplits, trained: tuple[TrialConfig, list[nn.Module]]
) -> None:
    cfg, members = trained
    m = evaluate(members, tiny_splits.val, cfg, CPU)
    assert m["n_eval"] == 64
    assert len(m["member_clean_acc"]) == 3
    assert m["clean_acc"] > 0.5  # the bar pattern is learnable
    curve = dict(zip(m["eps_curve"]["eps"], m["eps_curve"]["fgsm_acc"], strict=True))
    assert curve[0.0] == m["clean_acc"]
    assert curve[0.8] == m["fgsm_acc"]
    # An attack at the same radius that iterates is at least as strong, up to noise.
    assert m["pgd_acc"] <= m["fgsm_acc"] + 0.05
    assert m["fgsm_acc"] < m["clean_acc"]
    assert all(0.0 <= m[k] <= 1.0 for k in ("clean_acc", "fgsm_acc", "pgd_acc", "transfer_acc"))


def test_evaluate_leaves_members_in_eval_mode_and_is_repeatable(
    tiny_splits: DatasetSplits, trained: tuple[TrialConfig, list[nn.Module]]
) -> None:
    cfg, members = trained
    a = evaluate(members, tiny_splits.val, cfg, CPU)
    b = evaluate(members, tiny_splits.val, cfg, CPU)
    assert not any(m.training for m in members)
    for key in ("clean_acc", "fgsm_acc", "pgd_acc", "transfer_acc"):
        assert a[key] == b[key]


def test_vote_scores_agree_with_evaluate(
    tiny_splits: DatasetSplits, trained: tuple[TrialConfig, list[nn.Module]]
) -> None:
    cfg, members = trained
    full = evaluate(members, tiny_splits.val, cfg, CPU)
    assert vote_scores(members, tiny_splits.val, cfg.eval_eps, CPU) == (
        full["clean_acc"],
        full["fgsm_acc"],
    )
