"""The perturbation generator of GAN-style adversarial training.

A small conv net proposes an L∞-bounded perturbation per image and is trained to maximise the
classifier's error, alternating with the classifier (Goodfellow et al. 2014's adversarial game
with a learned adversary, as in Lee et al., "Generative Adversarial Trainer", 2017,
arXiv:1705.03387).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PerturbationGenerator(nn.Module):
    """Maps images in [0, 1] to adversarial images within ``eps`` in L∞, clamped to [0, 1].

    Args:
        channels: Image channels.
        eps: L∞ bound in pixel units; ``tanh`` keeps the raw perturbation inside it.
        width: Hidden conv channels. Default 32.
        gradient_input: Also see the classifier's loss gradient at the image (Lee et al.
            2017): three local convs cannot work out from the image alone where the
            classifier is weak, the gradient tells them. Default False.
    """

    def __init__(
        self, channels: int, eps: float, width: int = 32, *, gradient_input: bool = False
    ) -> None:
        super().__init__()
        self.eps = eps
        self.gradient_input = gradient_input
        self.net = nn.Sequential(
            nn.Conv2d(channels * (2 if gradient_input else 1), width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, channels, 3, padding=1),
        )

    def forward(self, x: Tensor, grad: Tensor | None = None) -> Tensor:
        """Adversarial images for ``x``; ``grad`` (from :func:`input_gradient`) is required
        when the generator was built with ``gradient_input``."""
        # The input is centred so the generator sees signed contrast, as the classifier does.
        inputs = x * 2 - 1
        if self.gradient_input:
            if grad is None:
                raise ValueError("this generator needs the classifier's input gradient")
            # Scaled per image to [-1, 1]: raw gradients shrink as the classifier grows sure.
            scale = grad.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
            inputs = torch.cat([inputs, grad / scale], dim=1)
        delta = self.eps * torch.tanh(self.net(inputs))
        return (x + delta).clamp(0.0, 1.0)


def input_gradient(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """The gradient of ``model``'s cross-entropy on ``(x, y)`` with respect to ``x`` (detached).

    Only ``x``'s gradient is taken: the model's parameter gradients stay untouched.
    """
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(x), y), x)
    return grad.detach()


def generator_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """The generator's loss: mean ``-log(1 - p_y)`` of the classifier on generated images.

    It falls as the classifier's probability of the true class ``p_y`` falls, and, unlike
    ``p_y`` itself, its gradient does not vanish when the classifier is confident (the logit
    gradient is ``p_y``). A value of 0.6 means ``p_y`` ≈ 0.45 on average: the threshold of the
    adaptive ratio schedule.
    """
    z = logits.float()
    # log(1 - p_y) = logsumexp of the other logits - logsumexp of all: exact, and unlike
    # log1p(-p_y) its gradient survives when p_y rounds to 1 in float32 (a confident classifier,
    # exactly the one the generator must learn to fool).
    others = z.scatter(1, labels[:, None], float("-inf"))
    return (torch.logsumexp(z, dim=1) - torch.logsumexp(others, dim=1)).mean()
