"""Look at what MLflow recorded: runs, the ``mlflow`` command line, logged models on disk.

The notebooks use these helpers for the parts that are plumbing (running the CLI and
picking out its error, drawing a folder or artifact tree, a bar chart of runs) so that their
cells can stay about MLflow's own calls.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from utils.errors import CourseError


# -- the mlflow command line --------------------------------------------------------------
def run_mlflow_cli(*args: str, tracking_uri: str, cwd: str | os.PathLike | None = None,
                   timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``mlflow <args>`` against ``tracking_uri`` as a terminal would; return the process.

    The CLI has no ``--tracking-uri`` option: like any MLflow client it reads the
    ``MLFLOW_TRACKING_URI`` environment variable, which is set for this one command only
    (``""`` means MLflow's default local store in ``cwd``). Output is captured, and a
    failing command does not raise: look at ``returncode`` (and :func:`cli_error`).
    """
    from utils.tracking import mlflow_executable
    from utils.workspace import ARTIFACT_ROOT_ENV

    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    # use_workspace() sets this for the notebook's own process; a terminal would not have it.
    env.pop(ARTIFACT_ROOT_ENV, None)
    return subprocess.run(
        [mlflow_executable(), *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False,
    )


def cli_error(stderr: str) -> str:
    """The line of a failed ``mlflow`` command that says what went wrong.

    MLflow prints a Python traceback; its last exception line (MlflowException or
    RestException) is the message, often followed by lines of SQL detail.
    """
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    exceptions = [line for line in lines if line.startswith(("mlflow.exceptions.", "Error:"))]
    chosen = exceptions[-1] if exceptions else (lines[-1] if lines else "")
    # ' Error: (sqlite3.IntegrityError) ...' is the database's wording of the same fact.
    return chosen.split(" Error: (", 1)[0]


def plot_run_comparison(runs, metrics: Sequence[str], label: str = "tags.mlflow.runName",
                        title: str | None = None):
    """Bar chart of ``metrics`` (columns of ``mlflow.search_runs``) for each run; returns the figure.

    ``runs`` is the DataFrame of ``mlflow.search_runs``; ``metrics`` are metric names
    with or without the ``metrics.`` prefix; ``label`` names each group of bars.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    columns = [m if m.startswith("metrics.") else f"metrics.{m}" for m in metrics]
    missing = [c for c in [*columns, label] if c not in runs.columns]
    if missing:
        raise CourseError(
            f"These columns are not in the runs table: {', '.join(missing)}. "
            f"Pick from: {', '.join(c for c in runs.columns if c.startswith('metrics.'))}."
        )
    if runs.empty:
        raise CourseError("The runs table is empty: there is nothing to compare yet.")
    labels = [str(value) for value in runs[label]]
    positions = np.arange(len(labels))
    width = 0.8 / len(columns)
    figure, axes = plt.subplots(figsize=(max(5, 1.6 * len(labels) * len(columns) ** 0.5), 3.5))
    for i, column in enumerate(columns):
        bars = axes.bar(positions + i * width, runs[column], width, label=column.removeprefix("metrics."))
        axes.bar_label(bars, fmt="%.3f", fontsize=8)
    axes.set_xticks(positions + width * (len(columns) - 1) / 2, labels)
    axes.legend(loc="lower right", fontsize=8)
    axes.set_title(title or "Runs compared")
    axes.margins(y=0.15)
    figure.tight_layout()
    return figure


# -- logged models and artifacts on disk -------------------------------------------------
def _draw(name: str, children, max_depth: int | None, sizes: bool) -> str:
    """A ``tree``-like drawing. ``children(entry)`` lists an entry's ``(name, is_dir, size,
    entry)`` tuples; ``None`` as the entry means the top."""
    lines = [f"{name}/"]

    def walk(entry, prefix: str, depth: int) -> None:
        entries = sorted(children(entry), key=lambda e: (not e[1], e[0]))
        for i, (child, is_dir, size, handle) in enumerate(entries):
            last = i == len(entries) - 1
            branch = "└── " if last else "├── "
            if is_dir:
                lines.append(f"{prefix}{branch}{child}/")
                if max_depth is None or depth < max_depth:
                    walk(handle, prefix + ("    " if last else "│   "), depth + 1)
            else:
                shown = f"  ({_human_size(size)})" if sizes and size is not None else ""
                lines.append(f"{prefix}{branch}{child}{shown}")

    walk(None, "", 1)
    return "\n".join(lines)


def folder_tree(path: str | os.PathLike, max_depth: int | None = None, sizes: bool = True) -> str:
    """A text drawing of the files under a local folder, folders first, like ``tree``."""
    root = Path(path)
    if not root.is_dir():
        raise CourseError(f"{root} is not a folder (does the run exist in this workspace?).")

    def children(entry):
        folder = entry or root
        return [(p.name, p.is_dir(), None if p.is_dir() else p.stat().st_size, p) for p in folder.iterdir()]

    return _draw(root.name, children, max_depth, sizes)


def print_tree(path: str | os.PathLike, max_depth: int | None = None, sizes: bool = True) -> None:
    """Print :func:`folder_tree`."""
    print(folder_tree(path, max_depth=max_depth, sizes=sizes))


def artifact_tree(artifact_uri: str, max_depth: int | None = None, sizes: bool = True) -> str:
    """A text drawing of the artifacts under ``artifact_uri``, asked of MLflow
    (``mlflow.artifacts.list_artifacts``), so it works the same for a local store and a
    tracking server that proxies its artifacts."""
    import mlflow

    base = artifact_uri.rstrip("/")

    def children(entry):
        uri = entry or base  # an entry is the URI of a folder below the top
        listed = mlflow.artifacts.list_artifacts(artifact_uri=uri)
        # Paths come back as "<last part of uri>/<name>": the name is their last part.
        return [(name, info.is_dir, info.file_size, f"{uri}/{name}")
                for info in listed for name in [info.path.rsplit("/", 1)[-1]]]

    return _draw(base.rsplit("/", 1)[-1] or base, children, max_depth, sizes)


def print_artifact_tree(artifact_uri: str, max_depth: int | None = None, sizes: bool = True) -> None:
    """Print :func:`artifact_tree`."""
    print(artifact_tree(artifact_uri, max_depth=max_depth, sizes=sizes))


def _human_size(size: int) -> str:
    """``1536`` -> ``"1.5 KB"``."""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"  # pragma: no cover


def show_file(path: str | os.PathLike, max_lines: int = 40, tail: int = 0) -> None:
    """Print a text file under a header line: its first ``max_lines`` lines and last ``tail``."""
    path = Path(path)
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    print(f"── {path.name} ({len(lines)} lines) ──")
    if len(lines) <= max_lines + tail:
        print("\n".join(lines))
        return
    print("\n".join(lines[:max_lines]))
    print(f"... ({len(lines) - max_lines - tail} lines left out) ...")
    if tail:
        print("\n".join(lines[-tail:]))
