"""A run that can be reproduced from its record (issue 18).

Fast tier, in one small store, with runs made by the MLflow client and no training: every
documented parameter value survives the trip into a run's params and back
(``loggable_params`` / ``parameters_from_run``); a run is reused only when its params equal
the ones asked for (``find_run``, ``ensure_run``); ``python -m tools.batch rerun`` refuses
bad input with one line and writes nothing.

Full tier: notebook 03 with unusual values records each of them, and ``tools.batch rerun``,
run as a learner runs it, trains the run again to the same test accuracy.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import mlflow
import pytest
from mlflow.entities import LoggedModelOutput, Param, RunTag

from tests.notebook_runner import run_notebook, workspace_store
from tools import batch
from utils import runs, training
from utils.backbone import PACKAGE, packaged_backbone, portable_name
from utils.env import temporary_environment
from utils.errors import CourseError
from utils.workspace import PROCESS_VARIABLES, repo_root

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
    client = mlflow.MlflowClient()
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    run = client.create_run(experiment_id, run_name=run_name)
    run_id = run.info.run_id
    logged = {**AUTOLOGGED, **(training.loggable_params(params) if course else {}), **(extra or {})}
    all_tags = {**(training.provenance_tags(params) if course else {}), **(tags or {})}
    client.log_batch(run_id, params=[Param(k, v) for k, v in logged.items()],
                     tags=[RunTag(k, v) for k, v in all_tags.items()])
    if model:
        logged_model = client.create_logged_model(experiment_id, name="model", source_run_id=run_id)
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
    "freeze_unfreeze with its epoch": {"strategy": ["freeze_unfreeze", 1]},
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
    for name, value in {**training.DEFAULTS, **given}.items():
        if name in back and name != "backbone" and not isinstance(value, list):
            assert back[name] == value and type(back[name]) is type(value), name


def test_a_strategy_with_a_value_is_recorded_as_its_literal_and_read_back_as_a_list(store):
    params = training.validate_parameters(strategy=("freeze_unfreeze", 1))
    assert training.loggable_params(params)["strategy"] == "('freeze_unfreeze', 1)"
    assert read_back(record(params))["strategy"] == ["freeze_unfreeze", 1]


def test_the_packaged_backbone_is_its_package_and_comes_back_as_none(store):
    params = training.validate_parameters(backbone=None)
    recorded = training.loggable_params(params)["backbone"]
    assert recorded == portable_name(str(packaged_backbone())) and recorded.startswith(f"{PACKAGE}==")
    assert read_back(record(params))["backbone"] is None


def test_a_local_backbone_folder_comes_back_as_its_folder(store, model_folder):
    params = training.validate_parameters(backbone=str(model_folder))
    assert read_back(record(params))["backbone"] == os.path.realpath(model_folder)


def test_another_package_version_cannot_be_trained_again(store):
    params = training.validate_parameters()
    run_id = record(params, extra={"backbone": f"{PACKAGE}==0.0.1"})
    with pytest.raises(CourseError, match=rf"trained on {PACKAGE}==0\.0\.1, but this environment has"):
        read_back(run_id)


def test_a_run_the_course_did_not_make_is_named(store):
    run_id = record(course=False)
    with pytest.raises(CourseError, match=rf"Run {run_id} was not made by a course notebook"):
        read_back(run_id)


def test_a_run_that_did_not_finish_recording_is_named(store):
    params = training.validate_parameters()
    run_id = record(params, tags={training.PARAMETERS_TAG: "train_size,dropout"})
    with pytest.raises(CourseError, match=rf"Run {run_id} lists the parameters dropout but never logged them"):
        read_back(run_id)


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
    knows nothing about but ``COURSE_WORKSPACE``, as in a new one; returns (exit code,
    stderr), after checking that nothing was written."""
    papermill_logger = logging.getLogger("papermill")
    level = papermill_logger.level  # main() quiets papermill's logger for the process
    # MLflow's default store, if anything fell back to it, would appear here.
    monkeypatch.chdir(tmp_path)

    def call(run_id: str):
        before = _run_ids()
        saved_uri = mlflow.get_tracking_uri()
        try:
            with temporary_environment(**dict.fromkeys(PROCESS_VARIABLES, None)):
                mlflow.set_tracking_uri(None)
                code = batch.main(["rerun", run_id, "--output", str(tmp_path / "out"), "--no-progress"])
        finally:
            mlflow.set_tracking_uri(saved_uri)
            papermill_logger.setLevel(level)
        captured = capsys.readouterr()
        assert _run_ids() == before, "a refused rerun must make no run"
        assert not (tmp_path / "out").exists(), "a refused rerun must write no executed copy"
        assert sorted(p.name for p in tmp_path.iterdir()) == [], "nor a store of its own"
        return code, captured.err
    return call


def test_rerun_of_an_unknown_run_id(rerun):
    for unknown in ("0" * 32, "not-a-run-id"):
        code, err = rerun(unknown)
        assert code == batch.EXIT_USAGE
        assert err.startswith(f"error: There is no run '{unknown}' in the tracking store sqlite:///")
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_rerun_in_a_workspace_that_does_not_exist_creates_none(tmp_path, capsys, monkeypatch):
    # A mistyped COURSE_WORKSPACE: the run is not there, and no new store appears.
    missing = tmp_path / "no-such-workspace"
    monkeypatch.chdir(tmp_path)
    saved_uri = mlflow.get_tracking_uri()
    try:
        with temporary_environment(COURSE_WORKSPACE=str(missing), **dict.fromkeys(PROCESS_VARIABLES, None)):
            mlflow.set_tracking_uri(None)
            code = batch.main(["rerun", "0" * 32, "--output", str(tmp_path / "out"), "--no-progress"])
    finally:
        mlflow.set_tracking_uri(saved_uri)
        logging.getLogger("papermill").setLevel(logging.NOTSET)
    err = capsys.readouterr().err
    assert code == batch.EXIT_USAGE
    assert err.startswith(f"error: There is no run '{'0' * 32}'") and str(missing) in err
    assert len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "nothing may be written"


