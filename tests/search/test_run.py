"""End-to-end studies on real MNIST at tiny fidelity: budgets, fronts, crashes and resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from advhpo import StorageError
from advhpo.dashboards import make_dashboard_server, server_url
from advhpo.search import LOST_REASON, OUTSIDE_REASON, fail_reason
from advhpo.storage import open_storage, original_trial_number, retry_callback
from tests.search._factories import SMALL_SPACE, fail_as_lost

TINY = ["--epochs", "1", "--train-subset", "256", "--eval-subset", "64", "--devices", "cpu"]


def advhpo(
    *args: str, check: bool = True, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "advhpo", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"advhpo {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def _complete(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name=name, storage=open_storage(url, create=False))
    return study.get_trials(states=(TrialState.COMPLETE,))


@pytest.mark.real_data
def test_two_workers_meet_the_budget_exactly_and_the_front_matches_optuna(
    storage_url: str, study_name: str, real_data_dir: Path, tmp_path: Path
) -> None:
    advhpo(
        "run",
        study_name,
        "--dataset",
        "mnist",
        "--storage",
        storage_url,
        "--trials",
        "4",
        "--workers",
        "2",
        *TINY,
        "--data-dir",
        str(real_data_dir),
        "--offline",
        "--artifacts",
        str(tmp_path / "artifacts"),
        "--quiet",
    )
    done = _complete(storage_url, study_name)
    assert len(done) == 4
    assert len({t.user_attrs["worker_pid"] for t in done}) == 2  # both workers contributed
    assert all("pgd_acc" in t.user_attrs and "eps_curve" in t.user_attrs for t in done)

    ours = json.loads(advhpo("pareto", study_name, "--storage", storage_url, "--json").stdout)
    optuna_cli = str(Path(sys.executable).parent / "optuna")  # Optuna's own console script
    theirs = subprocess.run(
        [optuna_cli, "best-trials", "--study-name", study_name, "--storage", storage_url,
         "-f", "json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert sorted(r["number"] for r in ours["front"]) == sorted(
        r["number"] for r in json.loads(theirs.stdout)
    )

    status = json.loads(advhpo("status", study_name, "--storage", storage_url, "--json").stdout)
    assert status["states"]["COMPLETE"] == 4 and status["budget"] == 4
    assert status["front_size"] == len(ours["front"]) and status["hypervolume"] > 0

    # Running the same command again finds the budget met and starts nothing.
    advhpo(
        "run",
        study_name,
        "--dataset",
        "mnist",
        "--storage",
        storage_url,
        "--trials",
        "4",
        *TINY,
        "--data-dir",
        str(real_data_dir),
        "--offline",
        "--quiet",
        "--artifacts",
        str(tmp_path / "artifacts"),
    )
    assert len(_complete(storage_url, study_name)) == 4


def _wait_for_checkpoint(root: Path, proc: subprocess.Popen[str], timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if any(root.rglob("*.pt")):
            return
        if proc.poll() is not None:
            raise AssertionError(
                f"advhpo exited early:\n{proc.stderr.read() if proc.stderr else ''}"
            )
        time.sleep(0.2)
    raise AssertionError("no checkpoint was written in time")


def _workers(pid: int) -> list[int]:
    """Worker processes of the launcher ``pid`` (not multiprocessing's resource tracker)."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    children = [int(p) for p in out.stdout.split()]
    return [p for p in children if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]


def _start(name: str, url: str, data: Path, artifacts: Path, *extra: str) -> subprocess.Popen[str]:
    space = artifacts.parent / "space.toml"
    space.write_text(SMALL_SPACE)
    args = "--trials 2 --workers 1 --epochs 4 --train-subset 3000 --eval-subset 64 --devices cpu"
    return subprocess.Popen(
        [sys.executable, "-m", "advhpo", "run", name, "--dataset", "mnist", "--storage", url,
         *args.split(), "--data-dir", str(data), "--offline", "--artifacts", str(artifacts),
         "--grace-period", "4", "--space", str(space), "--quiet", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _resume(name: str, url: str, data: Path, artifacts: Path, *extra: str) -> None:
    advhpo(
        "resume", name, "--storage", url, "--data-dir", str(data), "--offline",
        "--artifacts", str(artifacts), "--quiet", *extra,
    )  # fmt: skip


@pytest.mark.real_data
def test_a_killed_worker_s_trial_is_retried_from_its_checkpoint(
    real_data_dir: Path, tmp_path: Path
) -> None:
    url, name, artifacts = f"sqlite:///{tmp_path / 'db.sqlite'}", "killed", tmp_path / "art"
    proc = _start(name, url, real_data_dir, artifacts)
    _wait_for_checkpoint(artifacts, proc)
    (worker,) = _workers(proc.pid)
    os.kill(worker, signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode != 0  # the run reports its dead worker

    _resume(name, url, real_data_dir, artifacts, "--grace-period", "4")
    done = _complete(url, name)
    assert len(done) == 2
    resumed = [t for t in done if t.user_attrs.get("resumed_from_epoch")]
    assert len(resumed) == 1 and resumed[0].user_attrs["resumed_from_epoch"] >= 1
    study = optuna.load_study(study_name=name, storage=url)
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert [t.params for t in failed] == [resumed[0].params]  # the lost one, retried once
    assert fail_reason(failed[0]) == LOST_REASON  # it died without a word


@pytest.mark.real_data
def test_a_worker_whose_trial_was_failed_as_stale_drops_it_and_goes_on(
    real_data_dir: Path, tmp_path: Path
) -> None:
    # A worker that was suspended past the grace period (or cut off from the database) comes
    # back to find its trial failed by another worker and its retry queued.
    url, name, artifacts = f"sqlite:///{tmp_path / 'db.sqlite'}", "taken", tmp_path / "art"
    proc = _start(name, url, real_data_dir, artifacts)
    _wait_for_checkpoint(artifacts, proc)
    storage = open_storage(url, create=False)
    study = optuna.load_study(study_name=name, storage=storage)
    (running,) = study.get_trials(states=(TrialState.RUNNING,))
    fail_as_lost(storage, running._trial_id)
    retry_callback(3)(study, storage.get_trial(running._trial_id))
    out, err = proc.communicate(timeout=300)

    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert f"trial {running.number} was failed for missed heartbeats" in out
    done = _complete(url, name)
    assert len(done) == 2  # the budget, and no more: the dropped attempt left no result
    (retried,) = [t for t in done if original_trial_number(t) == running.number != t.number]
    assert retried.params == running.params
    assert retried.user_attrs["resumed_from_epoch"] >= 1


def _wait_for_training(
    db: Path, name: str, proc: subprocess.Popen[str], timeout: float = 300
) -> optuna.trial.FrozenTrial:
    """The first RUNNING trial of study ``name`` once its worker has begun training it."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"advhpo exited early:\n{err}")
        try:
            storage = open_storage(f"sqlite:///{db}", create=False)
            studies = [s.study_name for s in storage.get_all_studies()]
        except StorageError:
            studies = []  # the launcher has not made the file, or its tables, yet
        if name in studies:
            study = optuna.load_study(study_name=name, storage=storage)
            for trial in study.get_trials(states=(TrialState.RUNNING,)):
                if "worker_pid" in trial.user_attrs:  # its worker is setting it up to train
                    return trial
        time.sleep(0.2)
    raise AssertionError("no trial began training in time")


def _fail_in_dashboard(storage: optuna.storages.BaseStorage, trial_id: int) -> None:
    """Press optuna-dashboard's "Fail Trial" button: its API call, on a real server."""
    server = make_dashboard_server(storage, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        request = urllib.request.Request(
            f"{server_url(server)}api/trials/{trial_id}/tell",
            data=json.dumps({"state": "Fail"}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 204
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.real_data
def test_a_trial_failed_in_optuna_dashboard_stops_at_once_and_is_not_retried(
    real_data_dir: Path, tmp_path: Path
) -> None:
    # One long epoch per trial: a worker that noticed only at the epoch's end would train on
    # for the whole epoch after the click.
    url, name, artifacts = f"sqlite:///{tmp_path / 'db.sqlite'}", "by-hand", tmp_path / "art"
    proc = _start(
        name, url, real_data_dir, artifacts, "--trials", "1", "--epochs", "1",
        "--train-subset", "30000",
    )  # fmt: skip
    trial = _wait_for_training(tmp_path / "db.sqlite", name, proc)
    storage = open_storage(url, create=False)
    _fail_in_dashboard(storage, trial._trial_id)
    failed_at = datetime.now()
    out, err = proc.communicate(timeout=300)

    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    assert f"trial {trial.number} was failed from outside advhpo" in out, out
    trials = optuna.load_study(study_name=name, storage=url).get_trials()
    seen = [(t.number, t.state.name, fail_reason(t)) for t in trials]
    (failed,) = [t for t in trials if t.state == TrialState.FAIL]
    assert failed.number == trial.number and fail_reason(failed) == OUTSIDE_REASON, seen
    assert [original_trial_number(t) for t in trials].count(trial.number) == 1, seen  # no retry
    (done,) = [t for t in trials if t.state == TrialState.COMPLETE]  # the budget, met anew
    assert done.datetime_start is not None
    # The worker let the failed trial go within a heartbeat (1 s here), long before an epoch
    # like the one the next trial trained would have ended.
    gap = (done.datetime_start - failed_at).total_seconds()
    assert gap < done.user_attrs["train_seconds"] / 2, (gap, done.user_attrs["train_seconds"])


@pytest.mark.real_data
def test_ctrl_c_checkpoints_and_resume_finishes_the_study(
    real_data_dir: Path, tmp_path: Path
) -> None:
    url, name, artifacts = f"sqlite:///{tmp_path / 'db.sqlite'}", "interrupted", tmp_path / "art"
    proc = _start(name, url, real_data_dir, artifacts, "--cost")
    _wait_for_checkpoint(artifacts, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    # Not a success: the budget is unmet, and a script chaining commands must see it.
    assert proc.returncode == 128 + signal.SIGINT, err
    assert "interrupted (stopped by SIGINT)" in err and f"advhpo resume {name}" in err, err
    assert "Traceback" not in err, err
    study = optuna.load_study(study_name=name, storage=url)
    states = [t.state for t in study.get_trials()]
    assert TrialState.RUNNING not in states  # nothing left running
    assert TrialState.WAITING in states  # the interrupted trial is queued again

    _resume(name, url, real_data_dir, artifacts)
    done = _complete(url, name)
    assert len(done) == 2
    (resumed,) = [t for t in done if t.user_attrs.get("resumed_from_epoch")]
    # The cost objective counts the training before the interruption too.
    assert resumed.values is not None and len(resumed.values) == 3
    history = resumed.user_attrs["epoch_history"][0]  # restored epochs included
    assert len(history) == 4
    assert [r["epoch"] for r in resumed.user_attrs["epoch_values"]] == [1, 2, 3, 4]
    # The worker left its sampler's random streams for the next resume.
    rdb = open_storage(url, create=False)
    system = rdb.get_study_system_attrs(rdb.get_study_id_from_name(name))
    assert any(k.startswith("advhpo:sampler_state:") for k in system)
    assert resumed.values[2] == resumed.user_attrs["train_seconds"]
    assert resumed.values[2] >= sum(e["seconds"] for e in history)


@pytest.mark.real_data
def test_two_launchers_on_one_host_do_not_replay_each_other_s_proposals(
    real_data_dir: Path, tmp_path: Path
) -> None:
    # Two terminals (or two --scale'd containers sharing the host's name) each run worker 0:
    # by host and index alone they would share one seed and train the same trials twice.
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    (tmp_path / "space.toml").write_text(SMALL_SPACE)
    argv = ["run", "twice", "--dataset", "mnist", "--storage", url, "--trials", "4",
            "--sampler", "random", "--space", str(tmp_path / "space.toml"), *TINY,
            "--data-dir", str(real_data_dir), "--offline", "--quiet"]  # fmt: skip
    advhpo(*argv, "--create-only")
    launchers = [
        subprocess.Popen([sys.executable, "-m", "advhpo", *argv, "--workers", "1"])
        for _ in range(2)
    ]
    assert [p.wait(timeout=600) for p in launchers] == [0, 0]
    done = _complete(url, "twice")
    assert len(done) == 4
    assert len({t.user_attrs["worker_pid"] for t in done}) == 2
    params = [tuple(sorted(t.params.items())) for t in done]
    assert len(set(params)) == 4


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "s", "--dataset", "svhn"], "--dataset"),
        (["run", "s", "--dataset", "mnist", "--eval-eps", "2"], "--eval-eps"),
        (["run", "s", "--dataset", "mnist", "--storage", "not a url"], "malformed"),
        (["status", "s", "--storage", "postgresql://u:hunter2@127.0.0.1:1/db"], "cannot open"),
    ],
)
def test_bad_input_is_one_line_and_non_zero(args: list[str], needle: str) -> None:
    proc = advhpo(*args, check=False, timeout=60)
    assert proc.returncode != 0
    assert proc.stderr.count("\n") == 1 and needle in proc.stderr
    assert "hunter2" not in proc.stderr + proc.stdout


def test_status_of_a_missing_database_creates_nothing(tmp_path: Path) -> None:
    db = tmp_path / "nothing.db"
    proc = advhpo("status", "s", "--storage", f"sqlite:///{db}", check=False, timeout=60)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert not db.exists()


def test_unknown_study_is_one_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    optuna.create_study(study_name="other", storage=open_storage(url))
    proc = advhpo("status", "missing", "--storage", url, check=False, timeout=60)
    assert proc.returncode == 1 and "no study named 'missing'" in proc.stderr


def test_missing_data_fails_before_any_database_is_created(tmp_path: Path) -> None:
    db = tmp_path / "study.db"
    proc = advhpo(
        "run", "s", "--dataset", "mnist", "--storage", f"sqlite:///{db}", "--data-dir",
        str(tmp_path / "no-data"), "--offline", check=False, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "offline" in proc.stderr
    assert not db.exists()
