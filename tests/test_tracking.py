"""The tracking server: the course's own, a real `mlflow server` process on loopback, and the
one in effect (a team's, named by MLFLOW_TRACKING_URI); artifact listings through MLflow, which
let notebooks 03-05 run on a team's server as well as on the course workspace; and the
notebooks' other drawings of what MLflow holds (utils.inspection)."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import requests

from tests.notebook_runner import workspace_store
from utils import inspection
from utils.env import temporary_environment
from utils.errors import CourseError
from utils.tracking import SharedServer, TrackingServer, tracking_server


def _group_is_gone(pgid: int) -> bool:
    result = subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True)
    return result.stdout.strip() == ""


def test_server_serves_a_fresh_store_in_one_process_and_stops_completely(workspace):
    """`mlflow server` would wait beside its web server in a second process of ~250 MB; the
    course's server becomes the web server instead (utils.tracking.serve_in_this_process,
    MLflow's private _exec_cmd). If MLflow changes how it starts uvicorn, this fails."""
    import psutil

    with TrackingServer(workspace=workspace, port=0) as server:
        assert server.is_running
        assert requests.get(f"{server.url}/health", timeout=5).text == "OK"
        names = [e.name for e in mlflow.MlflowClient(server.url).search_experiments()]
        assert names == ["Default"]
        assert "<title>MLflow</title>" in requests.get(server.url, timeout=5).text
        leader = psutil.Process(server.process.pid)
        group = [leader, *leader.children(recursive=True)]
        commands = [" ".join(p.cmdline()) for p in group]
        assert len(commands) == 1, commands
        assert "-m uvicorn" in commands[0] and commands[0].endswith("mlflow.server.fastapi_app:app")
        assert leader.environ()["_MLFLOW_SERVER_FILE_STORE"] == workspace.backend_store_uri
        pgid = server.process.pid
        log_path = server.log_path
    assert not server.is_running
    assert _group_is_gone(pgid), "a worker of the server outlived stop()"
    assert log_path.parent == workspace.logs_dir and log_path.stat().st_size > 0


def test_busy_port_gives_a_clear_message(workspace):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        with pytest.raises(CourseError, match=rf"Port {port} .* already in use.*`port`"):
            TrackingServer(workspace=workspace, port=port).start()


@pytest.mark.full
def test_port_taken_by_another_mlflow_server_is_named(workspace):
    with TrackingServer(workspace=workspace, port=0) as first:
        with pytest.raises(CourseError, match="another MLflow server"):
            TrackingServer(workspace=workspace, port=first.port).start()


@pytest.mark.full
def test_server_that_dies_on_start_shows_its_log(workspace):
    server = TrackingServer(
        workspace=workspace, port=0, backend_store_uri="notadb://nowhere", startup_timeout=60
    )
    with pytest.raises(CourseError, match="exited during start-up") as error:
        server.start()
    assert "notadb" in str(error.value)  # the log's tail names the bad URI
    assert not server.is_running


@pytest.mark.parametrize("port", [-1, 70000, "5000", True])
def test_bad_port_values_are_refused(workspace, port):
    with pytest.raises(CourseError, match="port must be"):
        TrackingServer(workspace=workspace, port=port)


@pytest.mark.full
def test_server_does_not_outlive_a_killed_parent(workspace, tmp_path):
    # A kernel killed with SIGKILL runs no atexit handler; the server must still go.
    script = tmp_path / "parent.py"
    script.write_text(
        "import os, sys\n"
        "from utils.tracking import TrackingServer\n"
        "server = TrackingServer(port=0).start()\n"
        "print(server.process.pid, flush=True)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=os.environ, timeout=120
    )
    pgid = int(result.stdout.split()[0])
    deadline = time.monotonic() + 20
    while not _group_is_gone(pgid) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _group_is_gone(pgid), "the server outlived its killed parent"


def test_mlflow_command_is_the_terminal_form_of_the_same_server(tmp_path):
    """What notebook 01 prints for the learner to type: plain `mlflow server` with the same
    options, paths below the given folder relative to it, other paths left absolute."""
    from utils.workspace import Workspace

    course = tmp_path / "course"
    inside = TrackingServer(workspace=Workspace(course / "workspace"), port=5000)
    command = inside.mlflow_command(relative_to=course)
    assert command[:2] == ["mlflow", "server"] and command[2:] != inside.server_options()
    options = dict(zip(command[2::2], command[3::2]))
    assert options["--backend-store-uri"] == "sqlite:///workspace/mlflow.db"
    assert options["--default-artifact-root"] == "workspace/artifacts"
    assert options["--port"] == "5000" and options["--host"] == "127.0.0.1"
    # Read from the course folder, the relative forms name the server's own files.
    relative_db = Path(options["--backend-store-uri"].removeprefix("sqlite:///"))
    assert course / relative_db == inside.workspace.db_path
    outside = TrackingServer(workspace=Workspace(tmp_path / "elsewhere"), port=5000)
    assert outside.mlflow_command(relative_to=course)[2:] == outside.server_options()
    assert outside.mlflow_command()[2:] == outside.server_options()


# -- the server in effect, and what notebooks draw of a store --------------------------------
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



def test_sizes_read_like_a_person_would_write_them():
    assert [inspection.human_size(size) for size in (0, 512, 1023, 1536, 3 * 1024 ** 2)] == [
        "0 B", "512 B", "1023 B", "1.5 KB", "3.0 MB"]


def test_a_chart_compares_runs_by_name():
    import matplotlib
    import pandas as pd

    matplotlib.use("Agg")
    table = pd.DataFrame({"tags.mlflow.runName": ["linear", "no-model"], "metrics.val_accuracy": [0.75, 0.5]})
    axes = inspection.plot_run_comparison(table, ["metrics.val_accuracy"]).axes[0]
    assert sorted(bar.get_height() for bar in axes.patches) == [0.5, 0.75]
    assert {tick.get_text() for tick in axes.get_xticklabels()} == {"linear", "no-model"}
