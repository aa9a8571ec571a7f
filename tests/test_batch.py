"""`python -m tools.batch` runs notebooks headless as promised: real papermill, real kernels.

The fixture notebooks under tests/fixtures/notebooks stand in for course notebooks:
90 logs one MLflow run (and can start a server, sleep, or ignore interrupts), 91 fails
in its third code cell.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient
from papermill.cli import _resolve_type

from tests.notebook_runner import servers_of
from tools.batch import course_notebooks, load_params_file, parse_value, plan_parameters, run_name_for
from utils.errors import CourseError
from utils.workspace import repo_root

ROOT = repo_root()
FIXTURES = ROOT / "tests" / "fixtures" / "notebooks"
LOGS_A_RUN = FIXTURES / "90_log_a_run.ipynb"


def _env(workspace: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "COURSE_PARAMS")}
    return {**env, "COURSE_WORKSPACE": str(workspace), **extra}


def batch(*args, workspace: Path, timeout: float = 300, **extra) -> subprocess.CompletedProcess:
    """Run the CLI as a reader would, from the course folder."""
    return subprocess.run(
        [sys.executable, "-m", "tools.batch", *map(str, args)],
        cwd=ROOT, env=_env(workspace, **extra), capture_output=True, text=True, timeout=timeout,
    )


def summary(output: Path) -> dict[str, dict]:
    data = json.loads((output / "summary.json").read_text())
    return {entry["label"]: entry for entry in data["notebooks"]}


def store(workspace: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{workspace / 'mlflow.db'}")


def injected(executed: Path) -> str:
    notebook = json.loads(executed.read_text())
    cells = [c for c in notebook["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    return "".join(cells[0]["source"]) if cells else ""


# -- parameters, without kernels ------------------------------------------------------------
@pytest.mark.parametrize("text", ["True", "False", "None", "3", "-2", "0.5", "1e-3", "nan", "freeze",
                                  "1_000", "0x10", ""])
def test_command_line_values_are_read_as_papermill_reads_them(text):
    assert repr(parse_value(text)) == repr(_resolve_type(text))


def test_params_file_number_keys_keep_their_leading_zero(tmp_path):
    path = tmp_path / "p.yml"
    path.write_text('3:\n  a: 1\n"04":\n  b: 2.5\n91_fails.ipynb:\n  divisor: 1e-3\n')
    # YAML reads 1e-3 as text (the files say so), unlike `-p`.
    assert load_params_file(path) == {"03": {"a": 1}, "04": {"b": 2.5}, "91_fails.ipynb": {"divisor": "1e-3"}}


def test_params_file_naming_a_notebook_twice_is_refused(tmp_path):
    path = tmp_path / "p.yml"
    path.write_text('3:\n  a: 1\n"03":\n  b: 2\n')
    with pytest.raises(CourseError, match="section '03' appears twice"):
        load_params_file(path)


def test_later_sources_win_and_each_goes_only_where_declared(tmp_path):
    notebooks = course_notebooks(FIXTURES)
    plan = plan_parameters(
        notebooks, notebooks, {"90": {"score": 0.1, "run_name": "file"}, "91": {"divisor": 2}}, "f.yml",
        [("score", "0.2"), ("90:run_name", "cli"), ("divisor", "3")],
    )
    assert plan == {LOGS_A_RUN: {"score": 0.2, "run_name": "cli"}, FIXTURES / "91_fails.ipynb": {"divisor": 3}}


def test_run_names_are_readable():
    assert run_name_for({"learning_rate": 0.001, "strategy": "freeze"}) == "lr=0.001-strategy=freeze"


@pytest.mark.parametrize("params_file", sorted((ROOT / "tools" / "params").glob("*.yml")), ids=lambda p: p.name)
def test_course_params_files_name_real_notebooks_and_parameters(params_file):
    notebooks = course_notebooks(ROOT / "notebooks")
    plan = plan_parameters(notebooks, notebooks, load_params_file(params_file), params_file.name, [])
    assert any(plan.values())


# -- bad input: one clear message, exit code 2, no traceback ----------------------------------
BAD_INPUT = {
    "unknown notebook": (["run", "42"], "no notebook '42'"),
    "unknown parameter": (["run", "90", "-p", "scor", "1"], "declares 'scor'"),
    "parameter of another notebook": (["run", "-p", "90:divisor", "1"], "has no parameter 'divisor'"),
    "unknown parameter in the file": (["run", "--params", "{typo}"], "has no parameter 'scor'"),
    "malformed YAML": (["run", "--params", "{broken}"], "is not valid YAML at line 3"),
    "output that cannot be written": (["run", "--output", "{a_file}/out"], "cannot be written"),
    "sweep of an undeclared parameter": (["sweep", "--notebook", "90", "--grid", "foo=1,2"],
                                         "no parameter 'foo'"),
}


@pytest.mark.parametrize("case", BAD_INPUT, ids=list(BAD_INPUT))
@pytest.mark.full
def test_bad_input_gets_one_clear_message(case, tmp_path):
    args, message = BAD_INPUT[case]
    (tmp_path / "typo.yml").write_text('"90":\n  scor: 1\n')
    (tmp_path / "broken.yml").write_text('"90":\n  score: [1, 2\n')
    (tmp_path / "a_file").write_text("")
    names = {"typo": tmp_path / "typo.yml", "broken": tmp_path / "broken.yml", "a_file": tmp_path / "a_file"}
    args = [a.format(**names) for a in args]
    output = [] if "--output" in args else ["--output", tmp_path / "out"]
    result = batch(*args, "--notebooks-dir", FIXTURES, *output, workspace=tmp_path / "ws", timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert not (tmp_path / "ws").exists(), "bad input must be refused before anything runs"


# -- running notebooks ---------------------------------------------------------------------------
@pytest.mark.full
def test_run_two_notebooks_with_a_params_file(tmp_path):
    workspace, output = tmp_path / "ws", tmp_path / "out"
    params = tmp_path / "params.yml"
    params.write_text('"01":\n  port: 0\n90_log_a_run.ipynb:\n  score: 0.75\n  run_name: from-the-file\n')
    result = batch("run", "01", LOGS_A_RUN, "--params", params, "--output", output, "--html",
                   workspace=workspace)
    assert result.returncode == 0, result.stdout + result.stderr
    done = summary(output)
    assert {name: entry["status"] for name, entry in done.items()} == {
        "01_local_setup.ipynb": "ok", "90_log_a_run.ipynb": "ok"}
    assert "port = 0" in injected(output / "01_local_setup.ipynb")
    assert done["01_local_setup.ipynb"]["run_ids"] == []
    (run_id,) = done["90_log_a_run.ipynb"]["run_ids"]
    assert run_id in result.stdout  # the summary table names it
    run = store(workspace).get_run(run_id)  # and it is in the shared course workspace
    assert (run.info.run_name, run.data.params["score"]) == ("from-the-file", "0.75")
    page = (output / "90_log_a_run.html").read_text()
    assert "Fixture: log one MLflow run" in page and run_id in page
    assert servers_of(workspace) == [], "notebook 01 left its server running"


@pytest.mark.full
def test_failing_notebook_is_named_with_its_cell_and_kept(tmp_path):
    shared, output = tmp_path / "shared-ws", tmp_path / "out"
    result = batch("run", "--notebooks-dir", FIXTURES, "--workspace", "fresh", "--output", output,
                   workspace=shared)
    assert result.returncode == 1, result.stdout + result.stderr
    report = result.stdout
    assert "FAILED: 91_fails.ipynb: In [3] (ratio = 1 / divisor) raised ZeroDivisionError" in report
    assert "----> 1 ratio = 1 / divisor" in report  # the traceback's last lines
    done = summary(output)
    assert done["90_log_a_run.ipynb"]["status"] == "ok", "a failure must not stop the others"
    kept = json.loads((output / "91_fails.ipynb").read_text())
    errors = [o for c in kept["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert [e["ename"] for e in errors] == ["ZeroDivisionError"]
    # fresh: each notebook had its own store, and the shared workspace was not touched
    (run_id,) = done["90_log_a_run.ipynb"]["run_ids"]
    assert store(output / "workspaces" / "90_log_a_run").get_run(run_id).info.status == "FINISHED"
    assert not shared.exists()


@pytest.mark.full
def test_a_cell_over_the_time_limit_stops_its_notebook_and_its_open_run_is_marked_killed(tmp_path):
    # --timeout is papermill's execution_timeout: a limit per cell. The kernel is stopped
    # inside the run (the cell ignores the interrupt), so the run never ends by itself.
    workspace, output = tmp_path / "ws", tmp_path / "out"
    result = batch("run", "90", "--notebooks-dir", FIXTURES, "-p", "sleep_in_run", "600",
                   "-p", "ignore_interrupt", "True", "--timeout", "60", "--output", output,
                   workspace=workspace)
    assert result.returncode == 1, result.stdout + result.stderr
    entry = summary(output)["90_log_a_run.ipynb"]
    assert entry["status"] == "timeout" and entry["seconds"] < 600
    assert "ran longer than the time limit of 60 s" in entry["problem"] and "TIMEOUT: 90_log_a_run.ipynb" in result.stdout
    kept = json.loads((output / "90_log_a_run.ipynb").read_text())
    assert "done" not in json.dumps(kept["cells"][-1]["outputs"]), "the cells after it must not run"
    (run_id,) = entry["run_ids"]
    assert entry["killed_runs"] == [run_id]
    assert f"marked KILLED (its kernel was stopped while they ran): {run_id}" in result.stdout
    assert store(workspace).get_run(run_id).info.status == "KILLED"


def _cell_is_running(executed: Path, source_contains: str) -> bool:
    try:
        notebook = json.loads(executed.read_text())
    except (OSError, ValueError):
        return False
    return any(source_contains in "".join(c["source"])
               and c["metadata"].get("papermill", {}).get("status") == "running" for c in notebook["cells"])


@pytest.mark.full
def test_ctrl_c_stops_the_kernel_and_the_server_it_started(tmp_path):
    workspace, output = tmp_path / "ws", tmp_path / "out"
    # The sleeping cell ignores the interrupt, so the kernel must be killed (nbclient shuts
    # it down); the server the kernel started must die with it.
    process = subprocess.Popen(
        [sys.executable, "-m", "tools.batch", "run", "90", "--notebooks-dir", FIXTURES, "--output", output,
         "-p", "serve", "True", "-p", "ignore_interrupt", "True", "-p", "sleep_seconds", "600"],
        cwd=ROOT, env=_env(workspace), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not _cell_is_running(output / "90_log_a_run.ipynb", "time.sleep(sleep_seconds)"):
            assert time.monotonic() < deadline and process.poll() is None, "the notebook never reached its sleep"
            time.sleep(0.3)
        assert servers_of(workspace), "the fixture should have started a server"
        process.send_signal(signal.SIGINT)
        report, _ = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, report
    assert "INTERRUPTED: 90_log_a_run.ipynb: stopped by Ctrl-C in In [7]" in report
    deadline = time.monotonic() + 20
    while servers_of(workspace) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert servers_of(workspace) == []


# -- sweeps --------------------------------------------------------------------------------------
def _sweep_runs(workspace: Path, experiment: str, sweep: str):
    client = store(workspace)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment}"
    return client.search_runs([found.experiment_id], filter_string=f"tags.`course.sweep` = '{sweep}'")


@pytest.mark.full
def test_sweep_tags_one_run_per_combination_and_ranks_them(tmp_path):
    workspace = tmp_path / "ws"
    result = batch("sweep", "--notebook", LOGS_A_RUN, "--grid", "score=0.2,0.9", "--grid", "sleep_seconds=0",
                   "--experiment", "fixture-sweep", "--name", "s1", "--output", tmp_path / "out",
                   workspace=workspace)
    assert result.returncode == 0, result.stdout + result.stderr
    runs = _sweep_runs(workspace, "fixture-sweep", "s1")
    assert sorted(r.info.run_name for r in runs) == ["score=0.2-sleep_seconds=0", "score=0.9-sleep_seconds=0"]
    assert {r.data.tags["course.sweep.grid"] for r in runs} == {"score,sleep_seconds"}
    ranking = result.stdout.split("runs ranked by test_accuracy (highest first):")[1].splitlines()
    assert ranking[3].split()[:3] == ["1", "score=0.9-sleep_seconds=0", "0.9000"]
    assert ranking[4].split()[:3] == ["2", "score=0.2-sleep_seconds=0", "0.2000"]
    # One kernel at a time: the second run's kernel found the first one's gone.
    second = (tmp_path / "out" / "sweeps" / "s1" / "score=0.9-sleep_seconds=0.ipynb").read_text()
    assert "the previous notebook's kernel is alive: False" in second


@pytest.mark.full
def test_the_readme_s_sweep_of_notebook_03_ranks_four_runs_told_apart_by_their_params(tmp_path):
    """The README's sweep (with tools/params/ci.yml added, so that it is quick): every
    combination runs notebook 03 to the end, pooling="pooler" too."""
    workspace = tmp_path / "ws"
    result = batch("sweep", "--grid", "pooling=mean,pooler", "--grid", "learning_rate=0.003,0.03",
                   "--params", ROOT / "tools" / "params" / "ci.yml", "--name", "readme",
                   "--output", tmp_path / "out", workspace=workspace, timeout=1800, HF_HUB_OFFLINE="1")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    runs = _sweep_runs(workspace, "dl_model_chapter02_sweep", "readme")
    assert sorted(r.info.run_name for r in runs) == [
        "pooling=mean-lr=0.003", "pooling=mean-lr=0.03", "pooling=pooler-lr=0.003", "pooling=pooler-lr=0.03"]
    assert all(r.info.status == "FINISHED" and "test_accuracy" in r.data.metrics for r in runs)
    # Their params tell them apart, by the swept values and nothing else.
    assert sorted((r.data.params["pooling"], r.data.params["learning_rate"]) for r in runs) == [
        ("mean", "0.003"), ("mean", "0.03"), ("pooler", "0.003"), ("pooler", "0.03")]
    others = [{k: v for k, v in r.data.params.items() if k not in ("pooling", "learning_rate", "lr")}
              for r in runs]
    assert all(other == others[0] for other in others) and others[0]["train_size"] == "64"
    # One run per combination, and nothing else in the experiment.
    client = store(workspace)
    everything = client.search_runs([client.get_experiment_by_name("dl_model_chapter02_sweep").experiment_id])
    assert sorted(r.info.run_id for r in everything) == sorted(r.info.run_id for r in runs)
    ranked = sorted(runs, key=lambda r: r.data.metrics["test_accuracy"], reverse=True)
    ranking = result.stdout.split("(highest first):")[1].splitlines()[3:7]
    assert [line.split()[0] for line in ranking] == ["1", "2", "3", "4"]
    assert [f"{float(line.split()[2]):.4f}" for line in ranking] == \
        [f"{r.data.metrics['test_accuracy']:.4f}" for r in ranked]
    assert ranking[0].split()[1] in {r.info.run_name for r in ranked
                                     if r.data.metrics["test_accuracy"] == ranked[0].data.metrics["test_accuracy"]}
