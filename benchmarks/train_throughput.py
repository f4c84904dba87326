"""CPU training throughput of advhpo's training path against the loops a user would write.

What is measured, on the thesis MNIST net (``make_net(thesis_mnist())``), fp32, CPU, SGD
(lr 0.01, momentum 0.9), batch 128, no adversarial training, the same N real MNIST training
images per contender, and a warm-up of a few steps (on the same model) excluded from timing:

* ``ours``: ``MemberTrainer(cfg, 0, cpu).train_epoch(splits.train.head(N))`` after
  ``tune_cpu_allocator()`` (glibc mallopt; process-wide, as ``run_trial`` does it). img/s is
  N / the epoch record's seconds.
* ``plain (workers=0|1)``: the loop of PyTorch's MNIST example: ``torchvision.datasets.MNIST``
  with ``Compose([ToTensor(), Normalize((0.1307,), (0.3081,))])`` through
  ``DataLoader(batch_size=128, shuffle=True, num_workers=0 or 1)`` on a ``Subset`` of N images.
  The model is ``make_net`` with its in-model ``Normalize`` replaced by ``nn.Identity`` and
  advhpo's CPU dropout / HWC flatten by the stock ``nn.Dropout`` / ``nn.Flatten``, and each
  block's last ReLU in front of its max-pool as the Keras net has it (ours pools first: the
  same function and gradients, less memory traffic). Every image is normalised exactly once
  in both paths (per image in the transform here, per batch inside the net in ours). The
  timed epoch includes DataLoader worker start-up, as a user's does.
* ``tensordataset``: the whole training set as one normalised float tensor in memory,
  ``TensorDataset`` + ``DataLoader(batch_size=128, shuffle=True)``, the same model as ``plain``.
* ``peak``: best fp32 ``torch.mm`` GFLOP/s (2048x2048, and 4096x4096 unless ``--quick``) with
  torch's default thread count; ours is reported as a fraction of it.
* ``ensemble``: wall time of one epoch of ``make_ensemble_trainer`` (the objective's own entry
  point) over 5 fresh members vs the mean epoch of the same 5 members each trained alone
  (``MemberTrainer(cfg, k)``), all in the same process on the same N images.

Each contender runs in its own fresh interpreter (``sys.executable`` + a hidden
``--contender NAME`` mode printing one JSON line), so allocator settings, oneDNN primitive
caches and heap state cannot leak from one contender into the next. Seeds are fixed (the plain
models start from the same weights as ours); thread counts are torch's defaults.

Run from the repo root::

    python benchmarks/train_throughput.py [--data-dir DIR] [--images N] [--quick] [--json]
                                          [--rounds R]

``--data-dir`` defaults to ``$ADVHPO_DATA_DIR`` (then advhpo's cache dir) and must hold
``MNIST/raw/`` (``.gz`` or uncompressed IDX files); nothing is downloaded. The default 12,800
images per contender take a few minutes on 2 cores; ``--quick`` (2,560) is a smoke test.
``--rounds R`` repeats every contender R times, round-robin, and keeps each one's fastest run.
Numbers from a loaded machine are distorted: the load average is printed for that reason, and so
is each contender's CPU steal (Linux ``/proc/stat``: time the hypervisor gave these virtual
cores to other guests), which no load average inside the guest shows.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from advhpo.objectives import (
    MemberTrainer,
    TrialConfig,
    forward_flops,
    load_raw,
    load_splits,
    make_ensemble_trainer,
    make_net,
    resolve_data_dir,
    thesis_mnist,
)
from advhpo.objectives._device import tune_cpu_allocator
from advhpo.objectives._net import Dropout, FlattenHWC, stated_order

BATCH = 128
LR = 0.01
MOMENTUM = 0.9
SEED = 0
ENSEMBLE = 5
DEFAULT_IMAGES = 12_800
QUICK_IMAGES = 2_560
WARMUP_STEPS = 5
# The PyTorch MNIST example's normalisation constants (the same ones advhpo's net uses).
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
# ours trains on the training split left after advhpo's fixed 10% validation hold-out.
MAX_IMAGES = 54_000
# A 1-minute load average above this before the run means others compete for the cores.
BUSY_LOAD = 0.5
# CPU steal above this share of a run's CPU time means the host's other guests slowed it down.
BUSY_STEAL = 0.02
MNIST_STEMS = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

# Run order; the ensemble comes last because it is by far the longest.
CONTENDERS = ("peak", "plain-w0", "plain-w1", "tensordataset", "ours", "ensemble")

# (label, target, higher is better)
TARGETS: dict[str, tuple[str, float, bool]] = {
    "ours_over_plain": ("ours / plain (best)", 1.5, True),
    "ours_over_tensordataset": ("ours / tensordataset", 1.2, True),
    "ours_fraction_of_peak": ("ours / matmul peak", 0.5, True),
    "ensemble5_over_one": (f"ensemble{ENSEMBLE} / one member", 5.2, False),
}


def _log(msg: str) -> None:
    # Progress goes to stderr so that --json output on stdout stays one clean object.
    print(f"[train_throughput] {msg}", file=sys.stderr, flush=True)


# -- contenders (each runs in its own subprocess) --------------------------------------------


def _plain_model() -> nn.Sequential:
    """The thesis net as a user writes it: conv → ReLU → conv → ReLU → max-pool → ``nn.Dropout``,
    ``nn.Flatten``, no Normalize layer.

    It is ``make_net`` with advhpo's CPU-specific modules swapped for the stock ones (the input
    pipeline normalises instead of the net) and each block's last ReLU moved back in front of
    its max-pool; the parameters have the same values, so ours and the plain loops start from
    identical weights.
    """
    # ours seeds member 0's init with manual_seed(cfg.seed) before make_net.
    torch.manual_seed(SEED)
    model = make_net(thesis_mnist())
    model[0] = nn.Identity()
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, Dropout):
                setattr(parent, name, nn.Dropout(child.p))
            elif isinstance(child, FlattenHWC):
                setattr(parent, name, nn.Flatten())
    return stated_order(model)


def _run_loader(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    max_steps: int | None = None,
) -> tuple[int, float]:
    """The training loop of PyTorch's MNIST example; returns (images seen, seconds)."""
    model.train()
    seen = 0
    start = time.perf_counter()
    for step, (x, y) in enumerate(loader):
        if max_steps is not None and step >= max_steps:
            break
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        seen += len(y)
    return seen, time.perf_counter() - start


