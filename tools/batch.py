"""Run the course's notebooks headless with papermill: ``python -m tools.batch``.

``run`` executes notebooks in course order and writes executed copies, with parameters
from the command line and from a YAML file, a progress bar, an optional time limit per
notebook, and a summary of what each notebook did: its status, its wall time and the
MLflow runs it made. ``sweep`` runs the training notebook once per combination of a
parameter grid, tags the runs it made and ranks them by a metric. ``rerun RUN_ID`` trains a
recorded run again from its record alone and compares the two. ``make course`` calls
``run``; ``python -m tools.batch run --help`` explains every option.

Exit codes: 0 when every notebook succeeded, 1 when one failed or ran out of time,
2 for bad input (a clear message, no traceback), 130 when stopped with Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import itertools
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from utils.errors import CourseError
from utils.workspace import TRACKING_URI_ENV, WORKSPACE_ENV, Workspace, repo_root, workspace_path

NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
OUTPUT_ENV = "COURSE_OUTPUT"
PARAMS_ENV = "COURSE_PARAMS"
DEFAULT_OUTPUT = "build/executed"
# Tags the sweep sets on every run it made: the sweep's name, and the parameters it varied.
SWEEP_TAG = "course.sweep"
SWEEP_GRID_TAG = "course.sweep.grid"
SWEEP_NOTEBOOK = "03"
SWEEP_EXPERIMENT = "dl_model_chapter02_sweep"
SWEEP_SETS = ("experiment_name", "run_name")  # parameters the sweep itself sets
# Shorter names for run names like ``lr=0.001-strategy=freeze``.
ABBREVIATIONS = {"learning_rate": "lr", "batch_size": "bs", "max_epochs": "epochs",
                 "max_length": "len", "train_size": "train", "val_size": "val",
                 "test_size": "test"}
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
STOP_GRACE = 10.0  # seconds an interrupted kernel gets to end its cell before it is killed
TRACEBACK_LINES = 8


# -- which notebooks -------------------------------------------------------------------
def course_notebooks(folder: Path) -> list[Path]:
    """The course notebooks in ``folder`` (``NN_name.ipynb``), in course order."""
    return sorted(folder.glob(NOTEBOOK_GLOB))


def _matches(key: str, path: Path) -> bool:
    key = str(key).strip()
    if key.isdigit():
        return path.name[:2] == f"{int(key):02d}" and path.name[2:3] == "_"
    return Path(key).name in (path.name, path.stem)


def resolve_notebook(key: str, candidates: list[Path], where: str) -> Path:
    """The one notebook among ``candidates`` that ``key`` (file name, stem or number) names."""
    found = [path for path in candidates if _matches(key, path)]
    if len(found) == 1:
        return found[0]
    names = ", ".join(path.name for path in candidates) or "none"
    where = f"{where}: " if where else ""
    if not found:
        raise CourseError(f"{where}no notebook {key!r}. The notebooks are: {names}. "
                          "Name one by its file name or its number (e.g. 03).")
    raise CourseError(f"{where}{key!r} names several notebooks ({', '.join(p.name for p in found)}); "
                      "use the file name.")


def select_notebooks(names: list[str], folder: Path) -> list[Path]:
    """The notebooks to run, in course order: all of ``folder``'s, or those ``names`` name.

    A name is a file name (``03_first_autologged_run.ipynb``), its stem, its number
    (``03`` or ``3``) or the path of a notebook file elsewhere.
    """
    available = course_notebooks(folder)
    if not names:
        if not available:
            raise CourseError(f"There are no notebooks named like {NOTEBOOK_GLOB} in {folder}.")
        return available
    chosen: dict[Path, None] = {}
    for name in names:
        path = Path(name).expanduser()
        is_path = os.sep in name or not any(_matches(name, p) for p in available)
        if name.endswith(".ipynb") and is_path:
            if not path.is_file():
                raise CourseError(f"The notebook {name} does not exist.")
            chosen[path.resolve()] = None
        else:
            chosen[resolve_notebook(name, available, "")] = None
    return sorted(chosen, key=lambda p: (p.name, str(p)))


# -- parameters --------------------------------------------------------------------------
def parse_value(text: str) -> Any:
    """A command-line value read as ``papermill -p`` reads it.

    ``True``, ``False`` and ``None``, then whole numbers, then other numbers (``1e-3``
    too), else the text itself.
    """
    special = {"True": True, "False": False, "None": None}
    if text in special:
        return special[text]
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def load_params_file(path: Path) -> dict[str, dict[str, Any]]:
    """Read a YAML parameter file: ``{notebook key: {parameter: value}}``.

    Values are YAML scalars as papermill reads them (no dates). A number key such as
    ``3`` or ``03`` becomes ``"03"``.
    """
    import yaml
    from papermill.iorw import NoDatesSafeLoader

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise CourseError(f"Cannot read the parameter file {path}: {error.strerror or error}.") from None
    try:
        data = yaml.load(text, Loader=NoDatesSafeLoader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise CourseError(f"The parameter file {path} is not valid YAML{where}: {problem}. "
                          "Each section is a notebook, each entry `name: value`.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CourseError(f"The parameter file {path} must map notebooks to their parameters, "
                          f'like\n"03":\n  train_size: 64\nbut it holds a {type(data).__name__}.')
    sections = {}
    for key, values in data.items():
        name = f"{key:02d}" if isinstance(key, int) and not isinstance(key, bool) else str(key)
        if values is None:
            values = {}
        if not isinstance(values, dict) or not all(isinstance(k, str) for k in values):
            raise CourseError(f"In the parameter file {path}, section {name!r} must hold "
                              "`parameter: value` entries, one a line, indented under it.")
        if name in sections:
            raise CourseError(f"In the parameter file {path}, section {name!r} appears twice "
                              "(3, 03 and \"03\" are the same notebook); merge them.")
        sections[name] = values
    return sections


def declared_parameters(notebook: Path) -> dict[str, Any]:
    """The parameters ``notebook`` declares in its ``parameters`` cell, with their defaults."""
    from papermill import inspect_notebook

    try:
        return {name: info["default"] for name, info in inspect_notebook(str(notebook)).items()}
    except Exception as error:  # papermill raises many kinds for a broken file
        raise CourseError(f"Cannot read the notebook {notebook}: {error}") from None


def _split_cli_name(raw: str) -> tuple[str | None, str]:
    notebook, _, name = raw.rpartition(":")
    if not name.isidentifier():
        raise CourseError(f"-p {raw}: {name!r} is not a parameter name. Use `-p NAME VALUE` or "
                          "`-p NOTEBOOK:NAME VALUE` (e.g. `-p 03:max_epochs 2`).")
    return notebook or None, name


def _unknown(notebook: Path, name: str, declared: dict[str, Any], where: str) -> CourseError:
    known = ", ".join(declared) or "no parameters (it has no cell tagged `parameters`)"
    return CourseError(f"{where}: {notebook.name} has no parameter {name!r}; it declares {known}.")


def plan_parameters(selected: list[Path], known: list[Path], file_sections: dict[str, dict],
                    file_name: str, cli: list[tuple[str, str]]) -> dict[Path, dict[str, Any]]:
    """The parameters of each selected notebook, checked against what each declares.

    Later sources win: the notebook's own defaults, then the parameter file's section,
    then ``-p NAME VALUE`` (every selected notebook that declares NAME), then
    ``-p NOTEBOOK:NAME VALUE``. Every section of the file is checked, also for notebooks
    not run now, so that a typo shows up early.
    """
    candidates = sorted(set(known) | set(selected), key=lambda p: (p.name, str(p)))
    declared = {path: declared_parameters(path) for path in candidates}
    plan: dict[Path, dict[str, Any]] = {path: {} for path in selected}
    for key, values in file_sections.items():
        notebook = resolve_notebook(key, candidates, f"{file_name}, section {key!r}")
        for name, value in values.items():
            if name not in declared[notebook]:
                raise _unknown(notebook, name, declared[notebook], file_name)
            if notebook in plan:
                plan[notebook][name] = value
    targeted = []
    for raw, text in cli:
        key, name = _split_cli_name(raw)
        value = parse_value(text)
        if key is not None:
            targeted.append((key, name, value, raw))
            continue
        takers = [path for path in selected if name in declared[path]]
        if not takers:
            listing = "; ".join(f"{p.name}: {', '.join(declared[p]) or '-'}" for p in selected)
            raise CourseError(f"-p {name}: none of the notebooks to run declares {name!r} "
                              f"(they declare {listing}).")
        for path in takers:
            plan[path][name] = value
    for key, name, value, raw in targeted:
        notebook = resolve_notebook(key, selected, f"-p {raw} (it must name a notebook being run)")
        if name not in declared[notebook]:
            raise _unknown(notebook, name, declared[notebook], f"-p {raw}")
        plan[notebook][name] = value
    return plan


# -- where results go, and which kernel -----------------------------------------------------
def prepare_output(folder: Path, notebooks: list[Path]) -> Path:
    """Create ``folder`` and make sure it can be written; never a notebooks folder."""
    folder = folder.expanduser().resolve()
    if any(folder == path.parent.resolve() for path in notebooks):
        raise CourseError(f"The output folder {folder} holds the notebooks themselves: the "
                          "executed copies would replace them. Choose another with --output.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as error:
        raise CourseError(f"The output folder {folder} cannot be written ({error.strerror or error}). "
                          f"Choose another with --output or the {OUTPUT_ENV} variable.") from None
    return folder


def check_kernel(name: str) -> None:
    """Stop early with advice when the Jupyter kernel ``name`` is not installed."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        raise CourseError(f"There is no Jupyter kernel named {name!r}. Run `make setup` (it "
                          "installs the course's `python3` kernel) or pass --kernel.") from None


