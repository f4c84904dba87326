"""Training one ensemble member: SGD with momentum and the adversarial training methods."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from advhpo._errors import DivergenceError
from advhpo.objectives._attacks import fgsm, fgsm_rs
from advhpo.objectives._config import TrialConfig
from advhpo.objectives._data import ImageSet
from advhpo.objectives._device import amp_dtype, memory_format, restore_generator, restore_scaler
from advhpo.objectives._generator import PerturbationGenerator, generator_loss, input_gradient
from advhpo.objectives._net import make_net

CHECK_EVERY = 50  # steps between finiteness checks: each check syncs a GPU
_ADAPT_WINDOW = 50  # classifier steps over which the generator's loss is averaged
_GEN_LR = 1e-3  # Adam step of the perturbation generator

# Called between training steps (and evaluation batches); raises to abandon the work at once.
PollFn = Callable[[], None]


def check_finite(losses: Tensor, *, epoch: int, step: int, first_member: int, lr: float) -> None:
    """Raise :class:`DivergenceError` if any member's running loss is NaN or infinite.

    Args:
        losses: Running loss sums, one per member (a 0-d tensor for one member).
        epoch: The 1-based epoch being trained.
        step: The 0-based step just taken.
        first_member: Index of the member ``losses[0]`` belongs to.
        lr: The learning rate, quoted in the message.
    """
    for k, value in enumerate(losses.reshape(-1).tolist()):
        if not math.isfinite(value):
            raise DivergenceError(
                f"training diverged: loss became {value} in epoch {epoch}, step {step + 1} "
                f"of member {first_member + k} (lr={lr:g}); try a smaller learning rate"
            )


def resume_seed(seed: int, epoch: int) -> int:
    """A seed for an attack generator whose saved state came from another device's generator;
    the prime stride keeps it off the other members' seeds (seed + k)."""
    return seed + 1_000_003 * (epoch + 1)


def to_float_batch(images: Tensor, device: torch.device) -> Tensor:
    """uint8 images → float [0, 1] in the device's preferred layout."""
    x = images.to(device, non_blocking=True).float().div_(255.0)
    return x.contiguous(memory_format=memory_format(device))


