"""The checks of notebook 04's exercises (tests/exercise_checks.py): its runs, with the
parameters, metrics and metric history the notebook's have, and the names its check cells
read (``experiment_name``, ``run_id``, ``compared``)."""

from __future__ import annotations

import mlflow
import pytest

from tests.exercise_checks import correct, executed, exercise_store, incorrect, recorded_run
from utils.exercises import ex04
from utils.training import RUN_PARAMETERS, defaults

EXPERIMENT, ELSEWHERE, EMPTY = "ex04-runs", "ex04-elsewhere", "ex04-empty"
CPU = ex04.HISTORY_METRIC
CPU_SAMPLES = [12.5, 40.0, 31.25, 8.0]  # steps 0..3; the latest differs from the others


def _params(learning_rate: float) -> dict[str, str]:
    """A comparison run's parameters: ours (every name of the parameters cell) and two of
    autologging's, one of them `lr`, the optimizer's learning rate."""
    ours = {name: str(defaults()[name]) for name in RUN_PARAMETERS}
    ours.update(backbone="sentence-transformers/all-MiniLM-L6-v2", learning_rate=str(learning_rate))
    return {**ours, "lr": str(learning_rate), "optimizer_name": "Adam"}


@pytest.fixture(scope="module")
def store():
    """The experiment of notebook 04 as its exercises find it: the example run (with a CPU
    history), two comparison runs that differ in the learning rate only, a run still
    RUNNING with the highest val_accuracy, a finished run without one; and a better run in
    another experiment, and an experiment with no run."""
    with exercise_store("ex04"):
        yield {
            "chapter02": recorded_run(EXPERIMENT, "chapter02", _params(0.03), {"val_accuracy": 0.70},
                                      history=(CPU, CPU_SAMPLES)),
            "low": recorded_run(EXPERIMENT, "lr=0.0003", _params(0.0003), {"val_accuracy": 0.50}),
            "high": recorded_run(EXPERIMENT, "lr=0.03", _params(0.03), {"val_accuracy": 0.80}),
            "running": recorded_run(EXPERIMENT, "running", metrics={"val_accuracy": 0.90}, status=None),
            "unscored": recorded_run(EXPERIMENT, "unscored"),
            "elsewhere": recorded_run(ELSEWHERE, "elsewhere", metrics={"val_accuracy": 0.95}),
            "empty": mlflow.MlflowClient().create_experiment(EMPTY),
        }


def _namespace(runs, **names):
    return {"mlflow": mlflow, "experiment_name": EXPERIMENT, "run_id": runs["chapter02"],
            "compared": [runs["low"], runs["high"]], **names}


def _rest_entries(run_id):
    """What ``GET /api/2.0/mlflow/metrics/get-history`` answers, entry by entry, in step order:
    the same records, read through the client from the same store."""
    return sorted(({"key": m.key, "value": m.value, "timestamp": m.timestamp, "step": m.step}
                   for m in mlflow.MlflowClient().get_metric_history(run_id, CPU)), key=lambda m: m["step"])


# -- 04.1 a metric's history over REST --------------------------------------------------------
def test_history_every_value_in_step_order_is_correct(store):
    values = [m["value"] for m in _rest_entries(store["chapter02"])]
    correct(ex04.q1, _namespace(store, cpu_history=values), "4 values", "step 0 to 3")


def test_history_latest_value_only_is_the_mistakes_message(store):
    # The mistake asks runs/get, whose metrics are each metric's latest value (as here).
    latest = mlflow.MlflowClient().get_run(store["chapter02"]).data.metrics[CPU]
    assert latest == CPU_SAMPLES[-1]
    incorrect(ex04.q1, _namespace(store, cpu_history=[latest]), "latest value only", "has 4", "metrics/get-history")


# What the notebook's names may hold instead (`cpu_history` from the REST entries), and why.
HISTORIES = {
    # The list of dicts of `answer.json()["metrics"]`: still not the list of values asked for.
    "entries": (lambda runs, entries: {"cpu_history": entries},
                ["metric entries", "not numbers", '`[m["value"] for m in entries]`']),
    "an-entry": (lambda runs, entries: {"cpu_history": [{"step": 0}]}, ["metric entries"]),
    "whole-json": (lambda runs, entries: {"cpu_history": {"metrics": entries}}, ["whole JSON answer", "`metrics`"]),
    "wrong-order": (lambda runs, entries: {"cpu_history": CPU_SAMPLES[::-1]}, ["wrong order", "`step`"]),
    **{f"other-values-{len(given)}": (lambda runs, entries, given=given: {"cpu_history": given},
                                      ["not the history of", "metric_key"])
       for given in ([1.0, 2.0], [], [CPU_SAMPLES[0]])},
    **{f"not-numbers-{index}": (lambda runs, entries, given=given: {"cpu_history": given}, ["a list of numbers"])
       for index, given in enumerate([42.0, ["a", "b"], ["12.5", "40.0", "31.25", "8.0"], "12.5", None])},
    # A run with no system metrics (recorded without psutil, say) has no history to fetch.
    "run-without-samples": (lambda runs, entries: {"run_id": runs["high"], "cpu_history": []}, ["no values of", CPU]),
    "no-run-id": (lambda runs, entries: {"run_id": None, "cpu_history": CPU_SAMPLES}, ["`run_id` is not defined"]),
}


