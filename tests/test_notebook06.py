"""Notebook 06 reproduces each error it promises and proves each fix, twice in a row.

Every section must really meet its error: a section whose error silently stops appearing
(because MLflow changed, say) fails here by name, as does a fix that stopped working. The
second run has MLFLOW_TRACKING_URI naming a separate server, which must stay untouched: the
notebook works on the local workspace on purpose.
"""

import re

import mlflow
import pytest
from mlflow.entities import ViewType

from tests.notebook_runner import (NOTEBOOKS, cell_text, chinese_reading_problems, course_env, execute, noise_in,
                                   run_notebook, separate_server, servers_of)

pytestmark = pytest.mark.full
NAME = "06_troubleshooting.ipynb"


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    workspace = tmp_path_factory.mktemp("nb06-ws")
    out = tmp_path_factory.mktemp("nb06-out")
    with separate_server(tmp_path_factory.mktemp("nb06-remote") / "ws") as remote:
        first = run_notebook(NAME, out / "first", workspace, chinese=True)  # its code is the English one's
        second = execute(NOTEBOOKS / NAME, out / "second" / NAME,
                         env=course_env(workspace, MLFLOW_TRACKING_URI=remote.url))
        others = mlflow.MlflowClient(remote.url)
        remote_holds = ([e.name for e in others.search_experiments()], others.search_runs(["0"]),
                        others.search_registered_models())
    return first, second, workspace, remote.url, remote_holds


def test_a_remote_tracking_uri_is_left_alone(executed):
    first, second, workspace, remote_url, remote_holds = executed
    assert remote_holds == (["Default"], [], [])
    assert "is left alone" not in cell_text(first, "use_workspace(local=True)")
    assert f"{remote_url} (from your environment) is left alone" in cell_text(second, "use_workspace(local=True)")
    for notebook in executed[:2]:
        assert f"tracking URI: sqlite:///{workspace}/mlflow.db" in cell_text(notebook, "use_workspace(local=True)")


def test_outputs_are_quiet_and_whole(executed):
    for notebook in executed[:2]:
        assert noise_in(notebook.cells) == []
        text = cell_text(notebook, "transition_model_version_stage")
        assert "releas\n" not in text and "Please see ht\n" not in text
        assert "Add type hints" not in cell_text(notebook, "log_model(")


def test_the_exercises_start_from_a_stuck_run_and_a_deleted_experiment(executed):
    for notebook in executed[:2]:
        assert re.search(r"stuck_run_id: [0-9a-f]{32} \| status: RUNNING", cell_text(notebook, "abandoned ="))
        assert re.search(r"restore_me_id: \d+ \| deleted", cell_text(notebook, "restore_me_id = "))


def test_doctor_reports_without_secrets(executed):
    for notebook in executed[:2]:
        doctor = cell_text(notebook, '"doctor", "--mask-envs"')
        assert "MLflow version" in doctor and "Tracking URI" in doctor
        assert "MLFLOW_TRACKING_URI: ***" in doctor  # values masked


def test_the_wrong_store(executed):
    for notebook in executed[:2]:
        lost = cell_text(notebook, 'tracking_uri="", cwd=elsewhere')
        assert "exit code: 1" in lost and re.search(r"Run with id=[0-9a-f]{32} not found", lost)
        assert "files the command made there: ['mlflow.db']" in lost
        assert "exit code: 0 | run name: True" in cell_text(notebook, "tracking_uri=workspace.backend_store_uri")


def test_the_file_store_is_refused_then_allowed_then_migrated(executed):
    workspace = executed[2]
    for notebook in executed[:2]:
        refused = cell_text(notebook, 'refused = inspection.run_mlflow_cli("experiments", "search"')
        assert "exit code: 1" in refused
        assert "The filesystem tracking backend (e.g., './mlruns') is in maintenance mode" in refused
        assert "exit code: 0 | lists chapter-era: True" in cell_text(notebook, "allowed = inspection")
        assert "logged-in-2021 FINISHED {'lr': '0.01'} {'val_accuracy': 0.62}" in cell_text(
            notebook, "new_client.search_runs")
    migrated = mlflow.MlflowClient(f"sqlite:///{workspace}/troubleshooting/migrated.db")
    assert migrated.get_experiment_by_name("chapter-era") is not None


def test_removed_apis_and_their_replacements(executed):
    for notebook in executed[:2]:
        removed = cell_text(notebook, '("list_experiments", "list_run_infos", "list_registered_models")')
        for name in ("list_experiments", "list_run_infos", "list_registered_models"):
            assert f"AttributeError: 'MlflowClient' object has no attribute '{name}'" in removed
        assert "['troubleshooting']" in cell_text(notebook, "client.search_experiments(filter_string")


def test_stages_warn_and_aliases_work(executed):
    for notebook in executed[:2]:
        stages = cell_text(notebook, "transition_model_version_stage")
        assert "FutureWarning: ``mlflow.tracking.client.MlflowClient.transition_model_version_stage`` is deprecated" in stages
        assert "FutureWarning: ``mlflow.tracking.client.MlflowClient.get_latest_versions`` is deprecated" in stages
        assert "will be removed in a future major release. To learn more" in stages  # whole
        assert "[1, 2, 3]" in cell_text(notebook, "@champion")
    _, second, workspace = executed[:3]
    client = mlflow.MlflowClient(f"sqlite:///{workspace}/mlflow.db")
    assert str(client.get_model_version_by_alias("troubleshooting-model", "champion").version) == "2"
    assert "champion is version 2" in cell_text(second, "get_model_version_by_alias")


