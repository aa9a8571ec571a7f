"""The checks of notebook 02's exercises (tests/exercise_checks.py): 02.1 reads a real
profile file through the real databricks-sdk; 02.2 asks a real `mlflow server --app-name
basic-auth` (one for the module) about the student's permission and the run they logged."""

import os
import secrets

import mlflow
import pytest
from mlflow.exceptions import MlflowException, RestException

from tests.exercise_checks import correct, incorrect
from tests.notebook_runner import separate_server
from utils import remote
from utils.exercises import ex02

HOST = "https://dbc-a1b2c3d4-e5f6.cloud.databricks.com"


# -- 02.1: a profile in a scratch file -------------------------------------------------------
@pytest.fixture
def practice(tmp_path, databricks_env):
    """The notebook's namespace before the exercise: file name, host, a fresh fake token."""
    return {"remote": remote, "practice_file": tmp_path / "practice" / "databrickscfg", "practice_host": HOST,
            "practice_token": "dapi" + secrets.token_hex(16), "practice_config": ...}


def _write(namespace, text, mode=0o600):
    path = namespace["practice_file"]
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def test_02_1_the_solution_is_correct_and_shows_no_token(practice, capsys):
    exec(ex02.q1.solution_code, practice)
    printed = capsys.readouterr().out
    assert "token=***" in printed and practice["practice_token"] not in printed
    verdict = correct(ex02.q1, practice, "profile [practice]", "databricks://practice")
    assert practice["practice_token"] not in verdict.message


def test_02_1_the_typical_mistake_names_the_missing_profile(practice):
    exec(ex02.q1.mistake, practice)
    incorrect(ex02.q1, practice, "returned None", 'profile="practice"')


def test_02_1_another_profile_or_file_is_named(practice, tmp_path):
    path = _write(practice, f"[practice]\nhost = {HOST}\ntoken = {practice['practice_token']}\n\n"
                            f"[other]\nhost = {HOST}\ntoken = {practice['practice_token']}\n")
    practice["practice_config"] = remote.read_databricks_config(profile="other", config_file=path)
    incorrect(ex02.q1, practice, "from profile [other]", "not from the [practice] profile")
    elsewhere = tmp_path / "elsewhere.cfg"
    elsewhere.write_text(path.read_text())
    elsewhere.chmod(0o600)
    practice["practice_config"] = remote.read_databricks_config(profile="practice", config_file=elsewhere)
    incorrect(ex02.q1, practice, "not from `practice_file`", "config_file=practice_file")


def test_02_1_a_file_others_can_read_is_incorrect(practice):
    path = _write(practice, f"[practice]\nhost = {HOST}\ntoken = {practice['practice_token']}\n")
    practice["practice_config"] = remote.read_databricks_config(profile="practice", config_file=path)
    path.chmod(0o644)
    incorrect(ex02.q1, practice, "other users of this machine can read it (mode 644)", "chmod 600")


def test_02_1_a_wrong_value_or_a_variable_that_wins_is_explained(practice, monkeypatch):
    path = _write(practice, f"[practice]\nhost = {HOST}\ntoken = {'dapi' + secrets.token_hex(16)}\n")
    practice["practice_config"] = remote.read_databricks_config(profile="practice", config_file=path)
    verdict = incorrect(ex02.q1, practice, "token read back is not `practice_token`")
    assert practice["practice_token"] not in verdict.message
    _write(practice, f"[practice]\nhost = {HOST}\ntoken = {practice['practice_token']}\n")
    monkeypatch.setenv("DATABRICKS_HOST", "https://dbc-0f9e8d7c-6b5a.cloud.databricks.com")
    practice["practice_config"] = remote.read_databricks_config(profile="practice", config_file=path)
    incorrect(ex02.q1, practice, "DATABRICKS_HOST is set in this kernel", "takes a variable over")


def test_02_1_an_answer_of_another_kind_is_incorrect(practice):
    practice["practice_config"] = str(practice["practice_file"])
    incorrect(ex02.q1, practice, "holds a str", "remote.read_databricks_config")


# -- 02.2: the grant that lets the student log runs ---------------------------------------------
@pytest.fixture(scope="module")
def team(tmp_path_factory):
    """The notebook's team server: basic-auth, its own workspace, SQLite whatever the shell says."""
    workspace = separate_server(tmp_path_factory.mktemp("team") / "ws").workspace  # its folders
    auth = remote.prepare_basic_auth(workspace)
    server = remote.start_auth_server(workspace, auth, remote.resolve_backend_store("", workspace, environ={}), port=0)
    yield server, auth
    server.stop()


