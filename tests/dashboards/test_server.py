"""The dashboard server: loopback by default, the real optuna-dashboard API, a light import."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable

import optuna
from optuna.trial import FrozenTrial

import advhpo.dashboards
from advhpo.dashboards import DEFAULT_HOST, is_loopback, make_dashboard_server, server_url
from advhpo.storage import open_storage


def test_it_binds_to_loopback_by_default_and_serves_the_study(
    sqlite_url: str,
    new_study: Callable[..., optuna.Study],
    trial_factory: Callable[..., FrozenTrial],
) -> None:
    new_study(sqlite_url, "served").add_trial(trial_factory(0.9, 0.5))
    server = make_dashboard_server(open_storage(sqlite_url, create=False), port=0)
    try:
        assert DEFAULT_HOST == "127.0.0.1" and server.server_address[0] == "127.0.0.1"
        url = server_url(server)
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0/")
        threading.Thread(target=server.serve_forever, daemon=True).start()
        with urllib.request.urlopen(f"{url}api/studies", timeout=30) as response:
            studies = json.load(response)["study_summaries"]
        assert [s["study_name"] for s in studies] == ["served"]
    finally:
        server.shutdown()
        server.server_close()


def test_loopback_names_and_addresses() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0")


def test_every_public_name_resolves() -> None:
    for name in advhpo.dashboards.__all__:
        assert getattr(advhpo.dashboards, name) is not None


def test_the_dashboard_does_not_import_torch() -> None:
    # `advhpo dashboard` should start at once; the report's modules import torch and plotly.
    code = (
        "import sys; from advhpo.dashboards import make_dashboard_server; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