def _time_loader_contender(
    make_loader: Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]], warmup: int
) -> dict[str, Any]:
    model = _plain_model()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    _run_loader(model, opt, make_loader(), max_steps=warmup)
    # A fresh loader: the timed epoch pays for its own shuffle and worker start-up.
    seen, seconds = _run_loader(model, opt, make_loader())
    return {"images": seen, "seconds": seconds}


def _torchvision_root(data_dir: Path, tmp: Path) -> Path:
    """A throwaway torchvision root whose MNIST/raw links to the (read-only) real files.

    With the ``.gz`` files present and their MD5s matching, ``MNIST(download=True)`` only
    gunzips them next to the links, so this works offline and never writes into ``data_dir``.
    """
    src, dst = data_dir / "MNIST" / "raw", tmp / "MNIST" / "raw"
    dst.mkdir(parents=True)
    linked = 0
    for stem in MNIST_STEMS:
        for name in (stem, stem + ".gz"):
            if (src / name).is_file():
                (dst / name).symlink_to((src / name).resolve())
                linked += 1
    if not linked:
        raise SystemExit(f"no MNIST IDX files in {src}")
    return tmp


def _contender_plain(data_dir: Path, n: int, warmup: int, workers: int) -> dict[str, Any]:
    import torchvision
    from torch.utils.data import DataLoader, Subset
    from torchvision import transforms

    transform = transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize((MNIST_MEAN,), (MNIST_STD,))]
    )
    with tempfile.TemporaryDirectory(prefix="advhpo-bench-") as tmp:
        root = _torchvision_root(data_dir, Path(tmp))
        # torchvision prints "Extracting ..." on stdout, which carries our JSON line.
        with contextlib.redirect_stdout(sys.stderr):
            dataset = torchvision.datasets.MNIST(
                str(root), train=True, download=True, transform=transform
            )
        subset = Subset(dataset, range(n))

        def make_loader() -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
            return DataLoader(subset, batch_size=BATCH, shuffle=True, num_workers=workers)

        return {**_time_loader_contender(make_loader, warmup), "num_workers": workers}


