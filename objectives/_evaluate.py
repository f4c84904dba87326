"""Scoring an ensemble: majority vote, clean / FGSM / transfer / PGD accuracy, eps curve."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advhpo.objectives._attacks import fgsm, fgsm_sweep, pgd
from advhpo.objectives._config import TrialConfig
from advhpo.objectives._data import ImageSet
from advhpo.objectives._training import to_float_batch

_CHUNK = 1000  # images per evaluation batch: bounds activation memory of the attacks


class MeanLogits(nn.Module):
    """An ensemble as one differentiable model: the mean of its members' logits.

    White-box attacks on the ensemble take gradients through this module; predictions use
    :func:`vote` instead.
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: Tensor) -> Tensor:
        return torch.stack([m(x) for m in self.members]).mean(0)


@torch.no_grad()
def vote(members: Sequence[nn.Module], x: Tensor) -> tuple[Tensor, Tensor]:
    """Majority vote of the members' labels; ties go to the highest mean probability.

    Returns:
        ``(ensemble labels (N,), member labels (M, N))``.
    """
    logits = torch.stack([m(x).float() for m in members])  # (M, N, K)
    labels = logits.argmax(-1)
    counts = F.one_hot(labels, logits.shape[-1]).sum(0).float()  # (N, K)
    mean_prob = logits.softmax(-1).mean(0)
    # Probabilities are below 1, so halving them can only reorder classes with equal counts.
    return (counts + 0.5 * mean_prob).argmax(-1), labels


def vote_scores(
    members: Sequence[nn.Module], data: ImageSet, eps: float, device: torch.device
) -> tuple[float, float]:
    """Clean and white-box FGSM accuracy of the vote: the cheap per-epoch validation.

    Members are left in eval mode; training puts them back in train mode.

    Returns:
        ``(clean_acc, fgsm_acc)`` on ``data``.
    """
    for m in members:
        m.eval()
    ensemble = MeanLogits(members).eval()
    clean = adv = 0
    for lo in range(0, len(data), _CHUNK):
        x = to_float_batch(data.images[lo : lo + _CHUNK], device)
        y = data.labels[lo : lo + _CHUNK].to(device)
        clean += int((vote(members, x)[0] == y).sum())
        adv += int((vote(members, fgsm(ensemble, x, y, eps))[0] == y).sum())
    denom = max(len(data), 1)
    return clean / denom, adv / denom


