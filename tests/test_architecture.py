"""The layout the README's "Architecture" section promises: no import circle among the
``utils`` modules (imports inside functions included), no module taking another course
module's ``_private`` names, and ``utils`` never importing ``tools`` or ``tests``."""

from __future__ import annotations

import ast
from pathlib import Path

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


def test_utils_modules_import_no_circle():
    modules = {_module_name(path): path for path in _course_files("utils")}
    graph = {name: {module for module, _ in _imports(path) if module in modules and module != name
                    and module != "utils"}
             for name, path in modules.items()}
    done, path = set(), []

    def visit(name):
        if name in path:
            raise AssertionError("import circle: " + " -> ".join(path[path.index(name):] + [name]))
        if name in done:
            return
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
