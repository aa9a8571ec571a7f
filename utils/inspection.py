"""Plumbing for looking at what MLflow recorded (the ``mlflow`` command line and its errors,
artifact trees, a chart of runs), so that notebook cells stay about MLflow's own calls.
"""

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from utils.i18n import gettext as _


def run_mlflow_cli(*args: str, tracking_uri: str, cwd: str | os.PathLike | None = None,
                   timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``mlflow <args>`` as a terminal would, with ``MLFLOW_TRACKING_URI=tracking_uri``
    (the only way for most commands); output is captured and a failure does not raise."""
    from utils.tracking import mlflow_executable
    from utils.workspace import ARTIFACT_ROOT_ENV

    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    # use_workspace() sets this for the notebook's own process; a terminal would not have it.
    env.pop(ARTIFACT_ROOT_ENV, None)
    return subprocess.run([mlflow_executable(), *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, check=False)


def cli_error(stderr: str) -> str:
    """The line of a failed ``mlflow`` command's traceback that says what went wrong."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    exceptions = [line for line in lines if line.startswith(("mlflow.exceptions.", "Error:"))]
    chosen = exceptions[-1] if exceptions else (lines[-1] if lines else "")
    # ' Error: (sqlite3.IntegrityError) ...' is the database's wording of the same fact.
    return chosen.split(" Error: (", 1)[0]


def plot_run_comparison(runs, metrics: Sequence[str], label: str = "tags.mlflow.runName",
                        title: str | None = None):
    """Bar chart of the columns ``metrics`` (``metrics.<name>``) for each run of ``runs``, the
    table of ``mlflow.search_runs``; returns the figure."""
    table = runs.set_index(runs[label].astype(str))[list(metrics)]
    axes = table.rename(columns=lambda c: c.removeprefix("metrics.")).plot.bar(
        rot=0, xlabel="", title=title or "Runs compared",
        figsize=(max(5, 1.6 * len(table) * len(metrics) ** 0.5), 3.5))
    for bars in axes.containers:
        axes.bar_label(bars, fmt="%.3f", fontsize=8)
    axes.legend(loc="lower right", fontsize=8)
    axes.margins(y=0.15)
    axes.figure.tight_layout()
    return axes.figure


def artifact_tree(artifact_uri: str | os.PathLike, max_depth: int | None = None,
                  sizes: bool = True) -> str:
    """A ``tree``-like drawing, folders first, of the artifacts under ``artifact_uri`` (or a
    local folder), as MLflow lists them: the same for a local store and a tracking server."""
    import mlflow

    base = str(artifact_uri).rstrip("/")
    lines = [f"{base.rsplit('/', 1)[-1] or base}/"]

    def walk(uri: str, prefix: str, depth: int) -> None:
        listed = mlflow.artifacts.list_artifacts(artifact_uri=uri)
        listed.sort(key=lambda info: (not info.is_dir, info.path))
        for i, info in enumerate(listed):
            name = info.path.rsplit("/", 1)[-1]
            last = i == len(listed) - 1
            size = info.file_size if sizes and not info.is_dir else None
            shown = "/" if info.is_dir else "" if size is None else f"  ({human_size(size)})"
            lines.append(f"{prefix}{'└── ' if last else '├── '}{name}{shown}")
            if info.is_dir and (max_depth is None or depth < max_depth):
                walk(f"{uri}/{name}", prefix + ("    " if last else "│   "), depth + 1)

    walk(base, "", 1)
    return "\n".join(lines)


def print_artifact_tree(artifact_uri: str | os.PathLike, max_depth: int | None = None,
                        sizes: bool = True) -> None:
    print(artifact_tree(artifact_uri, max_depth=max_depth, sizes=sizes))


def human_size(size: int) -> str:
    """``1536`` -> ``"1.5 KB"``."""
    power = min(max(size.bit_length() - 1, 0) // 10, 3)
    return f"{size / 1024 ** power:.1f} {'BKMG'[power]}B" if power else f"{size} B"


def show_file(path: str | os.PathLike, max_lines: int = 40) -> None:
    """Print a text file's first ``max_lines`` lines under a header line."""
    path = Path(path)
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    print(_("── {name} ({count} lines) ──").format(name=path.name, count=len(lines)))
    print("\n".join(lines[:max_lines]))
    if len(lines) > max_lines:
        print(_("... ({count} lines left out) ...").format(count=len(lines) - max_lines))


def show_definition(path: str | os.PathLike, name: str) -> None:
    """Print the function or class ``name`` of the Python file ``path`` as it is written there,
    with its line numbers, so that a notebook shows a project's code without a copy of it."""
    import ast

    source = Path(path).read_text(encoding="utf-8")
    found = [node for node in ast.parse(source).body
             if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name]
    if not found:
        from utils.errors import CourseError

        raise CourseError(_("{path} defines no function or class {name!r}: check the name, or "
                            "copy the project again.").format(path=path, name=name))
    node = found[0]
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    lines = source.splitlines()[first - 1:node.end_lineno]
    print(f"── {Path(path).name}, lines {first}-{node.end_lineno} ──")
    print("\n".join(f"{number:>4}  {line}" for number, line in enumerate(lines, first)))
