"""Remote tracking servers: Databricks credentials, and a self-hosted server with users.

Two jobs, each careful with secrets:

- read and check a Databricks configuration (``DATABRICKS_HOST``/``DATABRICKS_TOKEN`` or a
  ``~/.databrickscfg`` profile), report it with the token masked, and, only when asked,
  try it against the workspace;
- run the course's own MLflow server with MLflow's ``basic-auth`` app: a generated admin
  password in a config file in the workspace, users, permissions, and a SQLite or
  PostgreSQL backend store whose password never reaches a command line or a log.

Nothing here prints, logs or stores a Databricks token; objects that hold a secret show
it masked in ``repr``/``str``.
"""

from __future__ import annotations

import configparser
import contextlib
import os
import re
import secrets
import socket
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from utils.errors import CourseError
from utils.env import temporary_environment
from utils.workspace import Workspace, get_workspace

HOST_ENV = "DATABRICKS_HOST"
TOKEN_ENV = "DATABRICKS_TOKEN"
PROFILE_ENV = "DATABRICKS_CONFIG_PROFILE"
CONFIG_FILE_ENV = "DATABRICKS_CONFIG_FILE"
BACKEND_STORE_ENV = "COURSE_BACKEND_STORE_URI"
USERNAME_ENV = "MLFLOW_TRACKING_USERNAME"
PASSWORD_ENV = "MLFLOW_TRACKING_PASSWORD"

EXAMPLE_HOST = "https://dbc-a1b2c3d4-e5f6.cloud.databricks.com"
# A personal access token: "dapi" and 32 hex digits; some clouds add "-<n>" (e.g. "-2").
TOKEN_PATTERN = re.compile(r"dapi[0-9a-f]{32}(?:-[0-9]+)?")
TOKEN_DESCRIPTION = (
    "`dapi` followed by 32 hexadecimal characters (0-9, a-f), sometimes with a suffix "
    "such as `-2`"
)
# For scanning, a little wider than a valid token (any case, a-h as secret scanners use),
# so that a near-token is reported too.
TOKEN_LIKE = re.compile(r"dapi[0-9a-h]{32}(?:-[0-9]+)?", re.IGNORECASE)
# scheme://user:password@host - the password group is what must never be shown.
URI_PASSWORD = re.compile(
    r"(?P<head>\b[a-z][a-z0-9+.\-]*://[^\s:/@'\"]+:)(?P<pw>[^\s/@'\"]+)(?P<at>@)", re.IGNORECASE
)
# Placeholders a text may show in place of a password: <password>, ${PW}, $PW, ****, ...
PLACEHOLDER = re.compile(r"^(?:<[^>]*>|\$\{?[A-Za-z_][A-Za-z0-9_]*\}?|\{[^}]*\}|[*x.•…]+)$", re.I)


# -- masking ------------------------------------------------------------------------
def mask_token(token: str | None) -> str:
    """A token as it may be shown: ``dapi…`` and its last four characters, else ``****``."""
    if not token:
        return "(not set)"
    if TOKEN_PATTERN.fullmatch(token):
        return f"{token[:4]}…{token[-4:]}"
    return "****"


def mask_uri(uri: str) -> str:
    """``uri`` with any password between ``user:`` and ``@`` replaced by ``****``."""
    return URI_PASSWORD.sub(lambda m: f"{m['head']}****{m['at']}", uri)


def uri_password(uri: str) -> str | None:
    """The password inside ``scheme://user:password@host/...``, or None."""
    match = URI_PASSWORD.search(uri)
    if match and not PLACEHOLDER.match(match["pw"]):
        return match["pw"]
    return None


def redact(text: str, known: Iterable[str] = ()) -> str:
    """``text`` with token-shaped strings, URI passwords and the ``known`` secrets masked."""
    for secret in sorted({s for s in known if s and len(s) >= 6}, key=len, reverse=True):
        text = text.replace(secret, "****")
    text = TOKEN_LIKE.sub(lambda m: f"{m[0][:4]}…{m[0][-4:]}", text)
    return mask_uri(text)


