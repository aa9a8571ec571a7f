"""The checks of notebook 06's exercises, against a real temporary MLflow store.

Each check has three outcomes: untouched (`Not attempted`), the exercise's own solution
(`Correct`), and every typical mistake (`Incorrect`, with a message of its own).
"""

import contextlib
import shutil

import mlflow
import pytest

from tests.notebook_runner import workspace_store
from utils.exercises import CORRECT, GENERIC_FAILURE, INCORRECT, NOT_ATTEMPTED, ex06


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """The module's working folder: a relative store would be created here; the tests look."""
    path = tmp_path_factory.mktemp("ex06")
    with contextlib.chdir(path):
        yield path


@pytest.fixture(scope="module")
def store(folder):
    """One new course workspace for the module (a new SQLite store takes seconds to make),
    with this process pointed at it as notebook 06 is."""
    with workspace_store(folder / "ws") as workspace:
        shutil.copy(workspace.db_path, folder / "other.db")  # a second store, without runs
        yield workspace


def _incorrect(exercise, namespace, *words: str) -> str:
    verdict = exercise.evaluate(namespace)
    assert verdict.status == INCORRECT, verdict
    assert GENERIC_FAILURE not in verdict.message
    for word in words:
        assert word in verdict.message, verdict.message
    return verdict.message


# -- 06.1: repair a store URI -------------------------------------------------------------------
@pytest.fixture
def wrong_store(store):
    """The namespace of section *The wrong store*: the run it logged, and the workspace."""
    with mlflow.start_run(experiment_id="0", run_name="a-run-to-find") as run:
        mlflow.log_metric("accuracy", 0.75)
    return {"mlflow": mlflow, "run": run, "workspace": store}


def _with(namespace, code):
    namespace = dict(namespace)
    exec(code, namespace)
    return namespace


def test_fixed_uri_untouched_is_not_attempted(wrong_store):
    assert ex06.q1.evaluate({**wrong_store, "fixed_uri": ...}).status == NOT_ATTEMPTED


def test_fixed_uri_solution_is_correct(wrong_store):
    verdict = ex06.q1.evaluate(_with(wrong_store, ex06.q1.solution_code))
    assert verdict.status == CORRECT, verdict


def test_fixed_uri_typical_mistake_is_three_slashes(wrong_store, folder):
    _incorrect(ex06.q1, _with(wrong_store, ex06.q1.mistake), "three slashes", "fourth slash")
    relative_top = wrong_store["workspace"].db_path.parts[1]  # "sqlite:///tmp/..." reads ./tmp/...
    assert not (folder / relative_top).exists(), "the check created the store it was given"


def test_fixed_uri_unchanged_is_still_relative_and_creates_nothing(wrong_store, folder):
    _incorrect(ex06.q1, {**wrong_store, "fixed_uri": "sqlite:///mlflow.db"}, "still relative")
    _incorrect(ex06.q1, {**wrong_store, "fixed_uri": "sqlite:///ws/mlflow.db"}, "relative path")
    assert not (folder / "mlflow.db").exists()


def test_fixed_uri_other_stores_and_forms(wrong_store, folder):
    workspace = wrong_store["workspace"]
    absent = folder / "absent.db"
    _incorrect(ex06.q1, {**wrong_store, "fixed_uri": f"sqlite:///{absent}"}, "There is no database")
    assert not absent.exists(), "the check created the database it looked for"
    other = folder / "other.db"  # a real MLflow store, without the run
    _incorrect(ex06.q1, {**wrong_store, "fixed_uri": f"sqlite:///{other}"}, "has no run")
    _incorrect(ex06.q1, {**wrong_store, "fixed_uri": str(workspace.db_path)}, "without saying it is a SQLite")
    _incorrect(ex06.q1, {**wrong_store, "fixed_uri": workspace.db_path}, "is a path")
    _incorrect(ex06.q1, {**wrong_store, "fixed_uri": f"sqlite:/{workspace.db_path}"}, "three slashes")
    _incorrect(ex06.q1, {**wrong_store, "fixed_uri": "./mlruns"}, "not a tracking URI for a SQLite")


def test_fixed_uri_a_server_that_is_not_there(wrong_store):
    from utils.tracking import find_free_port

    address = f"http://127.0.0.1:{find_free_port()}"
    _incorrect(ex06.q1, {**wrong_store, "fixed_uri": address}, f"Asked at {address}")


def test_fixed_uri_without_the_sections_run(store):
    _incorrect(ex06.q1, {"fixed_uri": store.backend_store_uri}, "`run` is not defined")


# -- 06.2: close a stuck run ----------------------------------------------------------------------
@pytest.fixture
def stuck(store):
    """The namespace after the notebook left a run RUNNING (a run nobody ended)."""
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("troubleshooting-your-turn")
    experiment_id = experiment.experiment_id if experiment else client.create_experiment("troubleshooting-your-turn")
    run = client.create_run(experiment_id, run_name="stuck-for-you")
    assert run.info.status == "RUNNING"
    return {"mlflow": mlflow, "client": client, "stuck_run_id": run.info.run_id}


def test_closed_run_untouched_is_not_attempted(stuck):
    assert ex06.q2.evaluate({**stuck, "closed_run": ...}).status == NOT_ATTEMPTED


def test_closed_run_solution_is_correct(stuck):
    namespace = _with(stuck, ex06.q2.solution_code)
    assert ex06.q2.evaluate(namespace).status == CORRECT
    assert mlflow.MlflowClient().get_run(stuck["stuck_run_id"]).info.status == "KILLED"


def test_closed_run_typical_mistake_is_finished_not_killed(stuck):
    _incorrect(ex06.q2, _with(stuck, ex06.q2.mistake), "as FINISHED", 'status="KILLED"')


def test_closed_run_still_running_failed_or_stale(stuck):
    client, run_id = stuck["client"], stuck["stuck_run_id"]
    _incorrect(ex06.q2, {**stuck, "closed_run": client.get_run(run_id)}, "still RUNNING")
    before = client.get_run(run_id)
    client.set_terminated(run_id, status="FAILED")
    _incorrect(ex06.q2, {**stuck, "closed_run": client.get_run(run_id)}, "FAILED says")
    client.set_terminated(run_id, status="KILLED")
    _incorrect(ex06.q2, {**stuck, "closed_run": before}, "fetched before you closed")


def test_closed_run_of_another_run_or_not_a_run(stuck):
    client = stuck["client"]
    other = client.create_run(client.get_experiment_by_name("troubleshooting-your-turn").experiment_id,
                              run_name="another-run")
    _incorrect(ex06.q2, {**stuck, "closed_run": other}, "'another-run'", "not the stuck one")
    _incorrect(ex06.q2, {**stuck, "closed_run": stuck["stuck_run_id"]}, "fetched again")
    _incorrect(ex06.q2, {"closed_run": other}, "`stuck_run_id` is not defined")