@pytest.mark.parametrize("case", HISTORIES)
def test_history_not_as_asked_says_why(store, case):
    names, words = HISTORIES[case]
    incorrect(ex04.q1, _namespace(store, **names(store, _rest_entries(store["chapter02"]))), *words)


# -- 04.2 the best run ---------------------------------------------------------------------
def test_best_run_solution_is_correct(store):
    correct(ex04.q2, executed(ex04.q2.solution_code, _namespace(store)), "'lr=0.03'", "0.800")


def test_best_run_ascending_mistake_names_the_lowest(store):
    namespace = executed(ex04.q2.mistake, _namespace(store))
    assert namespace["best_run_id"] == store["low"]
    incorrect(ex04.q2, namespace, "LOWEST", "DESC")


@pytest.mark.parametrize("chosen, names, words", [
    ("chapter02", {}, ["0.700", "the best finished run has 0.800"]),
    ("running", {}, ["RUNNING, not FINISHED", "attributes.status = 'FINISHED'"]),
    ("unscored", {}, ["no val_accuracy at all"]),
    ("elsewhere", {}, ["in another experiment"]),
    ("table", {}, ["DataFrame", ".run_id.iloc[0]"]),
    ("column", {}, ["Series", ".run_id.iloc[0]"]),
    ("high", {"experiment_name": None}, ["`experiment_name` names no experiment"]),
    ("high", {"experiment_name": EMPTY}, ["No finished run of 'ex04-empty' has a val_accuracy"]),
], ids=["second-best", "running", "unscored", "other-experiment", "table", "column", "no-experiment",
        "experiment-without-scores"])
def test_best_run_not_the_best_says_why(store, chosen, names, words):
    table = mlflow.search_runs(experiment_names=[EXPERIMENT], order_by=["metrics.val_accuracy DESC"])
    given = {"table": table, "column": table.run_id}.get(chosen, store.get(chosen, chosen))
    namespace = _namespace(store, best_run_id=given, **names)
    if names.get("experiment_name", "") is None:  # the notebook's cells were not run
        del namespace["experiment_name"]
    incorrect(ex04.q2, namespace, *words)


# -- 04.3 the parameters that differ -----------------------------------------------------------
def test_differing_solution_is_correct(store):
    namespace = executed(ex04.q3.solution_code, _namespace(store))
    assert namespace["differing_params"] == {"learning_rate", "lr"}
    correct(ex04.q3, namespace)


@pytest.mark.parametrize("given", [["lr", "learning_rate"], {"params.lr", "params.learning_rate"}],
                         ids=["list", "column-names"])
def test_differing_other_forms_of_the_names_are_correct(store, given):
    correct(ex04.q3, _namespace(store, differing_params=given))


def test_differing_parameters_cell_only_mistake_misses_lr(store):
    namespace = executed(ex04.q3.mistake, _namespace(store))
    assert namespace["differing_params"] == {"learning_rate"}
    incorrect(ex04.q3, namespace, "Also `lr`", "autologging")


@pytest.mark.parametrize("given, words", [
    ({"learning_rate", "lr", "seed", "optimizer_name"}, ["optimizer_name, seed", "same value in both runs"]),
    ({"seed"}, ["values differ are not"]), (set(), ["values differ are not"]), ({"lr"}, ["values differ are not"]),
    ("learning_rate", ["a set of parameter names"]), (3, ["a set of parameter names"]),
], ids=["equal-values-too", "wrong", "none", "lr-only", "string", "number"])
def test_differing_other_answers_say_why(store, given, words):
    incorrect(ex04.q3, _namespace(store, differing_params=given), *words)


def test_differing_without_the_comparison_runs_says_run_them(store):
    namespace = _namespace(store, differing_params={"lr"})
    namespace["compared"] = namespace["compared"][:1]
    incorrect(ex04.q3, namespace, "`compared`", "run the comparison cells first")
