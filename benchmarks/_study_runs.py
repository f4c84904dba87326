"""What the study benchmarks share: their command line and one real ``advhpo run`` each."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def study_parser(doc: str, *, epochs: int) -> argparse.ArgumentParser:
    """The options every study benchmark takes: budget, fidelity, seeds, space, data, output."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--train-subset", type=int, default=2000)
    parser.add_argument("--eval-subset", type=int, default=200)
    parser.add_argument("--epoch-eval", type=int, default=0)
    parser.add_argument("--space", type=Path, default=None, help="A --space TOML for every run.")
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("ADVHPO_DATA_DIR"))
    parser.add_argument("--out", type=Path, default=None, help="Keep the databases here.")
    parser.add_argument("--json", action="store_true")
    return parser


def parse(parser: argparse.ArgumentParser, prefix: str) -> tuple[argparse.Namespace, Path]:
    """Parsed options and the output folder; prints the load average the figures ran under."""
    args = parser.parse_args()
    if args.data_dir is None:
        parser.error("--data-dir (or $ADVHPO_DATA_DIR) must point at a folder holding MNIST/raw")
    out = args.out or Path(tempfile.mkdtemp(prefix=prefix))
    out.mkdir(parents=True, exist_ok=True)
    print(f"load average before the run: {os.getloadavg()[0]:.2f}", file=sys.stderr)
    return args, out


def run_study(
    name: str, seed: int, args: argparse.Namespace, out: Path, *extra: str
) -> tuple[str, float]:
    """One real ``advhpo run`` (one worker, CPU) into ``out/NAME.db``: its URL and wall time."""
    url = f"sqlite:///{out / f'{name}.db'}"
    cmd = [
        sys.executable, "-m", "advhpo", "run", f"bench-{name}", "--dataset", "mnist",
        "--storage", url, "--trials", str(args.trials), "--workers", "1", "--devices", "cpu",
        "--epochs", str(args.epochs), "--train-subset", str(args.train_subset),
        "--eval-subset", str(args.eval_subset), "--epoch-eval", str(args.epoch_eval),
        "--seed", str(seed), "--data-dir", str(args.data_dir), "--offline", "--quiet",
        "--artifacts", str(out / f"{name}.artifacts"), *extra,
    ]  # fmt: skip
    if args.space is not None:
        cmd += ["--space", str(args.space)]
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    return url, time.perf_counter() - start
