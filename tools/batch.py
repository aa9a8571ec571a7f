"""Run the course's notebooks headless with papermill: ``python -m tools.batch run|sweep|rerun``.

Papermill injects the parameters, stops a cell at ``--timeout`` (its ``execution_timeout``) and
raises ``PapermillExecutionError`` for a failing cell, keeping the executed copy."""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import textwrap
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


from tools.runner import course_env, execute
from utils.errors import CourseError
from utils.workspace import Workspace, repo_root, workspace_path

NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
OUTPUT_ENV, PARAMS_ENV, DEFAULT_OUTPUT = "COURSE_OUTPUT", "COURSE_PARAMS", "build/executed"
SWEEP_TAG, SWEEP_GRID_TAG = "course.sweep", "course.sweep.grid"  # the sweep's name; what it varied
SWEEP_NOTEBOOK, SWEEP_EXPERIMENT, SWEEP_METRIC = "03", "dl_model_chapter02_sweep", "test_accuracy"
SWEEP_SETS = ("experiment_name", "run_name")  # parameters the sweep itself sets
ABBREVIATIONS = {"learning_rate": "lr", "batch_size": "bs", "max_epochs": "epochs", "max_length": "len",
                 "train_size": "train", "val_size": "val", "test_size": "test"}
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
RERUN_LEAVES_OUT = "system/"  # metrics of the machine, not of the model


# -- which notebooks, which parameters ------------------------------------------------------
def parse_value(text: str) -> Any:
    """A ``-p`` value read as ``papermill -p`` reads it (papermill 2.6's cli, which has no
    public function for it): True, False and None, then an int, a float, else the text."""
    if text in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[text]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def course_notebooks(folder: Path) -> list[Path]:
    """The course notebooks in ``folder`` (``NN_name.ipynb``), in course order."""
    return sorted(folder.glob(NOTEBOOK_GLOB))


def resolve_notebook(key: str, candidates: list[Path], where: str) -> Path:
    """The one notebook among ``candidates`` that ``key`` (file name, stem or number) names."""
    key = str(key).strip()
    found = [path for path in candidates if (path.name[:3] == f"{int(key):02d}_" if key.isdigit()
                                             else Path(key).name in (path.name, path.stem))]
    if len(found) != 1:
        what = f"{len(found)} notebooks are" if found else "no notebook"
        raise CourseError(f"{where + ': ' if where else ''}{what} {key!r}. The notebooks are: "
                          f"{', '.join(p.name for p in candidates) or 'none'}. Name one by its file name or "
                          "its number (e.g. 03).")
    return found[0]


def select_notebooks(names: list[str], folder: Path) -> list[Path]:
    """All of ``folder``'s notebooks, or those ``names`` name (file name, stem, number, path)."""
    available, chosen = course_notebooks(folder), {}
    if not names and not available:
        raise CourseError(f"There are no notebooks named like {NOTEBOOK_GLOB} in {folder}.")
    for name, path in ((name, Path(name).expanduser()) for name in names):
        chosen[path.resolve() if name.endswith(".ipynb") and path.is_file() else
               resolve_notebook(name, available, "")] = None
    return sorted(chosen, key=lambda p: (p.name, str(p))) if names else available


def load_params_file(path: Path) -> dict[str, dict[str, Any]]:
    """``{notebook key: {parameter: value}}`` read as papermill reads YAML; key 3 becomes "03"."""
    import yaml
    from papermill.iorw import NoDatesSafeLoader

    try:
        data = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=NoDatesSafeLoader) or {}  # noqa: S506
    except OSError as error:
        raise CourseError(f"Cannot read the parameter file {path}: {error.strerror or error}.") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise CourseError(f"The parameter file {path} is not valid YAML{where}: {getattr(error, 'problem', '')}. "
                          "Each section is a notebook, each entry `name: value`.") from None
    sections = {}
    for key, values in (data.items() if isinstance(data, dict) else [(None, data)]):
        name = f"{key:02d}" if isinstance(key, int) and not isinstance(key, bool) else str(key)
        if not isinstance(values or {}, dict) or not all(isinstance(k, str) for k in values or {}):
            raise CourseError(f"The parameter file {path} must map notebooks to `parameter: value` entries, "
                              f'one a line, indented under each, like\n"03":\n  train_size: 64')
        if name in sections:
            raise CourseError(f"In the parameter file {path}, section {name!r} appears twice "
                              "(3, 03 and \"03\" are the same notebook); merge them.")
        sections[name] = values or {}
    return sections