# -- Databricks configuration ---------------------------------------------------------
def check_databricks_host(host: str, variable: str = HOST_ENV) -> str:
    """Check a workspace URL and return it without a trailing slash.

    A valid host is ``https://`` and a host name (an optional port), with nothing after
    it but an optional ``/``. Raises :class:`CourseError` naming ``variable`` otherwise.
    """
    shown = redact(host)  # in case a token was pasted into the wrong variable
    expected = (
        f"It should be the address of your workspace as the browser shows it, for example "
        f"{EXAMPLE_HOST}: `https://`, the host name, and nothing after it."
    )
    if host != host.strip() or any(c in host for c in "\"' \t\r\n"):
        raise CourseError(
            f"{variable} contains spaces, quotes or a line break ({shown!r}). {expected} "
            "Set it again without them."
        )
    parts = urlsplit(host)
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise CourseError(f"{variable} has a malformed port ({shown!r}). {expected}") from None
    if parts.scheme != "https" or not parts.hostname:
        problem = "does not start with https://" if parts.scheme != "https" else "has no host name"
        raise CourseError(f"{variable} {problem} ({shown!r}). {expected}")
    if parts.username or parts.password:
        raise CourseError(
            f"{variable} contains a user name or password ({redact(mask_uri(host))!r}). {expected} "
            f"The token belongs in {TOKEN_ENV}, not in the address."
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise CourseError(
            f"{variable} has something after the host name ({shown!r}): drop the path, "
            f"`?o=...` and `#...` parts. {expected}"
        )
    return f"https://{parts.netloc}"


def check_databricks_token(token: str, variable: str = TOKEN_ENV) -> None:
    """Raise :class:`CourseError` naming ``variable`` unless ``token`` looks like a PAT.

    The message describes what is wrong without repeating the value.
    """
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
        f"{variable} does not look like a Databricks personal access token: {hint}. "
        f"A token is {TOKEN_DESCRIPTION}. (The value is not shown.) Copy it again from "
        "User settings > Developer > Access tokens, or generate a new one there."
    )


@dataclass(frozen=True, repr=False)
class DatabricksConfig:
    """Where MLflow would send runs on Databricks, and with which token (masked when shown)."""

    host: str
    token: str = field(repr=False)
    source: str = "environment"
    profile: str | None = None
    config_file: Path | None = None

    @property
    def tracking_uri(self) -> str:
        """``databricks``, or ``databricks://<profile>`` for a named profile."""
        return f"databricks://{self.profile}" if self.profile else "databricks"

    @property
    def masked_token(self) -> str:
        return mask_token(self.token)

    def describe(self) -> str:
        """A few lines for the reader: tracking URI, host, masked token, where they came from."""
        return "\n".join(
            [
                f"Databricks configuration from {self.source}",
                f"  tracking URI : {self.tracking_uri}",
                f"  host         : {self.host}",
                f"  token        : {self.masked_token}",
            ]
        )

    def __repr__(self) -> str:
        return (
            f"DatabricksConfig(host={self.host!r}, token={self.masked_token!r}, "
            f"source={self.source!r}, profile={self.profile!r})"
        )

    __str__ = describe


def databricks_config_file(environ: Mapping[str, str] | None = None) -> Path:
    """``$DATABRICKS_CONFIG_FILE`` or ``~/.databrickscfg`` (the file the Databricks CLI writes)."""
    environ = os.environ if environ is None else environ
    configured = environ.get(CONFIG_FILE_ENV, "").strip()
    return Path(configured).expanduser() if configured else Path.home() / ".databrickscfg"


