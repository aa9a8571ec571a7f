"""The checks of notebook 01's exercises, against a real temporary MLflow store
(tests/exercise_checks.py)."""

import mlflow
import pytest

from tests.exercise_checks import correct, executed, exercise_store, incorrect
from utils.env import temporary_environment
from utils.exercises import ex01


@pytest.fixture(scope="module")
def store():
    """One new course workspace for the module, with this process pointed at it as notebook
    01 is. The tests use distinct names in it."""
    with exercise_store("ex01") as workspace, temporary_environment(MLFLOW_EXPERIMENT_ID=None):
        yield workspace
        # mlflow.set_experiment (the solution of 01.2) makes its experiment the active one.
        mlflow.tracking.fluent._active_experiment_id = None


def _answered(code: str) -> dict:
    """The notebook's names when the learner reaches the exercises, after ``code``."""
    return executed(code, {"mlflow": mlflow, "client": mlflow.MlflowClient()})


# -- 01.1: the artifact location of Default --------------------------------------------------
def test_default_location_solution_is_correct(store):
    correct(ex01.q1, _answered(ex01.q1.solution_code), str(store.artifacts_dir / "0"))


def test_default_location_as_a_file_uri_or_by_name_is_correct_too(store):
    correct(ex01.q1, {"default_location": (store.artifacts_dir / "0").as_uri()})
    correct(ex01.q1, _answered("default_location = client.get_experiment_by_name('Default').artifact_location"))


def test_default_location_typical_mistake_names_the_experiment_object(store):
    incorrect(ex01.q1, _answered(ex01.q1.mistake), "whole Experiment object", ".artifact_location")


@pytest.mark.parametrize(("answer", "words"), [
    ("0", ["Default's id"]),
    ("tracking", ["is a tracking URI"]),
    ("root", ["artifact folder of the whole workspace"]),
    ("elsewhere", ["is not where Default keeps its files"]),
    (0, ["should be text"]),
])
def test_default_location_other_mistakes_each_get_their_message(store, answer, words):
    answer = {"tracking": store.backend_store_uri, "root": str(store.artifacts_dir),
              "elsewhere": str(store.path / "mlruns" / "0")}.get(answer, answer)
    incorrect(ex01.q1, {"default_location": answer}, *words)


# -- 01.2: an experiment of one's own, with a tag ----------------------------------------------
def test_own_experiment_solution_is_correct_and_runs_twice(store):
    for _ in range(2):  # the notebook may run twice in a row in one workspace
        correct(ex01.q2, _answered(ex01.q2.solution_code), "purpose='learning MLflow'")
    experiments = mlflow.MlflowClient().search_experiments(filter_string="name = 'my-first-experiment'")
    assert len(experiments) == 1


def test_own_experiment_typical_mistake_is_the_missing_tag(store):
    incorrect(ex01.q2, _answered(ex01.q2.mistake), "no tag of your own", "set_experiment_tag",
              "my-untagged-experiment")


def test_own_experiment_other_mistakes_each_get_their_message(store):
    client = mlflow.MlflowClient()
    experiment_id = client.create_experiment("system-tags-only")  # only MLflow's own tag
    client.set_experiment_tag(experiment_id, "mlflow.note.content", "a description")
    incorrect(ex01.q2, {"my_experiment_name": "system-tags-only"}, "no tag of your own")
    incorrect(ex01.q2, {"my_experiment_name": "never-made"}, "no experiment named 'never-made'",
              "mlflow.set_experiment")
    incorrect(ex01.q2, {"my_experiment_name": "Default"}, "not one of your own")
    gone = client.create_experiment("gone", tags={"owner": "me"})
    client.delete_experiment(gone)
    incorrect(ex01.q2, {"my_experiment_name": "gone"}, "is deleted", "restore_experiment")
    incorrect(ex01.q2, {"my_experiment_name": client.get_experiment(gone)}, "whole Experiment object")
    incorrect(ex01.q2, {"my_experiment_name": ""}, "as text")