def declared_parameters(notebook: Path) -> dict[str, Any]:
    """The parameters ``notebook`` declares in its ``parameters`` cell, with their defaults."""
    from papermill import inspect_notebook

    return {name: info["default"] for name, info in inspect_notebook(str(notebook)).items()}


def plan_parameters(selected: list[Path], known: list[Path], file_sections: dict[str, dict],
                    file_name: str, cli: list[tuple[str, str]]) -> dict[Path, dict[str, Any]]:
    """Each selected notebook's parameters (later sources win), checked against what it declares."""
    candidates = sorted(set(known) | set(selected), key=lambda p: (p.name, str(p)))
    declared = {path: declared_parameters(path) for path in candidates}
    plan: dict[Path, dict[str, Any]] = {path: {} for path in selected}

    def put(notebook: Path, name: str, value: Any, where: str) -> None:
        if name not in declared[notebook]:
            known = ", ".join(declared[notebook]) or "no parameters (it has no cell tagged `parameters`)"
            raise CourseError(f"{where}: {notebook.name} has no parameter {name!r}; it declares {known}.")
        if notebook in plan:
            plan[notebook][name] = value

    for key, values in file_sections.items():
        notebook = resolve_notebook(key, candidates, f"{file_name}, section {key!r}")
        for name, value in values.items():
            put(notebook, name, value, file_name)
    targeted = [(*raw.rpartition(":")[::2], parse_value(text), raw) for raw, text in cli]  # ("" or NB, NAME, ...)
    for name, value in ((name, value) for key, name, value, _ in targeted if not key):
        if not any(name in declared[path] for path in selected):
            listing = "; ".join(f"{p.name}: {', '.join(declared[p]) or '-'}" for p in selected)
            raise CourseError(f"-p {name}: none of the notebooks to run declares {name!r} (they declare {listing}).")
        for path in (path for path in selected if name in declared[path]):
            plan[path][name] = value
    for key, name, value, raw in (t for t in targeted if t[0]):
        put(resolve_notebook(key, selected, f"-p {raw} (it must name a notebook being run)"), name, value, f"-p {raw}")
    return plan


# -- where results go, and the store the runs go to ----------------------------------------
def prepare_output(folder: Path, notebooks: list[Path]) -> Path:
    """Create ``folder`` and make sure it can be written; never a notebooks folder."""
    folder = folder.expanduser().resolve()
    if any(folder == path.parent.resolve() for path in notebooks):
        raise CourseError(f"The output folder {folder} holds the notebooks themselves: the "
                          "executed copies would replace them. Choose another with --output.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-").close()
    except OSError as error:
        raise CourseError(f"The output folder {folder} cannot be written ({error.strerror or error}). "
                          f"Choose another with --output or the {OUTPUT_ENV} variable.") from None
    return folder


class RunStore:
    """One tracking store, to find the runs a notebook made: those started while it ran."""
    def __init__(self, tracking_uri: str, cwd: Path) -> None:
        sqlite = tracking_uri.startswith("sqlite:///")  # a relative path is the kernel's, in cwd
        self.db_path = (cwd / tracking_uri[len("sqlite:///"):]).resolve() if sqlite else None
        self.tracking_uri = f"sqlite:///{self.db_path}" if sqlite else tracking_uri

    @functools.cached_property
    def client(self):  # made when first used: a new client creates a SQLite store that is not there
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri)

    def runs_since(self, start_ms: int) -> list | None:
        """The runs started since ``start_ms``, oldest first; None if the store cannot be read."""
        from mlflow.entities import ViewType

        if self.db_path is not None and not self.db_path.exists():
            return []  # asking MLflow would create the file
        try:
            ids = [e.experiment_id for e in self.client.search_experiments(ViewType.ALL, max_results=50000)]
            runs = [run for start in range(0, len(ids), 50) for run in self.client.search_runs(
                ids[start:start + 50], f"attributes.start_time >= {start_ms}", ViewType.ALL, 50000)]
            return sorted(runs, key=lambda run: (run.info.start_time, run.info.run_id))
        except Exception as error:  # a remote store may be down; the summary says so
            print(f"warning: cannot list the runs of {self.tracking_uri}: {error}", file=sys.stderr)
            return None


