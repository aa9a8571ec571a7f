"""The course workspace: where every notebook's MLflow store lives."""

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from tests.notebook_runner import course_environment, workspace_store
from utils.env import temporary_environment
from utils.errors import CourseError
from utils.workspace import TRACKING_URI_ENV, get_workspace, repo_root, use_workspace, workspace_path


def test_default_workspace_is_in_the_repo(monkeypatch):
    monkeypatch.delenv("COURSE_WORKSPACE", raising=False)
    assert workspace_path() == repo_root() / "workspace"


@pytest.mark.parametrize("tracking_uri, expected", [
    (None, "sqlite:///{ws}/mlflow.db"),  # COURSE_WORKSPACE moves it, store and all
    ("", "sqlite:///{ws}/mlflow.db"),  # an empty URI means the local store
    ("http://127.0.0.1:5999", "http://127.0.0.1:5999"),  # an explicit URI wins
])
def test_course_workspace_moves_the_store_unless_a_tracking_uri_is_given(tmp_path, monkeypatch, tracking_uri,
                                                                          expected):
    monkeypatch.setenv("COURSE_WORKSPACE", str(tmp_path / "ws"))
    if tracking_uri is None:
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    else:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    workspace = get_workspace()
    assert workspace.path == tmp_path / "ws" and workspace.artifacts_dir.is_dir() and workspace.logs_dir.is_dir()
    assert workspace.tracking_uri == expected.format(ws=tmp_path / "ws")


def test_workspace_under_a_file_says_what_to_do(tmp_path, monkeypatch):
    # A path below a regular file cannot be created, even by root.
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("COURSE_WORKSPACE", str(blocker / "ws"))
    with pytest.raises(CourseError, match="cannot be written.*COURSE_WORKSPACE"):
        get_workspace()


