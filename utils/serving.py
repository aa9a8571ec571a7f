"""Serve a logged model over REST with ``mlflow models serve``, as a background process.

Notebook 05 serves the course's classifier the way a deployment would: the real command,

    mlflow models serve -m <model uri> --env-manager local --host 127.0.0.1 --port <port>

in its own process group, stopped by :meth:`ModelServer.stop`, when the Python process
exits, and by Linux when the kernel that started it dies (like the course's tracking
servers, :mod:`utils.tracking`). The helper only saves the noise: finding a free port,
waiting until the model is loaded, and a clear message when it is not.

``--env-manager local`` serves the model with the Python environment that runs the
command (the course's ``.venv``); the other choices (``virtualenv``, ``uv``, ``conda``)
first build a new environment from the model's ``requirements.txt`` or ``conda.yaml``,
which needs the package index and takes minutes.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Sequence
from pathlib import Path

import requests

from utils.errors import CourseError
from utils.tracking import (DEFAULT_HOST, BackgroundServer, find_free_port, mlflow_executable,
                            port_is_free)
from utils.workspace import get_workspace


class ModelServer(BackgroundServer):
    """``mlflow models serve`` for one model URI, on loopback.

    >>> with ModelServer("models:/imdb-sentiment-classifier@champion") as served:
    ...     served.predict(["A wonderful film."])
    """

    ready_path = "/ping"  # answers 200 once the model is loaded

    def __init__(self, model_uri: str, port: int = 0, host: str = DEFAULT_HOST,
                 startup_timeout: float = 300.0) -> None:
        if not isinstance(model_uri, str) or not model_uri.strip():
            raise CourseError(f"model_uri must name a model, e.g. 'models:/<name>@champion'; got {model_uri!r}.")
        super().__init__(port, host, startup_timeout)
        self.model_uri = model_uri.strip()

    @property
    def name(self) -> str:
        return f"`{self.command_line()}`"

    @property
    def invocations_url(self) -> str:
        """Where predictions are asked for: ``POST /invocations`` with a JSON body."""
        return f"{self.url}/invocations"

    def command(self) -> list[str]:
        """The command line this server runs, as a terminal would run it."""
        return ["mlflow", "models", "serve", "-m", self.model_uri, "--env-manager", "local",
                "--host", self.host, "--port", str(self.port or "<port>")]

    def command_line(self) -> str:
        return shlex.join(self.command())

    def start(self) -> ModelServer:
        """Start the server and wait until the model is loaded (``/ping`` answers 200)."""
        if self.is_running:
            return self
        self.port = self.requested_port or find_free_port(self.host)
        if not port_is_free(self.port, self.host):
            raise CourseError(f"Port {self.port} on {self.host} is already in use. Choose another "
                              "port, or 0 to let the course pick a free one.")
        workspace = get_workspace()
        mlflow = mlflow_executable()
        command = [mlflow, *self.command()[1:]]
        env = {
            **os.environ,
            # `mlflow models serve` starts `uvicorn` by name: the one of the same environment.
            "PATH": os.pathsep.join([str(Path(mlflow).parent), os.environ.get("PATH", "")]),
            # The model server needs no progress bars, and they would fill its log.
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        }
        return self.launch(command, workspace.logs_dir / f"model-server-{self.port}.log", workspace.path, env)

    # -- asking for predictions ----------------------------------------------------------
    def request(self, body: dict, timeout: float = 60) -> requests.Response:
        """``POST /invocations`` with ``body`` as JSON; the response as it came."""
        return requests.post(self.invocations_url, json=body, timeout=timeout)

    def predict(self, reviews: Sequence[str]) -> list[dict]:
        """The server's predictions for ``reviews``: ``[{"label": ..., "positive_probability": ...}]``."""
        answer = self.request({"inputs": list(reviews)})
        if answer.status_code != 200:
            raise CourseError(f"The model server answered {answer.status_code}: {answer.text[:500]}")
        return answer.json()["predictions"]

    def curl_command(self, body: dict) -> str:
        """The same request as a ``curl`` command for a terminal."""
        return shlex.join(["curl", "-s", self.invocations_url, "-H", "Content-Type: application/json",
                           "-d", json.dumps(body)])

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"<ModelServer {self.model_uri} at {self.url} {state}>"


def serve_model(model_uri: str, port: int = 0) -> ModelServer:
    """Start ``mlflow models serve`` for ``model_uri`` (see :class:`ModelServer`)."""
    return ModelServer(model_uri, port=port).start()