class PrivateRng:
    """A global-RNG state of its own, swapped in around the code that draws from it.

    Dropout and weight initialisation draw from torch's global generator; giving each trainer
    its own state makes its result independent of whatever else runs in the process.

    Args:
        seed: Seed of the private state.
        device: A CUDA device also gets its own CUDA generator state.
    """

    def __init__(self, seed: int, device: torch.device) -> None:
        self._devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=self._devices):
            torch.manual_seed(seed)
            self._save()

    def _save(self) -> None:
        self.cpu_state = torch.get_rng_state()
        self.cuda_state = torch.cuda.get_rng_state(self._devices[0]) if self._devices else None

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Swap this state in, and the caller's back when done."""
        with torch.random.fork_rng(devices=self._devices):
            torch.set_rng_state(self.cpu_state)
            if self._devices and self.cuda_state is not None:
                torch.cuda.set_rng_state(self.cuda_state, self._devices[0])
            yield
            self._save()

    def state_dict(self) -> dict[str, Any]:
        """The saved states, for checkpoints."""
        return {"cpu": self.cpu_state, "cuda": self.cuda_state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; a CUDA state is kept only when training on CUDA."""
        self.cpu_state = state["cpu"]
        if self._devices and state.get("cuda") is not None:
            self.cuda_state = state["cuda"]


class MemberTrainer:
    """Trains one member epoch by epoch; its full state can be checkpointed and restored.

    Every source of randomness (initial weights, batch order, dropout, random starts) is
    private to the member and seeded with ``cfg.seed + member``, so a member's result does not
    depend on how many others are trained beside it or in which order, and the same seed gives
    the same weights on the CPU.

    Args:
        cfg: The trial's config.
        member: Index of the member in the ensemble.
        device: Where the model and batches live.
    """

    def __init__(self, cfg: TrialConfig, member: int, device: torch.device) -> None:
        self.cfg = cfg
        self.member = member
        self.device = device
        self.seed = cfg.seed + member
        self.epoch = 0
        self.gen_ratio = cfg.gen_ratio
        self.history: list[dict[str, Any]] = []
        self._gen_window: list[float] = []
        self._order_rng = torch.Generator().manual_seed(self.seed)
        self._attack_rng = torch.Generator(device=device).manual_seed(self.seed)
        self._amp = amp_dtype(device)
        self._rng = PrivateRng(self.seed, device)
        with self._rng.active():
            self.model = make_net(cfg.net).to(device).to(memory_format=memory_format(device))
            self.gen: PerturbationGenerator | None = None
            if cfg.adv_method == "generator":
                self.gen = PerturbationGenerator(
                    cfg.net.in_channels, cfg.adv_eps, gradient_input=cfg.gen_input == "gradient"
                ).to(device)
        self.opt = torch.optim.SGD(
            self.model.parameters(),
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov and cfg.momentum > 0,
            weight_decay=cfg.weight_decay,
        )
        self.gen_opt = torch.optim.Adam(self.gen.parameters(), lr=_GEN_LR) if self.gen else None
        # fp16 needs loss scaling; bf16 and fp32 do not.
        self.scaler = torch.amp.GradScaler(device.type, enabled=self._amp == torch.float16)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self._amp is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self._amp)

    def train_epoch(self, train: ImageSet, poll: PollFn | None = None) -> dict[str, Any]:
        """One pass over ``train`` (uint8 images on any device) in a fresh random order.

        Args:
            train: The training images.
            poll: Called before every step; it may raise to abandon the epoch at once, which
                leaves the member mid-epoch (not to be checkpointed). Default: none.

        Returns:
            The epoch's record: epoch number (1-based), mean loss, seconds, and for the
            generator method its final ratio and mean loss.

        Raises:
            DivergenceError: The loss became NaN or infinite.
        """
        cfg, model = self.cfg, self.model
        model.train()
        schedule = cfg.gen_ratio_schedule
        if schedule:
            # Stepped schedule: this epoch's ratio; epochs past the schedule keep the last one.
            self.gen_ratio = schedule[min(self.epoch, len(schedule) - 1)]
        n, bs = len(train), cfg.batch_size
        order = torch.randperm(n, generator=self._order_rng).to(train.images.device)
        total = torch.zeros((), device=self.device)
        gen_total, gen_count = 0.0, 0
        start = time.perf_counter()
        steps = math.ceil(n / bs)
        with self._rng.active():
            for step in range(steps):
                if poll is not None:
                    poll()
                idx = order[step * bs : (step + 1) * bs]
                x = to_float_batch(train.images.index_select(0, idx), self.device)
                y = train.labels.index_select(0, idx).to(self.device, non_blocking=True)
                grad = None
                if self.gen is not None:
                    if self.gen.gradient_input:
                        # Once per batch: the classifier stays the same through the generator's
                        # steps and up to its own.
                        with self._autocast():
                            grad = input_gradient(model, x, y)
                    gen_loss = self._generator_steps(x, y, grad)
                    gen_total += gen_loss
                    gen_count += 1
                    self._adapt_ratio(gen_loss)
                loss = self._classifier_step(x, y, grad)
                total += loss
                if (step + 1) % CHECK_EVERY == 0 or step == steps - 1:
                    check_finite(
                        total,
                        epoch=self.epoch + 1,
                        step=step,
                        first_member=self.member,
                        lr=cfg.lr,
                    )
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.epoch += 1
        record: dict[str, Any] = {
            "epoch": self.epoch,
            "loss": float(total) / steps,
            "seconds": time.perf_counter() - start,
        }
        if self.gen is not None:
            record["gen_ratio"] = self.gen_ratio
            record["gen_loss"] = gen_total / max(gen_count, 1)
        self.history.append(record)
        return record

    def _classifier_step(self, x: Tensor, y: Tensor, grad: Tensor | None = None) -> Tensor:
        cfg, model = self.cfg, self.model
        with self._autocast():
            if cfg.adv_method == "none":
                inputs, targets = x, y
            elif cfg.adv_method == "fgsm":
                # Goodfellow et al. 2014: 0.5 clean + 0.5 adversarial loss, one batched pass.
                inputs = torch.cat([x, fgsm(model, x, y, cfg.adv_eps)])
                targets = torch.cat([y, y])
            elif cfg.adv_method == "fgsm_rs":
                # Wong et al. 2020: train on FGSM from a random start only (step 1.25 eps).
                inputs = fgsm_rs(model, x, y, cfg.adv_eps, generator=self._attack_rng)
                targets = y
            else:
                assert self.gen is not None
                with torch.no_grad():
                    x_gen = self.gen(x, grad)
                inputs, targets = torch.cat([x, x_gen]), torch.cat([y, y])
            loss = F.cross_entropy(model(inputs), targets)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
        self.scaler.step(self.opt)
        self.scaler.update()
        return loss.detach().float()

    def _generator_steps(self, x: Tensor, y: Tensor, grad: Tensor | None) -> float:
        """``gen_ratio`` generator updates on this batch against the current classifier."""
        assert self.gen is not None and self.gen_opt is not None
        params = list(self.gen.parameters())
        value = torch.zeros((), device=self.device)
        for _ in range(self.gen_ratio):
            with self._autocast():
                loss = generator_loss(self.model(self.gen(x, grad)), y)
            # The generator minimises its loss (drives p_y down). Only the generator's gradients
            # are taken: the classifier's .grad must stay untouched.
            grads = torch.autograd.grad(loss, params)
            for p, g in zip(params, grads, strict=True):
                p.grad = g
            self.gen_opt.step()
            value = loss.detach()
        return float(value)

    def _adapt_ratio(self, gen_loss: float) -> None:
        """Adaptive schedule: one more generator step per window of too high generator loss.

        A window is ``_ADAPT_WINDOW`` classifier steps; its mean generator loss is compared with
        ``cfg.gen_loss_threshold``. A high generator loss means the classifier already resists
        the generator's images; giving the generator more steps keeps the game balanced (the
        paper kept it < 0.6).
        """
        cfg = self.cfg
        if not cfg.gen_adaptive:
            return
        self._gen_window.append(gen_loss)
        if len(self._gen_window) >= _ADAPT_WINDOW:
            mean = sum(self._gen_window) / len(self._gen_window)
            self._gen_window.clear()
            if mean > cfg.gen_loss_threshold and self.gen_ratio < cfg.gen_max_ratio:
                self.gen_ratio += 1

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training exactly where it stopped."""
        state: dict[str, Any] = {
            "epoch": self.epoch,
            "gen_ratio": self.gen_ratio,
            # The adaptive ratio's half-filled window: without it a resumed run would rise a
            # step later than an uninterrupted one.
            "gen_window": list(self._gen_window),
            "history": self.history,
            "model": self.model.state_dict(),
            "opt": self.opt.state_dict(),
            "scaler": self.scaler.state_dict(),
            "order_rng": self._order_rng.get_state(),
            "attack_rng": self._attack_rng.get_state(),
            "rng": self._rng.state_dict(),
        }
        if self.gen is not None and self.gen_opt is not None:
            state["gen"] = self.gen.state_dict()
            state["gen_opt"] = self.gen_opt.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (RNG states included, so training resumes exactly)."""
        self.epoch = int(state["epoch"])
        self.gen_ratio = int(state["gen_ratio"])
        # Checkpoints written before the window was saved lack it: resume with an empty one.
        self._gen_window = [float(v) for v in state.get("gen_window", [])]
        self.history = list(state["history"])
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        restore_scaler(self.scaler, state["scaler"])
        self._order_rng.set_state(state["order_rng"])  # a CPU generator on every device
        restore_generator(self._attack_rng, state["attack_rng"], resume_seed(self.seed, self.epoch))
        self._rng.load_state_dict(state["rng"])
        if self.gen is not None and self.gen_opt is not None:
            self.gen.load_state_dict(state["gen"])
            self.gen_opt.load_state_dict(state["gen_opt"])
