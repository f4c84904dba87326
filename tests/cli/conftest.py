"""Fixtures of the CLI tests: running ``advhpo`` in-process."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from advhpo.cli import main

CliRun = Callable[[list[str]], tuple[int, str, str]]


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> CliRun:
    """``run_cli(argv)``: run ``advhpo argv`` in this process; ``(exit code, stdout, stderr)``."""

    def run(argv: list[str]) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as exc:
            main(argv)
        out, err = capsys.readouterr()
        return int(exc.value.code or 0), out, err

    return run


@pytest.fixture
def usage_error(run_cli: CliRun) -> Callable[[list[str]], str]:
    """``usage_error(argv)``: run ``advhpo argv``, check it failed as a usage error, return it.

    A usage error exits with 2, prints nothing on stdout and one ``error: …`` line on stderr.
    """

    def run(argv: list[str]) -> str:
        code, out, err = run_cli(argv)
        assert (code, out) == (2, "")
        assert err.count("\n") == 1 and err.startswith("error:")
        return err

    return run
