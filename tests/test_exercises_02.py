"""Notebook 02's exercises: each check's three outcomes, on real files and a real server.

02.1 reads a real profile file through the real databricks-sdk; 02.2 asks a real
`mlflow server --app-name basic-auth` (one for the module) about users, permissions and
the error a refused write raised. The exercises' own solution and typical mistake are
executed as the notebook would execute them.
"""

import os
import secrets

import mlflow
import pytest
from mlflow.exceptions import MlflowException

from utils import remote
from utils.exercises import CORRECT, GENERIC_FAILURE, INCORRECT, NOT_ATTEMPTED, ex02
from utils.tracking import TrackingServer
from utils.workspace import Workspace

HOST = "https://dbc-a1b2c3d4-e5f6.cloud.databricks.com"


def _verdict(exercise, namespace, status, *phrases):
    verdict = exercise.evaluate(namespace)
    assert verdict.status == status, verdict.line
    assert GENERIC_FAILURE not in verdict.message, verdict.line
    for phrase in phrases:
        assert phrase in verdict.message, verdict.line
    return verdict


# -- 02.1: a profile in a scratch file -------------------------------------------------------
@pytest.fixture
def practice(tmp_path, monkeypatch):
    """The notebook's namespace before the exercise: file name, host, a fresh fake token."""
    for name in list(os.environ):
        if name.startswith("DATABRICKS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(tmp_path / "no-such-databrickscfg"))
    return {
        "remote": remote,
        "practice_file": tmp_path / "practice" / "databrickscfg",
        "practice_host": HOST,
        "practice_token": "dapi" + secrets.token_hex(16),
        "practice_config": ...,
    }


def _write(namespace, text, mode=0o600):
    path = namespace["practice_file"]
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def test_02_1_untouched_is_not_attempted(practice):
    _verdict(ex02.q1, practice, NOT_ATTEMPTED, "exercise 02.1")


def test_02_1_the_solution_is_correct_and_shows_no_token(practice, capsys):
    exec(ex02.q1.solution_code, practice)
    printed = capsys.readouterr().out
    assert "dapi…" in printed and practice["practice_token"] not in printed
    verdict = _verdict(ex02.q1, practice, CORRECT, "profile [practice]", "databricks://practice")
    assert practice["practice_token"] not in verdict.message


def test_02_1_the_typical_mistake_names_the_missing_profile(practice):
    exec(ex02.q1.mistake, practice)
    _verdict(ex02.q1, practice, INCORRECT, "returned None", 'profile="practice"')


def test_02_1_another_profile_or_file_is_named(practice, tmp_path):
    path = _write(practice, f"[practice]\nhost = {HOST}\ntoken = {practice['practice_token']}\n\n"
                            f"[other]\nhost = {HOST}\ntoken = {practice['practice_token']}\n")
    practice["practice_config"] = remote.read_databricks_config(profile="other", config_file=path)
    _verdict(ex02.q1, practice, INCORRECT, "from profile [other]", "not from the [practice] profile")
    elsewhere = tmp_path / "elsewhere.cfg"
    elsewhere.write_text(path.read_text())
    elsewhere.chmod(0o600)
    practice["practice_config"] = remote.read_databricks_config(profile="practice", config_file=elsewhere)
    _verdict(ex02.q1, practice, INCORRECT, "not from `practice_file`", "config_file=practice_file")


def test_02_1_a_file_others_can_read_is_incorrect(practice):
    path = _write(practice, f"[practice]\nhost = {HOST}\ntoken = {practice['practice_token']}\n")
    practice["practice_config"] = remote.read_databricks_config(profile="practice", config_file=path)
    path.chmod(0o644)
    _verdict(ex02.q1, practice, INCORRECT, "can be read by other users (mode 644)", "chmod(0o600)")


def test_02_1_a_wrong_value_or_a_variable_that_wins_is_explained(practice, monkeypatch):
    path = _write(practice, f"[practice]\nhost = {HOST}\ntoken = {'dapi' + secrets.token_hex(16)}\n")
    practice["practice_config"] = remote.read_databricks_config(profile="practice", config_file=path)
    verdict = _verdict(ex02.q1, practice, INCORRECT, "token read back is not `practice_token`")
    assert practice["practice_token"] not in verdict.message
    _write(practice, f"[practice]\nhost = {HOST}\ntoken = {practice['practice_token']}\n")
    monkeypatch.setenv("DATABRICKS_HOST", "https://dbc-0f9e8d7c-6b5a.cloud.databricks.com")
    practice["practice_config"] = remote.read_databricks_config(profile="practice", config_file=path)
    _verdict(ex02.q1, practice, INCORRECT, "DATABRICKS_HOST is set in this kernel", "takes a variable over")


def test_02_1_an_answer_of_another_kind_is_incorrect(practice):
    practice["practice_config"] = str(practice["practice_file"])
    _verdict(ex02.q1, practice, INCORRECT, "holds a str", "remote.read_databricks_config")


# -- 02.2: READ on one experiment, and the 403 -------------------------------------------------
@pytest.fixture(scope="module")
def team(tmp_path_factory):
    """The notebook's team server (basic-auth, its own workspace) and one experiment."""
    workspace = Workspace(tmp_path_factory.mktemp("team") / "ws")
    workspace.path.mkdir()
    workspace.artifacts_dir.mkdir()
    workspace.logs_dir.mkdir()
    auth = remote.prepare_basic_auth(workspace)
    store = remote.resolve_backend_store("", workspace, environ={})  # SQLite, whatever the shell says
    server = remote.start_auth_server(workspace, auth, store, port=0)
    try:
        with remote.tracking_credentials(auth.admin_username, auth.admin_password):
            experiment_id = mlflow.MlflowClient(tracking_uri=server.url).create_experiment("course-02-team")
        yield server, auth, experiment_id
    finally:
        server.stop()


@pytest.fixture
def reader(team, monkeypatch):
    """The namespace at exercise 02.2: this kernel logs in as the admin, a new user name."""
    from mlflow.server import get_app_client

    server, auth, experiment_id = team
    monkeypatch.setenv(remote.USERNAME_ENV, auth.admin_username)
    monkeypatch.setenv(remote.PASSWORD_ENV, auth.admin_password)
    return {
        "mlflow": mlflow,
        "remote": remote,
        "MlflowException": MlflowException,
        "admin_client": get_app_client("basic-auth", tracking_uri=server.url),
        "team_server": server,
        "auth": auth,
        "experiment_id": experiment_id,
        "reader_name": "reader-" + secrets.token_hex(3),
        "reader_password": secrets.token_urlsafe(16),
        "refusal": ...,
    }


def _write_as_reader(namespace, password=None):
    with remote.tracking_credentials(namespace["reader_name"], password or namespace["reader_password"]):
        try:
            mlflow.MlflowClient(tracking_uri=namespace["team_server"].url).create_run(namespace["experiment_id"])
        except MlflowException as error:
            return error
    return None


def test_02_2_untouched_is_not_attempted(reader):
    _verdict(ex02.q2, reader, NOT_ATTEMPTED, "exercise 02.2")


def test_02_2_the_solution_is_correct(reader, capsys):
    exec(ex02.q2.solution_code, reader)
    assert "HTTP 403 Forbidden" in capsys.readouterr().out
    _verdict(ex02.q2, reader, CORRECT, "READ on experiment", "HTTP 403 Forbidden")


def test_02_2_the_typical_mistake_edit_lets_the_write_through(reader):
    exec(ex02.q2.mistake, reader)
    assert reader["refusal"] is None  # the write went through, as the message says
    _verdict(ex02.q2, reader, INCORRECT, "has EDIT on experiment", "lets a user log runs")


def test_02_2_a_missing_user_or_permission_is_named(reader):
    reader["refusal"] = None
    _verdict(ex02.q2, reader, INCORRECT, f"There is no user {reader['reader_name']!r}")
    reader["admin_client"].create_user(reader["reader_name"], reader["reader_password"])
    reader["refusal"] = _write_as_reader(reader)  # refused: this server's default is READ
    _verdict(ex02.q2, reader, INCORRECT, "no permission of their own", "default_permission")


def test_02_2_a_write_as_the_admin_or_with_a_wrong_password_is_explained(reader):
    admin = reader["admin_client"]
    admin.create_user(reader["reader_name"], reader["reader_password"])
    admin.grant_user_permission(reader["reader_name"], "experiment", reader["experiment_id"], "READ")
    mlflow.MlflowClient(tracking_uri=reader["team_server"].url).create_run(reader["experiment_id"])  # as admin
    reader["refusal"] = None
    _verdict(ex02.q2, reader, INCORRECT, "not an error", "remote.tracking_credentials(reader_name, reader_password)")
    reader["refusal"] = _write_as_reader(reader, password="not-the-password")
    _verdict(ex02.q2, reader, INCORRECT, "401 Unauthorized", "reader_password")


def test_02_2_deny_is_not_read(reader):
    admin = reader["admin_client"]
    admin.create_user(reader["reader_name"], reader["reader_password"])
    admin.grant_user_permission(reader["reader_name"], "experiment", reader["experiment_id"], "DENY")
    reader["refusal"] = _write_as_reader(reader)
    _verdict(ex02.q2, reader, INCORRECT, "has DENY", "may not even look", "asks for READ")


def test_02_2_a_stopped_server_is_named(reader, tmp_path):
    reader["team_server"] = TrackingServer(workspace=Workspace(tmp_path), port=0)  # never started
    reader["refusal"] = None
    _verdict(ex02.q2, reader, INCORRECT, "team server is not running")
