"""docker-compose.yml read as Docker Compose reads it, and its services as local processes.

No Docker engine exists on the test machines, so the tests take the compose file apart instead:
``${VAR}`` substitution from an env file, the image's entrypoint from the Dockerfile, and each
service turned into the local command Docker would run (volumes mapped to local folders, the
PostgreSQL host to the test server). Tests that run the deployment therefore break when the
compose file drifts from the CLI.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import socket
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import URL, make_url

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"

# The study settings the tests give the compose file through its .env variables.
TINY_STUDY = {
    "ADVHPO_DATASET": "mnist",
    "ADVHPO_EPOCHS": "1",
    "ADVHPO_TRAIN_SUBSET": "200",
    "ADVHPO_EVAL_SUBSET": "50",
    "ADVHPO_EPOCH_EVAL": "0",
}


class ComposeError(Exception):
    """A ``${VAR:?message}`` whose variable is unset, as ``docker compose`` refuses it."""


# -- reading the files -------------------------------------------------------------------------


def read_dotenv(path: Path) -> dict[str, str]:
    """``KEY=value`` lines of an env file (comments and blank lines skipped, quotes removed)."""
    values: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=value: {raw!r}"
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


_NAME = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*")


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's variable substitution of one string.

    Supports what the compose specification lists: ``$VAR``, ``${VAR}``, ``${VAR:-default}``,
    ``${VAR-default}``, ``${VAR:?err}``, ``${VAR?err}``, ``${VAR:+alt}``, ``${VAR+alt}``,
    nesting inside the operand, and ``$$`` for a literal ``$``. An unset plain variable becomes
    the empty string, as in Compose.

    Raises:
        ComposeError: A required variable (``?`` forms) is unset or empty.
    """
    out: list[str] = []
    i = 0
    while i < len(value):
        char = value[i]
        if char != "$":
            out.append(char)
            i += 1
            continue
        nxt = value[i + 1 : i + 2]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "{":
            end = _closing_brace(value, i + 2)
            out.append(_expand(value[i + 2 : end], env))
            i = end + 1
        elif match := _NAME.match(value, i + 1):
            out.append(env.get(match.group(), ""))
            i = match.end()
        else:
            out.append("$")
            i += 1
    return "".join(out)


def _closing_brace(value: str, start: int) -> int:
    depth = 1
    for j in range(start, len(value)):
        if value.startswith("${", j):
            depth += 1
        elif value[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    raise AssertionError(f"unbalanced braces in {value!r}")


def _expand(body: str, env: Mapping[str, str]) -> str:
    match = _NAME.match(body)
    assert match, f"bad substitution ${{{body}}}"
    name, rest = match.group(), body[match.end() :]
    current = env.get(name)
    for op in (":-", ":?", ":+", "-", "?", "+"):
        if rest.startswith(op):
            operand = interpolate(rest[len(op) :], env)
            # ":" forms treat an empty value as unset.
            present = bool(current) if op.startswith(":") else current is not None
            if op.endswith("-"):
                return current if present and current is not None else operand
            if op.endswith("?"):
                if not present or current is None:
                    raise ComposeError(f"{name}: {operand}")
                return current
            return operand if present else ""
    assert rest == "", f"unsupported substitution ${{{body}}}"
    return current or ""


def _interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    """Substitute in every string value (Compose leaves mapping keys alone)."""
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [_interpolate_tree(item, env) for item in node]
    if isinstance(node, dict):
        return {key: _interpolate_tree(item, env) for key, item in node.items()}
    return node


def raw_compose() -> dict[str, Any]:
    """docker-compose.yml parsed (YAML anchors and merge keys resolved), not substituted."""
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict)
    return data


def load_compose(env: Mapping[str, str]) -> dict[str, Any]:
    """docker-compose.yml as ``docker compose config`` sees it with ``env`` as its .env."""
    result = _interpolate_tree(raw_compose(), env)
    assert isinstance(result, dict)
    return result


def image_entrypoint() -> list[str]:
    """The JSON-form ``ENTRYPOINT`` of the Dockerfile."""
    lines = [ln for ln in DOCKERFILE.read_text().splitlines() if ln.startswith("ENTRYPOINT")]
    assert len(lines) == 1, "the Dockerfile needs exactly one ENTRYPOINT"
    entry = json.loads(lines[0].removeprefix("ENTRYPOINT").strip())
    assert isinstance(entry, list) and all(isinstance(a, str) for a in entry)
    return entry


