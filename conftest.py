"""Give every notebook that nbval runs a fresh, empty course workspace.

nbval starts one kernel per notebook; the kernel inherits this process's environment
when the notebook's first cell is set up, so COURSE_WORKSPACE is switched just before.
"""

import os
import shutil
import tempfile

import pytest

from utils.workspace import PROCESS_VARIABLES

_current_notebook = None
_workspaces: list[str] = []


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    global _current_notebook
    notebook = getattr(item, "parent", None)
    if type(item).__name__ != "IPyNbCell" or notebook is _current_notebook:
        return
    _current_notebook = notebook
    workspace = tempfile.mkdtemp(prefix=f"course-ws-{notebook.path.stem}-")
    _workspaces.append(workspace)
    os.environ["COURSE_WORKSPACE"] = workspace
    # Earlier tests may have exported MLFLOW_TRACKING_URI (mlflow.set_tracking_uri does).
    for key in PROCESS_VARIABLES:
        os.environ.pop(key, None)


def pytest_sessionfinish(session):
    for workspace in _workspaces:
        shutil.rmtree(workspace, ignore_errors=True)
