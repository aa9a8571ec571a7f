"""Fixtures shared by several test files: notebook 03's default run, executed once a session.

Several promises are about *the* run a reader makes with notebook 03 at its defaults: what
it records (test_notebook03.py), and the model it logs, used through pyfunc
(test_sentiment_model.py). Training it takes minutes on two cores, so the notebook runs once,
in a fresh workspace, for all of them; and once more there with other values, whose run
``tools.batch rerun`` trains again (``notebook03_again``: test_notebook03.py, test_run_record.py);
``default_run`` and ``classifier`` give a test module its store and its model. And two
fixtures of a test's own: a new course ``workspace``, and ``databricks_env`` without the
reader's Databricks settings.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class ExecutedRun:
    """An executed notebook and the one run it made in its workspace."""

    notebook: object  # the executed nbformat notebook
    workspace: Path
    run: object  # mlflow.entities.Run, as recorded when the notebook ended

    @property
    def run_id(self) -> str:
        return self.run.info.run_id

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.workspace}/mlflow.db"

    def client(self):
        import mlflow

        return mlflow.MlflowClient(tracking_uri=self.tracking_uri)


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A new course workspace in ``tmp_path`` (a copy of the empty store in it), which the
    environment names, without a tracking URI or a backend store of the reader's."""
    from tests.notebook_runner import copy_empty_store
    from utils.workspace import get_workspace

    monkeypatch.setenv("COURSE_WORKSPACE", str(tmp_path / "ws"))
    for name in ("MLFLOW_TRACKING_URI", "COURSE_BACKEND_STORE_URI"):
        monkeypatch.delenv(name, raising=False)
    copy_empty_store(tmp_path / "ws")
    return get_workspace()


@pytest.fixture
def databricks_env(tmp_path, monkeypatch):
    """No Databricks variables, and a config file that does not exist (never ~/.databrickscfg);
    returns monkeypatch to set some."""
    for name in [name for name in os.environ if name.startswith("DATABRICKS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(tmp_path / "no-such-databrickscfg"))
    return monkeypatch


@pytest.fixture(scope="session")
def notebook03_default(tmp_path_factory) -> ExecutedRun:
    """Notebook 03 at its defaults, as a reader runs it, in a new workspace: the Chinese
    edition's (notebooks/zh/), whose code is the English one's: its reader's run at the
    defaults (tests/test_notebook03.py reads it)."""
    from tests.notebook_runner import run_notebook
    from utils import training

    workspace = tmp_path_factory.mktemp("nb03-ws")
    out = tmp_path_factory.mktemp("nb03-out")
    notebook = run_notebook(training.TRAINING_NOTEBOOK, out, workspace, chinese=True)
    executed = ExecutedRun(notebook=notebook, workspace=workspace, run=None)
    client = executed.client()
    experiment = client.get_experiment_by_name(training.RunParameters.experiment_name)
    (executed.run,) = client.search_runs([experiment.experiment_id])
    return executed


# Notebook 03's second execution, in the default run's workspace: other names, and no value at
# its default. tools.batch rerun then trains that run again from its record.
AGAIN = {"experiment_name": "nb03_test_experiment", "run_name": "tiny_run", "train_size": 96, "val_size": 20,
         "test_size": 20, "batch_size": 4, "max_length": 64, "learning_rate": 0.02, "seed": 7}


@dataclass
class ExecutedAgain:
    notebook: object  # notebook 03 executed with AGAIN
    run: object  # its run, as recorded before the rerun
    rerun: object  # the subprocess.CompletedProcess of `python -m tools.batch rerun <run>`
    output: Path  # the rerun's --output folder


@pytest.fixture(scope="session")
def notebook03_again(notebook03_default, tmp_path_factory) -> ExecutedAgain:
    """Notebook 03 with AGAIN in the default run's workspace, then ``python -m tools.batch
    rerun`` of its run, as a learner runs it from the course folder (tests/test_notebook03.py
    checks the run, tests/test_run_record.py the rerun)."""
    from tests.notebook_runner import run_notebook
    from utils import training
    from utils.workspace import repo_root

    workspace, out = notebook03_default.workspace, tmp_path_factory.mktemp("nb03-again")
    notebook = run_notebook(training.TRAINING_NOTEBOOK, out, workspace, **AGAIN)
    client = notebook03_default.client()
    (run,) = client.search_runs([client.get_experiment_by_name(AGAIN["experiment_name"]).experiment_id])
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "COURSE_PARAMS")}
    rerun = subprocess.run(
        [sys.executable, "-m", "tools.batch", "rerun", run.info.run_id, "--output", str(out / "batch")],
        cwd=repo_root(), env={**env, "COURSE_WORKSPACE": str(workspace)}, capture_output=True, text=True,
        timeout=1200)
    return ExecutedAgain(notebook, run, rerun, out / "batch")


@pytest.fixture(scope="module")
def default_run(notebook03_default):
    """Notebook 03's default run, with this process pointed at its store for the module."""
    from tests.notebook_runner import workspace_store

    with workspace_store(notebook03_default.workspace):
        yield notebook03_default


@pytest.fixture(scope="module")
def classifier(default_run):
    """The default run's model, loaded through pyfunc."""
    import mlflow

    return mlflow.pyfunc.load_model(f"runs:/{default_run.run_id}/model")
