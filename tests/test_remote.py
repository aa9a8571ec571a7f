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
def test_a_token_is_shown_by_its_first_and_last_four_characters_only():
    assert remote.mask_token(TOKEN) == "dapi…cdef"
    assert remote.mask_token(TOKEN_WITH_SUFFIX) == "dapi…10-2"
    assert remote.mask_token("not-a-token-at-all") == "****"
    assert remote.mask_token("") == "(not set)"


def test_uri_passwords_are_masked_and_removable():
    store = remote.BackendStore("postgresql://course:s3cr%40t@db:5432/mlflow", "test")
    assert store.masked == "postgresql://course:****@db:5432/mlflow"
    assert store.password == "s3cr@t"  # decoded, as PostgreSQL expects it
    assert store.uri_without_password == "postgresql://course@db:5432/mlflow"
    assert "s3cr" not in repr(store) and "s3cr" not in str(store)
    assert mask_uri("http://127.0.0.1:5000/#/experiments/0") == "http://127.0.0.1:5000/#/experiments/0"
    assert remote.uri_password("postgresql://course:<password>@db/mlflow") is None


# -- host and token checks ----------------------------------------------------------------
@pytest.mark.parametrize(
    "host, expected",
    [
        (HOST, HOST),
        (HOST + "/", HOST),
        ("https://adb-1234567890123456.7.azuredatabricks.net", "https://adb-1234567890123456.7.azuredatabricks.net"),
        ("https://dbc.example.com:8443/", "https://dbc.example.com:8443"),
    ],
)
def test_workspace_urls_are_accepted_without_a_trailing_slash(host, expected):
    assert remote.check_databricks_host(host) == expected


@pytest.mark.parametrize(
    "host, problem",
    [
        ("dbc-1234abcd-5678.cloud.databricks.com", "does not start with https://"),
        ("http://dbc-1234abcd-5678.cloud.databricks.com", "does not start with https://"),
        (HOST + "/?o=1234567890", "something after the host name"),
        (HOST + "/browse/folders", "something after the host name"),
        (HOST + "#settings", "something after the host name"),
        (" " + HOST, "spaces, quotes or a line break"),
        ('"' + HOST + '"', "spaces, quotes or a line break"),
        ("https://", "has no host name"),
        ("https://user:pw@dbc.example.com", "user name or password"),
    ],
)
def test_malformed_hosts_get_a_message_naming_the_variable_and_a_valid_example(host, problem):
    with pytest.raises(CourseError) as error:
        remote.check_databricks_host(host)
    message = str(error.value)
    assert message.startswith("DATABRICKS_HOST ") and problem in message
    assert remote.EXAMPLE_HOST in message


def test_a_token_pasted_into_the_host_variable_is_not_echoed():
    with pytest.raises(CourseError) as error:
        remote.check_databricks_host(TOKEN)
    assert TOKEN not in str(error.value)


@pytest.mark.parametrize("token", [TOKEN, TOKEN_WITH_SUFFIX])
def test_personal_access_tokens_pass(token):
    remote.check_databricks_token(token)


@pytest.mark.parametrize(
    "token, hint",
    [
        ("dapi" + "0123456789abcdef", "has 20 characters"),
        (TOKEN + "0", "has 37 characters"),
        (TOKEN.upper().replace("DAPI", "dapi"), "characters other than 0-9 and a-f"),
        ("ghp_" + "a" * 32, "does not start with `dapi`"),
        (TOKEN + "\n", "spaces, quotes or a line break"),
        (f"'{TOKEN}'", "spaces, quotes or a line break"),
    ],
)
def test_malformed_tokens_are_described_but_never_echoed(token, hint):
    with pytest.raises(CourseError) as error:
        remote.check_databricks_token(token)
    message = str(error.value)
    assert message.startswith("DATABRICKS_TOKEN does not look like a Databricks personal access token")
    assert hint in message and "`dapi` followed by 32 hexadecimal characters" in message
    assert token.strip("'\n") not in message and token[4:20] not in message


# -- reading the configuration through databricks-sdk ------------------------------------------
def test_configuration_from_the_environment_is_shown_masked(databricks_env):
    databricks_env.setenv("DATABRICKS_HOST", HOST + "/")
    databricks_env.setenv("DATABRICKS_TOKEN", TOKEN)
    config = remote.read_databricks_config()
    assert (config.host, config.token, config.tracking_uri) == (HOST, TOKEN, "databricks")
    assert config.host_from == "DATABRICKS_HOST" and config.config_file is None
    for shown in (repr(config), str(config), config.describe(), f"{config}", f"{config!r}", str([config])):
        assert TOKEN not in shown
        assert "dapi…cdef" in shown


def test_the_sdk_completes_a_host_without_https(databricks_env):
    # databricks-sdk adds the scheme itself, so MLflow accepts such a host; the course does too.
    databricks_env.setenv("DATABRICKS_HOST", "dbc-1234abcd-5678.cloud.databricks.com")
    databricks_env.setenv("DATABRICKS_TOKEN", TOKEN)
    assert remote.read_databricks_config().host == HOST


def test_a_malformed_variable_is_named(databricks_env):
    databricks_env.setenv("DATABRICKS_HOST", "http://dbc-1234abcd-5678.cloud.databricks.com")
    databricks_env.setenv("DATABRICKS_TOKEN", TOKEN)
    with pytest.raises(CourseError, match="^DATABRICKS_HOST does not start with https://"):
        remote.read_databricks_config()
    databricks_env.setenv("DATABRICKS_HOST", HOST)
    databricks_env.setenv("DATABRICKS_TOKEN", TOKEN + "zz")
    with pytest.raises(CourseError, match="^DATABRICKS_TOKEN does not look like") as error:
        remote.read_databricks_config()
    assert TOKEN not in str(error.value)


