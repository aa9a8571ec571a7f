"""The course workspace: where every notebook's MLflow store lives."""

import os
import stat

import mlflow
import pytest

from tests.notebook_runner import workspace_store
from utils.errors import CourseError
from utils.workspace import get_workspace, repo_root, use_workspace, workspace_path


def test_default_workspace_is_in_the_repo(monkeypatch):
    monkeypatch.delenv("COURSE_WORKSPACE", raising=False)
    assert workspace_path() == repo_root() / "workspace"


def test_course_workspace_variable_moves_it(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    workspace = get_workspace()
    assert workspace.path == tmp_path / "ws"
    assert workspace.artifacts_dir.is_dir() and workspace.logs_dir.is_dir()
    assert workspace.tracking_uri == f"sqlite:///{tmp_path}/ws/mlflow.db"


def test_explicit_tracking_uri_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_WORKSPACE", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert get_workspace().tracking_uri == "http://127.0.0.1:5999"


def test_empty_tracking_uri_means_the_local_store(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_WORKSPACE", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")
    assert get_workspace().tracking_uri.startswith("sqlite:///")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_workspace_says_what_to_do(tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    monkeypatch.setenv("COURSE_WORKSPACE", str(locked / "ws"))
    with pytest.raises(CourseError, match="COURSE_WORKSPACE"):
        get_workspace()


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
    # (Both variables are set directly: workspace_store puts them back.)
    with workspace_store(tmp_path / "a") as first:
        os.environ["COURSE_WORKSPACE"] = str(tmp_path / "b")
        second = use_workspace()
        assert mlflow.get_tracking_uri() == second.backend_store_uri != first.backend_store_uri
        # A URI the reader sets afterwards still wins.
        os.environ["MLFLOW_TRACKING_URI"] = "http://127.0.0.1:5999"
        assert get_workspace().tracking_uri == "http://127.0.0.1:5999"


def test_initialise_store_gives_default_the_workspace_artifact_root(tmp_path, monkeypatch):
    from utils.workspace import initialise_store

    monkeypatch.setenv("COURSE_WORKSPACE", str(tmp_path / "ws"))
    workspace = get_workspace()
    initialise_store(workspace)
    default = mlflow.MlflowClient(workspace.backend_store_uri).get_experiment("0")
    assert default.artifact_location.startswith(str(workspace.artifacts_dir))
    assert "_MLFLOW_SERVER_ARTIFACT_ROOT" not in os.environ
