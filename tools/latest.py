"""Run the course against the newest MLflow 3 release: ``make test-latest``.

MLflow's API moves (``list_experiments`` went, stages are going); a course pinned to one
release finds out only when learners do. This builds a second environment in
``build/latest/``: the course's pinned requirements, except that MLflow is the newest 3.x on
the package index, while every other pin that lightning-flash needs (torch, Lightning,
torchmetrics, numpy, ...) stays as it is. It then runs every notebook with
``tools/params/ci.yml``, each in a new workspace, and prints per notebook "ok" or the cell
that failed and its error (the batch runner's summary).

    .venv/bin/python -m tools.latest          # or: make test-latest

The environment check of the notebooks is pointed at ``build/latest/requirements.in``, the
course's requirements with MLflow's pin opened, so that it accepts the newer MLflow.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import venv
from pathlib import Path

from packaging.utils import canonicalize_name

from utils.env import REQUIREMENTS_ENV
from utils.workspace import repo_root

MLFLOW_PACKAGES = {"mlflow", "mlflow-skinny", "mlflow-tracing"}  # released together
NEWEST = "mlflow[auth]>=3,<4"


def _name(line: str) -> str:
    return canonicalize_name(re.split(r"[\[=<>!~; ]", line.strip(), maxsplit=1)[0])


def write_requirements(root: Path, folder: Path) -> tuple[Path, Path, Path]:
    """The lock without MLflow, the constraints that keep flash's pins, and requirements.in
    with MLflow's pin opened; return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    lock = [line for line in (root / "requirements.txt").read_text().splitlines()
            if not (line.strip() and not line.startswith((" ", "#", "-")) and _name(line) in MLFLOW_PACKAGES)]
    course_in = (root / "requirements.in").read_text().splitlines()
    pinned = [line.split("#")[0].strip() for line in course_in
              if re.search(r"[=<>]", line.split("#")[0]) and not line.startswith("#")]
    constraints = [line for line in pinned if _name(line) not in MLFLOW_PACKAGES]
    opened = [NEWEST if _name(line) in MLFLOW_PACKAGES else line for line in course_in]
    paths = (folder / "requirements.txt", folder / "constraints.txt", folder / "requirements.in")
    for path, lines in zip(paths, (lock, constraints, opened)):
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return paths


def run(command: list[str], **kwargs) -> None:
    print("$", " ".join(map(str, command)), flush=True)
    subprocess.run([str(c) for c in command], check=True, **kwargs)


def main() -> int:
    root = repo_root()
    folder = root / "build" / "latest"
    requirements, constraints, opened = write_requirements(root, folder)
    environment = folder / ".venv"
    python = environment / "bin" / "python"
    if not python.exists():
        venv.create(environment, with_pip=True)
    pip = [python, "-m", "pip", "install", "--quiet"]
    run([*pip, "-r", requirements])
    run([*pip, "--upgrade", "-c", constraints, NEWEST])
    run([*pip, "--no-deps", "--no-build-isolation", "-e", root])
    run([python, "-m", "ipykernel", "install", "--sys-prefix", "--name", "python3",
         "--display-name", "Python 3 (MLflow course, newest MLflow)"], stdout=subprocess.DEVNULL)
    version = subprocess.run([python, "-c", "import mlflow; print(mlflow.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()
    _explain_if_not_newest(python, constraints, version)
    print(f"\nthe course's notebooks with MLflow {version} (the course pins "
          f"{_pinned_mlflow(root)}):", flush=True)
    env = {**os.environ, REQUIREMENTS_ENV: str(opened)}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run([str(python), "-m", "tools.batch", "run", "--params", "tools/params/ci.yml",
                           "--workspace", "fresh", "--output", str(folder / "executed"), "--no-progress"],
                          cwd=root, env=env)
    return done.returncode


def _explain_if_not_newest(python: Path, constraints: Path, installed: str) -> None:
    """Say so when the index lists a newer MLflow than pip could install, and why."""
    listed = subprocess.run([python, "-m", "pip", "index", "versions", "mlflow"],
                            capture_output=True, text=True).stdout
    match = re.search(r"^mlflow \(([^)]+)\)", listed, re.M)
    if not match or match.group(1) == installed:
        return
    newest = match.group(1)
    tried = subprocess.run([python, "-m", "pip", "install", "--dry-run", "--quiet", "-c", constraints,
                            f"mlflow[auth]=={newest}"], capture_output=True, text=True)
    errors = [line for line in tried.stderr.splitlines() if line.startswith("ERROR")]
    reason = errors[-1].removeprefix("ERROR: ") if errors else "pip gave no reason"
    print(f"\nnote: the index lists MLflow {newest}, but pip cannot install it with the course's "
          f"pins: {reason}", flush=True)


def _pinned_mlflow(root: Path) -> str:
    match = re.search(r"^mlflow==(\S+)", (root / "requirements.txt").read_text(), re.M)
    return match.group(1) if match else "?"


if __name__ == "__main__":
    sys.exit(main())
