"""Run a course notebook headless with papermill, as `make course` does, for the tests."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import papermill

from utils.workspace import repo_root

NOTEBOOKS = repo_root() / "notebooks"


# Variables the kernel must not inherit from this test process: MLflow 3's
# set_tracking_uri exports MLFLOW_TRACKING_URI, which would override the workspace.
_NOT_INHERITED = ("MLFLOW_TRACKING_URI", "_COURSE_SET_TRACKING_URI", "_MLFLOW_SERVER_ARTIFACT_ROOT")


def run_notebook(name: str, output_dir: Path, workspace: Path, **parameters):
    """Execute ``notebooks/<name>`` with papermill in ``workspace``; return the executed notebook.

    Raises papermill's PapermillExecutionError when a cell fails; the executed copy is
    kept in ``output_dir`` either way.
    """
    output = output_dir / name
    saved = {key: os.environ.pop(key) for key in _NOT_INHERITED if key in os.environ}
    previous = os.environ.get("COURSE_WORKSPACE")
    os.environ["COURSE_WORKSPACE"] = str(workspace)
    try:
        papermill.execute_notebook(
            str(NOTEBOOKS / name),
            str(output),
            parameters=parameters,
            cwd=str(NOTEBOOKS),
            kernel_name="python3",
            progress_bar=False,
        )
    finally:
        if previous is None:
            os.environ.pop("COURSE_WORKSPACE", None)
        else:
            os.environ["COURSE_WORKSPACE"] = previous
        os.environ.update(saved)
    return nbformat.read(output, as_version=4)


def cell_text(notebook, source_contains: str) -> str:
    """All text output of the first code cell whose source contains ``source_contains``."""
    for cell in notebook.cells:
        if cell.cell_type == "code" and source_contains in cell.source:
            return "".join(
                out.get("text", "") or "".join(out.get("data", {}).get("text/plain", ""))
                for out in cell.outputs
            )
    raise AssertionError(f"no code cell contains {source_contains!r}")
