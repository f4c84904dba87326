"""Shared CLI plumbing: one-line errors, option validators, the progress bar."""

from __future__ import annotations

import enum
import inspect
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console

from advhpo._errors import AdvhpoError

if TYPE_CHECKING:
    from rich.progress import Progress

# soft_wrap: an error stays one line however narrow the terminal.
err_console = Console(stderr=True, soft_wrap=True)


def print_error(message: str) -> None:
    """Print ``error: message`` on stderr, whitespace folded so it is one line."""
    err_console.print(f"[bold red]error:[/] {' '.join(str(message).split())}", highlight=False)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` as one line on stderr and exit with ``code``."""
    print_error(message)
    raise typer.Exit(code)


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Turn any deliberate :class:`AdvhpoError` into a one-line message and exit code 1."""
    try:
        yield
    except AdvhpoError as e:
        fail(str(e))
    except OSError as e:  # e.g. a disk that filled up while results were written
        fail(str(e))
    except KeyboardInterrupt:
        err_console.print("interrupted")
        raise typer.Exit(130) from None


def folded_help(doc: str | None) -> str:
    """A docstring as command help: paragraphs kept, line breaks inside them folded.

    Typer prints the paragraphs after the first with their source line breaks, which breaks
    them mid-sentence on any terminal narrower or wider than the source.
    """
    paragraphs = inspect.cleandoc(doc or "").split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


def eps_option(value: float | None) -> float | None:
    """Typer callback: an L∞ radius must lie in [0, 1] (pixel units)."""
    if value is not None and not 0.0 <= value <= 1.0:
        raise typer.BadParameter(f"must be in [0, 1] (pixel units), got {value}")
    return value


def output_dir_option(value: Path | None) -> Path | None:
    """Typer callback: a folder the command will write must be creatable, checked before hours
    of training rather than after."""
    if value is None:
        return None
    if value.exists() and not value.is_dir():
        raise typer.BadParameter(f"{value} exists and is not a folder")
    ancestor = value.absolute()
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise typer.BadParameter(f"cannot create {value}: {ancestor} is not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise typer.BadParameter(f"cannot create {value}: {ancestor} is not writable")
    return value


def ensemble_dir_option(value: Path | None) -> Path | None:
    """Typer callback for ``--save``: creatable, and not a folder of other files that saving
    would replace."""
    value = output_dir_option(value)
    if value is not None:
        from advhpo._errors import ConfigError
        from advhpo.objectives import check_replaceable

        try:
            check_replaceable(value)
        except ConfigError as e:
            raise typer.BadParameter(str(e)) from e
    return value


def positive_int(value: int | None) -> int | None:
    """Typer callback: counts must be at least 1."""
    if value is not None and value < 1:
        raise typer.BadParameter(f"must be >= 1, got {value}")
    return value


# Options shared by the commands that train and score outside a study (train, reproduce).
class GenInput(enum.StrEnum):
    image = "image"
    gradient = "gradient"


GenInputOpt = Annotated[
    GenInput,
    typer.Option(
        help="What the perturbation generator sees: the image, or also the classifier's input "
        "gradient (Lee et al. 2017)."
    ),
]
DataDirOpt = Annotated[
    Path | None,
    typer.Option(help="Folder with MNIST/raw or cifar-10-batches-{bin,py} (env: ADVHPO_DATA_DIR)."),
]
OfflineOpt = Annotated[bool, typer.Option(help="Never download; fail if the data is absent.")]
TrainSubsetOpt = Annotated[
    int | None, typer.Option(callback=positive_int, help="Training images used (default: all).")
]
EvalSubsetOpt = Annotated[
    int | None,
    typer.Option(callback=positive_int, help="Evaluation images used (default: all)."),
]
PgdStepsOpt = Annotated[int, typer.Option(callback=positive_int, help="PGD iterations.")]
SeedOpt = Annotated[int, typer.Option(help="Seed of member 0; member k uses seed + k.")]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON object with every metric, nothing else.")
]

# Part of the CIFAR-10 test set was rebuilt from JPEGs (see the data README): scores are close
# to, not exactly, those on the original images.
CIFAR10_TEST_NOTE = "approximate: JPEG-derived test set"

ProgressFn = Callable[[str, int, int], None]
_PHASE_LABELS = {"train": "training (member-epochs)", "eval": "evaluating (images)"}


def new_progress(*, transient: bool) -> Progress:
    """The project's progress bar on stderr: description, bar, done/total, time left."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=transient,
    )


@contextmanager
def progress_bar(enabled: bool) -> Iterator[ProgressFn | None]:
    """A rich progress bar on stderr with one task per phase; yields ``None`` when disabled.

    Phases ``"train"`` and ``"eval"`` (those of ``run_trial``) get descriptive labels; any
    other phase is its own label.
    """
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    with new_progress(transient=True) as bar:
        tasks: dict[str, object] = {}

        def update(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(_PHASE_LABELS.get(phase, phase), total=total)
            bar.update(tasks[phase], completed=done, total=total)  # type: ignore[arg-type]

        yield update
