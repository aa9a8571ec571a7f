"""The exercise framework (``utils.exercises``) and its tool (``python -m tools.exercises``).

The tool's tests use the fixture notebook ``tests/fixtures/exercises/92_exercises.ipynb``, which
holds notebook 01's two exercises and their checks; the last test executes that notebook in a
real kernel at its defaults, solved and with the typical mistakes.
"""

from __future__ import annotations


import nbformat
import pytest

from tests.exercise_checks import EXERCISES
from tests.notebook_runner import course_env, execute
from tools.runner import kernel_manager_class
from tools import exercises as tool
from utils.exercises import (CORRECT, GENERIC_FAILURE, INCORRECT, NOT_ATTEMPTED, Exercise,
                             Incorrect, Verdict, ex01)
from utils.workspace import repo_root

ROOT = repo_root()
FIXTURE = ROOT / "tests" / "fixtures" / "exercises" / "92_exercises.ipynb"


def _is_three(answers, namespace):
    if answers["x"] != 3:
        raise Incorrect(f"`x` should be 3, the number of sides; you set it to {answers['x']!r}.")
    return "a triangle has 3 sides."


def _exercise(check=_is_three, answers=("x", "y")) -> Exercise:
    return Exercise(key="92.9", title="Sides of a triangle", answers=answers, check=check,
                    hint="Count the *corners*.", solution="x = 3\ny = 0", mistake="x = 4\ny = 0")


# -- evaluate: the three outcomes -------------------------------------------------------
@pytest.mark.parametrize("exercise", EXERCISES, ids=lambda exercise: exercise.key)
def test_every_course_exercise_left_untouched_is_not_attempted_before_its_check_runs(exercise):
    # Its answers `...`, or not defined at all (the exercise cell not run): no store, no server.
    verdict = exercise.evaluate(dict.fromkeys(exercise.answers[1:], ...))
    assert verdict.status == NOT_ATTEMPTED
    for words in (f"exercise {exercise.key}", exercise.title, "`...`", "exercise cell above", f"{exercise.name}.hint()"):
        assert words in verdict.message


def test_an_answer_still_dots_is_incorrect_and_named():
    verdict = _exercise().evaluate({"x": 3, "y": ...})
    assert verdict.status == INCORRECT
    assert "`y` is still `...`" in verdict.message and "`x`" not in verdict.message


@pytest.mark.parametrize("x, verdict", [
    (3, Verdict(CORRECT, "a triangle has 3 sides.")),
    (4, Verdict(INCORRECT, "`x` should be 3, the number of sides; you set it to 4.")),
])
def test_an_answer_gets_the_checks_verdict_and_message(x, verdict):
    assert _exercise().evaluate({"x": x, "y": 0}) == verdict


def test_an_unexpected_error_in_the_check_is_the_generic_incorrect_in_one_line(capsys):
    def broken(answers, namespace):
        raise KeyError("the store is locked\nsecond line of detail")

    verdict = _exercise(check=broken).evaluate({"x": 3, "y": 0})
    assert verdict.status == INCORRECT and verdict.message.startswith(GENERIC_FAILURE)
    assert "(KeyError: the store is locked)" in verdict.message and "second line" not in verdict.message
    _run_check(_exercise(check=broken), x=3, y=0)  # check() raises nothing, and prints the line
    assert capsys.readouterr().out == verdict.line + "\n"


def test_a_check_returning_no_text_is_correct_and_a_non_text_is_a_failure():
    assert _exercise(check=lambda a, ns: None).evaluate({"x": 3, "y": 0}).status == CORRECT
    verdict = _exercise(check=lambda a, ns: False).evaluate({"x": 3, "y": 0})
    assert verdict.status == INCORRECT and verdict.message.startswith(GENERIC_FAILURE)


def test_a_verdict_is_one_line_and_an_exercise_needs_answer_names_and_a_check():
    assert Verdict(INCORRECT, "first\n  second").line == "Incorrect: first second"
    with pytest.raises(ValueError):
        Verdict("Wrong", "no such status")
    assert _exercise(answers="x").answers == ("x",)
    with pytest.raises(ValueError):
        _exercise(answers=())
    with pytest.raises(ValueError):
        _exercise(answers=("run id",))
    with pytest.raises(TypeError):
        _exercise(check="x == 3")


