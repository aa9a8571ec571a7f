"""A run that can be reproduced from its record (issue 18).

Fast tier, in one small store, with runs made by the MLflow client and no training: every
documented parameter value survives the trip into a run's params and back
(``loggable_params`` / ``parameters_from_run``); a run is reused only when its params equal
the ones asked for (``find_run``, ``ensure_run``); ``python -m tools.batch rerun`` refuses
bad input with one line and writes nothing.

Full tier: notebook 03's second run (tests/conftest.py, with no value at its default), which
``python -m tools.batch rerun``, run as a learner runs it, trains again to the same metrics
(from a team's server: tests/test_team_server.py).
"""

from __future__ import annotations

import logging
import os
from importlib import metadata

import mlflow
import pytest
from mlflow.entities import LoggedModelOutput

from tests.conftest import AGAIN
from tests.exercise_checks import recorded_run
from tests.notebook_runner import workspace_store
from tools import batch
from utils import runs, training
from utils.backbone import PACKAGE, packaged_backbone, parameter_from_record, portable_name
from utils.env import temporary_environment
from utils.errors import CourseError
from utils.workspace import PROCESS_VARIABLES

NB03 = training.TRAINING_NOTEBOOK
# Autologging's own params, which a course run has besides the course's.
AUTOLOGGED = {"epochs": "1", "lr": "0.03", "optimizer_name": "Adam"}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One course workspace for the fast tests of this module (a new store takes seconds)."""
    with workspace_store(tmp_path_factory.mktemp("record-ws")) as workspace:
        yield workspace


def record(params=None, *, experiment="record-tests", run_name="chapter02", tags=None, extra=None,
           model=True, finish=True, course=True) -> str:
    """A run recorded as notebook 03 records one, made with the MLflow client (no training):
    the course's params and provenance tags (``course=False``: autologging's params only),
    ``extra`` params, a READY logged model among its outputs. Returns its id."""
    run_id = recorded_run(experiment, run_name, {**AUTOLOGGED, **(training.loggable_params(params) if course else {}),
                                                 **(extra or {})},
                          tags={**(training.provenance_tags(params) if course else {}), **(tags or {})}, status=None)
    client = mlflow.MlflowClient()
    if model:
        logged_model = client.create_logged_model(client.get_run(run_id).info.experiment_id, name="model",
                                                  source_run_id=run_id)
        client.finalize_logged_model(logged_model.model_id, "READY")
        client.log_outputs(run_id, [LoggedModelOutput(logged_model.model_id, 0)])
    if finish:
        client.set_terminated(run_id)
    return run_id


def read_back(run_id: str) -> dict:
    return training.parameters_from_run(mlflow.get_run(run_id))


@pytest.fixture
def model_folder(tmp_path):
    """A local backbone folder that ``validate_parameters`` accepts (a Hugging Face config)."""
    folder = tmp_path / "my-minilm"
    folder.mkdir()
    (folder / "config.json").write_bytes((packaged_backbone() / "config.json").read_bytes())
    return folder


# -- what a run records, and what it gives back ---------------------------------------------
DOCUMENTED = {
    "the defaults": {},
    "freeze_unfreeze with its epoch": {"strategy": ("freeze_unfreeze", 1)},  # back as a list, as YAML gives it
    "no_freeze, pooler and small numbers": {"strategy": "no_freeze", "pooling": "pooler",
                                            "learning_rate": 6e-5, "max_length": 64, "seed": 7},
    "sizes, epochs, batch, accelerator": {"train_size": 96, "val_size": 32, "test_size": 48,
                                          "max_epochs": 3, "batch_size": 8, "accelerator": "cpu"},
    "the packaged backbone by name": {"backbone": "minilm"},
}


@pytest.mark.parametrize("given", DOCUMENTED.values(), ids=list(DOCUMENTED))
def test_every_documented_value_comes_back_from_the_record(store, given):
    params = training.validate_parameters(run_name="round-trip", **given)
    logged = training.loggable_params(params)
    assert set(logged) == set(training.RUN_PARAMETERS)
    assert all(isinstance(value, str) for value in logged.values())
    run_id = record(params, run_name="round-trip")
    back = read_back(run_id)
    assert back.pop("experiment_name") == "record-tests" and back.pop("run_name") == "round-trip"
    assert list(back) == list(training.RUN_PARAMETERS)  # autologging's params are not among them
    # The values the parameters cell would hold: the same run again.
    assert training.loggable_params(training.validate_parameters(
        experiment_name="record-tests", run_name="round-trip", **back)) == logged
    for name, value in {**training.defaults(), **given}.items():
        value = list(value) if isinstance(value, tuple) else value  # a strategy with its epoch, as YAML gives it
        if name in back and name != "backbone":
            assert back[name] == value and type(back[name]) is type(value), name


def test_a_local_backbone_folder_comes_back_as_its_folder(store, model_folder):
    params = training.validate_parameters(backbone=str(model_folder))
    assert read_back(record(params))["backbone"] == os.path.realpath(model_folder)


def test_a_run_that_did_not_finish_recording_is_named(store):
    params = training.validate_parameters()
    run_id = record(params, tags={training.PARAMETERS_TAG: "train_size,dropout"})
    with pytest.raises(CourseError, match=rf"Run {run_id} lists the parameters dropout but never logged them"):
        read_back(run_id)


# How a run names its backbone, and back: the packaged MiniLM by its pip package and version,
# never a path of this machine; anything else as given.
def test_the_packaged_minilm_is_named_by_its_package_and_version():
    name = portable_name(str(packaged_backbone()))
    assert name == f"{PACKAGE}=={metadata.version(PACKAGE)}"
    assert "/" not in name  # no path of this machine
    assert parameter_from_record(name) is None  # the parameters cell's default


def test_another_version_of_the_package_cannot_train_the_run_again():
    with pytest.raises(CourseError, match=rf"trained on {PACKAGE}==0\.0\.1, but this environment has "
                                          rf"{PACKAGE} {metadata.version(PACKAGE)}\. Install {PACKAGE}==0\.0\.1"):
        parameter_from_record(f"{PACKAGE}==0.0.1")


@pytest.mark.parametrize("given", ["prajjwal1/bert-tiny", "/data/models/my-model"])
def test_a_hub_id_or_a_folder_is_recorded_as_given(given):
    assert portable_name(given) == given
    assert parameter_from_record(given) == given


# -- reuse by parameters, not by name ----------------------------------------------------------
SMALL = {"train_size": 40, "val_size": 20, "test_size": 20}


def test_find_run_reuses_only_a_run_with_equal_params(store):
    experiment = "reuse-tests"
    params = training.validate_parameters(experiment_name=experiment, **SMALL)
    older = record(params, experiment=experiment)
    assert runs.find_run(params) == older
    newer = record(params, experiment=experiment)
    assert runs.find_run(params) == newer  # the newest of the equal ones
    # Not reused: an unfinished run, a run without a model, another name, the old kind of
    # record without the course's params, a run with one other value.
    record(params, experiment=experiment, finish=False)
    record(params, experiment=experiment, model=False)
    record(params, experiment=experiment, run_name="other")
    record(params, experiment=experiment, course=False)
    assert runs.find_run(params) == newer
    for changed in ({"train_size": 41}, {"seed": 7}, {"pooling": "pooler"}, {"learning_rate": 0.003},
                    {"strategy": ["freeze_unfreeze", 1]}, {"max_length": 64}):
        other = training.validate_parameters(experiment_name=experiment, **{**SMALL, **changed})
        assert runs.find_run(other) is None, changed


def test_ensure_run_returns_the_equal_run_and_ensure_example_run_any_run_of_that_name(store):
    experiment = "ensure-tests"
    params = training.validate_parameters(experiment_name=experiment, **SMALL)
    run_id = record(params, experiment=experiment)
    runs_before = len(mlflow.search_runs(experiment_names=[experiment]))
    assert runs.ensure_run(experiment_name=experiment, **SMALL) == run_id
    # Notebooks 04 and 05 look at the reader's own run of notebook 03, whatever its sizes.
    assert runs.ensure_example_run(experiment_name=experiment, train_size=200) == run_id
    assert len(mlflow.search_runs(experiment_names=[experiment])) == runs_before  # nothing trained


# -- python -m tools.batch rerun: bad input -----------------------------------------------------
def _run_ids() -> set[str]:
    client = mlflow.MlflowClient()
    experiments = [e.experiment_id for e in client.search_experiments()]
    return {run.info.run_id for run in client.search_runs(experiments, max_results=1000)}


@pytest.fixture
def rerun(store, tmp_path, capsys, monkeypatch):
    """``python -m tools.batch rerun RUN_ID --output OUT`` in this process, which MLflow then
    knows nothing about but ``COURSE_WORKSPACE`` (``workspace``, else the module's store), as
    in a new one; returns (exit code, stderr), after checking that nothing was written."""
    papermill_logger = logging.getLogger("papermill")
    level = papermill_logger.level  # main() quiets papermill's logger for the process
    # MLflow's default store, if anything fell back to it, would appear here.
    monkeypatch.chdir(tmp_path)

    def call(run_id: str, workspace=None):
        before = _run_ids()
        saved_uri = mlflow.get_tracking_uri()
        try:
            with temporary_environment(**dict.fromkeys(PROCESS_VARIABLES, None),
                                       COURSE_WORKSPACE=str(workspace or store.path)):
                mlflow.set_tracking_uri(None)
                code = batch.main(["rerun", run_id, "--output", str(tmp_path / "out"), "--no-progress"])
        finally:
            mlflow.set_tracking_uri(saved_uri)
            papermill_logger.setLevel(level)
        captured = capsys.readouterr()
        assert _run_ids() == before, "a refused rerun must make no run"
        assert sorted(p.name for p in tmp_path.iterdir()) == [], "nor an executed copy, nor a store of its own"
        assert code == batch.EXIT_USAGE and len(captured.err.strip().splitlines()) == 1, captured.err
        assert "Traceback" not in captured.err
        return captured.err
    return call


def test_rerun_of_an_unknown_run_id(rerun):
    for unknown in ("0" * 32, "not-a-run-id"):
        assert rerun(unknown).startswith(f"error: There is no run '{unknown}' in the tracking store sqlite:///")


def test_rerun_in_a_workspace_that_does_not_exist_creates_none(rerun, tmp_path):
    # A mistyped COURSE_WORKSPACE: the run is not there, and no new store appears.
    missing = tmp_path / "no-such-workspace"
    err = rerun("0" * 32, workspace=missing)
    assert err.startswith(f"error: There is no run '{'0' * 32}'") and str(missing) in err


@pytest.mark.parametrize("recorded, message", [
    ({"course": False}, "error: Run {run_id} was not made by a course notebook"),
    ({"extra": {"dropout": "0.1"}, "tags": {training.PARAMETERS_TAG: ",".join([*training.RUN_PARAMETERS, "dropout"])}},
     "error: Run {run_id} was trained with the parameter(s) dropout, which " + NB03 + " no longer declares"),
    ({"extra": {"backbone": f"{PACKAGE}==0.0.1"}}, f"Install {PACKAGE}==0.0.1"),
], ids=["not-a-course-run", "undeclared-parameter", "backbone-not-here"])
def test_rerun_of_a_run_that_cannot_be_trained_again_says_why(rerun, recorded, message):
    run_id = record(training.validate_parameters() if recorded.get("course", True) else None, **recorded)
    assert message.format(run_id=run_id) in rerun(run_id)


# -- full tier: notebook 03's second run (tests/conftest.py), trained again from its record ------
@pytest.mark.full
def test_rerun_trains_the_run_again_to_the_same_metrics_and_prints_both(notebook03_default, notebook03_again):
    first, done = notebook03_again.run, notebook03_again.rerun
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    client = notebook03_default.client()
    runs_now = client.search_runs([first.info.experiment_id], order_by=["attributes.start_time ASC"])
    assert [r.info.run_id for r in runs_now][0] == first.info.run_id and len(runs_now) == 2
    again = runs_now[1]
    assert again.info.run_name == first.info.run_name and again.info.status == "FINISHED"
    assert again.data.tags[training.RERUN_TAG] == first.info.run_id
    assert again.data.params == first.data.params
    # Deterministic training: every metric of the model, not only the test accuracy.
    model_metrics = [k for k in first.data.metrics if not k.startswith("system/")]
    assert {k: round(again.data.metrics[k], 4) for k in model_metrics} == \
        {k: round(first.data.metrics[k], 4) for k in model_metrics}
    # The executed notebook is kept under the output folder, named after the run it repeats.
    assert (notebook03_again.output / "reruns" / f"{first.info.run_id}.ipynb").is_file()
    # ... and both runs are printed side by side.
    assert f"tagged {training.RERUN_TAG}={first.info.run_id}" in done.stdout
    lines = done.stdout.splitlines()
    assert next(line for line in lines if line.startswith("parameter")).split() == ["parameter", "old", "run", "new", "run"]
    for name, value in AGAIN.items():
        if name not in ("experiment_name", "run_name"):
            assert next(line for line in lines if line.split()[:1] == [name]).split() == [name, str(value), str(value), "same"]
    accuracy = next(line for line in lines if line.split()[:1] == ["test_accuracy"]).split()
    assert accuracy[1] == accuracy[2] and accuracy[3] == "same"
    assert "Every metric is the same to 4 decimals." in done.stdout
