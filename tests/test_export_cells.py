"""Notebook 03 shows the run, and the course's other runs are made by that same code.

utils/ch03.py is notebook 03's ``#@save`` cells, to the letter (tools/export_cells.py);
no other function of utils/ or tools/ trains or logs parameters itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat

from tools import export_cells
from utils.workspace import repo_root

# The calls that train a model or log its parameters; only notebook 03's functions make them
# (the benchmarks apart, which time the training without MLflow too).
RUN_CALLS = {"log_params", "finetune", "fit"}


def test_ch03_is_what_notebook_03_saves():
    assert export_cells.MODULE.read_text() == export_cells.saved_code(), \
        "utils/ch03.py differs from notebook 03's #@save cells: run `python -m tools.export_cells`"
    assert export_cells.main(["--check"]) == 0


def test_a_changed_cell_is_caught(tmp_path):
    notebook = nbformat.read(export_cells.NOTEBOOK, as_version=4)
    cell = next(c for c in notebook.cells if "def record_run" in c.source)
    cell.source = cell.source.replace('name="model"', 'name="classifier"')
    copy = tmp_path / "03.ipynb"
    nbformat.write(notebook, copy)
    assert export_cells.saved_code(copy) != export_cells.MODULE.read_text()


def test_notebook_03_shows_the_run_in_its_cells():
    notebook = nbformat.read(export_cells.NOTEBOOK, as_version=4)
    code = "\n".join(c.source for c in notebook.cells if c.cell_type == "code")
    for call in ("TextClassificationData", "TextClassifier(", "Trainer(", "mlflow.pytorch.autolog(",
                 "mlflow.start_run", "mlflow.log_params", "log_model("):
        assert call in code, call
    run_cell = next(c.source for c in notebook.cells if "def record_run" in c.source)
    assert "signature=" in run_cell and "input_example=" in run_cell


def _calls(tree: ast.AST) -> set[str]:
    return {node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            for node in ast.walk(tree) if isinstance(node, ast.Call)}


def test_no_helper_trains_or_logs_params_but_notebook_03s_functions():
    saved = {node.name for node in ast.parse(export_cells.MODULE.read_text()).body
             if isinstance(node, ast.FunctionDef)}
    offenders = []
    for path in sorted([*(repo_root() / "utils").rglob("*.py"), *(repo_root() / "tools").rglob("*.py")]):
        if "benchmarks" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if path == export_cells.MODULE and node.name in saved:
                continue
            called = _calls(node) & RUN_CALLS
            if called:
                offenders.append(f"{Path(path).relative_to(repo_root())}:{node.name} calls {', '.join(sorted(called))}")
    assert offenders == []
