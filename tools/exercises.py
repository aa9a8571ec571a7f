"""Fill in a notebook's exercises, or list them: ``python -m tools.exercises``.

``solve NOTEBOOK OUT`` writes a copy of NOTEBOOK in which every code cell tagged
``exercise`` holds its exercise's ``solution`` (with ``--wrong``, its typical ``mistake``),
every output cleared. Executed, the solved copy makes every check print ``Correct``, the
wrong one ``Incorrect``; the tests do exactly that. ``list [NOTEBOOK ...]`` prints each
notebook's exercises, one line a notebook, for the README's table.

A notebook names its exercises in the check cell after each exercise cell:
``ex01.q1.check()`` is the exercise ``q1`` of the module the notebook imported as ``ex01``
(``from utils.exercises import ex01``; ``utils.exercises.ex01`` if it imports none).
NOTEBOOK is a course notebook's number (``03``), file name or stem, or a path.

Exit codes: 0 when done, 2 for bad input (one sentence saying what to fix; nothing written).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path

from tools.batch import EXIT_OK, EXIT_USAGE, course_notebooks, select_notebooks
from utils.errors import CourseError
from utils.exercises import Exercise
from utils.workspace import repo_root

EXERCISE_TAG = "exercise"
DEFAULT_PACKAGE = "utils.exercises"


@dataclass
class ExerciseCell:
    """An exercise cell of a notebook, the check cell after it, and the exercise it checks."""

    index: int  # of the exercise cell in notebook.cells
    check_index: int
    call: str  # how the notebook names it: "ex01.q1"
    module: str  # where it is defined: "utils.exercises.ex01"
    exercise: Exercise


# -- reading cells -----------------------------------------------------------------------
def _label(cells, index: int) -> str:
    lines = [line.strip() for line in cells[index].source.splitlines() if line.strip()]
    first = lines[0] if lines else "empty"
    first = first if len(first) <= 60 else first[:59] + "…"
    return f"cell {index + 1} ({first!r})"


def parse_cell(source: str, what: str) -> ast.Module:
    """``source`` as Python, IPython's ``%magic`` and ``!shell`` lines turned into calls."""
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        return ast.parse(TransformerManager().transform_cell(source))
    except SyntaxError as error:
        raise CourseError(f"{what} is not valid Python (line {error.lineno}: {error.msg}); "
                          "fix it first.") from None


def assigned_names(tree: ast.Module) -> set[str]:
    """Every variable the code assigns (``=``, ``for``, ``with ... as``, ``:=``, imports too)."""
    names = {node.id for node in ast.walk(tree)
             if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return names


def ellipsis_names(tree: ast.Module) -> set[str]:
    """The variables the code's top level sets to ``...`` (``name = ...``), as an exercise
    cell must."""
    return {target.id for node in tree.body if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant) and node.value.value is Ellipsis
            for target in node.targets if isinstance(target, ast.Name)}


def _imported_modules(cells) -> dict[str, str]:
    """Name in the notebook -> the module it stands for, from every import of its code cells."""
    found: dict[str, str] = {}
    for index, cell in enumerate(cells):
        if cell.cell_type != "code":
            continue
        try:
            tree = parse_cell(cell.source, _label(cells, index))
        except CourseError:
            continue  # a cell that is no Python imports nothing
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    found[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        found[alias.asname] = alias.name
                    else:
                        head = alias.name.split(".")[0]
                        found[head] = head
    return found


def _dotted(node: ast.expr) -> list[str] | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id, *reversed(parts)]


def check_calls(tree: ast.Module) -> list[list[str]]:
    """The ``X.qK.check()`` calls of a cell, as dotted names without ``check``."""
    calls = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "check"):
            dotted = _dotted(node.func.value)
            if dotted and len(dotted) >= 2:
                calls.append(dotted)
    return calls


def _load_exercise(dotted: list[str], imports: dict[str, str], where: str) -> tuple[str, Exercise]:
    call = ".".join(dotted)
    head, middle, attribute = dotted[0], dotted[1:-1], dotted[-1]
    module_name = ".".join([imports.get(head, f"{DEFAULT_PACKAGE}.{head}"), *middle])
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and module_name.startswith(error.name):
            raise CourseError(f"{where} calls `{call}.check()`, but there is no module "
                              f"{module_name}: fix the name, or write that module.") from None
        raise CourseError(f"Importing {module_name} (for `{call}.check()` in {where}) failed: "
                          f"{error}.") from None
    except Exception as error:  # the module's own code failed
        raise CourseError(f"Importing {module_name} (for `{call}.check()` in {where}) failed: "
                          f"{type(error).__name__}: {error}.") from None
    exercise = getattr(module, attribute, None)
    if not isinstance(exercise, Exercise):
        defined = ", ".join(name for name, value in vars(module).items()
                            if isinstance(value, Exercise)) or "none"
        raise CourseError(f"{where} calls `{call}.check()`, but {module_name} has no exercise "
                          f"{attribute!r} (its exercises: {defined}).")
    return module_name, exercise


