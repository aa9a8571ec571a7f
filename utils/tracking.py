"""Start and stop the course's servers, above all a local ``mlflow server`` on loopback.

One call starts a server and waits until it answers; a busy port or a failed start says
what to do; and no server outlives the kernel that started it, even a killed one.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import psutil
import requests

from utils.errors import CourseError
from utils.i18n import N_
from utils.i18n import gettext as _
from utils.workspace import Workspace, get_workspace, initialise_store

DEFAULT_HOST = "127.0.0.1"
#: The file in a workspace's ``logs/`` naming the server of JupyterLab's MLflow UI tile.
LAB_SERVER_RECORD = "server.json"

_running: set[BackgroundServer] = set()


def find_free_port(host: str = DEFAULT_HOST) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def mlflow_executable() -> str:
    """The ``mlflow`` command of the running environment (the course's ``.venv``)."""
    candidate = Path(sys.executable).with_name("mlflow")
    if candidate.exists():
        return str(candidate)
    raise CourseError(_("The `mlflow` command is not installed next to {python}. Run `make setup` in "
                        "the course folder, then pick the kernel of the course's .venv (or run "
                        "`make lab`).").format(python=Path(sys.executable).name))


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


class BackgroundServer:
    """A server command in the background, in a process group of its own, logging to a file.

    Subclasses give ``prepare()``: ``(command, log file, working folder, environment)``.
    :meth:`start` returns once ``GET <url><ready_path>`` gives 200, or raises with the log's
    end; :meth:`stop` ends every process it started, as do this process's exit and death.
    """

    name = N_("The server")  # shown as _(name): a subclass's own name may have no translation
    host = DEFAULT_HOST
    ready_path = "/health"
    preexec_fn = None  # run in the server's process before it starts (e.g. join a cgroup)

    def __init__(self, port: int, startup_timeout: float = 240.0) -> None:
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise CourseError(_("port must be a whole number from 1 to 65535, or 0 for any free "
                                "port; got {port!r}.").format(port=port))
        self.requested_port = self.port = port
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen | None = None
        self.log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ready(self) -> bool:
        return _answers(f"{self.url}{self.ready_path}")

    def start(self):
        """Start the server on its port (a free one for 0) and wait until it is ready."""
        if self.is_running:
            return self
        self.port = self.requested_port or find_free_port(self.host)
        self._check_port()
        command, log_path, cwd, env = self.prepare()
        self.log_path = Path(log_path)
        with open(self.log_path, "w", encoding="utf-8") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                cwd=cwd, start_new_session=True, preexec_fn=lambda: _in_child(self.preexec_fn),
            )
        _running.add(self)
        deadline = time.monotonic() + self.startup_timeout
        while not self.ready():
            code = self.process.poll()
            if code is not None or time.monotonic() > deadline:
                failed = (_("{name} did not answer within {seconds:.0f} s. The end of "
                            "{log_path}:\n{log}") if code is None else
                          _("{name} exited during start-up (exit code {code}). The end of "
                            "{log_path}:\n{log}"))
                log = self.log_tail()
                self.stop()
                raise CourseError(failed.format(name=_(self.name), seconds=self.startup_timeout,
                                                code=code, log_path=self.log_path, log=log))
            time.sleep(0.25)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server and every process it started; safe to call twice."""
        process, self.process = self.process, None
        _running.discard(self)
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(psutil.NoSuchProcess):
                leader = psutil.Process(process.pid)
                alive = [leader, *leader.children(recursive=True)]
                for sig in (signal.SIGTERM, signal.SIGKILL):  # SIGKILL what is alive after timeout
                    for member in alive:
                        with contextlib.suppress(psutil.NoSuchProcess):
                            member.send_signal(sig)
                    alive = psutil.wait_procs(alive, timeout)[1]  # (gone, alive)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # what is left of its group, e.g. orphans
        process.wait(timeout)

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path or not self.log_path.exists():
            return _("(no log)")
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _check_port(self) -> None:
        with socket.socket() as sock, contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is free
            sock.bind((self.host, self.port))
            return
        if _answers(f"{self.url}/health"):
            busy = _("Port {port} on {host} is already in use by another MLflow server (perhaps one "
                     "started by another notebook or `make lab`). Stop that program, or choose "
                     "another port: set the notebook parameter `port` (or the `port` argument) to a "
                     "free port, or to 0 to let the course pick one.")
        else:
            busy = _("Port {port} on {host} is already in use by another program. Stop that program, "
                     "or choose another port: set the notebook parameter `port` (or the `port` "
                     "argument) to a free port, or to 0 to let the course pick one.")
        raise CourseError(busy.format(port=self.port, host=self.host))


class TrackingServer(BackgroundServer):
    """``mlflow server`` for a workspace (the course's by default), on loopback; the other
    arguments are ``mlflow server``'s options (``extra_args``: more of them)."""

    name = N_("The MLflow server")
    ui_base: str | None = None  # where a browser opens the UI, if not at ``url``
    auth = None  # the login for plain HTTP requests: none for the course's own servers

    def __init__(self, workspace: Workspace | None = None, port: int = 5000,
                 backend_store_uri: str | None = None, default_artifact_root: str | None = None,
                 app_name: str | None = None, allowed_hosts: Sequence[str] = (),
                 startup_timeout: float = 240.0, extra_args: Sequence[str] = (),
                 env: dict[str, str] | None = None) -> None:
        super().__init__(port, startup_timeout)
        self.workspace = workspace or get_workspace()
        self.backend_store_uri = backend_store_uri or self.workspace.backend_store_uri
        self.default_artifact_root = default_artifact_root or str(self.workspace.artifacts_dir)
        self.app_name = app_name
        self.allowed_hosts = list(allowed_hosts)
        self.extra_args = list(extra_args)
        self.env = dict(env or {})

    def experiment_url(self, experiment_id: str) -> str:
        return f"{self.ui_base or self.url}/#/experiments/{experiment_id}"

    def run_url(self, experiment_id: str, run_id: str) -> str:
        return f"{self.experiment_url(experiment_id)}/runs/{run_id}"

    def server_options(self) -> list[str]:
        """The options of ``mlflow server`` for this server."""
        options = ["--backend-store-uri", self.backend_store_uri,
                   "--default-artifact-root", self.default_artifact_root,
                   "--host", self.host, "--port", str(self.port),
                   "--workers", "1"]  # one is plenty for one reader, and saves memory
        if self.app_name:
            options += ["--app-name", self.app_name]
        if self.allowed_hosts:
            options += ["--allowed-hosts", ",".join(self.allowed_hosts)]
        return options + self.extra_args

    def command(self) -> list[str]:
        """``mlflow server`` in a single process (see :func:`serve_in_this_process`)."""
        return [sys.executable, "-m", "utils.tracking", *self.server_options()]

    def mlflow_command(self, relative_to: str | os.PathLike | None = None) -> list[str]:
        """The same server as ``mlflow server ...`` for a terminal; paths below its folder
        ``relative_to`` are written relative to it."""
        options = self.server_options()
        if relative_to is not None:
            below = f"{Path(relative_to).resolve()}/"
            options = [option.replace(f"sqlite:///{below}", "sqlite:///").removeprefix(below)
                       for option in options]
        return ["mlflow", "server", *options]

    def prepare(self):
        if self.backend_store_uri == self.workspace.backend_store_uri:
            initialise_store(self.workspace)  # before the server, which would race others
        # The GenAI job runner forks extra processes the course never uses.
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **self.env}
        log = self.workspace.logs_dir / f"mlflow-server-{self.port}.log"
        return self.command(), log, self.workspace.path, env

    def __repr__(self) -> str:
        return f"<TrackingServer {self.url} {'running' if self.is_running else 'stopped'}>"


