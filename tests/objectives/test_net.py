"""The small modules the nets are built from."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from advhpo.objectives import NetConfig, family_net, make_net, thesis_cifar10, thesis_mnist
from advhpo.objectives._net import Dropout, FlattenHWC, stated_order


@pytest.mark.parametrize("p", [0.1, 0.25, 0.5, 0.9])
@pytest.mark.parametrize("channels_last", [False, True])
def test_dropout_keeps_the_expected_share_and_preserves_the_mean(
    p: float, channels_last: bool
) -> None:
    torch.manual_seed(0)
    drop = Dropout(p).train()
    x = torch.ones(50, 16, 16, 16)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = drop(x)
    assert y.stride() == x.stride()
    kept = (y != 0).float().mean().item()
    assert abs(kept - (1 - p)) < 0.01
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1 / (1 - p)))
    # Four standard deviations of the mean of n inverted-dropout units (tighter than 0.01 for
    # p <= 0.5, where the mean is least noisy).
    assert abs(y.mean().item() - 1.0) < 4 * math.sqrt(p / ((1 - p) * x.numel()))


def test_dropout_decides_the_units_that_share_a_random_word_independently() -> None:
    torch.manual_seed(2)
    kept = Dropout(0.5).train()(torch.ones(400_000)) != 0
    words = kept.view(-1, 4).float()  # the four units cut from one 64-bit draw
    for i in range(4):
        for j in range(i + 1, 4):
            both = (words[:, i] * words[:, j]).mean().item()
            assert abs(both - 0.25) < 0.005


def test_dropout_gradient_flows_only_through_kept_units() -> None:
    torch.manual_seed(1)
    x = torch.ones(1000, requires_grad=True)
    y = Dropout(0.5).train()(x)
    y.sum().backward()
    assert x.grad is not None
    assert torch.equal(x.grad, y.detach())  # d(x*keep)/dx = keep, and y = keep when x = 1


def test_dropout_is_the_identity_in_eval_mode_and_at_zero() -> None:
    x = torch.randn(4, 8)
    assert Dropout(0.5).eval()(x) is x
    assert Dropout(0.0).train()(x) is x


def test_flatten_hwc_orders_features_channel_last_without_copying_channels_last_input() -> None:
    x = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    flat = FlattenHWC()(x)
    assert flat.shape == (2, 12)
    assert flat[0, :3].tolist() == [
        x[0, 0, 0, 0].item(),
        x[0, 1, 0, 0].item(),
        x[0, 2, 0, 0].item(),
    ]
    cl = x.contiguous(memory_format=torch.channels_last)
    assert FlattenHWC()(cl).data_ptr() == cl.data_ptr()  # a view, not a copy


@pytest.mark.parametrize(
    "cfg",
    [thesis_mnist(), thesis_cifar10(), family_net("mnist", 2), family_net("cifar10", 3)],
    ids=["thesis-mnist", "thesis-cifar10", "family-mnist-2", "family-cifar10-3"],
)
def test_pooling_before_the_last_relu_is_bit_identical_to_the_stated_order(cfg: NetConfig) -> None:
    torch.manual_seed(0)
    ours = make_net(cfg).to(memory_format=torch.channels_last).train()
    stated = stated_order(ours)
    assert [type(m) for m in stated[1]][-3:] == [nn.ReLU, nn.MaxPool2d, Dropout]
    assert list(ours.state_dict()) == list(stated.state_dict())  # checkpoints load either way
    size = cfg.image_size
    x = torch.rand(6, cfg.in_channels, size, size)
    x[:, :, : size // 3] = 0.0  # constant background: windows of tied maxima, as on MNIST
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.arange(6) % 10
    results = []
    for net in (ours, stated):
        torch.manual_seed(1)  # the same dropout masks
        xr = x.clone().requires_grad_(True)
        loss = nn.functional.cross_entropy(net(xr), y)
        grads = torch.autograd.grad(loss, [xr, *net.parameters()])
        results.append((loss.detach(), grads))
    assert torch.equal(results[0][0], results[1][0])
    for a, b in zip(results[0][1], results[1][1], strict=True):
        assert torch.equal(a, b)


def test_stated_order_refuses_a_net_already_in_the_stated_order() -> None:
    stated = stated_order(make_net(thesis_mnist()))
    with pytest.raises(ValueError, match="block 1: its max-pool is not followed by a ReLU"):
        stated_order(stated)
