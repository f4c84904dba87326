"""The frozen, typed configs of one trial: the only thing search code and training code share."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from advhpo._errors import ConfigError

Dataset = Literal["mnist", "cifar10"]
AdvMethod = Literal["none", "fgsm", "fgsm_rs", "generator"]
EvalSplit = Literal["val", "test"]

DATASETS: tuple[str, ...] = ("mnist", "cifar10")
ADV_METHODS: tuple[str, ...] = ("none", "fgsm", "fgsm_rs", "generator")
GEN_INPUTS: tuple[str, ...] = ("image", "gradient")  # what the perturbation generator sees
EVAL_SPLITS: tuple[str, ...] = ("val", "test")
# "torch": PyTorch's layer defaults (Kaiming-uniform, a=sqrt(5), weights and uniform biases);
# "glorot": Glorot-uniform weights and zero biases, Keras's defaults, which the thesis nets had.
WEIGHT_INITS: tuple[str, ...] = ("torch", "glorot")

# Per-dataset image geometry and the channel statistics the net normalises with (on the device,
# inside the model, so attacks and users work in [0, 1] pixel space).
IMAGE_SHAPE: dict[str, tuple[int, int, int]] = {"mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
CHANNEL_MEAN: dict[str, tuple[float, ...]] = {
    "mnist": (0.1307,),
    "cifar10": (0.4914, 0.4822, 0.4465),
}
CHANNEL_STD: dict[str, tuple[float, ...]] = {
    "mnist": (0.3081,),
    "cifar10": (0.2470, 0.2435, 0.2616),
}


@dataclass(frozen=True)
class NetConfig:
    """Architecture of one CNN of the family.

    Each block is conv3x3 → ReLU (→ conv3x3 → ReLU) → 2x2 max-pool → dropout; a dense head
    with dropout after every hidden layer follows.

    Attributes:
        dataset: ``"mnist"`` or ``"cifar10"``; fixes the input shape and normalisation.
        blocks: Conv widths per block, e.g. ``((32, 64),)`` is Conv32-Conv64-Pool.
        padding: Zero padding of the first and second conv of every block (pixels);
            ``(1, 1)`` keeps the size ("same"), ``(0, 0)`` shrinks it by 2 per conv ("valid").
        dense: Widths of the hidden dense layers.
        conv_dropout: Drop probability after each block. Default 0.25.
        dense_dropout: Drop probability after each hidden dense layer. Default 0.5.
        num_classes: Output classes. Default 10.
        weight_init: Initial weights of the conv and dense layers, one of
            :data:`WEIGHT_INITS`. Default ``"torch"``.
    """

    dataset: str
    blocks: tuple[tuple[int, ...], ...]
    padding: tuple[int, int] = (1, 1)
    dense: tuple[int, ...] = (128,)
    conv_dropout: float = 0.25
    dense_dropout: float = 0.5
    num_classes: int = 10
    weight_init: str = "torch"

    def __post_init__(self) -> None:
        check_choice("dataset", self.dataset, DATASETS)
        check_choice("weight_init", self.weight_init, WEIGHT_INITS)
        if not self.blocks:
            raise ConfigError("a net needs at least one conv block")
        if any(not 1 <= len(b) <= 2 for b in self.blocks):
            raise ConfigError("each conv block holds one or two convs")
        for p in (self.conv_dropout, self.dense_dropout):
            if not 0.0 <= p < 1.0:
                raise ConfigError(f"dropout must be in [0, 1), got {p}")
        if self.feature_size() < 1:
            raise ConfigError(
                f"{len(self.blocks)} blocks shrink a {self.image_size}px image below one pixel"
            )

    @property
    def in_channels(self) -> int:
        """Image channels (1 for MNIST, 3 for CIFAR-10)."""
        return IMAGE_SHAPE[self.dataset][0]

    @property
    def image_size(self) -> int:
        """Image side in pixels."""
        return IMAGE_SHAPE[self.dataset][1]

    def feature_size(self) -> int:
        """Side in pixels of the feature map entering the dense head."""
        size = self.image_size
        for block in self.blocks:
            for i in range(len(block)):
                size += 2 * self.padding[i] - 2
            size //= 2
        return size


def thesis_mnist() -> NetConfig:
    """The thesis MNIST net: Conv32-Conv64-Pool-Drop-Dense128-Drop-Dense10 (1,199,882 params)."""
    return NetConfig(dataset="mnist", blocks=((32, 64),), padding=(0, 0))


def thesis_cifar10() -> NetConfig:
    """The thesis CIFAR-10 net: 2x64, 2x128, 2x256 convs, Dense1024-512 (2,724,938 params).

    Initialised as Keras does (Glorot-uniform, zero biases): under PyTorch's default init this
    9-layer ReLU net without normalisation layers stays at chance for more than 250 SGD steps
    at lr 0.01 (docs/results.md), since each layer shrinks the signal's variance.
    """
    return NetConfig(
        dataset="cifar10",
        blocks=((64, 64), (128, 128), (256, 256)),
        padding=(1, 0),
        dense=(1024, 512),
        weight_init="glorot",
    )


PRESETS = {"thesis-mnist": thesis_mnist, "thesis-cifar10": thesis_cifar10}
PRESET_DATASET = {"thesis-mnist": "mnist", "thesis-cifar10": "cifar10"}


def family_net(dataset: str, layers: int, dropout: float = 0.25) -> NetConfig:
    """A net of the searchable family: ``layers`` blocks of two "same" convs, widths doubling.

    Args:
        dataset: ``"mnist"`` or ``"cifar10"``.
        layers: Number of conv blocks (1 to 4 on MNIST, 1 to 5 on CIFAR-10).
        dropout: Drop probability of every dropout layer. Default 0.25.

    Returns:
        The net's config: block ``i`` has two convs of ``32 * 2**i`` channels, then Dense128.
        CIFAR-10 nets start from Glorot init: from PyTorch's, 3 or more blocks stay at chance
        through the first epoch at lr 0.01, so a search would score only which trials left
        chance in time. MNIST nets keep PyTorch's init, which every MNIST figure in
        docs/results.md was measured with.
    """
    if layers < 1:
        raise ConfigError(f"layers must be >= 1, got {layers}")
    blocks = tuple((32 * 2**i, 32 * 2**i) for i in range(layers))
    return NetConfig(
        dataset=dataset,
        blocks=blocks,
        padding=(1, 1),
        dense=(128,),
        conv_dropout=dropout,
        dense_dropout=dropout,
        weight_init="glorot" if dataset == "cifar10" else "torch",
    )


@dataclass(frozen=True)
class TrialConfig:
    """Everything one training-and-evaluation run needs; built in one place per trial.

    Attributes:
        dataset: ``"mnist"`` or ``"cifar10"``.
        net: The architecture.
        lr: SGD learning rate. Default 0.01.
        momentum: SGD momentum. Default 0.9.
        nesterov: Nesterov momentum. Default False.
        weight_decay: L2 penalty coefficient. Default 0.0.
        batch_size: Images per SGD step. Default 128.
        epochs: Passes over the training images. Default 2.
        train_subset: Training images used (``None``: the whole training split).
        val_fraction: Share of the official training set held out for validation, in [0, 0.5);
            0 (train on all of it) needs ``eval_split="test"``. Default 0.1.
        adv_method: ``"none"``, ``"fgsm"`` (Goodfellow mixed loss), ``"fgsm_rs"`` (Wong
            random start) or ``"generator"`` (GAN-style perturbation generator).
        adv_eps: Training L∞ radius in [0, 1] pixel units. Default 0.0.
        gen_ratio: Generator steps per classifier step (start value when adaptive). Default 1.
        gen_adaptive: Raise the ratio while the generator's loss is above the threshold.
        gen_loss_threshold: The adaptive target for the generator's loss. Default 0.6.
        gen_max_ratio: Upper bound of the adaptive ratio. Default 12.
        gen_ratio_schedule: A stepped schedule: the ratio of epoch ``e`` (1-based) is
            ``gen_ratio_schedule[e - 1]``, later epochs keep the last value; replaces
            ``gen_ratio`` and cannot be combined with ``gen_adaptive``. Default ``()``: none.
        gen_input: What the generator sees: ``"image"``, or ``"gradient"``, the image and the
            classifier's loss gradient with respect to it (Lee et al. 2017's Generative
            Adversarial Trainer). Default ``"image"``.
        ensemble: Members trained from different seeds; prediction is their vote. Default 1.
        seed: Seed of member 0; member ``k`` uses ``seed + k``. Default 0.
        eval_eps: L∞ radius of the evaluation attacks (pixel units). Default 0.3.
        eval_split: ``"val"`` (what searches optimise) or ``"test"``. Default ``"val"``.
        eval_subset: Evaluation images used (``None``: the whole split).
        epoch_eval: Images of the evaluation split scored after every epoch (clean and FGSM
            accuracy of the vote: learning curves and early stopping; 0: none). Default 0.
        eps_grid: Radii of the accuracy-vs-eps curve (pixel units).
        pgd_steps: PGD iterations. Default 10.
        pgd_step_size: PGD step in pixel units (``None``: 2.5 * eps / steps, Madry et al.).
    """

    dataset: str
    net: NetConfig
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    batch_size: int = 128
    epochs: int = 2
    train_subset: int | None = None
    val_fraction: float = 0.1
    adv_method: str = "none"
    adv_eps: float = 0.0
    gen_ratio: int = 1
    gen_adaptive: bool = False
    gen_loss_threshold: float = 0.6
    gen_max_ratio: int = 12
    gen_ratio_schedule: tuple[int, ...] = ()
    gen_input: str = "image"
    ensemble: int = 1
    seed: int = 0
    eval_eps: float = 0.3
    eval_split: str = "val"
    eval_subset: int | None = None
    epoch_eval: int = 0
    eps_grid: tuple[float, ...] = field(default=(0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3))
    pgd_steps: int = 10
    pgd_step_size: float | None = None

    def __post_init__(self) -> None:
        check_choice("dataset", self.dataset, DATASETS)
        check_choice("adv_method", self.adv_method, ADV_METHODS)
        check_choice("eval_split", self.eval_split, EVAL_SPLITS)
        check_choice("gen_input", self.gen_input, GEN_INPUTS)
        if self.net.dataset != self.dataset:
            raise ConfigError(f"the net is built for {self.net.dataset}, not {self.dataset}")
        check_eps("adv_eps", self.adv_eps)
        check_eps("eval_eps", self.eval_eps)
        for eps in self.eps_grid:
            check_eps("eps_grid", eps)
        _check_positive("lr", self.lr)
        _check_range("momentum", self.momentum, 0.0, 1.0)
        _check_range("weight_decay", self.weight_decay, 0.0, math.inf, high_open=True)
        check_val_fraction(self.val_fraction)
        if self.eval_split == "val" and self.val_fraction == 0.0:
            raise ConfigError("eval_split 'val' needs val_fraction > 0: nothing is held out")
        for name in ("batch_size", "epochs", "ensemble", "gen_ratio", "gen_max_ratio", "pgd_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("train_subset", "eval_subset"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ConfigError(f"{name} must be >= 1, got {v}")
        if any(r < 1 for r in self.gen_ratio_schedule):
            raise ConfigError(
                f"gen_ratio_schedule must hold ratios >= 1, got {self.gen_ratio_schedule}"
            )
        if self.gen_ratio_schedule and self.gen_adaptive:
            raise ConfigError("gen_ratio_schedule and gen_adaptive exclude each other")
        if self.adv_method != "none" and self.adv_eps == 0.0:
            raise ConfigError(f"adv_method {self.adv_method!r} needs adv_eps > 0")
        if self.pgd_step_size is not None:
            _check_positive("pgd_step_size", self.pgd_step_size)
        if self.epoch_eval < 0:
            raise ConfigError(f"epoch_eval must be >= 0, got {self.epoch_eval}")

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON-ready plain data (tuples become lists)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialConfig:
        """Inverse of :meth:`to_dict`.

        Raises:
            ConfigError: A key is unknown or a value out of range.
        """
        data = dict(data)
        net = dict(data.pop("net"))
        net["blocks"] = tuple(tuple(b) for b in net["blocks"])
        net["padding"] = tuple(net["padding"])
        net["dense"] = tuple(net["dense"])
        for key in ("eps_grid", "gen_ratio_schedule"):  # absent: the field's default
            if key in data:
                data[key] = tuple(data[key])
        try:
            return cls(net=NetConfig(**net), **data)
        except TypeError as e:
            raise ConfigError(f"malformed trial config: {e}") from e


def default_eval_eps(dataset: str) -> float:
    """The thesis's attack radius for ``dataset``: 0.3 on MNIST, 0.05 on CIFAR-10."""
    return 0.3 if dataset == "mnist" else 0.05


