"""utils.remote: the Databricks configuration as databricks-sdk reads it, and the course's
basic-auth server.

Configurations are real files and variables read by the real databricks-sdk; the SDK's own
connection check (as notebook 02 makes it) goes to real sockets (a closed port, a real MLflow
server that refuses the token); the server tests start a real `mlflow server --app-name
basic-auth`.
"""

import os
import socket
import stat
import subprocess
import threading
from unittest import mock

import mlflow
import pytest
import requests
from mlflow.exceptions import MlflowException

from tools import scan_secrets
from utils import remote
from utils.errors import CourseError
from utils.workspace import get_workspace, mask_uri

# Shaped like real tokens, built from parts so no file of the course contains one.
TOKEN = "dapi" + "0123456789abcdef" * 2
TOKEN_WITH_SUFFIX = "dapi" + "fedcba9876543210" * 2 + "-2"
HOST = "https://dbc-1234abcd-5678.cloud.databricks.com"


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv(remote.BACKEND_STORE_ENV, raising=False)
    return get_workspace()


@pytest.fixture
def databricks_env(tmp_path, monkeypatch):
    """No Databricks variables, and a config file that does not exist (never ~/.databrickscfg);
    returns monkeypatch to set some."""
    for name in list(os.environ):
        if name.startswith("DATABRICKS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(tmp_path / "no-such-databrickscfg"))
    return monkeypatch


def _profiles(tmp_path, text, mode=0o600):
    path = tmp_path / "databrickscfg"
    path.write_text(text)
    path.chmod(mode)
    return path


# -- masking ---------------------------------------------------------------------------
def test_uri_passwords_are_masked_and_kept_off_the_command_line():
    store = remote.BackendStore("postgresql://course:s3cr%40t@db:5432/mlflow", "test")
    assert str(store) == "postgresql://course:****@db:5432/mlflow  (from test)"
    assert store.password == "s3cr@t"  # decoded, as PostgreSQL expects it
    assert "s3cr" not in repr(store)
    assert mask_uri("http://127.0.0.1:5000/#/experiments/0") == "http://127.0.0.1:5000/#/experiments/0"


# -- reading the configuration through databricks-sdk ------------------------------------------
def test_configuration_from_the_environment_is_shown_masked(databricks_env):
    databricks_env.setenv("DATABRICKS_HOST", "dbc-1234abcd-5678.cloud.databricks.com/")
    databricks_env.setenv("DATABRICKS_TOKEN", TOKEN)
    config = remote.read_databricks_config()
    assert (config.host, config.token, config.profile) == (HOST, TOKEN, None)  # the SDK adds https://
    for shown in (repr(config), str(config), f"{config}", str([config])):
        assert TOKEN not in shown and "token=***" in shown and "Env: DATABRICKS_HOST" in shown


def test_half_a_configuration_says_what_is_missing(databricks_env):
    databricks_env.setenv("DATABRICKS_TOKEN", TOKEN)
    with pytest.raises(CourseError, match=r"has no host: export DATABRICKS_HOST"):
        remote.read_databricks_config()
    databricks_env.delenv("DATABRICKS_TOKEN")
    databricks_env.setenv("DATABRICKS_HOST", HOST)
    with pytest.raises(CourseError, match=r"has no token: export DATABRICKS_HOST and DATABRICKS_TOKEN"):
        remote.read_databricks_config()


def test_no_configuration_at_all_is_none(databricks_env):
    assert remote.read_databricks_config() is None


def test_named_and_default_profiles_of_databrickscfg(tmp_path, databricks_env):
    path = _profiles(
        tmp_path,
        f"[DEFAULT]\nhost = {HOST}/\ntoken = {TOKEN}\n\n"
        f"[staging]\nhost = https://dbc-0f9e8d7c-6b5a.cloud.databricks.com\ntoken = {TOKEN_WITH_SUFFIX}\n",
    )
    default = remote.read_databricks_config(config_file=path)
    assert (default.host, default.token, default.profile) == (HOST, TOKEN, None)
    staging = remote.read_databricks_config(profile="staging", config_file=path)
    assert staging.profile == "staging" and staging.token == TOKEN_WITH_SUFFIX
    assert TOKEN_WITH_SUFFIX not in repr(staging) + str(staging)
    # The SDK reads DATABRICKS_CONFIG_PROFILE and DATABRICKS_CONFIG_FILE, as MLflow's lookup does.
    databricks_env.setenv("DATABRICKS_CONFIG_PROFILE", "staging")
    databricks_env.setenv("DATABRICKS_CONFIG_FILE", str(path))
    assert remote.read_databricks_config().profile == "staging"
    # A variable wins over the profile's line, value by value (and so for MLflow).
    databricks_env.setenv("DATABRICKS_HOST", HOST)
    assert remote.read_databricks_config().host == HOST


def test_profile_problems_are_explained(tmp_path, databricks_env):
    path = _profiles(tmp_path, f"[staging]\nhost = {HOST}\n")
    with pytest.raises(CourseError, match=r"cannot read .*has no Staging profile.*case-sensitive"):
        remote.read_databricks_config(profile="Staging", config_file=path)
    with pytest.raises(CourseError, match=r"has no token: .*profile \[staging\] of"):
        remote.read_databricks_config(profile="staging", config_file=path)
    with pytest.raises(CourseError, match=r"has no host and no token: .*profile \[staging\] of .*missing"):
        remote.read_databricks_config(profile="staging", config_file=tmp_path / "missing")
    broken = tmp_path / "broken"
    broken.write_text(f"token = {TOKEN}\n")
    with pytest.raises(CourseError, match="cannot read the Databricks configuration") as error:
        remote.read_databricks_config(config_file=broken)
    assert TOKEN not in str(error.value)


def test_a_config_file_others_can_read_is_refused_with_the_fix(tmp_path, databricks_env):
    path = _profiles(tmp_path, f"[practice]\nhost = {HOST}\ntoken = {TOKEN}\n", mode=0o644)
    with pytest.raises(CourseError, match=r"other users of this machine can read it \(mode 644\).*chmod 600") as error:
        remote.read_databricks_config(profile="practice", config_file=path)
    assert TOKEN not in str(error.value)


class _CountingListener:
    """A TCP port that accepts connections, counts them and closes them at once."""

    def __init__(self):
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(16)
        self.socket.settimeout(0.2)
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self):
        return f"https://127.0.0.1:{self.socket.getsockname()[1]}"

    def _serve(self):
        while not self._stop.is_set():
            try:
                connection, _ = self.socket.accept()
            except OSError:
                continue
            self.accepted += 1
            connection.close()

    def close(self):
        self._stop.set()
        self._thread.join()
        self.socket.close()


