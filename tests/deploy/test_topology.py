"""The compose topology without Docker: one PostgreSQL, two worker hosts and the dashboard.

Every process runs the command and environment its compose service declares (see
``_compose.localize``): the deployment as it would run, minus the containers.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy.engine import URL

from advhpo.search import stored_settings
from advhpo.storage import open_storage
from tests.deploy._compose import LocalService, compose_env, load_compose, localize, publish
from tests.deploy._running import ConnectionCounter, load_trials, stop, wait_for

BUDGET = 4
HOSTS = ("host-a", "host-b")
# What one host with one worker process may hold (README "Scale out"): the launcher's engine
# and the worker's, each pool 2 + overflow 2.
MAX_CONNECTIONS_PER_HOST = 4 + 4


def _studies(base: str) -> list[str]:
    with urllib.request.urlopen(f"{base}/api/studies", timeout=5) as response:
        body: dict[str, Any] = json.load(response)
    return [s["study_name"] for s in body["study_summaries"]]


def _dashboard_lists(base: str, name: str) -> bool:
    try:
        return name in _studies(base)
    except OSError:  # not listening yet
        return False


@pytest.mark.real_data
def test_two_hosts_share_one_study_and_meet_the_budget_exactly(
    pg_url: URL, study: str, space_file: Path, real_data_dir: Path, tmp_path: Path
) -> None:
    def service(name: str, host: str = HOSTS[0]) -> LocalService:
        env = compose_env(
            pg_url,
            ADVHPO_STUDY=study,
            ADVHPO_TRIALS=str(BUDGET),
            ADVHPO_SPACE_FILE=str(space_file),
            ADVHPO_HOST=host,
        )
        volumes = {"datasets": real_data_dir, "artifacts": tmp_path / host / "artifacts"}
        # Each service of each host is told apart on the server by its libpq application name.
        app = {"PGAPPNAME": f"{study}-{name}@{host}"}
        return localize(load_compose(env), name, volumes=volumes, server=pg_url, extra_env=app)

    # Compose starts the two one-shot jobs side by side: neither depends on the other.
    jobs = {job: service(job).popen(tmp_path / f"{job}.log") for job in ("data", "init")}
    for job, proc in jobs.items():
        code = proc.wait(timeout=120)
        assert code == 0, f"{job} exited {code}:\n{(tmp_path / f'{job}.log').read_text()}"
    storage = open_storage(pg_url.render_as_string(hide_password=False), create=False)
    try:
        created = optuna.load_study(study_name=study, storage=storage)
        assert stored_settings(created).budget == BUDGET and not created.trials
    finally:
        storage.engine.dispose()

    dashboard = service("dashboard")
    base = publish(dashboard)
    procs = [dashboard.popen(tmp_path / "dashboard.log")]
    try:
        with ConnectionCounter(pg_url, study) as connections:
            for host in HOSTS:
                (tmp_path / host).mkdir()
                procs.append(service("worker", host).popen(tmp_path / host / "worker.log"))
            # Every `docker compose up` runs init again, here while the workers run: on the
            # existing study it only checks the settings and exits 0.
            service("init").run(tmp_path / "init-again.log", timeout=120)
            wait_for(lambda: _dashboard_lists(base, study), 60, "the dashboard", procs[:1])
            for proc, host in zip(procs[1:], HOSTS, strict=True):
                code = proc.wait(timeout=240)
                log = (tmp_path / host / "worker.log").read_text()
                assert code == 0, f"{host} exited {code}:\n{log}"
    finally:
        for proc in procs:
            stop(proc)

    trials = load_trials(pg_url, study)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(done) == BUDGET
    assert {t.user_attrs["host"] for t in done} == set(HOSTS)  # both hosts contributed
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    # Overshoot trials (two hosts asking at once near the end) step back as `skipped`.
    assert all("skipped" in t.user_attrs for t in trials if t.state == TrialState.PRUNED)
    peaks = {app.removeprefix(f"{study}-"): n for app, n in connections.peak.items()}
    workers = {k: v for k, v in peaks.items() if k.startswith("worker@")}
    assert set(workers) == {f"worker@{host}" for host in HOSTS}, peaks
    assert all(1 <= n <= MAX_CONNECTIONS_PER_HOST for n in workers.values()), peaks