# -- executing notebooks --------------------------------------------------------------------
@dataclass
class Result:
    """What happened to one notebook: its entry in summary.json, without its parameters."""
    notebook: Path
    executed: Path
    label: str
    parameters: dict[str, Any] = field(default_factory=dict)
    status: str = "not run"  # ok | failed | timeout | interrupted | not run
    seconds: float = 0.0
    run_ids: list[str] | None = field(default_factory=list)  # None: the store could not be read
    problem: str = ""  # one line: where and what
    details: str = ""  # the error's last lines
    workspace: Path | None = None
    html: Path | None = None
    killed_runs: list[str] = field(default_factory=list)


def _first_line(source: str, width: int = 70) -> str:
    return textwrap.shorten(source.strip().splitlines()[0] if source.strip() else "", width, placeholder="…")


def _last_lines(text: str, count: int = 8) -> str:
    from papermill.exceptions import strip_color

    return "\n".join([line.rstrip() for line in strip_color(text).splitlines() if line.strip()][-count:])


def run_notebook(job: Result, args, env: dict[str, str]) -> bool:
    """Execute ``job`` with papermill; fill in its status and problem; True if stopped by Ctrl-C."""
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    running, log = {}, args.output / "logs" / f"{job.executed.stem}.kernel.log"  # the cell that runs now
    bar = False if args.no_progress else {"desc": job.label, "leave": False, "disable": None}  # terminal only
    started = time.monotonic()
    try:
        execute(job.notebook, job.executed, job.parameters, env=env, kernel_log=log, progress_bar=bar,
                execution_timeout=args.timeout, on_cell_start=lambda cell, **_: running.update(cell=cell))
        job.status = "ok"
    except PapermillExecutionError as error:
        job.status, job.details = "failed", _last_lines("\n".join(error.traceback))
        job.problem = (f"In [{error.exec_count}] ({_first_line(error.source)}) raised "
                       f"{error.ename}: {_first_line(str(error.evalue), 200)}")
    except (CellTimeoutError, DeadKernelError, KeyboardInterrupt) as error:
        cell = running.get("cell")
        where = f"In [{cell.execution_count or ' '}] ({_first_line(cell.source)})" if cell else "the kernel's start"
        job.status, job.problem = {
            CellTimeoutError: ("timeout", f"{where} ran longer than the time limit of {args.timeout} s (--timeout)"),
            DeadKernelError: ("failed", f"the kernel died while running {where}"),
        }.get(type(error), ("interrupted", f"stopped by Ctrl-C in {where}"))
        if isinstance(error, DeadKernelError) and log.exists():
            job.details = f"{_last_lines(log.read_text(errors='replace'))}\n(the kernel's log: {log})"
    except Exception as error:  # the kernel would not start, for instance
        job.status, job.problem = "failed", f"{type(error).__name__}: {_first_line(str(error), 200)}"
    job.seconds = time.monotonic() - started
    return job.status == "interrupted"