class SharedServer:
    """A tracking server the course did not start (the team's, or JupyterLab's MLflow UI
    tile's): ``stop()`` leaves it running; ``auth`` is ``MLFLOW_TRACKING_USERNAME``'s login."""

    def __init__(self, url: str, started_by: str, ui_base: str | None = None) -> None:
        self.url, self.started_by, self.ui_base = url.rstrip("/"), started_by, ui_base

    experiment_url = TrackingServer.experiment_url
    run_url = TrackingServer.run_url

    @property
    def auth(self) -> tuple[str, str] | None:
        login = tuple(os.environ.get(f"MLFLOW_TRACKING_{key}") for key in ("USERNAME", "PASSWORD"))
        return login if all(login) else None

    def stop(self) -> None:
        """Nothing to do: the server belongs to whoever runs it."""

    def __repr__(self) -> str:
        login = f", as {self.auth[0]!r}" if self.auth else ""
        return f"<SharedServer {self.url} ({self.started_by}{login})>"


def tracking_server(port: int = 0) -> TrackingServer | SharedServer | None:
    """The tracking server in effect: the one MLflow's tracking URI names, None for
    Databricks, else the workspace's: JupyterLab's MLflow UI tile's if it runs (one server
    saves ~250 MB), else a new one on ``port``."""
    import mlflow

    uri = mlflow.get_tracking_uri()
    if uri.startswith(("http://", "https://")):
        return SharedServer(uri, "MLFLOW_TRACKING_URI")
    if uri.startswith("databricks"):
        print(_("The tracking URI is {uri!r}: Databricks has no plain MLflow server to send REST "
                "requests to or to open here, so the cells that need one say so and skip.").format(
                    uri=uri))
        return None
    workspace = get_workspace()
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        lab = json.loads((workspace.logs_dir / LAB_SERVER_RECORD).read_text(encoding="utf-8"))
        if _answers(f"{lab['url']}/health"):
            return SharedServer(lab["url"], "JupyterLab's MLflow UI tile", lab["ui_base"])
    return TrackingServer(workspace=workspace, port=port).start()


