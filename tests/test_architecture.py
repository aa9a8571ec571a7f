"""The layout the README's "Architecture" section promises: each ``utils`` module imports only
those listed before it there (imports inside functions included), and none forms an import
circle; no module takes another course module's ``_private`` names; ``utils`` never imports
``tools`` or ``tests``, nor does a notebook."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from utils.workspace import repo_root

ROOT = repo_root()
COURSE_PACKAGES = ("utils", "tools", "tests")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """``(module, names)`` of every import of a file, at any depth; ``from utils import x``
    counts as an import of ``utils.x`` when that is a module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [alias.name for alias in node.names]
            found.append((node.module, names))
            found += [(f"{node.module}.{name}", []) for name in names
                      if (ROOT / node.module.replace(".", "/") / f"{name}.py").exists()]
    return found


def _course_files(*packages: str) -> list[Path]:
    return sorted(path for package in packages for path in (ROOT / package).rglob("*.py"))


def readme_order(readme: str) -> list[str]:
    """The ``utils`` modules in the order README.md's Architecture section lists them
    (``exercises/`` for the package of that name)."""
    section = readme.split("\n## Architecture", 1)[1].split("\n## ", 1)[0]
    utils_entry = section.split("\n- `utils/`", 1)[1].split("\n- `", 1)[0]
    return re.findall(r"^  - `([\w/]+)`", utils_entry, re.M)


def _entry(module: str) -> str | None:
    """The README's entry of a ``utils`` module: ``training`` for utils.training,
    ``exercises/`` for anything in utils/exercises; None for the package itself."""
    parts = module.split(".")
    if parts[0] != "utils" or len(parts) == 1:
        return None
    return "exercises/" if parts[1] == "exercises" else parts[1]


def import_order_problems(order: list[str]) -> list[str]:
    """Each import of a ``utils`` module by one listed no earlier than it (a module of the
    exercises package may import that package)."""
    rank = {name: index for index, name in enumerate(order)}
    problems = []
    for path in _course_files("utils"):
        importer = _entry(_module_name(path))
        for module, _names in _imports(path):
            imported = _entry(module)
            if importer in rank and imported in rank and imported != importer and rank[imported] > rank[importer]:
                problems.append(f"{path.relative_to(ROOT)} imports {module}, listed after {importer}")
    return problems


ORDER = readme_order((ROOT / "README.md").read_text(encoding="utf-8"))


def test_utils_modules_import_only_those_the_readme_lists_before_them():
    assert ORDER[0] == "i18n" and "exercises/" in ORDER and len(ORDER) == len(set(ORDER)), ORDER
    assert import_order_problems(ORDER) == []
    # The same order reversed: every module would import one listed after it.
    assert "utils/runs.py imports utils.ch03, listed after runs" in import_order_problems(ORDER[::-1])


def test_every_utils_module_is_listed_in_the_readme():
    modules = {_entry(_module_name(path)) for path in _course_files("utils")} - {None}
    assert sorted(modules - set(ORDER)) == [], "README.md's Architecture section does not list them"


def test_utils_modules_import_no_circle():
    # Implied by the order for the modules the README lists; this covers any other, and the
    # modules of the exercises package among themselves.
    modules = {_module_name(path): path for path in _course_files("utils")}
    graph = {name: {module for module, _ in _imports(path) if module in modules and module not in (name, "utils")}
             for name, path in modules.items()}
    done, path = set(), []

    def visit(name):
        if name in path:
            raise AssertionError("import circle: " + " -> ".join(path[path.index(name):] + [name]))
        if name not in done:
            path.append(name)
            for imported in sorted(graph[name]):
                visit(imported)
            path.pop()
            done.add(name)

    for name in sorted(graph):
        visit(name)


def test_no_module_takes_another_course_modules_private_names():
    offenders = [f"{path.relative_to(ROOT)}: from {module} import {name}"
                 for path in _course_files(*COURSE_PACKAGES) + [ROOT / "conftest.py"]
                 for module, names in _imports(path) if module.split(".")[0] in COURSE_PACKAGES
                 for name in names if name.startswith("_") and not name.startswith("__")]
    assert offenders == []


def test_utils_never_imports_tools_or_tests():
    offenders = [f"{path.relative_to(ROOT)}: {module}" for path in _course_files("utils")
                 for module, _ in _imports(path) if module.split(".")[0] in ("tools", "tests")]
    assert offenders == []


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.name)
def test_a_notebook_never_imports_tools_or_tests(path):
    code = "\n".join("".join(cell["source"]) for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]
                     if cell["cell_type"] == "code")
    assert re.findall(r"^\s*(?:from|import)\s+(?:tools|tests)\b.*", code, re.M) == []  # utils: test_hygiene.py