def _contender_tensordataset(data_dir: Path, n: int, warmup: int) -> dict[str, Any]:
    from torch.utils.data import DataLoader, TensorDataset

    train, _ = load_raw("mnist", data_dir, offline=True)
    # The whole official training set, float and normalised up front, as such a user would.
    x = train.images.float().div_(255.0).sub_(MNIST_MEAN).div_(MNIST_STD)
    dataset = TensorDataset(x[:n], train.labels[:n])

    def make_loader() -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        return DataLoader(dataset, batch_size=BATCH, shuffle=True)

    return _time_loader_contender(make_loader, warmup)


def _ours_config() -> TrialConfig:
    return TrialConfig(
        dataset="mnist",
        net=thesis_mnist(),
        lr=LR,
        momentum=MOMENTUM,
        epochs=1,
        batch_size=BATCH,
        seed=SEED,
    )


def _contender_ours(data_dir: Path, n: int, warmup: int) -> dict[str, Any]:
    splits = load_splits("mnist", data_dir, offline=True)
    # run_trial calls this before training on the CPU; it is process-wide, which is why every
    # contender has a process of its own.
    tuned = tune_cpu_allocator()
    device = torch.device("cpu")
    trainer = MemberTrainer(_ours_config(), 0, device)
    trainer.train_epoch(splits.train.head(warmup * BATCH))
    record = trainer.train_epoch(splits.train.head(n))
    return {"images": n, "seconds": record["seconds"], "allocator_tuned": tuned}


def _contender_ensemble(data_dir: Path, n: int, warmup: int) -> dict[str, Any]:
    splits = load_splits("mnist", data_dir, offline=True)
    tuned = tune_cpu_allocator()
    device, cfg, data = torch.device("cpu"), _ours_config(), splits.train.head(n)
    five_cfg = dataclasses.replace(cfg, ensemble=ENSEMBLE)
    # Warm the process (oneDNN primitives, heap) with a member that is not timed, so every
    # timed member below starts equally fresh.
    MemberTrainer(cfg, ENSEMBLE, device).train_epoch(splits.train.head(warmup * BATCH))
    # The baseline is the ensemble's own members, each trained alone (member k gets the same
    # weights alone or beside others), so both sides sum the same five member-epochs: a single
    # member's time would be one noisy sample set against a sum of five.
    alone = []
    for k in range(ENSEMBLE):
        member = MemberTrainer(five_cfg, k, device)
        start = time.perf_counter()
        member.train_epoch(data)
        alone.append(time.perf_counter() - start)
        del member
    five = make_ensemble_trainer(five_cfg, device)
    start = time.perf_counter()
    five.train_epoch(data)
    all_seconds = time.perf_counter() - start
    return {
        "images": n,
        "one_seconds": sum(alone) / ENSEMBLE,
        "alone_seconds": alone,
        "ensemble_seconds": all_seconds,
        "members": ENSEMBLE,
        "allocator_tuned": tuned,
    }


def _contender_peak(quick: bool) -> dict[str, Any]:
    torch.manual_seed(SEED)
    sizes = ((2048, 5),) if quick else ((2048, 10), (4096, 3))
    best, best_size = 0.0, 0
    for size, reps in sizes:
        a, b = torch.randn(size, size), torch.randn(size, size)
        out = torch.empty(size, size)
        torch.mm(a, b, out=out)  # warm-up: MKL thread pool and page faults on `out`
        for _ in range(reps):
            start = time.perf_counter()
            torch.mm(a, b, out=out)
            gflops = 2 * size**3 / (time.perf_counter() - start) / 1e9
            if gflops > best:
                best, best_size = gflops, size
    return {"gflops": best, "size": best_size}


