"""Notebooks 04 and 05 keep their promises, twice in a row in one workspace.

Notebook 04 starts in an empty workspace, so it trains its own runs at its defaults, runs
again without training a comparison run, then with another `train_size`, which trains new
comparison runs. Notebook 05 then runs twice on the same store, and once more on its own in
an empty workspace.
"""

import re

import mlflow
import pytest

from tests.notebook_runner import cell_text, chinese_reading_problems, run_notebook, servers_of
from utils import runs, training

pytestmark = pytest.mark.full

NB04 = "04_experiments_and_runs.ipynb"
NB05 = "05_model_artifacts.ipynb"


def _runs(workspace, experiment="dl_model_chapter02"):
    client = mlflow.MlflowClient(f"sqlite:///{workspace}/mlflow.db")
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id]) if found else []


def _is_rerun(run) -> bool:
    return training.RERUN_TAG in run.data.tags


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Notebook 04 twice at its defaults (first the Chinese edition's, whose code is the
    English one's), then notebook 05 twice, in one fresh workspace. ``runs_after_<key>``: the
    run ids of the experiment then. (Another train_size trains new comparison runs:
    tests/test_run_record.py's find_run.)"""
    root = tmp_path_factory.mktemp("nb0405")
    workspace = root / "ws"
    results = {}
    plan = [("04a", NB04, {}), ("04b", NB04, {}),
            ("05a", NB05, {}), ("05b", NB05, {})]
    for key, name, params in plan:
        out = root / key
        out.mkdir()
        results[key] = run_notebook(name, out, workspace, chinese=key == "04a", **params)
        runs = _runs(workspace)
        results[f"runs_after_{key}"] = {r.info.run_id for r in runs}
        if key == "04a":
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
    assert "exit code: 1" in created and len(created.splitlines()) == 2  # and one clear line
    assert "RESOURCE_ALREADY_EXISTS" in created and "dl_model_chapter02) already exists" in created
    assert "sqlite3" not in created
    described = cell_text(nb, "mlflow runs describe")
    assert re.search(r'"run_id": "[0-9a-f]{32}"', described) and '"metrics"' in described
    assert "'mlflow.source.type'" in cell_text(nb, "json.loads(description.read_text())")
    # chapter02, one run per learning rate, and the learning-rate run trained again
    runs = [r for r in _runs(executed["workspace"]) if r.info.run_id in executed["runs_after_04a"]]
    assert sorted(r.info.run_name for r in runs if not _is_rerun(r)) == ["chapter02", "lr=0.0003", "lr=0.03"]
    assert [r.info.run_name for r in runs if _is_rerun(r)] == ["lr=0.03"]


def test_04_shows_the_run_address_and_agrees_three_ways(executed):
    nb = executed["04a"]
    address = cell_text(nb, "server.run_url(").strip()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/#/experiments/\d+/runs/[0-9a-f]{32}", address)
    assert "dl_model_chapter02" in cell_text(nb, "experiments/search")
    assert "CLI, Python client and REST API report the same" in cell_text(nb, "via_rest")


def test_04_compares_the_learning_rate_runs(executed):
    table = cell_text(executed["04a"], "order_by=")
    assert "lr=0.0003" in table and "lr=0.03" in table and "metrics.val_accuracy" in table
    # The table shows the parameters that differ (ours and autologging's), and the size.
    header, _ = _first_block(table)
    assert {"params.learning_rate", "params.lr", "params.train_size"} <= set(header)
    assert "params.seed" not in table  # the same for both runs
    assert "Figure" in cell_text(executed["04a"], "plot_run_comparison")
    assert "Figure" in cell_text(executed["04a"], 'get_metric_history(compared_id, "train_cross_entropy_step")')


def _first_block(table: str) -> tuple[list[str], list[list[str]]]:
    """The header and rows of a table's first block, as pandas wraps a wide one (rows start with their index)."""
    lines = table.splitlines()
    block = lines[:lines.index("")] if "" in lines else lines
    return block[0].split(), [line.split() for line in block[1:]]


def test_04_learning_rates_differ_for_the_reason_the_notebook_gives(executed):
    runs = {r.info.run_name: r for r in _runs(executed["workspace"])
            if r.info.run_id in executed["runs_after_04a"] and not _is_rerun(r)}
    slow, good = runs["lr=0.0003"].data.metrics, runs["lr=0.03"].data.metrics
    # Steps too small: the training loss stays at a coin's (ln 2 = 0.693) ...
    assert slow["train_cross_entropy_epoch"] > 0.68
    # ... while the larger rate learns: a lower training loss, and more of the test reviews
    # (which neither saw in training) right. Measured at the defaults (seed 42): 0.634 against
    # 0.694, and 0.66 against 0.48.
    assert good["train_cross_entropy_epoch"] < slow["train_cross_entropy_epoch"] - 0.03
    assert good["test_accuracy"] > slow["test_accuracy"] + 0.1


def test_04_lists_sweep_runs_only_when_there_are_some(executed):
    assert "no sweep runs in this store yet" in cell_text(executed["04a"], "tags.course.sweep")
    listed = cell_text(executed["04b"], "tags.course.sweep")
    assert "test-sweep" in listed and "learning_rate" in listed and "lr=0.03" in listed
    assert "lr=0.0003" not in listed


def test_04_code_tracking_catches_uncommitted_edits(executed):
    nb = executed["04a"]
    assert "'mlflow.source.type': 'NOTEBOOK'" in cell_text(nb, "source_tags(run.data.tags)")
    script_tags = cell_text(nb, "committed_run = run_script(demo)")
    assert "'mlflow.source.name': 'train.py'" in script_tags
    assert re.search(r"'mlflow.source.git.commit': '[0-9a-f]{40}'", script_tags)
    assert "same commit for different code: True" in cell_text(nb, "edited_run = run_script(demo)")
    # The script's own set_tag calls: the same commit, but only the edited run is dirty.
    # (pandas may print the two columns as two blocks: read the rows by their label)
    rows = cell_text(nb, '"course.git.dirty"]').splitlines()
    commits = re.findall(r"[0-9a-f]{40}", " ".join(r for r in rows if r.startswith("course.git.commit")))
    assert len(commits) == 2 and commits[0] == commits[1]
    assert re.findall(r"true|false", " ".join(r for r in rows if r.startswith("course.git.dirty"))) == ["false", "true"]
    # ... and its log_text call: the edit as a patch that gives the edited code back.
    patch = cell_text(nb, "load_text(")
    assert "-LEARNING_RATE = 0.1" in patch and "+LEARNING_RATE = 0.01" in patch
    assert "the edited run's code is back: True" in cell_text(nb, "git clone")


def _new_runs(executed, key, before):
    after = executed[f"runs_after_{key}"] - executed[f"runs_after_{before}"]
    return [r for r in _runs(executed["workspace"]) if r.info.run_id in after]


def test_04_trains_a_run_again_from_its_record_to_the_same_metrics(executed):
    runs = {r.info.run_id: r for r in _runs(executed["workspace"])}
    reruns = [r for r in runs.values() if _is_rerun(r)]
    assert len(reruns) == 2  # one per execution of notebook 04
    for again in reruns:
        original = runs[again.data.tags[training.RERUN_TAG]]
        assert again.info.run_name == original.info.run_name
        assert again.data.params == original.data.params
        for metric in ("train_cross_entropy", "val_cross_entropy", "val_accuracy", "test_accuracy"):
            assert round(again.data.metrics[metric], 4) == round(original.data.metrics[metric], 4), metric
    recorded = cell_text(executed["04a"], "training.parameters_from_run(original)")
    assert "'train_size': 200" in recorded and "'backbone': None" in recorded


def test_04_second_run_trains_no_comparison_run_and_stops_its_server(executed):
    again = executed["04b"]
    # The comparison cell: `ensure_run` says "training 'lr=...'" for each run it has to train.
    assert "training" not in cell_text(again, "utils.ensure_run("), "the second run trained its comparison again"
    # Only the run that the notebook trains again from its record is new.
    (new,) = _new_runs(executed, "04b", "04a")
    assert _is_rerun(new) and new.data.tags[training.RERUN_TAG] in executed["runs_after_04a"]
    assert "stopped>" in cell_text(again, "server.stop()")
    assert servers_of(executed["workspace"]) == []


def test_05_shows_both_stores_and_the_logged_model(executed):
    nb = executed["05a"]
    stores = cell_text(nb, "artifact location")
    assert "artifact location:" in stores and "run artifact URI:" in stores
    assert "mlflow.db" in cell_text(nb, "sqlite3.connect")
    assert "model_summary.txt" in cell_text(nb, "inspection.print_artifact_tree(run.info.artifact_uri)")
    assert "Trainable params" in cell_text(nb, "model_summary.txt\").splitlines()")
    located = cell_text(nb, "mlflow.get_logged_model(run.outputs.model_outputs[0].model_id)")
    assert re.search(r"its files:\s+\S*artifacts/\d+/models/m-[0-9a-f]{32}/artifacts", located)
    tree = cell_text(nb, "inspection.print_artifact_tree(model.artifact_location)")
    for name in ["data/", "model.pth", "pickle_module_info.txt", "MLmodel", "conda.yaml",
                 "python_env.yaml", "requirements.txt", "code/", "sentiment_model.py",
                 "input_example.json", "serving_input_example.json"]:
        assert name in tree, name
    assert re.search(r"runs:/[0-9a-f]{32}/model\s+->\s+m-[0-9a-f]{32}", cell_text(nb, "get_model_info"))


def test_05_reads_mlmodel_and_the_environment_files(executed):
    nb = executed["05a"]
    mlmodel = cell_text(nb, 'show_file(model_folder / "MLmodel")')
    assert "python_function:" in mlmodel and "pytorch:" in mlmodel and "run_id:" in mlmodel
    assert "loader_module: sentiment_model" in mlmodel and "signature:" in mlmodel
    assert "model_data: data" in mlmodel and "  data: data" in mlmodel  # one network for both flavors
    loaded = cell_text(nb, "mlflow.models.Model.load")
    assert "flavors: ['python_function', 'pytorch']" in loaded and "logged by our run: True" in loaded
    assert "positive_probability" in loaded  # the signature's outputs
    assert "def save_model(" in cell_text(nb, "inspect.getsource(sentiment_model.save_model)")
    files = cell_text(nb, 'show_file(model_folder / "requirements.txt"')
    assert files.count("mlflow==3.") == 1  # the list of packages once, not once per file
    assert "dependencies:" in files and "-r requirements.txt" in files
    assert "MISSING" not in cell_text(nb, 'required = ["torch"')
    assert "mlflow.pytorch.pickle_module" in cell_text(nb, "pickle_module_info.txt")


def test_05_loads_both_flavors(executed):
    nb = executed["05a"]
    assert "TextClassifier with 770 trainable parameters" in cell_text(nb, "mlflow.pytorch.load_model(model.model_uri")
    # A label for each of the three reviews (pandas may wrap the table into blocks).
    answers = cell_text(nb, "answers = classifier.predict(reviews)").split()
    assert answers.count("positive") + answers.count("negative") == 3
    refused = cell_text(nb, "for bad in ([], [\"A fine film.\", 3]):").splitlines()
    assert len(refused) == 2 and refused[0].startswith("[]: ")
    assert refused[1] == "['A fine film.', 3]: Review 1 is 3 (int), not text."


def _registered(workspace):
    client = mlflow.MlflowClient(f"sqlite:///{workspace}/mlflow.db")
    versions = client.search_model_versions("name = 'imdb-sentiment-classifier'")
    return client, versions


def test_05_registers_once_and_loads_by_the_alias(executed):
    first, second = executed["05a"], executed["05b"]
    for notebook in (first, second):
        assert re.search(r"^imdb-sentiment-classifier version 1: models:/m-[0-9a-f]{32} \(run [0-9a-f]{32}\)$",
                         cell_text(notebook, "mlflow.register_model("), re.M)
        assert "aliases: ['champion']" in cell_text(notebook, "set_registered_model_alias")
        champion = cell_text(notebook, "champion_uri = ")
        assert re.search(r"@champion\s+->\s+m-[0-9a-f]{32}", champion) and "same answers: True" in champion
    client, versions = _registered(executed["workspace"])
    (version,) = versions  # the second run registered nothing new
    run = mlflow.MlflowClient(f"sqlite:///{executed['workspace']}/mlflow.db").get_run(version.run_id)
    assert run.info.run_name == "chapter02"
    assert version.source == runs.logged_model_of_run(version.run_id, client).model_uri
    assert client.get_model_version_by_alias("imdb-sentiment-classifier", "champion").version == version.version


def _check_serving(notebook, workspace) -> None:
    """Notebook 05 served its champion, got pyfunc's answers, refused bad requests with 400,
    and left no server behind."""
    command = cell_text(notebook, "utils.serve_model(champion_uri")
    assert command.strip() == ("mlflow models serve -m models:/imdb-sentiment-classifier@champion "
                               "--env-manager local --host 127.0.0.1 --port " + command.split()[-1])
    assert command.split()[-1].isdigit() and command.split()[-1] != "0"
    assert cell_text(notebook, "response = requests.post(served.invocations_url").startswith("200")
    compared = cell_text(notebook, "served_labels = ")
    assert "same labels as pyfunc: True" in compared and "same probabilities (6 decimals): True" in compared
    curl = cell_text(notebook, "served.curl_command(body)")
    assert curl.startswith("curl -s http://127.0.0.1:") and "/invocations" in curl and '"inputs"' in curl
    refused = cell_text(notebook, "refused = requests.post").splitlines()
    assert [line.split()[0] for line in refused] == ["400", "400"]
    assert "one column named 'review'" in refused[1]
    assert "stopped>" in cell_text(notebook, "served.stop()")
    assert servers_of(workspace, models=True) == []
    assert servers_of(workspace) == []


def test_05_reuses_notebook_04s_run_as_the_exercises_second_candidate(executed):
    for key in ("05a", "05b"):
        made = cell_text(executed[key], 'run_name="lr=0.0003"')
        assert "training" not in made and re.search(r"^\d+ finished runs in dl_model_chapter02$", made, re.M)
    assert executed["runs_after_05b"] == executed["runs_after_04b"]  # 05 trained no run


def test_05_serves_the_champion_over_rest_and_stops_it(executed):
    for key in ("05a", "05b"):
        _check_serving(executed[key], executed["workspace"])


def test_04_chinese_edition_reads_well_at_its_defaults(executed):
    assert chinese_reading_problems(NB04, executed["04a"], executed["workspace"]) == []


def test_05_on_its_own_in_an_empty_workspace_trains_the_run_it_needs(tmp_path):
    """The Chinese edition's 05 (its code is the English one's), as its reader opens it first."""
    workspace = tmp_path / "ws"
    notebook = run_notebook(NB05, tmp_path / "out", workspace, chinese=True)
    assert chinese_reading_problems(NB05, notebook, workspace) == []
    assert "现在训练 'chapter02'" in cell_text(notebook, "utils.ensure_example_run(")
    # A second run, so that exercise 05.1 has a best run to find.
    second = cell_text(notebook, 'run_name="lr=0.0003"')
    assert "现在训练 'lr=0.0003'" in second and "2 finished runs in dl_model_chapter02" in second
    assert "imdb-sentiment-classifier version 1:" in cell_text(notebook, "mlflow.register_model(")
    _check_serving(notebook, workspace)
    client, versions = _registered(workspace)
    assert len(versions) == 1 and str(client.get_model_version_by_alias(
        "imdb-sentiment-classifier", "champion").version) == "1"
