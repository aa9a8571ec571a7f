"""Test helpers: run a course notebook headless (tools.runner), and use a temporary store."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

import mlflow
from filelock import FileLock

from tools import runner
from tools.runner import execute
from utils.env import temporary_environment
from utils.tracking import TrackingServer
from utils.workspace import (ARTIFACT_ROOT_ENV, PROCESS_VARIABLES, TRACKING_URI_ENV, Workspace, repo_root,
                             use_workspace)

NOTEBOOKS = repo_root() / "notebooks"
TWINS = NOTEBOOKS / "zh"  # the Chinese edition: the full tier runs the filled-in copies from it
# What a reader would have to read past (issue 20), from libraries below MLflow that nobody
# reading can act on; none of it may reach a notebook's outputs.
NOISE = [
    "IProgress not found",            # tqdm without ipywidgets
    "pkg_resources is deprecated",    # lightning_fabric's import
    "np.object", "np.bool",           # lightning-flash 0.8.2 and numpy
    "interpreted in multiple ways",   # MLflow's local dataset source, registered twice
    "GPU available:", "HPU available",  # Lightning's hardware banner
    "Runningstage",                   # trainer.test's rich table
    "Map:",                           # Hugging Face datasets' progress bars
    "Downloading artifacts",          # MLflow's progress bar for local copies
    "serialized using CloudPickle",   # pyfunc's warning for a python_model object
    "\\u001b",                        # ANSI colour codes, as JSON writes them
]
MOST_OUTPUTS = 25


def executed_course() -> Path:
    """Where ``make test-full`` keeps the Chinese notebooks it runs at their defaults:
    ``$COURSE_OUTPUT/zh``, or build/executed/zh."""
    configured = os.environ.get("COURSE_OUTPUT", "").strip()
    path = Path(configured) if configured else repo_root() / "build" / "executed"
    return (path if path.is_absolute() else repo_root() / path) / "zh"


def verdict_prefix(status: str, language: str) -> str:
    """How a check's line starts in ``language``: ``Correct: `` or ``正确（Correct）：``."""
    from utils.i18n import catalog

    words = catalog(language)
    return words.gettext("{status}: {message}").split("{message}")[0].format(status=words.gettext(status))


def empty_store_template() -> Path:
    """A migrated, empty SQLite store of the installed MLflow, made once per machine."""
    # The machine's temporary folder: conftest.py gives each pytest process a TMPDIR of its own.
    folder = Path(os.environ.get("PYTEST_DEBUG_TEMPROOT") or tempfile.gettempdir()) / "mlflow-dl-course-tests"
    folder.mkdir(exist_ok=True)
    template = folder / f"empty-store-mlflow-{mlflow.__version__}.db"
    with FileLock(folder / ".template.lock"):
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
    """``COURSE_WORKSPACE=workspace`` and none of ``PROCESS_VARIABLES`` (which use_workspace
    exports, and later tests and their kernels would inherit) inside the block."""
    return temporary_environment(COURSE_WORKSPACE=str(workspace), **dict.fromkeys(PROCESS_VARIABLES, None))


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


def separate_server(path: Path, proxied: bool = False) -> TrackingServer:
    """A tracking server of its own (its own SQLite store in ``path``), as a team's server
    would be; ``proxied``: its artifacts go through it (``mlflow-artifacts:/``). Not started."""
    workspace = Workspace(path)
    for folder in (workspace.artifacts_dir, workspace.logs_dir):
        folder.mkdir(parents=True)
    if not proxied:
        return TrackingServer(workspace=workspace, port=0)
    return TrackingServer(workspace=workspace, port=0, default_artifact_root="mlflow-artifacts:/",
                          extra_args=["--artifacts-destination", str(workspace.artifacts_dir)])


def run_notebook(name: str, output_dir: Path, workspace: Path, *, chinese: bool = False, **parameters):
    """Execute ``notebooks/<name>`` in ``workspace`` only, whatever this process points at;
    return the executed notebook, also kept (even when a cell fails) in ``output_dir``, or
    with ``chinese`` (its twin in notebooks/zh/) in :func:`executed_course`, to read."""
    if chinese:
        return execute(TWINS / name, executed_course() / name, parameters, env=course_env(workspace))
    return execute(NOTEBOOKS / name, output_dir / name, parameters, env=course_env(workspace))


def reading_problems(executed_path: Path, workspace: Path) -> list[str]:
    """What a reader of the executed notebook at ``executed_path`` would have to read past
    (:data:`NOISE`), or must never see: a secret this machine knows of (DATABRICKS_TOKEN,
    MLflow/PostgreSQL passwords in the environment, the admin password of the course
    server in ``workspace``; tests/test_secrets_scan.py)."""
    import nbformat

    from tools import scan_secrets

    known = scan_secrets.known_secrets(workspace=Workspace(workspace))
    return (noise_in(nbformat.read(executed_path, as_version=4).cells)
            + [str(finding) for finding in scan_secrets.scan_files([executed_path], known)])