def test_use_workspace_keeps_runs_and_artifacts_inside(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with workspace_store(tmp_path / "ws") as workspace:
        mlflow.set_experiment("workspace-test")
        with mlflow.start_run() as run:
            mlflow.log_text("hello", "note.txt")
    assert workspace.db_path.exists()
    assert run.info.artifact_uri.startswith(str(workspace.artifacts_dir))
    assert not (tmp_path / "mlruns").exists()
    assert not (tmp_path / "mlflow.db").exists()


def test_switching_workspaces_in_one_process_follows_course_workspace(tmp_path):
    # mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI; that must not pin the first store.
    # (The variable is set directly: workspace_store puts it back.)
    with workspace_store(tmp_path / "a") as first:
        os.environ["COURSE_WORKSPACE"] = str(tmp_path / "b")
        second = use_workspace()
        assert mlflow.get_tracking_uri() == second.backend_store_uri != first.backend_store_uri


# Three notebook-like processes and one server start on one new workspace at the same moment.
# Each waits at a barrier (a file) after its imports, so that all four open the new store
# together, as when a notebook and the lab's MLflow UI tile start at once.
_FIRST_USE = {
    "notebook": (
        "import mlflow, utils\n"
        "{barrier}"
        "utils.use_workspace()\n"
        "mlflow.set_experiment('first-use')\n"
        "with mlflow.start_run():\n"
        "    mlflow.log_metric('x', 1.0)\n"
    ),
    "server": (
        "import utils\n"
        "{barrier}"
        "server = utils.start_server(port=0)\n"
        "server.stop()\n"
    ),
}
_BARRIER = (
    "import os, pathlib, time\n"
    "pathlib.Path(os.environ['READY']).touch()\n"
    "while not pathlib.Path(os.environ['GO']).exists(): time.sleep(0.01)\n"
)


@pytest.mark.full
@pytest.mark.parametrize("trial", [1, 2, 3])
def test_a_fresh_workspace_survives_first_use_by_four_processes_at_once(tmp_path, trial):

    workspace, go = tmp_path / "ws", tmp_path / "go"
    roles = ["notebook", "notebook", "notebook", "server"]
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "_COURSE_SET_TRACKING_URI")}
    processes = []
    for number, role in enumerate(roles):
        code = _FIRST_USE[role].format(barrier=_BARRIER)
        processes.append(subprocess.Popen(
            [sys.executable, "-c", code], cwd=repo_root(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, env={**env, "COURSE_WORKSPACE": str(workspace), "GO": str(go),
                            "READY": str(tmp_path / f"ready-{number}")}))
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready-{n}").exists() for n in range(len(roles))):
        assert time.monotonic() < deadline, "the processes never got ready"
        assert all(p.poll() is None for p in processes), [p.communicate()[0] for p in processes]
        time.sleep(0.05)
    go.touch()
    outcomes = [(role, p.wait(timeout=300), p.stdout.read()) for role, p in zip(roles, processes)]
    crashed = [f"{role} exited {code}:\n{output[-1500:]}" for role, code, output in outcomes if code != 0]
    assert crashed == []
    client = mlflow.MlflowClient(f"sqlite:///{workspace}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("first-use").experiment_id])
    assert len(runs) == 3


# -- use_workspace(local=True): notebooks 01 and 06 stay on this machine -------------------
@contextlib.contextmanager
def _readers_environment(workspace: Path, **variables: str):
    """COURSE_WORKSPACE=workspace and the reader's own ``variables`` (e.g. their
    MLFLOW_TRACKING_URI) for the block; the environment and MLflow's URIs put back after."""
    saved_uri = os.environ.get(TRACKING_URI_ENV)
    with course_environment(workspace), temporary_environment(**{"MLFLOW_REGISTRY_URI": None, **variables}):
        try:
            yield
        finally:
            mlflow.set_tracking_uri(saved_uri)
            mlflow.set_registry_uri(None)


def _nobody_listens() -> str:
    """The address of a tracking server that does not exist: using it would fail at once."""
    from utils.tracking import find_free_port

    return f"http://127.0.0.1:{find_free_port()}"


def test_local_workspace_wins_over_the_readers_tracking_uri(tmp_path, capsys):
    remote = _nobody_listens()
    with _readers_environment(tmp_path / "ws", MLFLOW_TRACKING_URI=remote):
        workspace = use_workspace(local=True)
        assert mlflow.get_tracking_uri() == workspace.backend_store_uri
        mlflow.set_experiment("stays-local")
        with mlflow.start_run() as run:  # would fail to connect if it went to `remote`
            mlflow.log_metric("x", 1.0)
        assert os.environ[TRACKING_URI_ENV] == workspace.backend_store_uri
    local = mlflow.MlflowClient(f"sqlite:///{tmp_path}/ws/mlflow.db")
    assert local.get_run(run.info.run_id).data.metrics == {"x": 1.0}
    note = capsys.readouterr().out
    assert f"{remote} (from your environment) is left alone" in note


def test_local_workspace_is_what_child_processes_use_too(tmp_path):

    remote = _nobody_listens()
    with _readers_environment(tmp_path / "ws", MLFLOW_TRACKING_URI=remote, MLFLOW_REGISTRY_URI=remote):
        workspace = use_workspace(local=True)
        assert mlflow.get_registry_uri() == workspace.backend_store_uri
        assert mlflow.MlflowClient().search_registered_models() == []  # `remote` would refuse
        child = subprocess.run(
            [sys.executable, "-c", "import mlflow; print(mlflow.get_tracking_uri(), mlflow.get_registry_uri())"],
            capture_output=True, text=True, check=True, timeout=120)
    assert child.stdout.split() == [workspace.backend_store_uri] * 2


def test_local_note_masks_a_password_and_is_silent_without_a_readers_uri(tmp_path, capsys):
    from utils.tracking import find_free_port

    remote = f"http://learner:s3cret-word@127.0.0.1:{find_free_port()}"
    with _readers_environment(tmp_path / "ws", MLFLOW_TRACKING_URI=remote):
        use_workspace(local=True)
    note = capsys.readouterr().out
    assert "s3cret-word" not in note and "learner:****@127.0.0.1" in note
    with _readers_environment(tmp_path / "ws"):
        use_workspace(local=True)
        use_workspace(local=True)  # a second call finds the course's own URI: nothing set aside
    assert capsys.readouterr().out == ""


def test_the_tests_copy_of_the_empty_store_is_the_store_mlflow_makes(tmp_path, monkeypatch):
    """The tests give each new workspace a copy of an empty store (copy_empty_store, one
    UPDATE of MLflow's own `experiments` table) instead of MLflow's seconds of migrations:
    it must be what initialise_store makes, the Default experiment's artifacts in the
    workspace. If MLflow's schema changes, this fails loudly."""
    from tests.notebook_runner import copy_empty_store
    from utils.workspace import Workspace, initialise_store

    def default_experiment(name: str, copy: bool):
        monkeypatch.setenv("COURSE_WORKSPACE", str(tmp_path / name))
        if copy:
            copy_empty_store(tmp_path / name)
        workspace = get_workspace()
        initialise_store(workspace)
        (default,) = mlflow.MlflowClient(workspace.backend_store_uri).search_experiments()
        return default.name, default.artifact_location.removeprefix(str(workspace.path))

    assert default_experiment("copied", True) == default_experiment("made", False) == (
        "Default", "/artifacts/0")
    assert "_MLFLOW_SERVER_ARTIFACT_ROOT" not in os.environ
    client = mlflow.MlflowClient(Workspace(tmp_path / "copied").backend_store_uri)
    assert client.get_experiment(client.create_experiment("second")).name == "second"
