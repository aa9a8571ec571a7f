"""Exercises of notebook 02: a Databricks profile of your own, and the grant that lets the
team server's student log runs.

Each check reads what the learner made: the profile file and what the course's reader
returned (02.1); the student's permission on the team server, asked of the server, and the
run they logged (02.2). Neither trains anything or contacts Databricks.
"""

from __future__ import annotations

import os
from pathlib import Path

from utils import remote
from utils.errors import CourseError
from utils.exercises import Exercise, Incorrect
from utils.i18n import N_
from utils.i18n import gettext as _

PRACTICE_PROFILE = "practice"
STUDENT = "student"


# -- 02.1: a profile in a scratch config file ------------------------------------------
def _check_practice_profile(answers, namespace) -> str:
    from databricks.sdk.core import Config

    config = answers["practice_config"]
    path = Path(namespace["practice_file"])
    host, token = namespace["practice_host"], namespace["practice_token"]
    if config is None:
        raise Incorrect(_(
            "`read_databricks_config` found no configuration, so it returned None. Without "
            "`profile=` it reads DATABRICKS_HOST and DATABRICKS_TOKEN, then the [DEFAULT] "
            "profile of the file; name the profile: `profile=\"{profile}\"`, "
            "`config_file=practice_file`."
        ).format(profile=PRACTICE_PROFILE))
    if not isinstance(config, Config):
        raise Incorrect(_(
            "`practice_config` holds a {kind}; it should be what "
            "`remote.read_databricks_config(...)` returns for your file."
        ).format(kind=type(config).__name__))
    if config.profile != PRACTICE_PROFILE:
        where = (_("profile [{profile}]").format(profile=config.profile) if config.profile
                 else _("the environment or a [DEFAULT] profile"))
        raise Incorrect(_(
            "`practice_config` was read from {where}, not from the [{profile}] profile: "
            "pass `profile=\"{profile}\"` to `read_databricks_config`."
        ).format(where=where, profile=PRACTICE_PROFILE))
    if not config.config_file or Path(config.config_file).resolve() != path.resolve():
        raise Incorrect(_(
            "`practice_config` came from {source}, not from "
            "`practice_file`: pass `config_file=practice_file`, so that your real "
            "~/.databrickscfg stays out of the exercise."
        ).format(source=config.config_file or "~/.databrickscfg"))
    try:  # the file as it is now (there, private), read again the same way
        now = remote.read_databricks_config(profile=PRACTICE_PROFILE, config_file=path)
    except CourseError as problem:
        raise Incorrect(_("Reading your file again fails: {problem}").format(problem=problem)) from None
    for name, wanted in (("host", host), ("token", token)):
        if getattr(now, name) == wanted:
            continue
        variable = f"DATABRICKS_{name.upper()}"
        because = (
            _(" {variable} is set in this kernel, and databricks-sdk takes a variable over the "
              "profile's line: unset it for this exercise (`del os.environ[\"{variable}\"]`)."
              ).format(variable=variable)
            if os.environ.get(variable) else _(" Write `{name} = ` and `practice_{name}`.").format(name=name)
        )
        raise Incorrect(_("The {name} read back is not `practice_{name}` (neither is shown).").format(
            name=name) + because)
    return _(
        "profile [{profile}] of your file, readable by you only, read back through "
        "databricks-sdk: host {host}, token ***. Its tracking URI would be "
        "databricks://{uri_profile}."
    ).format(profile=PRACTICE_PROFILE, host=now.host, uri_profile=now.profile)


q1 = Exercise(
    key="02.1",
    title=N_("A Databricks profile of your own"),
    answers=("practice_config",),
    check=_check_practice_profile,
    hint=N_(
        "A profile is an INI section: a `[practice]` line, then `host = ...` and `token = ...`. "
        "`practice_file.write_text(...)` writes it (make its folder first with "
        "`practice_file.parent.mkdir(exist_ok=True)`), `practice_file.chmod(0o600)` makes it "
        "yours only, and `remote.read_databricks_config(profile=..., config_file=...)` reads "
        "it back. Put the token in with an f-string; never print it."
    ),
    solution="""\
practice_file.parent.mkdir(exist_ok=True)
practice_file.write_text(f"[practice]\\nhost = {practice_host}\\ntoken = {practice_token}\\n")
practice_file.chmod(0o600)
practice_config = remote.read_databricks_config(profile="practice", config_file=practice_file)
print(practice_config)""",
    mistake="""\
practice_file.parent.mkdir(exist_ok=True)
practice_file.write_text(f"[practice]\\nhost = {practice_host}\\ntoken = {practice_token}\\n")
practice_file.chmod(0o600)
practice_config = remote.read_databricks_config(config_file=practice_file)
print(practice_config)""",
)


# -- 02.2: the one grant that lets the student log runs -----------------------------------
def explicit_permissions(server_url: str, auth: remote.BasicAuthSetup, username: str) -> dict[str, str] | None:
    """``{experiment id: permission}`` granted to ``username`` itself (not the server's
    default), asked of the basic-auth server as its admin; None when there is no such user."""
    import requests

    answer = requests.get(
        f"{server_url}/api/3.0/mlflow/users/permissions/list",
        params={"username": username},
        auth=(auth.admin_username, auth.admin_password),
        timeout=10,
    )
    if answer.status_code == 404:
        return None
    answer.raise_for_status()
    return {
        row["resource_pattern"]: row["permission"]
        for row in answer.json().get("permissions", [])
        if row.get("resource_type") == "experiment"
    }


