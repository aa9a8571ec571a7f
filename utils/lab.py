"""The MLflow UI inside JupyterLab, at ``<lab>/mlflow/``, also on Binder.

jupyter-server-proxy finds :func:`setup_mlflow` through the entry point group
``jupyter_serverproxy_servers`` (``pyproject.toml``): an **MLflow UI** launcher tile whose
first request starts the course's ``mlflow server`` for the workspace on a free port.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from utils.tracking import DEFAULT_HOST, LAB_SERVER_RECORD
from utils.workspace import get_workspace

PROXY_NAME = "mlflow"
LAUNCHER_TITLE = "MLflow UI"
ICON_PATH = Path(__file__).with_name("mlflow-ui.svg")


def _command(port: int, base_url: str = "/") -> list[str]:
    # Called at the first request to /mlflow/, with the port the proxy picked. The server is
    # noted in the workspace, so that notebooks use it too (utils.tracking_server).
    record = {"url": f"http://{DEFAULT_HOST}:{port}",
              "ui_base": f"{base_url.rstrip('/')}/{PROXY_NAME}"}
    (get_workspace().logs_dir / LAB_SERVER_RECORD).write_text(json.dumps(record), encoding="utf-8")
    return [sys.executable, "-m", "utils.tracking", "--workspace-port", str(port)]


def setup_mlflow() -> dict:
    """The jupyter-server-proxy configuration of ``<lab>/mlflow/``."""
    loopback = f"http://{DEFAULT_HOST}:{{port}}"
    return {
        "command": _command,
        "timeout": 120.0,  # a new store's migrations take seconds on a small machine
        # The GenAI job runner forks extra processes the course never uses.
        "environment": {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        # The lab forwards the browser's Host and Origin (on Binder, the hub's public name,
        # unknown in advance), which MLflow refuses (DNS-rebinding and CSRF checks); so each
        # request is presented as coming from the server's own loopback address. Safe: the
        # server listens on 127.0.0.1 only, the lab forwards only with its token or login
        # cookie, and MLflow's API takes only JSON bodies, which a foreign page cannot send
        # without a CORS preflight, which the lab refuses (a preflight carries no login).
        "request_headers_override": {"Host": f"{DEFAULT_HOST}:{{port}}", "Origin": loopback},
        "launcher_entry": {"enabled": True, "title": LAUNCHER_TITLE, "icon_path": str(ICON_PATH)},
        "new_browser_tab": True,  # the UI needs the room
    }