def exercise_cells(notebook, name: str) -> list[ExerciseCell]:
    """The exercise cells of ``notebook`` (an nbformat notebook called ``name``), each with
    its check cell and exercise; a :class:`CourseError` says what is wrong with them."""
    cells = notebook.cells
    imports = _imported_modules(cells)
    found: list[ExerciseCell] = []
    for index, cell in enumerate(cells):
        if EXERCISE_TAG not in cell.get("metadata", {}).get("tags", []):
            continue
        where = f"{name}: the exercise {_label(cells, index)}"
        if cell.cell_type != "code":
            raise CourseError(f"{name}: {_label(cells, index)} is tagged `{EXERCISE_TAG}` but is "
                              "not a code cell; tag the code cell the learner fills in.")
        following = next((i for i in range(index + 1, len(cells)) if cells[i].cell_type == "code"), None)
        calls = []
        if following is not None:
            calls = check_calls(parse_cell(cells[following].source, f"{name}, {_label(cells, following)}"))
        if not calls or EXERCISE_TAG in cells[following].get("metadata", {}).get("tags", []):
            raise CourseError(f"{where} has no check after it: the next code cell must call "
                              "its exercise's check, like `ex01.q1.check()`.")
        if len(calls) > 1:
            raise CourseError(f"{name}, {_label(cells, following)} checks {len(calls)} exercises; "
                              "a check cell checks the one exercise cell before it.")
        check_where = f"{name}, {_label(cells, following)}"
        module, exercise = _load_exercise(calls[0], imports, check_where)
        previous = next((e for e in found if e.exercise is exercise), None)
        if previous is not None:
            raise CourseError(f"{name} checks exercise {exercise.key} twice (after "
                              f"{_label(cells, previous.index)} and {_label(cells, index)}).")
        tree = parse_cell(cell.source, where)
        missing = [answer for answer in exercise.answers if answer not in assigned_names(tree)]
        if missing:
            names = ", ".join(f"`{answer}`" for answer in missing)
            raise CourseError(f"{name}: exercise {exercise.key} is answered by {names}, but "
                              f"the exercise {_label(cells, index)} does not assign it; set "
                              "each answer to `...` there.")
        parse_cell(exercise.mistake, f"The mistake of exercise {exercise.key}")
        solution = parse_cell(exercise.solution_code, f"The solution of exercise {exercise.key}")
        unset = [answer for answer in exercise.answers if answer not in assigned_names(solution)]
        if unset:
            raise CourseError(f"The solution of exercise {exercise.key} does not assign "
                              f"{', '.join(unset)}: it replaces the exercise cell, so it must.")
        found.append(ExerciseCell(index, following, ".".join(calls[0]), module, exercise))
    return found


# -- the commands ------------------------------------------------------------------------
def read_notebook(path: Path):
    import nbformat

    try:
        return nbformat.read(path, as_version=4)
    except Exception as error:  # nbformat raises several kinds for a broken file
        raise CourseError(f"Cannot read the notebook {path}: {error}") from None


def filled_in(notebook, name: str, wrong: bool = False):
    """A copy of ``notebook`` with its exercise cells replaced by their solutions (or
    mistakes), without outputs or execution counts; and the exercise cells."""
    import copy

    filled = copy.deepcopy(notebook)
    found = exercise_cells(notebook, name)
    for cell in found:
        exercise = cell.exercise
        filled.cells[cell.index].source = exercise.mistake if wrong else exercise.solution_code
    for cell in filled.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return filled, found


def _one_notebook(key: str) -> Path:
    return select_notebooks([key], repo_root() / "notebooks")[0]


def solve(notebook_key: str, out: Path, wrong: bool = False) -> tuple[Path, Path, list[ExerciseCell]]:
    """Write the filled-in copy of the notebook ``notebook_key`` names to ``out``.

    Returns the notebook, the copy's path, and the exercise cells filled in.
    """
    import nbformat

    source = _one_notebook(notebook_key)
    out = Path(out).expanduser()
    if out.is_dir():
        out = out / source.name
    if out.resolve() == source.resolve():
        raise CourseError(f"{out} is the notebook itself: the copy would replace it. Choose "
                          "another OUT.")
    filled, found = filled_in(read_notebook(source), source.name, wrong)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(filled, out)
    except OSError as error:
        raise CourseError(f"Cannot write {out}: {error.strerror or error}.") from None
    return source, out, found


def listing(paths: list[Path]) -> list[str]:
    """One line a notebook: its file name and its exercises (key and title)."""
    lines = []
    for path in paths:
        found = exercise_cells(read_notebook(path), path.name)
        items = "; ".join(f"{f.exercise.key} {f.exercise.title}" for f in found)
        lines.append(f"{path.name}: exercises {items}" if found else f"{path.name}: no exercises")
    return lines


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.exercises", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    solve_parser = commands.add_parser("solve", help="write a copy with the exercises filled in")
    solve_parser.add_argument("notebook", help="a number (03), a file name, or a path")
    solve_parser.add_argument("out", type=Path, help="the copy to write (or a folder for it)")
    solve_parser.add_argument("--wrong", action="store_true",
                              help="fill in each exercise's typical mistake instead")
    list_parser = commands.add_parser("list", help="print each notebook's exercises")
    list_parser.add_argument("notebooks", nargs="*", help="numbers, names or paths (default: all)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m tools.exercises``; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "solve":
            source, out, found = solve(args.notebook, args.out, args.wrong)
            kind = "typical mistakes" if args.wrong else "solutions"
            keys = ", ".join(cell.exercise.key for cell in found) or "none"
            print(f"wrote {out}: {source.name} with the {kind} of its exercises ({keys})")
        else:
            folder = repo_root() / "notebooks"
            paths = select_notebooks(args.notebooks, folder) if args.notebooks else course_notebooks(folder)
            print("\n".join(listing(paths)))
    except CourseError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
