"""Tests of the L∞ attacks; torchattacks is the independent reference implementation."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
import torchattacks
from torch import Tensor, nn

from advhpo._errors import ConfigError
from advhpo.objectives import NetConfig, make_net, thesis_mnist
from advhpo.objectives._attacks import fgsm, fgsm_rs, fgsm_sweep, pgd

Attack = Callable[[nn.Module, Tensor, Tensor, float], Tensor]

EPSILONS = (0.01, 8 / 255, 0.1, 0.3)


def _tiny(dataset: str) -> NetConfig:
    return NetConfig(dataset=dataset, blocks=((4,),), dense=(16,))


def _net(cfg: NetConfig, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return make_net(cfg).eval()


def _batch(cfg: NetConfig, n: int = 8, seed: int = 1) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, cfg.in_channels, cfg.image_size, cfg.image_size, generator=g)
    y = torch.randint(0, cfg.num_classes, (n,), generator=g)
    return x, y


def _fgsm_rs_seeded(model: nn.Module, x: Tensor, y: Tensor, eps: float) -> Tensor:
    return fgsm_rs(model, x, y, eps, generator=torch.Generator().manual_seed(123))


def _pgd3(model: nn.Module, x: Tensor, y: Tensor, eps: float) -> Tensor:
    return pgd(model, x, y, eps, steps=3, generator=torch.Generator().manual_seed(123))


def _pgd3_no_rs(model: nn.Module, x: Tensor, y: Tensor, eps: float) -> Tensor:
    return pgd(model, x, y, eps, steps=3, random_start=False)


ATTACKS: dict[str, Attack] = {"fgsm": fgsm, "fgsm_rs": _fgsm_rs_seeded, "pgd": _pgd3}
# Attacks whose output depends only on their inputs (no random numbers).
DETERMINISTIC: dict[str, Attack] = {"fgsm": fgsm, "pgd_no_rs": _pgd3_no_rs}


class Spy(nn.Module):
    """Wraps a net; counts forward passes and records the mode each one ran in."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.modes: list[bool] = []

    def forward(self, x: Tensor) -> Tensor:
        self.modes.append(self.training)
        out: Tensor = self.net(x)
        return out


# --- torchattacks equivalence ------------------------------------------------------------------


@pytest.mark.parametrize("eps", EPSILONS)
@pytest.mark.parametrize("cfg", [_tiny("mnist"), _tiny("cifar10")], ids=["mnist", "cifar10"])
def test_fgsm_equals_torchattacks(cfg: NetConfig, eps: float) -> None:
    model = _net(cfg)
    x, y = _batch(cfg)
    expected = torchattacks.FGSM(model, eps=eps)(x, y)
    assert torch.equal(fgsm(model, x, y, eps), expected)


def test_fgsm_equals_torchattacks_on_thesis_mnist_net() -> None:
    cfg = thesis_mnist()
    model = _net(cfg)
    x, y = _batch(cfg, n=4)
    expected = torchattacks.FGSM(model, eps=0.3)(x, y)
    assert torch.equal(fgsm(model, x, y, 0.3), expected)


@pytest.mark.parametrize("steps", [1, 2, 5])
@pytest.mark.parametrize("eps", [8 / 255, 0.3])
def test_pgd_without_random_start_equals_torchattacks(eps: float, steps: int) -> None:
    cfg = _tiny("mnist")
    model = _net(cfg)
    x, y = _batch(cfg)
    alpha = 2.5 * eps / steps  # our default; torchattacks' default (2/255) differs
    ref = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=False)
    assert torch.equal(pgd(model, x, y, eps, steps=steps, random_start=False), ref(x, y))


def test_pgd_explicit_alpha_equals_torchattacks() -> None:
    cfg = _tiny("cifar10")
    model = _net(cfg)
    x, y = _batch(cfg)
    ref = torchattacks.PGD(model, eps=8 / 255, alpha=2 / 255, steps=4, random_start=False)
    out = pgd(model, x, y, 8 / 255, alpha=2 / 255, steps=4, random_start=False)
    assert torch.equal(out, ref(x, y))


def test_pgd_random_start_equals_torchattacks_from_same_global_seed() -> None:
    # Without a generator both draw U(-eps, eps) from torch's global generator the same way.
    cfg = _tiny("mnist")
    model = _net(cfg)
    x, y = _batch(cfg)
    eps, steps = 0.1, 3
    torch.manual_seed(42)
    expected = torchattacks.PGD(model, eps=eps, alpha=2.5 * eps / steps, steps=steps)(x, y)
    torch.manual_seed(42)
    assert torch.equal(pgd(model, x, y, eps, steps=steps), expected)


