"""The checks of notebook 05's exercises (``utils.exercises.ex05``): each outcome and each
typical mistake's own message, against a real temporary SQLite store and registry.

No training: each run logs a tiny ``mlflow.pyfunc`` model (from code, a few lines that label
a review ``negative`` when it has a word like "boring") that takes text and answers a
``label`` per review as the course's classifier does. The namespace has the names the check
cells read (``experiment_name``, ``client``, ``reviews``, ``served``), and the exercises'
``solution`` and ``mistake`` code runs in it.

Exercise 05.3's check asks the model server: its answers that need one come from one real
``mlflow models serve --env-manager local`` of the tiny model (``utils.serving.ModelServer``),
started by the first test that needs it. Starting it costs two Python processes that import
MLflow (about 5 s of CPU), as much as the rest of this file, so those three tests are in the
full tier; its other answers (what is wrong before the server is asked) are checked here.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import mlflow
import pytest
import requests
from mlflow.exceptions import MlflowException

from tests.notebook_runner import workspace_store
from utils.exercises import CORRECT, GENERIC_FAILURE, INCORRECT, NOT_ATTEMPTED, ex05
from utils.serving import ModelServer

EXPERIMENT, EMPTY, SINGLE = "ex05-runs", "ex05-empty", "ex05-single"
COURSE_MODEL = "imdb-sentiment-classifier"  # notebook 05's registered_model_name
MY_MODEL, ALIAS = ex05.MY_MODEL, ex05.ALIAS
REVIEWS = ["A warm, funny and beautifully acted film.", "Two boring hours.", "Lovely music, dull story."]
LABELS = ["positive", "negative", "negative"]  # what the tiny model says of REVIEWS
# A new store migrates its SQLite schema in many transactions, each synced to disk: seconds
# on a busy disk, next to nothing in memory. So the store goes to /dev/shm where there is one.
RAM = Path("/dev/shm")

MODEL_CODE = '''\
"""A stand-in for the course's classifier: text in, a label per review out."""
import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

NEGATIVE = ("boring", "dull", "never")


class Reviews(PythonModel):
    def predict(self, context, model_input: pd.DataFrame, params=None):  # or a list, an array
        if isinstance(model_input, pd.DataFrame):  # dataframe_records, dataframe_split
            texts = model_input.iloc[:, 0]
        else:  # a list, or the array of a request's `inputs`
            texts = np.asarray(model_input).ravel()
        negative = [any(word in str(text).lower() for word in NEGATIVE) for text in texts]
        return pd.DataFrame({"label": ["negative" if n else "positive" for n in negative],
                             "positive_probability": [0.1 if n else 0.9 for n in negative]})


