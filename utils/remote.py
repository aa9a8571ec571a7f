"""Remote tracking servers: the Databricks configuration MLflow would use, and the course's
team server with users.

- :func:`read_databricks_config` asks databricks-sdk (which MLflow resolves ``databricks``
  tracking URIs with) which host and token this kernel would use, contacts nothing, and
  checks their shape; :meth:`DatabricksConfig.sdk_config` hands them to the SDK's
  ``WorkspaceClient`` for a check that does contact the workspace.
- :func:`start_auth_server` runs ``mlflow server --app-name basic-auth``: a generated admin
  password in a private file of the workspace, and a SQLite or PostgreSQL backend store
  whose password never reaches a command line or a log.

Nothing here prints, logs or stores a token or a password; objects holding one show it masked.
"""

from __future__ import annotations

import configparser
import contextlib
import functools
import os
import re
import secrets
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from utils.env import temporary_environment
from utils.errors import CourseError
from utils.workspace import URI_PASSWORD, Workspace, get_workspace, mask_uri

HOST_ENV = "DATABRICKS_HOST"
TOKEN_ENV = "DATABRICKS_TOKEN"
PROFILE_ENV = "DATABRICKS_CONFIG_PROFILE"
BACKEND_STORE_ENV = "COURSE_BACKEND_STORE_URI"
USERNAME_ENV = "MLFLOW_TRACKING_USERNAME"
PASSWORD_ENV = "MLFLOW_TRACKING_PASSWORD"

EXAMPLE_HOST = "https://dbc-a1b2c3d4-e5f6.cloud.databricks.com"
# A personal access token: "dapi" and 32 hex digits; some clouds add "-<n>" (e.g. "-2").
TOKEN_PATTERN = re.compile(r"dapi[0-9a-f]{32}(?:-[0-9]+)?")
TOKEN_DESCRIPTION = "`dapi` followed by 32 hexadecimal characters (0-9, a-f), sometimes with a suffix such as `-2`"
# For scanning, a little wider than a valid token (any case, a-h as secret scanners use),
# so that a near-token is reported too.
TOKEN_LIKE = re.compile(r"dapi[0-9a-h]{32}(?:-[0-9]+)?", re.IGNORECASE)
# Placeholders a text may show in place of a password: <password>, ${PW}, $PW, ****, ...
PLACEHOLDER = re.compile(r"^(?:<[^>]*>|\$\{?[A-Za-z_][A-Za-z0-9_]*\}?|\{[^}]*\}|[*x.•…]+)$", re.I)


# -- masking ------------------------------------------------------------------------
def mask_token(token: str | None) -> str:
    """A token as it may be shown: ``dapi…`` and its last four characters, else ``****``."""
    if not token:
        return "(not set)"
    return f"{token[:4]}…{token[-4:]}" if TOKEN_PATTERN.fullmatch(token) else "****"


def uri_password(uri: str) -> str | None:
    """The password inside ``scheme://user:password@host/...``, or None."""
    match = URI_PASSWORD.search(uri)
    return match["pw"] if match and not PLACEHOLDER.match(match["pw"]) else None


def redact(text: str, known: Iterable[str] = ()) -> str:
    """``text`` with token-shaped strings, URI passwords and the ``known`` secrets masked."""
    for secret in sorted({s for s in known if s and len(s) >= 6}, key=len, reverse=True):
        text = text.replace(secret, "****")
    text = TOKEN_LIKE.sub(lambda m: f"{m[0][:4]}…{m[0][-4:]}", text)
    return mask_uri(text)


# -- the shape of a Databricks host and token ------------------------------------------
def check_databricks_host(host: str, where: str = HOST_ENV) -> str:
    """Return the workspace URL ``host`` without a trailing slash, or raise
    :class:`CourseError` naming ``where`` (a variable, or a line of a file) and the problem."""
    parts = urlsplit(host)
    try:
        parts.port  # noqa: B018 - raises on a malformed port
        bad_port = False
    except ValueError:
        bad_port = True
    if host != host.strip() or any(c in host for c in "\"' \t\r\n"):
        problem = "contains spaces, quotes or a line break"
    elif bad_port:
        problem = "has a malformed port"
    elif parts.scheme != "https" or not parts.hostname:
        problem = "does not start with https://" if parts.scheme != "https" else "has no host name"
    elif parts.username or parts.password:
        problem = "contains a user name or password (the token has a place of its own)"
    elif parts.path not in ("", "/") or parts.query or parts.fragment:
        problem = "has something after the host name: drop the path, `?o=...` and `#...` parts"
    else:
        return f"https://{parts.netloc}"
    raise CourseError(
        f"{where} {problem} ({redact(host)!r}). It should be the address of your workspace as "
        f"the browser shows it, for example {EXAMPLE_HOST}: `https://`, the host name, and "
        "nothing after it."
    )


