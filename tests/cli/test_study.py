"""``advhpo run``'s defaults against a study that already exists."""

from __future__ import annotations

from pathlib import Path

import optuna

from advhpo.search import DEFAULT_SAMPLER, stored_settings
from tests.cli.conftest import CliRun


def _create(run_cli: CliRun, url: str, *extra: str) -> tuple[int, str, str]:
    # --create-only: the study and its settings, no data and no workers.
    argv = ["run", "s", "--dataset", "mnist", "--storage", url, "--trials", "3"]
    return run_cli([*argv, "--create-only", "--quiet", *extra])


def test_a_new_study_gets_the_default_sampler(run_cli: CliRun, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    assert _create(run_cli, url)[0] == 0
    assert DEFAULT_SAMPLER == "gp"
    assert stored_settings(optuna.load_study(study_name="s", storage=url)).sampler == "gp"


def test_rerunning_without_sampler_continues_a_study_with_another(
    run_cli: CliRun, tmp_path: Path
) -> None:
    # A study made when TPE was the default: its command, rerun unchanged, must not conflict.
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    assert _create(run_cli, url, "--sampler", "tpe")[0] == 0
    assert _create(run_cli, url)[0] == 0
    code, _, err = _create(run_cli, url, "--sampler", "gp")  # asked for explicitly: a conflict
    assert code != 0 and "sampler='tpe' (asked 'gp')" in err
    assert stored_settings(optuna.load_study(study_name="s", storage=url)).sampler == "tpe"
