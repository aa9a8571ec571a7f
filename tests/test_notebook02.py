"""Notebook 02 run headless by papermill, as readers with credentials would run it.

With well-formed Databricks credentials and no network the notebook runs to the end without
contacting anything, and the token is shown masked and appears nowhere else (executed
notebook, server logs, workspace files); the run on the notebook's own server is there and
not in the local store; the team server's login file is shown with its admin password
masked, an anonymous request gets 401 and the student's run without a grant 403; the course
server's passwords are never shown; a second run in the same workspace works, and leaves the
server that MLFLOW_TRACKING_URI names untouched; no server is left running; the team server
runs on PostgreSQL.
"""

import os
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest

from tests.notebook_runner import course_env, execute, noise_in, output_text, separate_server, servers_of
from tools import scan_secrets
from utils import remote
from utils.workspace import Workspace, repo_root

ROOT = repo_root()
NOTEBOOK = ROOT / "notebooks" / "02_remote_databricks_config.ipynb"
TOKEN = "dapi" + "0123456789abcdef" * 2  # well-formed, not real (built from parts)
HOST = "https://dbc-1234abcd-5678.cloud.databricks.com"
# Variables of the test process that must not leak into the notebook's kernel.
_CLEARED = ("DATABRICKS_", "MLFLOW_TRACKING_", "COURSE_BACKEND_STORE_URI", "PGPASSWORD")

pytestmark = pytest.mark.full


@dataclass
class Executed:
    notebook: object  # as nbformat reads it
    text: str  # the executed notebook file as it is saved (sources, outputs, metadata)
    workspace: Workspace

    @property
    def outputs(self) -> str:
        return output_text(self.notebook)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.workspace.logs_dir.glob("*.log")))

    def admin_password(self) -> str:
        return remote.prepare_basic_auth(self.workspace).admin_password


def run_notebook(workspace_dir: Path, output: Path, env: dict, parameters: dict | None = None) -> Executed:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(_CLEARED)}
    notebook = execute(NOTEBOOK, output, parameters, env=course_env(workspace_dir, base=environment, **env))
    assert servers_of(workspace_dir) == [], "notebook 02 left a server running"
    return Executed(notebook, output.read_text(encoding="utf-8"), Workspace(workspace_dir.resolve()))


