"""The local tracking server: a real `mlflow server` process on loopback."""

import socket
import subprocess

import mlflow
import pytest
import requests

from tests.notebook_runner import copy_empty_store
from utils.errors import CourseError
from utils.tracking import TrackingServer, find_free_port


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    from utils.workspace import get_workspace

    copy_empty_store(tmp_path / "ws")
    return get_workspace()


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


@pytest.mark.full
def test_runs_logged_through_the_server_land_in_the_workspace(workspace):
    with TrackingServer(workspace=workspace, port=0) as server:
        client = mlflow.MlflowClient(server.url)
        experiment_id = client.create_experiment("server-test")
        run = client.create_run(experiment_id)
        client.log_metric(run.info.run_id, "accuracy", 0.5)
        client.set_terminated(run.info.run_id)
        assert server.run_url(experiment_id, run.info.run_id).endswith(
            f"/#/experiments/{experiment_id}/runs/{run.info.run_id}"
        )
    # The same run, read straight from the SQLite file after the server stopped.
    local = mlflow.MlflowClient(workspace.backend_store_uri)
    assert local.get_run(run.info.run_id).data.metrics == {"accuracy": 0.5}
    assert local.get_experiment(experiment_id).artifact_location.startswith(
        str(workspace.artifacts_dir)
    )


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


def test_free_port_is_bindable():
    port = find_free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


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
    import os
    import sys
    import time

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
    from pathlib import Path

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
