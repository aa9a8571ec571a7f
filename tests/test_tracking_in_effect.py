"""The tracking server in effect and artifact listings through MLflow: what lets notebooks
03-05 run on a team's server as well as on the course workspace."""

import mlflow
import pytest

from tests.notebook_runner import workspace_store
from utils import inspection
from utils.env import temporary_environment
from utils.tracking import SharedServer, tracking_server


@pytest.fixture
def tracking_uri(tmp_path):
    """Set MLflow's tracking URI for one test (no store is made), and put it back after."""
    saved = mlflow.get_tracking_uri()
    with temporary_environment(COURSE_WORKSPACE=str(tmp_path / "ws"), MLFLOW_TRACKING_URI=None):
        try:
            yield mlflow.set_tracking_uri
        finally:
            mlflow.set_tracking_uri(saved)  # inside the block: the variable it sets is put back too


def test_a_server_named_by_the_tracking_uri_is_used_as_it_is(tracking_uri, tmp_path):
    tracking_uri("http://mlflow.team.example:5000/")
    with temporary_environment(MLFLOW_TRACKING_USERNAME="ada", MLFLOW_TRACKING_PASSWORD="s3cret-pw"):
        server = tracking_server()
        assert isinstance(server, SharedServer)
        assert server.url == "http://mlflow.team.example:5000" and server.auth == ("ada", "s3cret-pw")
        assert server.run_url("3", "abc") == "http://mlflow.team.example:5000/#/experiments/3/runs/abc"
        assert "s3cret-pw" not in repr(server) and "'ada'" in repr(server)
        server.stop()  # the team's server: nothing to stop, nothing raised
    assert not (tmp_path / "ws").exists()  # no workspace, no server of the course


def test_without_a_login_plain_http_requests_send_none(tracking_uri):
    tracking_uri("https://mlflow.team.example")
    with temporary_environment(MLFLOW_TRACKING_USERNAME=None, MLFLOW_TRACKING_PASSWORD=None):
        assert tracking_server().auth is None


def test_databricks_has_no_plain_server_and_says_so(tracking_uri, tmp_path, capsys):
    tracking_uri("databricks")
    assert tracking_server() is None
    assert "cells that need one say so and skip" in capsys.readouterr().out
    assert not (tmp_path / "ws").exists()


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A run with a small artifact tree in a temporary workspace store."""
    with workspace_store(tmp_path_factory.mktemp("trees") / "ws"):
        mlflow.set_experiment("trees")
        with mlflow.start_run() as run:
            mlflow.log_text("x" * 2048, "notes/long.txt")
            mlflow.log_text("hi", "notes/deeper/short.txt")
            mlflow.log_dict({"a": 1}, "summary.json")
        yield run.info.artifact_uri


def test_artifact_trees_are_drawn_from_mlflow_listings(logged):
    assert inspection.artifact_tree(logged) == "\n".join([
        "artifacts/",
        "├── notes/",
        "│   ├── deeper/",
        "│   │   └── short.txt  (2 B)",
        "│   └── long.txt  (2.0 KB)",
        "└── summary.json  (12 B)",
    ])
    assert inspection.artifact_tree(logged, max_depth=1, sizes=False).splitlines() == [
        "artifacts/", "├── notes/", "└── summary.json"]

