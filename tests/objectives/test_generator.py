"""The perturbation generator: its L∞ bound, and the gradient it may see."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advhpo.objectives._generator import PerturbationGenerator, input_gradient


def _classifier() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))


@pytest.mark.parametrize("gradient_input", [False, True])
def test_generated_images_stay_within_eps_and_the_pixel_range(gradient_input: bool) -> None:
    torch.manual_seed(1)
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    gen = PerturbationGenerator(1, 0.1, gradient_input=gradient_input)
    grad = input_gradient(_classifier(), x, y) if gradient_input else None
    out = gen(x, grad)
    assert out.shape == x.shape
    assert (out - x).abs().max() <= 0.1 + 1e-6
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_a_gradient_generator_refuses_to_run_without_the_gradient() -> None:
    with pytest.raises(ValueError, match="input gradient"):
        PerturbationGenerator(1, 0.1, gradient_input=True)(torch.rand(2, 1, 28, 28))


def test_input_gradient_is_the_loss_gradient_and_leaves_the_model_untouched() -> None:
    model = _classifier()
    x, y = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    grad = input_gradient(model, x, y)
    xr = x.clone().requires_grad_(True)
    F.cross_entropy(model(xr), y).backward()
    assert xr.grad is not None and torch.allclose(grad, xr.grad)
    assert not grad.requires_grad
    model.zero_grad(set_to_none=True)
    input_gradient(model, x, y)
    assert all(p.grad is None for p in model.parameters())