# -- executing one notebook ---------------------------------------------------------------
@dataclass
class Result:
    """What happened to one notebook."""

    notebook: Path
    output: Path
    parameters: dict[str, Any] = field(default_factory=dict)
    status: str = "not run"  # ok | failed | timeout | interrupted | not run
    seconds: float = 0.0
    run_ids: list[str] | None = field(default_factory=list)  # None: the store could not be read
    problem: str = ""  # one line: where and what
    details: str = ""  # the error's last lines
    workspace: Path | None = None
    html: Path | None = None
    label: str = ""
    killed_runs: list[str] = field(default_factory=list)  # left RUNNING by a stopped kernel

    def as_dict(self) -> dict[str, Any]:
        return {"notebook": self.notebook.name, "label": self.label or self.notebook.name,
                "status": self.status, "seconds": round(self.seconds, 1),
                "run_ids": self.run_ids, "problem": self.problem, "details": self.details,
                "executed": str(self.output), "workspace": str(self.workspace or ""),
                "html": str(self.html or ""),
                "killed_runs": self.killed_runs}  # no parameters: they may hold passwords


class _Stopped(Exception):
    """Raised before the next cell once the runner decided to stop the notebook."""


class Execution:
    """One notebook executed by papermill in a worker thread, so that it can be stopped.

    The main thread waits for it; when the time limit passes or Ctrl-C arrives, it
    interrupts the kernel (as Jupyter's stop button does), lets no further cell start,
    and kills the kernel's process group if the cell does not end within ``STOP_GRACE``
    seconds. Servers the kernel started die with it (``utils.tracking``).
    """

    def __init__(self, notebook: Path, output: Path, parameters: dict[str, Any], *,
                 env: dict[str, str], cwd: Path, kernel: str, log_output: bool = False,
                 kernel_log: Path | None = None, cell_bar=None) -> None:
        self.notebook, self.output, self.parameters = notebook, output, parameters
        self.env, self.cwd, self.kernel, self.kernel_log = env, cwd, kernel, kernel_log
        self.log_output, self.cell_bar = log_output, cell_bar
        self.stop_reason: str | None = None
        self.pid: int | None = None
        self.cell = None  # the cell running now, and its index
        self.cell_index = 0
        self.error: BaseException | None = None
        # Waiting on an Event, not Thread.join: in Python 3.11 a join interrupted by Ctrl-C
        # can mark a running thread as finished.
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._work, name=f"papermill {notebook.name}",
                                        daemon=True)

    # -- worker thread --------------------------------------------------------------
    def _on_cell_start(self, cell, cell_index):
        if self.stop_reason:
            raise _Stopped(self.stop_reason)
        self.cell, self.cell_index = cell, cell_index
        if self.cell_bar is not None:
            self.cell_bar.n = cell_index
            self.cell_bar.set_postfix_str(_first_line(cell.source, 40), refresh=True)

    def _work(self) -> None:
        from tools.runner import execute

        try:
            execute(self.notebook, self.output, self.parameters, env=self.env, cwd=self.cwd,
                    kernel=self.kernel, kernel_log=self.kernel_log,
                    on_kernel_start=self._kernel_started, on_cell_start=self._on_cell_start,
                    log_output=self.log_output)
        except BaseException as error:  # reported by the main thread
            self.error = error
        finally:
            self._done.set()

    def _kernel_started(self, pid: int | None) -> None:
        self.pid = pid

    # -- main thread ----------------------------------------------------------------
    def run(self, timeout: float | None) -> None:
        """Execute and wait; stop at ``timeout`` seconds. Ctrl-C stops it, then re-raises."""
        start = time.monotonic()
        self._thread.start()
        try:
            while not self._done.wait(0.25):
                if timeout and not self.stop_reason and time.monotonic() - start > timeout:
                    self.stop("timeout")
        except KeyboardInterrupt:
            self.stop("interrupted", grace=5.0)
            raise

    @property
    def finished(self) -> bool:
        return self._done.is_set()

    def stop(self, reason: str, grace: float = STOP_GRACE) -> None:
        """Interrupt the kernel, then kill it if it has not finished after ``grace`` seconds.

        Ctrl-C while waiting kills the kernel at once and is passed on.
        """
        self.stop_reason = self.stop_reason or reason
        self._signal_kernel(signal.SIGINT)
        pressed = False
        try:
            self._done.wait(grace)
        except KeyboardInterrupt:
            pressed = True
        if not self._done.is_set():
            self._signal_kernel(signal.SIGKILL)
            self._done.wait(60)  # nbclient notices a dead kernel within seconds
        if pressed:
            raise KeyboardInterrupt

    def _signal_kernel(self, sig: signal.Signals) -> None:
        if self.pid and not self._done.is_set():  # a finished kernel's pid may be reused
            try:
                os.killpg(self.pid, sig)  # the kernel leads its own session
            except (ProcessLookupError, PermissionError):
                pass


