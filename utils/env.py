"""The notebooks' preamble: check that the kernel runs the course's environment."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from utils.errors import CourseError

PYTHON = SpecifierSet("==3.11.*")

# What the notebooks rely on; requirements.txt pins the exact versions.
PACKAGES: dict[str, SpecifierSet] = {
    "mlflow": SpecifierSet(">=3,<4"),
    "torch": SpecifierSet("==2.13.*"),
    "pytorch-lightning": SpecifierSet("==1.9.5"),
    "lightning-flash": SpecifierSet("==0.8.2"),
    "torchmetrics": SpecifierSet("==0.10.3"),
    "transformers": SpecifierSet(">=4"),
    "numpy": SpecifierSet("<2"),
    "pandas": SpecifierSet("<2.3"),
    "papermill": SpecifierSet(">=2"),
}


def installed_version(distribution: str) -> str | None:
    """The installed version of a distribution, or None when it is missing."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def check_environment(packages: dict[str, SpecifierSet] | None = None) -> dict[str, str]:
    """Check Python and the course's packages; return ``{name: version}``.

    Raises :class:`CourseError` naming every package that is missing or outside the
    range the course was tested with, and how to fix it.
    """
    wanted = PACKAGES if packages is None else packages
    python = ".".join(map(str, sys.version_info[:3]))
    found = {"python": python}
    problems = []
    if Version(python) not in PYTHON:
        problems.append(f"python {python} (the course needs {PYTHON})")
    for name, spec in wanted.items():
        version = installed_version(name)
        found[name] = version or "missing"
        if version is None:
            problems.append(f"{name} is not installed (needs {spec})")
        elif Version(version).release and Version(Version(version).base_version) not in spec:
            problems.append(f"{name} {version} (the course needs {spec})")
    if problems:
        raise CourseError(
            "This kernel does not run the course's environment:\n  - "
            + "\n  - ".join(problems)
            + "\nRun `make setup` in the course folder and choose the kernel of its .venv "
            "(`make lab` does both)."
        )
    put_environment_commands_on_path()
    return found


def print_environment(packages: dict[str, SpecifierSet] | None = None) -> dict[str, str]:
    """Check the environment (see :func:`check_environment`) and print a short table."""
    found = check_environment(packages)
    width = max(map(len, found))
    for name, version in found.items():
        print(f"{name:<{width}}  {version}")
    return found


def put_environment_commands_on_path() -> None:
    """Let ``!mlflow ...`` cells run this kernel's own ``mlflow``, not another install.

    A kernel started by papermill or nbval does not activate the virtual environment,
    so its ``bin`` folder may be missing from ``PATH``.
    """
    bin_dir = str(Path(sys.executable).parent)
    entries = os.environ.get("PATH", "").split(os.pathsep)
    if entries[:1] != [bin_dir]:
        os.environ["PATH"] = os.pathsep.join([bin_dir, *[e for e in entries if e != bin_dir]])


@contextlib.contextmanager
def temporary_environment(**changes: str | None) -> Iterator[None]:
    """Set (or, with None, remove) environment variables for the block, then restore them."""
    saved = {name: os.environ.get(name) for name in changes}
    try:
        for name, value in changes.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
