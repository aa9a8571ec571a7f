"""utils.remote: Databricks configuration checks, and the course's basic-auth server.

The server tests start a real `mlflow server --app-name basic-auth`; the connection checks
go through MLflow's real client to real sockets (an unresolvable name, a closed port, a
silent port, a real MLflow server that refuses the token).
"""

import os
import socket
import stat
import subprocess
import time

import mlflow
import pytest
import requests
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import ENDPOINT_NOT_FOUND, PERMISSION_DENIED

from tools import scan_secrets
from utils import remote
from utils.errors import CourseError
from utils.workspace import get_workspace

# Shaped like real tokens, built from parts so no file of the course contains one.
TOKEN = "dapi" + "0123456789abcdef" * 2
TOKEN_WITH_SUFFIX = "dapi" + "fedcba9876543210" * 2 + "-2"
HOST = "https://dbc-1234abcd-5678.cloud.databricks.com"
# RFC 6761: names under .invalid never resolve, with or without internet access.
UNRESOLVABLE = "https://dbc-1234abcd-5678.invalid"


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv(remote.BACKEND_STORE_ENV, raising=False)
    return get_workspace()


def _profiles(tmp_path, text):
    path = tmp_path / "databrickscfg"
    path.write_text(text)
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
    assert remote.mask_uri("http://127.0.0.1:5000/#/experiments/0") == "http://127.0.0.1:5000/#/experiments/0"
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


# -- reading the configuration ------------------------------------------------------------------
def test_configuration_from_the_environment_is_shown_masked(tmp_path):
    config = remote.read_databricks_config(
        environ={"DATABRICKS_HOST": HOST + "/", "DATABRICKS_TOKEN": TOKEN},
        config_file=tmp_path / "none",
    )
    assert (config.host, config.token, config.tracking_uri) == (HOST, TOKEN, "databricks")
    for shown in (repr(config), str(config), config.describe(), f"{config}", f"{config!r}", str([config])):
        assert TOKEN not in shown
        assert "dapi…cdef" in shown


def test_the_host_parameter_replaces_the_host_variable_but_the_token_stays_in_the_environment(tmp_path):
    environ = {"DATABRICKS_HOST": "https://other.cloud.databricks.com", "DATABRICKS_TOKEN": TOKEN}
    config = remote.read_databricks_config(host=HOST, environ=environ, config_file=tmp_path / "none")
    assert config.host == HOST
    with pytest.raises(CourseError, match=r"databricks_host is set but DATABRICKS_TOKEN is not.*never takes a token"):
        remote.read_databricks_config(host=HOST, environ={}, config_file=tmp_path / "none")


def test_a_malformed_host_parameter_is_named_as_the_parameter(tmp_path):
    with pytest.raises(CourseError, match="^databricks_host does not start with https://"):
        remote.read_databricks_config(
            host="dbc.example.com", environ={"DATABRICKS_TOKEN": TOKEN}, config_file=tmp_path / "none"
        )


def test_half_a_configuration_says_what_is_missing(tmp_path):
    with pytest.raises(CourseError, match="DATABRICKS_TOKEN is set but DATABRICKS_HOST is not"):
        remote.read_databricks_config(environ={"DATABRICKS_TOKEN": TOKEN}, config_file=tmp_path / "none")
    with pytest.raises(CourseError, match="DATABRICKS_HOST is set but DATABRICKS_TOKEN is not"):
        remote.read_databricks_config(environ={"DATABRICKS_HOST": HOST}, config_file=tmp_path / "none")


def test_no_configuration_at_all_is_none(tmp_path):
    assert remote.read_databricks_config(environ={}, config_file=tmp_path / "none") is None


def test_named_and_default_profiles_of_databrickscfg(tmp_path):
    path = _profiles(
        tmp_path,
        f"[DEFAULT]\nhost = {HOST}/\ntoken = {TOKEN}\n\n"
        f"[staging]\nhost = https://dbc-0f9e8d7c-6b5a.cloud.databricks.com\ntoken = {TOKEN_WITH_SUFFIX}\n",
    )
    default = remote.read_databricks_config(environ={}, config_file=path)
    assert (default.host, default.token, default.tracking_uri) == (HOST, TOKEN, "databricks")
    staging = remote.read_databricks_config(profile="staging", environ={}, config_file=path)
    assert staging.tracking_uri == "databricks://staging" and staging.token == TOKEN_WITH_SUFFIX
    assert "profile [staging]" in staging.source and TOKEN_WITH_SUFFIX not in repr(staging)
    # DATABRICKS_CONFIG_PROFILE names a profile as MLflow's own lookup does; the file's
    # location comes from DATABRICKS_CONFIG_FILE.
    from_env = remote.read_databricks_config(
        environ={"DATABRICKS_CONFIG_PROFILE": "staging", "DATABRICKS_CONFIG_FILE": str(path)}
    )
    assert from_env.profile == "staging"


def test_profile_problems_are_explained(tmp_path):
    path = _profiles(tmp_path, f"[staging]\nhost = {HOST}\n\n[bad]\nhost = {HOST}\ntoken = dapi-oops\n")
    with pytest.raises(CourseError, match=r"no profile \[prod\].*profiles there: staging, bad"):
        remote.read_databricks_config(profile="prod", environ={}, config_file=path)
    with pytest.raises(CourseError, match=r"profile \[staging\].*has no `token = \.\.\.` line"):
        remote.read_databricks_config(profile="staging", environ={}, config_file=path)
    with pytest.raises(CourseError, match=r"^`token` in the profile \[bad\].*does not look like"):
        remote.read_databricks_config(profile="bad", environ={}, config_file=path)
    with pytest.raises(CourseError, match="there is no"):
        remote.read_databricks_config(profile="staging", environ={}, config_file=tmp_path / "missing")
    with pytest.raises(CourseError, match="leave `databricks_host` empty"):
        remote.read_databricks_config(host=HOST, profile="staging", environ={}, config_file=path)


