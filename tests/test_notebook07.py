"""Notebook 07 keeps its promises, twice in a row in one workspace.

The first run, in a fresh workspace at the defaults, must leave one parent run with its
FINISHED child runs (parameters that differ), a registered model version whose alias
`champion` points at the best child's model, and a two-worker search whose parent has
exactly as many children as trials were asked for, each trial number once. The second run,
in the same workspace, adds the Spark search on ``local[2]``: one parent with its FINISHED
children, and no JVM left afterwards.

The runs execute the copies that ``python -m tools.exercises solve`` writes: the first with
each exercise's solution (every check says Correct), the second with its typical mistake
(every check says Incorrect, with its own message), so that the exercises need no runs of
their own. The default tier's nbval runs the notebook as committed (every check: Not
attempted).
"""

from __future__ import annotations

import subprocess

import mlflow
import nbformat
import pytest

from tests.notebook_runner import NOTEBOOKS, cell_text, exercise_verdict_problems, servers_of
from tests.test_notebook01 import assert_quiet
from tools import exercises as tool
from tests.notebook_runner import course_env, execute

pytestmark = pytest.mark.full
NAME = "07_hyperparameter_search.ipynb"
PARENT = "tags.mlflow.parentRunId"


def _defaults() -> dict:
    """The notebook's parameters cell, as values."""
    notebook = nbformat.read(NOTEBOOKS / NAME, as_version=4)
    cell = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
    values: dict = {}
    exec(cell.source, {}, values)
    return values


DEFAULTS = _defaults()


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    root = tmp_path_factory.mktemp("nb07")
    workspace = root / "ws"
    original = nbformat.read(NOTEBOOKS / NAME, as_version=4)
    found = tool.exercise_cells(original, NAME)
    notebooks = {}
    for label, wrong, parameters in (("solved", False, {}),
                                     ("wrong", True, {"spark_master": "local[2]", "trials_per_worker": 2})):
        copy = root / label / NAME
        tool.solve(str(NOTEBOOKS / NAME), copy, wrong)
        notebooks[label] = execute(copy, root / f"{label}-executed" / NAME, parameters,
                                   env=course_env(workspace), cwd=NOTEBOOKS)
    uri = f"sqlite:///{workspace}/mlflow.db"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    return notebooks, original, found, workspace, client


def _study(notebook) -> str:
    return cell_text(notebook, 'print("study:"').split("study:")[1].split()[0]


def _parent(client, name: str):
    experiment = client.get_experiment_by_name(DEFAULTS["experiment_name"])
    parents = client.search_runs([experiment.experiment_id], f"attributes.run_name = '{name}'")
    assert len(parents) == 1, f"{len(parents)} parent runs named {name!r}"
    children = client.search_runs([experiment.experiment_id], f"{PARENT} = '{parents[0].info.run_id}'",
                                  max_results=1000)
    return parents[0], children


def _numbers(children) -> list[int]:
    return sorted(int(run.data.tags["numbers"]) for run in children)


def test_each_run_leaves_a_parent_with_finished_children_whose_params_differ(executed):
    notebooks, _, _, _, client = executed
    names = [_study(notebook) for notebook in notebooks.values()]
    assert names[0] != names[1], "the second run must make a new study"
    for name in names:
        parent, children = _parent(client, name)
        assert parent.info.status == "FINISHED"
        assert len(children) == DEFAULTS["n_trials"] >= 4
        assert {run.info.status for run in children} == {"FINISHED"}
        assert _numbers(children) == list(range(DEFAULTS["n_trials"]))
        chosen = {(run.data.params["learning_rate"], run.data.params["batch_size"]) for run in children}
        assert len(chosen) == len(children), chosen
        for run in children:  # notebook 03's records, in the trial's own run
            assert run.data.params["train_size"] == str(DEFAULTS["train_size"])
            assert run.data.metrics["value"] == run.data.metrics["val_accuracy"]
            assert "test_accuracy" in run.data.metrics
            outputs = client.get_run(run.info.run_id).outputs.model_outputs  # search_runs leaves them out
            assert outputs, f"trial {run.data.tags['numbers']} logged no model"
            # ... but no checkpoint, which the notebook turns off: 87 MB per trial.
            assert "mlflow.latest_checkpoint_artifact" not in run.data.tags
            assert not client.list_artifacts(run.info.run_id, "checkpoints")


def test_the_alias_points_at_the_best_childs_model(executed):
    notebooks, _, _, _, client = executed
    _, children = _parent(client, _study(notebooks["wrong"]))  # the latest search
    best = max(children, key=lambda run: run.data.metrics["value"])
    version = client.get_model_version_by_alias(DEFAULTS["registered_model_name"], "champion")
    assert version.run_id == best.info.run_id
    best_model = client.get_run(best.info.run_id).outputs.model_outputs[0].model_id
    assert version.source == f"models:/{best_model}"
    versions = client.search_model_versions(f"name = '{DEFAULTS['registered_model_name']}'")
    assert len(versions) == 2  # one per run of the notebook


def test_two_workers_share_one_study_no_trial_lost_or_twice(executed):
    notebooks, _, _, _, client = executed
    for label, notebook in notebooks.items():  # the wrong copy ran two trials per worker
        asked = DEFAULTS["workers"] * (2 if label == "wrong" else DEFAULTS["trials_per_worker"])
        parent, children = _parent(client, f"{_study(notebook)}-team")
        assert parent.info.status == "FINISHED"
        assert len(children) == asked
        assert _numbers(children) == list(range(asked))
        assert {run.info.status for run in children} == {"FINISHED"}
        assert f"trial numbers: {list(range(asked))}" in cell_text(notebook, "team_children =")


def test_the_trap_makes_a_parent_per_worker(executed):
    for notebook in executed[0].values():
        assert cell_text(notebook, "load_if_exists=True").strip().endswith(": 2")


def test_spark_runs_the_search_and_leaves_no_jvm(executed):
    notebooks, _, _, _, client = executed
    assert "Spark is skipped" in cell_text(notebooks["solved"], "spark_master is None")
    spark_cell = cell_text(notebooks["wrong"], "spark_master is None")
    assert "Spark's JVM has exited: True" in spark_cell, spark_cell
    parent, children = _parent(client, f"{_study(notebooks['wrong'])}-spark")
    assert parent.info.status == "FINISHED"
    assert len(children) == DEFAULTS["n_trials"]
    assert {run.info.status for run in children} == {"FINISHED"}
    left = subprocess.run(["pgrep", "-af", "spark.app.name=course-07"], capture_output=True, text=True)
    assert left.stdout == "", left.stdout


def test_the_exercises_get_their_verdicts(executed):
    notebooks, original, found, _, _ = executed
    assert not exercise_verdict_problems(original, notebooks["solved"], found, wrong=False)
    assert not exercise_verdict_problems(original, notebooks["wrong"], found, wrong=True)


def test_outputs_are_quiet_and_nothing_is_left_running(executed):
    notebooks, _, _, workspace, _ = executed
    for notebook in notebooks.values():
        assert_quiet(notebook)
        assert "Autologging is known to be compatible" in "".join(
            str(cell.get("outputs")) for cell in notebook.cells)  # kept, once: notebook 03 explains it
    assert servers_of(workspace) == []
    workers = subprocess.run(["pgrep", "-af", "search_worker.py"], capture_output=True, text=True)
    assert str(workspace) not in workers.stdout