def as_list(value: str | list[str] | None) -> list[str]:
    """A compose command/entrypoint in list form (a string is split as Compose splits it)."""
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    return [str(v) for v in value]


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's ``environment`` (mapping or ``KEY=value`` list form) as strings."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def argv(service: Mapping[str, Any]) -> list[str]:
    """What the container runs: its entrypoint (or the image's) followed by its command."""
    entry = as_list(service.get("entrypoint")) or image_entrypoint()
    return entry + as_list(service.get("command"))


# -- running a service locally ------------------------------------------------------------------

# Executables of the image, as found in the test's own environment.
_BIN = Path(sys.executable).parent
_EXECUTABLES = {
    "advhpo": [sys.executable, "-m", "advhpo"],
    "python": [sys.executable],
    "optuna-dashboard": [str(_BIN / "optuna-dashboard")],
}


@dataclass
class LocalService:
    """One compose service as a local process: what Docker would run, on this machine."""

    name: str
    args: list[str]
    env: dict[str, str]
    published: list[tuple[str, int, int]] = field(default_factory=list)  # ip, host, container

    def popen(self, log: Path) -> subprocess.Popen[bytes]:
        """Start it with stdout and stderr in ``log``."""
        with log.open("wb") as out:
            return subprocess.Popen(
                self.args, env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent
            )

    def run(self, log: Path, timeout: float) -> subprocess.CompletedProcess[bytes]:
        """Run it to the end; an exit other than 0 fails the test with its output."""
        with log.open("wb") as out:
            proc = subprocess.run(
                self.args,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=log.parent,
                timeout=timeout,
                check=False,
            )
        if proc.returncode != 0:
            pytest.fail(f"service {self.name} exited {proc.returncode}:\n{log.read_text()}")
        return proc


def localize(
    compose: Mapping[str, Any],
    name: str,
    *,
    volumes: Mapping[str, Path],
    server: URL,
    extra_env: Mapping[str, str] | None = None,
) -> LocalService:
    """Turn service ``name`` into the local process Docker would start for it.

    Named volumes become the folders in ``volumes`` (a volume the test did not provide fails),
    bind mounts their source files; every path under a mount point is rewritten to the local
    folder. PostgreSQL URLs are pointed at ``server`` (the service name ``postgres`` and the
    host's 127.0.0.1:5432 both stand for it). The image's executables are the test venv's.
    """
    service = compose["services"][name]
    mounts: dict[str, Path] = {}
    for spec in service.get("volumes", []):
        source, target, *_ = str(spec).split(":")
        if source.startswith((".", "/")):
            mounts[target] = (COMPOSE_FILE.parent / source).resolve()
        else:
            assert source in volumes, f"{name}: the test maps no folder for volume {source!r}"
            mounts[target] = volumes[source]

    def local(value: str) -> str:
        for target, path in mounts.items():
            if value == target or value.startswith(target + "/"):
                return str(path) + value[len(target) :]
        if value.startswith("postgresql"):
            url = make_url(value)
            assert url.host in ("postgres", "127.0.0.1"), f"{name}: a database at {url.host}"
            return url.set(host=server.host, port=server.port).render_as_string(False)
        return value

    args = [local(a) for a in argv(service)]
    assert args[0] in _EXECUTABLES, f"{name}: unknown executable {args[0]!r} in the image"
    args = _EXECUTABLES[args[0]] + args[1:]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ADVHPO_", "PG"))}
    env |= {k: local(v) for k, v in environment(service).items()} | dict(extra_env or {})
    published = []
    for port in service.get("ports", []):
        ip, host_port, container_port = str(port).split(":")
        published.append((ip, int(host_port), int(container_port)))
    return LocalService(name, args, env, published)


def free_port() -> int:
    """A TCP port nobody listens on right now (a teammate may hold 8080)."""
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        assert isinstance(port, int)
        return port


def publish(service: LocalService) -> str:
    """Emulate ``ports: ip:host:container``: listen on the published IP, on a free port.

    Returns:
        The base URL the service answers on.
    """
    ((ip, _, container_port),) = service.published
    port = free_port()
    args = service.args
    for i, arg in enumerate(args[:-1]):
        if arg == "--port":
            assert args[i + 1] == str(container_port), "serves on a port it does not publish"
            args[i + 1] = str(port)
        elif arg == "--host":
            args[i + 1] = ip
    return f"http://{ip}:{port}"


def compose_env(server: URL, **values: str) -> dict[str, str]:
    """The .env of a test deployment: .env.example, tiny trials, the test server's credentials."""
    env = read_dotenv(ENV_EXAMPLE) | TINY_STUDY
    env |= {
        "POSTGRES_USER": server.username or "postgres",
        "POSTGRES_DB": server.database or "postgres",
        # Trust authentication ignores it; compose requires one.
        "POSTGRES_PASSWORD": server.password or "unused-with-trust-auth",
    }
    return env | values
