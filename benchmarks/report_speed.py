"""How long ``advhpo report`` takes on a large study: 2,000 synthetic MNIST trials in SQLite.

The trials carry what real workers store (params of the default space, both objectives, PGD
and transfer accuracy, an eps curve, per-member epoch records, per-epoch validation), so the
database holds as much per trial as a real study. The study is built once (kept in ``--db``);
the report is then timed end to end through the CLI, as a user runs it, and phase by phase
in-process.

    python benchmarks/report_speed.py [--trials 2000] [--db /tmp/advhpo-report-speed.db]
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from advhpo.dashboards import load_study_data, param_importances, render_report
from advhpo.objectives import eps_curve_grid
from advhpo.search import StudySettings, create_or_check_study, space_distributions
from advhpo.storage import open_storage

NAME = "report-speed"
EPOCHS = 4
DISTRIBUTIONS = space_distributions("mnist")


def synthetic_trial(number: int, rng: random.Random) -> FrozenTrial:
    """One plausible completed trial: adversarial training trades clean for FGSM accuracy."""
    params: dict[str, Any] = {
        "layers": rng.randint(1, 3),
        "dropout": rng.uniform(0.0, 0.5),
        "lr": math.exp(rng.uniform(math.log(1e-3), math.log(0.1))),
        "weight_decay": math.exp(rng.uniform(math.log(1e-6), math.log(1e-3))),
        "adv_method": rng.choice(["none", "fgsm", "fgsm_rs"]),
        "ensemble": rng.choice([1, 3, 5, 7]),
    }
    eps = 0.0 if params["adv_method"] == "none" else rng.uniform(0.01, 0.3)
    if eps:
        params["adv_eps"] = eps
    clean = min(0.995, 0.9 + 0.03 * params["layers"] - 0.1 * eps + rng.gauss(0, 0.02))
    fgsm = max(0.0, min(clean, 0.05 + 2.5 * eps + 0.01 * params["ensemble"] + rng.gauss(0, 0.05)))
    grid = eps_curve_grid(0.3)
    members = params["ensemble"]
    trial = optuna.trial.create_trial(
        state=TrialState.COMPLETE,
        params=params,
        distributions={k: DISTRIBUTIONS[k] for k in params},
        values=[clean, fgsm],
        user_attrs={
            "pgd_acc": fgsm * rng.uniform(0.3, 1.0),
            "transfer_acc": min(clean, fgsm + 0.1),
            "member_clean_acc": [clean - 0.01] * members,
            "eps_curve": {
                "eps": list(grid),
                "fgsm_acc": [clean * math.exp(-e / (0.5 * eps + 0.02)) for e in grid],
            },
            "eval_seconds": 3.0,
            "n_eval": 1000,
            "n_train": 6000,
            "train_seconds": 20.0 * members * params["layers"],
            "epoch_history": [
                [{"epoch": e, "loss": 1.0 / e, "seconds": 5.0} for e in range(1, EPOCHS + 1)]
                for _ in range(members)
            ],
            "epoch_values": [
                {"epoch": e, "clean_acc": clean * e / EPOCHS, "fgsm_acc": fgsm * e / EPOCHS}
                for e in range(1, EPOCHS + 1)
            ],
            "host": "bench",
            "device": "cpu",
        },
    )
    start = datetime.datetime(2024, 1, 1) + datetime.timedelta(minutes=3 * number)
    trial.datetime_start = start
    trial.datetime_complete = start + datetime.timedelta(minutes=rng.uniform(1, 10))
    return trial


def build(db: Path, n: int) -> None:
    """Create the study with ``n`` synthetic trials, unless ``db`` already holds it."""
    url = f"sqlite:///{db}"
    study = create_or_check_study(
        NAME, open_storage(url), StudySettings(dataset="mnist", budget=n, eval_eps=0.3)
    )
    have = len(study.get_trials(deepcopy=False))
    if have == n:
        return
    if have:
        raise SystemExit(f"{db} holds {have} trials, not {n}: delete it first")
    rng = random.Random(0)
    start = time.perf_counter()
    study.add_trials([synthetic_trial(i, rng) for i in range(n)])
    print(f"built {n} trials in {time.perf_counter() - start:.1f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--db", type=Path, default=Path(tempfile.gettempdir()) / "advhpo-speed.db")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    load = os.getloadavg()[0]
    print(
        f"load average {load:.1f} on {os.cpu_count()} cores"
        + (": other work competes for the cores, times are inflated" if load > 1.0 else "")
    )
    build(args.db, args.trials)
    url = f"sqlite:///{args.db}"

    # In-process, phase by phase.
    study = optuna.load_study(study_name=NAME, storage=open_storage(url, create=False))
    t0 = time.perf_counter()
    data = load_study_data(study)
    t1 = time.perf_counter()
    param_importances(data.trials, data.objectives, study.directions)
    t2 = time.perf_counter()
    page = render_report(data)  # importances again, then the figures and the page
    t3 = time.perf_counter()
    print(f"read {len(data.trials)} trials: {t1 - t0:.2f} s")
    print(f"importances (3 targets): {t2 - t1:.2f} s")
    print(f"render (importances + figures + page): {t3 - t2:.2f} s, {len(page) / 1e6:.1f} MB")

    # End to end, as a user runs it (process start and imports included).
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report.html"
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "advhpo", "report", NAME, "--storage", url, "--out", str(out)],
            check=True,
        )
        total = time.perf_counter() - start
    print(f"advhpo report on {args.trials} trials: {total:.1f} s end to end")


if __name__ == "__main__":
    main()
