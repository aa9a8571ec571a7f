"""The checks of notebook 05's exercises (tests/exercise_checks.py), with a registry.

Each run logs a tiny ``mlflow.pyfunc`` model (a few lines that label a review ``negative`` when
it has a word like "boring"), which takes text and answers a ``label`` per review as the
course's classifier does. Exercise 05.3's requests go to a stand-in for the model server; the
filled-in copies of notebook 05 send them to a real one (tests/test_team_server.py).
"""

from __future__ import annotations

import io
from json import dumps
from pathlib import Path
from types import SimpleNamespace

import mlflow
import pytest
import requests
from mlflow.exceptions import MlflowException

from tests.exercise_checks import correct, executed, exercise_store, incorrect
from utils.exercises import ex05

EXPERIMENT, EMPTY, SINGLE = "ex05-runs", "ex05-empty", "ex05-single"
COURSE_MODEL = "imdb-sentiment-classifier"  # notebook 05's registered_model_name
MY_MODEL, ALIAS = ex05.MY_MODEL, ex05.ALIAS
REVIEWS = ["A warm, funny and beautifully acted film.", "Two boring hours.", "Lovely music, dull story."]
LABELS = ["positive", "negative", "negative"]  # what the tiny model says of REVIEWS

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
    with exercise_store("ex05") as workspace:
        code = Path(workspace.path) / "tiny_classifier.py"
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


# -- 05.1 a champion of your own ----------------------------------------------------------------
def test_champion_solution_is_correct(registry):
    namespace = executed(ex05.q1.solution_code, _namespace(registry))
    correct(ex05.q1, namespace, f"{MY_MODEL}@{ALIAS} is version {namespace['my_version'].version}", "'best'")


@pytest.mark.parametrize("given", [1, "1"], ids=["number", "text"])
def test_champion_version_given_by_its_number_is_correct(registry, given):
    _crown(registry, 1)
    correct(ex05.q1, _namespace(registry, my_version=given))


def test_champion_without_an_alias_mistake_says_set_one(registry):
    namespace = executed(ex05.q1.mistake, _namespace(registry))
    incorrect(ex05.q1, namespace, "but no alias 'champion'", "set_registered_model_alias")


@pytest.mark.parametrize("crowned, given, names, words", [
    (2, (MY_MODEL, "2"), {}, ["'worse'", "0.700", "the best run of 'ex05-runs' has 0.850", "DESC"]),
    (1, (MY_MODEL, "2"), {}, ["`my_version` is version 2", "names version 1"]),
    # The course's model has a version 1 too, of the same run: only the name tells them apart.
    (1, (COURSE_MODEL, "1"), {}, [repr(COURSE_MODEL), repr(MY_MODEL)]),
    # The notebook's experiment has no scored run here: the champion comes from elsewhere.
    (1, 1, {"experiment_name": EMPTY}, ["which is not a finished run of 'ex05-empty'"]),
    (1, 1, {"experiment_name": None}, ["`experiment_name` names no experiment"]),
    (None, 1, {}, [f"no registered model {MY_MODEL!r}", repr(COURSE_MODEL)]),  # under another name
], ids=["another-run", "not-the-alias", "the-courses-model", "another-experiment", "no-experiment", "no-model"])
def test_champion_not_the_best_or_not_yours_says_why(registry, crowned, given, names, words):
    if crowned is None:
        registry.delete_registered_model(MY_MODEL)
    else:
        _crown(registry, crowned)
    version = registry.get_model_version(*given) if isinstance(given, tuple) else given
    incorrect(ex05.q1, _namespace(registry, my_version=version, **names), *words)


def test_champion_of_the_only_run_says_make_sure_of_a_second(registry, store):
    # An experiment with one scored run: its model is "the best" of nothing to choose from.
    _, runs = store
    alone = mlflow.register_model(f"runs:/{runs['alone']}/model", MY_MODEL)
    try:
        _crown(registry, alone.version)
        incorrect(ex05.q1, _namespace(registry, my_version=alone, experiment_name=SINGLE),
                  "only one finished run with a test_accuracy", "utils.ensure_run(")
    finally:
        registry.delete_model_version(MY_MODEL, alone.version)


# -- 05.2 by its alias -------------------------------------------------------------------------
def test_alias_load_solution_is_correct(registry):
    _crown(registry, 1)
    namespace = executed(ex05.q2.solution_code, _namespace(registry))
    assert namespace["my_labels"] == LABELS
    correct(ex05.q2, namespace, str(LABELS))


def test_alias_load_latest_mistake_says_use_the_alias(registry):
    _crown(registry, 1)
    namespace = executed(ex05.q2.mistake, _namespace(registry))
    incorrect(ex05.q2, namespace, "names the newest version", f"'models:/{MY_MODEL}@{ALIAS}'")


