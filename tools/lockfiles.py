"""Keep environment.yml and binder/ in step with the pinned requirements.txt.

``requirements.in`` is the one source of truth; ``make lock`` compiles it into
``requirements.txt`` and then runs ``python -m tools.lockfiles``, which writes the conda
file and Binder's ``requirements.txt`` and ``runtime.txt`` from the lock.
``tests/test_environment.py`` checks that they agree; ``make binder-check`` installs
Binder's file over repo2docker's base environment and checks the result.
"""

from __future__ import annotations

import re
from pathlib import Path

from packaging.utils import canonicalize_name

from utils.workspace import repo_root

PYTHON_VERSION = "3.11"
# Binder has no GPU: the CPU wheel index gives the same torch release without the
# several GB of CUDA libraries that PyPI's Linux wheel brings.
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")

_HEADER = "# Generated from requirements.txt by `make lock` (python -m tools.lockfiles). Do not edit.\n"

# Why Binder gets a pip requirements file rather than an environment.yml: the comment
# heads the file, where a reader of binder/ finds it.
_BINDER_WHY = """\
# Binder (repo2docker) installs this with the pip of its base environment (Python from
# runtime.txt; JupyterLab, notebook, JupyterHub and their dependencies from conda-forge):
#     ${KERNEL_PYTHON_PREFIX}/bin/pip install --no-cache-dir -r binder/requirements.txt
# then runs postBuild. That is the command the course's own setup and CI run on the same
# pins, so the image holds what CI tests. An environment.yml would go through
# `mamba env update` instead: a conda solve over the base, then pip on its pip section, a
# path CI never takes. The lock pins each base package it touches to a version that fits
# the rest (notebook, ipywidgets ...); `make binder-check` rebuilds this layer and checks it.
"""


def read_pins(path: Path) -> dict[str, str]:
    """``{normalised name: version}`` for every ``name==version`` line of a pip file."""
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _PIN.match(line.strip().lstrip("- ").strip())
        if match:
            pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def environment_yml(pins: dict[str, str], name: str, extra_pip_lines: tuple[str, ...] = ()) -> str:
    """A conda environment file: Python and pip from conda-forge, every pin through pip."""
    lines = [
        _HEADER.rstrip("\n"),
        f"name: {name}",
        "channels:",
        "  - conda-forge",
        "dependencies:",
        f"  - python={PYTHON_VERSION}",
        "  - pip",
        "  - pip:",
    ]
    lines += [f"    - {line}" for line in extra_pip_lines]
    lines += [f"    - {package}=={version}" for package, version in sorted(pins.items())]
    return "\n".join(lines) + "\n"


def binder_requirements(pins: dict[str, str]) -> str:
    """Binder's pip file: the why, the CPU wheel index (it applies to every line), the pins."""
    lines = [_HEADER.rstrip("\n"), _BINDER_WHY.rstrip("\n"), f"--extra-index-url {CPU_TORCH_INDEX}"]
    lines += [f"{package}=={version}" for package, version in sorted(pins.items())]
    return "\n".join(lines) + "\n"


def write_all(root: Path | None = None) -> list[Path]:
    """Write ``environment.yml``, ``binder/requirements.txt`` and ``binder/runtime.txt``
    from ``requirements.txt``."""
    root = root or repo_root()
    pins = read_pins(root / "requirements.txt")
    targets = {
        root / "environment.yml": environment_yml(pins, "mlflow-dl-course"),
        root / "binder" / "requirements.txt": binder_requirements(pins),
        # repo2docker reads one `python-X.Y` line here and nothing else (no comments).
        root / "binder" / "runtime.txt": f"python-{PYTHON_VERSION}\n",
    }
    for path, text in targets.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return list(targets)


if __name__ == "__main__":
    for written in write_all():
        print(f"wrote {written.relative_to(repo_root())}")
