"""Where the course keeps its MLflow store, whatever the working directory.

Every notebook of the course records into one *course workspace*: a folder that holds
the SQLite backend store (``mlflow.db``), the artifact store (``artifacts/``) and the
logs of the servers the course starts. By default it is ``<repo>/workspace``;
``COURSE_WORKSPACE`` moves it. An explicit ``MLFLOW_TRACKING_URI`` wins over both, so a
reader who points MLflow at a remote server keeps that choice, except in the notebooks that
work on this machine on purpose (``use_workspace(local=True)``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from utils.env import repo_root, temporary_environment
from utils.errors import CourseError

WORKSPACE_ENV = "COURSE_WORKSPACE"
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
REGISTRY_URI_ENV = "MLFLOW_REGISTRY_URI"
# ``mlflow.set_tracking_uri`` also exports MLFLOW_TRACKING_URI (MLflow 3), so the course
# notes the value it set itself; only a different value is the reader's own choice.
_COURSE_SET_URI_ENV = "_COURSE_SET_TRACKING_URI"
# The variable MLflow's own server sets for its workers so that experiments created
# through a SQL store get the server's artifact root. Setting it in the notebook
# process gives experiments made by ``mlflow.set_experiment`` the same root, instead of
# a ``./mlruns`` folder beside whichever notebook happened to create them.
ARTIFACT_ROOT_ENV = "_MLFLOW_SERVER_ARTIFACT_ROOT"
#: What ``use_workspace()`` leaves in this process's environment. A child process started
#: for another workspace (a test's notebook kernel) must not inherit them.
PROCESS_VARIABLES = (TRACKING_URI_ENV, _COURSE_SET_URI_ENV, ARTIFACT_ROOT_ENV)
# scheme://user:password@host - the password group is what must never be shown.
URI_PASSWORD = re.compile(
    r"(?P<head>\b[a-z][a-z0-9+.\-]*://[^\s:/@'\"]+:)(?P<pw>[^\s/@'\"]+)(?P<at>@)", re.IGNORECASE
)


def mask_uri(uri: str) -> str:
    """``uri`` with any password between ``user:`` and ``@`` replaced by ``****``."""
    return URI_PASSWORD.sub(lambda m: f"{m['head']}****{m['at']}", uri)


@dataclass(frozen=True)
class Workspace:
    """Paths and URIs of one course workspace."""

    path: Path

    @property
    def db_path(self) -> Path:
        return self.path / "mlflow.db"

    @property
    def backend_store_uri(self) -> str:
        """The SQLite store of this workspace (an absolute ``sqlite:///`` URI)."""
        return f"sqlite:///{self.db_path}"

    @property
    def artifacts_dir(self) -> Path:
        return self.path / "artifacts"

    @property
    def logs_dir(self) -> Path:
        return self.path / "logs"

    @property
    def tracking_uri(self) -> str:
        """``MLFLOW_TRACKING_URI`` when the reader set it, else this workspace's store."""
        return readers_tracking_uri() or self.backend_store_uri

    @property
    def uses_explicit_tracking_uri(self) -> bool:
        return bool(readers_tracking_uri())


def readers_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if the reader set it (not the course), else ``""``."""
    value = os.environ.get(TRACKING_URI_ENV, "").strip()
    if value and value == os.environ.get(_COURSE_SET_URI_ENV):
        return ""
    return value


def workspace_path() -> Path:
    """The workspace folder: ``$COURSE_WORKSPACE`` or ``<repo>/workspace`` (not created)."""
    configured = os.environ.get(WORKSPACE_ENV, "").strip()
    path = Path(configured).expanduser() if configured else repo_root() / "workspace"
    return path.resolve()


def get_workspace(create: bool = True) -> Workspace:
    """Resolve the course workspace and, by default, make sure it exists and is writable."""
    workspace = Workspace(workspace_path())
    if create:
        _ensure_writable(workspace.path)
        workspace.artifacts_dir.mkdir(exist_ok=True)
        workspace.logs_dir.mkdir(exist_ok=True)
    return workspace


def use_workspace(local: bool = False) -> Workspace:
    """Point MLflow in this process at the course workspace and return it.

    Notebooks call this in their preamble. It sets the tracking URI (the reader's own
    ``MLFLOW_TRACKING_URI`` if there is one) and makes the workspace's ``artifacts/``
    folder the artifact root for experiments created through the local SQLite store.

    ``local=True`` uses the workspace's own store whatever ``MLFLOW_TRACKING_URI`` says:
    notebooks 01 and 06 work on this machine on purpose and change nothing on a remote
    server. The variable (and ``MLFLOW_REGISTRY_URI``, if the reader set one) then names
    the workspace's store, so that commands the notebook starts (``!mlflow ...``) use it
    too, and one line says which URI was set aside.
    """
    import mlflow

    workspace = get_workspace()
    os.environ[ARTIFACT_ROOT_ENV] = str(workspace.artifacts_dir)
    set_aside = readers_tracking_uri() if local else ""
    readers_own = workspace.uses_explicit_tracking_uri and not local
    uri = workspace.tracking_uri if readers_own else workspace.backend_store_uri
    if not readers_own:
        initialise_store(workspace)
    mlflow.set_tracking_uri(uri)
    if not readers_own:
        os.environ[TRACKING_URI_ENV] = os.environ[_COURSE_SET_URI_ENV] = uri
    registry = os.environ.get(REGISTRY_URI_ENV, "").strip()
    if local and registry and registry != uri:
        set_aside = set_aside or registry
        mlflow.set_registry_uri(uri)
    if set_aside:
        print(f"This notebook works on the local course workspace; {mask_uri(set_aside)} "
              "(from your environment) is left alone.")
    return workspace


@contextlib.contextmanager
def workspace_lock(workspace: Workspace, name: str) -> Iterator[None]:
    """Hold the lock ``<workspace>/.<name>.lock`` for the block: one process at a time."""
    with open(workspace.path / f".{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def initialise_store(workspace: Workspace) -> None:
    """Create the workspace's SQLite store, or bring an older one up to date, exactly once.

    MLflow creates a new store's tables (and migrates an old store) the first time a client
    or a server opens it. Several processes doing that at once on a new store break each
    other ("table ... already exists"), as when a notebook and the lab's MLflow UI tile
    start together. So every part of the course that opens the workspace's store (notebooks,
    the servers it starts, the lab's tile) first calls this: the first process does the
    work under a lock in the workspace, the others wait and then find the store ready.

    It also gives the Default experiment the workspace's ``artifacts/`` folder, as the
    notebooks expect (a server would give it ``mlflow-artifacts:/``).
    """
    import mlflow

    with workspace_lock(workspace, "store"), \
            temporary_environment(**{ARTIFACT_ROOT_ENV: str(workspace.artifacts_dir)}):
        if not workspace.db_path.exists():
            _copy_empty_store(workspace)
        mlflow.MlflowClient(tracking_uri=workspace.backend_store_uri).search_experiments(max_results=1)


# -- a new store in a tenth of a second ------------------------------------------------------
# Creating a SQLite store runs MLflow's ~100 schema migrations: 5 to 10 s on a small machine,
# paid by every new workspace (each test's, each fresh notebook run's). The course makes one
# empty store per MLflow version, keeps it in a cache folder, and copies it. The one thing a
# copy must change is where its Default experiment keeps artifacts: that takes one UPDATE of
# MLflow's own `experiments` table, the course's only reach into MLflow's schema.
# tests/test_workspace.py fails loudly if that table changes.
STORE_CACHE_ENV = "COURSE_STORE_CACHE"
_TEMPLATE_ROOT = "/course-template-artifacts"


def store_cache() -> Path:
    """``$COURSE_STORE_CACHE``, else ``$XDG_CACHE_HOME/mlflow-dl-course`` or ``~/.cache/...``."""
    configured = os.environ.get(STORE_CACHE_ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or Path.home() / ".cache"
    return Path(base) / "mlflow-dl-course"


def empty_store_template() -> Path:
    """A migrated, empty store of the installed MLflow (made once, then reused)."""
    import mlflow

    folder = store_cache()
    folder.mkdir(parents=True, exist_ok=True)
    template = folder / f"empty-store-mlflow-{mlflow.__version__}.db"
    with open(folder / ".template.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        if not template.exists():
            partial = folder / f".{template.name}.{os.getpid()}"
            partial.unlink(missing_ok=True)
            with temporary_environment(**{ARTIFACT_ROOT_ENV: _TEMPLATE_ROOT}):
                mlflow.MlflowClient(tracking_uri=f"sqlite:///{partial}").search_experiments(max_results=1)
            os.replace(partial, template)
    return template


def _copy_empty_store(workspace: Workspace) -> None:
    copy_empty_store(workspace.db_path, str(workspace.artifacts_dir / "0"))


def copy_empty_store(db_path: Path, default_artifact_location: str) -> None:
    """Make ``db_path`` a copy of the empty store whose Default experiment keeps its
    artifacts at ``default_artifact_location`` (``<artifact root>/0``, as MLflow would give
    it). Any problem leaves no file: MLflow then makes the store itself."""
    import shutil
    import sqlite3
    from contextlib import closing

    partial = db_path.with_name(f".{db_path.name}.{os.getpid()}")
    template = None
    try:
        template = empty_store_template()
        shutil.copyfile(template, partial)
        with closing(sqlite3.connect(partial)) as db, db:
            changed = db.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                                 (default_artifact_location,)).rowcount
        if changed != 1:
            raise sqlite3.DatabaseError("the empty store has no Default experiment")
        os.replace(partial, db_path)
    except (OSError, sqlite3.Error) as error:
        partial.unlink(missing_ok=True)
        if template is not None and isinstance(error, sqlite3.Error):
            template.unlink(missing_ok=True)  # a damaged cache is made again next time


def _ensure_writable(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
            pass
    except OSError as error:
        raise CourseError(
            f"The course workspace {path} cannot be written ({error.strerror or error}). "
            f"Set {WORKSPACE_ENV} to a folder you can write to, for example "
            f"`export {WORKSPACE_ENV}=$HOME/mlflow-course-workspace`, then run the cell again."
        ) from None
