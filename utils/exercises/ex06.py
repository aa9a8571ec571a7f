"""Exercises of notebook 06 (troubleshooting): repair a store URI, close a stuck run,
restore a deleted experiment.

Each check reads the MLflow store (the run the notebook logged, the run it left stuck, the
experiment it deleted), never a copy of the answer. A check never opens a SQLite file that does not exist, since
opening one would create an empty store.
"""

from __future__ import annotations

import os
from pathlib import Path

from utils.exercises import Exercise, Incorrect, tracking_client
from utils.i18n import N_
from utils.i18n import gettext as _

SQLITE = "sqlite:///"


def _workspace_db() -> Path:
    from utils.workspace import get_workspace

    return get_workspace(create=False).db_path


def _namespace_run_id(namespace, name: str, where: str) -> str:
    value = namespace.get(name)
    run_id = getattr(getattr(value, "info", None), "run_id", value)
    if not isinstance(run_id, str) or not run_id:
        raise Incorrect(_("`{name}` is not defined: run the cells of {where} from the top first, "
                          "then the exercise and this check.").format(name=name, where=where))
    return run_id


# -- 06.1 -----------------------------------------------------------------------------------
def _check_fixed_uri(answers, namespace):
    from mlflow.exceptions import MlflowException

    uri = answers["fixed_uri"]
    run_id = _namespace_run_id(namespace, "run", _("the section *The wrong store*"))
    if isinstance(uri, os.PathLike):
        raise Incorrect(_("`fixed_uri` is a path. MLflow wants a URI: for a SQLite file, "
                          "`sqlite:///` followed by the file's path."))
    if not isinstance(uri, str) or not uri.strip():
        raise Incorrect(_("`fixed_uri` should be text, a tracking URI such as `sqlite:///...`."))
    uri = uri.strip()
    if uri.startswith(("http://", "https://")):
        return _check_server(uri, run_id)
    if not uri.startswith("sqlite:"):
        if Path(uri.removeprefix("file://")).name == "mlflow.db":
            raise Incorrect(_("{uri} names the file without saying it is a SQLite database; "
                              "MLflow would take it for the old file store. Write it as a URI: "
                              "`sqlite:///` followed by the file's absolute path.").format(uri=uri))
        raise Incorrect(_("{uri!r} is not a tracking URI for a SQLite store: those start with "
                          "`sqlite:///`.").format(uri=uri))
    if not uri.startswith(SQLITE):
        raise Incorrect(_("{uri} does not start with `sqlite:///` (three slashes), which is how "
                          "a SQLite URI starts; the file's path follows.").format(uri=uri))
    path = Path(uri[len(SQLITE):])
    if not path.is_absolute():
        if uri == "sqlite:///mlflow.db":
            raise Incorrect(_("`sqlite:///mlflow.db` is still relative: it means the mlflow.db of "
                              "whatever folder the program starts in. Name the file by its "
                              "absolute path."))
        if (Path("/") / path).exists():
            raise Incorrect(_("Your URI has three slashes, then a path without its leading `/`, "
                              "so it is read as relative to the current folder. An absolute path "
                              "needs a fourth slash: `sqlite:///` followed by the path, `/` and "
                              "all."))
        raise Incorrect(_("{uri} names the file with a relative path, read from whatever folder "
                          "the program starts in. Use the absolute path.").format(uri=uri))
    if not path.exists():
        raise Incorrect(_("There is no database at {path}. MLflow would create an empty one "
                          "there, and find no run in it.").format(path=path))
    try:
        tracking_client(uri).get_run(run_id)
    except MlflowException:
        raise Incorrect(_("The store {path} has no run {run_id}: it is another store than the "
                          "one the run was logged to ({workspace_db}).").format(
                              path=path, run_id=run_id, workspace_db=_workspace_db())) from None
    return _("{uri} names the workspace's store by its absolute path, so any program finds "
             "the run, from any folder.").format(uri=uri)


def _check_server(uri: str, run_id: str) -> str:
    from mlflow.exceptions import MlflowException

    from utils.env import temporary_environment

    # One quick try: a wrong address must not keep the check waiting through retries.
    with temporary_environment(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="5"):
        try:
            tracking_client(uri).get_run(run_id)
        except MlflowException as error:
            raise Incorrect(_("Asked at {uri}, the run is not found ({error}). "
                              "Name the workspace's SQLite store instead.").format(
                                  uri=uri, error=str(error).splitlines()[0])) from None
    return _("the server at {uri} serves the workspace's store, so it finds the run too.").format(uri=uri)


q1 = Exercise(
    key="06.1",
    title=N_("Repair a store URI that finds nothing"),
    answers=("fixed_uri",),
    check=_check_fixed_uri,
    hint=N_("The run lives in the workspace's `mlflow.db`, whose absolute path is "
            "`workspace.db_path`. A SQLite URI is `sqlite:///` followed by the path, so an "
            "absolute path gives four slashes."),
    solution='fixed_uri = f"sqlite:///{workspace.db_path}"',
    mistake='fixed_uri = f"sqlite://{workspace.db_path}"',
)


