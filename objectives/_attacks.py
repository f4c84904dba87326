"""L∞ white-box attacks in [0, 1] pixel space: FGSM, FGSM with random start, and PGD.

Every attack is a pure function of ``(model, images, labels, eps, ...)``:

* the model maps images in [0, 1], shape ``(N, C, H, W)``, to logits ``(N, K)`` (normalisation
  lives inside the model, see :func:`advhpo.objectives.make_net`);
* gradients are taken with :func:`torch.autograd.grad` with respect to the images only, so the
  parameters' ``.grad`` are never touched;
* the model's mode is never changed (no ``model.train()`` / ``model.eval()``): the caller
  decides, e.g. ``eval()`` for evaluation, or ``train()`` during adversarial training (where
  dropout is active and batch-norm running statistics are updated by the attack's forward
  passes);
* gradients are enabled internally (:func:`torch.enable_grad`), so a call inside an outer
  :func:`torch.no_grad` block still works, although callers should not rely on wrapping;
* the result is detached, has the images' shape, dtype and device, and lies in [0, 1].

Loss is the mean cross-entropy over the batch, as in torchattacks, so gradient signs (and, for
FGSM and PGD, the adversarial images themselves) match ``torchattacks.FGSM`` / ``torchattacks.PGD``
exactly when the model is in the same mode.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advhpo._errors import ConfigError
from advhpo.objectives._config import check_eps

__all__ = ["fgsm", "fgsm_rs", "fgsm_sweep", "pgd"]


def _check_alpha(alpha: float) -> None:
    if not (math.isfinite(alpha) and alpha >= 0.0):
        raise ConfigError(f"alpha (step size) must be finite and >= 0, got {alpha}")


def _loss_grad_sign(model: nn.Module, images: Tensor, labels: Tensor) -> Tensor:
    """Sign of the gradient of the mean cross-entropy with respect to ``images``.

    One forward and one backward pass; only the input gradient is computed.
    """
    with torch.enable_grad():
        x = images.detach().requires_grad_(True)
        loss = F.cross_entropy(model(x), labels)
        (grad,) = torch.autograd.grad(loss, x, retain_graph=False, create_graph=False)
    return grad.sign()


def _uniform_like(images: Tensor, eps: float, generator: torch.Generator | None) -> Tensor:
    """Noise ``U(-eps, eps)`` of the images' shape, dtype and device."""
    return torch.empty_like(images).uniform_(-eps, eps, generator=generator)


def fgsm(model: nn.Module, images: Tensor, labels: Tensor, eps: float) -> Tensor:
    """Fast Gradient Sign Method, L∞.

    Goodfellow, Shlens & Szegedy, "Explaining and Harnessing Adversarial Examples", 2014
    (arXiv:1412.6572)::

        x_adv = clamp(x + eps * sign(grad_x CE(model(x), y)), 0, 1)

    with CE the mean cross-entropy over the batch. Identical to ``torchattacks.FGSM`` on a model
    in the same mode (torchattacks switches to eval mode; this function leaves the mode alone).

    The model's mode is not changed (the caller decides ``train()`` / ``eval()``) and parameter
    gradients are not touched. Do not wrap the call in :func:`torch.no_grad`; gradients are
    re-enabled internally anyway.

    Args:
        model: Maps images in [0, 1], ``(N, C, H, W)``, to logits ``(N, K)``.
        images: Clean images in [0, 1], ``(N, C, H, W)``.
        labels: True class indices, ``(N,)`` int64.
        eps: L∞ budget in pixel units, in [0, 1] (e.g. 0.3 on MNIST, 8/255 on CIFAR-10).
            ``eps == 0`` returns a detached copy of ``images`` without a forward pass.

    Returns:
        Detached adversarial images in [0, 1], same shape, dtype and device as ``images``.

    Raises:
        ConfigError: ``eps`` is outside [0, 1].
    """
    check_eps("eps", eps)
    images = images.detach()
    if eps == 0.0:
        return images.clone()
    adv = images + eps * _loss_grad_sign(model, images, labels)
    return torch.clamp(adv, min=0.0, max=1.0).detach()


def fgsm_sweep(
    model: nn.Module, images: Tensor, labels: Tensor, radii: Sequence[float]
) -> Iterator[tuple[float, Tensor]]:
    """:func:`fgsm` at several radii from one gradient: ``(eps, x_adv)`` per radius, in order.

    FGSM's step direction, the gradient sign at the clean images, does not depend on the
    radius, so an accuracy-vs-eps curve needs one backward pass instead of one per radius.
    Each image equals ``fgsm(model, images, labels, eps)`` exactly.

    Raises:
        ConfigError: A radius is outside [0, 1].
    """
    for eps in radii:
        check_eps("eps", eps)
    images = images.detach()
    sign = _loss_grad_sign(model, images, labels) if any(radii) else None
    for eps in radii:
        if eps == 0.0 or sign is None:
            yield eps, images.clone()
        else:
            yield eps, torch.clamp(images + eps * sign, min=0.0, max=1.0).detach()