def _check_student_may_log(answers, namespace) -> str:
    student_run = answers["student_run"]
    server, experiment_id = namespace["team_server"], str(namespace["experiment_id"])
    if not server.is_running:
        raise Incorrect(_(
            "The team server is not running any more: run the notebook's cells from "
            "\"Start it\" on again, then the exercise."
        ))
    auth = namespace.get("auth") or remote.prepare_basic_auth()
    granted = explicit_permissions(server.url, auth, STUDENT)
    if granted is None:
        raise Incorrect(_(
            "There is no user {student!r} on the team server: run the cell under \"One user\" "
            "again, then the exercise."
        ).format(student=STUDENT))
    permission = granted.get(experiment_id)
    if permission is None:
        raise Incorrect(_(
            "{student!r} has no permission of their own on experiment {experiment_id}, so the "
            "server's `default_permission` (READ) applies and a write is refused. As the admin: "
            "`admin_client.grant_user_permission(\"student\", \"experiment\", experiment_id, \"EDIT\")`."
        ).format(student=STUDENT, experiment_id=experiment_id))
    if permission == "READ":
        raise Incorrect(_(
            "{student!r} has READ on experiment {experiment_id}: READ lets a user look, not log, so "
            "their run is refused with 403. Run the cell under \"One user\" again (it makes the "
            "user afresh, without grants), then the exercise with \"EDIT\"."
        ).format(student=STUDENT, experiment_id=experiment_id))
    if permission == "MANAGE":
        raise Incorrect(_(
            "{student!r} has MANAGE on experiment {experiment_id}: that also lets them delete it and "
            "grant others. Logging runs needs EDIT, and no more: run the cell under \"One user\" "
            "again, then the exercise with \"EDIT\"."
        ).format(student=STUDENT, experiment_id=experiment_id))
    if permission != "EDIT":
        raise Incorrect(_(
            "{student!r} has {permission} on experiment {experiment_id}, which does not let them log "
            "runs. Run the cell under \"One user\" again, then the exercise with \"EDIT\"."
        ).format(student=STUDENT, permission=permission, experiment_id=experiment_id))
    # Basic auth records no run's author: the login in effect now is the learner's state.
    if os.environ.get("MLFLOW_TRACKING_USERNAME") != STUDENT:
        raise Incorrect(_(
            "The login in effect is {login!r}, not {student!r}: "
            "after the grant, log in as student (set `MLFLOW_TRACKING_USERNAME` and "
            "`MLFLOW_TRACKING_PASSWORD` to the student's login), then log the run."
        ).format(login=os.environ.get("MLFLOW_TRACKING_USERNAME"), student=STUDENT))
    info = getattr(student_run, "info", None)
    if info is None:
        raise Incorrect(_(
            "`student_run` holds {kind}, not a run. Log in as student (the two "
            "variables), then `with mlflow.start_run(experiment_id=experiment_id) as student_run:`."
        ).format(kind=type(student_run).__name__))
    if str(info.experiment_id) != experiment_id:
        raise Incorrect(_(
            "`student_run` is in experiment {run_experiment_id}, not in course-02-team "
            "({experiment_id}): pass `experiment_id=experiment_id` to `mlflow.start_run`."
        ).format(run_experiment_id=info.experiment_id, experiment_id=experiment_id))
    import mlflow

    status = mlflow.MlflowClient(tracking_uri=server.url).get_run(info.run_id).info.status
    if status == "RUNNING":
        active = mlflow.active_run()
        end_it = (_("Call `mlflow.end_run()` now, still as student") if active is not None
                  and active.info.run_id == info.run_id else _(
                      "End it as student with `mlflow.MlflowClient().set_terminated({run_id!r})`"
                  ).format(run_id=info.run_id))
        raise Incorrect(_(
            "The run {run_id} was logged but never ended: it stays RUNNING on the server, "
            "as if its training were still going (notebook 06, *A run stuck in RUNNING*). {end_it}; "
            "next time write `with mlflow.start_run(experiment_id=experiment_id) as student_run:`, "
            "which ends the run after the block."
        ).format(run_id=info.run_id, end_it=end_it))
    return _(
        "{student!r} has EDIT on experiment {experiment_id} and logged run {run_id} there: "
        "EDIT lets a user log runs, not delete the experiment or grant others."
    ).format(student=STUDENT, experiment_id=experiment_id, run_id=info.run_id)


_SOLUTION = """\
os.environ["MLFLOW_TRACKING_USERNAME"] = auth.admin_username
os.environ["MLFLOW_TRACKING_PASSWORD"] = auth.admin_password
admin_client.grant_user_permission("student", "experiment", experiment_id, "{permission}")
os.environ["MLFLOW_TRACKING_USERNAME"] = "student"
os.environ["MLFLOW_TRACKING_PASSWORD"] = student_password
student_run = None
try:
    with mlflow.start_run(experiment_id=experiment_id, run_name="student-run") as student_run:
        mlflow.log_metric("val_acc", 0.8)
    print("logged as student:", student_run.info.run_id)
except MlflowException as error:
    print("refused:", error.get_http_status_code(), error.error_code)"""

q2 = Exercise(
    key="02.2",
    title=N_("Let the student log runs"),
    answers=("student_run",),
    check=_check_student_may_log,
    hint=N_(
        "Two steps, each under its own login. As the admin (set the two variables to "
        "`auth.admin_username` and `auth.admin_password`): "
        "`admin_client.grant_user_permission(\"student\", \"experiment\", experiment_id, PERMISSION)` "
        "with the level that allows logging runs and no more. Then as student (the variables "
        "again, with `student_password`): `with mlflow.start_run(experiment_id=experiment_id) as "
        "student_run:`."
    ),
    solution=_SOLUTION.format(permission="EDIT"),
    mistake=_SOLUTION.format(permission="READ"),
)
