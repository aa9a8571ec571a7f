"""The logged classifier served over REST by ``mlflow models serve --env-manager local``
(issue 19), through ``utils.serving.ModelServer``: what it refuses before it starts anything.

Notebook 05 serves its champion by a registry alias, gets pyfunc's answers (labels and
probabilities), has bad requests refused with 400 and the course's message, and leaves no
process of the server behind (tests/test_notebooks_04_05.py, and on a team's server
tests/test_team_server.py).
"""

import pytest

from utils.errors import CourseError
from utils.serving import ModelServer


@pytest.mark.parametrize("uri", ["", None])  # a bad port: tests/test_tracking.py (every server's check)
def test_a_model_uri_is_required(uri):
    with pytest.raises(CourseError, match="model_uri must name a model"):
        ModelServer(uri)


def test_the_command_is_mlflow_models_serve_with_the_local_environment():
    server = ModelServer("models:/m@champion", port=5005)
    assert server.command_line() == ("mlflow models serve -m models:/m@champion --env-manager local "
                                     "--host 127.0.0.1 --port 5005")
    assert server.invocations_url == "http://127.0.0.1:5005/invocations"
    assert not server.is_running
    server.stop()  # stopping a server that never started is harmless
