"""Test helpers: run a course notebook headless (tools.runner), and use a temporary store."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

import mlflow

from tools import runner
from tools.runner import execute
from utils.env import temporary_environment
from utils.workspace import (ARTIFACT_ROOT_ENV, PROCESS_VARIABLES, TRACKING_URI_ENV, repo_root,
                             use_workspace)

NOTEBOOKS = repo_root() / "notebooks"


def executed_course() -> Path:
    """Where ``make course`` wrote the executed notebooks: ``$COURSE_OUTPUT`` or build/executed."""
    configured = os.environ.get("COURSE_OUTPUT", "").strip()
    path = Path(configured) if configured else repo_root() / "build" / "executed"
    return path if path.is_absolute() else repo_root() / path


def empty_store_template() -> Path:
    """A migrated, empty SQLite store of the installed MLflow, made once per machine."""
    # The machine's temporary folder: conftest.py gives each pytest process a TMPDIR of its own.
    folder = Path(os.environ.get("PYTEST_DEBUG_TEMPROOT") or tempfile.gettempdir()) / "mlflow-dl-course-tests"
    folder.mkdir(exist_ok=True)
    template = folder / f"empty-store-mlflow-{mlflow.__version__}.db"
    with open(folder / ".template.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not template.exists():
            partial = folder / f".{template.name}.{os.getpid()}"
            partial.unlink(missing_ok=True)
            with temporary_environment(**{ARTIFACT_ROOT_ENV: str(folder / "artifacts")}):
                mlflow.MlflowClient(f"sqlite:///{partial}").search_experiments(max_results=1)
            os.replace(partial, template)
    return template


def copy_empty_store(workspace: Path | str) -> None:
    """Give a new test workspace a copy of the empty store, with its Default experiment's
    artifacts in the workspace, as MLflow makes it: MLflow's migrations of a new store take
    5-13 s, and the tests make many. ``test_workspace.py`` checks that the copy is the same."""
    db = Path(workspace).resolve() / "mlflow.db"
    if db.exists():
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    partial = db.with_name(f".mlflow.db.{os.getpid()}")
    shutil.copyfile(empty_store_template(), partial)
    with contextlib.closing(sqlite3.connect(partial)) as connection, connection:
        connection.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                           (str(db.parent / "artifacts" / "0"),))
    os.replace(partial, db)


def course_env(workspace: Path | str, base=None, **extra: str) -> dict[str, str]:
    """``tools.runner.course_env``, after :func:`copy_empty_store` into ``workspace``."""
    copy_empty_store(workspace)
    return runner.course_env(workspace, base, **extra)


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
    saved_uri = os.environ.get(TRACKING_URI_ENV)  # mlflow.set_tracking_uri() sets it too
    copy_empty_store(workspace)
    with course_environment(workspace):
        try:
            yield use_workspace()
        finally:
            mlflow.set_tracking_uri(saved_uri)


def run_notebook(name: str, output_dir: Path, workspace: Path, **parameters):
    """Execute ``notebooks/<name>`` in ``workspace``; return the executed notebook.

    The kernel records into ``workspace`` only, whatever this process points at. Raises
    papermill's PapermillExecutionError when a cell fails; the executed copy is kept in
    ``output_dir`` either way.
    """
    return execute(NOTEBOOKS / name, output_dir / name, parameters, env=course_env(workspace))


def servers_of(workspace) -> list[str]:
    """Command lines of the MLflow servers (``mlflow server``, or the uvicorn process the
    course's servers become) that serve ``workspace``: its path is on their command line or
    in their environment."""
    import psutil

    found = []
    for process in psutil.process_iter(["cmdline"]):
        command = " ".join(process.info["cmdline"] or [])
        if "mlflow server" not in command and "mlflow.server" not in command:
            continue
        try:
            environment = " ".join(process.environ().values())
        except (psutil.AccessDenied, psutil.NoSuchProcess):
            environment = ""
        if str(workspace) in command or str(workspace) in environment:
            found.append(command)
    return found


def _text(outputs, stdout_only: bool = False) -> str:
    if stdout_only:
        return "".join(out.get("text", "") for out in outputs if out.get("name") == "stdout")
    return "".join(out.get("text", "") or "".join(out.get("data", {}).get("text/plain", ""))
                   for out in outputs)


def cell_text(notebook, source_contains: str, stdout_only: bool = False) -> str:
    """All text output of the first code cell whose source contains ``source_contains``
    (with ``stdout_only``, what it printed to standard output and nothing else)."""
    for cell in notebook.cells:
        if cell.cell_type == "code" and source_contains in cell.source:
            return _text(cell.outputs, stdout_only)
    raise AssertionError(f"no code cell contains {source_contains!r}")


def output_text(notebook) -> str:
    """The text output of every code cell, streams and results."""
    return "".join(_text(cell.outputs) for cell in notebook.cells if cell.cell_type == "code")


def exercise_verdict_problems(original, executed, found, wrong: bool) -> list[str]:
    """The checks of an executed solved (``wrong=False``) or wrong copy whose verdict is not
    the one promised: ``Correct``, or ``Incorrect`` with a message of the exercise's own.
    ``original`` is the notebook the copy was made from, ``found`` its exercise cells
    (``tools.exercises.exercise_cells``); cells are matched by id, since papermill inserts
    a cell for the parameters it was given."""
    from utils.exercises import CORRECT, GENERIC_FAILURE, INCORRECT, STATUSES

    expected = INCORRECT if wrong else CORRECT
    executed_cells = {cell.id: cell for cell in executed.cells}
    problems = []
    for cell in found:
        check = executed_cells[original.cells[cell.check_index].id]
        lines = "".join(out.get("text", "") for out in check.outputs
                        if out.get("name") == "stdout").splitlines()
        verdicts = [line for line in lines if line.startswith(tuple(f"{s}:" for s in STATUSES))]
        verdict = verdicts[0] if len(verdicts) == 1 else f"({len(verdicts)} verdicts) " + " / ".join(lines)
        if not verdict.startswith(f"{expected}: ") or GENERIC_FAILURE in verdict:
            problems.append(f"exercise {cell.exercise.key}: {verdict}")
    return problems