def read_databricks_config(
    host: str = "",
    profile: str = "",
    *,
    environ: Mapping[str, str] | None = None,
    config_file: str | Path | None = None,
) -> DatabricksConfig | None:
    """Read and check the Databricks configuration; None when there is none.

    In MLflow's order: a named ``profile`` (or ``$DATABRICKS_CONFIG_PROFILE``) from the
    config file; else ``DATABRICKS_HOST``/``DATABRICKS_TOKEN`` from the environment (``host``,
    when given, replaces ``DATABRICKS_HOST``); else the file's ``[DEFAULT]`` profile.
    Tokens come only from the environment or the file, never from an argument, so that a
    token never ends up in a notebook's parameters. Raises :class:`CourseError` with a
    message naming the variable when a value is malformed.
    """
    environ = os.environ if environ is None else environ
    path = Path(config_file).expanduser() if config_file else databricks_config_file(environ)
    profile = profile.strip() or environ.get(PROFILE_ENV, "").strip()
    if profile:
        if host:
            raise CourseError(
                f"Both a host ({host!r}) and a profile ({profile!r}) were given. A profile "
                "brings its own host: leave `databricks_host` empty, or leave the profile empty."
            )
        return _config_from_profile(path, profile, named=True)

    env_host = environ.get(HOST_ENV, "")
    env_token = environ.get(TOKEN_ENV, "")
    host = host or env_host
    if host or env_token:
        host_name = HOST_ENV if host == env_host else "databricks_host"
        if not host:
            raise CourseError(
                f"{TOKEN_ENV} is set but {HOST_ENV} is not. Set {HOST_ENV} to your workspace "
                f"address, for example `export {HOST_ENV}={EXAMPLE_HOST}`."
            )
        if not env_token:
            raise CourseError(
                f"{host_name} is set but {TOKEN_ENV} is not. Export the token in the shell "
                f"that starts Jupyter (`export {TOKEN_ENV}=dapi...`), or put host and token "
                f"in a profile of {path.name}; the course never takes a token as a parameter."
            )
        host = check_databricks_host(host, host_name)
        check_databricks_token(env_token, TOKEN_ENV)
        return DatabricksConfig(host=host, token=env_token, source="the environment")

    if path.is_file() and _read_profiles(path).has_option("DEFAULT", "host"):
        return _config_from_profile(path, "DEFAULT", named=False)
    return None


