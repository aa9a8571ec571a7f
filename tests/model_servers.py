"""Find the model servers (``mlflow models serve`` and the uvicorn process it starts) that
serve from a course workspace, as tests/notebook_runner.py's ``servers_of`` finds tracking
servers: a model server runs in the workspace's folder (utils.serving), or has the
workspace's path on its command line or in its environment."""

from __future__ import annotations

from pathlib import Path

import psutil

MARKERS = ("mlflow.pyfunc.scoring_server", "models serve")


def still_running(processes: list[psutil.Process]) -> list[psutil.Process]:
    """Those of ``processes`` that have not exited (a zombie has: it only awaits its parent)."""
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.NoSuchProcess:
            pass
    return alive


def model_servers_of(workspace: Path | str) -> list[str]:
    """Command lines of the model-server processes of ``workspace`` that are still running
    (a zombie, already dead and waiting to be reaped, is not counted)."""
    workspace = str(Path(workspace).resolve())
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        command = " ".join(process.info["cmdline"] or [])
        if not any(marker in command for marker in MARKERS) or process.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            where = process.cwd()
            environment = " ".join(process.environ().values())
        except (psutil.AccessDenied, psutil.NoSuchProcess):
            where, environment = "", ""
        if where == workspace or workspace in command or workspace in environment:
            found.append(command)
    return found
