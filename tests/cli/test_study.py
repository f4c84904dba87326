"""``advhpo run``'s defaults against a study that already exists."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest

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


@pytest.mark.parametrize(
    ("dataset", "error"),
    [
        ("cifar10", "exists with other settings: dataset='mnist' (asked 'cifar10')"),
        ("mnist", "mnist: no dataset files"),  # the same settings: on to the data check
    ],
)
def test_a_study_s_command_rerun_with_another_dataset_is_refused_before_any_data_is_read(
    run_cli: CliRun, tmp_path: Path, dataset: str, error: str
) -> None:
    # The folder holds no dataset: a data check first would report that (or, online, download).
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    assert _create(run_cli, url, "--sampler", "tpe")[0] == 0
    argv = ["run", "s", "--dataset", dataset, "--storage", url, "--trials", "3", "--quiet"]
    code, _, err = run_cli([*argv, "--data-dir", str(tmp_path), "--offline"])
    assert code == 1 and err.count("\n") == 1 and error in err
    assert "sampler" not in err  # not asked for: the stored one is kept, as when it runs


def test_bad_devices_fail_before_any_database_is_created(run_cli: CliRun, tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    argv = ["run", "s", "--dataset", "mnist", "--storage", f"sqlite:///{db}", "--quiet"]
    code, _, err = run_cli([*argv, "--devices", "gpu", "--data-dir", str(tmp_path), "--offline"])
    assert code == 1 and err.count("\n") == 1 and "bad device 'gpu'" in err
    assert not db.exists()


@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_an_artifact_folder_that_cannot_be_written_fails_before_any_database_is_created(
    run_cli: CliRun, tmp_path: Path, where: str
) -> None:
    # Otherwise every trial fails on its first checkpoint and the workers burn the budget.
    db = tmp_path / "db.sqlite"
    blocker = tmp_path / "art"
    blocker.write_text("not a folder")
    artifacts = blocker if where == "a file" else blocker / "checkpoints"
    argv = ["run", "s", "--dataset", "mnist", "--storage", f"sqlite:///{db}", "--quiet"]
    argv += ["--artifacts", str(artifacts), "--data-dir", str(tmp_path), "--offline"]
    code, _, err = run_cli(argv)
    assert code == 1 and err.count("\n") == 1
    assert f"cannot write checkpoints under {artifacts}: {blocker} is not a folder" in err
    assert not db.exists()


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--timeout", "0"], "--timeout"),
        (["--timeout", "-5"], "--timeout"),
        (["--grace-period", "1"], "--grace-period"),
        (["--early-stop", "0"], "must be in (0, 1]"),
        ([], "a study name must not be blank"),
    ],
)
def test_a_blank_name_or_a_non_positive_timeout_is_a_usage_error(
    usage_error: Callable[[list[str]], str], tmp_path: Path, extra: list[str], needle: str
) -> None:
    db = tmp_path / "db.sqlite"
    name = "s" if extra else " "
    argv = ["run", name, "--dataset", "mnist", "--storage", f"sqlite:///{db}", "--create-only"]
    assert needle in usage_error([*argv, *extra])
    assert not db.exists()


def test_baselines_outside_the_space_create_no_database(run_cli: CliRun, tmp_path: Path) -> None:
    db = tmp_path / "new" / "db.sqlite"
    space = tmp_path / "space.toml"
    space.write_text("[lr]\nlow = 0.05\nhigh = 0.1\n")
    code, _, err = _create(run_cli, f"sqlite:///{db}", "--baselines", "--space", str(space))
    assert code == 1 and err.count("\n") == 1 and "--baselines needs lr=0.01" in err
    assert not db.parent.exists()


def test_a_space_file_that_is_not_text_is_a_one_line_error(run_cli: CliRun, tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    space = tmp_path / "space.toml"
    space.write_bytes(b"\xff\xfe[lr]\n")
    code, _, err = _create(run_cli, f"sqlite:///{db}", "--space", str(space))
    assert code == 1 and err.count("\n") == 1 and "not a readable TOML search space" in err
    assert not db.exists()


@pytest.mark.parametrize("command", [["pareto"], ["pareto", "--json"], ["status"], ["export"]])
def test_a_study_advhpo_did_not_make_is_refused(
    run_cli: CliRun, tmp_path: Path, command: list[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    foreign = optuna.create_study(study_name="f", storage=url)  # one objective
    foreign.add_trial(optuna.trial.create_trial(value=0.5))
    code, out, err = run_cli([command[0], "f", "--storage", url, *command[1:]])
    assert (code, out) == (1, "")
    assert err.count("\n") == 1 and "was not created by advhpo" in err


def test_a_cost_studys_pareto_and_status_show_the_accuracy_front(
    run_cli: CliRun, tmp_path: Path
) -> None:
    # Trial 1 is on the 3-D front for its low cost but loses on both accuracies: the report
    # leaves it out, and so must pareto and status.
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    assert _create(run_cli, url, "--cost")[0] == 0
    study = optuna.load_study(study_name="s", storage=url)
    for values in ([0.9, 0.5, 120.0], [0.8, 0.4, 10.0], [0.7, 0.6, 30.0]):
        study.add_trial(optuna.trial.create_trial(values=values, user_attrs={"pgd_acc": 0.1}))
    code, out, _ = run_cli(["pareto", "s", "--storage", url, "--json"])
    assert code == 0 and [r["number"] for r in json.loads(out)["front"]] == [0, 2]
    code, out, _ = run_cli(["pareto", "s", "--storage", url])
    rows = [line for line in out.splitlines() if line.lstrip("│ ").split(" ")[0].isdigit()]
    assert code == 0 and "train s" in out and len(rows) == 2
    assert "120" in rows[0] and "30" in rows[1]
    code, out, _ = run_cli(["status", "s", "--storage", url, "--json"])
    assert code == 0 and json.loads(out)["front_size"] == 2


def test_status_rounds_the_best_accuracies_and_leaves_out_those_of_an_empty_front(
    run_cli: CliRun, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    assert _create(run_cli, url)[0] == 0
    code, out, _ = run_cli(["status", "s", "--storage", url])
    assert code == 0 and "front 0 trials" in out and "best" not in out
    study = optuna.load_study(study_name="s", storage=url)
    study.add_trial(optuna.trial.create_trial(values=[2 / 3, 0.15]))  # as 300 images give
    code, out, _ = run_cli(["status", "s", "--storage", url])
    assert code == 0 and "best clean 0.6667 · best fgsm 0.1500" in out