def _first_line(source: str, width: int = 70) -> str:
    lines = [line.strip() for line in source.splitlines() if line.strip()]
    text = lines[0] if lines else ""
    return text if len(text) <= width else text[: width - 1] + "…"


def _cell_label(cell) -> str:
    if cell is None:
        return "before the first cell"
    count = cell.get("execution_count")
    where = f"In [{count}]" if count else "the cell"
    return f"{where}: {_first_line(cell.source)}"


def _last_lines(traceback: list[str], count: int = TRACEBACK_LINES) -> str:
    from papermill.exceptions import strip_color

    lines = [line.rstrip() for line in strip_color("\n".join(traceback)).splitlines() if line.strip()]
    return "\n".join(lines[-count:])


def _describe_failure(execution: Execution, timeout: float | None) -> tuple[str, str, str]:
    """(status, one-line problem, details) for an execution that ended with an error."""
    from nbclient.exceptions import DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    error = execution.error
    if execution.stop_reason == "timeout":
        return ("timeout", f"stopped after the time limit of {timeout:g} s (--timeout) in "
                f"{_cell_label(execution.cell)}", "")
    if execution.stop_reason == "interrupted":
        return "interrupted", f"stopped by Ctrl-C in {_cell_label(execution.cell)}", ""
    if isinstance(error, PapermillExecutionError):
        problem = (f"In [{error.exec_count}] ({_first_line(error.source)}) raised "
                   f"{error.ename}: {_first_line(str(error.evalue), 200)}")
        return "failed", problem, _last_lines(error.traceback)
    if isinstance(error, DeadKernelError):
        log = execution.kernel_log
        tail = ""
        if log is not None and log.exists():
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-TRACEBACK_LINES:])
            tail += f"\n(the kernel's log: {log})"
        return "failed", f"the kernel died while running {_cell_label(execution.cell)}", tail
    return "failed", f"{type(error).__name__}: {error}", ""


def _mark_stop(output: Path, cell, cell_index: int, text: str) -> None:
    """Put a note into the executed copy just before the cell where the runner stopped."""
    import nbformat

    try:
        notebook = nbformat.read(output, as_version=4)
        note = nbformat.v4.new_markdown_cell(f"**tools.batch stopped the notebook here:** {text}")
        ids = [c.get("id") for c in notebook.cells]
        index = ids.index(cell.get("id")) if cell is not None and cell.get("id") in ids else cell_index
        notebook.cells.insert(index, note)
        nbformat.write(notebook, output)
    except (OSError, ValueError):
        pass  # the copy may not exist when the kernel never started