@pytest.mark.parametrize("uri, labels, names, words", [
    (f"models:/{MY_MODEL}/1", LABELS, {}, ["a version by its number or another name"]),
    (f"models:/{COURSE_MODEL}@{ALIAS}", LABELS, {}, [repr(COURSE_MODEL), "not yours"]),
    ("models:/my-sentiment-clasifier@champion", LABELS, {}, ["'my-sentiment-clasifier'", "not yours"]),
    (None, LABELS, {}, ["should be the URI you loaded"]),
    (f"models:/{MY_MODEL}@{ALIAS}", ["positive"] * 3, {}, [f"Your champion labels `reviews` {LABELS}", "not ['positive"]),
    (f"models:/{MY_MODEL}@{ALIAS}", LABELS[::-1], {}, [f"Your champion labels `reviews` {LABELS}", f"not {LABELS[::-1]}"]),
    (f"models:/{MY_MODEL}@{ALIAS}", [], {"reviews": None}, ["`reviews` is not defined"]),
], ids=["by-number", "the-courses-champion", "misspelt", "none", "made-up-labels", "reordered-labels", "no-reviews"])
def test_alias_load_another_uri_or_other_labels_say_why(registry, uri, labels, names, words):
    _crown(registry, 1)
    incorrect(ex05.q2, _namespace(registry, my_champion_uri=uri, my_labels=labels, **names), *words)


def test_alias_load_before_the_alias_is_set_says_set_it(registry):
    namespace = _namespace(registry, my_champion_uri=f"models:/{MY_MODEL}@{ALIAS}", my_labels=LABELS)
    incorrect(ex05.q2, namespace, "no alias 'champion'")


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
    incorrect(ex05.q2, _namespace(registry, my_champion_uri=uri, my_labels=made(predicted)), *words)


# -- 05.3 a request of your own --------------------------------------------------------------------
class StandInServer:
    """``served`` of notebook 05: ``mlflow models serve`` of the best run's model, as far as
    the exercise's requests go. ``post`` is ``requests.post`` to it, answered in this process
    by the model (loaded through pyfunc): a real ``requests.Response``, with the request sent."""

    invocations_url = "http://127.0.0.1:5005/invocations"

    def __init__(self, model_uri: str):
        self.model = mlflow.pyfunc.load_model(model_uri)

    def post(self, url, json=None, timeout=None):
        import pandas as pd

        request = requests.Request("POST", url, json=json).prepare()
        if "dataframe_records" in json:
            rows = pd.DataFrame(json["dataframe_records"])
        else:  # `inputs`: a list of texts, which the model takes as well
            rows = json["inputs"]
        predicted = self.model.predict(rows)
        answer = requests.Response()
        answer.status_code, answer.url, answer.request = 200, url, request
        answer.raw = io.BytesIO(dumps({"predictions": predicted.to_dict("records")}).encode())
        return answer


@pytest.fixture(scope="module")
def served(store):
    client, runs = store
    model_id = client.get_run(runs["best"]).outputs.model_outputs[0].model_id
    return StandInServer(f"models:/{model_id}")


def _requested(server, code=ex05.q3.solution_code, **names):
    return {**executed(code, {"requests": SimpleNamespace(post=server.post), "served": server}), **names}


def test_request_solution_is_correct(served):
    namespace = _requested(served)
    assert namespace["my_served_labels"] == ["positive", "negative"]
    correct(ex05.q3, namespace, "['positive', 'negative']")


def test_request_sent_as_inputs_mistake_says_send_dataframe_records(served):
    namespace = _requested(served, ex05.q3.mistake)
    assert namespace["my_served_labels"] == ["positive", "negative"]  # the server took it too
    incorrect(ex05.q3, namespace, "Your request sent `inputs`, not `dataframe_records`",
              '"dataframe_records": [{"review": r} for r in my_reviews]')


@pytest.mark.parametrize("change, words", [
    (("for review in my_reviews]", "for review in my_reviews[:1]]"), ["they should be one row", "in order"]),
    (('{"review": review}', '{"text": review}'), ["Your `dataframe_records` are [{'text'"]),
    (("served.invocations_url,", '"http://127.0.0.1:5005/ping",'), ["Your request went to http://127.0.0.1:5005/ping"]),
], ids=["fewer-rows", "another-column", "another-address"])
def test_request_not_as_asked_says_why(served, change, words):
    code = ex05.q3.solution_code.replace(*change)
    assert code != ex05.q3.solution_code
    incorrect(ex05.q3, _requested(served, code), *words)


@pytest.mark.parametrize("names, words", [
    ({"my_served_labels": ["negative", "positive"]}, ["The server labelled your reviews ['positive', 'negative']",
                                                      "not ['negative', 'positive']"]),
    ({"my_response": {"predictions": []}}, ["should be what `requests.post(...)` returned", "dict"]),
    ({"my_reviews": "A fine film."}, ["`my_reviews` should be a list of review texts"]),
    ({"my_reviews": ["A fine film.", " "]}, ["`my_reviews` should be a list of review texts"]),
    ({"served": None}, ["not to the model server's"]),
], ids=["other-labels", "not-a-response", "text", "blank-review", "no-server"])
def test_request_answers_not_as_asked_say_why(served, names, words):
    incorrect(ex05.q3, _requested(served, **names), *words)


def test_request_refused_by_the_server_says_what_it_answered(served):
    namespace = _requested(served)
    namespace["my_response"].status_code = 400
    incorrect(ex05.q3, namespace, "The server answered 400")