def start_server(**kwargs) -> TrackingServer:
    """Start a :class:`TrackingServer` (same arguments) and return it."""
    return TrackingServer(**kwargs).start()


def _in_child(then=None) -> None:
    """In a server: SIGTERM when the parent dies (a killed kernel runs no atexit), then ``then``."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if then is not None:
        then()


@atexit.register
def stop_all_servers() -> None:
    for server in list(_running):
        server.stop()


def serve_in_this_process(options: Sequence[str]) -> NoReturn:
    """``mlflow server <options>``, this process becoming its uvicorn (``exec``) instead of
    waiting beside it: half the memory (two processes of ~250 MB; Binder has 2 GB). The one
    private name, ``mlflow.server._exec_cmd``, is guarded by ``tests/test_tracking.py``."""
    import mlflow.server
    from mlflow.cli import cli

    if not callable(getattr(mlflow.server, "_exec_cmd", None)):
        raise CourseError(_("This MLflow ({version}) starts its server differently from the "
                            "course's (mlflow.server._exec_cmd is gone). Run `make setup` to get "
                            "the course's pinned MLflow.").format(version=mlflow.__version__))

    def become(command, extra_env=None, **_how_to_wait):
        os.execve(command[0], command, {**os.environ, **(extra_env or {})})

    mlflow.server._exec_cmd = become
    cli.main(args=["server", *options], prog_name="mlflow")
    raise CourseError(_("mlflow server returned without starting its web server."))


def main(argv: list[str] | None = None) -> None:
    """``python -m utils.tracking [options]``: ``mlflow server`` in one process.
    ``--workspace-port PORT`` serves the course workspace (the lab's tile, which so never
    loads MLflow itself)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["--workspace-port"] and len(arguments) == 2:
        workspace = get_workspace()
        initialise_store(workspace)
        arguments = TrackingServer(workspace=workspace, port=int(arguments[1])).server_options()
    serve_in_this_process(arguments)


if __name__ == "__main__":
    main()
