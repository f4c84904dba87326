"""Member training: determinism, member independence, checkpoints, divergence, methods."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from advhpo import DivergenceError
from advhpo.objectives import DatasetSplits, LoopEnsemble, MemberTrainer, NetConfig, TrialConfig
from advhpo.objectives import _training as training

CPU = torch.device("cpu")


def _cfg(**changes: Any) -> TrialConfig:
    net = NetConfig(dataset="mnist", blocks=((8,),), dense=(32,))
    kwargs: dict[str, Any] = {"batch_size": 32, "lr": 0.05, **changes}
    return TrialConfig(dataset="mnist", net=net, **kwargs)


# Training methods as test ids; "generator/gradient" is the generator that sees input gradients.
METHODS = ["none", "fgsm", "fgsm_rs", "generator", "generator/gradient"]


def _method_cfg(method: str, eps: float, **changes: Any) -> TrialConfig:
    adv_method, _, gen_input = method.partition("/")
    return _cfg(
        adv_method=adv_method,
        adv_eps=0.0 if method == "none" else eps,
        gen_input=gen_input or "image",
        **changes,
    )


def _weights(t: MemberTrainer) -> list[torch.Tensor]:
    return [p.detach().clone() for p in t.model.parameters()]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_same_seed_gives_identical_weights(tiny_splits: DatasetSplits) -> None:
    runs = []
    for _ in range(2):
        t = MemberTrainer(_cfg(seed=3), 0, CPU)
        t.train_epoch(tiny_splits.train)
        runs.append(_weights(t))
    assert _same(runs[0], runs[1])


def test_members_differ_and_do_not_depend_on_each_other(tiny_splits: DatasetSplits) -> None:
    cfg = _cfg(ensemble=2)
    ensemble = LoopEnsemble(cfg, CPU)
    ensemble.train_epoch(tiny_splits.train)
    pair = ensemble.members
    alone = MemberTrainer(cfg, 1, CPU)
    torch.manual_seed(999)  # the global RNG must not leak into a member
    alone.train_epoch(tiny_splits.train)
    assert _same(_weights(alone), _weights(pair[1]))
    assert not _same(_weights(pair[0]), _weights(pair[1]))


@pytest.mark.parametrize("method", METHODS)
def test_resuming_from_a_state_dict_continues_exactly(
    tiny_splits: DatasetSplits, method: str
) -> None:
    cfg = _method_cfg(method, 0.2, seed=5)
    straight = MemberTrainer(cfg, 0, CPU)
    straight.train_epoch(tiny_splits.train)
    straight.train_epoch(tiny_splits.train)

    first = MemberTrainer(cfg, 0, CPU)
    first.train_epoch(tiny_splits.train)
    state = first.state_dict()
    resumed = MemberTrainer(cfg, 0, CPU)
    resumed.load_state_dict(state)
    resumed.train_epoch(tiny_splits.train)
    assert resumed.epoch == 2
    assert _same(_weights(resumed), _weights(straight))


def test_resuming_keeps_the_adaptive_ratio_s_half_filled_window(
    tiny_splits: DatasetSplits, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 4 steps per epoch and a window of 3: the second window straddles the epoch boundary, so
    # a resumed member that forgot the window's first step would raise the ratio a step late.
    monkeypatch.setattr(training, "_ADAPT_WINDOW", 3)
    cfg = _cfg(adv_method="generator", adv_eps=0.2, gen_adaptive=True, gen_loss_threshold=0.0)
    straight = MemberTrainer(cfg, 0, CPU)
    ratios = []
    for _ in range(2):
        straight.train_epoch(tiny_splits.train)
        ratios.append(straight.gen_ratio)
    assert ratios == [2, 3]

    first = MemberTrainer(cfg, 0, CPU)
    first.train_epoch(tiny_splits.train)
    resumed = MemberTrainer(cfg, 0, CPU)
    resumed.load_state_dict(first.state_dict())
    resumed.train_epoch(tiny_splits.train)
    assert resumed.gen_ratio == straight.gen_ratio
    assert _same(_weights(resumed), _weights(straight))


@pytest.mark.parametrize("method", METHODS)
def test_every_method_lowers_the_loss(tiny_splits: DatasetSplits, method: str) -> None:
    cfg = _method_cfg(method, 0.1)
    t = MemberTrainer(cfg, 0, CPU)
    losses = [t.train_epoch(tiny_splits.train)["loss"] for _ in range(4)]
    assert losses[-1] < losses[0]


def test_a_diverging_run_raises_with_the_reason(tiny_splits: DatasetSplits) -> None:
    t = MemberTrainer(_cfg(lr=1e30), 0, CPU)
    with pytest.raises(DivergenceError, match=r"diverged: loss became (nan|inf)"):
        for _ in range(3):
            t.train_epoch(tiny_splits.train)


def test_adaptive_generator_ratio_grows_while_the_generator_loses(
    tiny_splits: DatasetSplits,
) -> None:
    # A threshold of 0 can never be met, so every window of steps raises the ratio.
    cfg = _cfg(
        adv_method="generator", adv_eps=0.1, gen_adaptive=True, gen_loss_threshold=0.0, batch_size=1
    )
    t = MemberTrainer(cfg, 0, CPU)
    record = t.train_epoch(tiny_splits.train.head(100))
    assert record["gen_ratio"] == 3  # 100 steps = two windows of 50
    assert record["gen_loss"] >= 0.0


def test_fixed_generator_ratio_stays(tiny_splits: DatasetSplits) -> None:
    cfg = _cfg(adv_method="generator", adv_eps=0.1, gen_ratio=4)
    t = MemberTrainer(cfg, 0, CPU)
    assert t.train_epoch(tiny_splits.train)["gen_ratio"] == 4


def test_a_stepped_ratio_schedule_sets_each_epochs_ratio(tiny_splits: DatasetSplits) -> None:
    cfg = _cfg(adv_method="generator", adv_eps=0.1, gen_ratio_schedule=(2, 3))
    t = MemberTrainer(cfg, 0, CPU)
    ratios = [t.train_epoch(tiny_splits.train.head(32))["gen_ratio"] for _ in range(3)]
    assert ratios == [2, 3, 3]  # epochs past the schedule keep its last ratio


@pytest.mark.parametrize("gen_input", ["image", "gradient"])
def test_generator_updates_lower_the_generator_loss(
    tiny_splits: DatasetSplits, gen_input: str
) -> None:
    # The classifier barely moves (lr 1e-12) and has no dropout, and each epoch is one batch of
    # the same images: only the generator changes what the loss sees, so the loss must fall.
    net = NetConfig(dataset="mnist", blocks=((8,),), dense=(32,), conv_dropout=0, dense_dropout=0)
    cfg = TrialConfig(
        dataset="mnist",
        net=net,
        lr=1e-12,
        batch_size=128,
        adv_method="generator",
        adv_eps=0.3,
        gen_ratio=4,
        gen_input=gen_input,
    )
    t = MemberTrainer(cfg, 0, CPU)
    assert t.gen is not None and t.gen.gradient_input == (gen_input == "gradient")
    losses = [t.train_epoch(tiny_splits.train)["gen_loss"] for _ in range(3)]
    assert losses[2] < losses[1] < losses[0]
