"""Serve a logged model over REST with the real ``mlflow models serve``, in the background.

It saves notebook 05 the noise: a free port, waiting until the model is loaded, a clear
message when it is not, and stopping the server with the kernel.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

from utils.errors import CourseError
from utils.i18n import N_
from utils.i18n import gettext as _
from utils.tracking import BackgroundServer, mlflow_executable
from utils.workspace import get_workspace


class ModelServer(BackgroundServer):
    """``mlflow models serve`` for one model URI, on loopback. ``--env-manager local`` serves
    with the course's ``.venv``; the other managers build an environment first (minutes)."""

    name = N_("The model server")
    ready_path = "/ping"  # answers 200 once the model is loaded

    def __init__(self, model_uri: str, port: int = 0, startup_timeout: float = 300.0) -> None:
        if not isinstance(model_uri, str) or not model_uri.strip():
            raise CourseError(_("model_uri must name a model, e.g. 'models:/<name>@champion'; "
                                "got {model_uri!r}.").format(model_uri=model_uri))
        super().__init__(port, startup_timeout)
        self.model_uri = model_uri.strip()

    @property
    def invocations_url(self) -> str:
        return f"{self.url}/invocations"

    def command(self) -> list[str]:
        return ["mlflow", "models", "serve", "-m", self.model_uri, "--env-manager", "local",
                "--host", self.host, "--port", str(self.port or "<port>")]

    def command_line(self) -> str:
        return shlex.join(self.command())

    def prepare(self):
        workspace, mlflow = get_workspace(), mlflow_executable()
        env = {
            **os.environ,
            # `mlflow models serve` starts `uvicorn` by name: the one of the same environment.
            "PATH": os.pathsep.join([str(Path(mlflow).parent), os.environ.get("PATH", "")]),
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # it would fill the log
        }
        log = workspace.logs_dir / f"model-server-{self.port}.log"
        return [mlflow, *self.command()[1:]], log, workspace.path, env

    def curl_command(self, body: dict) -> str:
        """The request of ``body`` as a ``curl`` command for a terminal."""
        return shlex.join(["curl", "-s", self.invocations_url,
                           "-H", "Content-Type: application/json", "-d", json.dumps(body)])

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"<ModelServer {self.model_uri} at {self.url} {state}>"


def serve_model(model_uri: str, port: int = 0) -> ModelServer:
    """Start ``mlflow models serve`` for ``model_uri`` (see :class:`ModelServer`)."""
    return ModelServer(model_uri, port=port).start()