def test_rerun_of_a_run_no_course_notebook_made(rerun):
    run_id = record(course=False)
    code, err = rerun(run_id)
    assert code == batch.EXIT_USAGE
    assert err.startswith(f"error: Run {run_id} was not made by a course notebook")
    assert len(err.strip().splitlines()) == 1


def test_rerun_of_a_run_whose_parameter_the_notebook_no_longer_declares(rerun):
    params = training.validate_parameters()
    listed = ",".join([*training.RUN_PARAMETERS, "dropout"])
    run_id = record(params, extra={"dropout": "0.1"}, tags={training.PARAMETERS_TAG: listed})
    code, err = rerun(run_id)
    assert code == batch.EXIT_USAGE
    assert err.startswith(f"error: Run {run_id} was trained with the parameter(s) dropout, which "
                          f"{NB03} no longer declares")
    assert len(err.strip().splitlines()) == 1


def test_rerun_of_a_run_whose_backbone_is_not_here(rerun):
    run_id = record(training.validate_parameters(), extra={"backbone": f"{PACKAGE}==0.0.1"})
    code, err = rerun(run_id)
    assert code == batch.EXIT_USAGE and f"Install {PACKAGE}==0.0.1" in err
    assert len(err.strip().splitlines()) == 1


# -- full tier: notebook 03 with unusual values, then trained again from its record --------------
UNUSUAL = {"train_size": 96, "val_size": 32, "test_size": 48, "batch_size": 8, "max_length": 64,
           "learning_rate": 0.02, "seed": 7}


@pytest.fixture(scope="module")
def rerun_of_unusual(tmp_path_factory):
    """Notebook 03 with UNUSUAL values, then ``python -m tools.batch rerun <its run>`` as a
    subprocess from the course folder, in the same workspace."""
    workspace = tmp_path_factory.mktemp("rerun-ws")
    out = tmp_path_factory.mktemp("rerun-out")
    run_notebook(NB03, out / "first", workspace, **UNUSUAL)
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{workspace}/mlflow.db")
    (first,) = client.search_runs([client.get_experiment_by_name("dl_model_chapter02").experiment_id])
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "COURSE_PARAMS")}
    done = subprocess.run(
        [sys.executable, "-m", "tools.batch", "rerun", first.info.run_id, "--output", str(out / "batch")],
        cwd=repo_root(), env={**env, "COURSE_WORKSPACE": str(workspace)},
        capture_output=True, text=True, timeout=1200,
    )
    return first, done, client, out / "batch"


@pytest.mark.full
def test_notebook_03_records_every_value_under_the_parameters_cell_s_names(rerun_of_unusual):
    first, _, _, _ = rerun_of_unusual
    params = first.data.params
    for name, value in UNUSUAL.items():
        assert params[name] == str(value), name
    assert params["strategy"] == "freeze" and params["pooling"] == "mean" and params["max_epochs"] == "1"
    assert params["backbone"] == portable_name(str(packaged_backbone()))
    assert "/" not in params["backbone"] and os.sep not in params["backbone"]
    assert first.data.tags[training.NOTEBOOK_TAG] == NB03
    assert first.data.tags[training.PARAMETERS_TAG].split(",") == list(training.RUN_PARAMETERS)


@pytest.mark.full
def test_rerun_trains_the_same_run_again(rerun_of_unusual):
    first, done, client, output = rerun_of_unusual
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    runs = client.search_runs([first.info.experiment_id], order_by=["attributes.start_time ASC"])
    assert [r.info.run_id for r in runs][0] == first.info.run_id and len(runs) == 2
    again = runs[1]
    assert again.info.run_name == first.info.run_name and again.info.status == "FINISHED"
    assert again.data.tags[training.RERUN_TAG] == first.info.run_id
    assert again.data.params == first.data.params
    assert round(again.data.metrics["test_accuracy"], 4) == round(first.data.metrics["test_accuracy"], 4)
    # Deterministic training: every metric of the model, not only the test accuracy.
    model_metrics = [k for k in first.data.metrics if not k.startswith("system/")]
    assert {k: round(again.data.metrics[k], 4) for k in model_metrics} == \
        {k: round(first.data.metrics[k], 4) for k in model_metrics}
    # The executed notebook is kept under the output folder, named after the run it repeats.
    assert (output / "reruns" / f"{first.info.run_id}.ipynb").is_file()


@pytest.mark.full
def test_rerun_prints_both_runs_side_by_side(rerun_of_unusual):
    first, done, _, _ = rerun_of_unusual
    report = done.stdout
    assert f"tagged {training.RERUN_TAG}={first.info.run_id}" in report
    lines = report.splitlines()
    header = next(line for line in lines if line.startswith("parameter"))
    assert header.split() == ["parameter", "old", "run", "new", "run"]
    for name, value in UNUSUAL.items():
        row = next(line for line in lines if line.split()[:1] == [name])
        assert row.split() == [name, str(value), str(value), "same"], row
    accuracy = next(line for line in lines if line.split()[:1] == ["test_accuracy"]).split()
    assert accuracy[1] == accuracy[2] and accuracy[3] == "same"
    assert "Every metric is the same to 4 decimals." in report
