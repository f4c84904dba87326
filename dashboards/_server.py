"""optuna-dashboard on a study storage, served by a threaded WSGI server we bind ourselves.

Binding here (rather than in ``optuna_dashboard.run_server``) lets the caller learn the real
port before serving (``port=0`` picks a free one), turn a busy port into one clear error, and
keep per-request log lines off the terminal.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from optuna.storages import BaseStorage

from advhpo._errors import ConfigError

DEFAULT_HOST = "127.0.0.1"
"""Loopback only: the dashboard can edit and delete studies, so it is not exposed by default."""

DEFAULT_PORT = 8080


class _ThreadedServer(ThreadingMixIn, WSGIServer):
    # The React app fetches several API routes at once; one thread per request keeps a slow
    # trial query from stalling the page. Daemon threads let Ctrl-C end the process at once.
    daemon_threads = True


class _ThreadedServer6(_ThreadedServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def make_dashboard_server(
    storage: BaseStorage,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    artifacts: Path | None = None,
) -> WSGIServer:
    """Bind optuna-dashboard for ``storage`` to ``host:port``; call ``serve_forever()`` next.

    Args:
        storage: The study storage (e.g. from :func:`advhpo.storage.open_storage`).
        host: Interface to listen on. Default ``127.0.0.1`` (this machine only).
        port: TCP port; 0 picks a free one (see :func:`server_url`). Default 8080.
        artifacts: Folder of Optuna artifacts the dashboard lists and accepts uploads into
            (``optuna.artifacts.FileSystemArtifactStore``); ``None``: no artifact store.

    Returns:
        The bound server; close it with ``server_close()``.

    Raises:
        ConfigError: The port is in use or not allowed, or the host is not an address of
            this machine.
    """
    import optuna_dashboard
    from optuna.artifacts import FileSystemArtifactStore

    store = None if artifacts is None else FileSystemArtifactStore(str(artifacts))
    app = optuna_dashboard.wsgi(storage, artifact_store=store)
    server_class = _ThreadedServer6 if ":" in host else _ThreadedServer
    try:
        return make_server(host, port, app, server_class=server_class, handler_class=_QuietHandler)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise ConfigError(f"port {port} on {host} is in use; pick another with --port") from e
        if e.errno == errno.EACCES:
            raise ConfigError(f"port {port} needs privileges; pick one above 1023") from e
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror or e}") from e


def server_url(server: WSGIServer) -> str:
    """``http://host:port/`` of a bound server, with the port it really got."""
    host, port = server.server_address[:2]
    text = host.decode() if isinstance(host, bytes) else str(host)
    return f"http://[{text}]:{port}/" if ":" in text else f"http://{text}:{port}/"


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or address) is reachable from this machine only."""
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos)
