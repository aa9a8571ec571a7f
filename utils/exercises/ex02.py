"""Exercises of notebook 02: a Databricks profile of your own, and a user who may only look.

Each check reads what the learner made: the profile file and what the course's reader
returned (02.1), the user and their permission on the team server, and the error the
server raised (02.2). Neither trains anything or contacts Databricks.
"""

from __future__ import annotations

import stat
from pathlib import Path

from utils import remote
from utils.errors import CourseError
from utils.exercises import Exercise, Incorrect

PRACTICE_PROFILE = "practice"


# -- 02.1: a profile in a scratch config file ------------------------------------------
def _check_practice_profile(answers, namespace) -> str:
    config = answers["practice_config"]
    path = Path(namespace["practice_file"])
    host, token = namespace["practice_host"], namespace["practice_token"]
    if config is None:
        raise Incorrect(
            "`read_databricks_config` found no configuration, so it returned None. Without "
            "`profile=` it reads DATABRICKS_HOST and DATABRICKS_TOKEN, then the [DEFAULT] "
            f"profile of the file; name the profile: `profile=\"{PRACTICE_PROFILE}\"`, "
            "`config_file=practice_file`."
        )
    if not isinstance(config, remote.DatabricksConfig):
        raise Incorrect(
            f"`practice_config` holds a {type(config).__name__}; it should be what "
            "`remote.read_databricks_config(...)` returns for your file."
        )
    if config.profile != PRACTICE_PROFILE:
        where = f"profile [{config.profile}]" if config.profile else "the environment or a [DEFAULT] profile"
        raise Incorrect(
            f"`practice_config` was read from {where}, not from the [{PRACTICE_PROFILE}] profile: "
            f"pass `profile=\"{PRACTICE_PROFILE}\"` to `read_databricks_config`."
        )
    if config.config_file is None or config.config_file.resolve() != path.resolve():
        raise Incorrect(
            f"`practice_config` came from {config.config_file or 'the environment'}, not from "
            "`practice_file`: pass `config_file=practice_file`, so that your real "
            "~/.databrickscfg stays out of the exercise."
        )
    if not path.is_file():
        raise Incorrect(f"There is no file at `practice_file` ({path}) any more: write it again.")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise Incorrect(
            f"`practice_file` can be read by other users (mode {mode:o}), and it holds a token: "
            "`practice_file.chmod(0o600)`."
        )
    try:  # the file as it is now, read again the same way
        now = remote.read_databricks_config(profile=PRACTICE_PROFILE, config_file=path)
    except CourseError as problem:
        raise Incorrect(f"Reading your file again fails: {problem}") from None
    if now.host != host:
        because = (
            " DATABRICKS_HOST is set in this kernel, and databricks-sdk takes a variable over "
            "the profile's line: unset it for this exercise (`del os.environ[\"DATABRICKS_HOST\"]`)."
            if now.host_from == remote.HOST_ENV else " Write `host = ` and `practice_host`."
        )
        raise Incorrect(f"The host read back is {now.host}, not `practice_host` ({host}).{because}")
    if now.token != token:
        because = (
            " DATABRICKS_TOKEN is set in this kernel, and databricks-sdk takes it over the "
            "profile's line: unset it for this exercise."
            if now.token_from == remote.TOKEN_ENV else " Write `token = ` and `practice_token`."
        )
        raise Incorrect(f"The token read back is not `practice_token` (neither is shown).{because}")
    return (
        f"profile [{PRACTICE_PROFILE}] of your file, readable by you only, read back through "
        f"databricks-sdk: host {now.host}, token {now.masked_token}. Its tracking URI would be "
        f"{now.tracking_uri}."
    )


