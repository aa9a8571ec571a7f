"""The notebooks' preamble: check that the kernel runs the course's environment.

The course's environment is written down once: ``requirements.in`` names each package the
course needs, with the versions it was tested with, and ``pyproject.toml`` the Pythons it
supports. This check reads those files; nothing here restates a version.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tomllib
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from utils.errors import CourseError

#: Another requirements file to check against (an environment built from it, such as the
#: newest-MLflow check of ``make test-latest``); by default the course's ``requirements.in``.
REQUIREMENTS_ENV = "COURSE_REQUIREMENTS"


def repo_root() -> Path:
    """The course's top folder (the one holding ``notebooks/`` and ``utils/``)."""
    return Path(__file__).resolve().parent.parent


def requirements_file() -> Path:
    """``$COURSE_REQUIREMENTS``, or the course's ``requirements.in``."""
    configured = os.environ.get(REQUIREMENTS_ENV, "").strip()
    return Path(configured).expanduser() if configured else repo_root() / "requirements.in"


def read_requirements(path: Path | None = None) -> dict[str, SpecifierSet]:
    """``{package: versions}`` of each requirement in a pip requirements file (in its order)."""
    path = path or requirements_file()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise CourseError(
            f"Cannot read the course's requirements {path} ({error.strerror or error}). Run the "
            "notebooks from the course folder, where `make setup` installed them."
        ) from None
    wanted: dict[str, SpecifierSet] = {}
    for line in lines:
        line = re.sub(r"\s+#.*$", "", line).strip()
        if not line or line.startswith(("#", "-")):
            continue
        try:
            requirement = Requirement(line)
        except InvalidRequirement as error:
            raise CourseError(f"{path}: {line!r} is not a requirement ({error}).") from None
        wanted[canonicalize_name(requirement.name)] = requirement.specifier
    return wanted


def supported_python() -> SpecifierSet:
    """The Pythons the course supports: ``requires-python`` of its ``pyproject.toml``."""
    with open(repo_root() / "pyproject.toml", "rb") as handle:
        return SpecifierSet(tomllib.load(handle)["project"]["requires-python"])


def installed_version(distribution: str) -> str | None:
    """The installed version of a distribution, or None when it is missing."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def check_environment(packages: dict[str, SpecifierSet] | None = None) -> dict[str, str]:
    """Check Python and the course's packages; return ``{name: version}`` of Python and of
    each package the requirements pin to a version or a range.

    ``packages`` defaults to :func:`read_requirements`. Raises :class:`CourseError` naming
    every package that is missing or outside the versions the course was tested with, and
    how to fix it.
    """
    wanted = read_requirements() if packages is None else packages
    python = ".".join(map(str, sys.version_info[:3]))
    found = {"python": python}
    problems = []
    if Version(python) not in (spec := supported_python()):
        problems.append(f"python {python} (the course needs {spec})")
    for name, spec in wanted.items():
        version = installed_version(name)
        if spec or version is None:
            found[name] = version or "missing"
        if version is None:
            problems.append(f"{name} is not installed" + (f" (needs {spec})" if spec else ""))
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
    def put(values: dict[str, str | None]) -> None:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    saved = {name: os.environ.get(name) for name in changes}
    try:
        put(changes)
        yield
    finally:
        put(saved)
