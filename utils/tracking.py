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

import requests

from utils.errors import CourseError
from utils.workspace import Workspace, copy_empty_store, get_workspace, initialise_store

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
#: The file in a workspace's ``logs/`` that names the server running for it, so that
#: notebooks share one server (and JupyterLab's) instead of each starting its own.
SERVER_RECORD = "server.json"

_running: set[BackgroundServer] = set()


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


class BackgroundServer:
    """A server command running in the background, as the course runs all of its servers.

    It runs in a process group of its own, its output in a log file; :meth:`launch` returns
    once :meth:`ready` says it answers (by default ``GET <url><ready_path>`` gives 200), or
    raises :class:`CourseError` with the end of its log. :meth:`stop` ends the whole group
    (the workers a server forks included); so do this Python process's exit and, through
    Linux, the death of the process that started it (a killed kernel).
    """

    name = "The server"
    ready_path = "/health"

    def __init__(self, port: int, host: str = DEFAULT_HOST, startup_timeout: float = 240.0) -> None:
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise CourseError(
                f"port must be a whole number from 1 to 65535, or 0 for any free port; got {port!r}."
            )
        self.requested_port = self.port = port
        self.host = host
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen | None = None
        self.log_path: Path | None = None

    @property
    def url(self) -> str:
        """The server's base address, e.g. ``http://127.0.0.1:5000``."""
        return f"http://{self.host}:{self.port}"

    @property
    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ready(self) -> bool:
        return _answers(f"{self.url}{self.ready_path}")

    def launch(self, command: Sequence[str], log_path: Path, cwd: Path, env: dict[str, str]):
        """Run ``command`` in the background and wait until :meth:`ready`; return ``self``."""
        self.log_path = Path(log_path)
        with open(self.log_path, "w", encoding="utf-8") as log:
            self.process = subprocess.Popen(
                list(command), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, cwd=cwd, start_new_session=True, preexec_fn=_terminate_with_parent,
            )
        _running.add(self)
        deadline = time.monotonic() + self.startup_timeout
        while not self.ready():
            problem = ""
            if self.process.poll() is not None:
                problem = f"exited during start-up (exit code {self.process.returncode})"
            elif time.monotonic() > deadline:
                problem = f"did not answer on {self.url}{self.ready_path} within {self.startup_timeout:.0f} s"
            if problem:
                tail = self.log_tail()
                self.stop()
                raise CourseError(f"{self.name} {problem}. The end of its log {self.log_path}:\n{tail}")
            time.sleep(0.25)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server and every process of its group; safe to call twice."""
        process, self.process = self.process, None
        _running.discard(self)
        if process is not None:
            stop_process_group(process, timeout)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server's log file."""
        return file_tail(self.log_path, lines)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


