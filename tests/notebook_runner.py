"""Test helpers: run a course notebook headless with papermill, and use a temporary store."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import mlflow
import nbformat
import papermill
from mlflow.tracking._tracking_service.utils import is_tracking_uri_set

from utils.env import temporary_environment
from utils.workspace import PROCESS_VARIABLES, repo_root, use_workspace

NOTEBOOKS = repo_root() / "notebooks"


def course_environment(workspace: Path):
    """``COURSE_WORKSPACE=workspace`` and none of ``PROCESS_VARIABLES`` inside the block.

    ``use_workspace`` (through ``mlflow.set_tracking_uri``) exports variables that later
    tests and their notebook kernels would otherwise inherit; all are put back after.
    """
    return temporary_environment(
        COURSE_WORKSPACE=str(workspace), **dict.fromkeys(PROCESS_VARIABLES, None)
    )


@contextlib.contextmanager
def workspace_store(workspace: Path):
    """Point this process at ``workspace``'s store; put MLflow and the environment back after."""
    was_set, saved_uri = is_tracking_uri_set(), mlflow.get_tracking_uri()
    with course_environment(workspace):
        try:
            yield use_workspace()
        finally:
            mlflow.set_tracking_uri(saved_uri if was_set else None)


def run_notebook(name: str, output_dir: Path, workspace: Path, **parameters):
    """Execute ``notebooks/<name>`` with papermill in ``workspace``; return the executed notebook.

    The kernel records into ``workspace`` only, whatever this process points at. Raises
    papermill's PapermillExecutionError when a cell fails; the executed copy is kept in
    ``output_dir`` either way.
    """
    output = output_dir / name
    with course_environment(workspace):
        papermill.execute_notebook(
            str(NOTEBOOKS / name),
            str(output),
            parameters=parameters,
            cwd=str(NOTEBOOKS),
            kernel_name="python3",
            progress_bar=False,
        )
    return nbformat.read(output, as_version=4)


def servers_of(workspace) -> list[str]:
    """Command lines of the ``mlflow server`` processes that serve ``workspace``."""
    listed = subprocess.run(["pgrep", "-af", "mlflow server"], capture_output=True, text=True)
    return [line for line in listed.stdout.splitlines() if str(workspace) in line]


def cell_text(notebook, source_contains: str) -> str:
    """All text output of the first code cell whose source contains ``source_contains``."""
    for cell in notebook.cells:
        if cell.cell_type == "code" and source_contains in cell.source:
            return "".join(
                out.get("text", "") or "".join(out.get("data", {}).get("text/plain", ""))
                for out in cell.outputs
            )
    raise AssertionError(f"no code cell contains {source_contains!r}")