def check_databricks_token(token: str, where: str = TOKEN_ENV) -> None:
    """Raise :class:`CourseError` naming ``where`` unless ``token`` looks like a personal
    access token. The message says what is wrong without repeating the value."""
    if TOKEN_PATTERN.fullmatch(token):
        return
    if token.strip() != token or any(c in token for c in "\"' "):
        hint = "it has spaces, quotes or a line break around or inside it"
    elif not token.startswith("dapi"):
        hint = "it does not start with `dapi`"
    elif len(re.sub(r"-[0-9]+$", "", token[4:])) != 32:
        hint = f"it has {len(token)} characters where a token has 36 (a few more with a suffix)"
    else:
        hint = "after `dapi` it has characters other than 0-9 and a-f"
    raise CourseError(
        f"{where} does not look like a Databricks personal access token: {hint}. A token is "
        f"{TOKEN_DESCRIPTION}. (The value is not shown.) Copy it again from User settings > "
        "Developer > Access tokens, or generate a new one there."
    )


# -- the configuration, read by databricks-sdk ------------------------------------------
@functools.cache
def _sdk_config_classes():
    """databricks-sdk's ``Config`` without its network step, and a variant that only
    resolves the settings (it leaves the credentials check to the course).

    Creating a ``Config`` (databricks-sdk 0.162) asks the host for
    ``/.well-known/databricks-config`` and retries for up to five minutes when the host
    cannot be reached. Reading a configuration must not touch the network, so that one
    step is left out; the rest (arguments, ``DATABRICKS_*`` variables, profiles, in the
    SDK's order) is the SDK's own. ``tests/test_remote.py`` fails if that changes.
    """
    from databricks.sdk.core import Config

    class OfflineConfig(Config):
        _attributes = Config.attributes()  # the SDK lists the settings of the class itself

        def _resolve_host_metadata(self) -> None:
            return None

    class ResolvedSettings(OfflineConfig):
        def init_auth(self) -> None:
            return None

    return OfflineConfig, ResolvedSettings


@dataclass(frozen=True, repr=False)
class DatabricksConfig:
    """Where MLflow would send runs on Databricks, and with which token (masked when shown).
    ``host_from``/``token_from``: the variable or the profile each value came from."""

    host: str
    token: str = field(repr=False)
    profile: str | None = None
    config_file: Path | None = None
    host_from: str = HOST_ENV
    token_from: str = TOKEN_ENV

    @property
    def tracking_uri(self) -> str:
        """``databricks``, or ``databricks://<profile>`` for a named profile."""
        return f"databricks://{self.profile}" if self.profile else "databricks"

    @property
    def masked_token(self) -> str:
        return mask_token(self.token)

    def sdk_config(self, timeout: float = 10):
        """A databricks-sdk ``Config`` of this host and token for ``WorkspaceClient``: a
        request may take ``timeout`` seconds, and retries stop after as long."""
        offline_config, _ = _sdk_config_classes()
        with temporary_environment(**{PROFILE_ENV: None}):  # this host and token, no profile
            return offline_config(host=self.host, token=self.token, auth_type="pat",
                                  http_timeout_seconds=timeout, retry_timeout_seconds=max(1, int(timeout)))

    def describe(self) -> str:
        """A few lines for the reader: where it came from, tracking URI, host, masked token."""
        same = self.host_from == self.token_from
        return "\n".join([
            "Databricks configuration (read by databricks-sdk, nothing contacted)",
            *([f"  from         : {self.host_from}"] if same else []),
            f"  tracking URI : {self.tracking_uri}",
            f"  host         : {self.host}" + ("" if same else f"   (from {self.host_from})"),
            f"  token        : {self.masked_token}" + ("" if same else f"   (from {self.token_from})"),
        ])

    def __repr__(self) -> str:
        return (f"DatabricksConfig(host={self.host!r}, token={self.masked_token!r}, "
                f"profile={self.profile!r}, config_file={self.config_file!r})")

    __str__ = describe


