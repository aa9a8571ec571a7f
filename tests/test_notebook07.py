"""Notebook 07 keeps its promises: the search, its pruned trials and its champion; two
workers sharing one study; the same search on Spark.

The notebook runs once, in a fresh workspace, at its defaults but for ``spark_master=
"local[2]"`` and two trials per worker, as the Chinese edition's copy that ``python -m
tools.exercises solve`` writes (every check must say Correct). Its copy with the typical mistakes runs at the defaults on a team's
server with logins (tests/test_team_server.py), where :func:`assert_search` checks the same
search; the default tier's nbval runs the notebook as committed (every check: Not attempted).
"""

from __future__ import annotations

import ast
import re
import subprocess

import mlflow
import papermill
import pytest

from tests.notebook_runner import (NOTEBOOKS, TWINS, cell_text, course_env, execute, exercise_verdict_problems,
                                   reading_problems, servers_of)
from tools import exercises as tool

pytestmark = pytest.mark.full
NAME = "07_hyperparameter_search.ipynb"
COPY = "solved"  # the filled-in copy this file executes; the other one runs on the team server
PARAMETERS = {"spark_master": "local[2]", "trials_per_worker": 2}
PARENT = "tags.mlflow.parentRunId"


# The notebook's parameters cell, as values.
DEFAULTS = {name: ast.literal_eval(parameter["default"])
            for name, parameter in papermill.inspect_notebook(str(NOTEBOOKS / NAME)).items()}


def study_name(notebook) -> str:
    return cell_text(notebook, 'print("study:"').split("study:")[1].split()[0]


def search_runs(client, name: str):
    """The parent run named ``name`` and its children, each child's number."""
    experiment = client.get_experiment_by_name(DEFAULTS["experiment_name"])
    (parent,) = client.search_runs([experiment.experiment_id], f"attributes.run_name = '{name}'")
    children = client.search_runs([experiment.experiment_id], f"{PARENT} = '{parent.info.run_id}'",
                                  max_results=1000)
    assert parent.info.status == "FINISHED", f"{name} is {parent.info.status}"
    return parent, sorted(children, key=lambda run: int(run.data.tags["numbers"]))


def assert_search(client, notebook, parameters: dict) -> None:
    """What a search of notebook 07 leaves in the store: its trials, pruned or finished, each
    with its training; the best one's model registered as the champion; the team search of
    ``workers * trials_per_worker`` trials, none lost or run twice; and the toy study's trap."""
    given = {**DEFAULTS, **parameters}
    _, trials = search_runs(client, study_name(notebook))
    assert [int(run.data.tags["numbers"]) for run in trials] == list(range(given["n_trials"]))
    assert len({run.data.params["learning_rate"] for run in trials}) == len(trials)
    statuses = {run.info.status for run in trials}
    assert statuses == {"FINISHED", "KILLED"}, f"no trial was pruned: {statuses}"
    finished = {}
    for trial in trials:
        epochs = [m.step for m in client.get_metric_history(trial.info.run_id, "intermediate_value")]
        (training,) = client.search_runs([trial.info.experiment_id], f"{PARENT} = '{trial.info.run_id}'")
        assert training.info.run_name == f"trial-{trial.data.tags['numbers']}-training"
        assert training.data.params["train_size"] == str(given["train_size"])  # notebook 03's records
        assert training.data.params["learning_rate"] == trial.data.params["learning_rate"]
        models = client.get_run(training.info.run_id).outputs.model_outputs  # search_runs leaves them out
        assert "mlflow.latest_checkpoint_artifact" not in training.data.tags  # 87 MB a trial, not kept
        if trial.info.status == "KILLED":  # pruned after an epoch: no test, no model
            assert training.info.status == "KILLED" and models == [] and epochs == list(range(1, len(epochs) + 1))
        else:
            assert training.info.status == "FINISHED" and models and epochs == list(range(1, given["max_epochs"] + 1))
            assert trial.data.metrics["value"] == training.data.metrics["val_accuracy"]
            assert "test_accuracy" in training.data.metrics
            finished[training.info.run_id] = trial.data.metrics["value"]
    champion = client.get_model_version_by_alias(given["registered_model_name"], "champion")
    assert finished[champion.run_id] == max(finished.values())
    assert f"(one standard error, {given['val_size']} reviews)" in champion.description
    assert re.search(rf"^{given['registered_model_name']} version {champion.version} is @champion; its test "
                     r"accuracy: 0\.\d{3}$", cell_text(notebook, "update_model_version("), re.M)
    assert re.search(r"^best: +trial \d+, learning rate [\d.]+, validation accuracy 0\.\d{3} ± 0\.\d{3} "
                     rf"\(one standard error, {given['val_size']} reviews\)$", cell_text(notebook, "standard_error ="), re.M)
    assert re.search(r"^\d+ finished trials, \d+ s each; \d+ pruned", cell_text(notebook, "seconds ="), re.M)
    asked = given["workers"] * given["trials_per_worker"]
    _, team = search_runs(client, f"{study_name(notebook)}-team")
    assert [int(run.data.tags["numbers"]) for run in team] == list(range(asked))
    assert f"trial numbers: {list(range(asked))}" in cell_text(notebook, "team_children =")
    assert re.search(r"^worker 2: start-up: \d+ s$", cell_text(notebook, "search_worker.py\", team_study_name"), re.M)
    assert cell_text(notebook, "load_if_exists=True").strip().endswith(": 2")  # the trap: a parent per worker


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    root = tmp_path_factory.mktemp("nb07")
    copy = root / COPY / NAME
    tool.solve(str(TWINS / NAME), copy, COPY == "wrong")  # the Chinese edition's: it answers in Chinese
    notebook = execute(copy, root / "executed" / NAME, PARAMETERS, env=course_env(root / "ws"), cwd=TWINS)
    uri = f"sqlite:///{root / 'ws'}/mlflow.db"
    return notebook, root / "ws", mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_the_search_its_pruned_trials_its_champion_and_the_team_search(executed):
    notebook, _, client = executed
    assert_search(client, notebook, PARAMETERS)


def test_spark_runs_the_search_and_leaves_no_jvm(executed):
    notebook, _, client = executed
    spark_cell = cell_text(notebook, "spark_master is None")
    assert "Spark's JVM has exited: True" in spark_cell, spark_cell
    _, children = search_runs(client, f"{study_name(notebook)}-spark")
    assert len(children) == DEFAULTS["workers"] * PARAMETERS["trials_per_worker"]
    left = subprocess.run(["pgrep", "-af", "spark.app.name=course-07"], capture_output=True, text=True)
    assert left.stdout == "", left.stdout


def test_the_exercises_get_their_verdicts(executed):
    assert exercise_verdict_problems(TWINS / NAME, executed[0], wrong=COPY == "wrong") == []


def test_outputs_are_quiet_show_no_secret_and_nothing_is_left_running(executed):
    notebook, workspace, _ = executed
    assert reading_problems(workspace.parent / "executed" / NAME, workspace) == []
    assert "Autologging is known to be compatible" in "".join(
        str(cell.get("outputs")) for cell in notebook.cells)  # kept, once: notebook 03 explains it
    assert servers_of(workspace) == []
    workers = subprocess.run(["pgrep", "-af", "search_worker.py"], capture_output=True, text=True)
    assert str(workspace) not in workers.stdout