def export_html(executed: Path) -> Path:
    """Write ``executed`` as a stand-alone HTML page next to it; return the page's path."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_filename(str(executed))
    page = executed.with_suffix(".html")
    page.write_text(body, encoding="utf-8")
    return page


# -- MLflow runs --------------------------------------------------------------------------
class RunStore:
    """The runs of one tracking store, to find the runs a notebook made (before vs after)."""

    def __init__(self, tracking_uri: str, cwd: Path) -> None:
        self.tracking_uri = tracking_uri
        self.db_path: Path | None = None
        if tracking_uri.startswith("sqlite:///"):
            path = Path(tracking_uri[len("sqlite:///"):])
            self.db_path = path if path.is_absolute() else (cwd / path).resolve()
            self.tracking_uri = f"sqlite:///{self.db_path}"
        self._client = None

    @property
    def client(self):
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    def mark_killed(self, run_ids: list[str]) -> list[str]:
        """End the runs among ``run_ids`` that are still RUNNING with the status KILLED."""
        killed = []
        for run_id in run_ids:
            try:
                if self.client.get_run(run_id).info.status == "RUNNING":
                    self.client.set_terminated(run_id, status="KILLED")
                    killed.append(run_id)
            except Exception as error:  # a remote store may be down; the summary says so
                print(f"warning: cannot mark run {run_id} KILLED: {error}", file=sys.stderr)
        return killed

    def run_ids(self) -> set[str] | None:
        """Every run id in the store (an absent SQLite file: none); None if unreadable."""
        if self.db_path is not None and not self.db_path.exists():
            return set()
        try:
            return self._all_run_ids()
        except Exception as error:  # a remote store may be down; the summary says so
            print(f"warning: cannot list the runs of {self.tracking_uri}: {error}", file=sys.stderr)
            return None

    def _all_run_ids(self) -> set[str]:
        from mlflow.entities import ViewType

        experiments, token = [], None
        while True:
            page = self.client.search_experiments(view_type=ViewType.ALL, page_token=token)
            experiments += [e.experiment_id for e in page]
            token = page.token
            if not token:
                break
        found: set[str] = set()
        for start in range(0, len(experiments), 50):
            token = None
            while True:
                page = self.client.search_runs(experiments[start:start + 50], run_view_type=ViewType.ALL,
                                               max_results=1000, page_token=token)
                found.update(run.info.run_id for run in page)
                token = page.token
                if not token:
                    break
        return found


# -- progress and reports ---------------------------------------------------------------
class Progress:
    """A bar over notebooks and one over the cells of the current notebook (on a terminal),
    and a line per notebook everywhere."""

    def __init__(self, total: int, what: str, enabled: bool) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self.disable = None if enabled else True  # None: bars only on a terminal
        self.bar = tqdm(total=total, unit=what, desc=f"{what}s", position=0, disable=self.disable,
                        dynamic_ncols=True)
        self.total = total

    def cell_bar(self, label: str, cells: int):
        return self._tqdm(total=cells, unit="cell", desc=label, position=1, leave=False,
                          disable=self.disable, dynamic_ncols=True)

    def say(self, text: str) -> None:
        self._tqdm.write(text, file=sys.stdout)
        sys.stdout.flush()

    def close(self) -> None:
        self.bar.close()


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{int(seconds // 60)} min {seconds % 60:02.0f} s"


def format_table(rows: list[list[str]], header: list[str]) -> str:
    """A plain-text table with aligned columns."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def summary_text(results: list[Result], heading: str = "notebook") -> str:
    """The summary table, then what went wrong where, then a one-line verdict."""
    rows = []
    for r in results:
        runs = ["?"] if r.run_ids is None else (r.run_ids or ["-"])
        rows.append([r.label or r.notebook.name, r.status, _duration(r.seconds) if r.seconds else "-", runs[0]])
        rows += [["", "", "", run_id] for run_id in runs[1:]]  # one run id a line
    parts = [format_table(rows, [heading, "status", "time", "MLflow runs"])]
    for r in results:
        if r.status in ("failed", "timeout", "interrupted"):
            block = [f"\n{r.status.upper()}: {r.label or r.notebook.name}: {r.problem}"]
            if r.details:
                block.append("  " + r.details.replace("\n", "\n  "))
            if r.killed_runs:
                block.append(f"  marked KILLED (its kernel was stopped while they ran): {', '.join(r.killed_runs)}")
            block.append(f"  executed copy: {r.output}")
            parts.append("\n".join(block))
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "failed", "timeout", "interrupted", "not run")}
    verdict = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    parts.append(f"\n{len(results)} {heading}(s): {verdict}.")
    return "\n".join(parts)


def write_summary(results: list[Result], path: Path, **extra) -> None:
    payload = {**extra, "notebooks": [r.as_dict() for r in results]}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")


# -- running a list of notebooks -----------------------------------------------------------
@dataclass
class Options:
    """Settings shared by ``run`` and ``sweep``."""

    output: Path
    kernel: str = "python3"
    timeout: float | None = None
    html: bool = False
    progress: bool = True
    log_output: bool = False


