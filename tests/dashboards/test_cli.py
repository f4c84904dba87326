"""``advhpo report`` and ``advhpo dashboard``: outputs, one-line errors, the --test cache."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from advhpo.cli import main


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def _one_line_error(code: int, err: str) -> None:
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert "Traceback" not in err


def test_report_writes_one_html_file(
    sqlite_url: str,
    new_study: Callable[..., optuna.Study],
    random_trials: Callable[[int, int], list[FrozenTrial]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    new_study(sqlite_url, "demo").add_trials(random_trials(8, 0))
    out = tmp_path / "report.html"
    code, stdout, _ = _run(["report", "demo", "--storage", sqlite_url, "--out", str(out)], capsys)
    assert code == 0
    assert stdout.startswith(f"wrote {out}: 8 completed trials, front of ")
    assert out.read_text(encoding="utf-8").count("Plotly.newPlot(") == 6


def test_report_on_a_study_without_completed_trials_is_one_clear_line(
    sqlite_url: str,
    new_study: Callable[..., optuna.Study],
    trial_factory: Callable[..., FrozenTrial],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    new_study(sqlite_url, "fresh").add_trial(trial_factory(0, 0, state=TrialState.RUNNING))
    out = tmp_path / "report.html"
    code, stdout, err = _run(
        ["report", "fresh", "--storage", sqlite_url, "--out", str(out)], capsys
    )
    _one_line_error(code, err)
    assert "'fresh' has no completed trial yet (1 running): nothing to report" in err
    assert stdout == "" and not out.exists()


@pytest.mark.parametrize(
    ("storage", "needle"),
    [
        ("sqlite:///{tmp}/none.db", "no such file"),
        ("postgres://user:hunter2@localhost/db", "write postgresql://"),
        ("sqlite:///{tmp}/studies.db", "no study named 'nope'"),
    ],
)
def test_report_on_a_bad_storage_or_study_is_one_line(
    storage: str,
    needle: str,
    sqlite_url: str,
    new_study: Callable[..., optuna.Study],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    new_study(sqlite_url, "other")
    url = storage.format(tmp=tmp_path)
    code, _, err = _run(["report", "nope", "--storage", url], capsys)
    _one_line_error(code, err)
    assert needle in err and "hunter2" not in err
    assert not (tmp_path / "none.db").exists()


def _report_test(url: str, name: str, out: Path, mnist_dir: Path, checkpoint: Any) -> list[str]:
    """``advhpo report --test`` of study ``name`` against the tiny checkpoint's artifacts."""
    return ["report", name, "--storage", url, "--out", str(out), "--test",
            "--test-subset", "32", "--data-dir", str(mnist_dir), "--offline",
            "--artifacts", str(checkpoint.store.root), "--device", "cpu"]  # fmt: skip


def test_report_test_measures_once_then_reads_the_cache(
    sqlite_url: str,
    new_study: Callable[..., optuna.Study],
    trial_factory: Callable[..., FrozenTrial],
    tiny_checkpoint: Any,
    mnist_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Trial 0 of study "tiny" is the one the checkpoint fixture trained and saved.
    new_study(sqlite_url, tiny_checkpoint.study_name).add_trial(trial_factory(0.9, 0.5))
    out = tmp_path / "report.html"
    argv = _report_test(sqlite_url, "tiny", out, mnist_dir, tiny_checkpoint)

    code, _, err = _run(argv, capsys)
    assert code == 0, err
    assert "test-set eps curves: 1 measured, 0 cached" in err
    page = out.read_text(encoding="utf-8")
    assert "test split, 32 images, from the trials' last checkpoints" in page

    code, _, err = _run(argv, capsys)
    assert code == 0 and "test-set eps curves: 0 measured, 1 cached" in err


def test_report_test_warns_of_another_studys_checkpoint_and_does_not_use_it(
    sqlite_url: str,
    new_study: Callable[..., optuna.Study],
    trial_factory: Callable[..., FrozenTrial],
    tiny_checkpoint: Any,
    mnist_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The checkpoint of an earlier study "tiny", deleted since: its trial 0 started in 2020.
    store, name = tiny_checkpoint.store, tiny_checkpoint.study_name
    loaded = store.load(name, 0)
    assert loaded is not None
    store.save(name, 0, loaded[0], {**loaded[1], "origin_started": "2020-01-01T00:00:00"})
    new_study(sqlite_url, name).add_trial(trial_factory(0.9, 0.5))
    argv = _report_test(sqlite_url, name, tmp_path / "r.html", mnist_dir, tiny_checkpoint)
    code, _, err = _run(argv, capsys)
    assert code == 0, err
    assert "test-set eps curves: 0 measured, 0 cached, 1 with another study's" in err
    assert "warning: the checkpoint file of trial(s) #0 belongs to another study" in err


def test_report_test_without_a_checkpoint_warns_and_uses_validation_curves(
    sqlite_url: str,
    new_study: Callable[..., optuna.Study],
    trial_factory: Callable[..., FrozenTrial],
    mnist_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    new_study(sqlite_url, "lost").add_trial(trial_factory(0.9, 0.5))
    argv = ["report", "lost", "--storage", sqlite_url, "--out", str(tmp_path / "r.html"),
            "--test", "--data-dir", str(mnist_dir), "--offline",
            "--artifacts", str(tmp_path / "empty")]  # fmt: skip
    code, _, err = _run(argv, capsys)
    assert code == 0
    assert "warning: no checkpoint for trial(s) #0" in err


def test_report_test_with_missing_data_offline_is_one_line(
    sqlite_url: str,
    new_study: Callable[..., optuna.Study],
    trial_factory: Callable[..., FrozenTrial],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    new_study(sqlite_url, "nodata").add_trial(trial_factory(0.9, 0.5))
    argv = ["report", "nodata", "--storage", sqlite_url, "--out", str(tmp_path / "r.html"),
            "--test", "--data-dir", str(tmp_path / "nowhere"), "--offline"]  # fmt: skip
    code, _, err = _run(argv, capsys)
    _one_line_error(code, err)
    assert "offline" in err and not (tmp_path / "r.html").exists()


@pytest.mark.parametrize("where", ["a folder", "under a file"])
def test_a_report_path_that_cannot_be_written_fails_before_measuring(
    sqlite_url: str,
    new_study: Callable[..., optuna.Study],
    trial_factory: Callable[..., FrozenTrial],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    import advhpo.cli._dashboard as cli

    def measure(*args: object) -> None:
        raise AssertionError("measured before the path was checked")

    monkeypatch.setattr(cli, "_measure", measure)
    new_study(sqlite_url, "s").add_trial(trial_factory(0.9, 0.5))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = tmp_path if where == "a folder" else blocker / "r.html"
    argv = ["report", "s", "--storage", sqlite_url, "--out", str(out), "--test", "--offline"]
    code, _, err = _run(argv, capsys)
    _one_line_error(code, err)
    assert f"cannot write {out}" in err


def test_dashboard_on_a_busy_port_is_one_line(
    sqlite_url: str, new_study: Callable[..., optuna.Study], capsys: pytest.CaptureFixture[str]
) -> None:
    new_study(sqlite_url, "demo")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, _, err = _run(["dashboard", "--storage", sqlite_url, "--port", str(port)], capsys)
    _one_line_error(code, err)
    assert f"port {port} on 127.0.0.1 is in use; pick another with --port" in err


def test_dashboard_on_a_missing_database_is_one_line_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'missing.db'}"
    code, _, err = _run(["dashboard", "--storage", url, "--port", "0"], capsys)
    _one_line_error(code, err)
    assert "no such file" in err and not (tmp_path / "missing.db").exists()