def fgsm_rs(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    eps: float,
    *,
    alpha: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """FGSM with a uniform random start ("fast adversarial training" attack), L∞.

    Wong, Rice & Kolter, "Fast is better than free: Revisiting adversarial training", 2020
    (arXiv:2001.03994)::

        delta ~ U(-eps, eps)
        x0    = clamp(x + delta, 0, 1)
        x1    = x0 + alpha * sign(grad_x CE(model(x0), y))
        x_adv = clamp(x + clamp(x1 - x, -eps, eps), 0, 1)

    with CE the mean cross-entropy over the batch; the update and projection order is that of
    ``torchattacks.FFGSM``.

    The model's mode is not changed (the caller decides ``train()`` / ``eval()``) and parameter
    gradients are not touched. Do not wrap the call in :func:`torch.no_grad`; gradients are
    re-enabled internally anyway.

    Args:
        model: Maps images in [0, 1], ``(N, C, H, W)``, to logits ``(N, K)``.
        images: Clean images in [0, 1], ``(N, C, H, W)``.
        labels: True class indices, ``(N,)`` int64.
        eps: L∞ budget in pixel units, in [0, 1]. ``eps == 0`` returns a detached copy of
            ``images`` without a forward pass (and without drawing random numbers).
        alpha: Step size. Default ``1.25 * eps`` (the paper's choice).
        generator: Random generator for the start, on the images' device. Default: torch's
            global generator.

    Returns:
        Detached adversarial images in [0, 1], same shape, dtype and device as ``images``.

    Raises:
        ConfigError: ``eps`` is outside [0, 1] or ``alpha`` is negative or not finite.
    """
    check_eps("eps", eps)
    step = 1.25 * eps if alpha is None else alpha
    _check_alpha(step)
    images = images.detach()
    if eps == 0.0:
        return images.clone()
    start = torch.clamp(images + _uniform_like(images, eps, generator), min=0.0, max=1.0)
    adv = start + step * _loss_grad_sign(model, start, labels)
    delta = torch.clamp(adv - images, min=-eps, max=eps)
    return torch.clamp(images + delta, min=0.0, max=1.0).detach()


def pgd(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    eps: float,
    *,
    alpha: float | None = None,
    steps: int = 10,
    random_start: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Projected Gradient Descent (iterated FGSM with projection), L∞.

    Madry, Makelov, Schmidt, Tsipras & Vladu, "Towards Deep Learning Models Resistant to
    Adversarial Attacks", ICLR 2018 (arXiv:1706.06083)::

        x_0     = clamp(x + U(-eps, eps), 0, 1)     (or x_0 = x without random start)
        x'      = x_t + alpha * sign(grad_x CE(model(x_t), y))
        x_{t+1} = clamp(x + clamp(x' - x, -eps, eps), 0, 1)

    with CE the mean cross-entropy over the batch. The update and projection order is that of
    ``torchattacks.PGD``, so with ``random_start=False`` the result is identical to it step for
    step (on a model in the same mode); with a random start both draw ``U(-eps, eps)`` the same
    way, so they agree when started from the same global seed.

    The model's mode is not changed (the caller decides ``train()`` / ``eval()``) and parameter
    gradients are not touched. Do not wrap the call in :func:`torch.no_grad`; gradients are
    re-enabled internally anyway.

    Args:
        model: Maps images in [0, 1], ``(N, C, H, W)``, to logits ``(N, K)``.
        images: Clean images in [0, 1], ``(N, C, H, W)``.
        labels: True class indices, ``(N,)`` int64.
        eps: L∞ budget in pixel units, in [0, 1]. ``eps == 0`` returns a detached copy of
            ``images`` without a forward pass (and without drawing random numbers).
        alpha: Step size. Default ``2.5 * eps / steps`` (Madry et al.).
        steps: Gradient steps (one forward and one backward pass each), >= 1. Default 10.
        random_start: Start from a uniformly random point of the eps-ball. Default True.
        generator: Random generator for the start, on the images' device. Default: torch's
            global generator.

    Returns:
        Detached adversarial images in [0, 1], same shape, dtype and device as ``images``.

    Raises:
        ConfigError: ``eps`` is outside [0, 1], ``steps < 1``, or ``alpha`` is negative or not
            finite.
    """
    check_eps("eps", eps)
    if steps < 1:
        raise ConfigError(f"steps must be >= 1, got {steps}")
    step = 2.5 * eps / steps if alpha is None else alpha
    _check_alpha(step)
    images = images.detach()
    if eps == 0.0:
        return images.clone()
    adv = images.clone()
    if random_start:
        adv = torch.clamp(adv + _uniform_like(images, eps, generator), min=0.0, max=1.0)
    for _ in range(steps):
        adv = adv + step * _loss_grad_sign(model, adv, labels)
        delta = torch.clamp(adv - images, min=-eps, max=eps)
        adv = torch.clamp(images + delta, min=0.0, max=1.0)
    return adv.detach()
