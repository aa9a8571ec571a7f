"""One folder for every notebook's MLflow store, whatever the working directory.

The *course workspace* (``<repo>/workspace``, or ``$COURSE_WORKSPACE``) holds the SQLite
store, the artifacts and the servers' logs. The reader's own ``MLFLOW_TRACKING_URI`` wins,
except in the notebooks that work on this machine on purpose (``use_workspace(local=True)``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from utils.env import repo_root, temporary_environment
from utils.errors import CourseError
from utils.i18n import gettext as _

WORKSPACE_ENV = "COURSE_WORKSPACE"
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
# mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI too: the course notes what it set.
_COURSE_SET_URI_ENV = "_COURSE_SET_TRACKING_URI"
# What MLflow's server sets so that experiments made through a SQL store get its artifact
# root; set in a notebook, new experiments keep artifacts in the workspace, not ./mlruns.
ARTIFACT_ROOT_ENV = "_MLFLOW_SERVER_ARTIFACT_ROOT"
PROGRESS_BAR_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
#: What use_workspace() leaves in the environment, for no kernel of another workspace.
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

    db_path = property(lambda self: self.path / "mlflow.db")
    backend_store_uri = property(lambda self: f"sqlite:///{self.db_path}")
    artifacts_dir = property(lambda self: self.path / "artifacts")
    logs_dir = property(lambda self: self.path / "logs")
    #: ``MLFLOW_TRACKING_URI`` when the reader set it, else this workspace's store.
    tracking_uri = property(lambda self: readers_tracking_uri() or self.backend_store_uri)
    uses_explicit_tracking_uri = property(lambda self: bool(readers_tracking_uri()))


def readers_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if the reader set it (not the course), else ``""``."""
    value = os.environ.get(TRACKING_URI_ENV, "").strip()
    return "" if value == os.environ.get(_COURSE_SET_URI_ENV) else value


def workspace_path() -> Path:
    """The workspace folder: ``$COURSE_WORKSPACE`` or ``<repo>/workspace`` (not created)."""
    configured = os.environ.get(WORKSPACE_ENV, "").strip()
    path = Path(configured).expanduser() if configured else repo_root() / "workspace"
    return path.resolve()


def get_workspace(create: bool = True) -> Workspace:
    """The course workspace; by default made sure to exist and be writable."""
    workspace = Workspace(workspace_path())
    if create:
        try:
            workspace.artifacts_dir.mkdir(parents=True, exist_ok=True)
            workspace.logs_dir.mkdir(exist_ok=True)
            if not os.access(workspace.path, os.W_OK):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        except OSError as error:
            raise CourseError(_(
                "The course workspace {path} cannot be written ({reason}). Set {variable} to a "
                "folder you can write to, for example "
                "`export {variable}=$HOME/mlflow-course-workspace`, then run the cell again."
            ).format(path=workspace.path, reason=error.strerror or error,
                     variable=WORKSPACE_ENV)) from None
    return workspace


def use_workspace(local: bool = False) -> Workspace:
    """Point MLflow in this process at the course workspace (or the reader's
    ``MLFLOW_TRACKING_URI``) and return it.

    ``local=True`` (notebooks 01 and 06) uses the workspace's store whatever the reader set;
    the variables then name it, for the commands the notebook starts (``!mlflow ...``) too,
    and one line says which URI was set aside. With the workspace's store, MLflow's progress
    bar for copying artifacts is off: on this disk a copy takes no time to watch.
    """
    import mlflow

    workspace = get_workspace()
    os.environ[ARTIFACT_ROOT_ENV] = str(workspace.artifacts_dir)
    set_aside = readers_tracking_uri() if local else ""
    readers_own = workspace.uses_explicit_tracking_uri and not local
    uri = workspace.tracking_uri if readers_own else workspace.backend_store_uri
    mlflow.set_tracking_uri(uri)
    if not readers_own:
        initialise_store(workspace)
        os.environ[TRACKING_URI_ENV] = os.environ[_COURSE_SET_URI_ENV] = uri
        os.environ[PROGRESS_BAR_ENV] = "false"
    registry = os.environ.get("MLFLOW_REGISTRY_URI", "").strip()
    if local and registry and registry != uri:
        set_aside = set_aside or registry
        mlflow.set_registry_uri(uri)
    if set_aside:
        print(_("This notebook works on the local course workspace; {uri} (from your environment) "
                "is left alone.").format(uri=mask_uri(set_aside)))
    return workspace


@contextlib.contextmanager
def workspace_lock(workspace: Workspace, name: str) -> Iterator[None]:
    """Hold the lock ``<workspace>/.<name>.lock`` for the block: one process at a time."""
    from filelock import FileLock

    with FileLock(workspace.path / f".{name}.lock"):
        yield


def initialise_store(workspace: Workspace) -> None:
    """Create or migrate the workspace's store, one process at a time.

    MLflow makes a store's tables when a client or server first opens it; several processes
    doing it at once break each other ("table ... already exists"), as when a notebook and
    the lab's MLflow UI tile start together. The Default experiment gets ``artifacts/``.
    """
    import mlflow

    with workspace_lock(workspace, "store"), \
            temporary_environment(**{ARTIFACT_ROOT_ENV: str(workspace.artifacts_dir)}):
        mlflow.MlflowClient(workspace.backend_store_uri).search_experiments(max_results=1)