def student_password_leaks(workspace: Workspace, text: str) -> list[str]:
    """Words of ``text`` that are the student's password, checked against the hash the
    server stored (the password itself was only ever in the notebook's kernel)."""
    from werkzeug.security import check_password_hash

    with sqlite3.connect(workspace.path / "auth" / "basic_auth.db") as db:
        (password_hash,) = db.execute("SELECT password_hash FROM users WHERE username = 'student'").fetchone()
    # secrets.token_urlsafe(16) gives 22 characters of the URL-safe alphabet.
    candidates = set(re.findall(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{22}(?![A-Za-z0-9_-])", text))
    return [word for word in candidates if check_password_hash(password_hash, word)]


def test_the_student_password_detector_finds_a_leak(tmp_path):
    from werkzeug.security import generate_password_hash

    (tmp_path / "auth").mkdir()
    leaked = "Abc_def-ghiJKLmno12345"
    with sqlite3.connect(tmp_path / "auth" / "basic_auth.db") as db:
        db.execute("CREATE TABLE users (username TEXT, password_hash TEXT)")
        db.execute("INSERT INTO users VALUES ('student', ?)", (generate_password_hash(leaked),))
    workspace = Workspace(tmp_path)
    assert student_password_leaks(workspace, f'"text": ["password: {leaked}\\n"]') == [leaked]
    assert student_password_leaks(workspace, "nothing to see: Abc_def-ghiJKLmno12346") == []


@pytest.fixture(scope="module")
def shared_workspace(tmp_path_factory):
    return tmp_path_factory.mktemp("nb02") / "ws"


@pytest.fixture(scope="module")
def with_credentials(shared_workspace, tmp_path_factory):
    """A reader with well-formed (fake) Databricks credentials and no network."""
    output = tmp_path_factory.mktemp("out") / "02-credentials.ipynb"
    return run_notebook(shared_workspace, output, {"DATABRICKS_HOST": HOST, "DATABRICKS_TOKEN": TOKEN})


def test_credentials_are_shown_masked_and_nothing_is_contacted(with_credentials):
    outputs = with_credentials.outputs
    assert f"<Config: host={HOST}, token=***" in outputs  # databricks-sdk's own masking
    assert "Env: DATABRICKS_HOST, DATABRICKS_TOKEN>" in outputs
    assert "Not contacting Databricks (check_databricks_connection = False)." in outputs


def test_the_token_is_nowhere_in_the_notebook_the_logs_or_the_workspace(with_credentials):
    assert TOKEN not in with_credentials.text
    assert scan_secrets.find_secrets(with_credentials.text, [TOKEN]) == []
    assert scan_secrets.scan_files([with_credentials.workspace.path], [TOKEN]) == []
    assert "401" in with_credentials.logs()  # the logs were there to be scanned


def test_the_course_server_passwords_are_never_shown(with_credentials):
    admin = with_credentials.admin_password()
    findings = scan_secrets.find_secrets(with_credentials.text + with_credentials.logs(), [admin])
    # Only the count is compared, so that a failure does not print the leaked password.
    leaks = len(student_password_leaks(with_credentials.workspace, with_credentials.text + with_credentials.logs()))
    assert findings == [] and leaks == 0


def test_the_run_is_on_the_notebooks_server_and_not_in_the_local_store(with_credentials):
    outputs = with_credentials.outputs
    run_id = re.search(r"run id: +([0-9a-f]{32})", outputs)[1]
    assert "artifact URI: mlflow-artifacts:/" in outputs and "on the server's disk: ['remote-server/artifacts/" in outputs
    assert "local store: RESOURCE_DOES_NOT_EXIST" in outputs and "the server:  {'val_acc': 0.75}" in outputs
    workspace = with_credentials.workspace
    server_store = f"sqlite:///{workspace.path / 'remote-server' / 'mlflow.db'}"
    assert mlflow.MlflowClient(tracking_uri=server_store).get_run(run_id).data.metrics == {"val_acc": 0.75}
    assert run_id.encode() not in workspace.db_path.read_bytes()
    assert "server stopped: True" in outputs


REFUSED = ("403 PERMISSION_DENIED | API request to endpoint /api/2.0/mlflow/runs/create failed "
           "with error code 403")


def test_the_team_server_shows_its_login_file_and_says_401_and_403(with_credentials):
    outputs = with_credentials.outputs
    assert "[mlflow]\ndefault_permission = READ\n" in outputs and "admin_password = ****\n" in outputs
    assert "permissions: 0o600" in outputs
    assert "401 Unauthorized" in outputs  # the anonymous request
    assert "logged in as admin | password: ****" in outputs
    assert "user 'student' created | experiment course-02-team:" in outputs
    assert REFUSED in outputs  # the student's run, without a grant
    assert "read from the database: experiment course-02-team" in outputs
    assert "team server stopped: True" in outputs


def test_the_outputs_are_quiet(with_credentials):
    assert noise_in(with_credentials.notebook.cells) == [] and "Warning" not in with_credentials.outputs


@pytest.fixture
def other_server(tmp_path):
    """A reader's own tracking server, as `MLFLOW_TRACKING_URI` would name it: its own SQLite
    store, artifacts proxied."""
    with separate_server(tmp_path / "readers-server", proxied=True) as server:
        yield server


def _contents(url: str) -> tuple[list[str], list[str]]:
    client = mlflow.MlflowClient(tracking_uri=url)
    experiments = client.search_experiments()
    runs = client.search_runs([e.experiment_id for e in experiments])
    return sorted(e.name for e in experiments), sorted(r.info.run_id for r in runs)


def test_a_second_run_with_a_readers_tracking_uri_and_a_token_without_host(with_credentials, shared_workspace,
                                                                            other_server, tmp_path):
    # Runs after the first run, in the same workspace: the notebook also runs twice in a row.
    before = _contents(other_server.url)
    log_before = other_server.log_path.read_text()
    executed = run_notebook(
        shared_workspace,
        tmp_path / "02-second.ipynb",
        {"DATABRICKS_TOKEN": TOKEN, "MLFLOW_TRACKING_URI": other_server.url},
        {"check_databricks_connection": True},
    )
    # The reader's server was not asked anything while the notebook ran, and holds what it held.
    during = other_server.log_path.read_text()[len(log_before):]
    assert "/api/" not in during and "/ajax-api/" not in during, during
    assert _contents(other_server.url) == before
    outputs = executed.outputs
    assert "The Databricks configuration needs fixing:" in outputs
    assert "The Databricks configuration has no host: export DATABRICKS_HOST" in outputs
    assert "Nothing to check: there is no valid Databricks configuration." in outputs
    assert "user 'student' created" in outputs and REFUSED in outputs  # made afresh: the 403 again
    assert "local store: RESOURCE_DOES_NOT_EXIST" in outputs
    assert TOKEN not in executed.text
    assert scan_secrets.scan_files([shared_workspace], [TOKEN]) == []


POSTGRES_URI = os.environ.get("COURSE_TEST_POSTGRES_URI", "")


@pytest.mark.skipif(
    not POSTGRES_URI,
    reason="no PostgreSQL: run `.ci/postgres.sh start build/postgres.env && source build/postgres.env` "
    "to set COURSE_TEST_POSTGRES_URI",
)
def test_the_team_server_runs_on_postgresql(tmp_path):
    password = scan_secrets.uri_password(POSTGRES_URI)
    unresolvable = "https://dbc-1234abcd-5678.invalid"
    executed = run_notebook(
        tmp_path / "ws",
        tmp_path / "02-postgres.ipynb",
        {"COURSE_BACKEND_STORE_URI": POSTGRES_URI, "DATABRICKS_HOST": unresolvable, "DATABRICKS_TOKEN": TOKEN},
        {"check_databricks_connection": True},
    )
    outputs = executed.outputs
    assert "backend store: postgresql+psycopg2://" in outputs and ":****@" in outputs
    assert "The check failed (" in outputs  # databricks-sdk's own error, printed by the cell
    assert REFUSED in outputs
    # The team's experiment is in PostgreSQL, not in the workspace's SQLite file.
    store = remote.resolve_backend_store("", environ={"COURSE_BACKEND_STORE_URI": POSTGRES_URI})
    assert mlflow.MlflowClient(tracking_uri=store.uri).get_experiment_by_name("course-02-team") is not None
    assert "read from the database: experiment course-02-team" in outputs
    sqlite_file = executed.workspace.db_path
    assert not sqlite_file.exists() or b"course-02-team" not in sqlite_file.read_bytes()
    # Its password is nowhere: not in the notebook, not in the logs or other workspace files.
    # (Findings are computed first: pytest would print a failing call's arguments.)
    assert password, "COURSE_TEST_POSTGRES_URI should carry a password"
    in_notebook = scan_secrets.find_secrets(executed.text, [password, TOKEN, executed.admin_password()])
    in_workspace = scan_secrets.scan_files([executed.workspace.path], [password, TOKEN])
    assert in_notebook == [] and in_workspace == []
