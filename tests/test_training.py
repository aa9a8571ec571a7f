"""The shared training code: parameter checks, the example run, and predictions from it.

One tiny run (40/20/20 reviews) is trained once for the whole module, in an empty
workspace, through ``ensure_example_run`` - the same call later notebooks make.
"""

import mlflow
import pandas as pd
import pytest

import utils
from tests.notebook_runner import workspace_store
from utils import runs, training
from utils.backbone import packaged_backbone, resolve_backbone
from utils.errors import CourseError
from utils.sentiment_model import classify

TINY = {"train_size": 40, "val_size": 20, "test_size": 20}


# -- parameters (no training) -------------------------------------------------------------
@pytest.mark.parametrize("parameter, value, message", [
    ("train_size", 0, "train_size must be >= 2; got 0"),
    ("test_size", "10", "test_size must be a whole number; got '10'"),
    ("max_epochs", 0, "max_epochs must be >= 1; got 0"),
    ("batch_size", 1.5, "batch_size must be a whole number"),
    ("learning_rate", 0, "learning_rate must be a number above 0"),
    ("strategy", "melt", r"strategy='melt' is not a fine-tuning strategy .* Use 'freeze' .* 'no_freeze'"),
    ("strategy", "freeze_unfreeze", r"'freeze_unfreeze' is not .* or \('freeze_unfreeze', 1\)"),
    ("strategy", ["freeze_unfreeze", -1], "the unfreeze epoch of strategy must be >= 0"),
    ("pooling", "max", r"pooling='max' is not known. Use 'mean' .* or 'pooler'"),
    ("max_length", 4096, "max_length must be from 8 to 512; got 4096"),
    ("accelerator", "quantum", r"accelerator='quantum' is not an accelerator Lightning knows"),
    ("seed", -1, "seed must be from 0 to"),
    ("experiment_name", "", "experiment_name must be a non-empty string"),
    ("run_name", None, "run_name must be a non-empty string"),
])
def test_bad_parameters_are_named(parameter, value, message):
    with pytest.raises(CourseError, match=message):
        training.validate_parameters(**{parameter: value})


def test_unknown_parameter_lists_the_known_ones():
    with pytest.raises(CourseError, match="Unknown parameter epochs; the parameters are experiment_name"):
        training.validate_parameters(epochs=3)


# -- backbones (no training) --------------------------------------------------------------
@pytest.mark.parametrize("name", [None, "default", "MiniLM", ""])
def test_default_backbone_is_the_packaged_minilm(name):
    assert resolve_backbone(name) == str(packaged_backbone())
    assert (packaged_backbone() / "config.json").is_file()


def test_a_hub_id_that_cannot_be_loaded_says_what_to_do(monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)  # read at import
    with pytest.raises(CourseError, match=r"'someone/some-model' cannot be loaded as a Hugging Face "
                                          r"model: We couldn't connect .* backbone=None"):
        resolve_backbone("someone/some-model")


def test_missing_folder_backbone(tmp_path):
    with pytest.raises(CourseError, match="looks like a folder, but there is no such folder"):
        resolve_backbone(str(tmp_path / "no-model"))


def test_folder_without_config_is_not_a_model(tmp_path):
    with pytest.raises(CourseError, match="folder without config.json"):
        resolve_backbone(str(tmp_path))


def test_pinned_requirements_name_what_loading_needs():
    pins = training.pinned_requirements()
    names = {pin.split("==")[0] for pin in pins}
    assert {"mlflow", "torch", "lightning-flash", "pytorch-lightning", "transformers"} <= names
    assert "lightning-flash==0.8.2" in pins and not any("+" in pin for pin in pins)


# -- one real run, shared by the tests below ---------------------------------------------------
@pytest.fixture(scope="module")
def example_run(tmp_path_factory):
    """``ensure_example_run`` in an empty workspace; yields (run_id, workspace)."""
    workspace = tmp_path_factory.mktemp("example-ws")
    with workspace_store(workspace):
        yield utils.ensure_example_run(**TINY), workspace


@pytest.mark.full
def test_example_run_is_finished_and_autologged(example_run):
    """Recorded by notebook 03's ``record_run`` (tests/test_notebook03.py checks its records),
    with the checkpoint and the samples of the machine that notebook 07's trials leave out."""
    run_id, workspace = example_run
    run = mlflow.get_run(run_id)
    assert run.info.status == "FINISHED" and {"epochs", "optimizer_name", "lr"} <= set(run.data.params)
    assert training.parameters_from_run(run) == {  # under notebook 03's names, in its experiment
        "experiment_name": "dl_model_chapter02", "run_name": "chapter02",
        **{name: value for name, value in training.defaults().items() if name in training.RUN_PARAMETERS}, **TINY}
    assert run.data.tags["mlflow.latest_checkpoint_artifact"] == "checkpoints/latest_checkpoint.pth"
    assert any(key.startswith("system/") for key in run.data.metrics)
    assert str(workspace) in runs.logged_model_of_run(run_id).artifact_location
    # The subset it trained on is in the workspace, not beside the notebook.
    assert (workspace / "data" / "imdb-40-20-20-seed42" / "train.csv").is_file()
    # Autologging is switched off again: it was off before the call.
    from mlflow.utils.autologging_utils import autologging_is_disabled
    assert autologging_is_disabled("pytorch")


@pytest.mark.full
def test_example_run_refuses_to_nest_in_an_active_run(example_run):
    with mlflow.start_run(run_name="outer"):
        with pytest.raises(CourseError, match="still active"):
            utils.ensure_example_run(experiment_name="another_experiment", **TINY)


@pytest.fixture(scope="module")
def test_reviews(example_run):
    _, workspace = example_run
    return pd.read_csv(workspace / "data" / "imdb-40-20-20-seed42" / "test.csv")


@pytest.fixture(scope="module")
def loaded(example_run):
    run_id, _ = example_run
    return mlflow.pytorch.load_model(f"runs:/{run_id}/model", map_location="cpu")


@pytest.mark.full
def test_predictions_are_labels_in_order_and_repeatable(loaded, test_reviews):
    reviews = test_reviews["review"].tolist()[:6]
    first = classify(loaded, reviews, 4)[0]
    assert len(first) == 6 and set(first) <= {"positive", "negative"}
    assert classify(loaded, reviews)[0] == first
    assert classify(loaded, reviews[::-1], 1)[0] == first[::-1]


@pytest.mark.full
def test_predictions_agree_with_the_logged_test_accuracy_and_flash(example_run, test_reviews):
    """The labels map correctly: same accuracy as trainer.test, same labels as flash's own predict."""
    from flash import Trainer
    from flash.text import TextClassificationData

    run_id, _ = example_run
    model_id = runs.logged_model_of_run(run_id).model_id
    model = mlflow.pytorch.load_model(f"models:/{model_id}", map_location="cpu")
    predicted = classify(model, test_reviews["review"].tolist())[0]
    accuracy = (pd.Series(predicted) == test_reviews["sentiment"]).mean()
    logged = mlflow.get_run(run_id).data.metrics["test_accuracy"]
    assert accuracy == pytest.approx(logged, abs=1e-6)

    datamodule = TextClassificationData.from_lists(
        predict_data=test_reviews["review"].tolist(), batch_size=8)
    batches = Trainer(logger=False, enable_progress_bar=False).predict(
        model, datamodule=datamodule, output="labels")
    assert [label for batch in batches for label in batch] == predicted
