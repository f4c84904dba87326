"""PostgreSQL restarted in the middle of a study: the deployment finishes it, losing nothing.

Two worker hosts run the compose file's commands; once a trial is COMPLETE and another is
RUNNING, the server is restarted with ``pg_ctlcluster`` (which drops every connection). Like
the compose file's ``restart: on-failure``, a host whose process exits non-zero is started
again. The server is restarted once per test run, for both tests below: a restart disturbs other
tests using the same server.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from advhpo.storage import original_trial_number
from tests.deploy._compose import (
    LocalService,
    compose_env,
    load_compose,
    localize,
)
from tests.deploy._running import delete_study, load_trials, stop, wait_for
from tests.search._factories import SMALL_SPACE

BUDGET = 3
HOSTS = ("host-a", "host-b")
# Heartbeats every second: a trial whose worker died is retried after 8 s, not the default 60.
GRACE_PERIOD = "8"
MAX_RESTARTS = 3  # per host; Docker would go on, with growing back-off
# Trials long enough that a poll sees one RUNNING beside a COMPLETE one. At the tiny study's one
# epoch of 200 images a trial computes for ~0.3 s, and one full-suite run never saw both states
# at once; 30 epochs are ~2 s of training per trial.
EPOCHS = "30"


def _cluster(server: URL) -> list[str]:
    """``pg_ctlcluster VERSION NAME`` of the local cluster serving ``server``; skips if none."""
    if server.host not in ("127.0.0.1", "localhost") or shutil.which("pg_lsclusters") is None:
        pytest.skip("restarting PostgreSQL needs a local cluster and pg_ctlcluster")
    if os.geteuid() != 0:
        pytest.skip("restarting PostgreSQL needs root")
    listing = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=True)
    for line in listing.stdout.splitlines():
        version, cluster, port, *_ = line.split()
        if int(port) == (server.port or 5432):
            return ["pg_ctlcluster", "--skip-systemctl-redirect", version, cluster]
    pytest.skip(f"no local cluster listens on port {server.port}")


def _ready(server: URL) -> bool:
    args = ["pg_isready", "-q", "-h", str(server.host), "-p", str(server.port or 5432)]
    return subprocess.run(args, check=False).returncode == 0


@contextlib.contextmanager
def _server_left_running(server: URL, cluster: list[str]) -> Iterator[None]:
    """Whatever happens inside, the server is running again afterwards."""
    try:
        yield
    finally:
        if not _ready(server):
            subprocess.run([*cluster, "start"], check=False)
        wait_for(lambda: _ready(server), 60, "PostgreSQL to accept connections again")


def _started_at(server: URL) -> float:
    engine = create_engine(server, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return float(
                conn.execute(
                    text("SELECT extract(epoch FROM pg_postmaster_start_time())")
                ).scalar_one()
            )
    finally:
        engine.dispose()


def _trials(server: URL, name: str) -> list[FrozenTrial]:
    """The study's trials; none while the server is down (the next poll tries again)."""
    try:
        return load_trials(server, name)
    except Exception:
        return []


@dataclass
class Outcome:
    """What the two hosts did around the restart."""

    before: dict[int, list[float]]  # trial number -> values of the trials COMPLETE at restart
    running_at_restart: int
    restarts: dict[str, int]  # host -> non-zero exits that needed a restart
    logs: dict[str, str]
    trials: list[FrozenTrial]
    server_restarted: bool


@pytest.fixture(scope="module")
def outcome(pg_url: URL, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    """Run the study on two hosts, restart the server in its middle, and see it to the end."""
    data = os.environ.get("ADVHPO_DATA_DIR")
    if not data:
        pytest.skip("ADVHPO_DATA_DIR not set: real MNIST not available")
    cluster = _cluster(pg_url)
    tmp = tmp_path_factory.mktemp("pg-restart")
    (tmp / "space.toml").write_text(SMALL_SPACE)
    name = f"advhpo-deploy-{uuid.uuid4().hex[:12]}"

    def service(kind: str, host: str) -> LocalService:
        env = compose_env(
            pg_url,
            ADVHPO_STUDY=name,
            ADVHPO_TRIALS=str(BUDGET),
            ADVHPO_EPOCHS=EPOCHS,
            ADVHPO_SPACE_FILE=str(tmp / "space.toml"),
            ADVHPO_HOST=host,
            ADVHPO_GRACE_PERIOD=GRACE_PERIOD,
        )
        volumes = {"datasets": Path(data), "artifacts": tmp / host}
        return localize(load_compose(env), kind, volumes=volumes, server=pg_url)

    service("init", HOSTS[0]).run(tmp / "init.log", timeout=120)
    workers = {host: service("worker", host) for host in HOSTS}
    logs = {host: "" for host in HOSTS}
    restarts = dict.fromkeys(HOSTS, 0)

    def start(host: str) -> subprocess.Popen[bytes]:
        return workers[host].popen(tmp / f"{host}-{restarts[host]}.log")

    procs = {host: start(host) for host in HOSTS}
    try:
        with _server_left_running(pg_url, cluster):

            def mid_study() -> bool:
                states = [t.state for t in _trials(pg_url, name)]
                return TrialState.COMPLETE in states and TrialState.RUNNING in states

            wait_for(mid_study, 240, "a COMPLETE and a RUNNING trial", list(procs.values()))
            trials = _trials(pg_url, name)
            before = {t.number: list(t.values) for t in trials if t.state == TrialState.COMPLETE}
            running = sum(t.state == TrialState.RUNNING for t in trials)
            started = _started_at(pg_url)
            subprocess.run([*cluster, "restart"], check=True, capture_output=True, timeout=60)
        restarted = _started_at(pg_url) > started

        # The hosts go on; one that exits non-zero is started again, as Docker would.
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            codes = {host: proc.poll() for host, proc in procs.items()}
            if all(
                c == 0 or (c is not None and restarts[h] >= MAX_RESTARTS) for h, c in codes.items()
            ):
                break
            for host, code in codes.items():
                if code not in (None, 0) and restarts[host] < MAX_RESTARTS:
                    logs[host] += (tmp / f"{host}-{restarts[host]}.log").read_text()
                    restarts[host] += 1
                    procs[host] = start(host)
            time.sleep(0.5)
        for host in HOSTS:
            logs[host] += (tmp / f"{host}-{restarts[host]}.log").read_text()
        yield Outcome(
            before=before,
            running_at_restart=running,
            restarts={h: n for h, n in restarts.items() if n},
            logs=logs,
            trials=_trials(pg_url, name),
            server_restarted=restarted,
        )
    finally:
        for proc in procs.values():
            stop(proc)
        delete_study(pg_url, name)


@pytest.mark.real_data
def test_the_study_completes_with_nothing_lost(outcome: Outcome) -> None:
    assert outcome.server_restarted and outcome.before and outcome.running_at_restart
    trials = outcome.trials
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(done) == BUDGET, outcome.logs
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    # What was complete before the restart is still there, unchanged.
    for number, values in outcome.before.items():
        assert trials[number].state == TrialState.COMPLETE and trials[number].values == values
    # A trial cut off by the restart was retried with its parameters until it completed (one
    # cut off before it had any parameters lost no work: its retry is sampled afresh).
    for t in trials:
        if t.state == TrialState.FAIL and t.params:
            retries = [d for d in done if original_trial_number(d) == original_trial_number(t)]
            assert [d.params for d in retries] == [t.params], f"trial {t.number} was lost"


@pytest.mark.real_data
def test_workers_reconnect_by_themselves(outcome: Outcome) -> None:
    assert outcome.restarts == {}, "\n".join(outcome.logs.values())