# -- 06.2 -----------------------------------------------------------------------------------
def _check_closed_run(answers, namespace):
    from mlflow.entities import Run

    run_id = _namespace_run_id(namespace, "stuck_run_id", _("the section *A run stuck in RUNNING*"))
    closed = answers["closed_run"]
    status = tracking_client().get_run(run_id).info.status
    if not isinstance(closed, Run):
        raise Incorrect(_("`closed_run` should be the run fetched again after you closed it: "
                          "`client.get_run(stuck_run_id)`."))
    if closed.info.run_id != run_id:
        raise Incorrect(_("`closed_run` is the run {run_name!r}, not the stuck one "
                          "whose id is in `stuck_run_id`.").format(run_name=closed.info.run_name))
    if status == "RUNNING":
        raise Incorrect(_("The run is still RUNNING in the store. Close it with "
                          "`client.set_terminated(stuck_run_id, status=...)`."))
    if status == "FINISHED":
        raise Incorrect(_("The run is closed, but as FINISHED: that is what `set_terminated` "
                          "records without a status, and it says the training ended normally. "
                          "Its process was killed: give `status=\"KILLED\"` (you may call "
                          "`set_terminated` again)."))
    if status == "FAILED":
        raise Incorrect(_("FAILED says the code stopped with an error. This process was killed "
                          "from outside: give `status=\"KILLED\"`."))
    if status != "KILLED":
        raise Incorrect(_("The run's status is {status}; a killed process's run should say "
                          "KILLED.").format(status=status))
    if closed.info.status != status:
        raise Incorrect(_("The store says {status}, but `closed_run` says "
                          "{closed_status}: it was fetched before you closed the run. "
                          "Fetch it again after `set_terminated`.").format(status=status,
                                                                          closed_status=closed.info.status))
    return _("the run is KILLED and has an end time: the UI no longer shows it as running, "
             "and its status says why it ended.")


q2 = Exercise(
    key="06.2",
    title=N_("Close a run stuck in RUNNING"),
    answers=("closed_run",),
    check=_check_closed_run,
    hint=N_("`client.set_terminated(run_id, status=...)` ends a run and records its status: "
            "`FINISHED`, `FAILED` or `KILLED`. Then `client.get_run(run_id)` fetches it again."),
    solution=('client.set_terminated(stuck_run_id, status="KILLED")\n'
              "closed_run = client.get_run(stuck_run_id)"),
    mistake=("client.set_terminated(stuck_run_id)\n"
             "closed_run = client.get_run(stuck_run_id)"),
)


# -- 06.3 -----------------------------------------------------------------------------------
def _active_experiment_id() -> str | None:
    """The experiment new runs go to: ``mlflow.set_experiment`` exports its id as the
    documented variable ``MLFLOW_EXPERIMENT_ID`` (for the processes a notebook starts)."""
    import os

    return os.environ.get("MLFLOW_EXPERIMENT_ID") or None


def _check_restored(answers, namespace):
    from mlflow.entities import Experiment
    from mlflow.exceptions import MlflowException

    deleted_id = namespace.get("restore_me_id")
    if not isinstance(deleted_id, str) or not deleted_id:
        raise Incorrect(_("`restore_me_id` is not defined: run the cells of the section *A deleted "
                          "experiment* from its start, then the exercise and this check."))
    try:
        stored = tracking_client().get_experiment(deleted_id)
    except MlflowException:
        raise Incorrect(_("The store has no experiment {experiment_id} any more: `mlflow gc` "
                          "deleted it for good, and nothing restores it. Run the cell above the "
                          "exercise again; it makes a new one to restore.").format(
                              experiment_id=deleted_id)) from None
    answer = answers["active_experiment"]
    if not isinstance(answer, Experiment):
        raise Incorrect(_("`active_experiment` should be the experiment that "
                          "`mlflow.set_experiment` returns."))
    if stored.lifecycle_stage != "active":
        if answer.experiment_id != deleted_id:
            raise Incorrect(_("`active_experiment` is {active!r}, another experiment, while "
                              "{name!r} and its run are still deleted. A new name gives an "
                              "empty experiment; restore the deleted one with "
                              "`client.restore_experiment(restore_me_id)`.").format(
                                  active=answer.name, name=stored.name))
        raise Incorrect(_("{name!r} is still deleted in the store. Restore it with "
                          "`client.restore_experiment(restore_me_id)` first.").format(name=stored.name))
    if answer.experiment_id != deleted_id:
        raise Incorrect(_("{name!r} is restored, but `active_experiment` is "
                          "{active!r}. Keep what `mlflow.set_experiment` returns for the "
                          "restored one.").format(name=stored.name, active=answer.name))
    if _active_experiment_id() != deleted_id:
        raise Incorrect(_("{name!r} is restored, but it is not the active experiment: new "
                          "runs would go elsewhere. `mlflow.set_experiment` makes it active.").format(
                              name=stored.name))
    runs = len(tracking_client().search_runs([deleted_id]))
    return _("{name!r} is active again, with its {runs} run(s), and new runs go to it.").format(
        name=stored.name, runs=runs)


q3 = Exercise(
    key="06.3",
    title=N_("Restore a deleted experiment"),
    answers=("active_experiment",),
    check=_check_restored,
    hint=N_("`client.restore_experiment(experiment_id)` undoes a deletion. Then "
            "`mlflow.set_experiment(experiment_id=...)` (or its name) makes it the active "
            "experiment, and returns it."),
    solution=("client.restore_experiment(restore_me_id)\n"
              "active_experiment = mlflow.set_experiment(experiment_id=restore_me_id)"),
    mistake='active_experiment = mlflow.set_experiment(f"{experiment_name}-restored")',
)
