"""The checks of notebook 04's exercises (``utils.exercises.ex04``): each outcome and each
typical mistake's own message, against a real temporary SQLite store.

No training: the runs are made with the MLflow client, with the parameters, metrics and
metric history the notebook's runs have. The notebook's namespace is built by hand with the
names its check cells read (``experiment_name``, ``run_id``, ``compared``), and the
exercises' ``solution`` and ``mistake`` code runs in it where it needs no server.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import mlflow
import pytest
from mlflow.entities import Metric, Param, RunStatus

from tests.notebook_runner import workspace_store
from utils.exercises import CORRECT, GENERIC_FAILURE, INCORRECT, NOT_ATTEMPTED, ex04
from utils.training import DEFAULTS, RUN_PARAMETERS

EXPERIMENT, ELSEWHERE, EMPTY = "ex04-runs", "ex04-elsewhere", "ex04-empty"
CPU = ex04.HISTORY_METRIC
CPU_SAMPLES = [12.5, 40.0, 31.25, 8.0]  # steps 0..3; the latest differs from the others
# A new store migrates its SQLite schema in many transactions, each synced to disk: seconds
# on a busy disk, next to nothing in memory. So the store goes to /dev/shm where there is one.
RAM = Path("/dev/shm")


def _params(learning_rate: float) -> dict[str, str]:
    """A comparison run's parameters: ours (every name of the parameters cell) and two of
    autologging's, one of them `lr`, the optimizer's learning rate."""
    ours = {name: str(DEFAULTS[name]) for name in RUN_PARAMETERS}
    ours.update(backbone="sentence-transformers/all-MiniLM-L6-v2", learning_rate=str(learning_rate))
    return {**ours, "lr": str(learning_rate), "optimizer_name": "Adam"}


def _run(client, experiment_id, name, params=None, metrics=None, finished=True, history=()):
    run_id = client.create_run(experiment_id, run_name=name).info.run_id
    now = 1_700_000_000_000
    client.log_batch(
        run_id,
        metrics=[Metric(k, v, now, 0) for k, v in (metrics or {}).items()]
        + [Metric(CPU, v, now + step, step) for step, v in enumerate(history)],
        params=[Param(k, v) for k, v in (params or {}).items()])
    if finished:
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))
    return run_id


@pytest.fixture(scope="module")
def store():
    """The experiment of notebook 04 as its exercises find it: the example run (with a CPU
    history), two comparison runs that differ in the learning rate only, a run still
    RUNNING with the highest val_accuracy, a finished run without one; and a better run in
    another experiment, and an experiment with no run."""
    ram = RAM if RAM.is_dir() and os.access(RAM, os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="course-ex04-", dir=ram) as folder, \
            workspace_store(Path(folder)):
        client = mlflow.MlflowClient()
        experiment_id = client.create_experiment(EXPERIMENT)
        runs = {
            "chapter02": _run(client, experiment_id, "chapter02", _params(0.03),
                              {"val_accuracy": 0.70}, history=CPU_SAMPLES),
            "low": _run(client, experiment_id, "lr=0.0003", _params(0.0003), {"val_accuracy": 0.50}),
            "high": _run(client, experiment_id, "lr=0.03", _params(0.03), {"val_accuracy": 0.80}),
            "running": _run(client, experiment_id, "running", metrics={"val_accuracy": 0.90},
                            finished=False),
            "unscored": _run(client, experiment_id, "unscored"),
            "elsewhere": _run(client, client.create_experiment(ELSEWHERE), "elsewhere",
                              metrics={"val_accuracy": 0.95}),
        }
        client.create_experiment(EMPTY)
        yield runs


def _namespace(runs, **names):
    return {"mlflow": mlflow, "experiment_name": EXPERIMENT, "run_id": runs["chapter02"],
            "compared": [runs["low"], runs["high"]], **names}


def _executed(code: str, namespace: dict) -> dict:
    exec(code, namespace)  # an exercise's solution or mistake, as the exercise cell runs it
    return namespace


def _incorrect(exercise, namespace, *words):
    verdict = exercise.evaluate(namespace)
    assert verdict.status == INCORRECT, verdict
    assert GENERIC_FAILURE not in verdict.message, verdict
    for word in words:
        assert word in verdict.message, verdict
    return verdict


# -- 04.2 the best run ---------------------------------------------------------------------
def test_best_run_untouched_is_not_attempted(store):
    assert ex04.q2.evaluate(_namespace(store, best_run_id=...)).status == NOT_ATTEMPTED


def test_best_run_solution_is_correct(store):
    verdict = ex04.q2.evaluate(_executed(ex04.q2.solution_code, _namespace(store)))
    assert verdict.status == CORRECT, verdict
    assert "'lr=0.03'" in verdict.message and "0.800" in verdict.message


def test_best_run_ascending_mistake_names_the_lowest(store):
    namespace = _executed(ex04.q2.mistake, _namespace(store))
    assert namespace["best_run_id"] == store["low"]
    _incorrect(ex04.q2, namespace, "LOWEST", "DESC")


@pytest.mark.parametrize("chosen, words", [
    ("chapter02", ["0.700", "the best finished run has 0.800"]),
    ("running", ["RUNNING, not FINISHED", "attributes.status = 'FINISHED'"]),
    ("unscored", ["no val_accuracy at all"]),
    ("elsewhere", ["in another experiment"]),
], ids=["second-best", "running", "unscored", "other-experiment"])
def test_best_run_wrong_run_says_why(store, chosen, words):
    _incorrect(ex04.q2, _namespace(store, best_run_id=store[chosen]), *words)


def test_best_run_a_table_instead_of_an_id_says_take_one(store):
    table = mlflow.search_runs(experiment_names=[EXPERIMENT], order_by=["metrics.val_accuracy DESC"])
    _incorrect(ex04.q2, _namespace(store, best_run_id=table), "DataFrame", ".run_id.iloc[0]")
    _incorrect(ex04.q2, _namespace(store, best_run_id=table.run_id), "Series", ".run_id.iloc[0]")


def test_best_run_unknown_id_is_incorrect(store):
    _incorrect(ex04.q2, _namespace(store, best_run_id="0" * 32), "There is no run")


def test_best_run_without_the_notebooks_experiment_says_run_from_the_top(store):
    namespace = _namespace(store, best_run_id=store["high"], experiment_name="no-such-experiment")
    _incorrect(ex04.q2, namespace, "`experiment_name` names no experiment")
    del namespace["experiment_name"]
    _incorrect(ex04.q2, namespace, "`experiment_name` names no experiment")


def test_best_run_in_an_experiment_without_scores_says_run_the_comparison(store):
    namespace = _namespace(store, best_run_id=store["high"], experiment_name=EMPTY)
    _incorrect(ex04.q2, namespace, "No finished run of 'ex04-empty' has a val_accuracy")


# -- 04.1 a metric's history over REST --------------------------------------------------------
def _rest_entries(run_id):
    """What ``GET /api/2.0/mlflow/metrics/get-history`` answers, entry by entry: the same
    records, read through the client from the same store."""
    return [{"key": m.key, "value": m.value, "timestamp": m.timestamp, "step": m.step}
            for m in mlflow.MlflowClient().get_metric_history(run_id, CPU)]


def test_history_untouched_is_not_attempted(store):
    assert ex04.q1.evaluate(_namespace(store, cpu_history=...)).status == NOT_ATTEMPTED


def test_history_every_value_in_step_order_is_correct(store):
    entries = sorted(_rest_entries(store["chapter02"]), key=lambda m: m["step"])
    verdict = ex04.q1.evaluate(_namespace(store, cpu_history=[m["value"] for m in entries]))
    assert verdict.status == CORRECT, verdict
    assert "4 values" in verdict.message and "step 0 to 3" in verdict.message


def test_history_the_metric_entries_instead_of_their_values_say_keep_the_value(store):
    # The list of dicts of `answer.json()["metrics"]`, in the right order, is still not the
    # list of values the exercise asks for.
    entries = sorted(_rest_entries(store["chapter02"]), key=lambda m: m["step"])
    _incorrect(ex04.q1, _namespace(store, cpu_history=entries), "metric entries", "not numbers",
               '`[m["value"] for m in entries]`')
    _incorrect(ex04.q1, _namespace(store, cpu_history=[{"step": 0}]), "metric entries")


def test_history_latest_value_only_is_the_mistakes_message(store):
    # The mistake asks runs/get, whose metrics are each metric's latest value (as here).
    latest = mlflow.MlflowClient().get_run(store["chapter02"]).data.metrics[CPU]
    assert latest == CPU_SAMPLES[-1]
    _incorrect(ex04.q1, _namespace(store, cpu_history=[latest]), "latest value only",
               "has 4", "metrics/get-history")


def test_history_in_the_wrong_order_says_sort_by_step(store):
    _incorrect(ex04.q1, _namespace(store, cpu_history=CPU_SAMPLES[::-1]), "wrong order", "`step`")


@pytest.mark.parametrize("given", [[1.0, 2.0], [], [CPU_SAMPLES[0]]],
                         ids=["other-values", "empty", "one-other-value"])
def test_history_other_values_are_incorrect(store, given):
    _incorrect(ex04.q1, _namespace(store, cpu_history=given), "not the history of", "metric_key")


def test_history_the_whole_json_says_take_its_metrics(store):
    answer = {"metrics": _rest_entries(store["chapter02"])}
    _incorrect(ex04.q1, _namespace(store, cpu_history=answer), "whole JSON answer", "`metrics`")


@pytest.mark.parametrize("given", [42.0, ["a", "b"], ["12.5", "40.0", "31.25", "8.0"], "12.5", None],
                         ids=["number", "words", "numbers-as-text", "text", "none"])
def test_history_not_a_list_of_numbers_says_so(store, given):
    _incorrect(ex04.q1, _namespace(store, cpu_history=given), "a list of numbers")


def test_history_of_a_run_without_samples_says_so(store):
    # A run with no system metrics (recorded without psutil, say) has no history to fetch.
    namespace = _namespace(store, run_id=store["high"], cpu_history=[])
    _incorrect(ex04.q1, namespace, "no values of", CPU)


def test_history_without_the_notebooks_run_id_says_run_from_the_top(store):
    namespace = _namespace(store, cpu_history=CPU_SAMPLES)
    del namespace["run_id"]
    _incorrect(ex04.q1, namespace, "`run_id` is not defined")


# -- 04.3 the parameters that differ -----------------------------------------------------------
def test_differing_untouched_is_not_attempted(store):
    assert ex04.q3.evaluate(_namespace(store, differing_params=...)).status == NOT_ATTEMPTED


def test_differing_solution_is_correct(store):
    namespace = _executed(ex04.q3.solution_code, _namespace(store))
    assert namespace["differing_params"] == {"learning_rate", "lr"}
    verdict = ex04.q3.evaluate(namespace)
    assert verdict.status == CORRECT, verdict


@pytest.mark.parametrize("given", [["lr", "learning_rate"], {"params.lr", "params.learning_rate"}],
                         ids=["list", "column-names"])
def test_differing_other_forms_of_the_names_are_correct(store, given):
    assert ex04.q3.evaluate(_namespace(store, differing_params=given)).status == CORRECT


def test_differing_parameters_cell_only_mistake_misses_lr(store):
    namespace = _executed(ex04.q3.mistake, _namespace(store))
    assert namespace["differing_params"] == {"learning_rate"}
    _incorrect(ex04.q3, namespace, "Also `lr`", "autologging")


def test_differing_names_with_equal_values_are_named(store):
    given = {"learning_rate", "lr", "seed", "optimizer_name"}
    _incorrect(ex04.q3, _namespace(store, differing_params=given), "optimizer_name, seed",
               "same value in both runs")


@pytest.mark.parametrize("given", [{"seed"}, set(), {"lr"}], ids=["wrong", "none", "lr-only"])
def test_differing_other_sets_are_incorrect(store, given):
    _incorrect(ex04.q3, _namespace(store, differing_params=given), "values differ are not")


@pytest.mark.parametrize("given", ["learning_rate", 3], ids=["string", "number"])
def test_differing_not_a_set_of_names_says_so(store, given):
    _incorrect(ex04.q3, _namespace(store, differing_params=given), "a set of parameter names")


def test_differing_without_the_comparison_runs_says_run_them(store):
    namespace = _namespace(store, differing_params={"lr"})
    namespace["compared"] = namespace["compared"][:1]
    _incorrect(ex04.q3, namespace, "`compared`", "run the comparison cells first")
