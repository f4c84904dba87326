"""docker-compose.yml, the Dockerfile and .dockerignore, checked without a Docker engine."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import typer

from advhpo.cli import app
from tests.deploy._compose import (
    COMPOSE_FILE,
    DOCKERFILE,
    ENV_EXAMPLE,
    ROOT,
    ComposeError,
    argv,
    environment,
    image_entrypoint,
    load_compose,
    raw_compose,
    read_dotenv,
)

SENTINEL = "pw-4f1c7a9e-sentinel"  # a password that must only reach the two env vars below
PROJECT_SERVICES = ("data", "init", "dashboard", "worker")


def _compose(**values: str) -> dict[str, Any]:
    return load_compose(read_dotenv(ENV_EXAMPLE) | {"POSTGRES_PASSWORD": SENTINEL} | values)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The compose file as ``docker compose config`` shows it with .env.example's values."""
    return _compose()


def test_the_five_services_and_their_volumes_are_declared(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"postgres", "data", "init", "dashboard", "worker"}
    assert set(compose["volumes"]) == {"pgdata", "datasets", "artifacts"}
    assert "pgdata:/var/lib/postgresql/data" in compose["services"]["postgres"]["volumes"]
    worker = compose["services"]["worker"]["volumes"]
    # Workers read the dataset that `data` fetched (read-only) and keep their checkpoints.
    assert "datasets:/data:ro" in worker and "artifacts:/artifacts" in worker
    assert "datasets:/data" in compose["services"]["data"]["volumes"]