def _read_profiles(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except configparser.Error as error:
        raise CourseError(
            f"{path} is not a valid Databricks config file ({type(error).__name__}). Each "
            "profile is a `[name]` line followed by `host = ...` and `token = ...` lines."
        ) from None
    return parser


def _config_from_profile(path: Path, profile: str, *, named: bool) -> DatabricksConfig:
    if not path.is_file():
        raise CourseError(
            f"Profile {profile!r} was asked for, but there is no {path}. Create it with "
            f"`databricks configure --profile {profile}` or by hand: a `[{profile}]` line, "
            "then `host = https://...` and `token = dapi...`."
        )
    parser = _read_profiles(path)
    if profile != "DEFAULT" and not parser.has_section(profile):
        known = ", ".join(parser.sections()) or "none"
        raise CourseError(
            f"There is no profile [{profile}] in {path} (profiles there: {known}). "
            "Use one of them, or add it."
        )
    where = f"profile [{profile}] of {path}"
    host = parser.get(profile, "host", fallback="").strip()
    token = parser.get(profile, "token", fallback="").strip()
    if not host or not token:
        missing = "host" if not host else "token"
        raise CourseError(f"The {where} has no `{missing} = ...` line. Add it.")
    host = check_databricks_host(host, f"`host` in the {where}")
    check_databricks_token(token, f"`token` in the {where}")
    return DatabricksConfig(
        host=host,
        token=token,
        source=f"the {where}",
        profile=profile if named else None,
        config_file=path,
    )


@dataclass(frozen=True)
class ConnectionCheck:
    """The result of trying a remote tracking server: ``ok`` and one sentence."""

    ok: bool
    message: str

    def __str__(self) -> str:
        return self.message


def check_databricks_connection(config: DatabricksConfig, timeout: int = 10) -> ConnectionCheck:
    """List experiments on the workspace to see whether host and token work.

    Uses MLflow's client with tracking URI ``databricks`` (or ``databricks://<profile>``),
    one attempt and a ``timeout`` in seconds, set only for this call. Never raises for a
    network or credential problem: the result says what went wrong in one sentence.
    """
    import mlflow

    changes: dict[str, str | None] = {
        # One attempt, a short wait: a wrong host should fail in seconds, not minutes.
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(int(timeout)),
        # The databricks-sdk path first probes the host with its own retry budget of
        # five minutes; MLflow's plain HTTP path honours the two settings above.
        "MLFLOW_ENABLE_DB_SDK": "false",
    }
    if config.profile:
        changes[PROFILE_ENV] = None
        if config.config_file:
            changes[CONFIG_FILE_ENV] = str(config.config_file)
    else:
        changes.update({HOST_ENV: config.host, TOKEN_ENV: config.token, PROFILE_ENV: None})
    try:
        with temporary_environment(**changes):
            client = mlflow.MlflowClient(tracking_uri=config.tracking_uri)
            experiments = client.search_experiments(max_results=10)
    except Exception as error:  # noqa: BLE001 - every failure becomes one sentence
        message = explain_databricks_error(error, config.host, timeout)
        return ConnectionCheck(False, redact(message, [config.token]))
    return ConnectionCheck(
        True,
        f"Connected to {config.host} with token {config.masked_token}: it lists "
        f"{len(experiments)} experiment(s) on the first page.",
    )


# -- explaining failures ----------------------------------------------------------------
def _first_line(error: BaseException) -> str:
    lines = redact(str(error)).strip().splitlines()
    return lines[0][:200] if lines else "(no message)"


def _causes(error: BaseException) -> list[BaseException]:
    chain, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain


def _http_status(error: BaseException) -> int | None:
    from mlflow.exceptions import MlflowException

    for item in _causes(error):
        if isinstance(item, MlflowException):
            match = re.search(r"error code (\d{3}) != ", str(item))
            if match:
                return int(match[1])
            code = item.get_http_status_code()
            if code != 500 or "INTERNAL_ERROR" in str(item):
                return code
        response = getattr(item, "response", None)
        if getattr(response, "status_code", None):
            return response.status_code
    return None


def _network_problem(error: BaseException, where: str, timeout: float | None) -> str | None:
    import requests

    text = " ".join(f"{type(e).__name__} {e}" for e in _causes(error))
    if any(isinstance(e, socket.gaierror) for e in _causes(error)) or "NameResolutionError" in text:
        return (
            f"The host name of {where} could not be resolved: check the address for typos, "
            "or this machine has no network (no DNS)."
        )
    if any(isinstance(e, requests.exceptions.SSLError) for e in _causes(error)) or "SSLError" in text:
        return (
            f"The secure (TLS) connection to {where} failed: the address may not be a "
            "Databricks workspace, or a proxy intercepts HTTPS."
        )
    if any(isinstance(e, (requests.exceptions.Timeout, TimeoutError)) for e in _causes(error)) or "timed out" in text:
        wait = f" within {timeout:g} s" if timeout else ""
        return f"{where} did not answer{wait}: the network is slow or blocked (firewall, proxy, VPN)."
    if any(isinstance(e, (requests.exceptions.ConnectionError, ConnectionError)) for e in _causes(error)):
        return (
            f"Could not connect to {where}: the server is down or unreachable from this "
            "machine (no network, firewall or proxy)."
        )
    return None


def explain_databricks_error(error: BaseException, host: str, timeout: float | None = None) -> str:
    """One sentence on why talking to the Databricks workspace at ``host`` failed."""
    status = _http_status(error)
    if status in (401, 403):
        return (
            f"The workspace at {host} refused the token (HTTP {status}): it has expired, was "
            "revoked, was mistyped, or belongs to another workspace. Generate a new one under "
            f"User settings > Developer > Access tokens and update {TOKEN_ENV}."
        )
    if status == 404:
        return (
            f"{host} answered, but not with MLflow's API (HTTP 404): check that {HOST_ENV} "
            "is the address of your workspace."
        )
    network = _network_problem(error, host, timeout)
    if network:
        return network
    if status:
        return f"The workspace at {host} answered with HTTP {status}; try again later."
    return f"The check failed with {type(error).__name__}: {_first_line(error)}"


def explain_tracking_error(error: BaseException, url: str) -> str:
    """One sentence on why a request to the tracking server at ``url`` failed."""
    status = _http_status(error)
    if status == 401:
        return (
            f"The server at {url} refused the login (HTTP 401 Unauthorized): the user name in "
            f"{USERNAME_ENV} or the password in {PASSWORD_ENV} is wrong."
        )
    if status == 403:
        return (
            f"The server at {url} knows the user but refused the request (HTTP 403 Forbidden): "
            "ask an admin for permission on this experiment."
        )
    network = _network_problem(error, url, None)
    if network:
        return network
    if status:
        return f"The server at {url} answered with HTTP {status}."
    return f"The request failed with {type(error).__name__}: {_first_line(error)}"


# -- credentials in the environment ---------------------------------------------------
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
        return (
            f"BasicAuthSetup(config={str(self.config_path)!r}, users={str(self.database_path)!r}, "
            f"admin={self.admin_username!r}, admin_password='****')"
        )


def prepare_basic_auth(workspace: Workspace | None = None, admin_username: str = "admin") -> BasicAuthSetup:
    """Write (once) the auth config of the course server into ``<workspace>/auth/``.

    The admin password is generated with :func:`secrets.token_urlsafe` the first time and
    kept in ``basic_auth.ini`` (readable by you only), because MLflow uses it only when it
    creates the admin user in an empty user database. Later calls reuse the file.
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
    text = "\n".join(
        [
            "# MLflow basic-auth settings of the course server (written by utils.remote).",
            "# The admin password below is used once, when the user database is created.",
            "[mlflow]",
            "default_permission = READ",
            f"database_uri = sqlite:///{setup.database_path}",
            f"admin_username = {setup.admin_username}",
            f"admin_password = {setup.admin_password}",
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth",
            "",
        ]
    )
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


_STORE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")


def resolve_backend_store(
    uri: str = "", workspace: Workspace | None = None, environ: Mapping[str, str] | None = None
) -> BackendStore:
    """The backend store for the course server.

    ``uri`` (a notebook parameter) wins, but must not contain a password: a parameter is
    written into the executed notebook. Else ``$COURSE_BACKEND_STORE_URI``; else the
    workspace's SQLite store.
    """
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
    if store.kind not in _STORE_SCHEMES or "://" not in store.uri:
        raise CourseError(
            f"{store.masked!r} (from {store.source}) is not a database URI MLflow can use as a "
            "backend store. Use e.g. postgresql://USER@HOST:5432/DB or sqlite:///path/mlflow.db."
        )
    return _with_installed_driver(store)


def _with_installed_driver(store: BackendStore) -> BackendStore:
    """Name the PostgreSQL driver the course installs.

    SQLAlchemy 2.1 reads a plain ``postgresql://`` as psycopg 3, which the course does not
    install; its pinned driver is psycopg2, spelled ``postgresql+psycopg2://``.
    """
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
    ``artifacts/``), so remote clients upload them over HTTP with their own login. A
    database password is handed to the server in ``PGPASSWORD``, never on its command line.
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
    server = TrackingServer(
        workspace=workspace,
        port=port,
        backend_store_uri=backend_store.uri_without_password,
        default_artifact_root="mlflow-artifacts:/",
        app_name="basic-auth",
        extra_args=["--artifacts-destination", str(workspace.artifacts_dir)],
        env=env,
        **kwargs,
    )
    return server.start()


def _admin_client(server_url: str):
    import warnings

    with warnings.catch_warnings():
        # Loading the auth client warns about a Starlette module MLflow will replace.
        warnings.filterwarnings("ignore", message=".*starlette.middleware.wsgi is deprecated")
        from mlflow.server import get_app_client

        return get_app_client("basic-auth", tracking_uri=server_url)


def ensure_user(server_url: str, auth: BasicAuthSetup, username: str, password: str) -> str:
    """Create ``username`` with ``password`` as the admin, or reset the password of an
    existing user; return ``"created"`` or ``"updated"``."""
    from mlflow.exceptions import MlflowException

    with tracking_credentials(auth.admin_username, auth.admin_password):
        admin = _admin_client(server_url)
        try:
            admin.get_user(username)
        except MlflowException as error:
            if _http_status(error) != 404:
                raise CourseError(f"Could not look up user {username!r}: {explain_tracking_error(error, server_url)}") from None
            admin.create_user(username, password)
            return "created"
        admin.update_user_password(username, password)
        return "updated"


def grant_experiment(
    server_url: str, auth: BasicAuthSetup, experiment_name: str, username: str, permission: str = "EDIT"
) -> str:
    """As the admin, create ``experiment_name`` if needed and grant ``username`` a permission
    on it (READ, EDIT, MANAGE or NO_PERMISSIONS); return the experiment id."""
    import mlflow
    from mlflow.exceptions import MlflowException

    with tracking_credentials(auth.admin_username, auth.admin_password):
        client = mlflow.MlflowClient(tracking_uri=server_url)
        experiment = client.get_experiment_by_name(experiment_name)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(experiment_name)
        admin = _admin_client(server_url)
        try:
            admin.grant_user_permission(username, "experiment", experiment_id, permission)
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            # A grant from an earlier run: replace it, whatever its level was.
            admin.revoke_user_permission(username, "experiment", experiment_id)
            admin.grant_user_permission(username, "experiment", experiment_id, permission)
    return experiment_id
