"""utils.remote: the Databricks configuration as databricks-sdk reads it, and the course's
basic-auth server (its login file, its backend store).

Configurations are real files and variables read by the real databricks-sdk; the SDK's own
connection check (as notebook 02 makes it) goes to real sockets (a closed port, a server that
refuses the token). The basic-auth server itself answers notebook 02 (tests/test_notebook02.py)
and its exercise 02.2 (tests/test_exercises_02.py).
"""

import contextlib
import http.server
import socket
import socketserver
import stat
import subprocess
import threading
from unittest import mock

import pytest

from utils import remote
from utils.errors import CourseError
from utils.workspace import mask_uri

# Shaped like real tokens, built from parts so no file of the course contains one.
TOKEN = "dapi" + "0123456789abcdef" * 2
TOKEN_WITH_SUFFIX = "dapi" + "fedcba9876543210" * 2 + "-2"
HOST = "https://dbc-1234abcd-5678.cloud.databricks.com"


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


@contextlib.contextmanager
def _local_server(handler, scheme="http"):
    """A server on a free loopback port that answers with ``handler``; yields its address."""
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield f"{scheme}://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()


class _Counting(socketserver.BaseRequestHandler):
    """Accepts a connection, counts it, and closes it at once."""

    accepted = 0

    def handle(self):
        type(self).accepted += 1


def test_reading_a_configuration_never_contacts_the_host(tmp_path, databricks_env):
    with _local_server(_Counting, "https") as url:
        # Unchanged, databricks-sdk's Config asks the host for its settings while it is
        # created: this is what the course's reader must not do.
        from databricks.sdk.core import Config

        Config(host=url, token=TOKEN, retry_timeout_seconds=1, http_timeout_seconds=1)
        assert _Counting.accepted >= 1
        _Counting.accepted = 0
        databricks_env.setenv("DATABRICKS_HOST", url)
        databricks_env.setenv("DATABRICKS_TOKEN", TOKEN)
        assert remote.read_databricks_config().host == url
        path = _profiles(tmp_path, f"[course]\nhost = {url}\ntoken = {TOKEN}\n")
        databricks_env.delenv("DATABRICKS_HOST")
        databricks_env.delenv("DATABRICKS_TOKEN")
        assert remote.read_databricks_config(profile="course", config_file=path).profile == "course"
        assert _Counting.accepted == 0


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


# -- the basic-auth server's login file ------------------------------------------------------------
def test_the_auth_config_is_private_and_reused(workspace):
    auth = remote.prepare_basic_auth(workspace)
    assert stat.S_IMODE(auth.config_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(auth.config_path.parent.stat().st_mode) == 0o700
    assert auth.admin_password != "password1234" and len(auth.admin_password) >= 24
    assert remote.prepare_basic_auth(workspace).admin_password == auth.admin_password
    assert auth.admin_password not in repr(auth)


class _RefusesTokens(http.server.BaseHTTPRequestHandler):
    """What a Databricks workspace answers a token it does not know (an expired one, say)."""

    def do_GET(self):  # noqa: N802 - http.server's name
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"error_code": "UNAUTHENTICATED", "message": "Invalid access token."}')

    def log_message(self, *args):
        pass


def test_a_refused_databricks_token_raises_the_sdks_error(databricks_env):
    # Notebook 02 prints what databricks-sdk raises, with the token masked.
    from databricks.sdk.errors import Unauthenticated

    with _local_server(_RefusesTokens) as url, pytest.raises(Unauthenticated) as error:  # the SDK's HTTP 401
        _me(url, 5)
    assert TOKEN not in remote.redact(str(error.value), [TOKEN])


def test_an_auth_database_without_its_config_is_started_afresh(workspace):
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
