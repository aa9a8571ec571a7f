"""Keep environment.yml and binder/ in step with the pinned requirements.txt.

``requirements.in`` is the one source of truth; ``make lock`` compiles it into
``requirements.txt`` and then runs ``python -m tools.lockfiles``, which writes the conda
and Binder files from the lock. ``tests/test_environment.py`` checks that they agree.
"""

from __future__ import annotations

import re
from pathlib import Path

from utils.workspace import repo_root

PYTHON_VERSION = "3.11"
# Binder has no GPU: the CPU wheel index gives the same torch release without the
# several GB of CUDA libraries that PyPI's Linux wheel brings.
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")

_HEADER = "# Generated from requirements.txt by `make lock` (python -m tools.lockfiles). Do not edit.\n"


def read_pins(path: Path) -> dict[str, str]:
    """``{normalised name: version}`` for every ``name==version`` line of a pip file."""
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _PIN.match(line.strip().lstrip("- ").strip())
        if match:
            pins[normalise(match.group(1))] = match.group(2)
    return pins


def normalise(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


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


def write_all(root: Path | None = None) -> list[Path]:
    """Write ``environment.yml`` and ``binder/environment.yml`` from ``requirements.txt``."""
    root = root or repo_root()
    pins = read_pins(root / "requirements.txt")
    targets = {
        root / "environment.yml": environment_yml(pins, "mlflow-dl-course"),
        root / "binder" / "environment.yml": environment_yml(
            pins, "mlflow-dl-course", (f"--extra-index-url {CPU_TORCH_INDEX}",)
        ),
    }
    for path, text in targets.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return list(targets)


if __name__ == "__main__":
    for written in write_all():
        print(f"wrote {written.relative_to(repo_root())}")