# -- check(), hint(), solution() outside IPython ----------------------------------------
def _run_check(exercise: Exercise, **variables):
    """Call ``exercise.check()`` from code whose globals are ``variables``, as a notebook's."""
    namespace = {"exercise": exercise, **variables}
    returned = []
    exec("returned.append(exercise.check())", {**namespace, "returned": returned})  # noqa: S102
    return returned[0]


@pytest.mark.parametrize("variables,status", [({}, NOT_ATTEMPTED), ({"x": 3, "y": 0}, CORRECT),
                                              ({"x": 5, "y": 0}, INCORRECT)])
def test_check_prints_one_line_from_the_callers_variables(capsys, variables, status):
    assert _run_check(_exercise(), **variables) is None
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith(f"{status}: ")


def test_hint_and_solution_print_their_markdown_outside_ipython(capsys):
    exercise = _exercise()
    exercise.hint()
    assert "Count the *corners*." in capsys.readouterr().out
    exercise.solution()
    assert "```python\nx = 3\ny = 0\n```" in capsys.readouterr().out


# -- tools.exercises ------------------------------------------------------------------------
def _exercise_indices():
    return [cell.index for cell in tool.exercise_cells(nbformat.read(FIXTURE, as_version=4), FIXTURE.name)]


@pytest.mark.parametrize("wrong", [False, True], ids=["solve", "wrong"])
def test_solve_replaces_exactly_the_exercise_cells(tmp_path, capsys, wrong):
    out = tmp_path / "copy.ipynb"
    assert tool.main(["solve", str(FIXTURE), str(out)] + (["--wrong"] if wrong else [])) == 0
    assert "01.1, 01.2" in capsys.readouterr().out
    original, copy = nbformat.read(FIXTURE, as_version=4), nbformat.read(out, as_version=4)
    expected = {2: ex01.q1, 5: ex01.q2}
    assert _exercise_indices() == list(expected)
    assert [c.id for c in copy.cells] == [c.id for c in original.cells]
    for index, (before, after) in enumerate(zip(original.cells, copy.cells)):
        if index in expected:
            exercise = expected[index]
            assert after.source == (exercise.mistake if wrong else exercise.solution_code)
            assert after.metadata["tags"] == ["exercise"]
        else:
            assert after.source == before.source
        if after.cell_type == "code":
            assert after.outputs == [] and after.execution_count is None


def test_solve_into_a_folder_uses_the_notebooks_name(tmp_path):
    assert tool.main(["solve", str(FIXTURE), str(tmp_path)]) == 0
    assert (tmp_path / FIXTURE.name).is_file()


def test_list_prints_each_exercise_with_its_title(capsys):
    assert tool.main(["list", str(FIXTURE)]) == 0
    assert capsys.readouterr().out == (f"92_exercises.ipynb: exercises 01.1 {ex01.q1.title}; "
                                       f"01.2 {ex01.q2.title}\n")


def _broken_copy(tmp_path, change) -> str:
    notebook = nbformat.read(FIXTURE, as_version=4)
    change(notebook.cells)
    path = tmp_path / "broken" / FIXTURE.name
    path.parent.mkdir()
    nbformat.write(notebook, path)
    return str(path)


def _set_source(index, source):
    def change(cells):
        cells[index].source = source
    return change


