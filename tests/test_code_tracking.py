"""Code tracking: a run records whether its git tree was dirty, and the edits themselves."""

import subprocess

import mlflow
import pytest

from tests.notebook_runner import workspace_store
from utils.code_tracking import git_state, log_code_state
from utils.errors import CourseError

IDENTITY = ["-c", "user.name=Course Test", "-c", "user.email=course@example.invalid"]


def git(repo, *args):
    return subprocess.run(["git", *IDENTITY, *args], cwd=repo, check=True,
                          capture_output=True, text=True).stdout


@pytest.fixture
def store(tmp_path):
    """A real SQLite tracking store in a temporary course workspace."""
    with workspace_store(tmp_path / "ws") as workspace:
        mlflow.set_experiment("code-tracking-test")
        yield workspace


@pytest.fixture
def repo(tmp_path):
    """A git repository with one commit: train.py and an ignored folder."""
    path = tmp_path / "project"
    path.mkdir()
    git(path, "init", "-q")
    (path / "train.py").write_text("learning_rate = 0.1\n")
    (path / ".gitignore").write_text("outputs/\n")
    git(path, "add", "train.py", ".gitignore")
    git(path, "commit", "-q", "-m", "first")
    (path / "outputs").mkdir()
    (path / "outputs" / "ignored.txt").write_text("not code\n")
    return path


def _logged(run_id):
    client = mlflow.MlflowClient()
    tags = client.get_run(run_id).data.tags
    files = {a.path for a in client.list_artifacts(run_id, "code")}
    return tags, files


def test_clean_tree_is_tagged_clean_and_logs_no_patch(store, repo):
    with mlflow.start_run() as run:
        state = log_code_state(repo)
    tags, files = _logged(run.info.run_id)
    head = git(repo, "rev-parse", "HEAD").strip()
    assert state.dirty is False and state.commit == head
    assert tags["course.git.dirty"] == "false"
    assert tags["course.git.commit"] == head
    assert tags["course.git.untracked_files"] == "0"
    assert files == set()


def test_modified_and_untracked_files_are_logged_and_the_patch_replays(store, repo, tmp_path):
    (repo / "train.py").write_text("learning_rate = 0.01  # not committed\n")
    (repo / "helper.py").write_text("def f():\n    return 42\n")
    with mlflow.start_run() as run:
        state = log_code_state(repo, notebook="notebooks/demo.ipynb")
    tags, files = _logged(run.info.run_id)
    assert tags["course.git.dirty"] == "true"
    assert tags["course.git.untracked_files"] == "1"
    assert tags["course.source.notebook"] == "notebooks/demo.ipynb"
    assert files == {"code/uncommitted.diff", "code/untracked.txt"}
    assert state.untracked == ["helper.py"]  # the ignored folder is not listed

    # The logged patch, applied to a fresh checkout of the commit, gives back the edited tree.
    folder = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="code")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    git(clone, "checkout", "-q", tags["course.git.commit"])
    git(clone, "apply", f"{folder}/uncommitted.diff")
    assert (clone / "train.py").read_text() == (repo / "train.py").read_text()
    assert (clone / "helper.py").read_text() == (repo / "helper.py").read_text()
    assert open(f"{folder}/untracked.txt").read() == "helper.py\n"


def test_only_an_untracked_file_makes_the_tree_dirty(store, repo):
    (repo / "notes.md").write_text("try a lower learning rate\n")
    state = git_state(repo)
    assert state.dirty is True and state.untracked == ["notes.md"]
    assert "+try a lower learning rate" in state.diff


def test_big_untracked_files_are_named_not_copied(store, repo):
    (repo / "weights.bin").write_bytes(b"\0" * 2048)
    with mlflow.start_run() as run:
        state = log_code_state(repo, max_untracked_bytes=1024)
    tags, _ = _logged(run.info.run_id)
    assert state.skipped == ["weights.bin"] and "weights.bin" not in state.diff
    assert "weights.bin" in tags["course.git.note"]


def test_folder_outside_git_is_tagged_unknown_with_the_reason(store, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    with mlflow.start_run() as run:
        state = log_code_state(plain)
    tags, files = _logged(run.info.run_id)
    assert not state.available
    assert tags["course.git.dirty"] == "unknown"
    assert "not inside a git repository" in tags["course.git.note"]
    assert files == set()


def test_missing_git_is_tagged_unknown_with_the_reason(store, repo, monkeypatch, tmp_path):
    empty_bin = tmp_path / "no-git-here"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))
    with mlflow.start_run() as run:
        log_code_state(repo)
    tags, _ = _logged(run.info.run_id)
    assert tags["course.git.dirty"] == "unknown"
    assert "git is not installed" in tags["course.git.note"]


def test_repository_without_commits_counts_everything_as_uncommitted(tmp_path):
    path = tmp_path / "new"
    path.mkdir()
    git(path, "init", "-q")
    (path / "a.py").write_text("x = 1\n")
    git(path, "add", "a.py")
    state = git_state(path)
    assert state.commit is None and state.dirty is True
    assert "+x = 1" in state.diff


def test_without_a_run_it_says_what_to_do(store, repo):
    with pytest.raises(CourseError, match="mlflow.start_run"):
        log_code_state(repo)


def test_missing_folder_is_refused(tmp_path):
    with pytest.raises(CourseError, match="does not exist"):
        git_state(tmp_path / "nowhere")