def test_services_start_after_the_database_is_healthy_and_the_one_time_jobs_are_done(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    wanted = {
        "init": {"postgres": "service_healthy"},
        "dashboard": {"postgres": "service_healthy", "init": "service_completed_successfully"},
        "worker": {
            "postgres": "service_healthy",
            "init": "service_completed_successfully",
            "data": "service_completed_successfully",
        },
    }
    for name, deps in wanted.items():
        got = {dep: spec["condition"] for dep, spec in services[name]["depends_on"].items()}
        assert got == deps, name
    check = services["postgres"]["healthcheck"]
    assert "pg_isready" in " ".join(check["test"]) and check["retries"] >= 1
    # One-shot jobs must not be restarted, or `service_completed_successfully` never comes.
    assert all(services[job].get("restart", "no") == "no" for job in ("data", "init"))


def test_ports_are_published_on_127_0_0_1_only(compose: dict[str, Any]) -> None:
    published = {}
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            ip, host_port, container_port = str(port).split(":")
            assert ip == "127.0.0.1", f"{name} publishes {port} beyond this host"
            published[name] = (int(host_port), int(container_port))
        if service.get("network_mode") == "host":
            # On the host's network a service listening on 0.0.0.0 would be reachable from
            # everywhere: only processes that listen on nothing may use it.
            assert name in ("init", "worker") and "ports" not in service
    assert published == {"postgres": (5432, 5432), "dashboard": (8080, 8080)}
    dashboard = argv(compose["services"]["dashboard"])
    assert dashboard[dashboard.index("--port") + 1] == "8080"


def test_the_password_reaches_only_the_server_and_libpq(compose: dict[str, Any]) -> None:
    raw = COMPOSE_FILE.read_text()
    assert SENTINEL not in raw
    # Every credential-like setting is a ${VAR} reference to .env, never a literal.
    for key, value in re.findall(
        r"^\s*([A-Z_]*(?:PASSWORD|SECRET|TOKEN)[A-Z_]*):\s*(.*)$", raw, re.M
    ):
        assert re.fullmatch(r"\$\{[A-Z_]+(:\?[^}]*)?\}", value.strip()), f"{key}: {value}"
    assert "POSTGRES_HOST_AUTH_METHOD" not in raw  # no "trust" server
    assert not re.search(r"://[^/\s:@]+:[^@\s]+@", raw), "a URL with user:password@"
    for name, service in compose["services"].items():
        env = environment(service)
        allowed = {"PGPASSWORD", "POSTGRES_PASSWORD"}
        leaks = [k for k, v in env.items() if SENTINEL in v and k not in allowed]
        assert not leaks, f"{name} has the password in {leaks}"
        # Command lines are visible to every user of the host (ps, docker inspect).
        rest = {k: v for k, v in service.items() if k != "environment"}
        assert SENTINEL not in repr(rest), f"{name} has the password outside its environment"
    assert environment(compose["services"]["worker"])["PGPASSWORD"] == SENTINEL
    assert environment(compose["services"]["dashboard"])["PGPASSWORD"] == SENTINEL


def test_compose_refuses_to_start_without_a_password_in_env() -> None:
    example = read_dotenv(ENV_EXAMPLE)
    assert example["POSTGRES_PASSWORD"] == ""  # the example holds no secret, not even a default
    with pytest.raises(ComposeError, match="POSTGRES_PASSWORD"):
        load_compose(example)


def test_env_is_ignored_by_git_and_the_example_documents_every_variable() -> None:
    def ignored(path: str) -> bool:
        proc = subprocess.run(
            ["git", "check-ignore", "-q", path], cwd=ROOT, capture_output=True, check=False
        )
        assert proc.returncode in (0, 1), proc.stderr
        return proc.returncode == 0

    assert ignored(".env") and not ignored(".env.example")
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", repr(raw_compose())))
    assert "POSTGRES_PASSWORD" in used
    assert used - set(read_dotenv(ENV_EXAMPLE)) == set()


def test_workers_reserve_every_gpu_and_split_them_by_process(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    # `count: 1` would give every replica the same first GPU; advhpo pins one process per GPU.
    assert device["count"] == "all"
    args = argv(worker)
    assert args[args.index("--devices") + 1] == "auto"


def _parse(args: list[str]) -> None:
    """Parse ``advhpo ARGS`` with the real CLI, option callbacks included, running nothing."""
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    name, *rest = args
    assert name in group.commands, f"advhpo has no command {name!r}"
    group.commands[name].make_context(name, rest)  # raises click's UsageError/BadParameter


@pytest.mark.parametrize("service", ["init", "worker"])
def test_advhpo_commands_parse_with_the_cli(compose: dict[str, Any], service: str) -> None:
    args = argv(compose["services"][service])
    assert args[0] == "advhpo" == image_entrypoint()[0]
    _parse(args[1:])


@pytest.mark.parametrize(
    "bad",
    [
        ["resume", "s", "--no-such-option"],
        ["resume", "s", "--grace-period", "soon"],
        ["run", "s", "--dataset", "mnist", "--trials", "0"],  # a callback's check
        ["run", "s", "--trials", "5"],  # --dataset is required
    ],
)
def test_the_cli_check_rejects_what_advhpo_would_reject(bad: list[str]) -> None:
    # The check above is only worth something if the parser really validates.
    with pytest.raises(typer.TyperException):  # click's UsageError, as typer vendors it
        _parse(bad)
    with pytest.raises(AssertionError, match="no command"):
        _parse(["rerun", "s"])


def test_only_init_creates_the_study_and_workers_resume_it(compose: dict[str, Any]) -> None:
    commands = {name: argv(s) for name, s in compose["services"].items()}
    creators = [name for name, args in commands.items() if args[1:2] == ["run"]]
    assert creators == ["init"] and "--create-only" in commands["init"]
    worker, init = commands["worker"], commands["init"]
    assert worker[1] == "resume"  # never creates: it needs the study init made
    assert worker[2] == init[2]  # the same study
    storage = environment(compose["services"]["worker"])["ADVHPO_STORAGE"]
    assert environment(compose["services"]["init"])["ADVHPO_STORAGE"] == storage


def test_the_dashboard_and_data_commands_exist_in_the_image() -> None:
    compose = _compose()
    dashboard = argv(compose["services"]["dashboard"])
    assert dashboard[0] == "optuna-dashboard" and dashboard[1].startswith("postgresql+psycopg2://")
    exe = Path(sys.executable).parent / "optuna-dashboard"
    usage = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True).stdout
    for option in (a for a in dashboard if a.startswith("--")):
        assert option in usage
    data = argv(compose["services"]["data"])
    assert data[:2] == ["python", "-c"]
    compile(data[2], "<data service>", "exec")
    from advhpo import objectives

    assert callable(objectives.load_raw)


def test_the_shipped_search_space_is_valid() -> None:
    from advhpo.search import StudySettings, load_space_file

    space = load_space_file(ROOT / "space.toml")
    StudySettings(dataset="mnist", budget=1, eval_eps=0.3, space=space)  # validates the space


def test_every_project_service_runs_the_image_built_from_the_dockerfile(
    compose: dict[str, Any],
) -> None:
    for name in PROJECT_SERVICES:
        service = compose["services"][name]
        assert service["image"] == "advhpo:latest" and service["init"] is True
        build = service["build"]
        assert (COMPOSE_FILE.parent / build["context"] / build["dockerfile"]) == DOCKERFILE
    assert compose["services"]["postgres"]["image"].startswith("postgres:")


def test_the_dockerfile_builds_a_cuda_torch_image_for_a_non_root_user() -> None:
    text = DOCKERFILE.read_text().replace("\\\n", " ")  # join continued lines
    assert image_entrypoint() == ["advhpo"]
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"pip install .*torch==", text)
    # The project with its PostgreSQL driver (the postgres extra), which the compose URL names.
    assert re.search(r"pip install '/tmp/advhpo\[postgres\]'", text)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert any(req.startswith("psycopg2-binary") for req in extras["postgres"])
    # The Python the project requires and CI tests.
    python = re.search(r"^ARG PYTHON_VERSION=(\S+)", text, re.M)
    assert python and python.group(1) == "3.11"
    for mount in ("/data", "/artifacts"):  # named volumes inherit the owner of the mount point
        assert mount in text


def _dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether Docker leaves ``path`` (relative to the context) out, as BuildKit matches."""
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern.lstrip("!").strip("/")
        regex = ""
        for part in re.split(r"(\*\*/|\*\*|\*|\?)", body):
            regex += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(
                part, re.escape(part)
            )
        # A pattern excludes what it names and, for a folder, everything inside.
        if re.fullmatch(regex + "(?:/.*)?", path):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_secrets_and_bulk_out_but_not_the_package() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
    for path in (
        ".env",
        ".venv/bin/python",
        ".git/HEAD",
        "advhpo.db",
        "runs/mnist.db-wal",
        "data/MNIST/raw/train-images-idx3-ubyte.gz",
        "data/mnist.npz",
        "artifacts/study/trial_0.pt",
        "search/__pycache__/_worker.cpython-311.pyc",
        "advhpo.egg-info/PKG-INFO",
    ):
        assert _dockerignored(path, patterns), f"{path} would be sent to the build"
    # `pip install .` needs the metadata, the readme and every package folder.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    folders = set(pyproject["tool"]["setuptools"]["package-dir"].values())
    for path in ("pyproject.toml", "README.md", *(f"{f}/__init__.py" for f in folders)):
        assert (ROOT / path).exists() and not _dockerignored(path, patterns), path