def read_databricks_config(profile: str = "", config_file: str | Path | None = None) -> DatabricksConfig | None:
    """The Databricks host and token this kernel would use, checked; None when there is none.

    databricks-sdk finds them as for a ``databricks`` tracking URI: ``DATABRICKS_HOST`` and
    ``DATABRICKS_TOKEN`` first (value by value), then the ``profile`` (or
    ``$DATABRICKS_CONFIG_PROFILE``) of ``config_file`` (``$DATABRICKS_CONFIG_FILE`` or
    ``~/.databrickscfg``), else its ``[DEFAULT]`` profile. Nothing is contacted. Raises
    :class:`CourseError` saying what to fix: a malformed value, a missing profile, or a
    file holding a token that other users can read.
    """
    _, resolved_settings = _sdk_config_classes()
    try:
        settings = resolved_settings(profile=profile.strip() or None,
                                     config_file=str(config_file) if config_file else None)
    except configparser.Error as error:
        raise CourseError(
            f"{config_file or '~/.databrickscfg'} is not a valid Databricks config file "
            f"({type(error).__name__}). Each profile is a `[name]` line, then `host = ...` and "
            "`token = ...` lines."
        ) from None
    except ValueError as error:
        raise CourseError(_profile_problem(str(error), profile, config_file)) from None
    path = Path(settings.config_file or "~/.databrickscfg").expanduser()
    if settings.profile and not path.is_file():  # the SDK passes over a missing file
        raise CourseError(
            f"Profile [{settings.profile}] was asked for, but there is no file {path}. Create it "
            f"with `databricks configure --profile {settings.profile}`, or write it: a "
            f"`[{settings.profile}]` line, then `host = https://...` and `token = dapi...`."
        )
    in_file = f"profile [{settings.profile or 'DEFAULT'}] of {path}"
    host_from = HOST_ENV if os.environ.get(HOST_ENV) else in_file
    token_from = TOKEN_ENV if os.environ.get(TOKEN_ENV) else in_file
    read_file = (settings.host and host_from == in_file) or (settings.token and token_from == in_file)
    if read_file:
        _check_private(path)
    if not settings.host and not settings.token:
        if settings.profile:
            raise CourseError(f"The {in_file} has no `host = ...` and no `token = ...` line. Add them.")
        return None
    if not settings.host:
        raise CourseError(
            f"A token was found ({token_from}) but no host: set {HOST_ENV} to your workspace's "
            f"address (`export {HOST_ENV}={EXAMPLE_HOST}`), or add a `host = ...` line."
        )
    if not settings.token:
        raise CourseError(
            f"A host was found ({host_from}) but no personal access token: export {TOKEN_ENV} "
            "in the shell that starts Jupyter, or add a `token = dapi...` line to the profile. "
            "(With OAuth, `databricks auth login`, MLflow needs no token; this check is for tokens.)"
        )
    host = check_databricks_host(settings.host, HOST_ENV if host_from == HOST_ENV else f"`host` in the {in_file}")
    check_databricks_token(settings.token, TOKEN_ENV if token_from == TOKEN_ENV else f"`token` in the {in_file}")
    return DatabricksConfig(host, settings.token, settings.profile, path if read_file else None, host_from, token_from)


def _profile_problem(error: str, profile: str, config_file) -> str:
    match = re.search(r"resolve: (.+) has no (.+) profile configured", error)
    if not match:
        return f"databricks-sdk could not read the configuration: {redact(error)}"
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(Path(match[1]).expanduser(), encoding="utf-8")
    known = ", ".join(f"[{name}]" for name in ["DEFAULT"] * bool(parser.defaults()) + parser.sections())
    return (f"There is no profile [{match[2]}] in {match[1]} (profiles there: {known or 'none'}). "
            "Names are case-sensitive: use one of them, or add it.")