# -- trying the connection (real sockets, no mocks) ---------------------------------------------
def _restored_environment():
    return {k: v for k, v in os.environ.items() if k.startswith(("MLFLOW_HTTP", "MLFLOW_ENABLE_DB", "DATABRICKS"))}


def test_an_unresolvable_host_is_reported_in_one_sentence_quickly():
    before = _restored_environment()
    started = time.monotonic()
    result = remote.check_databricks_connection(remote.DatabricksConfig(UNRESOLVABLE, TOKEN), timeout=5)
    assert time.monotonic() - started < 20
    assert not result.ok
    assert result.message.startswith(f"The host name of {UNRESOLVABLE} could not be resolved")
    assert TOKEN not in result.message and result.message.count(". ") == 0
    assert _restored_environment() == before  # the short timeout was for that call only


def test_a_closed_port_is_reported_as_no_connection():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = remote.check_databricks_connection(remote.DatabricksConfig(f"https://127.0.0.1:{port}", TOKEN))
    assert not result.ok and result.message.startswith(f"Could not connect to https://127.0.0.1:{port}")


@pytest.mark.full
def test_a_host_that_never_answers_times_out_within_the_limit():
    with socket.socket() as silent:  # accepts connections (backlog) but never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(5)
        host = f"https://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        result = remote.check_databricks_connection(remote.DatabricksConfig(host, TOKEN), timeout=2)
        elapsed = time.monotonic() - started
    assert not result.ok and result.message == (
        f"{host} did not answer within 2 s: the network is slow or blocked (firewall, proxy, VPN)."
    )
    assert elapsed < 15


@pytest.mark.parametrize(
    "error_code, expected",
    [(PERMISSION_DENIED, "refused the token (HTTP 403)"), (ENDPOINT_NOT_FOUND, "not with MLflow's API (HTTP 404)")],
)
def test_http_refusals_from_databricks_are_explained(error_code, expected):
    error = MlflowException("Invalid access token.", error_code=error_code)
    assert expected in remote.explain_databricks_error(error, HOST)


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
def test_a_user_logs_a_run_with_an_artifact_and_reads_it_back(auth_server, monkeypatch):
    workspace, auth, server = auth_server
    password = "pw-" + os.urandom(8).hex()
    assert remote.ensure_user(server.url, auth, "alice", password) == "created"
    experiment_id = remote.grant_experiment(server.url, auth, "remote-test", "alice", "EDIT")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    client = mlflow.MlflowClient(tracking_uri=server.url)
    run = client.create_run(experiment_id)
    client.log_param(run.info.run_id, "lr", "0.01")
    client.log_text(run.info.run_id, "hello", "notes/hello.txt")
    client.set_terminated(run.info.run_id)
    assert client.get_run(run.info.run_id).data.params == {"lr": "0.01"}
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
    stored = workspace.artifacts_dir / experiment_id / run.info.run_id / "artifacts" / "notes" / "hello.txt"
    assert stored.read_text() == "hello"  # uploaded through the server into the workspace
    # A second call resets the password instead of failing on the existing user.
    assert remote.ensure_user(server.url, auth, "alice", password + "x") == "updated"
    with pytest.raises(MlflowException) as error:
        client.get_run(run.info.run_id)
    assert "refused the login (HTTP 401 Unauthorized)" in remote.explain_tracking_error(error.value, server.url)


@pytest.mark.full
def test_a_user_without_permission_gets_a_403_explained(auth_server):
    _, auth, server = auth_server
    password = "pw-" + os.urandom(8).hex()
    remote.ensure_user(server.url, auth, "bob", password)
    experiment_id = remote.grant_experiment(server.url, auth, "admins-only", "bob", "READ")
    with remote.tracking_credentials("bob", password):
        client = mlflow.MlflowClient(tracking_uri=server.url)
        assert client.get_experiment(experiment_id).name == "admins-only"  # READ: may look
        with pytest.raises(MlflowException) as error:
            client.create_run(experiment_id)  # but not write
    assert "(HTTP 403 Forbidden)" in remote.explain_tracking_error(error.value, server.url)
    assert os.environ.get("MLFLOW_TRACKING_PASSWORD") != password  # the block's credentials are gone
    # Granting again (a second run of the notebook) replaces the earlier grant.
    assert remote.grant_experiment(server.url, auth, "admins-only", "bob", "EDIT") == experiment_id
    with remote.tracking_credentials("bob", password):
        assert mlflow.MlflowClient(tracking_uri=server.url).create_run(experiment_id).info.run_id


@pytest.mark.full
def test_a_refused_databricks_token_is_explained_as_such(auth_server, tmp_path):
    # The auth server refuses the bearer token exactly as an expired one would be refused.
    _, _, server = auth_server
    result = remote.check_databricks_connection(remote.DatabricksConfig(server.url, TOKEN))
    assert not result.ok and "refused the token (HTTP 401)" in result.message
    # The same through a named profile: MLflow reads host and token from the file.
    path = _profiles(tmp_path, f"[course]\nhost = {server.url}\ntoken = {TOKEN}\n")
    config = remote.DatabricksConfig(server.url, TOKEN, profile="course", config_file=path)
    assert config.tracking_uri == "databricks://course"
    result = remote.check_databricks_connection(config)
    assert not result.ok and "refused the token (HTTP 401)" in result.message
    # ... and the profile really is where the host comes from: a wrong one fails differently.
    path.write_text(f"[course]\nhost = {UNRESOLVABLE}\ntoken = {TOKEN}\n")
    assert "could not be resolved" in remote.check_databricks_connection(config).message


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