def execute_all(jobs: list[Result], args, *, fresh: bool, after_each=None) -> bool:
    """Execute ``jobs`` in order, each ``fresh`` in a workspace of its own; False on Ctrl-C."""
    (args.output / "logs").mkdir(exist_ok=True)
    for number, job in enumerate(jobs, 1):
        if fresh:  # and the caller's MLFLOW_TRACKING_URI is not passed on
            job.workspace = args.output / "workspaces" / job.executed.stem
            shutil.rmtree(job.workspace, ignore_errors=True)
            job.workspace.mkdir(parents=True)
            env, uri = course_env(job.workspace), Workspace(job.workspace).backend_store_uri
        else:
            job.workspace, env = workspace_path(), dict(os.environ)
            uri = Workspace(job.workspace).tracking_uri
        store = RunStore(uri, job.notebook.parent)
        print(f"[{number}/{len(jobs)}] {job.label}: running", flush=True)
        started = int(time.time() * 1000)
        interrupted = run_notebook(job, args, env)
        runs = store.runs_since(started)
        job.run_ids = None if runs is None else [run.info.run_id for run in runs]
        if job.status in ("timeout", "interrupted") or "kernel died" in job.problem:  # its runs never ended
            job.killed_runs = [run.info.run_id for run in runs or [] if run.info.status == "RUNNING"]
            for run_id in job.killed_runs:
                store.client.set_terminated(run_id, status="KILLED")
        if args.html and job.executed.exists():
            from nbconvert import HTMLExporter

            job.html = job.executed.with_suffix(".html")
            job.html.write_text(HTMLExporter().from_filename(str(job.executed))[0], encoding="utf-8")
        if after_each is not None:
            after_each(job, store)
        problem = f" - {job.problem}" if job.problem else ""
        print(f"[{number}/{len(jobs)}] {job.label}: {job.status} in {_duration(job.seconds)}{problem}", flush=True)
        if interrupted:
            return False
    return True


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{int(seconds // 60)} min {seconds % 60:02.0f} s"


def _number(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def format_table(rows: list[list[str]], header: list[str]) -> str:
    """A plain-text table with aligned columns."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [header, ["-" * w for w in widths], *rows]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in lines)


def finish(results: list[Result], args, completed: bool, heading: str, **summary) -> int:
    """Write summary.json; print the table, what went wrong where and a verdict; the exit code."""
    write_summary(results, args.output / "summary.json", **summary)
    rows = []
    for r in results:
        runs = ["?"] if r.run_ids is None else (r.run_ids or ["-"])
        rows.append([r.label, r.status, _duration(r.seconds) if r.seconds else "-", runs[0]])
        rows += [["", "", "", run_id] for run_id in runs[1:]]  # one run id a line
    parts = [format_table(rows, [heading, "status", "time", "MLflow runs"])]
    for r in (r for r in results if r.status in ("failed", "timeout", "interrupted")):
        block = [f"\n{r.status.upper()}: {r.label}: {r.problem}"] + (
            ["  " + r.details.replace("\n", "\n  ")] if r.details else [])
        if r.killed_runs:
            block.append(f"  marked KILLED (its kernel was stopped while they ran): {', '.join(r.killed_runs)}")
        parts.append("\n".join([*block, f"  executed copy: {r.executed}"]))
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "failed", "timeout", "interrupted", "not run")}
    parts.append(f"\n{len(results)} {heading}(s): {', '.join(f'{n} {s}' for s, n in counts.items() if n)}.")
    print("\n" + "\n".join(parts) + f"\nexecuted notebooks are in {args.output}/ (summary.json lists them)")
    if not completed:
        print("stopped by Ctrl-C: the kernel was stopped; the notebooks after it did not run.", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK if all(r.status == "ok" for r in results) else EXIT_FAILED


def write_summary(jobs: list[Result], path: Path, **summary) -> None:
    entries = [{**{k: v for k, v in asdict(job).items() if k != "parameters"},  # they may hold passwords
                "notebook": job.notebook.name, "seconds": round(job.seconds, 1)} for job in jobs]
    payload = {**summary, "notebooks": entries}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")


# -- the commands ------------------------------------------------------------------------
def _common(args) -> tuple[Path, dict[str, dict], str]:
    """The notebooks folder, the parameter file's sections and its name; the kernel checked."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    folder = Path(args.notebooks_dir).expanduser().resolve()
    if not folder.is_dir():
        raise CourseError(f"The notebooks folder {folder} does not exist (--notebooks-dir).")
    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        raise CourseError("There is no Jupyter kernel named python3: run `make setup`, which installs it.") from None
    params_file = getattr(args, "params", None) or os.environ.get(PARAMS_ENV, "").strip() or None
    return folder, load_params_file(Path(params_file)) if params_file else {}, params_file or ""


def command_run(args) -> int:
    """``run``: execute notebooks in course order and summarise them."""
    folder, sections, params_file = _common(args)
    selected = select_notebooks(args.notebooks, folder)
    plan = plan_parameters(selected, course_notebooks(folder), sections, params_file, args.parameter or [])
    args.output = prepare_output(Path(args.output), selected)
    jobs = [Result(notebook, args.output / notebook.name, notebook.name, plan[notebook]) for notebook in selected]
    completed = execute_all(jobs, args, fresh=args.workspace == "fresh",  # summary.json after each too
                            after_each=lambda *_: write_summary(jobs, args.output / "summary.json", command="run"))
    return finish(jobs, args, completed, "notebook", command="run")


def run_name_for(combination: dict[str, Any]) -> str:
    """A readable run name, e.g. ``lr=0.001-strategy=freeze``."""
    return "-".join(f"{ABBREVIATIONS.get(k, k)}={v}" for k, v in combination.items())


def command_sweep(args) -> int:
    """``sweep``: one run of the training notebook per grid combination, then a ranking."""
    folder, sections, params_file = _common(args)
    notebook = select_notebooks([args.notebook], folder)[0]
    declared = declared_parameters(notebook)
    if any(name not in declared for name in SWEEP_SETS):
        raise CourseError(f"{notebook.name} cannot be swept: the sweep sets {' and '.join(SWEEP_SETS)} "
                          "for every run, and it does not declare both.")
    grid: dict[str, list[Any]] = {}
    for spec in args.grid:
        name, equals, values = (part.strip() for part in spec.partition("="))
        if not (equals and name and values):
            raise CourseError(f"--grid {spec}: write NAME=VALUE1,VALUE2,... (e.g. --grid learning_rate=0.001,0.01).")
        if name in SWEEP_SETS or name not in declared or name in grid:
            raise CourseError(f"--grid {spec}: " + (
                f"the sweep sets {name} itself (--experiment, and a run name per combination)." if name in SWEEP_SETS
                else f"{name} is given twice; list all its values in one --grid." if name in grid
                else f"the notebook has no parameter {name!r}; it declares {', '.join(declared)}."))
        grid[name] = list({repr(value): value for value in map(parse_value, values.split(","))}.values())
    base = plan_parameters([notebook], course_notebooks(folder), sections, params_file, args.parameter or [])
    name, safe = args.name or time.strftime("sweep-%Y%m%d-%H%M%S"), lambda text: re.sub(r"[^\w.=,+-]", "_", text)
    args.output = prepare_output(Path(args.output) / "sweeps" / safe(name), [notebook])
    jobs = []
    for combination in (dict(zip(grid, values)) for values in itertools.product(*grid.values())):
        run_name = run_name_for(combination)
        parameters = {**base[notebook], **combination, "experiment_name": args.experiment, "run_name": run_name}
        jobs.append(Result(notebook, args.output / f"{safe(run_name)}.ipynb", run_name, parameters))
    print(f"sweep {name!r}: {len(jobs)} run(s) of {notebook.name} into experiment "
          f"{args.experiment!r}, tagged {SWEEP_TAG}={name}")
    tagged: list = []

    def tag(job: Result, store: RunStore) -> None:
        # The run named after the combination (a notebook may make others); else all it made.
        runs = [store.client.get_run(run_id) for run_id in job.run_ids or []]
        for run in [run for run in runs if run.info.run_name == job.label] or runs:
            store.client.set_tag(run.info.run_id, SWEEP_TAG, name)
            store.client.set_tag(run.info.run_id, SWEEP_GRID_TAG, ",".join(grid))
            tagged.append(run)

    completed = execute_all(jobs, args, fresh=False, after_each=tag)
    code = finish(jobs, args, completed, "run", command="sweep", sweep=name, experiment=args.experiment,
                  tag=SWEEP_TAG, grid=grid, metric=SWEEP_METRIC)
    print(f"\n{ranking_text(tagged)}")
    return code


def ranking_text(runs: list, metric: str = SWEEP_METRIC) -> str:
    """The runs ranked by ``metric``, highest first; runs without it come last."""
    runs = sorted(runs, key=lambda r: (metric not in r.data.metrics, -r.data.metrics.get(metric, 0)))
    rows = [[str(rank) if metric in run.data.metrics else "-", run.info.run_name or "", _number(
        run.data.metrics.get(metric)), run.info.status, run.info.run_id] for rank, run in enumerate(runs, 1)]
    table = format_table(rows, ["rank", "run", metric, "status", "run id"])
    return f"runs ranked by {metric} (highest first):\n{table}"


def plan_rerun(run_id: str, store: RunStore, folder: Path):
    """``(recorded run, notebook, parameters)`` to train ``run_id`` again, checked first."""
    from mlflow.exceptions import MlflowException

    from utils.training import NOTEBOOK_TAG, parameters_from_run
    from utils.workspace import mask_uri

    if store.db_path is not None and not store.db_path.exists():  # MLflow would create it
        raise CourseError(f"There is no run {run_id!r}: the tracking store {store.db_path} does not exist. "
                          "Check that COURSE_WORKSPACE (or MLFLOW_TRACKING_URI) names the store that holds it.")
    try:
        recorded = store.client.get_run(run_id)
    except MlflowException:
        raise CourseError(f"There is no run {run_id!r} in the tracking store {mask_uri(store.tracking_uri)}. "
                          "Copy the id from the run's page or from `mlflow runs describe`, and check that "
                          "MLFLOW_TRACKING_URI (or COURSE_WORKSPACE) names the store that holds it.") from None
    parameters = parameters_from_run(recorded, store.client)
    notebook = resolve_notebook(recorded.data.tags[NOTEBOOK_TAG], course_notebooks(folder),
                                f"run {run_id} was made by a notebook that is gone")
    dropped = [name for name in parameters if name not in declared_parameters(notebook)]
    if dropped:
        raise CourseError(f"Run {run_id} was trained with the parameter(s) {', '.join(dropped)}, which "
                          f"{notebook.name} no longer declares, so today's notebook cannot train it the same way.")
    return recorded, notebook, parameters


def comparison_text(old, new) -> str:
    """Parameters and metrics of two runs side by side, with what differs."""
    rows = [[name, old.data.params.get(name, "-"), new.data.params.get(name, "-")]
            for name in sorted(set(old.data.params) | set(new.data.params))]
    parts = [format_table([[*row, "same" if row[1] == row[2] else "DIFFERS"] for row in rows],
                          ["parameter", "old run", "new run", ""])]
    rows = []
    for name in sorted(set(old.data.metrics) | set(new.data.metrics)):
        before, after = old.data.metrics.get(name), new.data.metrics.get(name)
        verdict = ("DIFFERS" if before is None or after is None else "same" if round(before, 4) == round(after, 4)
                   else f"DIFFERS by {after - before:+.4f}")
        rows += [] if name.startswith(RERUN_LEAVES_OUT) else [[name, _number(before), _number(after), verdict]]
    parts.append(format_table(rows, ["metric", "old run", "new run", "to 4 decimals"]))
    differing = sum(row[-1] != "same" for row in rows)
    parts.append(f"({RERUN_LEAVES_OUT}... metrics measure the machine, not the model: left out.) "
                 + (f"{differing} metric(s) differ." if differing else "Every metric is the same to 4 decimals."))
    return "\n\n".join(parts)


def command_rerun(args) -> int:
    """``rerun``: train a recorded run again with its own parameters, then compare."""
    from utils.training import RERUN_TAG

    folder = _common(args)[0]
    store = RunStore(Workspace(workspace_path()).tracking_uri, folder)
    recorded, notebook, parameters = plan_rerun(args.run_id, store, folder)
    run_id, recorded_as = recorded.info.run_id, (recorded.info.run_name, recorded.info.experiment_id)
    args.output = prepare_output(Path(args.output) / "reruns", [notebook])
    job = Result(notebook, args.output / f"{run_id}.ipynb", f"rerun of {run_id}", parameters)
    print(f"re-running run {run_id} ({recorded.info.run_name!r}) with {notebook.name} and the "
          f"{len(parameters)} parameters it recorded")
    code = finish([job], args, execute_all([job], args, fresh=False), "run", command="rerun", run=run_id)
    repeats = [new_id for new_id in job.run_ids or [] if recorded_as == (
        (run := store.client.get_run(new_id)).info.run_name, run.info.experiment_id)]
    for new_id in repeats:
        store.client.set_tag(new_id, RERUN_TAG, run_id)
    if job.status == "ok" and not repeats:
        print(f"error: {notebook.name} ran but made no run named {recorded.info.run_name!r}.", file=sys.stderr)
        return EXIT_FAILED
    if repeats:
        new = store.client.get_run(repeats[-1])
        print(f"\nnew run {new.info.run_id}, tagged {RERUN_TAG}={run_id}:\n\n{comparison_text(recorded, new)}")
    return code


# -- command line ------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The ``python -m tools.batch`` command line."""
    execution = argparse.ArgumentParser(add_help=False)
    add = execution.add_argument
    add("--output", default=os.environ.get(OUTPUT_ENV) or DEFAULT_OUTPUT, metavar="DIR",
        help=f"where executed copies go (default: ${OUTPUT_ENV} or {DEFAULT_OUTPUT})")
    add("--timeout", type=int, metavar="SECONDS", help="time limit per cell (papermill's execution_timeout): "
        "a cell that runs longer stops its notebook. Default, or 0: none")
    add("--html", action="store_true", help="also write each executed copy as HTML")
    add("--notebooks-dir", default=str(repo_root() / "notebooks"), metavar="DIR",
        help="where the NN_name.ipynb notebooks are (default: the course's)")
    add("--no-progress", action="store_true", help="no progress bars (shown only on a terminal anyway)")
    common = argparse.ArgumentParser(add_help=False, parents=[execution])
    common.add_argument("--params", metavar="FILE", help="YAML file, a section of `name: value` lines per notebook, "
                        'keyed by its number ("03") or file name (default: $COURSE_PARAMS)')
    common.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("[NB:]NAME", "VALUE"),
                        help="set NAME for every notebook being run that declares it, or for notebook NB "
                        "(e.g. -p 03:max_epochs 2), over --params; VALUE read as `papermill -p` reads it")
    parser = argparse.ArgumentParser(
        prog="python -m tools.batch", description="Run the course's notebooks headless with papermill.",
        epilog="Exit codes: 0 all notebooks ran, 1 one failed or ran out of time, 2 bad input, 130 Ctrl-C.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", parents=[common], help="execute course notebooks in course order, and "
                              "print each one's status, wall time and MLflow runs")
    run.add_argument("notebooks", nargs="*", metavar="NOTEBOOK",
                     help="a file name, a number like 03, or a path; default: every notebook")
    run.add_argument("--workspace", choices=("shared", "fresh"), default="shared",
                     help="shared (default): the course workspace ($COURSE_WORKSPACE or workspace/, or "
                          "$MLFLOW_TRACKING_URI); fresh: a new one per notebook under OUTPUT/workspaces/")
    sweep = commands.add_parser("sweep", parents=[common], help="a training run per combination of a grid, each "
                                f"named after its values and tagged {SWEEP_TAG}=NAME, ranked by a metric")
    sweep.add_argument("--grid", action="append", metavar="NAME=V1,V2,...", required=True,
                       help="values of one parameter; repeat for each parameter to vary")
    sweep.add_argument("--experiment", default=SWEEP_EXPERIMENT, help=f"default: {SWEEP_EXPERIMENT}")
    sweep.add_argument("--name", help="the sweep's name, its tag value (default: sweep-<date-time>)")
    sweep.add_argument("--notebook", default=SWEEP_NOTEBOOK, help=f"the notebook to sweep (default: {SWEEP_NOTEBOOK})")
    rerun = commands.add_parser("rerun", parents=[execution], help="train a recorded run again with the notebook and "
                                "parameters it recorded, tag it course.rerun_of=RUN_ID, and compare the two")
    rerun.add_argument("run_id", metavar="RUN_ID", help="the 32-digit id of the run to train again")
    for command, handler in ((run, command_run), (sweep, command_sweep), (rerun, command_rerun)):
        command.set_defaults(handler=handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m tools.batch``; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.getLogger("papermill").setLevel(logging.CRITICAL)  # nbclient's log; the summary says the same
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
