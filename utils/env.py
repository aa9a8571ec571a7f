"""The notebooks' preamble: check that the kernel runs the course's environment, as
``requirements.in`` and ``pyproject.toml`` write it down (nothing here restates a version).
"""

import contextlib
import os
import re
import sys
import tomllib
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from utils.errors import CourseError
from utils.i18n import gettext as _

#: Another requirements file to check against (such as that of ``make test-latest``).
REQUIREMENTS_ENV = "COURSE_REQUIREMENTS"


def repo_root() -> Path:
    """The course's top folder (the one holding ``notebooks/`` and ``utils/``)."""
    return Path(__file__).resolve().parent.parent


def read_requirements(path: Path | None = None) -> dict[str, SpecifierSet]:
    """``{package: versions}`` of a pip requirements file, by default ``$COURSE_REQUIREMENTS``
    or the course's ``requirements.in``."""
    configured = os.environ.get(REQUIREMENTS_ENV, "").strip()
    if path is None:
        path = Path(configured).expanduser() if configured else repo_root() / "requirements.in"
    wanted: dict[str, SpecifierSet] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        if line and not line.startswith("-"):  # options such as --extra-index-url
            requirement = Requirement(line)
            wanted[canonicalize_name(requirement.name)] = requirement.specifier
    return wanted


def supported_python() -> SpecifierSet:
    """``requires-python`` of the course's ``pyproject.toml``."""
    with open(repo_root() / "pyproject.toml", "rb") as handle:
        return SpecifierSet(tomllib.load(handle)["project"]["requires-python"])


def check_environment(packages: dict[str, SpecifierSet] | None = None) -> dict[str, str]:
    """Check Python and ``packages`` (default: :func:`read_requirements`); return the versions
    of Python and of each pinned package, or raise a :class:`CourseError` naming each misfit."""
    wanted = read_requirements() if packages is None else packages
    found = {"python": ".".join(map(str, sys.version_info[:3]))}
    problems = []
    if Version(found["python"]) not in (spec := supported_python()):
        problems.append(_("python {version} (the course needs {spec})").format(
            version=found["python"], spec=spec))
    for name, spec in wanted.items():
        version = next((dist.version for dist in metadata.distributions(name=name)), None)
        if spec or version is None:
            found[name] = version or "missing"
        if version is None:
            problems.append((_("{name} is not installed (needs {spec})") if spec
                             else _("{name} is not installed")).format(name=name, spec=spec))
        elif Version(version).base_version not in spec:  # 2.13.0+cpu is 2.13.0
            problems.append(_("{name} {version} (the course needs {spec})").format(
                name=name, version=version, spec=spec))
    if problems:
        raise CourseError(_(
            "This kernel does not run the course's environment:\n  - {problems}\nRun `make setup` "
            "in the course folder and choose the kernel of its .venv (`make lab` does both)."
        ).format(problems="\n  - ".join(problems)))
    # `!mlflow` cells run this kernel's mlflow, even if papermill or nbval started it.
    bin_dir = str(Path(sys.executable).parent)
    entries = [e for e in os.environ.get("PATH", "").split(os.pathsep) if e != bin_dir]
    os.environ["PATH"] = os.pathsep.join([bin_dir, *entries])
    return found


def print_environment(packages: dict[str, SpecifierSet] | None = None) -> dict[str, str]:
    """:func:`check_environment`, printed as a short table."""
    found = check_environment(packages)
    width = max(map(len, found))
    for name, version in found.items():
        print(f"{name:<{width}}  {version}")
    return found


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
