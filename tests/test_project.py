"""project/, the standalone MLflow project a learner copies: its code stands alone (fast tier),
and its three scripts and `mlflow run` work in a copy of the folder alone (full tier).

Every full-tier test copies project/ into its tmp_path and runs the real scripts there, in
subprocesses with a clean environment (no MLFLOW_* variable; offline), at tiny sizes. A copy
starts with a copy of one empty MLflow store, made once: MLflow's migrations take seconds.
"""

from __future__ import annotations

import ast
import gzip
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ROOT / "project"
SCRIPTS = sorted(PROJECT.glob("*.py"))
COURSE_PACKAGES = {"utils", "tools"}
# Tiny trainings: 32 reviews in batches of 8 give 4 steps an epoch.
TINY = ["--train-size", "32", "--valid-size", "32", "--max-length", "32", "--batch-size", "8"]
EXPERIMENT = "imdb-sentiment"


# ---- fast tier: the code stands alone -----------------------------------------------------

def imported_modules(tree: ast.AST) -> list[str]:
    """Every module a file imports, in any form: import, from-import, __import__, import_module."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append("." * node.level + (node.module or ""))
            found += [f"{node.module}.{alias.name}" for alias in node.names if node.module]
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and getattr(node.func, "attr", getattr(node.func, "id", "")) in ("__import__", "import_module")):
            found.append(node.args[0].value)
    return found


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_names(tree: ast.AST) -> list[str]:
    """Names starting with a single underscore taken from any module or object."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and is_private(node.attr):
            found.append(f"line {node.lineno}: .{node.attr}")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            names = [alias.name for alias in node.names] if isinstance(node, ast.ImportFrom) else []
            found += [f"line {node.lineno}: {part}" for module in modules for part in module.split(".")
                      if is_private(part)]
            found += [f"line {node.lineno}: import {name}" for name in names if is_private(name)]
        elif (isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("getattr", "setattr", "hasattr")
              and len(node.args) > 1 and isinstance(node.args[1], ast.Constant)
              and isinstance(node.args[1].value, str) and is_private(node.args[1].value)):
            found.append(f"line {node.lineno}: {node.func.id}(..., {node.args[1].value!r})")
    return found


