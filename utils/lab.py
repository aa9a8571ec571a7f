"""The MLflow UI inside JupyterLab, through the lab's own proxy (jupyter-server-proxy).

The course package registers :func:`setup_mlflow` under the entry point group
``jupyter_serverproxy_servers`` (see ``pyproject.toml``). JupyterLab then shows an
**MLflow UI** tile in its launcher and serves ``<lab>/mlflow/``: the first request starts
an ``mlflow server`` for the course workspace on a free loopback port, and the lab
forwards every request to it. The same works under ``make lab`` and on Binder, where the
reader's browser cannot reach a port of the container directly.

The server is the same command that :class:`utils.tracking.TrackingServer` runs, so the
UI in the lab shows the same store as the notebooks, and notebooks use this server instead
of starting their own (:func:`utils.workspace_server`). The lab ends it when it shuts down.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from utils.tracking import DEFAULT_HOST, TrackingServer, record_lab_server
from utils.workspace import Workspace, get_workspace

#: The path under the lab where the UI is served: ``<lab>/mlflow/``.
PROXY_NAME = "mlflow"
#: The launcher tile's title.
LAUNCHER_TITLE = "MLflow UI"
#: The tile's icon, drawn for the course.
ICON_PATH = Path(__file__).with_name("mlflow-ui.svg")
#: Seconds the lab waits for the first answer. A fresh store runs its database
#: migrations first, which takes several seconds on a small machine.
STARTUP_TIMEOUT = 120.0


def mlflow_server_command(port: int, workspace: Workspace | None = None) -> list[str]:
    """The command line that serves ``workspace`` on ``127.0.0.1:port``.

    It is :meth:`utils.tracking.TrackingServer.command` (``mlflow server`` in one process,
    one worker, the workspace's SQLite store and artifact folder), so the lab and the
    notebooks share one store.
    The workspace is the course workspace (``$COURSE_WORKSPACE`` or ``<repo>/workspace``)
    unless one is given.
    """
    return TrackingServer(workspace=workspace or get_workspace(), port=port).command()


def _command(port: int, base_url: str = "/") -> list[str]:
    # jupyter-server-proxy calls this with the port it picked and the lab's base URL, at the
    # first request to /mlflow/, so the workspace is resolved then, from the lab's
    # environment. `python -m utils.tracking` prepares the store (a notebook may be opening
    # the same new store right now) and then becomes `mlflow server`. The server is noted in
    # the workspace, so that notebooks use it too (utils.workspace_server).
    record_lab_server(get_workspace(), port, ui_base=f"{base_url.rstrip('/')}/{PROXY_NAME}")
    return [sys.executable, "-m", "utils.tracking", "--workspace-port", str(port)]


def setup_mlflow() -> dict[str, Any]:
    """The jupyter-server-proxy configuration of the ``mlflow`` entry (``<lab>/mlflow/``)."""
    loopback = f"http://{DEFAULT_HOST}:{{port}}"
    return {
        "command": _command,
        "timeout": STARTUP_TIMEOUT,
        "environment": {
            # The GenAI job runner forks extra processes the course never uses.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        },
        # The lab forwards the browser's own Host and Origin headers (on Binder, the hub's
        # public name), and its public address is not known in advance. MLflow refuses an
        # unknown Host (DNS-rebinding protection) and a state-changing API call from an
        # unknown Origin, so the proxy presents each request as coming from the server's
        # own loopback address. Safe here: the server listens on 127.0.0.1 only (whoever
        # reaches it directly still meets MLflow's checks); the lab forwards a request only
        # with the lab's token or login cookie; and MLflow's JSON API takes only
        # `application/json` bodies, which a foreign page cannot send without a CORS
        # preflight, which the lab refuses (a preflight carries no login).
        "request_headers_override": {"Host": f"{DEFAULT_HOST}:{{port}}", "Origin": loopback},
        "launcher_entry": {
            "enabled": True,
            "title": LAUNCHER_TITLE,
            "icon_path": str(ICON_PATH),
        },
        # A browser tab of its own: the UI needs the room.
        "new_browser_tab": True,
    }
