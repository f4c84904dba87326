"""Training the members of an ensemble: one loop per member, or all members stacked at once.

``make_ensemble_trainer`` is the one place that decides. On the CPU a plain loop is fastest:
training 5 members together with ``torch.func.vmap`` or grouped convolutions was 1.4–1.8x
slower on 2 cores, since one member already keeps the cores busy. On a GPU a small net leaves
the device idle, so the members are stacked and trained in one vmapped pass per step.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any, Literal, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from advhpo.objectives._attacks import fgsm, fgsm_rs
from advhpo.objectives._config import TrialConfig
from advhpo.objectives._data import ImageSet
from advhpo.objectives._device import amp_dtype, restore_generator, restore_scaler
from advhpo.objectives._net import make_net, make_net_for_loading
from advhpo.objectives._training import (
    CHECK_EVERY,
    MemberTrainer,
    PollFn,
    PrivateRng,
    check_finite,
    resume_seed,
    to_float_batch,
)

Strategy = Literal["loop", "stacked"]


class EnsembleTrainer(Protocol):
    """What the objective needs from an ensemble trainer, whichever strategy it uses."""

    @property
    def epoch(self) -> int:
        """Epochs completed so far."""
        ...

    def train_epoch(self, train: ImageSet, poll: PollFn | None = None) -> list[dict[str, Any]]:
        """One epoch of every member; ``poll`` is called before every step and may raise."""
        ...

    def models(self) -> list[nn.Module]: ...

    def history(self) -> list[list[dict[str, Any]]]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def ensemble_strategy(cfg: TrialConfig, device: torch.device) -> Strategy:
    """``"stacked"`` for several members on a GPU, else ``"loop"`` (see module docstring).

    The generator method keeps one generator per member and always loops.
    """
    if device.type == "cuda" and cfg.ensemble > 1 and cfg.adv_method != "generator":
        return "stacked"
    return "loop"


def restore_ensemble_trainer(
    cfg: TrialConfig, device: torch.device, state: dict[str, Any]
) -> EnsembleTrainer:
    """The trainer a checkpoint's ``state`` (its ``state_dict()``) was saved from, on ``device``.

    The checkpoint's strategy is kept, whatever ``device`` would choose: a trial stacked on a
    GPU and resumed on the CPU goes on stacked (slower there, the same members), since one
    strategy's state does not load into the other.
    """
    trainer = make_ensemble_trainer(cfg, device, strategy=state.get("strategy"))
    trainer.load_state_dict(state)
    return trainer


def make_ensemble_trainer(
    cfg: TrialConfig, device: torch.device, strategy: Strategy | None = None
) -> EnsembleTrainer:
    """A trainer for ``cfg.ensemble`` members on ``device``.

    Args:
        cfg: The trial's config.
        device: Where to train.
        strategy: Force ``"loop"`` or ``"stacked"``; default :func:`ensemble_strategy`.
    """
    strategy = strategy or ensemble_strategy(cfg, device)
    if strategy == "stacked":
        return StackedEnsemble(cfg, device)
    return LoopEnsemble(cfg, device)


class LoopEnsemble:
    """Members trained one after another, each a :class:`MemberTrainer` with its own RNGs.

    Member ``k`` gets the same weights whether it is trained alone or beside others.
    """

    def __init__(self, cfg: TrialConfig, device: torch.device) -> None:
        self.members = [MemberTrainer(cfg, k, device) for k in range(cfg.ensemble)]

    @property
    def epoch(self) -> int:
        return self.members[0].epoch

    def train_epoch(self, train: ImageSet, poll: PollFn | None = None) -> list[dict[str, Any]]:
        """Advance every member by one epoch; one record per member."""
        return [m.train_epoch(train, poll) for m in self.members]

    def models(self) -> list[nn.Module]:
        return [m.model for m in self.members]

    def history(self) -> list[list[dict[str, Any]]]:
        return [m.history for m in self.members]

    def state_dict(self) -> dict[str, Any]:
        return {"strategy": "loop", "members": [m.state_dict() for m in self.members]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for m, s in zip(self.members, state["members"], strict=True):
            m.load_state_dict(s)


class _Flat(nn.Module):
    """Presents stacked members as one model over a flat batch, for the attack functions.

    Images ``(M*B, C, H, W)`` are member-major; logits come back ``(M*B, K)``. The attacks'
    mean cross-entropy then sums the members' own losses (scaled), so every member's images get
    the gradient sign of that member alone.
    """

    def __init__(self, owner: StackedEnsemble) -> None:
        super().__init__()
        self._owner = [owner]  # a list: not registered as a submodule

    def forward(self, x: Tensor) -> Tensor:
        owner = self._owner[0]
        logits: Tensor = owner.forward_stacked(x.view(owner.size, -1, *x.shape[1:]))
        return logits.flatten(0, 1)


class StackedEnsemble:
    """All members trained at once: parameters stacked along a member axis, one vmapped pass.

    Members start from the same weights as :class:`LoopEnsemble`'s (seed ``seed + k``) and
    draw their own batch order, but dropout and random starts come from one shared stream, so
    results match the loop's only in distribution, not bit for bit.
    """

    def __init__(self, cfg: TrialConfig, device: torch.device) -> None:
        self.cfg, self.device, self.size = cfg, device, cfg.ensemble
        nets = []
        for k in range(cfg.ensemble):
            with PrivateRng(cfg.seed + k, torch.device("cpu")).active():
                nets.append(make_net(cfg.net))
        params, buffers = stack_module_state(nets)  # type: ignore[arg-type]
        self.params = {n: p.detach().to(device).requires_grad_() for n, p in params.items()}
        self.buffers = {n: b.to(device) for n, b in buffers.items()}
        self._template = copy.deepcopy(nets[0]).to("meta")
        self.opt = torch.optim.SGD(
            list(self.params.values()),
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov and cfg.momentum > 0,
            weight_decay=cfg.weight_decay,
        )
        self._amp = amp_dtype(device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self._amp == torch.float16)
        self._orders = [torch.Generator().manual_seed(cfg.seed + k) for k in range(self.size)]
        self._attack_rng = torch.Generator(device=device).manual_seed(cfg.seed)
        self._rng = PrivateRng(cfg.seed, device)
        self._flat = _Flat(self)
        self.epoch = 0
        self._history: list[list[dict[str, Any]]] = [[] for _ in range(self.size)]

    def forward_stacked(self, x: Tensor) -> Tensor:
        """Logits ``(M, B, K)``: member ``m`` applied to ``x[m]``, ``x`` being (M, B, C, H, W)."""

        def one(params: dict[str, Tensor], buffers: dict[str, Tensor], xb: Tensor) -> Tensor:
            out: Tensor = functional_call(self._template, (params, buffers), (xb,))
            return out

        result: Tensor = vmap(one, randomness="different")(self.params, self.buffers, x)
        return result

    def train_epoch(self, train: ImageSet, poll: PollFn | None = None) -> list[dict[str, Any]]:
        """One epoch for every member, each over its own random order of ``train``;
        ``poll`` is called before every step and may raise to abandon the epoch."""
        m, bs, n = self.size, self.cfg.batch_size, len(train)
        orders = torch.stack([torch.randperm(n, generator=g) for g in self._orders])
        orders = orders.to(train.images.device)
        totals = torch.zeros(m, device=self.device)
        steps = math.ceil(n / bs)
        self._template.train()
        start = time.perf_counter()
        with self._rng.active():
            for step in range(steps):
                if poll is not None:
                    poll()
                idx = orders[:, step * bs : (step + 1) * bs].reshape(-1)
                x = to_float_batch(train.images.index_select(0, idx), self.device)
                y = train.labels.index_select(0, idx).to(self.device, non_blocking=True)
                totals += self._step(x.contiguous(), y)
                if (step + 1) % CHECK_EVERY == 0 or step == steps - 1:
                    check_finite(
                        totals, epoch=self.epoch + 1, step=step, first_member=0, lr=self.cfg.lr
                    )
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.epoch += 1
        seconds = time.perf_counter() - start
        records = [
            {"epoch": self.epoch, "loss": float(t) / steps, "seconds": seconds} for t in totals
        ]
        for h, r in zip(self._history, records, strict=True):
            h.append(r)
        return records

    def _step(self, x: Tensor, y: Tensor) -> Tensor:
        """One SGD step of every member on its own slice of the member-major batch."""
        cfg, m, flat = self.cfg, self.size, self._flat
        per_member = (m, -1, *x.shape[1:])
        autocast = torch.autocast(
            self.device.type, dtype=self._amp or torch.float32, enabled=self._amp is not None
        )
        with autocast:
            if cfg.adv_method == "fgsm":
                x_adv = fgsm(flat, x, y, cfg.adv_eps)
                inputs = torch.cat([x.view(per_member), x_adv.view(per_member)], 1).flatten(0, 1)
                targets = torch.cat([y.view(m, -1)] * 2, 1).flatten()
            elif cfg.adv_method == "fgsm_rs":
                inputs = fgsm_rs(flat, x, y, cfg.adv_eps, generator=self._attack_rng)
                targets = y
            else:
                inputs, targets = x, y
            losses = F.cross_entropy(flat(inputs), targets, reduction="none")
            member_losses = losses.float().view(m, -1).mean(1)
        # Summing the members' mean losses gives each member exactly its own gradient.
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(member_losses.sum()).backward()  # type: ignore[no-untyped-call]
        self.scaler.step(self.opt)
        self.scaler.update()
        return member_losses.detach()

    def models(self) -> list[nn.Module]:
        """The members as separate networks (copies of the current weights)."""
        nets: list[nn.Module] = []
        for k in range(self.size):
            net = make_net_for_loading(self.cfg.net).to(self.device)
            net.load_state_dict({n: p[k].detach() for n, p in self.params.items()})
            nets.append(net)
        return nets

    def history(self) -> list[list[dict[str, Any]]]:
        return self._history

    def state_dict(self) -> dict[str, Any]:
        return {
            "strategy": "stacked",
            "epoch": self.epoch,
            "history": self._history,
            "params": {n: p.detach() for n, p in self.params.items()},
            "opt": self.opt.state_dict(),
            "scaler": self.scaler.state_dict(),
            "orders": [g.get_state() for g in self._orders],
            "attack_rng": self._attack_rng.get_state(),
            "rng": self._rng.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self._history = [list(h) for h in state["history"]]
        with torch.no_grad():
            for n, p in self.params.items():
                p.copy_(state["params"][n])
        self.opt.load_state_dict(state["opt"])
        restore_scaler(self.scaler, state["scaler"])
        for g, s in zip(self._orders, state["orders"], strict=True):
            g.set_state(s)
        restore_generator(
            self._attack_rng, state["attack_rng"], resume_seed(self.cfg.seed, self.epoch)
        )
        self._rng.load_state_dict(state["rng"])