@pytest.mark.parametrize("eps", [8 / 255, 0.3])
def test_fgsm_rs_equals_torchattacks_ffgsm_from_same_global_seed(eps: float) -> None:
    # torchattacks.FFGSM draws its start as torch.randn_like(x).uniform_(-eps, eps): the randn
    # values are overwritten but consume the global generator, so burn the same draw first.
    cfg = _tiny("mnist")
    model = _net(cfg)
    x, y = _batch(cfg)
    torch.manual_seed(42)
    expected = torchattacks.FFGSM(model, eps=eps, alpha=1.25 * eps)(x, y)
    torch.manual_seed(42)
    torch.randn_like(x)
    assert torch.equal(fgsm_rs(model, x, y, eps), expected)  # default alpha = 1.25 * eps


# --- properties of all attacks -----------------------------------------------------------------


@pytest.mark.parametrize("eps", [*EPSILONS, 1.0])
@pytest.mark.parametrize("name", ATTACKS)
def test_output_in_range_and_within_budget(name: str, eps: float) -> None:
    cfg = _tiny("mnist")
    model = _net(cfg)
    x, y = _batch(cfg)
    x[0] = 0.0  # pixels on the box boundary, where clamping matters
    x[1] = 1.0
    out = ATTACKS[name](model, x, y, eps)
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert (out - x).abs().max() <= eps + 1e-6
    assert not torch.equal(out, x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", ATTACKS)
def test_shape_dtype_preserved_and_output_detached(name: str, dtype: torch.dtype) -> None:
    cfg = _tiny("cifar10")
    model = _net(cfg).to(dtype)
    x, y = _batch(cfg, n=5)
    x = x.to(dtype).requires_grad_(True)
    before = x.detach().clone()
    out = ATTACKS[name](model, x, y, 0.1)
    assert out.shape == x.shape
    assert out.dtype == dtype
    assert out.device == x.device
    assert not out.requires_grad
    assert out.grad_fn is None
    assert torch.equal(x.detach(), before)  # input untouched
    assert x.grad is None


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("name", ATTACKS)
def test_model_mode_and_parameter_grads_untouched(name: str, training: bool) -> None:
    cfg = _tiny("mnist")
    model = Spy(_net(cfg)).train(training)
    x, y = _batch(cfg)
    ATTACKS[name](model, x, y, 0.1)
    assert model.training is training
    assert model.modes and all(mode is training for mode in model.modes)  # ran in caller's mode
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize(("name", "expected_passes"), [("fgsm", 1), ("fgsm_rs", 1), ("pgd", 3)])
def test_one_forward_pass_per_gradient_step(name: str, expected_passes: int) -> None:
    cfg = _tiny("mnist")
    model = Spy(_net(cfg))
    x, y = _batch(cfg)
    ATTACKS[name](model, x, y, 0.1)
    assert len(model.modes) == expected_passes


@pytest.mark.parametrize("name", [*DETERMINISTIC, "fgsm_rs"])
def test_works_inside_outer_no_grad(name: str) -> None:
    attack = {**DETERMINISTIC, "fgsm_rs": _fgsm_rs_seeded}[name]
    cfg = _tiny("mnist")
    model = _net(cfg)
    x, y = _batch(cfg)
    expected = attack(model, x, y, 0.1)
    with torch.no_grad():
        out = attack(model, x, y, 0.1)
    assert torch.equal(out, expected)
    assert not torch.equal(out, x)


@pytest.mark.parametrize("name", ATTACKS)
def test_eps_zero_is_identity_without_forward_pass(name: str) -> None:
    cfg = _tiny("mnist")
    model = Spy(_net(cfg))
    x, y = _batch(cfg)
    out = ATTACKS[name](model, x, y, 0.0)
    assert torch.equal(out, x)
    assert out.data_ptr() != x.data_ptr()  # a copy, not the caller's tensor
    assert model.modes == []


@pytest.mark.parametrize("eps", [-0.01, 1.01, 8.0, math.nan, math.inf])
@pytest.mark.parametrize("name", ATTACKS)
def test_eps_outside_unit_interval_raises(name: str, eps: float) -> None:
    cfg = _tiny("mnist")
    model = _net(cfg)
    x, y = _batch(cfg, n=2)
    with pytest.raises(ValueError, match="eps"):
        ATTACKS[name](model, x, y, eps)
    with pytest.raises(ConfigError):
        ATTACKS[name](model, x, y, eps)


@pytest.mark.parametrize("steps", [0, -1])
def test_pgd_needs_at_least_one_step(steps: int) -> None:
    cfg = _tiny("mnist")
    x, y = _batch(cfg, n=2)
    with pytest.raises(ConfigError, match="steps"):
        pgd(_net(cfg), x, y, 0.1, steps=steps)


@pytest.mark.parametrize("alpha", [-0.1, math.nan, math.inf])
def test_bad_step_size_raises(alpha: float) -> None:
    cfg = _tiny("mnist")
    model = _net(cfg)
    x, y = _batch(cfg, n=2)
    with pytest.raises(ConfigError, match="alpha"):
        fgsm_rs(model, x, y, 0.1, alpha=alpha)
    with pytest.raises(ConfigError, match="alpha"):
        pgd(model, x, y, 0.1, alpha=alpha)


# --- randomness --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["fgsm_rs", "pgd"])
def test_random_start_reproducible_with_generator(name: str) -> None:
    attack = {"fgsm_rs": fgsm_rs, "pgd": pgd}[name]
    cfg = _tiny("mnist")
    model = _net(cfg)
    x, y = _batch(cfg)

    def run(seed: int) -> Tensor:
        out: Tensor = attack(model, x, y, 0.1, generator=torch.Generator().manual_seed(seed))
        return out

    torch.manual_seed(0)
    first = run(7)
    torch.manual_seed(1)  # the global generator must not matter
    assert torch.equal(run(7), first)
    assert not torch.equal(run(8), first)


def test_fgsm_rs_differs_from_fgsm() -> None:
    cfg = _tiny("mnist")
    model = _net(cfg)
    x, y = _batch(cfg)
    assert not torch.equal(_fgsm_rs_seeded(model, x, y, 0.1), fgsm(model, x, y, 0.1))


def test_pgd_random_start_differs_from_deterministic_start() -> None:
    cfg = _tiny("mnist")
    model = _net(cfg)
    x, y = _batch(cfg)
    with_rs = pgd(model, x, y, 0.1, steps=3, generator=torch.Generator().manual_seed(0))
    without = pgd(model, x, y, 0.1, steps=3, random_start=False)
    assert not torch.equal(with_rs, without)


# --- the attacks actually attack ---------------------------------------------------------------


def _losses(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    with torch.no_grad():
        return F.cross_entropy(model(x), y, reduction="none")


@pytest.mark.parametrize("eps", [0.03, 0.1])
def test_attacks_raise_the_loss_of_a_random_net(eps: float) -> None:
    cfg = _tiny("cifar10")
    model = _net(cfg, seed=3)
    x, y = _batch(cfg, n=16, seed=4)
    clean = _losses(model, x, y)
    signs = torch.randint(0, 2, x.shape, generator=torch.Generator().manual_seed(5)) * 2.0 - 1.0
    noise = _losses(model, (x + eps * signs).clamp(0, 1), y)  # same L∞ size, random direction
    loss_fgsm = _losses(model, fgsm(model, x, y, eps), y)
    loss_rs = _losses(model, _fgsm_rs_seeded(model, x, y, eps), y)
    loss_pgd = _losses(model, pgd(model, x, y, eps, generator=torch.Generator().manual_seed(6)), y)

    # Every sample's loss goes up, and by far more than under random noise of the same size.
    assert bool((loss_fgsm > clean).all())
    assert bool((loss_rs > clean).all())
    assert bool((loss_pgd > clean).all())
    gain_noise = (noise - clean).abs().mean()
    assert (loss_fgsm - clean).mean() > 10 * gain_noise
    # Ten projected steps find at least what one step finds.
    assert loss_pgd.mean() >= loss_fgsm.mean()


def test_fgsm_sweep_matches_torchattacks_at_every_radius_with_one_gradient() -> None:
    cfg = _tiny("mnist")
    model = Spy(_net(cfg))
    x, y = _batch(cfg)
    radii = [0.0, *EPSILONS]
    swept = dict(fgsm_sweep(model, x, y, radii))
    assert len(model.modes) == 1  # one forward (and backward) pass for all radii
    assert list(swept) == radii
    assert torch.equal(swept[0.0], x)
    for eps in EPSILONS:
        assert torch.equal(swept[eps], torchattacks.FGSM(model.net, eps=eps)(x, y))


def test_fgsm_sweep_checks_every_radius_before_attacking() -> None:
    cfg = _tiny("mnist")
    model = Spy(_net(cfg))
    x, y = _batch(cfg)
    with pytest.raises(ConfigError):
        list(fgsm_sweep(model, x, y, [0.1, 1.5]))
    assert model.modes == []
