"""Notebook 03 run headless with papermill: what it records, and how it fails.

nbval runs the notebook with its defaults (see the `notebooks` test path); here papermill
runs it with tiny sizes and other names, twice in one workspace, and with bad input.
"""

import ast
import os
import re

import mlflow
import papermill
import pytest
import requests

from tests.notebook_runner import NOTEBOOKS, cell_text, run_notebook
from utils import training

NAME = "03_first_autologged_run.ipynb"
TINY = {"train_size": 40, "val_size": 20, "test_size": 20}
needs_data = pytest.mark.skipif(not os.environ.get("COURSE_DATA_DIR"), reason="COURSE_DATA_DIR is not set")


def test_parameters_cell_has_the_training_defaults():
    declared = papermill.inspect_notebook(str(NOTEBOOKS / NAME))
    assert {name: ast.literal_eval(p["default"]) for name, p in declared.items()} == training.DEFAULTS


@pytest.fixture(scope="module")
def twice(tmp_path_factory):
    """The notebook run twice in one workspace, with other names and tiny sizes."""
    if not os.environ.get("COURSE_DATA_DIR"):
        pytest.skip("COURSE_DATA_DIR is not set")
    workspace = tmp_path_factory.mktemp("nb03-ws")
    out = tmp_path_factory.mktemp("nb03-out")
    names = {"experiment_name": "nb03_test_experiment", "run_name": "tiny_run"}
    first = run_notebook(NAME, out, workspace, **names, **TINY)
    second = run_notebook(NAME, out, workspace, **names, **TINY)
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{workspace}/mlflow.db")
    return first, second, client, workspace


@pytest.mark.slow
def test_runs_are_recorded_under_the_given_names(twice):
    _, _, client, workspace = twice
    assert client.get_experiment_by_name("dl_model_chapter02") is None
    experiment = client.get_experiment_by_name("nb03_test_experiment")
    runs = client.search_runs([experiment.experiment_id])
    names = sorted(run.info.run_name for run in runs)
    assert names == ["tiny_run", "tiny_run", "tiny_run-pinned", "tiny_run-pinned"]
    for run in runs:
        assert run.info.status == "FINISHED"
        assert {"train_accuracy", "val_accuracy", "test_accuracy"} <= set(run.data.metrics)
        assert run.data.params["epochs"] == "1" and run.data.params["lr"] == "0.01"
        assert "model_summary.txt" in [a.path for a in client.list_artifacts(run.info.run_id)]
        model = training.logged_model_of_run(run.info.run_id, client)
        assert model is not None and model.artifact_location.startswith(str(workspace))


@pytest.mark.slow
def test_pinned_run_lists_what_loading_needs(twice):
    _, _, client, _ = twice
    experiment = client.get_experiment_by_name("nb03_test_experiment")
    for run in client.search_runs([experiment.experiment_id]):
        model = training.logged_model_of_run(run.info.run_id, client)
        requirements = (model.artifact_location + "/requirements.txt")
        listed = open(requirements, encoding="utf-8").read()
        if run.info.run_name.endswith("-pinned"):
            assert "pytorch-lightning==1.9.5" in listed and "transformers==" in listed
        else:  # the chapter's way: inferred, and the notebook says what it misses
            assert "lightning-flash==0.8.2" in listed and "sentence-transformers==" in listed
            assert "pytorch-lightning" not in listed and "transformers==" not in listed.replace(
                "sentence-transformers==", "")


@pytest.mark.slow
def test_notebook_shows_what_it_promises(twice):
    first, second, _, _ = twice
    for notebook in (first, second):
        assert re.search(r"experiment_id: \d+", cell_text(notebook, "get_experiment_by_name"))
        predicted = cell_text(notebook, 'predicted = utils.predict_sentiment(')
        assert len(re.findall(r"^\s*(positive|negative)  ", predicted, re.M)) == 2
        summary = cell_text(notebook, "model_summary.txt")
        assert "HuggingFaceAdapter" in summary and "Params" in summary
        report = cell_text(notebook, 'print("pinned way:')
        assert "chapter's way:" in report and "everything else" in report
        # MLflow's warning about the Lightning version is shown, not hidden.
        assert "Autologging is known to be compatible with pytorch-lightning" in cell_text(
            notebook, "with mlflow.start_run(experiment_id=experiment.experiment_id, run_name=params.run_name)")
        figures = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs
                   if "image/png" in o.get("data", {})]
        assert len(figures) == 1


@pytest.mark.slow
def test_the_server_it_started_is_gone(twice):
    first, second, _, _ = twice
    for notebook in (first, second):
        url = re.search(r"open this run: (http://[\d.]+:\d+)/#/experiments/\d+/runs/[0-9a-f]{32}",
                        cell_text(notebook, "utils.start_server(port=0)")).group(1)
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{url}/health", timeout=5)


@needs_data
@pytest.mark.slow
@pytest.mark.parametrize("parameter, value, message", [
    ("strategy", "melt", "strategy='melt' is not a fine-tuning strategy"),
    ("train_size", 100000, r"train_size=100000 is out of range: .* at most \d+"),
])
def test_a_bad_parameter_stops_the_notebook_and_is_named(tmp_path, parameter, value, message):
    with pytest.raises(papermill.PapermillExecutionError) as error:
        run_notebook(NAME, tmp_path, tmp_path / "ws", **{parameter: value})
    assert error.value.ename == "CourseError"
    assert re.search(message, error.value.evalue)
    # It stopped before anything was recorded.
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/ws/mlflow.db")
    assert client.get_experiment_by_name("dl_model_chapter02") is None


@pytest.mark.slow
def test_a_missing_data_folder_says_how_to_point_at_one(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "no-imdb-here"))
    with pytest.raises(papermill.PapermillExecutionError) as error:
        run_notebook(NAME, tmp_path, tmp_path / "ws", **TINY)
    assert error.value.ename == "CourseError"
    assert "no-imdb-here does not exist" in error.value.evalue
    assert "export COURSE_DATA_DIR=/path/to/imdb" in error.value.evalue