def eps_curve_grid(eps: float) -> tuple[float, ...]:
    """Eleven radii from 0 to ``2 * eps``, the span of the thesis's accuracy-vs-eps figures,
    capped at 1 (the whole pixel range: a radius above it is no stronger); ``(0.0,)`` for 0."""
    if eps <= 0.0:
        return (0.0,)
    if 2 * eps > 1.0:
        return tuple(round(i / 10, 6) for i in range(11))
    return tuple(round(eps * i / 5, 6) for i in range(11))


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    """Raise :class:`ConfigError` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")


def check_eps(name: str, value: float) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a radius in [0, 1] pixel units."""
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name} must be in [0, 1] (pixel units), got {value}")


def check_val_fraction(value: float) -> None:
    """Raise :class:`ConfigError` unless ``value`` is in [0, 0.5): at least half stays training."""
    _check_range("val_fraction", value, 0.0, 0.5, high_open=True)


def _check_positive(name: str, value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"{name} must be a positive number, got {value}")


def _check_range(
    name: str, value: float, low: float, high: float, *, high_open: bool = False
) -> None:
    ok = low <= value < high if high_open else low <= value <= high
    if not ok:
        bracket = ")" if high_open else "]"
        raise ConfigError(f"{name} must be in [{low}, {high}{bracket}, got {value}")