def execute_all(jobs: list[Result], options: Options, *, fresh: bool, what: str = "notebook",
                stop_on_failure: bool = False, after_each=None) -> bool:
    """Execute ``jobs`` in order, filling in each Result; False when stopped by Ctrl-C.

    ``fresh``: every notebook gets a new workspace ``<output>/workspaces/<stem>``, and an
    ``MLFLOW_TRACKING_URI`` of the caller is not passed on. Otherwise notebooks share the
    course workspace. ``after_each(result, store)`` is called after each notebook.
    """
    progress = Progress(len(jobs), what, options.progress)
    shared_store = None
    try:
        for number, job in enumerate(jobs, 1):
            env = dict(os.environ)
            env.pop("JPY_PARENT_PID", None)
            cwd = job.notebook.parent
            if fresh:
                job.workspace = options.output / "workspaces" / job.output.stem
                shutil.rmtree(job.workspace, ignore_errors=True)
                job.workspace.mkdir(parents=True)
                env[WORKSPACE_ENV] = str(job.workspace)
                env.pop(TRACKING_URI_ENV, None)
                store = RunStore(Workspace(job.workspace).backend_store_uri, cwd)
            else:
                job.workspace = workspace_path()
                store = shared_store = shared_store or RunStore(Workspace(job.workspace).tracking_uri, cwd)
            label = job.label or job.notebook.name
            progress.say(f"[{number}/{len(jobs)}] {label}: running")
            before = store.run_ids()
            cells = _cell_count(job.notebook) + (1 if job.parameters else 0)
            bar = progress.cell_bar(label, cells)
            kernel_log = None
            if not options.log_output:
                kernel_log = options.output / "logs" / f"{job.output.stem}.kernel.log"
                kernel_log.parent.mkdir(exist_ok=True)
            execution = Execution(job.notebook, job.output, job.parameters, env=env, cwd=cwd,
                                  kernel=options.kernel, log_output=options.log_output,
                                  kernel_log=kernel_log, cell_bar=bar)
            started = time.monotonic()
            interrupted = False
            try:
                execution.run(options.timeout)
            except KeyboardInterrupt:
                interrupted = True
            finally:
                job.seconds = time.monotonic() - started
                bar.close()
            if execution.finished and execution.error is None:
                job.status = "ok"
            else:
                job.status, job.problem, job.details = _describe_failure(execution, options.timeout)
                if execution.stop_reason and execution.finished:
                    _mark_stop(job.output, execution.cell, execution.cell_index, job.problem)
            after = store.run_ids()
            job.run_ids = None if before is None or after is None else _newest_first(store, after - before)
            if execution.stop_reason and job.run_ids:
                # The kernel was stopped mid-run: nobody told the store that its runs ended.
                job.killed_runs = store.mark_killed(job.run_ids)
            if options.html and job.output.exists():
                try:
                    job.html = export_html(job.output)
                except Exception as error:  # the run matters more than its HTML page
                    progress.say(f"warning: no HTML page for {label}: {error}")
            if after_each is not None:
                after_each(job, store)
            line = f"[{number}/{len(jobs)}] {label}: {job.status} in {_duration(job.seconds)}"
            progress.say(line + (f" - {job.problem}" if job.problem else ""))
            progress.bar.update(1)
            if interrupted:
                return False
            if stop_on_failure and job.status != "ok":
                break
        return True
    finally:
        progress.close()


def _cell_count(notebook: Path) -> int:
    import nbformat

    return len(nbformat.read(notebook, as_version=4).cells)


def _newest_first(store: RunStore, run_ids: set[str]) -> list[str]:
    if len(run_ids) < 2:
        return sorted(run_ids)
    runs = [store.client.get_run(run_id) for run_id in run_ids]
    return [r.info.run_id for r in sorted(runs, key=lambda r: r.info.start_time or 0)]


def _exit_code(results: list[Result], completed: bool) -> int:
    if not completed:
        return EXIT_INTERRUPTED
    return EXIT_OK if all(r.status == "ok" for r in results) else EXIT_FAILED


# -- the commands ------------------------------------------------------------------------
def _common(args) -> tuple[Options, Path, dict[str, dict], str]:
    if args.timeout is not None and not args.timeout > 0:
        raise CourseError(f"--timeout must be a number of seconds above 0; got {args.timeout:g}.")
    folder = Path(args.notebooks_dir).expanduser().resolve()
    if not folder.is_dir():
        raise CourseError(f"The notebooks folder {folder} does not exist (--notebooks-dir).")
    params_file = args.params or os.environ.get(PARAMS_ENV, "").strip() or None
    sections = load_params_file(Path(params_file)) if params_file else {}
    check_kernel(args.kernel)
    options = Options(output=Path(args.output), kernel=args.kernel, timeout=args.timeout,
                      html=args.html, progress=not args.no_progress, log_output=args.log_output)
    return options, folder, sections, params_file or ""


def command_run(args) -> int:
    """``run``: execute notebooks in course order and summarise them."""
    options, folder, sections, params_file = _common(args)
    selected = select_notebooks(args.notebooks, folder)
    plan = plan_parameters(selected, course_notebooks(folder), sections, params_file, args.parameter or [])
    options.output = prepare_output(options.output, selected)
    jobs = [Result(notebook=nb, output=options.output / nb.name, parameters=plan[nb]) for nb in selected]
    summary = options.output / "summary.json"
    completed = execute_all(jobs, options, fresh=args.workspace == "fresh",
                            stop_on_failure=args.fail_fast,
                            after_each=lambda *_: write_summary(jobs, summary, command="run"))
    write_summary(jobs, summary, command="run")
    print()
    print(summary_text(jobs))
    print(f"executed notebooks are in {options.output}/ (summary.json lists the above)")
    if not completed:
        print("stopped by Ctrl-C: the kernel was stopped; the notebooks after it did not run.",
              file=sys.stderr)
    return _exit_code(jobs, completed)


def parse_grid(specs: list[str], declared: dict[str, Any]) -> dict[str, list[Any]]:
    """``["learning_rate=0.001,0.01", "strategy=freeze"]`` -> ``{name: [values]}``, checked."""
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        name, equals, values = spec.partition("=")
        name = name.strip()
        if not equals or not name or not values.strip():
            raise CourseError(f"--grid {spec}: write NAME=VALUE1,VALUE2,... "
                              "(e.g. --grid learning_rate=0.001,0.01).")
        if name in SWEEP_SETS:
            raise CourseError(f"--grid {spec}: the sweep sets {name} itself "
                              "(--experiment, and a run name per combination).")
        if name not in declared:
            raise CourseError(f"--grid {spec}: the notebook has no parameter {name!r}; "
                              f"it declares {', '.join(declared)}.")
        if name in grid:
            raise CourseError(f"--grid {name} is given twice; list all its values in one --grid.")
        parsed = [parse_value(v.strip()) for v in values.split(",")]
        if len({repr(v) for v in parsed}) != len(parsed):
            raise CourseError(f"--grid {spec}: a value is listed twice.")
        grid[name] = parsed
    return grid