def test_autologging_records_nothing_then_something(executed):
    for notebook in executed[:2]:
        assert "params: {} | metrics: {}" in cell_text(notebook, 'run_name="plain-pytorch-loop"')
        assert re.search(r"loss: 20 values, from [\d.]+ to [\d.]+", cell_text(notebook, "plain-pytorch-loop-logged"))
        lightning = cell_text(notebook, 'run_name="fit-with-autolog"')
        assert "autolog after fit   params: []  metrics: []" in lightning
        assert re.search(r"autolog before fit  params: \['[a-z_]+'.*metrics: \['train_loss'\]", lightning)


def test_a_killed_run_is_found_and_closed(executed):
    workspace = executed[2]
    for notebook in executed[:2]:
        assert "the process ended with signal 9" in cell_text(notebook, "victim = start_a_run_and_get_killed(")
        closed = cell_text(notebook, "attributes.status = 'RUNNING'")
        assert "stuck: killed-mid-training RUNNING" in closed
        assert "now: [('killed-mid-training', 'KILLED')]" in closed
    client = mlflow.MlflowClient(f"sqlite:///{workspace}/mlflow.db")
    experiment = client.get_experiment_by_name("troubleshooting")
    killed = client.search_runs([experiment.experiment_id], filter_string="attributes.run_name = 'killed-mid-training'")
    assert [run.info.status for run in killed] == ["KILLED", "KILLED"]
    # The exercise's runs stay RUNNING at the defaults, in an experiment of their own.
    your_turn = client.get_experiment_by_name("troubleshooting-your-turn")
    assert [run.info.status for run in client.search_runs([your_turn.experiment_id])] == ["RUNNING", "RUNNING"]


def port_of(refused: str) -> int:
    return int(re.search(r"address \('127\.0\.0\.1', (\d+)\)", refused)[1])


def test_a_port_in_use(executed):
    for notebook in executed[:2]:
        refused = cell_text(notebook, "busy_port = taken.getsockname()[1]")
        assert re.search(r"\[Errno 98\] error while attempting to bind on address .*: address already in use", refused)
        fixed = cell_text(notebook, "utils.start_server(port=busy_port)")
        assert "CourseError:" in fixed and str(port_of(refused)) in fixed
        assert re.search(r"started on a free port instead: <TrackingServer http://127\.0\.0\.1:\d+ running>", fixed)
    assert "already in use by another program" in cell_text(executed[1], "utils.start_server(port=busy_port)")


def test_the_host_header_and_cors_checks(executed):
    for notebook in executed[:2]:
        assert "403 Invalid Host header - possible DNS rebinding attack detected" in cell_text(
            notebook, "refused = requests.get(")
        assert "with --allowed-hosts: 200" in cell_text(notebook, "local_too = [")
        assert "403 Cross-origin request blocked" in cell_text(notebook, "blocked = requests.post(")
        assert "with --cors-allowed-origins too: 200" in cell_text(notebook, "--cors-allowed-origins")


def test_a_deleted_experiment_is_restored(executed):
    workspace = executed[2]
    for notebook in executed[:2]:
        assert cell_text(notebook, "old_id = a_deleted_experiment(old_name)") == (
            "MlflowException: Cannot set a deleted experiment 'troubleshooting-old' as the active "
            "experiment. You can restore the experiment, or permanently delete the experiment to "
            "create a new one.\n")
        taken = cell_text(notebook, "client.create_experiment(old_name)")
        assert "lifecycle_stage: deleted" in taken
        assert "MlflowException: Experiment(name=troubleshooting-old) already exists." in taken
        assert "troubleshooting-old active | runs: 1" in cell_text(notebook, "client.restore_experiment(old_id)")
        gc_help = " ".join(cell_text(notebook, "!mlflow gc --help").split())
        assert "If run ids are not specified, data is removed for all runs in the `deleted`" in gc_help
        assert "--experiment-ids TEXT" in gc_help
    client = mlflow.MlflowClient(f"sqlite:///{workspace}/mlflow.db")
    assert client.get_experiment_by_name("troubleshooting-old").lifecycle_stage == "active"
    # The exercise's experiment stays deleted at the defaults, with its one run.
    restore_me = client.get_experiment_by_name("troubleshooting-restore-me")
    assert restore_me.lifecycle_stage == "deleted"
    assert len(client.search_runs([restore_me.experiment_id], run_view_type=ViewType.ALL)) == 1


def test_the_chinese_edition_reads_well_at_its_defaults(executed):
    first, _, workspace = executed[:3]
    assert chinese_reading_problems(NAME, first, workspace) == []
    refused = cell_text(first, "busy_port = taken.getsockname()[1]")
    assert f"端口 {port_of(refused)}" in cell_text(first, "utils.start_server(port=busy_port)")


def test_no_server_is_left_running(executed):
    assert servers_of(executed[2]) == []
