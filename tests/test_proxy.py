"""JupyterLab serves the MLflow UI at <lab>/mlflow/ (jupyter-server-proxy), as on Binder.

The lab here is a real `jupyter lab` process and the UI a real `mlflow server` that the
lab starts on the first request. Requests carry the Host and Origin headers of a public
hub (hub.example.org), as a browser on Binder sends them. The launcher's tile and the UI
itself, its pages and its API calls, are driven in a real browser by tests/test_browser.py.
"""

import json
import re
import xml.etree.ElementTree as ET
from importlib.metadata import entry_points

import pytest
import requests

from tools.lab import JupyterLabServer
from utils.lab import ICON_PATH, LAUNCHER_TITLE, PROXY_NAME, setup_mlflow
from utils.tracking import TrackingServer, tracking_server
from utils.workspace import get_workspace, repo_root

PUBLIC_HOST = "hub.example.org"
MLFLOW_PORT = re.compile(r"\buvicorn\b.*--port (\d+).*mlflow\.server")


def test_the_lab_finds_the_mlflow_entry_point():
    found = [ep for ep in entry_points(group="jupyter_serverproxy_servers") if ep.name == PROXY_NAME]
    assert [ep.value for ep in found] == ["utils.lab:setup_mlflow"], (
        "the entry point is missing: run `make setup` to reinstall the course package"
    )
    assert found[0].load() is setup_mlflow


def test_the_entry_is_a_valid_jupyter_server_proxy_server():
    from jupyter_server_proxy.config import ServerProcess

    process = ServerProcess(name=PROXY_NAME, **setup_mlflow())
    assert process.timeout >= 60, "MLflow needs more than a few seconds on a fresh store"
    assert process.launcher_entry.title == LAUNCHER_TITLE == "MLflow UI"
    assert process.launcher_entry.path_info == "mlflow/"
    assert process.environment["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    headers = process.request_headers_override
    assert headers == {"Host": "127.0.0.1:{port}", "Origin": "http://127.0.0.1:{port}"}
    icon = ET.parse(process.launcher_entry.icon_path).getroot()
    assert icon.tag == "{http://www.w3.org/2000/svg}svg" and ICON_PATH.stat().st_size < 4000


def test_the_command_serves_the_course_workspace_on_loopback(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_WORKSPACE", str(tmp_path / "ws"))
    command = setup_mlflow()["command"](5123)
    assert command[1:] == ["-m", "utils.tracking", "--workspace-port", "5123"]
    served = TrackingServer(port=5123).server_options()  # what `--workspace-port 5123` runs
    options = dict(zip(served[::2], served[1::2]))
    assert options["--host"] == "127.0.0.1" and options["--port"] == "5123"
    assert options["--workers"] == "1"
    workspace = get_workspace()
    assert options["--backend-store-uri"] == workspace.backend_store_uri
    assert options["--default-artifact-root"] == str(workspace.artifacts_dir)
    # Noted in the workspace, for the notebooks' utils.tracking_server().
    record = json.loads((workspace.logs_dir / "server.json").read_text())
    assert record == {"url": "http://127.0.0.1:5123", "ui_base": "/mlflow"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    workspace = tmp_path_factory.mktemp("lab-workspace")
    server = JupyterLabServer(
        root_dir=repo_root(),
        env={
            "COURSE_WORKSPACE": str(workspace),
            "MLFLOW_TRACKING_URI": "",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
        },
        # A lab on a hub is reached under the hub's name, not localhost.
        extra_args=["--ServerApp.allow_remote_access=True"],
    )
    server.start()
    yield server
    server.stop()
    assert server.running_commands() == [], "stopping the lab must end the MLflow server it started"


def _proxied(lab, path="", method="GET", **kwargs):
    headers = {"Host": f"{PUBLIC_HOST}:{lab.port}", **lab.auth_header, **kwargs.pop("headers", {})}
    return requests.request(
        method, lab.page(f"{PROXY_NAME}/{path}"), headers=headers, timeout=150, **kwargs
    )


def _mlflow_port(lab):
    ports = [m.group(1) for c in lab.running_commands() if (m := MLFLOW_PORT.search(c))]
    assert len(ports) == 1, f"expected one MLflow server of the lab: {lab.running_commands()}"
    return int(ports[0])


@pytest.mark.full
def test_the_proxy_needs_the_lab_login(lab):
    _proxied(lab).raise_for_status()  # the server is up
    anonymous = requests.get(lab.page(f"{PROXY_NAME}/"), allow_redirects=False, timeout=30)
    assert anonymous.status_code in (302, 403) and "MLflow" not in anonymous.text
    # A foreign page's CORS preflight carries no login, so the lab refuses it.
    preflight = requests.options(
        lab.page(f"{PROXY_NAME}/ajax-api/2.0/mlflow/experiments/delete"),
        headers={"Origin": "https://attacker.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type"},
        timeout=30,
    )
    assert preflight.status_code == 403
    assert "Access-Control-Allow-Origin" not in preflight.headers


@pytest.mark.full
def test_notebooks_use_the_tile_s_server_instead_of_starting_their_own(lab, monkeypatch):
    _proxied(lab).raise_for_status()  # the reader opened the tile
    monkeypatch.setenv("COURSE_WORKSPACE", lab.env["COURSE_WORKSPACE"])
    monkeypatch.setattr("mlflow.get_tracking_uri", lambda: get_workspace().backend_store_uri)
    server = tracking_server()
    assert server.started_by == "JupyterLab's MLflow UI tile"
    assert server.url == f"http://127.0.0.1:{_mlflow_port(lab)}"
    assert server.run_url("1", "abc") == "/mlflow/#/experiments/1/runs/abc"  # a path on the lab
    server.stop()  # leaves the lab's server running
    assert requests.get(f"{server.url}/health", timeout=10).text == "OK"
