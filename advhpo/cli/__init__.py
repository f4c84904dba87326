"""The ``advhpo`` command line: one Typer app per command group, composed here."""

from __future__ import annotations

import sys

import typer

from advhpo.cli._common import err_console, print_error
from advhpo.cli._dashboard import dashboard, report
from advhpo.cli._reproduce import reproduce
from advhpo.cli._study import export, pareto, resume, run, status, studies
from advhpo.cli._train import train

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # a storage URL in a local may hold a password
)


@app.callback()
def _root() -> None:
    """Hyperparameter search for adversarially robust image classifiers."""


for command in (train, run, resume, status, pareto, studies, export, report, dashboard):
    app.command()(command)
app.add_typer(reproduce, name="reproduce")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``advhpo`` console script.

    Usage errors are printed as one line (``error: …``) instead of click's framed box, so
    scripts and logs get a single greppable line; the exit code stays click's (2).
    """
    args = sys.argv[1:] if argv is None else argv
    command = typer.main.get_command(app)
    try:
        rv = command.main(args=args or ["--help"], prog_name="advhpo", standalone_mode=False)
    except typer.TyperException as e:
        print_error(e.format_message())
        sys.exit(e.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)


__all__ = ["app", "main"]