def test_half_a_configuration_says_what_is_missing(databricks_env):
    databricks_env.setenv("DATABRICKS_TOKEN", TOKEN)
    with pytest.raises(CourseError, match=r"A token was found \(DATABRICKS_TOKEN\) but no host"):
        remote.read_databricks_config()
    databricks_env.delenv("DATABRICKS_TOKEN")
    databricks_env.setenv("DATABRICKS_HOST", HOST)
    with pytest.raises(CourseError, match=r"A host was found \(DATABRICKS_HOST\) but no personal access token"):
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
    assert (default.host, default.token, default.tracking_uri) == (HOST, TOKEN, "databricks")
    assert default.host_from == f"profile [DEFAULT] of {path}" and default.config_file == path
    staging = remote.read_databricks_config(profile="staging", config_file=path)
    assert staging.tracking_uri == "databricks://staging" and staging.token == TOKEN_WITH_SUFFIX
    assert f"from         : profile [staging] of {path}" in str(staging)
    assert TOKEN_WITH_SUFFIX not in repr(staging) + str(staging)
    # The SDK reads DATABRICKS_CONFIG_PROFILE and DATABRICKS_CONFIG_FILE, as MLflow's lookup does.
    databricks_env.setenv("DATABRICKS_CONFIG_PROFILE", "staging")
    databricks_env.setenv("DATABRICKS_CONFIG_FILE", str(path))
    assert remote.read_databricks_config().profile == "staging"


def test_a_variable_wins_over_the_profile_value_by_value(tmp_path, databricks_env):
    # databricks-sdk's order, and so MLflow's for databricks://staging too.
    path = _profiles(tmp_path, f"[staging]\nhost = https://dbc-0f9e8d7c-6b5a.cloud.databricks.com\ntoken = {TOKEN}\n")
    databricks_env.setenv("DATABRICKS_HOST", HOST)
    config = remote.read_databricks_config(profile="staging", config_file=path)
    assert config.host == HOST and config.host_from == "DATABRICKS_HOST"
    assert config.token_from == f"profile [staging] of {path}"
    assert "(from DATABRICKS_HOST)" in str(config) and f"(from profile [staging] of {path})" in str(config)


def test_profile_problems_are_explained(tmp_path, databricks_env):
    path = _profiles(tmp_path, f"[staging]\nhost = {HOST}\n\n[bad]\nhost = {HOST}\ntoken = dapi-oops\n"
                               f"\n[azure]\nhost = https://adb-1.7.azuredatabricks.net/?o=1\ntoken = {TOKEN}\n")
    with pytest.raises(CourseError, match=r"no profile \[Staging\].*profiles there: \[staging\], \[bad\], \[azure\]\)\. Names are case-sensitive"):
        remote.read_databricks_config(profile="Staging", config_file=path)
    with pytest.raises(CourseError, match=r"profile \[staging\].*but no personal access token"):
        remote.read_databricks_config(profile="staging", config_file=path)
    with pytest.raises(CourseError, match=r"^`token` in the profile \[bad\].*does not look like"):
        remote.read_databricks_config(profile="bad", config_file=path)
    with pytest.raises(CourseError, match=r"^`host` in the profile \[azure\].*something after the host name"):
        remote.read_databricks_config(profile="azure", config_file=path)
    with pytest.raises(CourseError, match=r"Profile \[staging\] was asked for, but there is no file"):
        remote.read_databricks_config(profile="staging", config_file=tmp_path / "missing")
    broken = tmp_path / "broken"
    broken.write_text(f"host = {HOST}\n")
    with pytest.raises(CourseError, match="is not a valid Databricks config file"):
        remote.read_databricks_config(config_file=broken)


def test_a_config_file_others_can_read_is_refused_with_the_fix(tmp_path, databricks_env):
    path = _profiles(tmp_path, f"[practice]\nhost = {HOST}\ntoken = {TOKEN}\n", mode=0o644)
    with pytest.raises(CourseError, match=r"other users of this machine can read it \(mode 644\).*chmod 600") as error:
        remote.read_databricks_config(profile="practice", config_file=path)
    assert TOKEN not in str(error.value)
    # A file that is not read (both values from variables) is none of the reader's business.
    databricks_env.setenv("DATABRICKS_HOST", HOST)
    databricks_env.setenv("DATABRICKS_TOKEN", TOKEN)
    assert remote.read_databricks_config(config_file=path).config_file is None


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
        remote.read_databricks_config(profile="course", config_file=path).sdk_config(timeout=1)
        assert listener.accepted == 0
    finally:
        listener.close()


# -- trying the connection: databricks-sdk's own call, as notebook 02 makes it ------------------
def test_the_sdk_check_of_a_closed_port_fails_with_the_sdks_error_and_no_token(databricks_env):
    from databricks.sdk import WorkspaceClient

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = remote.DatabricksConfig(f"https://127.0.0.1:{port}", TOKEN)
    with pytest.raises(Exception) as error:  # noqa: B017 - whatever the SDK raises, the cell prints it
        WorkspaceClient(config=config.sdk_config(timeout=2)).current_user.me()
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
    assert stat.S_IMODE(auth.directory.stat().st_mode) == 0o700
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
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.errors import Unauthenticated

    _, _, server = auth_server
    config = remote.DatabricksConfig(server.url, TOKEN)
    with pytest.raises(Unauthenticated) as error:  # the SDK's HTTP 401
        WorkspaceClient(config=config.sdk_config(timeout=5)).current_user.me()
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
    assert store.uri == workspace.backend_store_uri and store.kind == "sqlite"


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
