"""Every course notebook has checked exercises, and their solutions and mistakes do what
they promise (issue 17).

Fast tier: each notebook has at least two cells tagged ``exercise``, each followed by the
check of an existing exercise whose answer variables the cell sets to ``...``. Full tier: the
solved copy of each notebook (``python -m tools.exercises solve``) prints ``Correct`` at every
check; the copy with the typical mistakes ``Incorrect``, with a message of the exercise's own;
and neither shows noise or a secret.
Every copy is made from the Chinese edition (notebooks/zh/), so that every check answers in
Chinese once. Notebooks 01, 02 and 06, and 08's solved copy, run here; the others where their
trainings run anyway: 03, 04 and 05 on a team's server (tests/test_team_server.py: solved on
an open one, wrong with 07's and 08's wrong copies on one with logins), and 07's solved copy
in tests/test_notebook07.py.
"""

from __future__ import annotations

import nbformat
import pytest

from tests.notebook_runner import TWINS, course_env, execute, exercise_verdict_problems, reading_problems
from tools import exercises as tool
from tools.batch import course_notebooks, load_params_file
from utils.errors import CourseError
from utils.exercises import CORRECT, INCORRECT
from utils.workspace import repo_root

ROOT = repo_root()
NOTEBOOKS = course_notebooks(ROOT / "notebooks")
PER_NOTEBOOK = 2
CI_PARAMS = ROOT / "tools" / "params" / "ci.yml"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_each_exercise_cell_is_untouched_and_checked(path):
    notebook = nbformat.read(path, as_version=4)
    try:
        found = tool.exercise_cells(notebook, path.name)
    except CourseError as error:
        pytest.fail(f"{path.name}: its exercises cannot be read: {error}")
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


# -- full tier: the filled-in copies, executed ---------------------------------------------
COPIES = ("solved", "wrong")


def executed_elsewhere() -> list[tuple[str, str]]:
    """``(notebook, copy)`` for each filled-in copy another test executes: the team servers
    (tests/test_team_server.py) and tests/test_notebook07.py, so that those trainings run once."""
    from tests import test_notebook07, test_team_server as team

    return ([(name, copy) for server, copy in team.COPIES.items() for name in team.NOTEBOOKS_ON_THE_SERVER
             if server == "basic-auth" or name not in team.ONLY_WITH_LOGINS]
            + [(test_notebook07.NAME, test_notebook07.COPY)])


LOCAL = [(path, copy) for path in NOTEBOOKS for copy in COPIES if (path.name, copy) not in executed_elsewhere()]


def test_each_filled_in_copy_of_every_notebook_is_executed_once():
    executed = [(path.name, copy) for path, copy in LOCAL] + executed_elsewhere()
    assert sorted(executed) == sorted((path.name, copy) for path in NOTEBOOKS for copy in COPIES)


def _ci_parameters(path) -> dict:
    sections = load_params_file(CI_PARAMS)
    return sections.get(path.name[:2]) or sections.get(path.name) or sections.get(path.stem) or {}


@pytest.mark.full
@pytest.mark.parametrize("path,copy", LOCAL, ids=lambda value: getattr(value, "name", value))
def test_the_filled_in_notebook_gets_its_verdict_at_every_check(tmp_path, path, copy):
    twin = TWINS / path.name  # the Chinese edition's copy: every check answers in Chinese
    filled = tmp_path / path.name
    tool.solve(str(twin), filled, copy == "wrong")
    # Run where the notebook itself runs (its folder), in a workspace of its own.
    executed = execute(filled, tmp_path / "executed" / path.name, _ci_parameters(path),
                       env=course_env(tmp_path / "workspace"), cwd=TWINS)
    expected = INCORRECT if copy == "wrong" else CORRECT
    assert exercise_verdict_problems(twin, executed, copy == "wrong") == [], (
        f"every check must say {expected} (with its own message)")
    assert reading_problems(tmp_path / "executed" / path.name, tmp_path / "workspace") == []