def run_name_for(combination: dict[str, Any]) -> str:
    """A readable run name, e.g. ``lr=0.001-strategy=freeze``."""
    return "-".join(f"{ABBREVIATIONS.get(k, k)}={v}" for k, v in combination.items())


def _safe_file_name(text: str) -> str:
    return re.sub(r"[^\w.=,+-]", "_", text)


def command_sweep(args) -> int:
    """``sweep``: one run of the training notebook per grid combination, then a ranking."""
    options, folder, sections, params_file = _common(args)
    try:
        notebook = select_notebooks([args.notebook], folder)[0]
    except CourseError as error:
        raise CourseError(f"--notebook {args.notebook}: {error}") from None
    declared = declared_parameters(notebook)
    missing = [name for name in SWEEP_SETS if name not in declared]
    if missing:
        raise CourseError(f"{notebook.name} cannot be swept: it has no parameter "
                          f"{' or '.join(missing)}, which the sweep sets for every run.")
    if not args.grid:
        raise CourseError("Give the grid with --grid NAME=VALUE1,VALUE2 (once per parameter).")
    grid = parse_grid(args.grid, declared)
    cli = args.parameter or []
    for raw, _ in cli:
        name = _split_cli_name(raw)[1]
        if name in grid or name in SWEEP_SETS:
            raise CourseError(f"-p {raw}: {name} is set by the sweep (--grid, --experiment or the "
                              "run names); drop the -p.")
    base = plan_parameters([notebook], course_notebooks(folder), sections, params_file, cli)[notebook]
    if not args.experiment.strip():
        raise CourseError("--experiment must name an experiment.")
    sweep_name = args.name or time.strftime("sweep-%Y%m%d-%H%M%S")
    options.output = prepare_output(Path(args.output) / "sweeps" / _safe_file_name(sweep_name), [notebook])

    jobs = []
    for values in itertools.product(*grid.values()):
        combination = dict(zip(grid, values))
        run_name = run_name_for(combination)
        parameters = {**base, **combination, "experiment_name": args.experiment, "run_name": run_name}
        jobs.append(Result(notebook=notebook, output=options.output / f"{_safe_file_name(run_name)}.ipynb",
                           parameters=parameters, label=run_name))
    print(f"sweep {sweep_name!r}: {len(jobs)} run(s) of {notebook.name} into experiment "
          f"{args.experiment!r}, tagged {SWEEP_TAG}={sweep_name}")

    store = RunStore(Workspace(workspace_path()).tracking_uri, notebook.parent)
    tagged: list[str] = []

    def tag(job: Result, _store: RunStore) -> None:
        # The run named after the combination, if the notebook made other runs besides it
        # (notebook 04 trains runs of its own, for instance); without such a run, all it made.
        runs = [store.client.get_run(run_id) for run_id in job.run_ids or []]
        chosen = [run for run in runs if run.info.run_name == job.label] or runs
        for run in chosen:
            store.client.set_tag(run.info.run_id, SWEEP_TAG, sweep_name)
            store.client.set_tag(run.info.run_id, SWEEP_GRID_TAG, ",".join(grid))
            tagged.append(run.info.run_id)

    summary = options.output / "summary.json"
    completed = execute_all(jobs, options, fresh=False, what="run", after_each=tag)
    print()
    print(summary_text(jobs, heading="run"))
    print()
    print(ranking_text(store, tagged, args.metric, descending=args.order == "desc"))
    write_summary(jobs, summary, command="sweep", sweep=sweep_name, experiment=args.experiment,
                  tag=SWEEP_TAG, grid=grid, metric=args.metric)
    print(f"executed notebooks are in {options.output}/")
    return _exit_code(jobs, completed)


def ranking_text(store: RunStore, run_ids: list[str], metric: str, descending: bool = True) -> str:
    """The runs ranked by ``metric``; runs without it come last."""
    runs = [store.client.get_run(run_id) for run_id in run_ids]
    if not runs:
        return "The sweep made no MLflow runs."
    with_metric = [r for r in runs if metric in r.data.metrics]
    without = [r for r in runs if metric not in r.data.metrics]
    with_metric.sort(key=lambda r: r.data.metrics[metric], reverse=descending)
    rows = []
    for rank, run in enumerate(with_metric + without, 1):
        value = run.data.metrics.get(metric)
        rows.append([str(rank) if value is not None else "-", run.info.run_name or "",
                     f"{value:.4f}" if value is not None else "-", run.info.status, run.info.run_id])
    order = "highest" if descending else "lowest"
    text = f"runs ranked by {metric} ({order} first):\n" + format_table(
        rows, ["rank", "run", metric, "status", "run id"])
    if not with_metric:
        names = sorted({m for r in runs for m in r.data.metrics})
        text += f"\nNo run logged a metric {metric!r}; they logged: {', '.join(names) or 'none'}."
    return text


# -- re-running a run from its record ---------------------------------------------------
RERUN_LEAVES_OUT = "system/"  # metrics of the machine, not of the model


def _masked(uri: str) -> str:
    from utils.remote import mask_uri

    return mask_uri(uri)


