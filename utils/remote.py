"""Remote tracking servers: the Databricks host and token MLflow would use, read by
databricks-sdk without contacting anything and shown masked; and the course's team server
(``mlflow server --app-name basic-auth``), whose passwords never reach a command line or output.
"""

from __future__ import annotations

import configparser
import os
import re
import secrets
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

from utils.env import temporary_environment
from utils.errors import CourseError
from utils.i18n import gettext as _
from utils.workspace import URI_PASSWORD, Workspace, get_workspace, mask_uri

HOST_ENV = "DATABRICKS_HOST"
TOKEN_ENV = "DATABRICKS_TOKEN"
BACKEND_STORE_ENV = "COURSE_BACKEND_STORE_URI"
USERNAME_ENV = "MLFLOW_TRACKING_USERNAME"
PASSWORD_ENV = "MLFLOW_TRACKING_PASSWORD"
# A Databricks personal access token, widened (any case, a-h) so that near-tokens count too.
TOKEN_LIKE = re.compile(r"dapi[0-9a-h]{32}(?:-[0-9]+)?", re.IGNORECASE)


def redact(text: str, known: Iterable[str] = ()) -> str:
    """``text`` with token-shaped strings, URI passwords and the ``known`` secrets masked."""
    for secret in sorted({s for s in known if s and len(s) >= 6}, key=len, reverse=True):
        text = text.replace(secret, "****")
    return mask_uri(TOKEN_LIKE.sub(lambda m: f"{m[0][:4]}…{m[0][-4:]}", text))


def _offline_settings():
    """databricks-sdk's ``Config`` resolving the settings only (the SDK's own code), without
    asking the host for ``/.well-known/databricks-config`` (retried for minutes offline):
    tests/test_remote.py fails if that step changes."""
    from databricks.sdk.core import Config

    class OfflineSettings(Config):
        _attributes = Config.attributes()  # the SDK lists the settings of the class itself

        def _resolve_host_metadata(self) -> None:
            return None

        def init_auth(self) -> None:  # credentials are checked by a request, if at all
            return None

    return OfflineSettings


def read_databricks_config(profile: str = "", config_file: str | Path | None = None):
    """databricks-sdk's settings for a ``databricks`` tracking URI (variables first, then
    the profile of the config file), or None when there are none; contacts nothing."""
    try:
        config = _offline_settings()(profile=profile.strip() or None,
                                     config_file=str(config_file) if config_file else None)
    except (ValueError, configparser.Error) as error:
        raise CourseError(_("databricks-sdk cannot read the Databricks configuration: {error}. "
                            "(Profile names are case-sensitive.)").format(
                                error=redact(str(error)))) from None
    if not config.host and not config.token and not config.profile:
        return None
    path = Path(config.config_file or "~/.databrickscfg").expanduser()
    mode = stat.S_IMODE(path.stat().st_mode) if path.is_file() else 0
    if mode & 0o077:
        raise CourseError(_("{path} may hold tokens, and other users of this machine can read it "
                            "(mode {mode:o}): make it yours only, `chmod 600 {path}`.").format(
                                path=path, mode=mode))
    if not config.host or not config.token:
        if not config.host and not config.token:
            missing = _("The Databricks configuration has no host and no token: export {host_env} "
                        "and {token_env} in the shell that starts Jupyter, or write `host =` and "
                        "`token =` lines into profile [{profile}] of {path}.")
        elif not config.host:
            missing = _("The Databricks configuration has no host: export {host_env} and "
                        "{token_env} in the shell that starts Jupyter, or write `host =` and "
                        "`token =` lines into profile [{profile}] of {path}.")
        else:
            missing = _("The Databricks configuration has no token: export {host_env} and "
                        "{token_env} in the shell that starts Jupyter, or write `host =` and "
                        "`token =` lines into profile [{profile}] of {path}.")
        raise CourseError(missing.format(host_env=HOST_ENV, token_env=TOKEN_ENV,
                                         profile=config.profile or "DEFAULT", path=path))
    return config


def tracking_credentials(username: str, password: str):
    """Use these MLflow credentials for a ``with`` block, then restore the previous ones."""
    return temporary_environment(**{USERNAME_ENV: username, PASSWORD_ENV: password})


@dataclass(frozen=True)
class BasicAuthSetup:
    """The files of the course server's ``basic-auth`` app, and its admin login."""

    config_path: Path
    database_path: Path
    admin_username: str
    admin_password: str = field(repr=False)