def _run_contender(name: str, data_dir: Path, n: int, warmup: int, quick: bool) -> dict[str, Any]:
    torch.manual_seed(SEED)
    if name == "peak":
        result = _contender_peak(quick)
    elif name.startswith("plain-w"):
        result = _contender_plain(data_dir, n, warmup, int(name.removeprefix("plain-w")))
    elif name == "tensordataset":
        result = _contender_tensordataset(data_dir, n, warmup)
    elif name == "ours":
        result = _contender_ours(data_dir, n, warmup)
    elif name == "ensemble":
        result = _contender_ensemble(data_dir, n, warmup)
    else:
        raise SystemExit(f"unknown contender {name!r}; choose one of {', '.join(CONTENDERS)}")
    return {"contender": name, "threads": torch.get_num_threads(), **result}


# -- driver ----------------------------------------------------------------------------------


def _cpu_times() -> tuple[int, int] | None:
    """``(steal, total)`` jiffies of all CPUs from ``/proc/stat``; None where it is unreadable."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    # cpu user nice system idle iowait irq softirq steal guest guest_nice: guest time is
    # already counted in user, so the total stops at steal.
    if len(fields) < 9 or fields[0] != "cpu":
        return None
    ticks = [int(v) for v in fields[1:9]]
    return ticks[7], sum(ticks)


def steal_fraction(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """Share of the CPU time between two :func:`_cpu_times` readings that was stolen."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


def _spawn(name: str, data_dir: Path, n: int, warmup: int, quick: bool) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--contender",
        name,
        "--data-dir",
        str(data_dir),
        "--images",
        str(n),
        "--warmup",
        str(warmup),
    ]
    if quick:
        cmd.append("--quick")
    # stderr is inherited, so a contender's warnings and tracebacks reach the terminal.
    before = _cpu_times()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
    steal = steal_fraction(before, _cpu_times())
    if proc.returncode != 0:
        raise SystemExit(f"contender {name} failed with exit code {proc.returncode}")
    for line in reversed(proc.stdout.splitlines()):
        with contextlib.suppress(json.JSONDecodeError):
            parsed = json.loads(line)
            if isinstance(parsed, dict):
                # Over the whole child process, start-up included, not the timed epoch alone.
                return {**parsed, "steal_fraction": steal}
    raise SystemExit(f"contender {name} printed no JSON result:\n{proc.stdout}")