@pytest.fixture
def student(team, monkeypatch):
    """The namespace at exercise 02.2, as the notebook leaves it: the user `student` made
    afresh by the admin, a new experiment, and this kernel logged in as the student (after
    the 403)."""
    from mlflow.server import get_app_client

    server, auth = team
    monkeypatch.setenv(remote.USERNAME_ENV, auth.admin_username)
    monkeypatch.setenv(remote.PASSWORD_ENV, auth.admin_password)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    admin_client = get_app_client("basic-auth", tracking_uri=server.url)
    try:
        admin_client.delete_user("student")
    except RestException:
        pass  # the first test of the module
    password = secrets.token_urlsafe(16)
    admin_client.create_user("student", password)
    experiment_id = mlflow.MlflowClient(tracking_uri=server.url).create_experiment("course-02-team-" + secrets.token_hex(3))
    monkeypatch.setenv(remote.USERNAME_ENV, "student")
    monkeypatch.setenv(remote.PASSWORD_ENV, password)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(server.url)
    yield {"os": os, "mlflow": mlflow, "MlflowException": MlflowException, "admin_client": admin_client,
           "team_server": server, "auth": auth, "experiment_id": experiment_id, "student_password": password,
           "student_run": ...}
    mlflow.set_tracking_uri(previous)


def _grant(namespace, permission):
    with remote.tracking_credentials(namespace["auth"].admin_username, namespace["auth"].admin_password):
        namespace["admin_client"].grant_user_permission("student", "experiment", namespace["experiment_id"], permission)


def test_02_2_the_solution_is_correct(student, capsys):
    exec(ex02.q2.solution_code, student)
    assert "logged as student:" in capsys.readouterr().out
    correct(ex02.q2, student, "has EDIT on experiment", "logged run")


def test_02_2_the_typical_mistake_read_is_refused_with_403(student, capsys):
    exec(ex02.q2.mistake, student)
    assert "refused: 403 PERMISSION_DENIED" in capsys.readouterr().out
    assert student["student_run"] is None
    incorrect(ex02.q2, student, "has READ on experiment", "lets a user look, not log")


def test_02_2_a_run_logged_as_the_admin_is_incorrect(student, capsys):
    # The solution without its switch to the student's login: the admin logs the run.
    as_admin = ex02.q2.solution_code.replace(
        'os.environ["MLFLOW_TRACKING_USERNAME"] = "student"\n', "").replace(
        'os.environ["MLFLOW_TRACKING_PASSWORD"] = student_password\n', "")
    assert as_admin != ex02.q2.solution_code
    exec(as_admin, student)
    assert "logged as student:" in capsys.readouterr().out  # the solution's own print
    incorrect(ex02.q2, student, "The login in effect is 'admin'", "log in as student")


def test_02_2_no_grant_or_no_user_is_named(student):
    student["student_run"] = None
    incorrect(ex02.q2, student, "no permission of their own", "grant_user_permission")
    with remote.tracking_credentials(student["auth"].admin_username, student["auth"].admin_password):
        student["admin_client"].delete_user("student")
    incorrect(ex02.q2, student, "There is no user 'student'")


def test_02_2_more_than_edit_or_a_level_that_cannot_log_is_incorrect(student):
    student["student_run"] = None
    _grant(student, "MANAGE")
    incorrect(ex02.q2, student, "has MANAGE", "needs EDIT, and no more")
    with remote.tracking_credentials(student["auth"].admin_username, student["auth"].admin_password):
        student["admin_client"].revoke_user_permission("student", "experiment", student["experiment_id"])
    _grant(student, "DENY")
    incorrect(ex02.q2, student, "has DENY", "does not let them log runs")


def test_02_2_edit_without_the_run_or_in_another_experiment_is_incorrect(student):
    _grant(student, "EDIT")
    student["student_run"] = None
    incorrect(ex02.q2, student, "holds NoneType, not a run", "mlflow.start_run(experiment_id=experiment_id)")
    with remote.tracking_credentials(student["auth"].admin_username, student["auth"].admin_password):
        with mlflow.start_run(experiment_id="0") as elsewhere:  # the Default experiment
            pass
    student["student_run"] = elsewhere
    incorrect(ex02.q2, student, "not in course-02-team", "experiment_id=experiment_id")


def test_02_2_a_stopped_server_is_named(student, tmp_path):
    student["team_server"] = separate_server(tmp_path / "ws")  # never started
    student["student_run"] = None
    incorrect(ex02.q2, student, "team server is not running")


def test_02_2_a_run_left_running_says_how_to_end_it(student, capsys):
    # The solution without its `with` block: the run is logged, and never ended.
    left_open = ex02.q2.solution_code.replace(
        'with mlflow.start_run(experiment_id=experiment_id, run_name="student-run") as student_run:',
        'if student_run := mlflow.start_run(experiment_id=experiment_id, run_name="student-run"):')
    assert left_open != ex02.q2.solution_code
    exec(left_open, student)
    assert "logged as student:" in capsys.readouterr().out
    try:
        incorrect(ex02.q2, student, "never ended: it stays RUNNING", "Call `mlflow.end_run()` now, still as student",
                  "with mlflow.start_run(experiment_id=experiment_id) as student_run:")
    finally:
        mlflow.end_run()
    # A run left RUNNING that this kernel no longer holds: end it through the client.
    student["student_run"] = mlflow.MlflowClient().create_run(student["experiment_id"])
    incorrect(ex02.q2, student, "never ended",
              f"`mlflow.MlflowClient().set_terminated({student['student_run'].info.run_id!r})`")
    mlflow.MlflowClient().set_terminated(student["student_run"].info.run_id)
    correct(ex02.q2, student)
