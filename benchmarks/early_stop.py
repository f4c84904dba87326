"""What ``--early-stop`` saves, and what it costs in front quality, on one small real study.

The same study (real MNIST, the default space or ``--space``, TPE, the same ``--seed`` so the
same training seeds and sampler streams, one worker) runs twice through the real ``advhpo run``
command: without early stopping, then with ``--early-stop FRACTION``. Both arms get the same
trial budget (an early-stopped trial spends its place), so the comparison is the training spent
(epochs, which the machine's load does not distort, and wall time) against the hypervolume
(reference point (0, 0)) of the final front. The arms share nothing but the data; their
proposals diverge once the first trial stops, because a stopped trial teaches the sampler
something else than a finished one.

Run from the repo root::

    python benchmarks/early_stop.py [--trials 20] [--epochs 3] [--fraction 0.5]
                                    [--min-trials 5] [--seeds 0] [--space FILE.toml]
                                    [--data-dir DIR] [--out DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import optuna
from _study_runs import parse, run_study, study_parser
from optuna.trial import TrialState

from advhpo.search import EARLY_STOP_ATTR, front, hypervolume


def run_arm(early: bool, seed: int, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """One study, with or without early stopping; its cost and its front's hypervolume."""
    arm = "early" if early else "full"
    stop = ["--early-stop", str(args.fraction), "--early-stop-min-trials", str(args.min_trials)]
    # TPE, as when docs/results.md's figures were measured (the default has since become GP).
    extra = ["--sampler", "tpe", *(stop if early else [])]
    url, wall = run_study(f"{arm}-{seed}", seed, args, out, *extra)
    name = f"bench-{arm}-{seed}"
    study = optuna.load_study(study_name=name, storage=url)
    trials = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    stopped = [t for t in trials if EARLY_STOP_ATTR in t.user_attrs]
    compute = sum(
        float(t.user_attrs.get("train_seconds", 0.0))
        + float(t.user_attrs.get("eval_seconds", 0.0))
        + float(t.user_attrs.get("epoch_eval_seconds", 0.0))
        for t in done
    )
    epochs_trained = args.epochs * len(done) + sum(t.user_attrs[EARLY_STOP_ATTR] for t in stopped)
    return {
        "arm": arm,
        "seed": seed,
        "wall_seconds": wall,
        "complete": len(done),
        "stopped": len(stopped),
        "epochs_trained": epochs_trained,
        "complete_trial_seconds": compute,
        "hypervolume": hypervolume([(t.values[0], t.values[1]) for t in done]),
        "front_size": len(front(study)),
    }


def main() -> None:
    parser = study_parser(__doc__, epochs=3)
    parser.add_argument("--fraction", type=float, default=0.5)
    parser.add_argument("--min-trials", type=int, default=5)
    parser.set_defaults(epoch_eval=200)
    args, out = parse(parser, "advhpo-early-stop-")
    rows = [run_arm(early, int(s), args, out) for s in args.seeds.split(",") for early in (0, 1)]
    if args.json:
        print(json.dumps({"rows": rows, "args": vars(args)}, default=str))
        return
    print(
        f"{args.trials} trials x {args.epochs} epochs, --early-stop {args.fraction} "
        f"after {args.min_trials} trials"
    )
    print("arm    seed  wall s  epochs  complete  stopped  hypervolume  front")
    for r in rows:
        print(
            f"{r['arm']:<6} {r['seed']:>4} {r['wall_seconds']:7.0f} {r['epochs_trained']:7d} "
            f"{r['complete']:9d} {r['stopped']:8d} {r['hypervolume']:12.4f} {r['front_size']:6d}"
        )
    for full, early in zip(rows[::2], rows[1::2], strict=True):
        time_ratio = early["wall_seconds"] / full["wall_seconds"]
        hv_ratio = early["hypervolume"] / max(full["hypervolume"], 1e-12)
        print(
            f"seed {full['seed']}: early stopping took {time_ratio:.2f}x the wall time "
            f"and reached {hv_ratio:.2f}x the hypervolume"
        )


if __name__ == "__main__":
    main()