def test_reading_a_configuration_never_contacts_the_host(tmp_path, databricks_env):
    listener = _CountingListener()
    try:
        # Unchanged, databricks-sdk's Config asks the host for its settings while it is
        # created: this is what the course's reader must not do.
        from databricks.sdk.core import Config

        Config(host=listener.url, token=TOKEN, retry_timeout_seconds=1, http_timeout_seconds=1)
        assert listener.accepted >= 1
        listener.accepted = 0
        databricks_env.setenv("DATABRICKS_HOST", listener.url)
        databricks_env.setenv("DATABRICKS_TOKEN", TOKEN)
        assert remote.read_databricks_config().host == listener.url
        path = _profiles(tmp_path, f"[course]\nhost = {listener.url}\ntoken = {TOKEN}\n")
        databricks_env.delenv("DATABRICKS_HOST")
        databricks_env.delenv("DATABRICKS_TOKEN")
        assert remote.read_databricks_config(profile="course", config_file=path).profile == "course"
        assert listener.accepted == 0
    finally:
        listener.close()


# -- trying the connection: databricks-sdk's own call, as notebook 02 makes it ------------------
def _me(host, timeout):
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.core import Config

    config = Config(host=host, token=TOKEN, http_timeout_seconds=timeout, retry_timeout_seconds=timeout)
    return WorkspaceClient(config=config).current_user.me()


def test_the_sdk_check_of_a_closed_port_fails_with_the_sdks_error_and_no_token(databricks_env):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(Exception) as error:  # noqa: B017 - whatever the SDK raises, the cell prints it
        _me(f"https://127.0.0.1:{port}", 2)
    assert not isinstance(error.value, TypeError), error.value  # the SDK's error, not a misuse
    assert TOKEN not in remote.redact(str(error.value), [TOKEN])


