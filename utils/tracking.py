"""Start and stop a local MLflow tracking server for the course workspace.

The server is a real ``mlflow server`` process bound to loopback. It runs in its own
process group so that stopping it also ends the workers it forks, and every server this
module starts is stopped when the Python process exits, even if a notebook forgets to.

>>> from utils.tracking import TrackingServer
>>> with TrackingServer(port=0) as server:   # port=0: any free port
...     print(server.url)
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import requests

from utils.errors import CourseError
from utils.workspace import Workspace, get_workspace

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000

_running: set[TrackingServer] = set()


def file_tail(path: Path | None, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file, or ``"(no log)"`` when there is none."""
    if not path or not path.exists():
        return "(no log)"
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(text[-lines:])


def find_free_port(host: str = DEFAULT_HOST) -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_free(port: int, host: str = DEFAULT_HOST) -> bool:
    """True when a server could bind ``host:port`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As servers do: a port whose last connections linger in TIME_WAIT is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def mlflow_executable() -> str:
    """The ``mlflow`` command of the running environment (the course's ``.venv``)."""
    candidate = Path(sys.executable).with_name("mlflow")
    if candidate.exists():
        return str(candidate)
    raise CourseError(
        f"The `mlflow` command is not installed next to {Path(sys.executable).name} "
        "in this environment. Run `make setup` in the course folder, then pick the "
        "kernel of the course's .venv (or run `make lab`)."
    )


class TrackingServer:
    """One ``mlflow server`` process serving a course workspace.

    Parameters
    ----------
    workspace:
        The workspace whose store the server serves; the course workspace by default.
    port:
        The port to listen on; ``0`` picks a free one.
    backend_store_uri, default_artifact_root:
        Override the workspace's SQLite store and artifact folder (for example a
        PostgreSQL URI for a team server).
    app_name:
        ``"basic-auth"`` starts MLflow's authentication app (needs ``mlflow[auth]``).
    allowed_hosts:
        Host headers the server accepts besides localhost (for a proxy such as Binder's).
    extra_args, env:
        More command-line options, and environment variables for the server process.
    """

    def __init__(
        self,
        workspace: Workspace | None = None,
        port: int = DEFAULT_PORT,
        host: str = DEFAULT_HOST,
        backend_store_uri: str | None = None,
        default_artifact_root: str | None = None,
        app_name: str | None = None,
        allowed_hosts: Sequence[str] | None = None,
        startup_timeout: float = 90.0,
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise CourseError(
                f"port must be a whole number from 1 to 65535, or 0 for any free port; got {port!r}."
            )
        self.workspace = workspace or get_workspace()
        self.requested_port = port
        self.port = port
        self.host = host
        self.backend_store_uri = backend_store_uri or self.workspace.backend_store_uri
        self.default_artifact_root = default_artifact_root or str(self.workspace.artifacts_dir)
        self.app_name = app_name
        self.allowed_hosts = list(allowed_hosts or [])
        self.startup_timeout = startup_timeout
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.process: subprocess.Popen | None = None
        self.log_path: Path | None = None

    # -- addresses ------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The server's base address, e.g. ``http://127.0.0.1:5000``."""
        return f"http://{self.host}:{self.port}"

    def experiment_url(self, experiment_id: str) -> str:
        """The UI page of one experiment."""
        return f"{self.url}/#/experiments/{experiment_id}"

    def run_url(self, experiment_id: str, run_id: str) -> str:
        """The UI page of one run."""
        return f"{self.experiment_url(experiment_id)}/runs/{run_id}"

    # -- lifecycle ------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def command(self) -> list[str]:
        """The ``mlflow server`` command line this object runs."""
        cmd = [
            mlflow_executable(), "server",
            "--backend-store-uri", self.backend_store_uri,
            "--default-artifact-root", self.default_artifact_root,
            "--host", self.host,
            "--port", str(self.port),
            # One worker is plenty for one reader and saves start-up time and memory.
            "--workers", "1",
        ]
        if self.app_name:
            cmd += ["--app-name", self.app_name]
        if self.allowed_hosts:
            cmd += ["--allowed-hosts", ",".join(self.allowed_hosts)]
        return cmd + self.extra_args

    def start(self) -> TrackingServer:
        """Start the server and wait until ``/health`` answers; return ``self``."""
        if self.is_running:
            return self
        self.port = self.requested_port or find_free_port(self.host)
        self._check_port()
        self.log_path = self.workspace.logs_dir / f"mlflow-server-{self.port}.log"
        env = {
            **os.environ,
            # The GenAI job runner forks extra processes the course never uses.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            **self.env,
        }
        with open(self.log_path, "w", encoding="utf-8") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.workspace.path,
                # Its own process group: stop() ends the server and every worker it forks.
                start_new_session=True,
                preexec_fn=_terminate_with_parent,
            )
        _running.add(self)
        self._wait_until_healthy()
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server and its workers; safe to call twice."""
        process, self.process = self.process, None
        _running.discard(self)
        if process is None:
            return
        if process.poll() is None:
            signal_process_group(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                signal_process_group(process.pid, signal.SIGKILL)
                process.wait(timeout=timeout)
        # Workers left in the group after the leader exits are ended too.
        signal_process_group(process.pid, signal.SIGKILL)

    def __enter__(self) -> TrackingServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"<TrackingServer {self.url} {state}>"

    # -- helpers --------------------------------------------------------------------
    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server's log file."""
        return file_tail(self.log_path, lines)

    def _check_port(self) -> None:
        if port_is_free(self.port, self.host):
            return
        what = "another program"
        if _answers_health(f"http://{self.host}:{self.port}"):
            what = "another MLflow server (perhaps one started by another notebook or `make lab`)"
        raise CourseError(
            f"Port {self.port} on {self.host} is already in use by {what}. "
            "Stop that program, or choose another port: set the notebook parameter `port` "
            "to a free port, or to 0 to let the course pick one."
        )

    def _wait_until_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                code = self.process.returncode if self.process else None
                self.stop()
                raise CourseError(
                    f"The MLflow server exited during start-up (exit code {code}). "
                    f"The end of its log {self.log_path}:\n{self.log_tail()}"
                )
            if _answers_health(self.url):
                return
            time.sleep(0.25)
        self.stop()
        raise CourseError(
            f"The MLflow server did not answer on {self.url}/health within "
            f"{self.startup_timeout:.0f} s. The end of its log {self.log_path}:\n{self.log_tail()}"
        )


def _answers_health(url: str) -> bool:
    try:
        response = requests.get(f"{url}/health", timeout=2)
    except requests.RequestException:
        return False
    return response.status_code == 200


def _terminate_with_parent() -> None:
    """In the child: ask Linux to send SIGTERM when the parent dies (e.g. a killed kernel).

    atexit handlers do not run when a kernel is killed; this keeps its server from
    being orphaned. Elsewhere than Linux it does nothing.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def signal_process_group(pid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to the process group led by ``pid``; a group already gone is fine."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def start_server(**kwargs) -> TrackingServer:
    """Start a :class:`TrackingServer` (same arguments) and return it."""
    return TrackingServer(**kwargs).start()


def stop_all_servers() -> None:
    """Stop every server this process started and has not stopped yet."""
    for server in list(_running):
        server.stop()


def running_servers() -> list[TrackingServer]:
    """The servers this process started that are still running."""
    return [server for server in _running if server.is_running]


atexit.register(stop_all_servers)
