"""The checks of notebook 06's exercises, against a real temporary MLflow store.

Each check has three outcomes: untouched (`Not attempted`), the exercise's own solution
(`Correct`), and every typical mistake (`Incorrect`, with a message of its own).
"""

import contextlib
import os
import shutil

import mlflow
import pytest

from tests.notebook_runner import workspace_store
from utils import inspection
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


# -- 06.3: restore a deleted experiment ------------------------------------------------------------
@pytest.fixture
def deleted(store, monkeypatch):
    """The namespace after the notebook deleted `troubleshooting-restore-me` (with one run), and
    made `troubleshooting` the active experiment, as its first cells do."""
    # mlflow.set_experiment sets both; each test's are put back after it.
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", "0")
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID")
    monkeypatch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)
    client = mlflow.MlflowClient()
    mlflow.set_experiment("troubleshooting")
    found = client.get_experiment_by_name("troubleshooting-restore-me")
    if found is None:
        experiment_id = client.create_experiment("troubleshooting-restore-me")
        client.set_terminated(client.create_run(experiment_id, run_name="a-run-to-keep").info.run_id)
    else:
        experiment_id = found.experiment_id
    if client.get_experiment(experiment_id).lifecycle_stage == "active":
        client.delete_experiment(experiment_id)
    return {"mlflow": mlflow, "client": client, "experiment_name": "troubleshooting",
            "restore_me_id": experiment_id}


def test_restored_untouched_is_not_attempted(deleted):
    assert ex06.q3.evaluate({**deleted, "active_experiment": ...}).status == NOT_ATTEMPTED


def test_restored_solution_is_correct(deleted):
    verdict = ex06.q3.evaluate(_with(deleted, ex06.q3.solution_code))
    assert verdict.status == CORRECT, verdict
    assert "with its 1 run(s)" in verdict.message
    experiment = mlflow.MlflowClient().get_experiment(deleted["restore_me_id"])
    assert experiment.lifecycle_stage == "active"
    assert os.environ["MLFLOW_EXPERIMENT_ID"] == deleted["restore_me_id"]


def test_restored_typical_mistake_is_a_new_name(deleted):
    _incorrect(ex06.q3, _with(deleted, ex06.q3.mistake), "'troubleshooting-restored'",
               "still deleted", "restore_experiment")


def test_restored_but_not_set_or_not_restored(deleted):
    client, experiment_id = deleted["client"], deleted["restore_me_id"]
    _incorrect(ex06.q3, {**deleted, "active_experiment": client.get_experiment(experiment_id)},
               "is still deleted in the store")
    client.restore_experiment(experiment_id)
    _incorrect(ex06.q3, {**deleted, "active_experiment": client.get_experiment(experiment_id)},
               "not the active experiment", "mlflow.set_experiment")
    other = client.get_experiment_by_name("troubleshooting")
    _incorrect(ex06.q3, {**deleted, "active_experiment": other}, "is restored, but `active_experiment` is")
    _incorrect(ex06.q3, {**deleted, "active_experiment": "troubleshooting-restore-me"},
               "the experiment that `mlflow.set_experiment` returns")


def test_restored_when_gone_for_good_or_without_the_section(deleted):
    client = deleted["client"]
    gone = client.create_experiment("troubleshooting-collected")
    run_id = client.create_run(gone).info.run_id
    client.delete_experiment(gone)
    uri = mlflow.get_tracking_uri()  # --run-ids: only this run, not every deleted one
    assert inspection.run_mlflow_cli("gc", "--backend-store-uri", uri, "--experiment-ids", gone,
                                     "--run-ids", run_id, tracking_uri=uri).returncode == 0
    restored = client.get_experiment_by_name("troubleshooting")
    _incorrect(ex06.q3, {**deleted, "restore_me_id": gone, "active_experiment": restored}, "`mlflow gc`")
    _incorrect(ex06.q3, {"active_experiment": restored}, "`restore_me_id` is not defined")
