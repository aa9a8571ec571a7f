"""The checks of notebook 06's exercises, against a real temporary MLflow store
(tests/exercise_checks.py)."""

import contextlib
import os
import shutil

import mlflow
import pytest

from tests.exercise_checks import correct, executed, incorrect
from tests.notebook_runner import workspace_store
from utils import inspection
from utils.exercises import ex06


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


# -- 06.1: repair a store URI -------------------------------------------------------------------
@pytest.fixture
def wrong_store(store):
    """The namespace of section *The wrong store*: the run it logged, and the workspace."""
    with mlflow.start_run(experiment_id="0", run_name="a-run-to-find") as run:
        mlflow.log_metric("accuracy", 0.75)
    return {"mlflow": mlflow, "run": run, "workspace": store}


def test_fixed_uri_solution_is_correct(wrong_store):
    correct(ex06.q1, executed(ex06.q1.solution_code, wrong_store))


def test_fixed_uri_typical_mistake_is_three_slashes(wrong_store, folder):
    incorrect(ex06.q1, executed(ex06.q1.mistake, wrong_store), "three slashes", "fourth slash")
    relative_top = wrong_store["workspace"].db_path.parts[1]  # "sqlite:///tmp/..." reads ./tmp/...
    assert not (folder / relative_top).exists(), "the check created the store it was given"


@pytest.mark.parametrize("given, words", [
    ("sqlite:///mlflow.db", ["still relative"]),
    ("sqlite:///ws/mlflow.db", ["relative path"]),
    ("sqlite:///{folder}/absent.db", ["There is no database"]),
    ("sqlite:///{folder}/other.db", ["has no run"]),  # a real MLflow store, without the run
    ("{db}", ["without saying it is a SQLite"]),
    ("sqlite:/{db}", ["three slashes"]),
    ("./mlruns", ["not a tracking URI for a SQLite"]),
    ("http://127.0.0.1:{port}", ["Asked at http://127.0.0.1:"]),  # a server that is not there
    (None, ["is a path"]),  # the database's Path itself
])
def test_fixed_uri_other_answers_say_why_and_create_nothing(wrong_store, folder, given, words):
    from utils.tracking import find_free_port

    db = wrong_store["workspace"].db_path
    answer = db if given is None else given.format(folder=folder, db=db, port=find_free_port())
    incorrect(ex06.q1, {**wrong_store, "fixed_uri": answer}, *words)
    assert not (folder / "mlflow.db").exists() and not (folder / "absent.db").exists()


def test_fixed_uri_without_the_sections_run(store):
    incorrect(ex06.q1, {"fixed_uri": store.backend_store_uri}, "`run` is not defined")


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


def test_closed_run_solution_is_correct(stuck):
    namespace = executed(ex06.q2.solution_code, stuck)
    correct(ex06.q2, namespace)
    assert mlflow.MlflowClient().get_run(stuck["stuck_run_id"]).info.status == "KILLED"


def test_closed_run_typical_mistake_is_finished_not_killed(stuck):
    incorrect(ex06.q2, executed(ex06.q2.mistake, stuck), "as FINISHED", 'status="KILLED"')


def test_closed_run_still_running_failed_or_stale(stuck):
    client, run_id = stuck["client"], stuck["stuck_run_id"]
    incorrect(ex06.q2, {**stuck, "closed_run": client.get_run(run_id)}, "still RUNNING")
    before = client.get_run(run_id)
    client.set_terminated(run_id, status="FAILED")
    incorrect(ex06.q2, {**stuck, "closed_run": client.get_run(run_id)}, "FAILED says")
    client.set_terminated(run_id, status="KILLED")
    incorrect(ex06.q2, {**stuck, "closed_run": before}, "fetched before you closed")


def test_closed_run_of_another_run_or_not_a_run(stuck):
    client = stuck["client"]
    other = client.create_run(client.get_experiment_by_name("troubleshooting-your-turn").experiment_id,
                              run_name="another-run")
    incorrect(ex06.q2, {**stuck, "closed_run": other}, "'another-run'", "not the stuck one")
    incorrect(ex06.q2, {**stuck, "closed_run": stuck["stuck_run_id"]}, "fetched again")
    incorrect(ex06.q2, {"closed_run": other}, "`stuck_run_id` is not defined")


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


def test_restored_solution_is_correct(deleted):
    correct(ex06.q3, executed(ex06.q3.solution_code, deleted), "with its 1 run(s)")
    experiment = mlflow.MlflowClient().get_experiment(deleted["restore_me_id"])
    assert experiment.lifecycle_stage == "active"
    assert os.environ["MLFLOW_EXPERIMENT_ID"] == deleted["restore_me_id"]


def test_restored_typical_mistake_is_a_new_name(deleted):
    incorrect(ex06.q3, executed(ex06.q3.mistake, deleted), "'troubleshooting-restored'",
               "still deleted", "restore_experiment")


def test_restored_but_not_set_or_not_restored(deleted):
    client, experiment_id = deleted["client"], deleted["restore_me_id"]
    incorrect(ex06.q3, {**deleted, "active_experiment": client.get_experiment(experiment_id)},
               "is still deleted in the store")
    client.restore_experiment(experiment_id)
    incorrect(ex06.q3, {**deleted, "active_experiment": client.get_experiment(experiment_id)},
               "not the active experiment", "mlflow.set_experiment")
    other = client.get_experiment_by_name("troubleshooting")
    incorrect(ex06.q3, {**deleted, "active_experiment": other}, "is restored, but `active_experiment` is")
    incorrect(ex06.q3, {**deleted, "active_experiment": "troubleshooting-restore-me"},
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
    incorrect(ex06.q3, {**deleted, "restore_me_id": gone, "active_experiment": restored}, "`mlflow gc`")
    incorrect(ex06.q3, {"active_experiment": restored}, "`restore_me_id` is not defined")
