"""The small modules the nets are built from."""

from __future__ import annotations

import torch

from advhpo.objectives._net import Dropout, FlattenHWC


def test_dropout_keeps_the_expected_share_and_preserves_the_mean() -> None:
    torch.manual_seed(0)
    drop = Dropout(0.25).train()
    x = torch.ones(200_000)
    y = drop(x)
    kept = (y != 0).float().mean().item()
    assert abs(kept - 0.75) < 0.01
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1 / 0.75))
    assert abs(y.mean().item() - 1.0) < 0.01


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