q1 = Exercise(
    key="02.1",
    title="A Databricks profile of your own",
    answers=("practice_config",),
    check=_check_practice_profile,
    hint=(
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


# -- 02.2: READ on one experiment, and the 403 that follows ------------------------------
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


def _check_read_only_user(answers, namespace) -> str:
    refusal = answers["refusal"]
    server, username = namespace["team_server"], namespace["reader_name"]
    experiment_id = str(namespace["experiment_id"])
    if not server.is_running:
        raise Incorrect(
            "The team server is not running any more: run the notebook's cells from "
            "\"Start it\" on again, then the exercise."
        )
    auth = namespace.get("auth") or remote.prepare_basic_auth()
    granted = explicit_permissions(server.url, auth, username)
    if granted is None:
        raise Incorrect(
            f"There is no user {username!r} on the team server. As the admin: "
            "`admin_client.create_user(reader_name, reader_password)`."
        )
    permission = granted.get(experiment_id)
    if permission is None:
        raise Incorrect(
            f"{username!r} has no permission of their own on experiment {experiment_id}. A write "
            "is refused anyway here, because this server's `default_permission` is READ, but a "
            "team's default may be EDIT. Grant it: `admin_client.grant_user_permission("
            "reader_name, \"experiment\", experiment_id, \"READ\")`."
        )
    if permission in ("EDIT", "MANAGE"):
        raise Incorrect(
            f"{username!r} has {permission} on experiment {experiment_id}, and {permission} lets a "
            "user log runs, so the write went through. Grant READ: run the cell above the "
            "exercise again (it deletes the user, and so their permissions), then the exercise "
            "with \"READ\"."
        )
    if permission != "READ":
        what = "they may not even look at it" if permission == "DENY" else "that is not READ"
        raise Incorrect(
            f"{username!r} has {permission} on experiment {experiment_id}: {what}. The exercise "
            "asks for READ, which lets a user look and nothing more. Run the cell above the "
            "exercise again, then the exercise with \"READ\"."
        )
    if not isinstance(refusal, BaseException):
        raise Incorrect(
            f"`refusal` holds {refusal!r}, not an error: the write was not refused. With READ it "
            "must be, unless it ran as the admin: this kernel logs in as the admin, so wrap the "
            "write in `with remote.tracking_credentials(reader_name, reader_password):` and "
            "keep the MlflowException it raises."
        )
    status = remote.http_status(refusal)
    if status == 401:
        raise Incorrect(
            "The server answered 401 Unauthorized: it did not accept the login, so it never "
            "looked at the permission. Log in with `reader_password`, the password the user "
            "was created with."
        )
    if status != 403:
        raise Incorrect(
            f"`refusal` is {type(refusal).__name__} ({remote.explain_tracking_error(refusal, server.url)}), "
            "not the server's 403 Forbidden. Try to write, e.g. `create_run(experiment_id)` "
            "of `mlflow.MlflowClient(tracking_uri=team_server.url)`, as the new user."
        )
    return (
        f"{username!r} has READ on experiment {experiment_id}, and the server refused their "
        "write with HTTP 403 Forbidden: it knows who asks, and READ lets them look, not log."
    )


q2 = Exercise(
    key="02.2",
    title="A user who may only look",
    answers=("refusal",),
    check=_check_read_only_user,
    hint=(
        "Three steps. As the admin: `admin_client.create_user(name, password)` and "
        "`admin_client.grant_user_permission(name, \"experiment\", experiment_id, \"READ\")`. "
        "Then, inside `with remote.tracking_credentials(reader_name, reader_password):`, try "
        "`mlflow.MlflowClient(tracking_uri=team_server.url).create_run(experiment_id)` in a `try` block and keep the "
        "`MlflowException` it raises in `refusal`."
    ),
    solution="""\
admin_client.create_user(reader_name, reader_password)
admin_client.grant_user_permission(reader_name, "experiment", experiment_id, "READ")
refusal = None
with remote.tracking_credentials(reader_name, reader_password):
    try:
        mlflow.MlflowClient(tracking_uri=team_server.url).create_run(experiment_id)
    except MlflowException as error:
        refusal = error
print(remote.explain_tracking_error(refusal, team_server.url) if refusal else "the write went through")""",
    mistake="""\
admin_client.create_user(reader_name, reader_password)
admin_client.grant_user_permission(reader_name, "experiment", experiment_id, "EDIT")
refusal = None
with remote.tracking_credentials(reader_name, reader_password):
    try:
        mlflow.MlflowClient(tracking_uri=team_server.url).create_run(experiment_id)
    except MlflowException as error:
        refusal = error
print(remote.explain_tracking_error(refusal, team_server.url) if refusal else "the write went through")""",
)