def chinese_reading_problems(name: str, notebook, workspace: Path) -> list[str]:
    """:func:`reading_problems` of the Chinese notebook ``name`` run at its defaults by
    :func:`run_notebook`, and each of its (at least two) exercise checks that does not say
    ``Not attempted`` in Chinese."""
    import re

    problems = reading_problems(executed_course() / name, workspace)
    checks = [cell for cell in notebook.cells
              if cell.cell_type == "code" and re.search(r"\bex\d\d\.q\d+\.check\(\)", cell.source)]
    if len(checks) < 2:
        problems.append(f"{len(checks)} exercise checks, not at least 2")
    for cell in checks:
        printed = "".join(output.get("text", "") for output in cell.outputs if output.get("name") == "stdout")
        if not printed.startswith(verdict_prefix("Not attempted", "zh_CN")):
            problems.append(f"an untouched check printed {printed[:80]!r}")
    return problems


def servers_of(workspace, models: bool = False) -> list[str]:
    """Command lines of the running MLflow tracking servers (``mlflow server``, or the uvicorn
    process the course's servers become) of ``workspace``, or with ``models`` its model servers
    (``mlflow models serve`` and the scoring server it starts): they run in its folder, or have
    its path on their command line or in their environment. A zombie, dead and waiting to be
    reaped, does not count."""
    import psutil

    markers = ("mlflow.pyfunc.scoring_server", "models serve") if models else ("mlflow server", "mlflow.server")
    names = {str(workspace), str(Path(workspace).resolve())}
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        command = " ".join(process.info["cmdline"] or [])
        if not any(marker in command for marker in markers) or process.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            where, environment = process.cwd(), " ".join(process.environ().values())
        except (psutil.AccessDenied, psutil.NoSuchProcess):
            where, environment = "", ""
        if any(where == name or name in command or name in environment for name in names):
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


def noise_in(cells) -> list[str]:
    """What a reader would have to read past in the outputs of ``cells`` (a notebook's, from
    nbformat or JSON): :data:`NOISE`, and cells of more than :data:`MOST_OUTPUTS` outputs."""
    problems = []
    for index, cell in enumerate(cells):
        if cell["cell_type"] == "code":
            text = json.dumps(cell.get("outputs", []))
            problems += [f"cell {index} shows {noise!r}" for noise in NOISE if noise in text]
            if len(cell.get("outputs", [])) > MOST_OUTPUTS:
                problems.append(f"cell {index} has {len(cell['outputs'])} outputs")
    return problems


def exercise_verdict_problems(source: Path, executed, wrong: bool) -> list[str]:
    """The checks of an executed solved (``wrong=False``) or wrong copy of the notebook
    ``source`` whose verdict is not the one promised: ``Correct``, or ``Incorrect`` with a
    message of the exercise's own, in the notebook's language (a twin of notebooks/zh/ answers
    in Chinese). Cells are matched by id, since papermill inserts a cell for the parameters
    it was given."""
    import re

    import nbformat

    from tools.exercises import exercise_cells
    from utils.exercises import CORRECT, GENERIC_FAILURE, INCORRECT, STATUSES
    from utils.i18n import catalog

    language = "zh_CN" if Path(source).parent == TWINS else "en"
    original = nbformat.read(source, as_version=4)
    found = exercise_cells(original, Path(source).name)
    expected = verdict_prefix(INCORRECT if wrong else CORRECT, language)
    prefixes = tuple(verdict_prefix(status, language) for status in STATUSES)
    executed_cells = {cell.id: cell for cell in executed.cells}
    problems = [] if found else [f"{Path(source).name} has no exercises"]
    for cell in found:
        check = executed_cells[original.cells[cell.check_index].id]
        lines = "".join(out.get("text", "") for out in check.outputs
                        if out.get("name") == "stdout").splitlines()
        verdicts = [line for line in lines if line.startswith(prefixes)]
        verdict = verdicts[0] if len(verdicts) == 1 else f"({len(verdicts)} verdicts) " + " / ".join(lines)
        reason = verdict.removeprefix(expected)
        if (not verdict.startswith(expected) or catalog(language).gettext(GENERIC_FAILURE) in verdict
                or (language == "zh_CN" and not re.search(r"[\u4e00-\u9fff]", reason))):
            problems.append(f"{Path(source).name}, exercise {cell.exercise.key}: {verdict}")
    return problems
