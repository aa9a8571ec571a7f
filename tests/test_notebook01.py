"""Notebook 01 keeps its promises when run headless with papermill."""

import re
import shlex

import mlflow
import pytest

from tests.notebook_runner import (NOTEBOOKS, cell_text, chinese_reading_problems, course_env, execute, noise_in,
                                   run_notebook, separate_server, servers_of)

pytestmark = pytest.mark.full
NAME = "01_local_setup.ipynb"


def test_fresh_workspace_then_again_with_a_remote_uri_set(tmp_path):
    """The first run in a fresh workspace, of the Chinese edition (its code is the English
    one's); the second, in English, with MLFLOW_TRACKING_URI naming another server, which the
    notebook leaves alone: it works on the same local workspace again."""
    workspace = tmp_path / "ws"
    with separate_server(tmp_path / "remote") as remote:
        first = run_notebook(NAME, tmp_path / "first", workspace, port=0, chinese=True)
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
        assert noise_in(notebook.cells) == []
    assert remote.url not in cell_text(first, "use_workspace")
    assert chinese_reading_problems(NAME, first, workspace) == []
    # The `mlflow server` command it prints is its server's own; this workspace lies outside
    # the course folder, so its paths stay absolute.
    port = re.search(r"<TrackingServer http://127\.0\.0\.1:(\d+) running>",
                     cell_text(first, "utils.start_server(port=port)"))[1]
    assert shlex.split(cell_text(first, "server.mlflow_command(")) == [
        "mlflow", "server", "--backend-store-uri", f"sqlite:///{workspace}/mlflow.db", "--default-artifact-root",
        str(workspace / "artifacts"), "--host", "127.0.0.1", "--port", port, "--workers", "1"]
    assert f"{remote.url} (from your environment) is left alone" in cell_text(second, "use_workspace")
    assert (workspace / "mlflow.db").exists()
    assert servers_of(workspace) == [], "notebook 01 left its server running"