def evaluate(
    members: Sequence[nn.Module],
    data: ImageSet,
    cfg: TrialConfig,
    device: torch.device,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Score the members on ``data`` with every metric of a trial.

    Members are put in eval mode (dropout off) and attacked in it. FGSM and PGD are white-box
    against :class:`MeanLogits`; transfer FGSM is crafted on member 0 alone; every adversarial
    batch is scored by :func:`vote`.

    Args:
        members: The trained networks.
        data: Evaluation images (uint8) and labels.
        cfg: Supplies ``eval_eps``, ``eps_grid``, ``pgd_steps``, ``pgd_step_size``, ``seed``.
        device: Where to compute.
        progress: Called with the number of images just scored.

    Returns:
        ``clean_acc, fgsm_acc, transfer_acc, pgd_acc, member_clean_acc, eps_curve, n_eval,
        eval_seconds``.
    """
    start = time.perf_counter()
    for m in members:
        m.eval()
    ensemble = MeanLogits(members).eval()
    pgd_rng = torch.Generator(device=device).manual_seed(cfg.seed)
    grid = list(cfg.eps_grid)
    correct = {"clean": 0, "fgsm": 0, "transfer": 0, "pgd": 0}
    member_correct = torch.zeros(len(members), dtype=torch.long)
    curve_correct = [0] * len(grid)
    n = len(data)
    for lo in range(0, n, _CHUNK):
        x = to_float_batch(data.images[lo : lo + _CHUNK], device)
        y = data.labels[lo : lo + _CHUNK].to(device)

        def hits(images: Tensor, y: Tensor = y) -> int:
            return int((vote(members, images)[0] == y).sum())

        pred, member_pred = vote(members, x)
        member_correct += (member_pred == y).sum(1).cpu()
        # One gradient for every radius; the curve usually contains 0 and the evaluation eps.
        fgsm_hits = {0.0: int((pred == y).sum())}
        radii = sorted({cfg.eval_eps, *grid} - {0.0})
        for eps, x_adv in fgsm_sweep(ensemble, x, y, radii):
            fgsm_hits[eps] = hits(x_adv)
        correct["clean"] += fgsm_hits[0.0]
        correct["fgsm"] += fgsm_hits[cfg.eval_eps]
        correct["transfer"] += hits(fgsm(members[0], x, y, cfg.eval_eps))
        x_pgd = pgd(
            ensemble,
            x,
            y,
            cfg.eval_eps,
            alpha=cfg.pgd_step_size,
            steps=cfg.pgd_steps,
            generator=pgd_rng,
        )
        correct["pgd"] += hits(x_pgd)
        for i, eps in enumerate(grid):
            curve_correct[i] += fgsm_hits[eps]
        if progress is not None:
            progress(len(y))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    denom = max(n, 1)
    return {
        "clean_acc": correct["clean"] / denom,
        "fgsm_acc": correct["fgsm"] / denom,
        "transfer_acc": correct["transfer"] / denom,
        "pgd_acc": correct["pgd"] / denom,
        "member_clean_acc": [int(c) / denom for c in member_correct],
        "eps_curve": {"eps": grid, "fgsm_acc": [c / denom for c in curve_correct]},
        "n_eval": n,
        "eval_seconds": time.perf_counter() - start,
    }


def eps_curves(
    members: Sequence[nn.Module],
    data: ImageSet,
    radii: Sequence[float],
    device: torch.device,
    *,
    steps: int = 10,
    step_size: float | None = None,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> dict[str, list[float]]:
    """Accuracy of the members' vote under white-box FGSM and PGD at each radius.

    Both attacks target the mean of the members' logits with the members in eval mode, as in
    :func:`advhpo.objectives.evaluate`: FGSM (one gradient serves every radius) and PGD
    (:func:`advhpo.objectives.pgd`, random start, step ``step_size``). Each radius draws
    its PGD random starts from its own stream seeded with ``seed``, so the value at a radius
    does not depend on the rest of the grid and equals ``evaluate``'s ``pgd_acc`` there on the
    same images. Radius 0 is clean accuracy.

    Args:
        members: The trained networks (one for a single net).
        data: Images (uint8) and labels to attack.
        radii: L∞ radii in [0, 1] pixel units.
        device: Where to compute.
        steps: PGD iterations. Default 10.
        step_size: PGD step in pixel units (``None``: 2.5 * eps / steps). Default ``None``.
        seed: Seed of PGD's random starts. Default 0.
        progress: Called with the number of images just attacked at every radius.

    Returns:
        ``{"fgsm_acc": [...], "pgd_acc": [...]}``, one accuracy per radius, in order.
    """
    for m in members:
        m.eval()
    ensemble = MeanLogits(members).eval()
    rngs = [torch.Generator(device=device).manual_seed(seed) for _ in radii]
    correct = {"fgsm_acc": [0] * len(radii), "pgd_acc": [0] * len(radii)}
    for lo in range(0, len(data), _CHUNK):
        x = to_float_batch(data.images[lo : lo + _CHUNK], device)
        y = data.labels[lo : lo + _CHUNK].to(device)

        def hits(images: torch.Tensor, y: torch.Tensor = y) -> int:
            return int((vote(members, images)[0] == y).sum())

        for i, (eps, x_fgsm) in enumerate(fgsm_sweep(ensemble, x, y, radii)):
            x_pgd = (
                pgd(ensemble, x, y, eps, alpha=step_size, steps=steps, generator=rngs[i])
                if eps > 0
                else x
            )
            correct["fgsm_acc"][i] += hits(x_fgsm)
            correct["pgd_acc"][i] += hits(x_pgd)
        if progress is not None:
            progress(len(y))
    denom = max(len(data), 1)
    return {k: [c / denom for c in v] for k, v in correct.items()}
