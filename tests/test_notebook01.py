"""Notebook 01 keeps its promises when run headless with papermill."""

import importlib.util
import json
import re
import shlex

import mlflow
import pytest
from papermill.exceptions import PapermillExecutionError

from tests.notebook_runner import NOTEBOOKS, cell_text, run_notebook, servers_of
from tests.notebook_runner import course_env, execute
from utils.tracking import TrackingServer
from utils.workspace import Workspace

pytestmark = pytest.mark.full
NAME = "01_local_setup.ipynb"
# Noise a learner can do nothing about (issue 20); none of it may reach the executed notebook.
NOISE = ["pkg_resources is deprecated", "np.object", "interpreted in multiple ways", "GPU available:",
         "Runningstage", "Downloading artifacts", "CloudPickle"]
if importlib.util.find_spec("ipywidgets"):  # tqdm's warning goes once ipywidgets is installed
    NOISE.append("IProgress not found")


def separate_server(path):
    """A tracking server of its own (its own SQLite store), as a team's server would be."""
    workspace = Workspace(path)
    for folder in (workspace.artifacts_dir, workspace.logs_dir):
        folder.mkdir(parents=True)
    return TrackingServer(workspace=workspace, port=0)


def assert_quiet(notebook):
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        text = json.dumps(cell.outputs)
        assert [noise for noise in NOISE if noise in text] == [], cell.source
        assert "\\u001b" not in text, f"ANSI escape codes in the output of {cell.source[:80]!r}"
        assert len(cell.outputs) <= 25, cell.source


def test_fresh_workspace_then_again_with_a_remote_uri_set(tmp_path):
    """The first run in a fresh workspace; the second with MLFLOW_TRACKING_URI naming another
    server, which the notebook leaves alone: it works on the same local workspace again."""
    workspace = tmp_path / "ws"
    with separate_server(tmp_path / "remote") as remote:
        first = run_notebook(NAME, tmp_path / "first", workspace, port=0)
        second = execute(NOTEBOOKS / NAME, tmp_path / "second" / NAME, {"port": 0},
                         env=course_env(workspace, MLFLOW_TRACKING_URI=remote.url))
        others = mlflow.MlflowClient(remote.url)
        assert [e.name for e in others.search_experiments()] == ["Default"]
        assert others.search_runs(["0"]) == []
    for notebook in (first, second):
        listing = cell_text(notebook, "client.search_experiments()")
        assert listing.split() == ["0", "Default", "runs:", "0"], listing
        assert "['Default']" in cell_text(notebook, "experiments/search")
        assert "the UI page is served" in cell_text(notebook, "requests.get(server.url")
        assert "mlflow, version 3." in cell_text(notebook, "mlflow --version")
        assert f"tracking URI: sqlite:///{workspace}/mlflow.db" in cell_text(notebook, "use_workspace")
        for check in ("ex01.q1.check()", "ex01.q2.check()"):
            assert cell_text(notebook, check).startswith("Not attempted: exercise 01.")
        assert_quiet(notebook)
    assert "is left alone" not in cell_text(first, "use_workspace")
    assert f"{remote.url} (from your environment) is left alone" in cell_text(second, "use_workspace")
    assert (workspace / "mlflow.db").exists()
    assert servers_of(workspace) == [], "notebook 01 left its server running"


def test_the_mlflow_server_command_is_the_servers_own(tmp_path):
    workspace = tmp_path / "ws"
    notebook = run_notebook(NAME, tmp_path, workspace, port=0)
    port = re.search(r"<TrackingServer http://127\.0\.0\.1:(\d+) running>",
                     cell_text(notebook, "utils.start_server(port=port)"))[1]
    command = shlex.split(cell_text(notebook, "server.mlflow_command("))
    # This workspace lies outside the course folder, so its paths stay absolute.
    assert command == ["mlflow", "server", "--backend-store-uri", f"sqlite:///{workspace}/mlflow.db",
                       "--default-artifact-root", str(workspace / "artifacts"),
                       "--host", "127.0.0.1", "--port", port, "--workers", "1"]


def test_busy_port_stops_with_advice(tmp_path):
    import socket

    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        with pytest.raises(PapermillExecutionError, match="already in use.*`port`"):
            run_notebook(NAME, tmp_path, tmp_path / "ws", port=port)


def test_bad_port_parameter_stops_with_advice(tmp_path):
    with pytest.raises(PapermillExecutionError, match="port must be a whole number"):
        run_notebook(NAME, tmp_path, tmp_path / "ws", port="five thousand")
