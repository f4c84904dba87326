"""``make_net(cfg)``: the CNN family, built from a few tiny modules."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from advhpo.objectives._config import CHANNEL_MEAN, CHANNEL_STD, NetConfig


class Normalize(nn.Module):
    """Standardise [0, 1] images per channel, so the model (and every attack) sees pixel space."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Dropout(nn.Module):
    """Inverted dropout with probability ``p``; identity in eval mode.

    Same semantics as :class:`torch.nn.Dropout`, with ``p`` resolved to 1/65536, but on the CPU
    the mask is cut from 16-bit slices of 64-bit random integers: one generator draw per four
    units. Per-element draws dominate a CPU mask: for one (128, 64, 12, 12) batch on a 2-core
    Xeon, ATen's ``bernoulli_`` took 8.9 ms, ``rand_like`` + compare 6.5 ms and this 2.0 ms;
    a thesis-MNIST training step went from 52.2 to 49.5 ms. CUDA keeps the fused kernel of
    ``F.dropout``.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.is_cuda:
            return F.dropout(x, self.p, training=True)
        # Dropped when its uniform int16 falls below the threshold: P = round(p * 2^16) / 2^16.
        threshold = min(round(self.p * 65536) - 32768, 32767)
        keep = (_uniform_int16_like(x) >= threshold).to(x.dtype).mul_(1.0 / (1.0 - self.p))
        return x * keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


def _uniform_int16_like(x: torch.Tensor) -> torch.Tensor:
    """Independent uniform int16s of ``x``'s shape; channels_last for 4-d ``x``.

    Feature maps are channels_last on every device here (``memory_format``), and a mask in the
    same layout keeps the compare and the product sequential. The layout is not read off ``x``
    because that query is unsupported under ``vmap`` (stacked ensembles); a mask in another
    layout is still correct, only slower.
    """
    n = x.numel()
    words = torch.randint(-(2**63), 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64, device=x.device)
    bits = words.view(torch.int16)[:n]
    if x.dim() == 4:
        batch, channels, height, width = x.shape
        return bits.view(batch, height, width, channels).permute(0, 3, 1, 2)
    return bits.view(x.shape)


class FlattenHWC(nn.Module):
    """Flatten feature maps in (H, W, C) order.

    For channels_last activations this is a free view, and the gradient flows back to the
    pooling layer in channels_last too; the usual (C, H, W) flatten copies the activations
    forward and makes max-pool's backward copy the gradient back: ~14% of a thesis-MNIST
    training step on the CPU. The order only permutes the dense layer's inputs.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1).flatten(1)


def _conv_block(
    c_in: int, widths: tuple[int, ...], padding: tuple[int, int], dropout: float
) -> nn.Sequential:
    """conv3x3 → ReLU (→ conv3x3 → ReLU) → 2x2 max-pool → dropout, computed with the last ReLU
    after the pool.

    ReLU is monotonic, so it commutes with max-pool: the outputs, the pool's choice among tied
    maxima and every gradient are bit-identical to the stated order, while the last ReLU and its
    backward touch a quarter of the activations. On a 2-core Xeon that made a thesis-MNIST
    training step 12% faster (54.7 → 48.3 ms; no change on an AMD EPYC host). The conv layers
    keep their indices in the block, so state dicts are unchanged.
    """
    layers: list[nn.Module] = []
    for i, width in enumerate(widths):
        layers.append(nn.Conv2d(c_in, width, 3, padding=padding[i]))
        if i < len(widths) - 1:
            layers.append(nn.ReLU(inplace=True))
        c_in = width
    layers += [nn.MaxPool2d(2), nn.ReLU(inplace=True), Dropout(dropout)]
    return nn.Sequential(*layers)


def make_net(cfg: NetConfig) -> nn.Sequential:
    """Build the network described by ``cfg``.

    Args:
        cfg: The architecture.

    Returns:
        A module mapping images in [0, 1], shape ``(N, C, H, W)``, to class logits ``(N, 10)``.
    """
    layers: list[nn.Module] = [Normalize(CHANNEL_MEAN[cfg.dataset], CHANNEL_STD[cfg.dataset])]
    c_in = cfg.in_channels
    for widths in cfg.blocks:
        layers.append(_conv_block(c_in, widths, cfg.padding, cfg.conv_dropout))
        c_in = widths[-1]
    layers.append(FlattenHWC())
    features = c_in * cfg.feature_size() ** 2
    for width in cfg.dense:
        layers += [nn.Linear(features, width), nn.ReLU(inplace=True), Dropout(cfg.dense_dropout)]
        features = width
    layers.append(nn.Linear(features, cfg.num_classes))
    net = nn.Sequential(*layers)
    if cfg.weight_init == "glorot":
        _glorot(net)
    return net


def make_net_for_loading(cfg: NetConfig) -> nn.Sequential:
    """:func:`make_net` without drawing from the caller's global RNG: its initial weights are
    about to be replaced by loaded ones."""
    with torch.random.fork_rng(devices=[]):
        return make_net(cfg)


def stated_order(net: nn.Sequential) -> nn.Sequential:
    """A copy of ``net`` with each conv block's last ReLU back in front of its max-pool.

    That is the order the design states and the Keras thesis nets have; ``make_net`` pools first
    (see ``_conv_block``). The copy has the same state-dict keys and values, so the two orders
    can be compared bit for bit, and a benchmark can run the net as a user would write it.

    Raises:
        ValueError: If a block's max-pool is not followed by a ReLU.
    """
    net = copy.deepcopy(net)
    for i, block in enumerate(net):
        if isinstance(block, nn.Sequential):
            layers = list(block)
            pool = next(j for j, layer in enumerate(layers) if isinstance(layer, nn.MaxPool2d))
            if not isinstance(layers[pool + 1], nn.ReLU):
                raise ValueError(f"block {i}: its max-pool is not followed by a ReLU")
            layers[pool], layers[pool + 1] = layers[pool + 1], layers[pool]
            net[i] = nn.Sequential(*layers)
    return net


def _glorot(net: nn.Module) -> None:
    for layer in net.modules():
        if isinstance(layer, nn.Conv2d | nn.Linear):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def forward_flops(cfg: NetConfig) -> int:
    """Multiply-add FLOPs (2 per MAC) of one image's forward pass through conv and dense layers.

    Used by the throughput benchmark to express img/s as a fraction of the matmul peak.
    """
    flops = 0
    size, c_in = cfg.image_size, cfg.in_channels
    for widths in cfg.blocks:
        for i, width in enumerate(widths):
            size += 2 * cfg.padding[i] - 2
            flops += 2 * size * size * width * c_in * 9
            c_in = width
        size //= 2
    features = c_in * size * size
    for width in (*cfg.dense, cfg.num_classes):
        flops += 2 * features * width
        features = width
    return flops
