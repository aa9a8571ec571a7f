"""Inspection helpers, on a real SQLite store with a small PyTorch model logged by MLflow."""

from pathlib import Path
from urllib.parse import unquote, urlparse

import matplotlib

matplotlib.use("Agg")

import mlflow  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from tests.notebook_runner import workspace_store  # noqa: E402
from utils import inspection, runs  # noqa: E402

pytestmark = pytest.mark.full
EXPERIMENT = "inspection-test"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A fresh course workspace holding one run that logged a pickled torch.nn.Linear."""
    with workspace_store(tmp_path_factory.mktemp("ws")) as workspace:
        mlflow.set_experiment(EXPERIMENT)
        torch.manual_seed(0)
        with mlflow.start_run(run_name="linear") as run:
            mlflow.log_param("lr", 0.1)
            mlflow.log_metric("val_accuracy", 0.75)
            # Pickle, as Lightning autologging does, so the files match the chapter's.
            info = mlflow.pytorch.log_model(torch.nn.Linear(3, 2), name="model",
                                            serialization_format="pickle")
        with mlflow.start_run(run_name="no-model") as bare:
            mlflow.log_metric("val_accuracy", 0.5)
        yield workspace, run.info.run_id, info, bare.info.run_id


def _on_disk(uri: str) -> Path:
    """The folder of a local artifact URI (a plain path or ``file://...``)."""
    return Path(unquote(urlparse(uri).path))


def test_the_logged_model_is_found_on_disk_apart_from_the_run(store):
    workspace, run_id, info, _ = store
    model = runs.logged_model_of_run(run_id)
    assert model.model_id == info.model_id and model.source_run_id == run_id
    folder = _on_disk(model.artifact_location)
    assert folder.is_dir() and folder.is_relative_to(workspace.artifacts_dir)
    assert folder.parent.name == info.model_id and folder.parent.parent.name == "models"
    run_folder = _on_disk(mlflow.get_run(run_id).info.artifact_uri)
    assert not (run_folder / "model").exists()  # not the chapter's run/model/ any more


def test_tree_shows_every_file_of_the_model(store):
    _, run_id, _, _ = store
    folder = _on_disk(runs.logged_model_of_run(run_id).artifact_location)
    tree = inspection.artifact_tree(folder)
    lines = tree.splitlines()
    assert lines[0] == "artifacts/"
    for name in ["MLmodel", "conda.yaml", "python_env.yaml", "requirements.txt",
                 "model.pth", "pickle_module_info.txt"]:
        assert any(line.split("  (")[0].endswith(f"── {name}") for line in lines), (name, tree)
    # Folders come first, and files inside data/ are drawn one level deeper.
    assert lines[1] == "├── data/"
    assert any(line.startswith("│   ├── model.pth") or line.startswith("│   └── model.pth")
               for line in lines)
    assert inspection.artifact_tree(folder, max_depth=1, sizes=False).count("model.pth") == 0


def test_artifact_tree_asks_mlflow_and_draws_the_same_tree(store):
    """Notebooks 03 and 05 list a model's files through MLflow (so that a tracking server's
    artifacts work too): the drawing is the same as that of the files on disk."""
    _, run_id, _, _ = store
    model = runs.logged_model_of_run(run_id)
    listed = inspection.artifact_tree(model.artifact_location)
    on_disk = inspection.artifact_tree(_on_disk(model.artifact_location))
    assert listed == on_disk
    assert "model.pth" in listed and listed.splitlines()[0] == "artifacts/"
    shallow = inspection.artifact_tree(mlflow.get_run(run_id).info.artifact_uri, max_depth=1, sizes=False)
    assert "(" not in shallow  # no sizes


def test_creating_an_existing_experiment_fails_with_one_clear_line(store):
    workspace, _, _, _ = store
    result = inspection.run_mlflow_cli("experiments", "create", "-n", EXPERIMENT,
                                       tracking_uri=workspace.tracking_uri)
    assert result.returncode != 0
    message = inspection.cli_error(result.stderr)
    assert "already exists" in message and EXPERIMENT in message
    assert "\n" not in message and "sqlite3" not in message


def test_run_without_a_model_has_none(store):
    _, _, _, bare_run_id = store
    assert runs.logged_model_of_run(bare_run_id) is None


def test_chart_compares_runs(store):
    runs = mlflow.search_runs(experiment_names=[EXPERIMENT])
    figure = inspection.plot_run_comparison(runs, ["metrics.val_accuracy"])
    heights = sorted(bar.get_height() for bar in figure.axes[0].patches)
    assert heights == [0.5, 0.75]
    labels = {tick.get_text() for tick in figure.axes[0].get_xticklabels()}
    assert labels == {"linear", "no-model"}


def test_sizes_read_like_a_person_would_write_them():
    assert inspection.human_size(512) == "512 B"
    assert inspection.human_size(1536) == "1.5 KB"
    assert inspection.human_size(3 * 1024 ** 2) == "3.0 MB"
    assert inspection.human_size(0) == "0 B" and inspection.human_size(1023) == "1023 B"
