"""The checks of notebook 01's exercises, against a real temporary MLflow store.

Each check has three outcomes: untouched (`Not attempted`), the exercise's own solution
(`Correct`), and every typical mistake (`Incorrect`, with a message of its own).
"""

import mlflow
import pytest

from tests.notebook_runner import workspace_store
from utils.env import temporary_environment
from utils.exercises import CORRECT, GENERIC_FAILURE, INCORRECT, NOT_ATTEMPTED, ex01


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One new course workspace for the module (a new SQLite store takes seconds to make),
    with this process pointed at it as notebook 01 is. The tests use distinct names in it."""
    with workspace_store(tmp_path_factory.mktemp("ex01") / "ws") as workspace, \
            temporary_environment(MLFLOW_EXPERIMENT_ID=None):
        yield workspace
        # mlflow.set_experiment (the solution of 01.2) makes its experiment the active one.
        mlflow.tracking.fluent._active_experiment_id = None


def _namespace():
    """What the notebook has defined when the learner reaches the exercises."""
    return {"mlflow": mlflow, "client": mlflow.MlflowClient()}


def _answered(exercise, code: str) -> dict:
    namespace = _namespace()
    exec(code, namespace)
    return namespace


def _incorrect(exercise, namespace, *words: str) -> str:
    verdict = exercise.evaluate(namespace)
    assert verdict.status == INCORRECT, verdict
    assert GENERIC_FAILURE not in verdict.message
    for word in words:
        assert word in verdict.message, verdict.message
    return verdict.message


# -- 01.1: the artifact location of Default --------------------------------------------------
def test_default_location_untouched_is_not_attempted(store):
    assert ex01.q1.evaluate({**_namespace(), "default_location": ...}).status == NOT_ATTEMPTED


def test_default_location_solution_is_correct(store):
    verdict = ex01.q1.evaluate(_answered(ex01.q1, ex01.q1.solution_code))
    assert verdict.status == CORRECT, verdict
    assert str(store.artifacts_dir / "0") in verdict.message


def test_default_location_as_a_file_uri_or_by_name_is_correct_too(store):
    location = store.artifacts_dir / "0"
    assert ex01.q1.evaluate({"default_location": location.as_uri()}).status == CORRECT
    by_name = "default_location = client.get_experiment_by_name('Default').artifact_location"
    assert ex01.q1.evaluate(_answered(ex01.q1, by_name)).status == CORRECT


def test_default_location_typical_mistake_names_the_experiment_object(store):
    _incorrect(ex01.q1, _answered(ex01.q1, ex01.q1.mistake), "whole Experiment object", ".artifact_location")


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
    _incorrect(ex01.q1, {"default_location": answer}, *words)


# -- 01.2: an experiment of one's own, with a tag ----------------------------------------------
def test_own_experiment_untouched_is_not_attempted(store):
    assert ex01.q2.evaluate({**_namespace(), "my_experiment_name": ...}).status == NOT_ATTEMPTED


def test_own_experiment_solution_is_correct_and_runs_twice(store):
    for _ in range(2):  # the notebook may run twice in a row in one workspace
        namespace = _answered(ex01.q2, ex01.q2.solution_code)
        verdict = ex01.q2.evaluate(namespace)
        assert verdict.status == CORRECT, verdict
    assert "purpose='learning MLflow'" in verdict.message
    experiments = mlflow.MlflowClient().search_experiments(filter_string="name = 'my-first-experiment'")
    assert len(experiments) == 1


def test_own_experiment_typical_mistake_is_the_missing_tag(store):
    message = _incorrect(ex01.q2, _answered(ex01.q2, ex01.q2.mistake), "no tag of your own",
                         "set_experiment_tag")
    assert "my-untagged-experiment" in message


def test_own_experiment_only_mlflow_tags_do_not_count(store):
    experiment_id = mlflow.MlflowClient().create_experiment("system-tags-only")  # tagged below
    mlflow.MlflowClient().set_experiment_tag(experiment_id, "mlflow.note.content", "a description")
    _incorrect(ex01.q2, {"my_experiment_name": "system-tags-only"}, "no tag of your own")


def test_own_experiment_missing_default_deleted_or_not_a_name(store):
    client = mlflow.MlflowClient()
    _incorrect(ex01.q2, {"my_experiment_name": "never-made"}, "no experiment named 'never-made'",
               "mlflow.set_experiment")
    _incorrect(ex01.q2, {"my_experiment_name": "Default"}, "not one of your own")
    gone = client.create_experiment("gone", tags={"owner": "me"})
    client.delete_experiment(gone)
    _incorrect(ex01.q2, {"my_experiment_name": "gone"}, "is deleted", "restore_experiment")
    _incorrect(ex01.q2, {"my_experiment_name": client.get_experiment(gone)}, "whole Experiment object")
    _incorrect(ex01.q2, {"my_experiment_name": ""}, "as text")
