"""Fixtures shared by several test files: notebook 03's default run, executed once a session.

Several promises are about *the* run a reader makes with notebook 03 at its defaults: what
it records (test_notebook03.py), the model it logs, used through pyfunc
(test_sentiment_model.py), and that model served over REST (test_serving.py). Training it
takes minutes on two cores, so the notebook runs once, in a fresh workspace, for all of them.
"""

from __future__ import annotations

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


@pytest.fixture(scope="session")
def notebook03_default(tmp_path_factory) -> ExecutedRun:
    """Notebook 03 at its defaults, as a reader runs it, in a new workspace."""
    from tests.notebook_runner import run_notebook
    from utils import training

    workspace = tmp_path_factory.mktemp("nb03-ws")
    out = tmp_path_factory.mktemp("nb03-out")
    notebook = run_notebook(training.TRAINING_NOTEBOOK, out, workspace)
    executed = ExecutedRun(notebook=notebook, workspace=workspace, run=None)
    client = executed.client()
    experiment = client.get_experiment_by_name(training.DEFAULTS["experiment_name"])
    (executed.run,) = client.search_runs([experiment.experiment_id])
    return executed
