"""The checks of notebook 07's exercises (tests/exercise_checks.py). A search is made of
plain runs, as MlflowStorage leaves it: a parent, and a child per trial tagged
``mlflow.parentRunId`` with Optuna's metric ``value`` and tag ``numbers``, FINISHED or, pruned,
KILLED. Exercise 07.2 trains with a stand-in for notebook 07's ``search.train``."""

from types import SimpleNamespace

import mlflow
import pytest

from tests.exercise_checks import correct, executed, exercise_store, incorrect, recorded_run
from utils.exercises import ex07
from utils.training import RunParameters

EXPERIMENT = "dl_model_search"
# Trial 1 is the best finished one, trial 0 the worst; trial 4, pruned, reported more.
TRIALS = [(0.56, "FINISHED"), (0.62, "FINISHED"), (0.58, "FINISHED"), (0.60, "FINISHED"), (0.66, "KILLED")]


def _search(name: str, trials) -> str:
    parent = recorded_run(EXPERIMENT, name)
    for number, (value, status) in enumerate(trials):
        recorded_run(EXPERIMENT, f"trial-{number}", {"learning_rate": 0.01 * (number + 1)}, {"value": value},
                     tags={"mlflow.parentRunId": parent, "numbers": str(number)}, status=status)
    return parent


def train(params, *callbacks, **start_run_options):
    """Stands in for notebook 07's ``search.train``: a run of ``params`` that records what
    notebook 03's run records for the check."""
    with mlflow.start_run(run_name=params.run_name, **start_run_options) as run:
        mlflow.log_param("max_length", params.max_length)
        mlflow.log_metric("val_accuracy", 0.5 + params.max_length / 1000)
    return run.info.run_id


@pytest.fixture(scope="module")
def notebook():
    """The notebook's names after its searches: this one, and one whose best child beats all of it."""
    with exercise_store("ex07"):
        experiment = mlflow.set_experiment(EXPERIMENT)
        parent_run_id = _search("search-a", TRIALS)
        _search("search-a-team", [(0.9, "FINISHED"), (0.5, "FINISHED")])
        yield {"mlflow": mlflow, "experiment": experiment, "parent_run_id": parent_run_id,
               "base_params": RunParameters(experiment_name=EXPERIMENT, train_size=100, max_length=64),
               "search": SimpleNamespace(train=train)}


def test_best_child_solution_is_correct(notebook):
    correct(ex07.q1, executed(ex07.q1.solution_code, notebook), "0.620", "the best of 4 children")


def test_best_child_typical_mistake_is_the_wrong_direction(notebook):
    incorrect(ex07.q1, executed(ex07.q1.mistake, notebook), "DESC", "the worst one")


@pytest.mark.parametrize("left_out, words", [
    (" and attributes.status = 'FINISHED'", ["a pruned trial (status KILLED)", "attributes.status = 'FINISHED'"]),
    ("tags.mlflow.parentRunId = '{parent_run_id}' and ", ["another parent", "tags.mlflow.parentRunId"]),
], ids=["pruned", "flat"])
def test_best_child_without_part_of_the_filter_says_which(notebook, left_out, words):
    code = ex07.q1.solution_code.replace(left_out, "")
    assert code != ex07.q1.solution_code
    incorrect(ex07.q1, executed(code, notebook), *words)


def test_best_child_needs_one_row(notebook):
    many = ex07.q1.solution_code.replace("max_results=1", "max_results=3")
    incorrect(ex07.q1, executed(many, notebook), "max_results=1")
    incorrect(ex07.q1, {**notebook, "best_child": "trial-1"}, "DataFrame")


def test_own_search_solution_is_correct(notebook):
    correct(ex07.q2, executed(ex07.q2.solution_code, notebook), "max_length 128")


def test_own_search_typical_mistake_is_flat_runs(notebook):
    incorrect(ex07.q2, executed(ex07.q2.mistake, notebook), "no child run", "flat runs", "nested=True")


@pytest.mark.parametrize("lengths", ["(64, 128)", "(32,)", "(32, 128, 256)", "(32, 32)"])
def test_own_search_of_other_max_lengths_asks_for_32_and_128(notebook, lengths):
    code = ex07.q2.solution_code.replace("(32, 128)", lengths)
    incorrect(ex07.q2, executed(code, notebook), "one child with 32 and one with 128")


def test_own_search_other_wrong_answers(notebook):
    child = mlflow.search_runs([notebook["experiment"].experiment_id],
                               filter_string=f"tags.mlflow.parentRunId = '{notebook['parent_run_id']}'")
    incorrect(ex07.q2, {**notebook, "own_parent_id": child["run_id"][0]}, "itself a child run")
    untrained = """\
with mlflow.start_run(run_name="max-length-search") as own_parent:
    for length in (32, 128):
        with mlflow.start_run(run_name=f"max_length-{length}", nested=True):  # no training inside
            mlflow.log_param("max_length", length)
own_parent_id = own_parent.info.run_id"""
    incorrect(ex07.q2, executed(untrained, notebook), "have no val_accuracy", "search.train(params, nested=True)")