class TrackingServer(BackgroundServer):
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
    record:
        Write the server into the workspace's ``logs/server.json`` while it runs, so that
        :func:`workspace_server` in other notebooks uses it instead of starting another.
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
        startup_timeout: float = 240.0,
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        record: bool = False,
    ) -> None:
        super().__init__(port, host, startup_timeout)
        self.workspace = workspace or get_workspace()
        self.backend_store_uri = backend_store_uri or self.workspace.backend_store_uri
        self.default_artifact_root = default_artifact_root or str(self.workspace.artifacts_dir)
        self.app_name = app_name
        self.allowed_hosts = list(allowed_hosts or [])
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.record = record
        #: Who runs the server when this object only uses it (see :func:`workspace_server`).
        self.shared_from: str | None = None
        #: Where a browser opens the UI; a path on the lab's address for JupyterLab's server.
        self.ui_base: str | None = None

    name = "The MLflow server"
    #: The login for plain HTTP requests: none, the course's servers of notebooks 01-06 are
    #: open (notebook 02's server with users is a :class:`TrackingServer` too, with logins).
    auth = None

    def experiment_url(self, experiment_id: str) -> str:
        """The UI page of one experiment."""
        return f"{self.ui_base or self.url}/#/experiments/{experiment_id}"

    def run_url(self, experiment_id: str, run_id: str) -> str:
        """The UI page of one run."""
        return f"{self.experiment_url(experiment_id)}/runs/{run_id}"

    # -- lifecycle ------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        if self.shared_from:
            return self.ready()
        return super().is_running

    def server_options(self) -> list[str]:
        """The options of ``mlflow server`` for this server."""
        options = [
            "--backend-store-uri", self.backend_store_uri,
            "--default-artifact-root", self.default_artifact_root,
            "--host", self.host,
            "--port", str(self.port),
            # One worker is plenty for one reader and saves start-up time and memory.
            "--workers", "1",
        ]
        if self.app_name:
            options += ["--app-name", self.app_name]
        if self.allowed_hosts:
            options += ["--allowed-hosts", ",".join(self.allowed_hosts)]
        return options + self.extra_args

    def command(self) -> list[str]:
        """The command line this object runs: ``mlflow server`` with :meth:`server_options`,
        in a single process (see :func:`serve_in_this_process`)."""
        mlflow_executable()  # a clear message when the environment lacks MLflow's command
        return [sys.executable, "-m", "utils.tracking", *self.server_options()]

    def mlflow_command(self, relative_to: str | os.PathLike | None = None) -> list[str]:
        """The same server as a command to type in a terminal: ``mlflow server`` with
        :meth:`server_options`. With ``relative_to`` (the terminal's folder), paths below
        that folder are written relative to it, e.g. ``sqlite:///workspace/mlflow.db``."""
        options = self.server_options()
        if relative_to is not None:
            folder = Path(relative_to).resolve()
            options = [_relative_path_option(option, folder) for option in options]
        return ["mlflow", "server", *options]

    def start(self) -> TrackingServer:
        """Start the server and wait until ``/health`` answers; return ``self``."""
        if self.is_running:
            return self
        self.port = self.requested_port or find_free_port(self.host)
        self._check_port()
        if self.backend_store_uri == self.workspace.backend_store_uri:
            initialise_store(self.workspace)  # before the server, which would race others
        elif self.backend_store_uri.startswith("sqlite:///"):
            new_file = Path(self.backend_store_uri.removeprefix("sqlite:///"))
            if not new_file.exists() and new_file.parent.is_dir():  # a new store of its own
                copy_empty_store(new_file, f"{self.default_artifact_root.rstrip('/')}/0")
        env = {
            **os.environ,
            # The GenAI job runner forks extra processes the course never uses.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            **self.env,
        }
        self.launch(self.command(), self.workspace.logs_dir / f"mlflow-server-{self.port}.log",
                    self.workspace.path, env)
        if self.record:
            _write_record(self.workspace, {"url": self.url, "pid": self.process.pid,
                                           "started_by": "a notebook of the course"})
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server and its workers; safe to call twice. A shared server (see
        :func:`workspace_server`) belongs to whoever started it and keeps running."""
        if self.record and self.process is not None:
            _remove_record(self.workspace, self.process.pid)
        super().stop(timeout)

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        shared = f", shared: started by {self.shared_from}" if self.shared_from else ""
        return f"<TrackingServer {self.url} {state}{shared}>"

    # -- helpers --------------------------------------------------------------------
    def _check_port(self) -> None:
        if port_is_free(self.port, self.host):
            return
        what = "another program"
        if _answers(f"http://{self.host}:{self.port}/health"):
            what = "another MLflow server (perhaps one started by another notebook or `make lab`)"
        raise CourseError(
            f"Port {self.port} on {self.host} is already in use by {what}. "
            "Stop that program, or choose another port: set the notebook parameter `port` "
            "to a free port, or to 0 to let the course pick one."
        )


def _relative_path_option(option: str, folder: Path) -> str:
    """``option`` with an absolute path below ``folder`` (plain, or in a ``sqlite:///`` URI)
    written relative to ``folder``; any other option unchanged."""
    scheme = "sqlite:///" if option.startswith("sqlite:////") else ""
    path = Path(option[len(scheme):])
    if not path.is_absolute() or not path.is_relative_to(folder):
        return option
    return scheme + str(path.relative_to(folder))


def _write_record(workspace: Workspace, record: dict) -> None:
    path = workspace.logs_dir / SERVER_RECORD
    partial = path.with_name(f".{SERVER_RECORD}.{os.getpid()}")
    partial.write_text(json.dumps(record), encoding="utf-8")
    os.replace(partial, path)  # a reader never sees half a record


def _remove_record(workspace: Workspace, pid: int) -> None:
    path = workspace.logs_dir / SERVER_RECORD
    try:
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == pid:
            path.unlink()
    except (OSError, ValueError):
        pass


def record_lab_server(workspace: Workspace, port: int, ui_base: str) -> None:
    """Note that JupyterLab's MLflow UI tile serves ``workspace`` on ``port`` (its proxy
    shows it at ``ui_base``), for :func:`workspace_server`."""
    _write_record(workspace, {"url": f"http://{DEFAULT_HOST}:{port}", "ui_base": ui_base,
                              "started_by": "JupyterLab's MLflow UI tile"})


def _serves(url: str, workspace: Workspace) -> bool:
    """True when the server at ``url`` serves ``workspace``'s store (its Default
    experiment keeps artifacts in the workspace)."""
    try:
        answer = requests.get(f"{url}/api/2.0/mlflow/experiments/get",
                              params={"experiment_id": "0"}, timeout=5)
        location = answer.json()["experiment"]["artifact_location"]  # <artifacts>/0
    except (requests.RequestException, ValueError, KeyError):
        return False
    return Path(location.removeprefix("file://")).parent.resolve() == workspace.artifacts_dir.resolve()


def workspace_server(port: int = 0, workspace: Workspace | None = None) -> TrackingServer:
    """The tracking server of the course workspace: the one that already serves it (started
    by JupyterLab's MLflow UI tile or by another notebook), else a new one on ``port``.

    One server per workspace saves memory (each ``mlflow server`` takes about 250 MB per
    process). ``stop()`` on a shared server leaves it running for its owner.
    """
    workspace = workspace or get_workspace()
    try:
        record = json.loads((workspace.logs_dir / SERVER_RECORD).read_text(encoding="utf-8"))
        url = str(record["url"])
    except (OSError, ValueError, KeyError, TypeError):
        record, url = None, ""
    if record and _answers(f"{url}/health") and _serves(url, workspace):
        server = TrackingServer(workspace=workspace, port=int(url.rsplit(":", 1)[1]))
        server.shared_from = str(record.get("started_by") or "another process")
        server.ui_base = record.get("ui_base") or None
        return server
    return TrackingServer(workspace=workspace, port=port, record=True).start()


class RemoteServer:
    """The tracking server that ``MLFLOW_TRACKING_URI`` names: the team's, not the course's.

    It has the addresses of :class:`TrackingServer` (``url``, ``run_url``...), and ``auth``,
    the login for plain HTTP requests: ``(MLFLOW_TRACKING_USERNAME, MLFLOW_TRACKING_PASSWORD)``
    when both are set, else None. The course never starts or stops it: ``stop()`` does nothing.
    """

    shared_from = "MLFLOW_TRACKING_URI"
    ui_base = None

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    @property
    def auth(self) -> tuple[str, str] | None:
        username = os.environ.get("MLFLOW_TRACKING_USERNAME", "")
        password = os.environ.get("MLFLOW_TRACKING_PASSWORD", "")
        return (username, password) if username and password else None

    @property
    def is_running(self) -> bool:
        return _answers(f"{self.url}/health")

    experiment_url = TrackingServer.experiment_url
    run_url = TrackingServer.run_url

    def stop(self) -> None:
        """Nothing to do: the server belongs to whoever runs it."""

    def __repr__(self) -> str:
        login = f", as {self.auth[0]!r}" if self.auth else ""
        return f"<RemoteServer {self.url} (MLFLOW_TRACKING_URI{login})>"


def tracking_server(port: int = 0) -> TrackingServer | RemoteServer | None:
    """The tracking server in effect, for the command line, REST requests and the UI.

    When MLflow's tracking URI names a server (``http://...``, the reader's
    ``MLFLOW_TRACKING_URI``), that server: nothing is started. When it is Databricks, None,
    after saying that the cells which need a plain MLflow server are skipped. Otherwise the
    course workspace's server (:func:`workspace_server`), started on ``port`` if none runs.
    """
    import mlflow

    uri = mlflow.get_tracking_uri()
    if uri.startswith(("http://", "https://")):
        return RemoteServer(uri)
    if uri.startswith("databricks"):
        print(f"The tracking URI is {uri!r}: Databricks has no plain MLflow server to send "
              "REST requests to or to open here, so the cells that need one say so and skip.")
        return None
    return workspace_server(port=port)


def _answers(url: str) -> bool:
    try:
        response = requests.get(url, timeout=2)
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


def end_process_group(process: subprocess.Popen, timeout: float = 15.0) -> None:
    """Ask ``process`` (started with ``start_new_session``) and its group to stop with
    SIGTERM, then kill what is left of the group, and reap ``process``."""
    if process.poll() is None:
        signal_process_group(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    # Workers left in the group after the leader exits (uvicorn, gunicorn) are killed too.
    signal_process_group(process.pid, signal.SIGKILL)
    process.wait(timeout=timeout)


def stop_process_group(process: subprocess.Popen, timeout: float = 15.0) -> None:
    """:func:`end_process_group`, returning only once every process the group had has
    exited."""
    import psutil

    try:
        leader = psutil.Process(process.pid)
        group = [leader, *leader.children(recursive=True)]
    except psutil.NoSuchProcess:
        group = []
    end_process_group(process, timeout)
    deadline = time.monotonic() + timeout
    while still_running(group) and time.monotonic() < deadline:
        time.sleep(0.05)  # SIGKILL is delivered asynchronously


def still_running(processes) -> list:
    """Those of ``processes`` that have not exited (a zombie has: it only awaits its parent)."""
    import psutil

    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.NoSuchProcess:
            pass
    return alive


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


def serve_in_this_process(options: Sequence[str]) -> NoReturn:
    """Run ``mlflow server <options>`` so that this process becomes the server.

    ``mlflow server`` prepares everything (its settings, the stores, the login app) and then
    starts the web server, uvicorn, as a child process that it waits for: two Python
    processes of about 250 MB each, one of them idle for the server's whole life. Here
    MLflow's own command does all of its preparation as usual, and then this process
    *becomes* uvicorn (``exec``) with exactly the command and variables MLflow chose. That
    halves the server's memory, which matters on Binder's 2 GB.

    MLflow has no public switch for this. The one private name it takes,
    ``mlflow.server._exec_cmd``, is used here only, and ``tests/test_tracking.py`` fails
    loudly if MLflow changes it.
    """
    import mlflow.server
    from mlflow.cli import cli

    if not callable(getattr(mlflow.server, "_exec_cmd", None)):
        raise CourseError(
            f"This MLflow ({mlflow.__version__}) starts its server differently from the one the "
            "course was written for (mlflow.server._exec_cmd is gone). Run `make setup` to get "
            "the course's pinned MLflow."
        )

    def become(command, extra_env=None, **_how_to_wait):
        os.execve(command[0], command, {**os.environ, **(extra_env or {})})

    mlflow.server._exec_cmd = become
    cli.main(args=["server", *options], prog_name="mlflow")
    raise CourseError("mlflow server returned without starting its web server.")


def main(argv: list[str] | None = None) -> None:
    """``python -m utils.tracking [mlflow server options]``: ``mlflow server`` in one process.

    With ``--workspace-port PORT`` instead of options, it serves the course workspace on
    loopback: JupyterLab's MLflow UI tile runs it so. It then first prepares the workspace's
    store under the workspace's lock (see :func:`utils.workspace.initialise_store`), so that
    the lab itself never loads MLflow.
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["--workspace-port"] and len(arguments) == 2:
        workspace = get_workspace()
        initialise_store(workspace)
        arguments = TrackingServer(workspace=workspace, port=int(arguments[1])).server_options()
    serve_in_this_process(arguments)


if __name__ == "__main__":
    main()
