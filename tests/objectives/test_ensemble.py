"""Ensemble trainers: the per-device choice, and the stacked path checked against the loop."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from advhpo import DivergenceError
from advhpo.objectives import (
    DatasetSplits,
    LoopEnsemble,
    NetConfig,
    StackedEnsemble,
    TrialConfig,
    ensemble_strategy,
    make_ensemble_trainer,
    restore_ensemble_trainer,
)

CPU = torch.device("cpu")


def _cfg(**changes: Any) -> TrialConfig:
    net = NetConfig(dataset="mnist", blocks=((8,),), dense=(32,))
    kwargs: dict[str, Any] = {"net": net, "batch_size": 32, "lr": 0.05, "ensemble": 3, **changes}
    return TrialConfig(dataset="mnist", **kwargs)


@pytest.mark.parametrize(
    ("device", "ensemble", "method", "expected"),
    [
        ("cpu", 5, "fgsm", "loop"),
        ("cuda", 5, "fgsm", "stacked"),
        ("cuda:1", 3, "none", "stacked"),
        ("cuda", 1, "fgsm", "loop"),
        ("cuda", 5, "generator", "loop"),
    ],
)
def test_strategy_is_chosen_per_device(
    device: str, ensemble: int, method: str, expected: str
) -> None:
    cfg = _cfg(ensemble=ensemble, adv_method=method, adv_eps=0.0 if method == "none" else 0.1)
    assert ensemble_strategy(cfg, torch.device(device)) == expected


def test_cpu_trainer_is_the_loop() -> None:
    assert isinstance(make_ensemble_trainer(_cfg(), CPU), LoopEnsemble)


def test_stacked_members_start_from_the_loop_members_weights() -> None:
    cfg = _cfg()
    loop = LoopEnsemble(cfg, CPU).models()
    stacked = StackedEnsemble(cfg, CPU).models()
    for a, b in zip(loop, stacked, strict=True):
        for p, q in zip(a.parameters(), b.parameters(), strict=True):
            assert torch.equal(p, q)


def test_stacked_forward_equals_each_member_applied_alone() -> None:
    ens = StackedEnsemble(_cfg(), CPU)
    ens._template.eval()  # dropout off: outputs are deterministic
    x = torch.rand(3, 5, 1, 28, 28)
    stacked = ens.forward_stacked(x)
    for k, net in enumerate(ens.models()):
        torch.testing.assert_close(stacked[k], net.eval()(x[k]))


@pytest.mark.parametrize("method", ["none", "fgsm", "fgsm_rs"])
def test_stacked_training_learns_every_member(tiny_splits: DatasetSplits, method: str) -> None:
    ens = make_ensemble_trainer(
        _cfg(adv_method=method, adv_eps=0.0 if method == "none" else 0.1), CPU, "stacked"
    )
    first = ens.train_epoch(tiny_splits.train)
    for _ in range(3):
        last = ens.train_epoch(tiny_splits.train)
    assert ens.epoch == 4 and len(ens.history()) == 3
    assert all(b["loss"] < a["loss"] for a, b in zip(first, last, strict=True))


def test_stacked_gradient_of_each_member_is_its_own() -> None:
    # One SGD step of the stack must equal one step of each member trained alone on the same
    # images (no dropout, plain SGD): the summed loss must not mix members.
    cfg = _cfg(
        net=NetConfig(
            dataset="mnist", blocks=((4,),), dense=(8,), conv_dropout=0.0, dense_dropout=0.0
        ),
        momentum=0.0,
        ensemble=2,
    )
    ens = StackedEnsemble(cfg, CPU)
    nets = ens.models()
    x, y = torch.rand(2 * 6, 1, 28, 28), torch.randint(0, 10, (2 * 6,))
    ens._template.train()
    ens._step(x, y)
    for k, net in enumerate(nets):
        loss = torch.nn.functional.cross_entropy(net(x[6 * k : 6 * k + 6]), y[6 * k : 6 * k + 6])
        grads = torch.autograd.grad(loss, list(net.parameters()))
        for (name, p), g in zip(net.named_parameters(), grads, strict=True):
            torch.testing.assert_close(ens.params[name][k], p - cfg.lr * g)


def test_stacked_resume_continues_exactly(tiny_splits: DatasetSplits) -> None:
    cfg = _cfg(adv_method="fgsm_rs", adv_eps=0.1)
    straight = StackedEnsemble(cfg, CPU)
    straight.train_epoch(tiny_splits.train)
    straight.train_epoch(tiny_splits.train)
    first = StackedEnsemble(cfg, CPU)
    first.train_epoch(tiny_splits.train)
    resumed = StackedEnsemble(cfg, CPU)
    resumed.load_state_dict(first.state_dict())
    resumed.train_epoch(tiny_splits.train)
    for name, p in straight.params.items():
        assert torch.equal(p, resumed.params[name])


def test_a_checkpoint_is_restored_in_its_own_strategy(tiny_splits: DatasetSplits) -> None:
    # Stacked on a GPU, resumed on the CPU, where a new trial would be the loop.
    cfg = _cfg(adv_method="fgsm_rs", adv_eps=0.1)
    stacked = StackedEnsemble(cfg, CPU)
    stacked.train_epoch(tiny_splits.train)
    restored = restore_ensemble_trainer(cfg, CPU, stacked.state_dict())
    assert isinstance(restored, StackedEnsemble) and restored.epoch == 1
    for name, p in stacked.params.items():
        assert torch.equal(p, restored.params[name])
    assert isinstance(make_ensemble_trainer(cfg, CPU), LoopEnsemble)
    loop = LoopEnsemble(cfg, CPU)
    assert isinstance(restore_ensemble_trainer(cfg, CPU, loop.state_dict()), LoopEnsemble)


@pytest.mark.parametrize("strategy", ["loop", "stacked"])
def test_a_checkpoint_of_another_devices_generators_loads(
    tiny_splits: DatasetSplits, strategy: str
) -> None:
    # What a CUDA checkpoint holds: a 16-byte Philox state where the CPU keeps 5,056 bytes,
    # and an fp16 loss scaler's state (a disabled scaler saves none).
    cfg = _cfg(adv_method="fgsm_rs", adv_eps=0.1)
    trained = make_ensemble_trainer(cfg, CPU, strategy=strategy)  # type: ignore[arg-type]
    trained.train_epoch(tiny_splits.train)
    state = trained.state_dict()
    parts = state["members"] if strategy == "loop" else [state]
    for part in parts:
        part["attack_rng"] = torch.zeros(16, dtype=torch.uint8)
        part["scaler"] = {"scale": 1024.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                          "growth_interval": 2000, "_growth_tracker": 0}  # fmt: skip
    # Each from its own copy, as each resume reads the file afresh (the optimiser's buffers
    # are adopted, not copied).
    first = restore_ensemble_trainer(cfg, CPU, copy.deepcopy(state))
    second = restore_ensemble_trainer(cfg, CPU, copy.deepcopy(state))
    first.train_epoch(tiny_splits.train)
    second.train_epoch(tiny_splits.train)  # the generators were reseeded alike
    for a, b in zip(first.models(), second.models(), strict=True):
        for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
            assert torch.equal(pa, pb)


def test_an_empty_scaler_state_leaves_an_enabled_scaler_fresh() -> None:
    # A CPU (disabled) scaler's empty state, resumed on a GPU with fp16 loss scaling.
    from advhpo.objectives._device import restore_scaler

    scaler = torch.amp.GradScaler("cpu", enabled=True)
    restore_scaler(scaler, torch.amp.GradScaler("cpu", enabled=False).state_dict())
    assert scaler.get_scale() == torch.amp.GradScaler("cpu", enabled=True).get_scale()


def test_stacked_divergence_names_the_member(tiny_splits: DatasetSplits) -> None:
    ens = StackedEnsemble(_cfg(lr=1e30), CPU)
    with pytest.raises(DivergenceError, match="of member"):
        for _ in range(3):
            ens.train_epoch(tiny_splits.train)
