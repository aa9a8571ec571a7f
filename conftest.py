"""Run the notebooks under nbval in one new course workspace, in course order; in CI, let no
test skip.

nbval runs the notebooks as a reader does, one after the other (01, 02, ...) in one course
workspace, so that notebooks 04 and 05 find the run of notebook 03 instead of training their
own (the full tier runs each notebook on its own, in an empty workspace). The workspace is a
new temporary folder, never the reader's. nbval starts one kernel per notebook; the kernel
inherits this process's environment when the notebook's first cell is set up, so
COURSE_WORKSPACE is set just before.

CI (where ``CI`` is set, as ``.ci/run`` does) installs everything the tests need, so a
skipped test there means a check did not run: the session fails and names it.
"""

import os
import shutil
import tempfile

import pytest

from utils.training import HEADLESS_ENV
from utils.workspace import PROCESS_VARIABLES

_current_notebook = None
_workspace: str | None = None
_skipped: list[str] = []


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    global _current_notebook, _workspace
    notebook = getattr(item, "parent", None)
    if type(item).__name__ != "IPyNbCell" or notebook is _current_notebook:
        return
    _current_notebook = notebook
    _workspace = _workspace or tempfile.mkdtemp(prefix="course-ws-nbval-")
    os.environ["COURSE_WORKSPACE"] = _workspace
    os.environ[HEADLESS_ENV] = "1"  # no live progress widgets in a kernel nobody watches
    # Earlier tests may have exported MLFLOW_TRACKING_URI (mlflow.set_tracking_uri does).
    for key in PROCESS_VARIABLES:
        os.environ.pop(key, None)


def pytest_runtest_logreport(report):
    if report.skipped and os.environ.get("CI"):
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session):
    if _workspace:
        shutil.rmtree(_workspace, ignore_errors=True)
    if _skipped:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    if _skipped:
        terminalreporter.write_line(
            f"error: CI is set and {len(_skipped)} test(s) skipped, so their checks did not run: "
            + ", ".join(_skipped), red=True)
