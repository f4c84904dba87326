"""``advhpo train``: run one configuration outside any study."""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from advhpo.cli._common import (
    CIFAR10_TEST_NOTE,
    DataDirOpt,
    DeviceOpt,
    EvalSubsetOpt,
    GenInput,
    GenInputOpt,
    JsonOpt,
    OfflineOpt,
    PgdStepsOpt,
    SeedOpt,
    TrainSubsetOpt,
    ensemble_dir_option,
    eps_option,
    one_line_errors,
    positive_int,
    progress_bar,
)


class DatasetName(enum.StrEnum):
    mnist = "mnist"
    cifar10 = "cifar10"


class Preset(enum.StrEnum):
    thesis_mnist = "thesis-mnist"
    thesis_cifar10 = "thesis-cifar10"


class AdvMethod(enum.StrEnum):
    none = "none"
    fgsm = "fgsm"
    fgsm_rs = "fgsm_rs"
    generator = "generator"


class Split(enum.StrEnum):
    val = "val"
    test = "test"


def train(
    dataset: Annotated[
        DatasetName | None,
        typer.Option(help="Dataset; defaults to the preset's (mnist without a preset)."),
    ] = None,
    data_dir: DataDirOpt = None,
    offline: OfflineOpt = False,
    preset: Annotated[
        Preset | None, typer.Option(help="A thesis network (default: the dataset's one).")
    ] = None,
    layers: Annotated[
        int | None,
        typer.Option(
            callback=positive_int,
            help="Conv blocks of the searchable family (replaces the preset).",
        ),
    ] = None,
    dropout: Annotated[
        float | None,
        typer.Option(help="Probability of every dropout layer (preset: 0.25 conv, 0.5 dense)."),
    ] = None,
    lr: Annotated[float, typer.Option(help="SGD learning rate.")] = 0.01,
    momentum: Annotated[float, typer.Option(help="SGD momentum.")] = 0.9,
    nesterov: Annotated[bool, typer.Option(help="Nesterov momentum.")] = False,
    weight_decay: Annotated[float, typer.Option(help="L2 penalty coefficient.")] = 0.0,
    epochs: Annotated[
        int, typer.Option(callback=positive_int, help="Passes over the training images.")
    ] = 2,
    batch_size: Annotated[
        int, typer.Option(callback=positive_int, help="Images per SGD step.")
    ] = 128,
    train_subset: TrainSubsetOpt = None,
    val_fraction: Annotated[
        float,
        typer.Option(
            help="Share of the official training set held out for validation, in [0, 0.5); "
            "0 trains on all of it (needs --eval-split test).",
        ),
    ] = 0.1,
    adv_method: Annotated[
        AdvMethod, typer.Option(help="Adversarial training method.")
    ] = AdvMethod.none,
    adv_eps: Annotated[
        float | None,
        typer.Option(
            callback=eps_option,
            help="Training L∞ radius in [0, 1] (default 0.3 MNIST, 0.05 CIFAR-10).",
        ),
    ] = None,
    gen_ratio: Annotated[
        int,
        typer.Option(
            callback=positive_int, help="Generator steps per classifier step (generator method)."
        ),
    ] = 1,
    gen_adaptive: Annotated[
        bool, typer.Option(help="Raise the generator ratio while its loss is above 0.6.")
    ] = False,
    gen_input: GenInputOpt = GenInput.image,
    ensemble: Annotated[
        int, typer.Option(callback=positive_int, help="Members voting (different seeds).")
    ] = 1,
    eval_eps: Annotated[
        float | None,
        typer.Option(
            callback=eps_option, help="Evaluation attack radius (default 0.3 MNIST, 0.05 CIFAR-10)."
        ),
    ] = None,
    eval_split: Annotated[
        Split, typer.Option(help="Score on the validation split or the test set.")
    ] = Split.val,
    eval_subset: EvalSubsetOpt = None,
    pgd_steps: PgdStepsOpt = 10,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    save: Annotated[
        Path | None,
        typer.Option(
            callback=ensemble_dir_option,
            help="Write the ensemble (weights + config.json) to this folder; an earlier saved"
            " ensemble there is replaced, any other non-empty folder refused.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train and evaluate one configuration (an ensemble) outside any study."""
    with one_line_errors():
        from advhpo.objectives import (
            PRESET_DATASET,
            PRESETS,
            TrialConfig,
            default_eval_eps,
            eps_curve_grid,
            family_net,
            load_splits,
            resolve_device,
            run_trial,
            save_ensemble,
        )

        name = dataset.value if dataset else PRESET_DATASET[preset.value] if preset else "mnist"
        if preset is not None and PRESET_DATASET[preset.value] != name:
            raise typer.BadParameter(
                f"preset {preset.value} is for {PRESET_DATASET[preset.value]}, not {name}",
                param_hint="--preset",
            )
        default_eps = default_eval_eps(name)
        if layers is not None:
            net = family_net(name, layers, 0.25 if dropout is None else dropout)
        else:
            net = PRESETS[preset.value if preset else f"thesis-{name}"]()
            if dropout is not None:
                net = _with_dropout(net, dropout)
        method = adv_method.value
        cfg = TrialConfig(
            dataset=name,
            net=net,
            lr=lr,
            momentum=momentum,
            nesterov=nesterov,
            weight_decay=weight_decay,
            batch_size=batch_size,
            epochs=epochs,
            train_subset=train_subset,
            val_fraction=val_fraction,
            adv_method=method,
            adv_eps=(default_eps if method != "none" else 0.0) if adv_eps is None else adv_eps,
            gen_ratio=gen_ratio,
            gen_adaptive=gen_adaptive,
            gen_input=gen_input.value,
            ensemble=ensemble,
            seed=seed,
            eval_eps=default_eps if eval_eps is None else eval_eps,
            eval_split=eval_split.value,
            eval_subset=eval_subset,
            # Around the radius scored, as a study's trials have it.
            eps_grid=eps_curve_grid(default_eps if eval_eps is None else eval_eps),
            pgd_steps=pgd_steps,
        )
        dev = resolve_device(device)
        splits = load_splits(name, data_dir, offline=offline, val_fraction=cfg.val_fraction)
        with progress_bar(not as_json) as progress:
            outcome = run_trial(cfg, splits, dev, progress=progress)
        if save is not None:
            save_ensemble(save, cfg, outcome.members)
        result = outcome.metrics
        if as_json:
            typer.echo(json.dumps(result))
        else:
            _print_summary(result, save)


def _with_dropout(net: Any, p: float) -> Any:
    import dataclasses

    return dataclasses.replace(net, conv_dropout=p, dense_dropout=p)


def _print_summary(result: dict[str, Any], save: Path | None) -> None:
    from rich.console import Console
    from rich.table import Table

    cfg = result["config"]
    table = Table(title=f"{cfg['dataset']} · {cfg['adv_method']} · ensemble {cfg['ensemble']}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    split = result["eval_split"] + (
        f" ({CIFAR10_TEST_NOTE})"
        if cfg["dataset"] == "cifar10" and result["eval_split"] == "test"
        else ""
    )
    eps = cfg["eval_eps"]
    for label, key in [
        ("clean accuracy", "clean_acc"),
        (f"FGSM accuracy (eps {eps:g})", "fgsm_acc"),
        (f"PGD-{cfg['pgd_steps']} accuracy (eps {eps:g})", "pgd_acc"),
        (f"transfer FGSM from member 0 (eps {eps:g})", "transfer_acc"),
    ]:
        table.add_row(label, f"{result[key]:.4f}")
    table.add_row("member clean accuracy", " ".join(f"{a:.4f}" for a in result["member_clean_acc"]))
    table.add_row("evaluated on", f"{result['n_eval']} {split} images")
    table.add_row(
        "train / eval seconds", f"{result['train_seconds']:.1f} / {result['eval_seconds']:.1f}"
    )
    table.add_row("device", f"{result['device']} on {result['host']}")
    Console().print(table)
    if save is not None:
        Console().print(f"saved ensemble to {save}")
