"""``advhpo reproduce``: the thesis's and the GAN paper's protocols, their figures beside ours."""

from __future__ import annotations

import enum
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from advhpo.cli._common import (
    DataDirOpt,
    DeviceOpt,
    EvalSubsetOpt,
    GenInput,
    GenInputOpt,
    JsonOpt,
    OfflineOpt,
    PgdStepsOpt,
    ProgressFn,
    SeedOpt,
    TrainSubsetOpt,
    folded_help,
    one_line_errors,
    output_dir_option,
    positive_int,
    progress_bar,
)
from advhpo.cli._train import DatasetName

if TYPE_CHECKING:
    import torch

    from advhpo.objectives import DatasetSplits

reproduce = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    help="Reproduce the thesis and the GAN paper with their presets, their figures beside ours.",
)

OutOpt = Annotated[
    Path | None,
    typer.Option(
        callback=output_dir_option,
        help="Also write the result (JSON) and its plot (self-contained HTML) here.",
    ),
]
CycleEvalOpt = Annotated[
    int,
    typer.Option(callback=positive_int, help="Test images scored (clean, FGSM) after every cycle."),
]


class Schedule(enum.StrEnum):
    two = "2:1"
    four = "4:1"
    stepped = "6-8-12"
    adaptive = "adaptive"


def thesis(
    dataset: Annotated[
        DatasetName,
        typer.Option(help="mnist (thesis FGSM radius 0.3) or cifar10 (radius 0.05)."),
    ],
    epochs: Annotated[
        int | None,
        typer.Option(
            callback=positive_int, help="Epochs per net (default: 5 on MNIST, 15 on CIFAR-10)."
        ),
    ] = None,
    train_subset: TrainSubsetOpt = None,
    eval_subset: EvalSubsetOpt = None,
    curve_subset: Annotated[
        int,
        typer.Option(
            callback=positive_int,
            help="Test images of the FGSM and PGD accuracy-vs-eps curves (PGD costs steps x 11 "
            "radii x nets gradient passes per image: the costliest part).",
        ),
    ] = 1000,
    members: Annotated[
        int, typer.Option(callback=positive_int, help="FGSM-trained nets in the vote.")
    ] = 5,
    pgd_steps: PgdStepsOpt = 10,
    seed: SeedOpt = 0,
    data_dir: DataDirOpt = None,
    offline: OfflineOpt = False,
    device: DeviceOpt = "auto",
    out: OutOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the thesis protocol and print its figures beside ours.

    Trains the thesis net of the dataset undefended, scores FGSM and PGD accuracy over radii 0
    to twice the thesis radius, trains MEMBERS nets with FGSM adversarial training (Goodfellow's
    mixed loss) at the thesis radius, and scores net 0 alone and the vote of all of them. Nets
    train on the official training set and are scored on the test set. The defaults are full
    fidelity: about an hour on MNIST on 2 idle CPU cores, many hours on CIFAR-10; reduce
    --epochs, --train-subset, --eval-subset, --curve-subset or --members for a quicker look.
    """
    with one_line_errors():
        from advhpo.objectives import Fidelity, reproduce_thesis, thesis_fidelity

        fidelity = Fidelity(
            epochs=epochs or thesis_fidelity(dataset.value).epochs,
            train_subset=train_subset,
            eval_subset=eval_subset,
            curve_subset=curve_subset,
            members=members,
            pgd_steps=pgd_steps,
            seed=seed,
        )

        def run(
            splits: DatasetSplits, dev: torch.device, progress: ProgressFn | None
        ) -> dict[str, Any]:
            return reproduce_thesis(dataset.value, splits, dev, fidelity, progress=progress)

        result = _run(dataset.value, run, data_dir, offline, device, as_json)
        _finish(result, f"thesis-{dataset.value}", out, as_json)


def gan(
    cycles: Annotated[
        int,
        typer.Option(
            callback=positive_int,
            help="Cycles per schedule; a cycle is one epoch of the classifier.",
        ),
    ] = 5,
    schedule: Annotated[
        list[Schedule] | None,
        typer.Option(help="Run only this schedule; repeatable (default: all four)."),
    ] = None,
    gen_input: GenInputOpt = GenInput.image,
    train_subset: TrainSubsetOpt = None,
    eval_subset: EvalSubsetOpt = None,
    cycle_eval: CycleEvalOpt = 1000,
    pgd_steps: PgdStepsOpt = 10,
    seed: SeedOpt = 0,
    data_dir: DataDirOpt = None,
    offline: OfflineOpt = False,
    device: DeviceOpt = "auto",
    out: OutOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the GAN paper's generator training on MNIST and compare it with FGSM training.

    A perturbation generator (L∞ radius 0.3) is trained against the thesis MNIST net at the
    paper's generator:classifier ratios: 2:1, 4:1, stepped 6-8-12 (spread evenly over the
    cycles) and adaptive (one more generator step per 50 classifier steps while the generator's
    loss is above 0.6, up to 12). A ratio k is k generator updates before each classifier
    update; a cycle is one epoch. FGSM accuracy (radius 0.3) is scored after every cycle, then
    FGSM adversarial training runs as long as the longest schedule and is compared with each at
    equal training time. The defaults (5 cycles on all 60,000 images) take hours on 2 CPU
    cores; use --train-subset and --cycles for a quicker look.
    """
    with one_line_errors():
        from advhpo.objectives import GAN_SCHEDULES, Fidelity, reproduce_gan

        fidelity = Fidelity(
            epochs=cycles,
            train_subset=train_subset,
            eval_subset=eval_subset,
            epoch_eval=cycle_eval,
            pgd_steps=pgd_steps,
            seed=seed,
        )
        names = [s.value for s in schedule] if schedule else list(GAN_SCHEDULES)

        def run(
            splits: DatasetSplits, dev: torch.device, progress: ProgressFn | None
        ) -> dict[str, Any]:
            return reproduce_gan(
                splits,
                dev,
                fidelity,
                schedules=names,
                gen_input=gen_input.value,
                progress=progress,
            )

        result = _run("mnist", run, data_dir, offline, device, as_json)
        _finish(result, "gan-mnist", out, as_json)


for _command in (thesis, gan):
    reproduce.command(help=folded_help(_command.__doc__))(_command)


def _run(
    dataset: str,
    run: Callable[[DatasetSplits, torch.device, ProgressFn | None], dict[str, Any]],
    data_dir: Path | None,
    offline: bool,
    device: str,
    as_json: bool,
) -> dict[str, Any]:
    """Load the whole official training set and the test set, then run the protocol."""
    from advhpo.objectives import load_splits, resolve_device

    dev = resolve_device(device)
    # Nothing is tuned, so no validation split is held out: the protocols train on all of it.
    splits = load_splits(dataset, data_dir, offline=offline, val_fraction=0.0)
    with progress_bar(not as_json) as progress:
        return run(splits, dev, progress)


def _finish(result: dict[str, Any], stem: str, out: Path | None, as_json: bool) -> None:
    """Write ``--out`` files, then print the JSON object or the tables."""
    from advhpo.cli import _reproduce_report as report

    if out is not None:
        result["files"] = [str(p) for p in report.write_files(result, out, stem)]
    if as_json:
        typer.echo(json.dumps(result))
        return
    if result["protocol"] == "thesis":
        report.print_thesis(result)
    else:
        report.print_gan(result)
    for path in result.get("files", []):
        typer.echo(f"wrote {path}")


__all__ = ["reproduce"]