def best_run(name: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    """A contender's fastest run over the rounds (outside load only ever slows a run down).

    For the ensemble, the round whose five members trained alone were fastest gives the
    one-member time, and the fastest five-member epoch the ensemble time.
    """
    if name == "peak":
        return max(results, key=lambda r: float(r["gflops"]))
    if name == "ensemble":
        fastest_alone = min(results, key=lambda r: float(r["one_seconds"]))
        return {
            **fastest_alone,
            "ensemble_seconds": min(float(r["ensemble_seconds"]) for r in results),
        }
    return min(results, key=lambda r: float(r["seconds"]))


def training_flops_per_image() -> tuple[int, int]:
    """(forward FLOPs, approximate training FLOPs) per image of the thesis MNIST net.

    Training ≈ 3 x forward: the backward pass of every conv/dense layer costs one forward's
    worth for the input gradient and one for the weight gradient. The first conv's input
    gradient is never computed (images do not require grad without adversarial training), so
    it is subtracted. Elementwise work (ReLU, pooling, dropout, loss, SGD update) is not counted.
    """
    net = thesis_mnist()
    fwd = forward_flops(net)
    side = net.image_size + 2 * net.padding[0] - 2
    first_conv = 2 * side * side * net.blocks[0][0] * net.in_channels * 9
    return fwd, 3 * fwd - first_conv


def summarise(raw: dict[str, dict[str, Any]], n: int, warmup: int) -> dict[str, Any]:
    fwd, train_flops = training_flops_per_image()
    peak = float(raw["peak"]["gflops"])
    rows: dict[str, dict[str, Any]] = {}
    for name in ("ours", "tensordataset", "plain-w0", "plain-w1"):
        r = raw[name]
        img_s = r["images"] / r["seconds"]
        gflops = img_s * train_flops / 1e9
        rows[name] = {**r, "img_per_s": img_s, "gflops": gflops, "fraction_of_peak": gflops / peak}
    plain_best = max(("plain-w0", "plain-w1"), key=lambda k: rows[k]["img_per_s"])
    ens = raw["ensemble"]
    values = {
        "ours_over_plain": rows["ours"]["img_per_s"] / rows[plain_best]["img_per_s"],
        "ours_over_tensordataset": rows["ours"]["img_per_s"] / rows["tensordataset"]["img_per_s"],
        "ours_fraction_of_peak": rows["ours"]["fraction_of_peak"],
        "ensemble5_over_one": ens["ensemble_seconds"] / ens["one_seconds"],
    }
    checks = {}
    for key, (label, target, higher) in TARGETS.items():
        value = values[key]
        met = value >= target if higher else value <= target
        checks[key] = {
            "label": label,
            "value": value,
            "op": ">=" if higher else "<=",
            "target": target,
            "met": met,
        }
    return {
        "images_per_contender": n,
        "warmup_steps": warmup,
        "batch_size": BATCH,
        "torch": torch.__version__,
        "threads": raw["ours"]["threads"],
        "forward_flops_per_image": fwd,
        "train_flops_per_image": train_flops,
        "peak": raw["peak"],
        "contenders": rows,
        "plain_best": plain_best,
        "ensemble": ens,
        "checks": checks,
        "steal": {name: raw[name].get("steal_fraction") for name in CONTENDERS},
    }


def print_table(s: dict[str, Any], load: tuple[float, float]) -> None:
    peak = s["peak"]
    print(
        f"thesis MNIST net, fp32 CPU, batch {s['batch_size']}, {s['images_per_contender']:,} "
        f"images/contender, {s['warmup_steps']} warm-up steps untimed, {s['threads']} torch "
        f"threads, torch {s['torch']}, best of {s['rounds']} round(s)"
    )
    print(
        f"training FLOPs/image ≈ 3 x forward ({s['forward_flops_per_image'] / 1e6:.1f} MFLOP) "
        f"- first conv's input grad = {s['train_flops_per_image'] / 1e6:.1f} MFLOP"
    )
    print(f"matmul peak: {peak['gflops']:.1f} GFLOP/s (best fp32 torch.mm, {peak['size']}^2)")
    print()
    print(f"{'contender':<22}{'seconds':>9}{'img/s':>10}{'GFLOP/s':>10}{'of peak':>9}")
    names = {
        "ours": "ours (MemberTrainer)",
        "tensordataset": "tensordataset",
        "plain-w0": "plain, num_workers=0",
        "plain-w1": "plain, num_workers=1",
    }
    for key, label in names.items():
        r = s["contenders"][key]
        print(
            f"{label:<22}{r['seconds']:>9.2f}{r['img_per_s']:>10.0f}{r['gflops']:>10.1f}"
            f"{r['fraction_of_peak']:>9.1%}"
        )
    ens = s["ensemble"]
    print(
        f"ensemble: members 0-{ens['members'] - 1} alone "
        f"{' '.join(f'{t:.2f}' for t in ens['alone_seconds'])} s (mean {ens['one_seconds']:.2f}), "
        f"together (make_ensemble_trainer) {ens['ensemble_seconds']:.2f} s"
    )
    print()
    print(f"{'check':<28}{'value':>8}{'target':>9}  result")
    for c in s["checks"].values():
        print(
            f"{c['label']:<28}{c['value']:>8.2f}{c['op']:>5}{c['target']:>4.1f}  "
            f"{'met' if c['met'] else 'NOT met'}"
        )
    print()
    print(f"plain (best) = {s['plain_best']}.")
    print(
        "notes: each contender ran in a fresh process; ours (and ensemble) called "
        "tune_cpu_allocator(),\n  a process-wide glibc mallopt change, the plain loops did not. "
        "plain normalises per image\n  in its transform and uses make_net with Normalize -> "
        "nn.Identity, the stock nn.Dropout/nn.Flatten and ReLU before max-pool;\n  ours uses "
        "channels_last, its own CPU dropout, HWC flatten and max-pool before the last ReLU,\n  "
        "the plain loops NCHW."
    )
    print(
        f"load average (1 min) before/after: {load[0]:.2f} / {load[1]:.2f} on "
        f"{os.cpu_count()} CPUs (the 'after' value includes this benchmark itself)"
    )
    # Only the value from before the run measures other work competing for the cores.
    if load[0] > BUSY_LOAD:
        print("WARNING: the machine was busy before the run; these numbers are distorted.")
    steals = {name: s["steal"][name] for name in CONTENDERS if s["steal"].get(name) is not None}
    if steals:
        print(
            "CPU steal during each contender's kept run (host's other guests): "
            + ", ".join(f"{name} {value:.1%}" for name, value in steals.items())
        )
        if max(steals.values()) > BUSY_STEAL:
            print(
                f"WARNING: more than {BUSY_STEAL:.0%} of a kept run's CPU time was stolen by "
                "the host; its ratios are distorted."
            )


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--data-dir", help="directory holding MNIST/raw (default: $ADVHPO_DATA_DIR)")
    p.add_argument(
        "--images",
        type=int,
        help=f"training images per contender (default {DEFAULT_IMAGES:,}; {QUICK_IMAGES:,} "
        "with --quick)",
    )
    p.add_argument("--quick", action="store_true", help="small smoke-test run")
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every contender this many times, round-robin, and keep each one's fastest "
        "run (default 1)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--warmup", type=int, default=WARMUP_STEPS, help=argparse.SUPPRESS)
    p.add_argument("--contender", choices=CONTENDERS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.images is None:
        args.images = QUICK_IMAGES if args.quick else DEFAULT_IMAGES
    if not 1 <= args.images <= MAX_IMAGES:
        p.error(f"--images must be in 1..{MAX_IMAGES}")
    if args.rounds < 1:
        p.error("--rounds must be >= 1")
    if args.warmup < 1:
        p.error("--warmup must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    data_dir = resolve_data_dir(args.data_dir)
    if args.contender:
        result = _run_contender(args.contender, data_dir, args.images, args.warmup, args.quick)
        print(json.dumps(result))
        return 0
    if not (data_dir / "MNIST" / "raw").is_dir():
        raise SystemExit(f"{data_dir / 'MNIST' / 'raw'} does not exist; pass --data-dir")
    load_before = os.getloadavg()[0]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in CONTENDERS}
    # Round-robin rather than contender by contender, so a burst of outside load hits one
    # run of each contender instead of every run of one of them.
    for r in range(args.rounds):
        for name in CONTENDERS:
            _log(f"round {r + 1}/{args.rounds}: {name} ...")
            runs[name].append(_spawn(name, data_dir, args.images, args.warmup, args.quick))
    load_after = os.getloadavg()[0]
    raw = {name: best_run(name, results) for name, results in runs.items()}
    summary = summarise(raw, args.images, args.warmup)
    summary["rounds"] = args.rounds
    if args.json:
        summary["runs"] = runs
        summary["loadavg_1min"] = [load_before, load_after]
        summary["cpu_count"] = os.cpu_count()
        print(json.dumps(summary))
    else:
        print_table(summary, (load_before, load_after))
    return 0


if __name__ == "__main__":
    sys.exit(main())