def _check_private(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise CourseError(
            f"{path} holds a token and other users of this machine can read it (mode {mode:o}). "
            f"Make it yours only: `chmod 600 {path}`, or `os.chmod(path, 0o600)` in Python."
        )


# -- logging in to a tracking server -----------------------------------------------------
@contextlib.contextmanager
def tracking_credentials(username: str, password: str) -> Iterator[None]:
    """Use these MLflow credentials for the block, then restore the previous ones."""
    with temporary_environment(**{USERNAME_ENV: username, PASSWORD_ENV: password}):
        yield


# -- the self-hosted server with basic-auth ---------------------------------------------
@dataclass(frozen=True, repr=False)
class BasicAuthSetup:
    """The files of the course server's ``basic-auth`` app, and its admin login."""

    directory: Path
    admin_username: str
    admin_password: str = field(repr=False)

    @property
    def config_path(self) -> Path:
        """The INI file ``MLFLOW_AUTH_CONFIG_PATH`` points at."""
        return self.directory / "basic_auth.ini"

    @property
    def database_path(self) -> Path:
        """The SQLite file that holds users (hashed passwords) and permissions."""
        return self.directory / "basic_auth.db"

    def __repr__(self) -> str:
        return (f"BasicAuthSetup(config={str(self.config_path)!r}, users={str(self.database_path)!r}, "
                f"admin={self.admin_username!r}, admin_password='****')")


def prepare_basic_auth(workspace: Workspace | None = None, admin_username: str = "admin") -> BasicAuthSetup:
    """Write (once) the auth config of the course server into ``<workspace>/auth/``.

    The admin password is generated with :func:`secrets.token_urlsafe` the first time and
    kept in ``basic_auth.ini`` (readable by you only): MLflow uses it only when it creates
    the admin user in an empty user database. Later calls reuse the file.
    """
    workspace = workspace or get_workspace()
    directory = workspace.path / "auth"
    directory.mkdir(mode=0o700, exist_ok=True)
    directory.chmod(0o700)
    setup_path = directory / "basic_auth.ini"
    if setup_path.exists():
        parser = configparser.ConfigParser(interpolation=None)
        parser.read(setup_path, encoding="utf-8")
        password = parser.get("mlflow", "admin_password", fallback="")
        username = parser.get("mlflow", "admin_username", fallback="")
        if password and username:
            return BasicAuthSetup(directory, username, password)
    # No usable config: a user database left from an earlier one has an admin password
    # nobody knows any more, so start both afresh.
    (directory / "basic_auth.db").unlink(missing_ok=True)
    setup = BasicAuthSetup(directory, admin_username, secrets.token_urlsafe(24))
    text = "\n".join([
        "# MLflow basic-auth settings of the course server (written by utils.remote).",
        "# The admin password below is used once, when the user database is created.",
        "[mlflow]",
        "default_permission = READ",
        f"database_uri = sqlite:///{setup.database_path}",
        f"admin_username = {setup.admin_username}",
        f"admin_password = {setup.admin_password}",
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth",
        "",
    ])
    descriptor = os.open(setup_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    return setup


@dataclass(frozen=True, repr=False)
class BackendStore:
    """A backend store URI, where it came from, and how it may be shown (password masked)."""

    uri: str = field(repr=False)
    source: str

    @property
    def masked(self) -> str:
        return mask_uri(self.uri)

    @property
    def kind(self) -> str:
        return self.uri.split(":", 1)[0].split("+", 1)[0]

    @property
    def password(self) -> str | None:
        """The password inside the URI, decoded (``%40`` -> ``@``), or None."""
        password = uri_password(self.uri)
        return unquote(password) if password else None

    @property
    def uri_without_password(self) -> str:
        """The URI with ``:password`` removed, for command lines and logs."""
        return URI_PASSWORD.sub(lambda m: f"{m['head'][:-1]}{m['at']}", self.uri)

    def __repr__(self) -> str:
        return f"BackendStore({self.masked!r}, source={self.source!r})"

    def __str__(self) -> str:
        return f"{self.masked}  (from {self.source})"


def resolve_backend_store(
    uri: str = "", workspace: Workspace | None = None, environ: Mapping[str, str] | None = None
) -> BackendStore:
    """The backend store for the course server: ``uri`` (a notebook parameter, which must
    not contain a password: papermill writes parameters into the executed notebook), else
    ``$COURSE_BACKEND_STORE_URI``, else the workspace's SQLite store."""
    environ = os.environ if environ is None else environ
    if uri.strip():
        store = BackendStore(uri.strip(), "the notebook parameter backend_store_uri")
        if store.password:
            raise CourseError(
                "backend_store_uri contains a password, and a notebook parameter is written "
                "into the notebook (papermill copies it into the executed notebook). Leave the "
                f"parameter empty and export the URI as {BACKEND_STORE_ENV} instead, or drop the "
                "password from the URI and give it to PostgreSQL in PGPASSWORD or ~/.pgpass."
            )
    elif environ.get(BACKEND_STORE_ENV, "").strip():
        store = BackendStore(environ[BACKEND_STORE_ENV].strip(), f"${BACKEND_STORE_ENV}")
    else:
        workspace = workspace or get_workspace()
        return BackendStore(workspace.backend_store_uri, "the course workspace")
    if store.kind not in ("sqlite", "postgresql", "mysql", "mssql") or "://" not in store.uri:
        raise CourseError(
            f"{store.masked!r} (from {store.source}) is not a database URI MLflow can use as a "
            "backend store. Use e.g. postgresql://USER@HOST:5432/DB or sqlite:///path/mlflow.db."
        )
    return _with_installed_driver(store)


def _with_installed_driver(store: BackendStore) -> BackendStore:
    """Name the PostgreSQL driver the course installs: SQLAlchemy 2.1 reads a plain
    ``postgresql://`` as psycopg 3, which the course does not install; its pinned driver
    is psycopg2, spelled ``postgresql+psycopg2://``."""
    from importlib.util import find_spec

    if store.uri.startswith("postgresql://") and not find_spec("psycopg") and find_spec("psycopg2"):
        uri = "postgresql+psycopg2://" + store.uri[len("postgresql://"):]
        return BackendStore(uri, f"{store.source}, driver psycopg2 named by the course")
    return store


def check_database(store: BackendStore, timeout: int = 5) -> None:
    """Connect to a server database once; raise :class:`CourseError` saying why it failed."""
    if store.kind == "sqlite":
        return
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(store.uri, connect_args={"connect_timeout": timeout})
        with engine.connect():
            pass
        engine.dispose()
    except Exception as error:  # noqa: BLE001 - driver errors differ; show the first line
        first = str(getattr(error, "orig", None) or error).strip().splitlines()[0][:300]
        raise CourseError(
            f"Could not connect to the backend store {store.masked} (from {store.source}): "
            f"{redact(first, [store.password or ''])}. Check that the database server runs "
            "and that the user, password and database name are right."
        ) from None


def start_auth_server(
    workspace: Workspace | None = None,
    auth: BasicAuthSetup | None = None,
    backend_store: BackendStore | None = None,
    port: int = 0,
    **kwargs,
):
    """Start ``mlflow server --app-name basic-auth`` on loopback; return the TrackingServer.

    Artifacts go through the server (``mlflow-artifacts:/``, stored under the workspace's
    ``artifacts/``), so clients upload them over HTTP with their own login. A database
    password is handed to the server in ``PGPASSWORD``, never on its command line.
    """
    from utils.tracking import TrackingServer

    workspace = workspace or get_workspace()
    auth = auth or prepare_basic_auth(workspace)
    backend_store = backend_store or resolve_backend_store(workspace=workspace)
    check_database(backend_store)
    env = {
        "MLFLOW_AUTH_CONFIG_PATH": str(auth.config_path),
        # basic-auth signs its forms with this key; a fresh one per start is fine for one worker.
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(32),
    }
    if backend_store.password:
        env["PGPASSWORD"] = backend_store.password
    return TrackingServer(
        workspace=workspace,
        port=port,
        backend_store_uri=backend_store.uri_without_password,
        default_artifact_root="mlflow-artifacts:/",
        app_name="basic-auth",
        extra_args=["--artifacts-destination", str(workspace.artifacts_dir)],
        env=env,
        **kwargs,
    ).start()