def test_the_project_has_its_files():
    names = {path.name for path in PROJECT.iterdir()}
    assert {"train.py", "classifier.py", "search.py", "evaluate.py", "MLproject", "README.md"} <= names
    assert {"train.csv.gz", "valid.csv.gz", "test.csv.gz"} <= {p.name for p in (PROJECT / "data").iterdir()}


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_a_script_parses_and_imports_nothing_of_the_course(path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    course = [name for name in imported_modules(tree)
              if name.startswith(".") or name.split(".")[0] in COURSE_PACKAGES]
    assert course == [], f"{path.name} imports the course's code: {course}"


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_a_script_uses_no_private_name(path):
    assert private_names(ast.parse(path.read_text(encoding="utf-8"))) == []


def test_the_checks_catch_what_they_look_for():
    tree = ast.parse("import utils.x\nfrom tools import y\nfrom . import z\n"
                     "importlib.import_module('utils')\n"
                     "from mlflow._p import q\nfrom mlflow import _r\nmlflow._s.t\ngetattr(o, '_u')\n"
                     "x.__file__\n")
    assert imported_modules(tree)[:2] == ["utils.x", "tools"] and "." in imported_modules(tree)
    assert "utils" in imported_modules(tree)
    assert len(private_names(tree)) == 4


def script_options(path: Path) -> dict[str, object]:
    """The options of a script's argparse parser, {"--learning-rate": 0.001}, with the default
    when it is a literal or a module constant set to one (else None)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    constants = {node.targets[0].id: node.value.value for node in tree.body
                 if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
                 and isinstance(node.value, ast.Constant)}
    options = {}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument"
                and node.args and isinstance(node.args[0], ast.Constant)):
            default = next((k.value for k in node.keywords if k.arg == "default"), None)
            if isinstance(default, ast.Name):
                options[node.args[0].value] = constants.get(default.id)
            else:
                options[node.args[0].value] = default.value if isinstance(default, ast.Constant) else None
    return options


def same_value(a, b) -> bool:
    try:
        return float(a) == float(b)
    except ValueError:
        return str(a) == str(b)


def test_the_mlproject_entry_points_name_existing_scripts_and_options():
    spec = yaml.safe_load((PROJECT / "MLproject").read_text(encoding="utf-8"))
    assert set(spec["entry_points"]) == {"train", "search", "evaluate"}
    for name, entry in spec["entry_points"].items():
        command = entry["command"]
        script = re.match(r"python (\S+\.py)\b", command).group(1)
        assert (PROJECT / script).is_file(), f"{name}: {script} does not exist"
        options = script_options(PROJECT / script)
        used = re.findall(r"(--[\w-]+) \{(\w+)\}", command)
        assert {param for _, param in used} | set(re.findall(r"^python \S+ \{(\w+)\}", command)) \
            == set(entry["parameters"]), f"{name}: parameters and command disagree"
        for option, param in used:
            assert option in options, f"{name}: {script} has no option {option}"
            assert option == "--" + param.replace("_", "-"), f"{name}: {param} is passed as {option}"
            declared = entry["parameters"][param]
            default = declared.get("default") if isinstance(declared, dict) else None
            if options[option] not in (None, "") and default is not None:
                assert same_value(default, options[option]), (
                    f"{name}: {param} defaults to {default} in MLproject, {options[option]} in {script}")


# ---- full tier: the scripts, run for real in a copy of the folder ---------------------------

@pytest.fixture(scope="module")
def empty_store(tmp_path_factory) -> Path:
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()  # creates the tables
    return path


def copy_project(parent: Path, store: Path) -> Path:
    """project/ alone, without anything a run in place may have left there, and an empty store."""
    copy = Path(shutil.copytree(PROJECT, parent / "project", ignore=shutil.ignore_patterns(
        "mlflow.db", "mlartifacts", "mlruns", "optuna.db", "__pycache__")))
    shutil.copy(store, copy / "mlflow.db")
    return copy


def clean_env(**variables: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONDONTWRITEBYTECODE="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    env.update(variables)
    return env


def run(args: list, cwd: Path, **variables: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], cwd=cwd, env=clean_env(**variables),
                          capture_output=True, text=True, timeout=600)


def run_script(project: Path, script: str, *options, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return run([sys.executable, project / script, *options], cwd or project)


def printed_run_id(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return re.search(r"^run_id=(\w+)$", result.stdout, re.MULTILINE).group(1)


def client_of(project: Path):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}",
                        registry_uri=f"sqlite:///{project / 'mlflow.db'}")


def stray_folders(top: Path, project: Path) -> list[Path]:
    """mlruns/, mlartifacts/ or mlflow.db anywhere under `top` but outside `project`."""
    return [p for name in ("mlruns", "mlartifacts", "mlflow.db") for p in top.rglob(name)
            if project not in p.parents]


@pytest.fixture
def repo_unchanged():
    """Nothing lands in the directory pytest runs from (usually the repository)."""
    here = Path.cwd()
    before = {name: (here / name).exists() for name in ("mlruns", "mlflow.db", "mlartifacts")}
    yield
    assert {name: (here / name).exists() for name in before} == before


@pytest.mark.full
def test_train_records_a_complete_run_inside_its_own_folder(tmp_path, empty_store, repo_unchanged):
    project = copy_project(tmp_path, empty_store)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run_script(project, "train.py", *TINY, "--epochs", "2", cwd=elsewhere)
    run_id = printed_run_id(result)

    client = client_of(project)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert {"learning_rate", "epochs", "train_size", "seed"} <= set(run.data.params)
    contexts = {tag.value for dataset in run.inputs.dataset_inputs for tag in dataset.tags
                if tag.key == "mlflow.data.context"}
    assert contexts == {"training", "validation"}
    assert len(client.get_metric_history(run_id, "train_loss")) > 5
    assert [m.step for m in client.get_metric_history(run_id, "val_accuracy")] == [1, 2]

    models = client.search_logged_models([run.info.experiment_id],
                                         filter_string=f"source_run_id = '{run_id}'")
    assert len(models) >= 2
    assert sorted(output.step for output in run.outputs.model_outputs) == [1, 2]
    accuracy = {m.model_id: next(x.value for x in m.metrics if x.key == "val_accuracy") for m in models}
    best = run.data.tags["best_model_id"]
    assert accuracy[best] == max(accuracy.values())
    assert f"best checkpoint: model_id={best}" in result.stdout

    # Every artifact is in the copied folder, and nothing was written anywhere else.
    artifacts = (project / "mlartifacts").as_uri()
    assert run.info.artifact_uri.startswith(artifacts)
    assert all(m.artifact_location.startswith(artifacts) for m in models)
    assert list(elsewhere.iterdir()) == [] and stray_folders(tmp_path, project) == []

    # A checkpoint takes review texts and gives labels.
    import mlflow.pyfunc
    import pandas as pd

    model = mlflow.pyfunc.load_model(next(m.artifact_location for m in models if m.model_id == best))
    labels = model.predict(pd.DataFrame({"review": ["Wonderful, I loved it.", "Dull and far too long."]}))
    assert set(labels) <= {"positive", "negative"} and len(labels) == 2


@pytest.mark.full
@pytest.mark.parametrize("case", ["missing data folder", "csv without the columns", "negative size"])
def test_bad_input_gets_a_one_line_error_and_exit_code_2(tmp_path, empty_store, case):
    project = copy_project(tmp_path, empty_store)
    options = [*TINY, "--epochs", "1"]
    if case == "missing data folder":
        options += ["--data-dir", tmp_path / "no-such-folder"]
    elif case == "csv without the columns":
        data = tmp_path / "data"
        shutil.copytree(project / "data", data)
        with gzip.open(data / "train.csv.gz", "wt") as file:
            file.write("text,label\nGood,positive\n")
        options += ["--data-dir", data]
    else:
        options += ["--train-size", "-5"]
    result = run_script(project, "train.py", *options)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error:") and ("--" in last_line or "column" in last_line), last_line


@pytest.mark.full
def test_search_makes_a_parent_run_with_finished_and_killed_trials(tmp_path, empty_store, repo_unchanged):
    project = copy_project(tmp_path, empty_store)
    result = run_script(project, "search.py", *TINY, "--epochs", "2", "--n-trials", "4",
                        "--study", "test-search", cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    parent_id = re.search(r"parent run_id=(\w+)", result.stdout).group(1)
    assert re.search(r"best trial \d+: run_id=\w+ val_accuracy=[\d.]+ params=\{", result.stdout)

    client = client_of(project)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    children = client.search_runs([experiment.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    statuses = [child.info.status for child in children]
    assert len(children) >= 4 and set(statuses) <= {"FINISHED", "KILLED"}, statuses
    assert "FINISHED" in statuses and "KILLED" in statuses, statuses
    for child in children:
        history = client.get_metric_history(child.info.run_id, "val_accuracy")
        epochs = 2 if child.info.status == "FINISHED" else len(history)
        assert [m.step for m in history] == list(range(1, epochs + 1)) and history
    pruned = statuses.count("KILLED")
    assert f"{statuses.count('FINISHED')} trials complete, {pruned} pruned" in result.stdout
    assert (project / "optuna.db").is_file() and stray_folders(tmp_path, project) == []


@pytest.fixture(scope="module")
def gate(tmp_path_factory, empty_store):
    """One project copy, two trained candidates, and the gate run on them in turn:
    (project, {step: (result, champion version after it)})."""
    import pandas as pd

    folder = tmp_path_factory.mktemp("gate")
    project = copy_project(folder, empty_store)
    # A smaller held-out set than test.csv.gz, to keep the evaluations short.
    data = folder / "data"
    shutil.copytree(project / "data", data)
    pd.read_csv(data / "test.csv.gz").head(120).to_csv(data / "test.csv.gz", index=False)
    good = printed_run_id(run_script(project, "train.py", *TINY, "--train-size", "128",
                                     "--max-length", "64", "--unfreeze-layers", "0",
                                     "--learning-rate", "3e-3", "--epochs", "2"))
    worse = printed_run_id(run_script(project, "train.py", *TINY, "--learning-rate", "1e-6",
                                      "--epochs", "1", "--seed", "1"))
    client = client_of(project)
    steps = []
    for step, candidate, options in [("raised floor", good, ["--min-accuracy", "0.99"]),
                                     ("first", good, ["--min-accuracy", "0"]),
                                     ("equal", good, ["--min-accuracy", "0.5"]),
                                     ("worse", worse, [])]:
        result = run_script(project, "evaluate.py", candidate, "--data-dir", data, *options,
                            cwd=folder)
        registered = client.search_registered_models("name = 'imdb-sentiment-project'")
        champion = registered[0].aliases.get("champion") if registered else None
        champion = None if champion is None else str(champion)
        steps.append((step, result, champion))
    return project, dict((step, (result, champion)) for step, result, champion in steps)


def verdict(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stdout.splitlines() if line.startswith(("PASSED", "REFUSED"))]
    assert len(lines) == 1, result.stdout[-2000:] + result.stderr[-3000:]
    return lines[0]


@pytest.mark.full
def test_the_first_candidate_is_registered_as_champion(gate):
    result, champion = gate[1]["first"]
    assert result.returncode == 0 and champion == "1"
    assert re.match(r"PASSED: accuracy_score [\d.]+ >= bar 0\.0000 \(no champion yet; floor 0\.0\); "
                    r"registered imdb-sentiment-project version 1 as champion", verdict(result))


@pytest.mark.full
def test_an_equal_candidate_within_the_tolerance_moves_the_champion(gate):
    result, champion = gate[1]["equal"]
    assert result.returncode == 0 and champion == "2", verdict(result)
    assert re.match(r"PASSED: accuracy_score ([\d.]+) >= bar [\d.]+ \(champion version 1: \1 - "
                    r"tolerance 0\.02; floor 0\.5\); registered imdb-sentiment-project version 2 "
                    r"as champion$", verdict(result))


@pytest.mark.full
def test_a_worse_candidate_is_refused_and_the_champion_stays(gate):
    result, champion = gate[1]["worse"]
    line = verdict(result)
    assert result.returncode == 1 and champion == "2", line
    assert re.match(r"REFUSED: accuracy_score [\d.]+ < bar [\d.]+ \(champion version 2: [\d.]+ - "
                    r"tolerance 0\.02; floor 0\.6\); champion stays version 2$", line)


@pytest.mark.full
def test_a_raised_floor_refuses_and_names_it(gate):
    result, champion = gate[1]["raised floor"]
    line = verdict(result)
    assert result.returncode == 1 and champion is None, line
    assert re.match(r"REFUSED: accuracy_score [\d.]+ < bar 0\.9900 \(no champion yet; floor 0\.99\); "
                    r"nothing registered$", line)


@pytest.mark.full
def test_the_gate_records_its_evaluations_in_runs(gate):
    project, _ = gate
    client = client_of(project)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    evaluations = client.search_runs([experiment.experiment_id],
                                     filter_string="attributes.run_name = 'evaluation'")
    assert len(evaluations) == 4
    verdicts = sorted(run.data.tags["verdict"] for run in evaluations)
    assert verdicts == ["passed", "passed", "refused", "refused"]
    champions = client.search_runs([experiment.experiment_id],
                                   filter_string="attributes.run_name LIKE 'champion version%'")
    assert len(champions) == 2  # the gate evaluates the champion only when there is one
    children = client.search_runs([experiment.experiment_id],
                                  filter_string="attributes.run_name = 'candidate'")
    assert all("accuracy_score" in run.data.metrics for run in children) and len(children) == 4


@pytest.mark.full
def test_mlflow_run_trains_offline_in_the_folder(tmp_path, empty_store, repo_unchanged):
    project = copy_project(tmp_path, empty_store)
    params = ["-P", "train_size=32", "-P", "valid_size=32", "-P", "max_length=32",
              "-P", "batch_size=8", "-P", "epochs=2", "-P", "learning_rate=3e-3"]
    mlflow = Path(sys.executable).parent / "mlflow"
    result = run([mlflow, "run", ".", "-e", "train", "--env-manager", "local",
                  "--experiment-name", EXPERIMENT, *params], cwd=project)
    run_id = printed_run_id(result)
    run_record = client_of(project).get_run(run_id)
    assert run_record.info.status == "FINISHED"
    assert run_record.data.params["learning_rate"] == "3e-3"  # as `mlflow run` logged it
    assert run_record.data.tags["mlflow.project.entryPoint"] == "train"
    assert "best_model_id" in run_record.data.tags
    assert stray_folders(tmp_path, project) == []
