"""Notebook 01 keeps its promises when run headless with papermill."""

import pytest
from papermill.exceptions import PapermillExecutionError

from tests.notebook_runner import cell_text, run_notebook, servers_of

pytestmark = pytest.mark.full
NAME = "01_local_setup.ipynb"


def test_fresh_workspace_shows_only_default_and_twice_in_a_row(tmp_path):
    workspace = tmp_path / "ws"
    for attempt in range(2):
        notebook = run_notebook(NAME, tmp_path, workspace, port=0)
        listing = cell_text(notebook, "client.search_experiments()")
        assert listing.split() == ["0", "Default", "runs:", "0"], listing
        assert "['Default']" in cell_text(notebook, "experiments/search")
        assert "the UI page is served" in cell_text(notebook, "requests.get(server.url")
        assert "mlflow, version 3." in cell_text(notebook, "mlflow --version")
    assert (workspace / "mlflow.db").exists()
    assert servers_of(workspace) == [], "notebook 01 left its server running"


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
