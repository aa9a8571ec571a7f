"""Every course notebook has checked exercises, and their solutions and mistakes do what
they promise (issue 17).

Fast tier: each notebook has at least two cells tagged ``exercise`` (at least 14 in all),
each followed by the check of an existing exercise whose answer variables the cell sets to
``...``; ``python -m tools.exercises solve`` (and ``--wrong``) changes those cells and no
other. Full tier: the solved copy of each notebook, executed in a new workspace, prints
``Correct`` at every check; the copy with the typical mistakes prints ``Incorrect`` with a
message of the exercise's own (never the generic one) at every check. Notebooks 01, 02 and
06 run here; the copies of 03, 04 and 05 run on a team's tracking server instead
(tests/test_team_server.py: solved on an open server, wrong on one with logins), and those
of 07 in tests/test_notebook07.py (the wrong one on Spark), which check the same verdicts,
so that those trainings run once.
"""

from __future__ import annotations

import nbformat
import pytest

from tests.notebook_runner import course_env, execute, exercise_verdict_problems
from tools import exercises as tool
from tools.batch import course_notebooks, load_params_file
from utils.errors import CourseError
from utils.exercises import CORRECT, INCORRECT
from utils.workspace import repo_root

ROOT = repo_root()
NOTEBOOKS = course_notebooks(ROOT / "notebooks")
PER_NOTEBOOK, IN_ALL = 2, 14
CI_PARAMS = ROOT / "tools" / "params" / "ci.yml"


def _exercises(path):
    """The notebook and its exercise cells; a test failure that says what is wrong."""
    notebook = nbformat.read(path, as_version=4)
    try:
        return notebook, tool.exercise_cells(notebook, path.name)
    except CourseError as error:
        pytest.fail(f"{path.name}: its exercises cannot be read: {error}")


def _tagged(path) -> int:
    notebook = nbformat.read(path, as_version=4)
    return sum(tool.EXERCISE_TAG in cell.metadata.get("tags", []) for cell in notebook.cells)


def test_there_are_course_notebooks():
    assert len(NOTEBOOKS) >= 6, [p.name for p in NOTEBOOKS]


def test_the_course_has_enough_exercises():
    counts = {path.name: _tagged(path) for path in NOTEBOOKS}
    assert sum(counts.values()) >= IN_ALL, (
        f"the course has {sum(counts.values())} cells tagged `exercise`, it needs at least "
        f"{IN_ALL}: " + ", ".join(f"{name} {count}" for name, count in counts.items()))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_each_exercise_cell_is_untouched_and_checked(path):
    notebook, found = _exercises(path)
    assert len(found) >= PER_NOTEBOOK, (
        f"{path.name} has {len(found)} cells tagged `exercise`; it needs at least "
        f"{PER_NOTEBOOK}, each followed by a check cell like `ex{path.name[:2]}.q1.check()`.")
    number = path.name[:2]
    for cell in found:
        exercise, where = cell.exercise, f"{path.name}, cell {cell.index + 1}"
        assert exercise.key.startswith(f"{number}."), (
            f"{where} checks exercise {exercise.key}, which is not one of notebook {number}'s.")
        assert cell.module == f"utils.exercises.ex{number}", (
            f"{where}: its exercise comes from {cell.module}, not utils.exercises.ex{number}.")
        tree = tool.parse_cell(notebook.cells[cell.index].source, where)
        unset = [name for name in exercise.answers if name not in tool.ellipsis_names(tree)]
        assert not unset, (f"{where} (exercise {exercise.key}) must set {', '.join(unset)} "
                           "to `...`, so that the notebook at its defaults says Not attempted.")
        assert exercise.solution_code.strip() and exercise.mistake.strip(), (
            f"exercise {exercise.key} needs both a solution and a typical mistake.")
        assert exercise.solution_code != exercise.mistake, f"exercise {exercise.key}"


@pytest.mark.parametrize("wrong", [False, True], ids=["solve", "wrong"])
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_filling_in_changes_the_exercise_cells_only(tmp_path, path, wrong):
    original, found = _exercises(path)
    assert found, f"{path.name} has no exercise cells to fill in."
    out = tmp_path / path.name
    assert tool.main(["solve", str(path), str(out)] + (["--wrong"] if wrong else [])) == 0
    copy = nbformat.read(out, as_version=4)
    assert [c.id for c in copy.cells] == [c.id for c in original.cells]
    filled = {cell.index: cell.exercise for cell in found}
    changed = [i for i, (a, b) in enumerate(zip(original.cells, copy.cells)) if a.source != b.source]
    assert changed == list(filled), f"{path.name}: cells {changed} changed, not {list(filled)}"
    for index, exercise in filled.items():
        expected = exercise.mistake if wrong else exercise.solution_code
        assert copy.cells[index].source == expected, f"{path.name}, exercise {exercise.key}"


# -- full tier: the filled-in copies, executed ---------------------------------------------
ON_A_TEAM_SERVER = {"03", "04", "05"}  # tests/test_team_server.py executes their copies
IN_ITS_OWN_TEST = {"07"}  # tests/test_notebook07.py executes its solved and wrong copies
LOCAL = [path for path in NOTEBOOKS if path.name[:2] not in ON_A_TEAM_SERVER | IN_ITS_OWN_TEST]


def test_the_copies_of_every_notebook_are_executed_here_or_elsewhere():
    from tests.test_notebook07 import NAME as NOTEBOOK07
    from tests.test_team_server import NOTEBOOKS_ON_THE_SERVER

    assert {p.name for p in LOCAL} | set(NOTEBOOKS_ON_THE_SERVER) | {NOTEBOOK07} == {p.name for p in NOTEBOOKS}
    assert {name[:2] for name in NOTEBOOKS_ON_THE_SERVER} == ON_A_TEAM_SERVER


def _ci_parameters(path) -> dict:
    sections = load_params_file(CI_PARAMS)
    return sections.get(path.name[:2]) or sections.get(path.name) or sections.get(path.stem) or {}


@pytest.mark.full
@pytest.mark.parametrize("wrong", [False, True], ids=["solved", "wrong"])
@pytest.mark.parametrize("path", LOCAL, ids=lambda p: p.name)
def test_the_filled_in_notebook_gets_its_verdict_at_every_check(tmp_path, path, wrong):
    original, found = _exercises(path)
    assert found, f"{path.name} has no exercises to execute."
    copy = tmp_path / path.name
    tool.solve(str(path), copy, wrong)
    # Run where the notebook itself runs (its folder), in a workspace of its own.
    executed = execute(copy, tmp_path / "executed" / path.name, _ci_parameters(path),
                       env=course_env(tmp_path / "workspace"), cwd=path.parent)
    problems = exercise_verdict_problems(original, executed, found, wrong)
    kind, expected = ("mistake", INCORRECT) if wrong else ("solution", CORRECT)
    assert not problems, (f"{path.name} with each exercise's {kind}: every check must say "
                          f"{expected} (with its own message): " + "; ".join(problems))