def prepare_basic_auth(workspace: Workspace | None = None, admin_username: str = "admin"):
    """Write (once) ``<workspace>/auth/basic_auth.ini``, readable by you only, with a random
    admin password, which MLflow uses when it creates an empty user database, and MLflow's
    cache of checked logins switched on (MLflow 3.17's ``auth_cache_ttl_seconds``)."""
    directory = (workspace or get_workspace()).path / "auth"
    directory.mkdir(mode=0o700, exist_ok=True)
    directory.chmod(0o700)
    files = directory / "basic_auth.ini", directory / "basic_auth.db"
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(files[0], encoding="utf-8")
    saved = parser["mlflow"] if parser.has_section("mlflow") else {}
    if saved.get("admin_username") and saved.get("admin_password"):
        return BasicAuthSetup(*files, saved["admin_username"], saved["admin_password"])
    # Without the file nobody knows the admin password of an old user database: start afresh.
    setup = BasicAuthSetup(*files, admin_username, secrets.token_urlsafe(24))
    setup.database_path.unlink(missing_ok=True)
    parser["mlflow"] = {
        "default_permission": "READ",
        "database_uri": f"sqlite:///{setup.database_path}",
        "admin_username": setup.admin_username,
        "admin_password": setup.admin_password,
        "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
        # Check a login's password hash once a minute, not at every request: each check costs
        # tens of milliseconds, and a search or a training sends thousands of requests.
        "auth_cache_ttl_seconds": "60",
    }
    descriptor = os.open(setup.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        parser.write(handle)
    return setup


@dataclass(frozen=True)
class BackendStore:
    """A backend store URI (shown with its password masked) and where it came from."""

    uri: str = field(repr=False)
    source: str

    @property
    def password(self) -> str | None:
        match = URI_PASSWORD.search(self.uri)
        return unquote(match["pw"]) if match else None

    def __str__(self) -> str:
        return _("{uri}  (from {source})").format(uri=mask_uri(self.uri), source=self.source)


def resolve_backend_store(uri: str = "", workspace: Workspace | None = None,
                          environ: Mapping[str, str] | None = None) -> BackendStore:
    """``uri`` (a notebook parameter, so without a password), else
    ``$COURSE_BACKEND_STORE_URI``, else the workspace's SQLite store."""
    environ = os.environ if environ is None else environ
    if uri.strip():
        store = BackendStore(uri.strip(), _("the notebook parameter backend_store_uri"))
        if store.password:
            raise CourseError(_(
                "backend_store_uri contains a password, and papermill copies parameters into the "
                "executed notebook. Leave it empty and export the URI as {variable}, or drop the "
                "password and give it to PostgreSQL in PGPASSWORD or ~/.pgpass."
            ).format(variable=BACKEND_STORE_ENV))
    elif environ.get(BACKEND_STORE_ENV, "").strip():
        store = BackendStore(environ[BACKEND_STORE_ENV].strip(), f"${BACKEND_STORE_ENV}")
    else:
        workspace = workspace or get_workspace()
        return BackendStore(workspace.backend_store_uri, _("the course workspace"))
    if not re.match(r"(sqlite|postgresql|mysql|mssql)(\+\w+)?://", store.uri):
        raise CourseError(_(
            "{uri!r} (from {source}) is not a database URI MLflow can use as a backend store. "
            "Use e.g. postgresql://USER@HOST:5432/DB or sqlite:///PATH."
        ).format(uri=mask_uri(store.uri), source=store.source))
    # SQLAlchemy 2.1 reads a plain postgresql:// as psycopg 3; the course installs psycopg2.
    if store.uri.startswith("postgresql://"):
        uri = "postgresql+psycopg2://" + store.uri[len("postgresql://"):]
        return BackendStore(uri, _("{source}, driver psycopg2 named by the course").format(
            source=store.source))
    return store


def start_auth_server(workspace: Workspace | None = None, auth: BasicAuthSetup | None = None,
                      backend_store: BackendStore | None = None, port: int = 0, **kwargs):
    """Start ``mlflow server --app-name basic-auth`` on loopback, artifacts proxied into the
    workspace, after one connection to the database, whose password goes in ``PGPASSWORD``."""
    from utils.tracking import TrackingServer

    workspace = workspace or get_workspace()
    store = backend_store or resolve_backend_store(workspace=workspace)
    if not store.uri.startswith("sqlite"):
        import sqlalchemy

        try:
            engine = sqlalchemy.create_engine(store.uri, connect_args={"connect_timeout": 5})
            engine.connect().close()
            engine.dispose()
        except Exception as error:  # noqa: BLE001 - drivers differ; their first line says why
            why = redact(str(getattr(error, "orig", None) or error), [store.password or ""])
            raise CourseError(_("Could not connect to the backend store {store}: {why}. Check that "
                                "the database server runs, and the user, password and database "
                                "name.").format(store=store,
                                                why=why.strip().splitlines()[0][:300])) from None
    env = {"MLFLOW_AUTH_CONFIG_PATH": str((auth or prepare_basic_auth(workspace)).config_path),
           # basic-auth signs its forms with this key; a fresh one per start suits one worker.
           "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(32),
           **({"PGPASSWORD": store.password} if store.password else {})}
    plain_uri = URI_PASSWORD.sub(lambda m: f"{m['head'][:-1]}{m['at']}", store.uri)
    return TrackingServer(workspace=workspace, port=port, backend_store_uri=plain_uri,
                          default_artifact_root="mlflow-artifacts:/", app_name="basic-auth",
                          extra_args=["--artifacts-destination", str(workspace.artifacts_dir)],
                          env=env, **kwargs).start()