def plan_rerun(run_id: str, store: RunStore, folder: Path):
    """``(recorded run, notebook, parameters)`` to train ``run_id`` again, all checked first.

    Every problem is one sentence (:class:`CourseError`): a run that is not in the store, a
    run that no course notebook made, a notebook that is gone or no longer declares one of
    the run's parameters, a backbone this machine cannot give.
    """
    from mlflow.exceptions import MlflowException

    from utils.training import NOTEBOOK_TAG, parameters_from_run

    run_id = run_id.strip()
    if store.db_path is not None and not store.db_path.exists():
        # Asking MLflow would create an empty store there (and say so on stderr).
        raise CourseError(
            f"There is no run {run_id!r}: the tracking store {store.db_path} does not exist. "
            "Check that COURSE_WORKSPACE (or MLFLOW_TRACKING_URI) names the store that holds it."
        )
    try:
        recorded = store.client.get_run(run_id)
    except MlflowException:
        raise CourseError(
            f"There is no run {run_id!r} in the tracking store {_masked(store.tracking_uri)}. "
            "Copy the id from the run's page or from `mlflow runs describe`, and check that "
            "MLFLOW_TRACKING_URI (or COURSE_WORKSPACE) names the store that holds it."
        ) from None
    parameters = parameters_from_run(recorded, store.client)
    notebook = resolve_notebook(recorded.data.tags[NOTEBOOK_TAG], course_notebooks(folder),
                                f"run {run_id} was made by a notebook that is gone")
    declared = declared_parameters(notebook)
    dropped = [name for name in parameters if name not in declared]
    if dropped:
        raise CourseError(
            f"Run {run_id} was trained with the parameter(s) {', '.join(dropped)}, which "
            f"{notebook.name} no longer declares, so today's notebook cannot train it the same way."
        )
    return recorded, notebook, parameters


def comparison_text(old, new) -> str:
    """Parameters and metrics of two runs side by side, with what differs."""
    rows = []
    for name in sorted(set(old.data.params) | set(new.data.params)):
        before, after = old.data.params.get(name, "-"), new.data.params.get(name, "-")
        rows.append([name, before, after, "same" if before == after else "DIFFERS"])
    parts = [format_table(rows, ["parameter", "old run", "new run", ""])]
    rows = []
    for name in sorted(k for k in set(old.data.metrics) | set(new.data.metrics)
                       if not k.startswith(RERUN_LEAVES_OUT)):
        before, after = old.data.metrics.get(name), new.data.metrics.get(name)
        if before is None or after is None:
            rows.append([name, _number(before), _number(after), "DIFFERS"])
            continue
        same = round(before, 4) == round(after, 4)
        rows.append([name, f"{before:.4f}", f"{after:.4f}", "same" if same else f"DIFFERS by {after - before:+.4f}"])
    parts.append(format_table(rows, ["metric", "old run", "new run", "to 4 decimals"]))
    differing = sum(row[-1] != "same" for row in rows)
    parts.append(f"({RERUN_LEAVES_OUT}... metrics measure the machine, not the model: left out.) "
                 + ("Every metric is the same to 4 decimals." if not differing
                    else f"{differing} metric(s) differ."))
    return "\n\n".join(parts)


