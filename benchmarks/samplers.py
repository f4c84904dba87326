"""Which sampler finds the better clean-vs-FGSM front in a small real study?

Every sampler runs the same study (real MNIST, the default search space, the same fidelity and
trial budget, one worker, so trial numbers are completion order) through the real
``advhpo run`` command, into its own SQLite file. After every ``--step`` completed trials the
hypervolume of the front (reference point (0, 0)) is read back from the database; the table
shows that trajectory and the mean over ``--seeds`` replicates, and the script names the sampler
with the highest mean final hypervolume (the area under the trajectory breaks ties).

A replicate's seed (``--seed`` of the study) sets both the sampler's stream and the trials'
training seeds, so replicates differ in proposals and in training noise.

Run from the repo root::

    python benchmarks/samplers.py [--trials 20] [--seeds 0,1] [--samplers tpe,nsga2,gp,random]
                                  [--space FILE.toml] [--data-dir DIR] [--out DIR] [--json]

``--data-dir`` defaults to ``$ADVHPO_DATA_DIR``; nothing is downloaded. A study already in
``--out`` is continued, or only read back when its budget is met, so seeds can run in separate
processes on separate cores (``taskset -c 1 python benchmarks/samplers.py --seeds 2 --out D``)
and one last call with every seed and the same ``--out`` prints the whole table.

At the defaults (1 epoch on 2,000 training images, 200 validation images) and with
``benchmarks/small_space.toml`` (ensembles of 1 or 3), a trial takes 5 to 25 s on one core:
TPE and GP settle on cheap nets, random search and NSGA-II's random first generation do not.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import optuna
from _study_runs import parse, run_study, study_parser
from optuna.trial import TrialState

from advhpo.search import hypervolume


def trajectory(sampler: str, seed: int, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """One study with ``sampler``; returns its hypervolume trajectory and wall time."""
    url, _ = run_study(f"{sampler}-{seed}", seed, args, out, "--sampler", sampler)
    study = optuna.load_study(study_name=f"bench-{sampler}-{seed}", storage=url)
    done = sorted(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.number)
    steps = list(range(args.step, len(done) + 1, args.step))
    hv = [hypervolume([(t.values[0], t.values[1]) for t in done[:n]]) for n in steps]
    # From the trials' own timestamps, so a rerun over a finished database (which starts no
    # trial) still reports what the study took.
    started = [t.datetime_start for t in done if t.datetime_start is not None]
    ended = [t.datetime_complete for t in done if t.datetime_complete is not None]
    seconds = (max(ended) - min(started)).total_seconds() if started and ended else 0.0
    return {"sampler": sampler, "seed": seed, "steps": steps, "hv": hv, "seconds": seconds}


def main() -> None:
    parser = study_parser(__doc__, epochs=1)
    parser.add_argument("--step", type=int, default=10)
    parser.add_argument("--samplers", default="tpe,nsga2,gp,random")
    args, out = parse(parser, "advhpo-samplers-")
    samplers = args.samplers.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = [trajectory(s, seed, args, out) for seed in seeds for s in samplers]
    summary = {}
    for s in samplers:
        mine = [r for r in runs if r["sampler"] == s]
        width = min(len(r["hv"]) for r in mine)
        mean = [sum(r["hv"][i] for r in mine) / len(mine) for i in range(width)]
        summary[s] = {
            "steps": mine[0]["steps"][:width],
            "mean_hv": mean,
            "final_hv": [r["hv"][width - 1] for r in mine] if width else [],
            "area": sum(mean),
            "seconds": sum(r["seconds"] for r in mine) / len(mine),
        }
    best = max(samplers, key=lambda s: (summary[s]["mean_hv"][-1:], summary[s]["area"]))
    if args.json:
        print(json.dumps({"runs": runs, "summary": summary, "best": best, "args": vars(args)},
                         default=str))  # fmt: skip
        return
    steps = summary[samplers[0]]["steps"]
    print(f"mean hypervolume after n complete trials ({len(seeds)} seed(s): {args.seeds})")
    print("sampler  " + "".join(f"{'n=' + str(n):>9}" for n in steps) + "   final per seed   s/run")
    for s in samplers:
        row = summary[s]
        finals = " ".join(f"{v:.4f}" for v in row["final_hv"])
        print(
            f"{s:<8} " + "".join(f"{v:9.4f}" for v in row["mean_hv"])
            + f"   {finals:<16} {row['seconds']:6.0f}"
        )  # fmt: skip
    print(f"best front: {best}")
    print(f"databases: {out}")


if __name__ == "__main__":
    main()
