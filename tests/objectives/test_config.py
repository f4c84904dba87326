"""Trial and net configs: presets, validation, serialisation."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from advhpo import ConfigError
from advhpo.objectives import (
    NetConfig,
    TrialConfig,
    count_parameters,
    eps_curve_grid,
    family_net,
    forward_flops,
    make_net,
    thesis_cifar10,
    thesis_mnist,
)


@pytest.mark.parametrize(
    ("cfg", "params"), [(thesis_mnist(), 1_199_882), (thesis_cifar10(), 2_724_938)]
)
def test_thesis_presets_have_the_thesis_parameter_counts(cfg: NetConfig, params: int) -> None:
    assert count_parameters(make_net(cfg)) == params


@pytest.mark.parametrize("dataset", ["mnist", "cifar10"])
@pytest.mark.parametrize("layers", [1, 2, 3])
def test_family_nets_map_images_to_ten_logits(dataset: str, layers: int) -> None:
    cfg = family_net(dataset, layers, dropout=0.1)
    x = torch.rand(2, cfg.in_channels, cfg.image_size, cfg.image_size)
    assert make_net(cfg)(x).shape == (2, 10)
    assert len(cfg.blocks) == layers
    assert [b[0] for b in cfg.blocks] == [32 * 2**i for i in range(layers)]


def test_too_many_blocks_for_the_image_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="below one pixel"):
        family_net("mnist", 6)


def test_forward_flops_of_the_thesis_mnist_net() -> None:
    conv1 = 26 * 26 * 32 * 1 * 9
    conv2 = 24 * 24 * 64 * 32 * 9
    dense = 9216 * 128 + 128 * 10
    assert forward_flops(thesis_mnist()) == 2 * (conv1 + conv2 + dense)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"dataset": "svhn"}, "unknown dataset"),
        ({"adv_method": "cw"}, "unknown adv_method"),
        ({"adv_eps": 1.5, "adv_method": "fgsm"}, r"adv_eps must be in \[0, 1\]"),
        ({"eval_eps": -0.1}, r"eval_eps must be in \[0, 1\]"),
        ({"eps_grid": (0.0, 2.0)}, "eps_grid"),
        ({"adv_method": "fgsm"}, "needs adv_eps > 0"),
        ({"lr": 0.0}, "lr must be a positive"),
        ({"weight_decay": float("inf")}, r"weight_decay must be in \[0.0, inf\)"),
        ({"weight_decay": -1e-4}, "weight_decay must be in"),
        ({"ensemble": 0}, "ensemble must be >= 1"),
        ({"eval_split": "train"}, "unknown eval_split"),
        ({"val_fraction": 0.5}, "val_fraction"),
        ({"val_fraction": 0.0}, "eval_split 'val' needs val_fraction > 0"),
        ({"gen_ratio_schedule": (6, 0)}, "gen_ratio_schedule must hold ratios >= 1"),
        ({"gen_ratio_schedule": (6, 8), "gen_adaptive": True}, "exclude each other"),
    ],
)
def test_bad_values_are_config_errors(changes: dict[str, object], message: str) -> None:
    kwargs: dict[str, object] = {"dataset": "mnist", "net": thesis_mnist(), **changes}
    with pytest.raises(ConfigError, match=message):
        TrialConfig(**kwargs)  # type: ignore[arg-type]


def test_a_net_for_another_dataset_is_rejected() -> None:
    with pytest.raises(ConfigError, match="built for cifar10"):
        TrialConfig(dataset="mnist", net=thesis_cifar10())


def test_config_errors_are_value_errors() -> None:
    with pytest.raises(ValueError):
        TrialConfig(dataset="mnist", net=thesis_mnist(), adv_eps=2.0)


def test_config_round_trips_through_a_dict() -> None:
    cfg = TrialConfig(
        dataset="cifar10",
        net=family_net("cifar10", 2, 0.3),
        adv_method="fgsm_rs",
        adv_eps=0.03,
        ensemble=3,
        eps_grid=(0.0, 0.01),
    )
    assert TrialConfig.from_dict(cfg.to_dict()) == cfg


def test_a_ratio_schedule_round_trips_through_json() -> None:
    cfg = TrialConfig(
        dataset="mnist",
        net=thesis_mnist(),
        adv_method="generator",
        adv_eps=0.3,
        gen_ratio_schedule=(6, 8, 12),
    )
    assert TrialConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_from_dict_gives_a_missing_field_its_default() -> None:
    data = TrialConfig(dataset="mnist", net=thesis_mnist()).to_dict()
    del data["eps_grid"], data["gen_ratio_schedule"]  # a hand-written or older config
    assert TrialConfig.from_dict(data) == TrialConfig(dataset="mnist", net=thesis_mnist())


def test_from_dict_rejects_unknown_keys() -> None:
    data = TrialConfig(dataset="mnist", net=thesis_mnist()).to_dict()
    data["colour"] = "blue"
    with pytest.raises(ConfigError, match="malformed"):
        TrialConfig.from_dict(data)


_WEIGHTED = (nn.Conv2d, nn.Linear)


def test_glorot_init_gives_zero_biases_and_weights_within_the_glorot_bound() -> None:
    torch.manual_seed(0)
    layers = [m for m in make_net(thesis_cifar10()).modules() if isinstance(m, _WEIGHTED)]
    assert len(layers) == 9  # 6 convs, 3 dense
    for layer in layers:
        fan_out, fan_in = layer.weight.shape[0], layer.weight[0].numel()
        receptive = layer.weight[0, 0].numel()
        bound = (6 / (fan_in + fan_out * receptive)) ** 0.5
        assert torch.count_nonzero(layer.bias) == 0
        assert layer.weight.abs().max() <= bound
        # Uniform on [-bound, bound]: the largest of many draws is near the bound.
        assert layer.weight.abs().max() > 0.9 * bound


def test_cifar10_family_nets_start_from_glorot_init() -> None:
    assert {family_net("cifar10", n).weight_init for n in (1, 2, 3, 4)} == {"glorot"}


def test_mnist_nets_keep_torch_init() -> None:
    # Every MNIST figure in docs/results.md was measured with PyTorch's default init.
    for cfg in (thesis_mnist(), family_net("mnist", 2)):
        assert cfg.weight_init == "torch"
        torch.manual_seed(0)
        layers = [m for m in make_net(cfg).modules() if isinstance(m, _WEIGHTED)]
        assert all(torch.count_nonzero(layer.bias) > 0 for layer in layers)


def test_an_unknown_weight_init_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown weight_init"):
        NetConfig(dataset="mnist", blocks=((8,),), weight_init="orthogonal")


def test_a_config_saved_before_weight_init_existed_loads_with_torch_init() -> None:
    data = TrialConfig(dataset="mnist", net=thesis_mnist()).to_dict()
    del data["net"]["weight_init"]
    assert TrialConfig.from_dict(data).net.weight_init == "torch"


def test_the_generator_input_is_checked_and_old_configs_load_as_image() -> None:
    with pytest.raises(ConfigError, match="unknown gen_input"):
        TrialConfig(dataset="mnist", net=thesis_mnist(), gen_input="noise")
    data = TrialConfig(dataset="mnist", net=thesis_mnist(), gen_input="gradient").to_dict()
    assert TrialConfig.from_dict(data).gen_input == "gradient"
    del data["gen_input"]  # saved before the field existed
    assert TrialConfig.from_dict(data).gen_input == "image"


@pytest.mark.parametrize(
    ("eps", "grid"),
    [
        (0.3, (0.0, 0.06, 0.12, 0.18, 0.24, 0.3, 0.36, 0.42, 0.48, 0.54, 0.6)),
        (0.5, tuple(i / 10 for i in range(11))),
        # Twice the radius would leave the pixel range, and the config refuses such radii.
        (0.6, tuple(i / 10 for i in range(11))),
        (0.0, (0.0,)),
    ],
)
def test_the_eps_curve_grid_spans_twice_the_radius_within_the_pixel_range(
    eps: float, grid: tuple[float, ...]
) -> None:
    assert eps_curve_grid(eps) == pytest.approx(grid)
    TrialConfig(dataset="mnist", net=thesis_mnist(), eval_eps=eps, eps_grid=eps_curve_grid(eps))
