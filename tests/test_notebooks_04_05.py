"""Notebooks 04 and 05 keep their promises, twice in a row in one workspace.

Notebook 04 starts in an empty workspace, so it trains its own runs at its defaults, runs
again without training anything, and notebook 05 then runs twice on the same store.
"""

import re

import mlflow
import pytest

from tests.notebook_runner import cell_text, run_notebook, servers_of

pytestmark = pytest.mark.full

NB04 = "04_experiments_and_runs.ipynb"
NB05 = "05_model_artifacts.ipynb"


def _runs(workspace, experiment="dl_model_chapter02"):
    client = mlflow.MlflowClient(f"sqlite:///{workspace}/mlflow.db")
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id]) if found else []


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Notebook 04 twice, then notebook 05 twice, in one fresh workspace."""
    root = tmp_path_factory.mktemp("nb0405")
    workspace = root / "ws"
    results = {}
    plan = [("04a", NB04, {}), ("04b", NB04, {}),
            ("05a", NB05, {}), ("05b", NB05, {})]
    for key, name, params in plan:
        out = root / key
        out.mkdir()
        results[key] = run_notebook(name, out, workspace, **params)
        if key == "04a":
            runs = _runs(workspace)
            results["runs_after_04a"] = sorted(r.info.run_id for r in runs)
            # As if `python -m tools.batch sweep` had made one of them: 04b must list it.
            swept = next(r for r in runs if r.info.run_name == "lr=0.03")
            client = mlflow.MlflowClient(f"sqlite:///{workspace}/mlflow.db")
            client.set_tag(swept.info.run_id, "course.sweep", "test-sweep")
            client.set_tag(swept.info.run_id, "course.sweep.grid", "learning_rate")
    results["workspace"] = workspace
    return results


def test_04_lists_creates_and_describes_with_the_cli(executed):
    nb = executed["04a"]
    listing = cell_text(nb, "mlflow experiments search")
    assert re.search(r"^0\s+Default\s", listing, re.M) and "dl_model_chapter02" in listing
    empty = cell_text(nb, 'tracking_uri="", cwd=scratch')
    assert "mlruns/0" in empty and "['mlflow.db']" in empty
    created = cell_text(nb, '"experiments", "create"')
    assert "exit code: 1" in created
    assert "RESOURCE_ALREADY_EXISTS" in created and "dl_model_chapter02) already exists" in created
    described = cell_text(nb, "mlflow runs describe")
    assert re.search(r'"run_id": "[0-9a-f]{32}"', described) and '"metrics"' in described
    assert "'mlflow.source.type'" in cell_text(nb, "inspection.describe_run(")
    assert len(executed["runs_after_04a"]) == 3  # chapter02 and one run per learning rate


def test_04_shows_the_run_address_and_agrees_three_ways(executed):
    nb = executed["04a"]
    address = cell_text(nb, "server.run_url(").strip()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/#/experiments/\d+/runs/[0-9a-f]{32}", address)
    assert "dl_model_chapter02" in cell_text(nb, "experiments/search")
    assert "CLI, Python client and REST API report the same" in cell_text(nb, "via_rest")


def test_04_compares_the_learning_rate_runs(executed):
    table = cell_text(executed["04a"], "order_by=")
    assert "lr=0.0003" in table and "lr=0.03" in table and "metrics.val_accuracy" in table
    assert "Figure" in cell_text(executed["04a"], "plot_run_comparison")
    assert "Figure" in cell_text(executed["04a"], 'get_metric_history(compared_id, "train_cross_entropy_step")')


def test_04_learning_rates_differ_for_the_reason_the_notebook_gives(executed):
    runs = {r.info.run_name: r for r in _runs(executed["workspace"])}
    slow, good = runs["lr=0.0003"].data.metrics, runs["lr=0.03"].data.metrics
    # Steps too small: the training loss stays at a coin's (ln 2 = 0.693) ...
    assert slow["train_cross_entropy_epoch"] > 0.68
    # ... while the larger rate learns: a clearly lower loss and a clearly higher accuracy
    # on reviews neither saw in training.
    assert good["val_cross_entropy"] < slow["val_cross_entropy"] - 0.1
    assert good["val_accuracy"] > slow["val_accuracy"] + 0.1


def test_04_lists_sweep_runs_only_when_there_are_some(executed):
    assert "no sweep runs in this workspace yet" in cell_text(executed["04a"], "tags.course.sweep")
    listed = cell_text(executed["04b"], "tags.course.sweep")
    assert "test-sweep" in listed and "learning_rate" in listed and "lr=0.03" in listed
    assert "lr=0.0003" not in listed


def test_04_code_tracking_catches_uncommitted_edits(executed):
    nb = executed["04a"]
    assert "'mlflow.source.type': 'NOTEBOOK'" in cell_text(nb, "inspection.source_tags(run.data.tags)")
    script_tags = cell_text(nb, "committed_run = run_script(demo)")
    assert "'mlflow.source.name': 'train.py'" in script_tags
    assert re.search(r"'mlflow.source.git.commit': '[0-9a-f]{40}'", script_tags)
    assert "same commit for different code: True" in cell_text(nb, "edited_run = run_script(demo)")
    side_by_side = cell_text(nb, "course.git.untracked_files")
    assert re.search(r"course\.git\.dirty\s+false\s", side_by_side)
    assert re.search(r"course\.git\.dirty\s+true\s", side_by_side)
    patch = cell_text(nb, "load_text(")
    assert "-LEARNING_RATE = 0.1" in patch and "+LEARNING_RATE = 0.01" in patch
    assert "+++ b/notes.txt" in patch
    assert "the edited run's code is back: True" in cell_text(nb, "git clone")
    notebook_tags = cell_text(nb, 'log_code_state(notebook="04_experiments_and_runs.ipynb")')
    assert "'course.source.notebook': '04_experiments_and_runs.ipynb'" in notebook_tags
    assert re.search(r"'course.git.dirty': '(true|false)'", notebook_tags)


def test_04_second_run_trains_nothing_and_stops_its_server(executed):
    again = executed["04b"]
    for cell in again.cells:
        if cell.cell_type == "code":
            text = "".join(out.get("text", "") for out in cell.outputs)
            assert "training one" not in text, "the second run trained again"
    after = sorted(r.info.run_id for r in _runs(executed["workspace"]))
    assert after == executed["runs_after_04a"]
    assert "stopped>" in cell_text(again, "server.stop()")
    assert servers_of(executed["workspace"]) == []


def test_05_shows_both_stores_and_the_logged_model(executed):
    nb = executed["05a"]
    stores = cell_text(nb, "artifact location")
    assert "mlflow.db" in stores and "artifacts" in stores
    assert "model_summary.txt" in cell_text(nb, "inspection.print_tree(run_folder)")
    assert "Trainable params" in cell_text(nb, '"model_summary.txt", max_lines')
    located = cell_text(nb, "mlflow.get_logged_model(run.outputs.model_outputs[0].model_id)")
    assert re.search(r"its folder:\s+artifacts/\d+/models/m-[0-9a-f]{32}/artifacts", located)
    tree = cell_text(nb, "inspection.print_tree(model_folder)")
    for name in ["data/", "model.pth", "pickle_module_info.txt", "MLmodel", "conda.yaml",
                 "python_env.yaml", "requirements.txt"]:
        assert name in tree, name
    assert re.search(r"runs:/[0-9a-f]{32}/model\s+->\s+m-[0-9a-f]{32}", cell_text(nb, "get_model_info"))


def test_05_reads_mlmodel_and_the_environment_files(executed):
    nb = executed["05a"]
    mlmodel = cell_text(nb, 'show_file(model_folder / "MLmodel")')
    assert "python_function:" in mlmodel and "pytorch:" in mlmodel and "run_id:" in mlmodel
    assert "flavors: ['python_function', 'pytorch']" in cell_text(nb, "mlflow.models.Model.load")
    assert "logged by our run: True" in cell_text(nb, "mlflow.models.Model.load")
    files = cell_text(nb, '["requirements.txt", "conda.yaml", "python_env.yaml"]')
    assert "mlflow==3." in files and "dependencies:" in files and "-r requirements.txt" in files
    assert "mlflow.pytorch.pickle_module" in cell_text(nb, "pickle_module_info.txt")


def test_05_predicts_and_registers_once(executed):
    first, second = executed["05a"], executed["05b"]
    predictions = cell_text(first, "utils.predict_sentiment(loaded", stdout_only=True).strip().splitlines()
    assert len(predictions) == 3
    assert all(line.split()[0] in {"positive", "negative"} for line in predictions)
    assert "created now: imdb-sentiment-classifier version 1" in cell_text(first, "register_model_once")
    assert "already registered: imdb-sentiment-classifier version 1" in cell_text(second, "register_model_once")
    assert "aliases: ['champion']" in cell_text(second, "set_registered_model_alias")
    champion = cell_text(second, 'get_model_info(f"models:/{registered_model_name}@champion")')
    assert re.search(r"@champion\s+->\s+m-[0-9a-f]{32}", champion)


def test_05_on_its_own_in_an_empty_workspace_trains_the_run_it_needs(tmp_path):
    notebook = run_notebook(NB05, tmp_path / "out", tmp_path / "ws")
    assert "training one" in cell_text(notebook, "utils.ensure_example_run(")
    assert "created now: imdb-sentiment-classifier version 1" in cell_text(notebook, "register_model_once")
    assert servers_of(tmp_path / "ws") == []