BAD_NOTEBOOKS = {
    "no check cell": (lambda cells: cells.pop(3), "has no check after it"),
    "exercise cell last": (lambda cells: cells.__delitem__(slice(6, None)), "has no check after it"),
    "check commented out": (_set_source(3, "# ex01.q1.check()"), "has no check after it"),
    "unknown exercise": (_set_source(3, "ex01.q7.check()"), "has no exercise 'q7' (its exercises: q1, q2)"),
    "unknown module": (_set_source(3, "ex93.q1.check()"), "there is no module utils.exercises.ex93"),
    "answer not assigned": (_set_source(2, "location = ..."), "answered by `default_location`, but the exercise"),
    "one exercise twice": (_set_source(6, "ex01.q1.check()"), "checks exercise 01.1 twice"),
    "markdown tagged": (lambda cells: cells[4].metadata.update(tags=["exercise"]), "is not a code cell"),
    "not python": (_set_source(2, "default_location = = ..."), "is not valid Python"),
}


@pytest.mark.parametrize("command", ["solve", "list"])
@pytest.mark.parametrize("case", list(BAD_NOTEBOOKS))
def test_bad_exercise_cells_get_one_sentence_and_nothing_written(tmp_path, capsys, case, command):
    change, message = BAD_NOTEBOOKS[case]
    notebook = _broken_copy(tmp_path, change)
    out = tmp_path / "out.ipynb"
    argv = ["solve", notebook, str(out)] if command == "solve" else ["list", notebook]
    assert tool.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and not out.exists()
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1
    assert message in captured.err


@pytest.mark.parametrize("argv,message", [
    (["solve", "77", "OUT"], "no notebook '77'"),
    (["solve", "missing.ipynb", "OUT"], "no notebook 'missing.ipynb'"),
    (["list", "77"], "no notebook '77'"),
], ids=["number", "file", "list"])
def test_an_unknown_notebook_is_named(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    assert tool.main(argv) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_solve_refuses_to_overwrite_the_notebook(tmp_path, capsys):
    notebook = _broken_copy(tmp_path, lambda cells: None)
    before = open(notebook, encoding="utf-8").read()
    assert tool.main(["solve", notebook, notebook]) == 2
    assert "is the notebook itself" in capsys.readouterr().err
    assert open(notebook, encoding="utf-8").read() == before


# -- the fixture notebook in a real kernel -----------------------------------------------
def _stdout(cell) -> str:
    return "".join(out.get("text", "") for out in cell.outputs if out.get("name") == "stdout")


def test_the_fixture_notebook_checks_what_the_kernel_made(tmp_path):
    """As a learner goes: the notebook untouched, then solved, then with the typical mistakes,
    in one kernel and one new workspace (one kernel start, not three, for the fast tier)."""
    import asyncio

    env = course_env(tmp_path / "workspace")
    kernel = kernel_manager_class(env, tmp_path)(kernel_name="python3")
    asyncio.run(kernel.start_kernel())
    try:
        for mode, status in (("defaults", NOT_ATTEMPTED), ("solved", CORRECT), ("wrong", INCORRECT)):
            notebook = FIXTURE
            if mode != "defaults":
                notebook = tmp_path / f"{mode}.ipynb"
                flags = ["--wrong"] if mode == "wrong" else []
                assert tool.main(["solve", str(FIXTURE), str(notebook), *flags]) == 0
            executed = execute(notebook, tmp_path / "executed" / f"{mode}.ipynb", env=env,
                               cwd=tmp_path, km=kernel)
            _assert_verdicts(executed, mode, status)
    finally:
        asyncio.run(kernel.shutdown_kernel(now=True))


def _assert_verdicts(executed, mode, status):
    verdicts = [_stdout(executed.cells[index + 1]) for index in _exercise_indices()]
    assert len(verdicts) == 2
    for verdict in verdicts:
        assert verdict.startswith(f"{status}: ") and verdict.count("\n") == 1, (mode, verdicts)
        assert GENERIC_FAILURE not in verdict
    if mode == "wrong":  # each typical mistake has its own message
        assert "whole Experiment object" in verdicts[0] and "no tag of your own" in verdicts[1]
    shown = [out["data"]["text/markdown"] for out in executed.cells[7].outputs
             if out.get("output_type") == "display_data"]
    assert len(shown) == 2 and "Hint for exercise 01.1" in shown[0]
    assert f"```python\n{ex01.q2.solution_code}\n```" in shown[1]
    assert _stdout(executed.cells[-1]) == "done\n"
