"""The logged classifier served over REST by ``mlflow models serve --env-manager local``
(issue 19), through ``utils.serving.ModelServer``: a real server process per model URI.

Fast tier: what ModelServer refuses before it starts anything. Full tier: notebook 03's
default run (one execution for the session, tests/conftest.py), served by its run's URI and
by a registry alias; the answers are pyfunc's, bad requests get 400 with a message, and
nothing of the server is left after ``stop()``.
"""

from __future__ import annotations

import mlflow
import psutil
import pytest
import requests

from tests.model_servers import model_servers_of, still_running
from tests.notebook_runner import workspace_store
from tests.test_sentiment_model import OBVIOUS
from utils.errors import CourseError
from utils.serving import ModelServer

REGISTERED = "served-classifier"


# -- refused before anything starts (fast) --------------------------------------------------------
@pytest.mark.parametrize("uri, port, message", [
    ("", 0, "model_uri must name a model"),
    (None, 0, "model_uri must name a model"),
    ("runs:/x/model", -1, "port must be a whole number from 1 to 65535, or 0"),
    ("runs:/x/model", True, "port must be a whole number"),
    ("runs:/x/model", 70000, "port must be a whole number"),
])
def test_bad_arguments_are_refused(uri, port, message):
    with pytest.raises(CourseError, match=message):
        ModelServer(uri, port=port)


def test_the_command_is_mlflow_models_serve_with_the_local_environment():
    server = ModelServer("models:/m@champion", port=5005)
    assert server.command_line() == ("mlflow models serve -m models:/m@champion --env-manager local "
                                     "--host 127.0.0.1 --port 5005")
    assert server.invocations_url == "http://127.0.0.1:5005/invocations"
    assert not server.is_running
    server.stop()  # stopping a server that never started is harmless


# -- a real server (full) --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def default_run(notebook03_default):
    with workspace_store(notebook03_default.workspace):
        yield notebook03_default


@pytest.fixture(scope="module")
def classifier(default_run):
    return mlflow.pyfunc.load_model(f"runs:/{default_run.run_id}/model")


def _predict(server: ModelServer, body) -> requests.Response:
    return requests.post(server.invocations_url, json=body, timeout=60)


def _process_tree(server: ModelServer) -> list[psutil.Process]:
    parent = psutil.Process(server.process.pid)
    return [parent, *parent.children(recursive=True)]


@pytest.fixture(scope="module")
def served(default_run):
    """``mlflow models serve`` on ``runs:/<id>/model``, and its processes while it runs."""
    server = ModelServer(f"runs:/{default_run.run_id}/model").start()
    try:
        yield server, _process_tree(server)
    finally:
        server.stop()


def _same_answers(answers: list[dict], expected) -> None:
    assert [a["label"] for a in answers] == expected["label"].tolist()
    assert [a["positive_probability"] for a in answers] == pytest.approx(
        expected["positive_probability"].tolist(), abs=1e-6)


@pytest.mark.full
def test_the_served_model_answers_as_pyfunc_does(served, classifier):
    server, _ = served
    reviews = list(OBVIOUS)
    answer = _predict(server, {"inputs": reviews})
    assert answer.status_code == 200, answer.text[:500]
    answers = answer.json()["predictions"]
    _same_answers(answers, classifier.predict(reviews))
    assert [a["label"] for a in answers] == list(OBVIOUS.values())


@pytest.mark.full
@pytest.mark.parametrize("form", ["dataframe_split", "dataframe_records"])
def test_it_takes_a_dataframe_with_a_review_column(served, classifier, form):
    server, _ = served
    reviews = list(OBVIOUS)
    body = ({"dataframe_split": {"columns": ["review"], "data": [[r] for r in reviews]}}
            if form == "dataframe_split" else {"dataframe_records": [{"review": r} for r in reviews]})
    answer = _predict(server, body)
    assert answer.status_code == 200, answer.text[:500]
    _same_answers(answer.json()["predictions"], classifier.predict(reviews))


BAD_REQUESTS = {
    # MLflow's own check of the signature (one input column) refuses it before the model.
    "empty list": ({"inputs": []}, "Model inference is missing inputs"),
    "a number": ({"inputs": ["A fine film.", 3]}, "Review 1 is 3 (int), not text."),
    "a null": ({"inputs": ["A fine film.", None]}, "Review 1 is None (NoneType), not text."),
    "blank text": ({"inputs": [""]}, "Review 0 is empty: give the text of a review."),
    "wrong shape": ({"reviews": ["A fine film."]}, "must be a JSON dictionary with exactly one of the input fields"),
    "a bare list": (["A fine film."], "Received a list."),
    "another column": ({"dataframe_split": {"columns": ["text"], "data": [["Great fun."]]}},
                       "one column named 'review'; got the columns ['text']"),
    "not JSON": ("not json", "Ensure that input is a valid JSON formatted string"),
}


@pytest.mark.full
@pytest.mark.parametrize("case", BAD_REQUESTS, ids=list(BAD_REQUESTS))
def test_a_bad_request_gets_400_and_a_message(served, case):
    server, _ = served
    body, message = BAD_REQUESTS[case]
    if isinstance(body, str):
        answer = requests.post(server.invocations_url, data=body, timeout=60,
                               headers={"Content-Type": "application/json"})
    else:
        answer = requests.post(server.invocations_url, json=body, timeout=60)
    assert answer.status_code == 400, answer.text[:500]
    said = answer.json()
    assert message in said["message"]
    assert "stack_trace" not in said and "could not convert string to float" not in said["message"]
    assert server.is_running  # and the server goes on serving


@pytest.mark.full
def test_stop_leaves_no_process_behind(served, default_run):
    server, processes = served
    assert len(still_running(processes)) >= 2, "mlflow models serve runs its scoring server as a child"
    assert model_servers_of(default_run.workspace)
    server.stop()
    assert still_running(processes) == []
    assert model_servers_of(default_run.workspace) == []
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server.url}/ping", timeout=5)
    server.stop()  # twice is harmless


@pytest.mark.full
def test_served_by_its_alias_in_the_registry(default_run, classifier):
    client = mlflow.MlflowClient()
    version = mlflow.register_model(f"runs:/{default_run.run_id}/model", REGISTERED)
    client.set_registered_model_alias(REGISTERED, "champion", version.version)
    uri = f"models:/{REGISTERED}@champion"
    champion = mlflow.pyfunc.load_model(uri)
    reviews = list(OBVIOUS)
    expected = classifier.predict(reviews)
    assert champion.predict(reviews)["label"].tolist() == expected["label"].tolist()
    with ModelServer(uri) as server:
        processes = _process_tree(server)
        _same_answers(_predict(server, {"inputs": reviews}).json()["predictions"], expected)
    assert still_running(processes) == []
    assert model_servers_of(default_run.workspace) == []
