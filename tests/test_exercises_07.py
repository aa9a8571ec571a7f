"""The checks of notebook 07's exercises, against a real temporary MLflow store.

A search is made of plain runs here (a parent, children tagged ``mlflow.parentRunId`` with
Optuna's metric ``value`` and tag ``numbers``), and the training of exercise 07.2 is a stand-in
that logs what notebook 03's run logs for the check: no model is trained. Each check has
three outcomes: untouched (``Not attempted``), the exercise's own solution (``Correct``),
and its typical mistake (``Incorrect``, with a message of its own).
"""

from types import SimpleNamespace

import mlflow
import pytest

from tests.notebook_runner import workspace_store
from utils.exercises import CORRECT, GENERIC_FAILURE, INCORRECT, NOT_ATTEMPTED, ex07

VALUES = [0.56, 0.62, 0.58, 0.60]  # trial 1 is the best, trial 0 the worst


def _search(experiment_id: str, name: str, values) -> str:
    client = mlflow.MlflowClient()
    parent = client.create_run(experiment_id, run_name=name)
    for number, value in enumerate(values):
        child = client.create_run(experiment_id, run_name=f"trial-{number}",
                                  tags={"mlflow.parentRunId": parent.info.run_id, "numbers": str(number)})
        client.log_metric(child.info.run_id, "value", value)
        client.log_param(child.info.run_id, "learning_rate", 0.01 * (number + 1))
        client.log_param(child.info.run_id, "batch_size", 16)
        client.set_terminated(child.info.run_id)
    client.set_terminated(parent.info.run_id)
    return parent.info.run_id


@pytest.fixture(scope="module")
def notebook(tmp_path_factory):
    """The namespace of the notebook after its searches: this one, and another one whose best
    child beats every child of this one (so a search without the parent filter finds it)."""
    with workspace_store(tmp_path_factory.mktemp("ex07") / "ws"):
        experiment = mlflow.set_experiment("dl_model_search")
        parent_run_id = _search(experiment.experiment_id, "search-a", VALUES)
        _search(experiment.experiment_id, "search-a-team", [0.9, 0.5])

        def train_and_log(params):  # stands in for notebook 03's run
            mlflow.log_params(params)
            mlflow.log_metric("val_accuracy", 0.5 + params["max_length"] / 1000)

        yield {"mlflow": mlflow, "experiment": experiment, "parent_run_id": parent_run_id,
               "fixed": {"train_size": 100, "max_length": 64},
               "search": SimpleNamespace(train_and_log=train_and_log),
               "training": SimpleNamespace(validate_parameters=lambda **params: params)}


def _with(namespace, code):
    namespace = dict(namespace)
    exec(code, namespace)
    return namespace


def _incorrect(exercise, namespace, *words):
    verdict = exercise.evaluate(namespace)
    assert verdict.status == INCORRECT, verdict
    assert GENERIC_FAILURE not in verdict.message
    for word in words:
        assert word in verdict.message, verdict.message


@pytest.mark.parametrize("exercise", [ex07.q1, ex07.q2], ids=["07.1", "07.2"])
def test_untouched_is_not_attempted(notebook, exercise):
    untouched = {**notebook, **dict.fromkeys(exercise.answers, ...)}
    assert exercise.evaluate(untouched).status == NOT_ATTEMPTED


def test_best_child_solution_is_correct(notebook):
    verdict = ex07.q1.evaluate(_with(notebook, ex07.q1.solution_code))
    assert verdict.status == CORRECT, verdict
    assert "0.620" in verdict.message


def test_best_child_typical_mistake_is_the_wrong_direction(notebook):
    _incorrect(ex07.q1, _with(notebook, ex07.q1.mistake), "DESC", "the worst one")


def test_best_child_without_the_parent_filter_is_a_flat_search(notebook):
    flat = ex07.q1.solution_code.replace(
        "filter_string=f\"tags.mlflow.parentRunId = '{parent_run_id}'\",", "")
    assert flat != ex07.q1.solution_code
    _incorrect(ex07.q1, _with(notebook, flat), "another parent", "tags.mlflow.parentRunId")


def test_best_child_needs_one_row(notebook):
    many = ex07.q1.solution_code.replace("max_results=1", "max_results=3")
    _incorrect(ex07.q1, _with(notebook, many), "max_results=1")
    _incorrect(ex07.q1, {**notebook, "best_child": "trial-1"}, "DataFrame")


def test_own_search_solution_is_correct(notebook):
    verdict = ex07.q2.evaluate(_with(notebook, ex07.q2.solution_code))
    assert verdict.status == CORRECT, verdict
    assert "max_length 128" in verdict.message


def test_own_search_typical_mistake_is_flat_runs(notebook):
    _incorrect(ex07.q2, _with(notebook, ex07.q2.mistake), "no child run", "flat runs", "nested=True")


def test_own_search_other_wrong_answers(notebook):
    _incorrect(ex07.q2, {**notebook, "own_parent_id": "not-a-run"}, "no run")
    one_length = ex07.q2.solution_code.replace("(32, 128)", "(64,)")
    _incorrect(ex07.q2, _with(notebook, one_length), "two")
    child = mlflow.search_runs([notebook["experiment"].experiment_id],
                               filter_string=f"tags.mlflow.parentRunId = '{notebook['parent_run_id']}'")
    _incorrect(ex07.q2, {**notebook, "own_parent_id": child["run_id"][0]}, "itself a child run")
