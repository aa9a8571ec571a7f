"""The groups that conftest.py gives pytest-xdist (tools/pytest_groups.py): what must run in one
process stays together."""

from tools import pytest_groups


def test_the_notebooks_form_two_groups_in_course_order():
    groups = {name: pytest_groups.group_of(f"notebooks/{name}_x.ipynb::Cell 0") for name in
              ("01", "02", "03", "04", "05", "06")}
    assert groups["03"] == groups["04"] == groups["05"] != groups["01"] == groups["02"] == groups["06"]


def test_a_test_file_is_one_group_and_the_users_of_notebook_03_s_run_share_one():
    assert pytest_groups.group_of("tests/test_batch.py::test_a[x]") == pytest_groups.group_of("tests/test_batch.py::test_b")
    shared = {pytest_groups.group_of(f"tests/{f}::test_x") for f in pytest_groups.NOTEBOOK03_DEFAULT_USERS}
    assert len(shared) == 1


def test_a_parametrized_module_fixture_gives_one_group_per_value():
    team = "tests/test_team_server.py::test_the_runs_and_models_are_on_the_team_server"
    assert pytest_groups.group_of(f"{team}[open]") != pytest_groups.group_of(f"{team}[basic-auth]")
    assert pytest_groups.group_of(f"{team}[open]") == pytest_groups.group_of("tests/test_team_server.py::test_no_process_is_left_behind[open]")
    copies = "tests/test_exercises_course.py::test_the_filled_in_notebook_gets_its_verdict_at_every_check"
    assert pytest_groups.group_of(f"{copies}[01_local_setup.ipynb-solved]") == pytest_groups.group_of(f"{copies}[01_local_setup.ipynb-wrong]")
    assert pytest_groups.group_of(f"{copies}[01_local_setup.ipynb-solved]") != pytest_groups.group_of(f"{copies}[06_troubleshooting.ipynb-solved]")


def test_pytest_xdist_still_takes_a_group_from_the_method_conftest_overrides():
    # The one private name the grouping relies on (see conftest.pytest_xdist_make_scheduler).
    from xdist.scheduler import LoadScopeScheduling

    assert callable(getattr(LoadScopeScheduling, "_split_scope", None)), (
        "pytest-xdist's LoadScopeScheduling no longer has _split_scope: conftest.py's "
        "scheduler must be written anew for this pytest-xdist.")