# -- the basic-auth server (real process) ------------------------------------------------------
@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    saved = {k: os.environ.get(k) for k in ("COURSE_WORKSPACE", "MLFLOW_TRACKING_URI", remote.BACKEND_STORE_ENV)}
    os.environ["COURSE_WORKSPACE"] = str(tmp_path_factory.mktemp("auth") / "ws")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.pop(remote.BACKEND_STORE_ENV, None)
    workspace = get_workspace()
    auth = remote.prepare_basic_auth(workspace)
    server = remote.start_auth_server(workspace, auth, port=0)
    yield workspace, auth, server
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def as_admin(auth_server, monkeypatch):
    """MLflow's own admin client, logged in (as it does) through the two variables."""
    from mlflow.server import get_app_client

    _, auth, server = auth_server
    monkeypatch.setenv(remote.USERNAME_ENV, auth.admin_username)
    monkeypatch.setenv(remote.PASSWORD_ENV, auth.admin_password)
    return get_app_client("basic-auth", tracking_uri=server.url)


@pytest.mark.full
def test_the_auth_config_is_private_and_reused(auth_server):
    workspace, auth, _ = auth_server
    assert stat.S_IMODE(auth.config_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(auth.config_path.parent.stat().st_mode) == 0o700
    assert auth.admin_password != "password1234" and len(auth.admin_password) >= 24
    assert remote.prepare_basic_auth(workspace).admin_password == auth.admin_password
    assert auth.admin_password not in repr(auth) and auth.database_path.exists()


@pytest.mark.full
def test_without_credentials_the_server_says_401(auth_server):
    _, _, server = auth_server
    response = requests.get(f"{server.url}/api/2.0/mlflow/experiments/search", timeout=10)
    assert response.status_code == 401


@pytest.mark.full
def test_a_user_logs_a_run_with_an_artifact_and_a_wrong_password_gets_401(auth_server, as_admin):
    workspace, _, server = auth_server
    password = "pw-" + os.urandom(8).hex()
    as_admin.create_user("alice", password)
    experiment_id = mlflow.MlflowClient(tracking_uri=server.url).create_experiment("remote-test")
    as_admin.grant_user_permission("alice", "experiment", experiment_id, "EDIT")
    with remote.tracking_credentials("alice", password):
        client = mlflow.MlflowClient(tracking_uri=server.url)
        run = client.create_run(experiment_id)
        client.log_text(run.info.run_id, "hello", "notes/hello.txt")
        client.set_terminated(run.info.run_id)
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
    stored = workspace.artifacts_dir / experiment_id / run.info.run_id / "artifacts" / "notes" / "hello.txt"
    assert stored.read_text() == "hello"  # uploaded through the server into the workspace
    with remote.tracking_credentials("alice", password + "x"), pytest.raises(MlflowException) as error:
        mlflow.MlflowClient(tracking_uri=server.url).get_run(run.info.run_id)
    assert error.value.get_http_status_code() == 401


@pytest.mark.full
def test_read_only_users_get_a_403(auth_server, as_admin):
    _, _, server = auth_server
    password = "pw-" + os.urandom(8).hex()
    as_admin.create_user("bob", password)
    experiment_id = mlflow.MlflowClient(tracking_uri=server.url).create_experiment("admins-only")
    as_admin.grant_user_permission("bob", "experiment", experiment_id, "READ")
    with remote.tracking_credentials("bob", password):
        client = mlflow.MlflowClient(tracking_uri=server.url)
        assert client.get_experiment(experiment_id).name == "admins-only"  # READ: may look
        with pytest.raises(MlflowException) as error:
            client.create_run(experiment_id)  # but not write
    assert error.value.get_http_status_code() == 403 and error.value.error_code == "PERMISSION_DENIED"
    assert os.environ.get(remote.PASSWORD_ENV) != password  # the block's credentials are gone


@pytest.mark.full
def test_what_the_notebook_does_on_a_second_run_is_what_mlflow_does(auth_server, as_admin):
    # Notebook 02 catches RESOURCE_ALREADY_EXISTS for a user and for a grant made by an
    # earlier run; this is MLflow's answer in both cases.
    _, _, server = auth_server
    from mlflow.exceptions import RestException

    as_admin.create_user("carol", "pw-" + os.urandom(8).hex())
    with pytest.raises(RestException) as error:
        as_admin.create_user("carol", "pw-" + os.urandom(8).hex())
    assert error.value.error_code == "RESOURCE_ALREADY_EXISTS"
    experiment_id = mlflow.MlflowClient(tracking_uri=server.url).create_experiment("carols")
    as_admin.grant_user_permission("carol", "experiment", experiment_id, "EDIT")
    with pytest.raises(RestException) as error:
        as_admin.grant_user_permission("carol", "experiment", experiment_id, "READ")
    assert error.value.error_code == "RESOURCE_ALREADY_EXISTS"


@pytest.mark.full
def test_a_refused_databricks_token_raises_the_sdks_error(auth_server, databricks_env):
    # The auth server refuses the bearer token as a workspace refuses an expired one; notebook
    # 02 prints what databricks-sdk raises, with the token masked.
    from databricks.sdk.errors import Unauthenticated

    _, _, server = auth_server
    with pytest.raises(Unauthenticated) as error:  # the SDK's HTTP 401
        _me(server.url, 5)
    assert TOKEN not in remote.redact(str(error.value), [TOKEN])


@pytest.mark.full
def test_the_server_log_holds_no_password(auth_server):
    workspace, auth, server = auth_server
    log = server.log_path.read_text()
    assert "401" in log and auth.admin_password not in log
    assert scan_secrets.find_secrets(log, [auth.admin_password]) == []


def test_an_auth_database_without_its_config_is_started_afresh(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_WORKSPACE", str(tmp_path / "ws"))
    workspace = get_workspace()
    first = remote.prepare_basic_auth(workspace)
    first.database_path.write_text("users of a lost admin password")
    first.config_path.unlink()
    second = remote.prepare_basic_auth(workspace)
    assert second.admin_password != first.admin_password
    assert not second.database_path.exists()


# -- backend stores ------------------------------------------------------------------------------
def test_the_default_backend_store_is_the_workspace_sqlite(workspace):
    store = remote.resolve_backend_store("", workspace, environ={})
    assert store.uri == workspace.backend_store_uri


def test_a_password_in_the_parameter_is_refused_without_showing_it(workspace):
    with pytest.raises(CourseError) as error:
        remote.resolve_backend_store("postgresql://course:hunter2hunter2@db/mlflow", workspace, environ={})
    assert "COURSE_BACKEND_STORE_URI" in str(error.value) and "hunter2" not in str(error.value)


def test_the_environment_variable_may_carry_a_password_and_the_driver_is_named(workspace):
    environ = {"COURSE_BACKEND_STORE_URI": "postgresql://course:hunter2hunter2@db:5432/mlflow"}
    store = remote.resolve_backend_store("", workspace, environ=environ)
    assert store.uri == "postgresql+psycopg2://course:hunter2hunter2@db:5432/mlflow"
    assert store.source.startswith("$COURSE_BACKEND_STORE_URI") and "hunter2" not in str(store)
    parameter = remote.resolve_backend_store("postgresql://course@db/mlflow", workspace, environ=environ)
    assert parameter.uri == "postgresql+psycopg2://course@db/mlflow"  # the parameter wins


def test_a_uri_that_is_no_database_is_refused(workspace):
    with pytest.raises(CourseError, match="not a database URI"):
        remote.resolve_backend_store("http://127.0.0.1:5000", workspace, environ={})


def test_an_unreachable_database_is_reported_without_its_password(workspace):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = remote.resolve_backend_store(
        "", workspace, environ={"COURSE_BACKEND_STORE_URI": f"postgresql://course:hunter2hunter2@127.0.0.1:{port}/mlflow"}
    )
    with pytest.raises(CourseError) as error:
        remote.start_auth_server(workspace, backend_store=store, port=0)
    message = str(error.value)
    assert message.startswith("Could not connect to the backend store postgresql+psycopg2://course:****@")
    assert "hunter2" not in message
    assert subprocess.run(["pgrep", "-f", str(workspace.path)], capture_output=True).stdout == b""


def test_the_database_password_goes_in_pgpassword_not_on_the_command_line(workspace, monkeypatch):
    import sqlalchemy

    from utils.tracking import TrackingServer

    monkeypatch.setattr(sqlalchemy, "create_engine", mock.MagicMock())  # a database that answers
    monkeypatch.setattr(TrackingServer, "start", lambda self: self)
    store = remote.resolve_backend_store("", workspace, environ={"COURSE_BACKEND_STORE_URI": "postgresql://course:s3cr%40t@db:5432/mlflow"})
    server = remote.start_auth_server(workspace, backend_store=store, port=0)
    assert "postgresql+psycopg2://course@db:5432/mlflow" in server.server_options()
    assert "s3cr" not in " ".join(server.server_options()) and server.env["PGPASSWORD"] == "s3cr@t"
