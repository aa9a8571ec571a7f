"""Run the notebooks under nbval as a reader does, in course order; in CI, let no test skip.

nbval runs the notebooks one after the other in course workspaces that are new temporary
folders, never the reader's, so that notebooks 04 and 05 find the run of notebook 03
instead of training their own (the full tier runs each notebook on its own, in an empty
workspace). nbval starts one kernel per notebook; the kernel inherits this process's
environment when the notebook's first cell is set up, so COURSE_WORKSPACE is set just
before.

`make test` and `make test-full` run pytest-xdist on two workers with ``--dist loadgroup``:
each group of tests that must run in one process (tools/pytest_groups.py: the two groups
of notebooks, each test file, the files that share notebook 03's default run) goes whole
to one worker, the longest groups first. Without ``-n`` the same tests run one after the
other.

Every pytest process, and all it starts (kernels, servers, workers), writes its temporary
files into a folder of its own, removed when it ends: MLflow leaves in the temporary folder
a copy of every model it downloads (``runs:/`` URIs, and any URI through a server), 90 MB
each, which over a session filled a CI machine's disk.

CI (where ``CI`` is set, as ``.ci/run`` does) installs everything the tests need, so a
skipped test there means a check did not run: the session fails and names it.
"""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tools.pytest_groups import LONGEST_FIRST, group_of
from utils.training import HEADLESS_ENV
from utils.workspace import PROCESS_VARIABLES

# The Chinese twins (notebooks/zh/) run the same code: the full tier executes them (their
# tests say where); nbval of `make test` runs the English notebooks only.
collect_ignore = ["notebooks/zh"]

_current_notebook = None
_workspaces: dict[str, str] = {}
_skipped: list[str] = []
_temporary_folder: str | None = None


def pytest_configure(config):
    global _temporary_folder
    # pytest's own tmp_path folders stay where they were, under the retention of pyproject.toml.
    os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", tempfile.gettempdir())
    _temporary_folder = tempfile.mkdtemp(prefix="course-tests-tmp-")
    os.environ["TMPDIR"] = tempfile.tempdir = _temporary_folder


def pytest_unconfigure(config):
    if _temporary_folder:
        shutil.rmtree(_temporary_folder, ignore_errors=True)


def pytest_collection_modifyitems(items):
    rank = {group: index for index, group in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(group_of(item.nodeid), len(rank)))  # stable


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """With ``--dist loadgroup``, send each group of :func:`group_of` whole to one worker.

    pytest-xdist's own ``loadgroup`` reads ``xdist_group`` marks by renaming node ids, which
    pytest 9 no longer lets a plugin do; its scheduler base class takes the group of a node
    id from one method, ``_split_scope``, which its own loadfile and loadgroup schedulers
    override the same way. tests/test_test_groups.py fails loudly if that method goes away."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class CourseGroups(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

    config.option.loadscopereorder = False  # keep the order of pytest_collection_modifyitems
    return CourseGroups(config, log)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    global _current_notebook
    notebook = getattr(item, "parent", None)
    if type(item).__name__ != "IPyNbCell" or notebook is _current_notebook:
        return
    _current_notebook = notebook
    group = group_of(item.nodeid)
    if group not in _workspaces:
        _workspaces[group] = tempfile.mkdtemp(prefix=f"course-ws-{group}-")
        from tests.notebook_runner import copy_empty_store  # MLflow's migrations take 5-13 s

        copy_empty_store(_workspaces[group])
    os.environ["COURSE_WORKSPACE"] = _workspaces[group]
    os.environ[HEADLESS_ENV] = "1"  # no live progress widgets in a kernel nobody watches
    # Earlier tests may have exported MLFLOW_TRACKING_URI (mlflow.set_tracking_uri does).
    for key in PROCESS_VARIABLES:
        os.environ.pop(key, None)


def pytest_runtest_logreport(report):
    if report.skipped and os.environ.get("CI"):
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session):
    for workspace in _workspaces.values():
        shutil.rmtree(workspace, ignore_errors=True)
    if _skipped:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    if _skipped:
        terminalreporter.write_line(
            f"error: CI is set and {len(_skipped)} test(s) skipped, so their checks did not run: "
            + ", ".join(_skipped), red=True)