def _number(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def command_rerun(args) -> int:
    """``rerun``: train a recorded run again with its own parameters, then compare."""
    from utils.training import RERUN_TAG

    if args.timeout is not None and not args.timeout > 0:
        raise CourseError(f"--timeout must be a number of seconds above 0; got {args.timeout:g}.")
    folder = Path(args.notebooks_dir).expanduser().resolve()
    store = RunStore(Workspace(workspace_path()).tracking_uri, folder)
    recorded, notebook, parameters = plan_rerun(args.run_id, store, folder)
    check_kernel(args.kernel)
    run_id = recorded.info.run_id
    options = Options(output=Path(args.output) / "reruns", kernel=args.kernel, timeout=args.timeout,
                      html=args.html, progress=not args.no_progress, log_output=args.log_output)
    options.output = prepare_output(options.output, [notebook])
    job = Result(notebook=notebook, output=options.output / f"{run_id}.ipynb", parameters=parameters,
                 label=f"rerun of {run_id}")
    print(f"re-running run {run_id} ({recorded.info.run_name!r}) with {notebook.name} and the "
          f"{len(parameters)} parameters it recorded")
    completed = execute_all([job], options, fresh=False, what="run")
    print()
    print(summary_text([job], heading="run"))
    runs = [store.client.get_run(new_id) for new_id in job.run_ids or []]
    repeats = [run for run in runs if run.info.run_name == recorded.info.run_name
               and run.info.experiment_id == recorded.info.experiment_id]
    for run in repeats:
        store.client.set_tag(run.info.run_id, RERUN_TAG, run_id)
    if job.status == "ok" and not repeats:
        print(f"error: {notebook.name} ran but made no run named {recorded.info.run_name!r}.",
              file=sys.stderr)
        return EXIT_FAILED
    if repeats:
        new = store.client.get_run(repeats[-1].info.run_id)
        print(f"\nnew run {new.info.run_id}, tagged {RERUN_TAG}={run_id}:\n")
        print(comparison_text(recorded, new))
    return _exit_code([job], completed)


# -- command line ------------------------------------------------------------------------
PARAMETER_HELP = """\
Parameters, later ones winning:
  1. the notebook's own defaults (its cell tagged `parameters`);
  2. --params FILE (or $COURSE_PARAMS): YAML, one section per notebook, keyed by
     the notebook's number (quote it: "03") or file name:
         "03":
           train_size: 64
           learning_rate: 0.001     # YAML reads 1e-3 as text: write a dot
  3. -p NAME VALUE: for every notebook being run that declares NAME;
  4. -p NOTEBOOK:NAME VALUE: for that notebook only (e.g. -p 03:max_epochs 2).
A -p VALUE is read as `papermill -p` reads it: True/False/None, a number, else text.
A parameter a notebook does not declare is an error, checked before anything runs.
"""


def _wrap(text: str) -> str:
    return textwrap.fill(text, 79)


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m tools.batch`` command line."""
    execution = argparse.ArgumentParser(add_help=False)
    execution.add_argument("--output", default=os.environ.get(OUTPUT_ENV) or DEFAULT_OUTPUT, metavar="DIR",
                           help=f"where executed copies go (default: ${OUTPUT_ENV} or {DEFAULT_OUTPUT})")
    execution.add_argument("--timeout", type=float, metavar="SECONDS",
                           help="time limit per notebook (whole notebook, not per cell); default: none")
    execution.add_argument("--html", action="store_true", help="also write each executed copy as HTML")
    execution.add_argument("--notebooks-dir", default=str(repo_root() / "notebooks"), metavar="DIR",
                           help="where the NN_name.ipynb notebooks are (default: the course's)")
    execution.add_argument("--kernel", default="python3", help="Jupyter kernel (default: python3)")
    execution.add_argument("--no-progress", action="store_true",
                           help="no progress bars (they are shown only on a terminal anyway)")
    execution.add_argument("--log-output", action="store_true", help="print the notebooks' output as they run")
    common = argparse.ArgumentParser(add_help=False, parents=[execution])
    common.add_argument("--params", metavar="FILE", help="YAML parameter file (default: $COURSE_PARAMS)")
    common.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("[NB:]NAME", "VALUE"),
                        help="set a parameter (see below); repeatable")

    parser = argparse.ArgumentParser(
        prog="python -m tools.batch",
        description="Run the course's notebooks headless with papermill.",
        epilog="Exit codes: 0 all notebooks ran, 1 one failed or ran out of time, 2 bad input, "
               "130 stopped with Ctrl-C. `python -m tools.batch COMMAND --help` for details.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    formatter = argparse.RawDescriptionHelpFormatter

    run = commands.add_parser(
        "run", parents=[common], formatter_class=formatter, help="execute course notebooks in order",
        description=_wrap("Execute the course notebooks (all, or those named) in course order with "
                    "papermill, write executed copies, and print a summary: status, wall time and "
                    "the MLflow runs each notebook made. A failing notebook is named with its "
                    "failing cell; its executed copy is kept. The others still run unless "
                    "--fail-fast."),
        epilog=PARAMETER_HELP + "\nExamples:\n  python -m tools.batch run\n"
               "  python -m tools.batch run 01 03 --params tools/params/ci.yml -p 01:port 0\n")
    run.add_argument("notebooks", nargs="*", metavar="NOTEBOOK",
                     help="a file name, a number like 03, or a path; default: every notebook")
    run.add_argument("--workspace", choices=("shared", "fresh"), default="shared",
                     help="shared: all notebooks use the course workspace ($COURSE_WORKSPACE or "
                          "workspace/, or $MLFLOW_TRACKING_URI); fresh: each gets a new one under "
                          "OUTPUT/workspaces/ (and $MLFLOW_TRACKING_URI is ignored). Default: shared")
    run.add_argument("--fail-fast", action="store_true", help="stop after the first failing notebook")
    run.set_defaults(handler=command_run)

    sweep = commands.add_parser(
        "sweep", parents=[common], formatter_class=formatter,
        help="one training run per combination of a parameter grid, ranked by a metric",
        description=_wrap("Run the training notebook once per combination of --grid values, all into "
                    "one experiment, each run named after its values (e.g. lr=0.001-strategy=freeze)"
                    f"; that run is tagged {SWEEP_TAG}=<sweep name> and {SWEEP_GRID_TAG}=<varied "
                    "parameters> (other runs the notebook makes, if any, are not), then the runs are ranked "
                    "by --metric. Runs go to the shared course workspace; "
                    "executed copies to OUTPUT/sweeps/<sweep name>/."),
        epilog=PARAMETER_HELP + "\nExample:\n  python -m tools.batch sweep --params tools/params/ci.yml "
               "--grid learning_rate=0.001,0.01 --grid strategy=freeze\n")
    sweep.add_argument("--grid", action="append", metavar="NAME=V1,V2,...",
                       help="values of one parameter; repeat for each parameter to vary")
    sweep.add_argument("--experiment", default=SWEEP_EXPERIMENT,
                       help=f"the experiment of the runs (default: {SWEEP_EXPERIMENT})")
    sweep.add_argument("--name", help="the sweep's name, its tag value (default: sweep-<date-time>)")
    sweep.add_argument("--metric", default="test_accuracy", help="rank by this metric (default: test_accuracy)")
    sweep.add_argument("--order", choices=("desc", "asc"), default="desc",
                       help="desc: highest first (default); asc: for losses")
    sweep.add_argument("--notebook", default=SWEEP_NOTEBOOK,
                       help=f"the notebook to sweep (default: {SWEEP_NOTEBOOK})")
    sweep.set_defaults(handler=command_sweep)

    rerun = commands.add_parser(
        "rerun", parents=[execution], formatter_class=formatter,
        help="train a recorded run again from its record, and compare the two",
        description=_wrap("Read a run's parameters and the notebook that made it (its tag "
                          "course.notebook) from the tracking store, execute that notebook again "
                          "with exactly those parameters into the same experiment, tag the new run "
                          "course.rerun_of=<RUN_ID>, and print both runs' parameters and metrics "
                          "side by side. The store is the course workspace, or MLFLOW_TRACKING_URI."),
        epilog="Example:\n  python -m tools.batch rerun 0123456789abcdef0123456789abcdef\n")
    rerun.add_argument("run_id", metavar="RUN_ID", help="the 32-digit id of the run to train again")
    rerun.set_defaults(handler=command_rerun)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m tools.batch``; returns the exit code."""
    args = build_parser().parse_args(argv)
    if not args.log_output:
        # nbclient logs through papermill's logger; the summary reports the same failures.
        logging.getLogger("papermill").setLevel(logging.CRITICAL)
    try:
        return args.handler(args)
    except CourseError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("stopped by Ctrl-C", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