mlflow.models.set_model(Reviews())
'''


def _log_run(experiment_id: str, name: str, accuracy: float, code: Path) -> str:
    with mlflow.start_run(experiment_id=experiment_id, run_name=name) as run:
        mlflow.log_metric("test_accuracy", accuracy)
        # pip_requirements given: MLflow would otherwise load the model in a new process to infer them.
        mlflow.pyfunc.log_model(name="model", python_model=str(code), pip_requirements=["mlflow"])
    return run.info.run_id


@pytest.fixture(scope="module")
def store():
    """Two finished runs, each with its model (and one more, alone in the experiment
    SINGLE), and notebook 05's registry: the course's model with its champion (the best
    run's model)."""
    ram = RAM if RAM.is_dir() and os.access(RAM, os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="course-ex05-", dir=ram) as folder, \
            workspace_store(Path(folder)):
        code = Path(folder) / "tiny_classifier.py"
        code.write_text(MODEL_CODE)
        client = mlflow.MlflowClient()
        experiment_id = client.create_experiment(EXPERIMENT)
        client.create_experiment(EMPTY)
        runs = {"best": _log_run(experiment_id, "best", 0.85, code),
                "worse": _log_run(experiment_id, "worse", 0.70, code),
                "alone": _log_run(client.create_experiment(SINGLE), "alone", 0.60, code)}
        course = mlflow.register_model(f"runs:/{runs['best']}/model", COURSE_MODEL)
        client.set_registered_model_alias(COURSE_MODEL, ALIAS, course.version)
        yield client, runs


@pytest.fixture
def registry(store):
    """The learner's model, versions 1 (the best run's model) and 2, and no alias yet."""
    client, runs = store
    try:
        client.get_registered_model(MY_MODEL)
    except MlflowException:
        for run_id in (runs["best"], runs["worse"]):
            mlflow.register_model(f"runs:/{run_id}/model", MY_MODEL)
    if ALIAS in client.get_registered_model(MY_MODEL).aliases:
        client.delete_registered_model_alias(MY_MODEL, ALIAS)
    return client


def _crown(client, version) -> None:
    client.set_registered_model_alias(MY_MODEL, ALIAS, str(version))


def _namespace(client, **names):
    return {"mlflow": mlflow, "client": client, "experiment_name": EXPERIMENT,
            "reviews": list(REVIEWS), **names}


def _executed(code: str, namespace: dict) -> dict:
    exec(code, namespace)  # an exercise's solution or mistake, as the exercise cell runs it
    return namespace


def _incorrect(exercise, namespace, *words):
    verdict = exercise.evaluate(namespace)
    assert verdict.status == INCORRECT, verdict
    assert GENERIC_FAILURE not in verdict.message, verdict
    for word in words:
        assert word in verdict.message, verdict
    return verdict


# -- 05.1 a champion of your own ----------------------------------------------------------------
def test_champion_untouched_is_not_attempted(registry):
    assert ex05.q1.evaluate(_namespace(registry, my_version=...)).status == NOT_ATTEMPTED


def test_champion_solution_is_correct(registry):
    namespace = _executed(ex05.q1.solution_code, _namespace(registry))
    verdict = ex05.q1.evaluate(namespace)
    assert verdict.status == CORRECT, verdict
    assert f"{MY_MODEL}@{ALIAS} is version {namespace['my_version'].version}" in verdict.message
    assert "'best'" in verdict.message


@pytest.mark.parametrize("given", [1, "1"], ids=["number", "text"])
def test_champion_version_given_by_its_number_is_correct(registry, given):
    _crown(registry, 1)
    assert ex05.q1.evaluate(_namespace(registry, my_version=given)).status == CORRECT


def test_champion_without_an_alias_mistake_says_set_one(registry):
    namespace = _executed(ex05.q1.mistake, _namespace(registry))
    _incorrect(ex05.q1, namespace, "but no alias 'champion'", "set_registered_model_alias")


def test_champion_of_another_run_names_the_best(registry):
    _crown(registry, 2)
    _incorrect(ex05.q1, _namespace(registry, my_version=registry.get_model_version(MY_MODEL, "2")),
               "'worse'", "0.700", "the best run of 'ex05-runs' has 0.850", "DESC")


def test_champion_alias_on_another_version_than_yours_says_so(registry):
    _crown(registry, 1)
    _incorrect(ex05.q1, _namespace(registry, my_version=registry.get_model_version(MY_MODEL, "2")),
               "`my_version` is version 2", "names version 1")


def test_champion_a_version_of_the_courses_model_is_not_yours(registry):
    # The course's model has a version 1 too, of the same run: only the name tells them apart.
    _crown(registry, 1)
    theirs = registry.get_model_version(COURSE_MODEL, "1")
    _incorrect(ex05.q1, _namespace(registry, my_version=theirs), repr(COURSE_MODEL), repr(MY_MODEL))


def test_champion_under_another_name_says_the_name(registry):
    registry.delete_registered_model(MY_MODEL)
    _incorrect(ex05.q1, _namespace(registry, my_version=1), f"no registered model {MY_MODEL!r}",
               repr(COURSE_MODEL))


def test_champion_from_a_run_of_another_experiment_says_so(registry):
    # The notebook's experiment has no scored run here: the champion comes from elsewhere.
    _crown(registry, 1)
    _incorrect(ex05.q1, _namespace(registry, my_version=1, experiment_name=EMPTY),
               "which is not a finished run of 'ex05-empty'")


def test_champion_of_the_only_run_says_make_sure_of_a_second(registry, store):
    # An experiment with one scored run: its model is "the best" of nothing to choose from.
    _, runs = store
    alone = mlflow.register_model(f"runs:/{runs['alone']}/model", MY_MODEL)
    try:
        _crown(registry, alone.version)
        _incorrect(ex05.q1, _namespace(registry, my_version=alone, experiment_name=SINGLE),
                   "only one finished run with a test_accuracy", "utils.ensure_run(")
    finally:
        registry.delete_model_version(MY_MODEL, alone.version)


def test_champion_before_the_notebooks_experiment_says_run_from_the_top(registry):
    namespace = _namespace(registry, my_version=1)
    del namespace["experiment_name"]
    _incorrect(ex05.q1, namespace, "`experiment_name` names no experiment")


# -- 05.2 by its alias -------------------------------------------------------------------------
def test_alias_load_untouched_is_not_attempted(registry):
    namespace = _namespace(registry, my_champion_uri=..., my_labels=...)
    assert ex05.q2.evaluate(namespace).status == NOT_ATTEMPTED


def test_alias_load_solution_is_correct(registry):
    _crown(registry, 1)
    namespace = _executed(ex05.q2.solution_code, _namespace(registry))
    assert namespace["my_labels"] == LABELS
    verdict = ex05.q2.evaluate(namespace)
    assert verdict.status == CORRECT, verdict
    assert str(LABELS) in verdict.message


def test_alias_load_latest_mistake_says_use_the_alias(registry):
    _crown(registry, 1)
    namespace = _executed(ex05.q2.mistake, _namespace(registry))
    _incorrect(ex05.q2, namespace, "names the newest version", f"'models:/{MY_MODEL}@{ALIAS}'")


@pytest.mark.parametrize("uri, words", [
    (f"models:/{MY_MODEL}/1", ["a version by its number or another name"]),
    (f"models:/{COURSE_MODEL}@{ALIAS}", [repr(COURSE_MODEL), "not yours"]),
    ("models:/my-sentiment-clasifier@champion", ["'my-sentiment-clasifier'", "not yours"]),
    (None, ["should be the URI you loaded"]),
], ids=["by-number", "the-courses-champion", "misspelt", "none"])
def test_alias_load_another_uri_says_why(registry, uri, words):
    _crown(registry, 1)
    _incorrect(ex05.q2, _namespace(registry, my_champion_uri=uri, my_labels=LABELS), *words)


@pytest.mark.parametrize("labels", [["positive"] * 3, LABELS[::-1]], ids=["made-up", "reordered"])
def test_alias_load_labels_that_are_not_the_champions_say_what_it_answers(registry, labels):
    _crown(registry, 1)
    namespace = _namespace(registry, my_champion_uri=f"models:/{MY_MODEL}@{ALIAS}", my_labels=labels)
    _incorrect(ex05.q2, namespace, f"Your champion labels `reviews` {LABELS}", f"not {labels}")


def test_alias_load_before_the_notebooks_reviews_says_run_from_the_top(registry):
    _crown(registry, 1)
    namespace = _namespace(registry, my_champion_uri=f"models:/{MY_MODEL}@{ALIAS}", my_labels=[])
    del namespace["reviews"]
    _incorrect(ex05.q2, namespace, "`reviews` is not defined")


def test_alias_load_before_the_alias_is_set_says_set_it(registry):
    namespace = _namespace(registry, my_champion_uri=f"models:/{MY_MODEL}@{ALIAS}", my_labels=LABELS)
    _incorrect(ex05.q2, namespace, "no alias 'champion'")


@pytest.mark.parametrize("made, words", [
    (lambda predicted: predicted, ["the whole DataFrame", "`label` column"]),
    (lambda predicted: predicted.to_dict("records"), ["a dictionary per review", "`label`"]),
    (lambda predicted: predicted["label"].iloc[0], ["should be a list of labels"]),
    (lambda predicted: ["good", "bad", "bad"], ["['bad', 'good']", "not the model's labels"]),
    (lambda predicted: predicted["label"].tolist()[:2], ["2 labels for 3 reviews"]),
], ids=["dataframe", "dictionaries", "one-label", "unknown-labels", "too-few"])
def test_alias_load_labels_not_as_asked_say_why(registry, made, words):
    _crown(registry, 1)
    uri = f"models:/{MY_MODEL}@{ALIAS}"
    predicted = mlflow.pyfunc.load_model(uri).predict(REVIEWS)
    _incorrect(ex05.q2, _namespace(registry, my_champion_uri=uri, my_labels=made(predicted)), *words)


# -- 05.3 a request of your own --------------------------------------------------------------------
MY_REVIEWS = ["An unforgettable film, clever and tender.", "Boring from start to finish."]


@pytest.fixture(scope="module")
def served(store):
    """``mlflow models serve`` of the best run's model, as notebook 05's ``served``."""
    client, runs = store
    model_id = client.get_run(runs["best"]).outputs.model_outputs[0].model_id
    with ModelServer(f"models:/{model_id}", startup_timeout=120) as server:
        yield server


def test_request_untouched_is_not_attempted():
    assert ex05.q3.evaluate({"my_reviews": ..., "my_served_labels": ...}).status == NOT_ATTEMPTED


@pytest.mark.parametrize("reviews", ["A fine film.", [], ["A fine film.", " "], [1, 2]],
                         ids=["text", "empty", "blank-review", "numbers"])
def test_request_reviews_not_a_list_of_texts_say_so(reviews):
    namespace = {"my_reviews": reviews, "my_served_labels": ["positive"]}
    _incorrect(ex05.q3, namespace, "`my_reviews` should be a list of review texts")


@pytest.mark.parametrize("labels, words", [
    ([{"label": "positive", "positive_probability": 0.9}] * 2, ["a dictionary per review"]),
    (["positive"], ["1 labels for 2 reviews"]),
], ids=["whole-predictions", "too-few"])
def test_request_labels_not_as_asked_say_why(labels, words):
    # Checked before the server is asked: no server needed. The first is what the mistake's
    # `answer.json()["predictions"]` holds.
    _incorrect(ex05.q3, {"my_reviews": MY_REVIEWS, "my_served_labels": labels}, *words)


def test_request_without_a_running_server_says_start_it():
    stopped = ModelServer(f"models:/{MY_MODEL}@{ALIAS}")  # made, never started
    for namespace in ({}, {"served": stopped}):
        _incorrect(ex05.q3, {**namespace, "my_reviews": MY_REVIEWS, "my_served_labels": LABELS[:2]},
                   "The model server is not running")


@pytest.mark.full
def test_request_solution_is_correct(served):
    namespace = _executed(ex05.q3.solution_code, {"requests": requests, "served": served})
    assert namespace["my_served_labels"] == ["positive", "negative"]
    verdict = ex05.q3.evaluate(namespace)
    assert verdict.status == CORRECT, verdict
    assert "['positive', 'negative']" in verdict.message


@pytest.mark.full
def test_request_whole_predictions_mistake_says_take_the_labels(served):
    namespace = _executed(ex05.q3.mistake, {"requests": requests, "served": served})
    _incorrect(ex05.q3, namespace, "a dictionary per review", "`label`")


@pytest.mark.full
def test_request_labels_not_the_servers_say_what_it_answered(served):
    namespace = {"served": served, "my_reviews": MY_REVIEWS, "my_served_labels": ["negative", "positive"]}
    _incorrect(ex05.q3, namespace, "The server labels your reviews ['positive', 'negative']",
               "not ['negative', 'positive']")
