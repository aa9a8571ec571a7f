"""Save the ``#@save`` cells of notebook 03 as ``utils/ch03.py``: ``python -m tools.export_cells``.

As in d2l, a function the course reuses is born in a cell the reader has seen. A code cell
whose first line is ``#@save`` gives its imports, functions and classes, as they are, to
the module; the cell's other statements (the calls that use them) stay in the notebook.
Other runs of the course (notebooks 04 to 07, ``tools.batch``) import the module, so they
are made by the code notebook 03 shows. ``--check`` exits 1 when the module is not what the
notebook gives (tests/test_export_cells.py runs it), so that the two never drift apart.
"""

from __future__ import annotations

import argparse
import ast
import sys

import nbformat

from utils.workspace import repo_root

NOTEBOOK = repo_root() / "notebooks" / "03_first_autologged_run.ipynb"
MODULE = repo_root() / "utils" / "ch03.py"
MARK = "#@save"
KEPT = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)
HEADER = '''"""Notebook 03's run: the functions of its ``#@save`` cells, as they are there.

Written by ``python -m tools.export_cells`` from notebooks/03_first_autologged_run.ipynb;
edit the notebook, not this file (tests/test_export_cells.py checks that they agree).
"""
'''


def saved_code(notebook=NOTEBOOK) -> str:
    """The module's text: the header, then each saved definition in the notebook's order."""
    parts = []
    for cell in nbformat.read(notebook, as_version=4).cells:
        if cell.cell_type != "code" or not cell.source.startswith(MARK):
            continue
        lines = cell.source.splitlines()
        for node in ast.parse(cell.source).body:
            if isinstance(node, KEPT):
                first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
                parts.append("\n".join(lines[first - 1:node.end_lineno]))
    imports = [part for part in parts if part.startswith(("import ", "from "))]
    definitions = [part for part in parts if part not in imports]
    return HEADER + "\n" + "\n".join(imports) + "\n\n\n" + "\n\n\n".join(definitions) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if utils/ch03.py differs from what notebook 03 gives")
    args = parser.parse_args(argv)
    code = saved_code()
    if args.check:
        if MODULE.read_text() != code:
            print(f"{MODULE.name} is not what notebook 03's #@save cells give: "
                  "run `python -m tools.export_cells`.", file=sys.stderr)
            return 1
        print(f"{MODULE.name} matches notebook 03")
        return 0
    MODULE.write_text(code)
    print(f"wrote {MODULE.relative_to(repo_root())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
