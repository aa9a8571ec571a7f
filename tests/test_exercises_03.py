"""The checks of notebook 03's exercises (``utils.exercises.ex03``): each outcome and each
typical mistake's own message, against a real temporary SQLite store.

No training: runs are made with MLflow's fluent API and client, with the parameters and
metrics the notebook's runs have. The namespace has the names the check cells read: `run`
(the ``ActiveRun`` of ``with mlflow.start_run(...) as run``), `params`, `client`, `mlflow`.
Exercise 03.1's solution and mistake run as they are; of 03.2's, everything but the call of
``utils.ensure_run`` (which trains), whose run is made here instead.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import tempfile
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from tests.notebook_runner import workspace_store
from utils.exercises import CORRECT, GENERIC_FAILURE, INCORRECT, NOT_ATTEMPTED, ex03
from utils.training import DEFAULTS, RunParameters

PARAMS = RunParameters(**{**DEFAULTS, "backbone": "sentence-transformers/all-MiniLM-L6-v2"})
REVIEWS_SEEN = PARAMS.train_size * PARAMS.max_epochs
# A new store migrates its SQLite schema in many transactions, each synced to disk: seconds
# on a busy disk, next to nothing in memory. So the stores go to /dev/shm where there is one.
RAM = Path("/dev/shm")


@pytest.fixture(scope="module")
def store():
    ram = RAM if RAM.is_dir() and os.access(RAM, os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="course-ex03-", dir=ram) as folder, \
            workspace_store(Path(folder)):
        yield mlflow.MlflowClient()


def _trained(client, experiment, pooling="mean", accuracy=0.8, finished=True, run_name="chapter02",
             train_size=PARAMS.train_size):
    """A run as notebook 03 records it, made without training; its ``ActiveRun``, as the
    notebook's ``with mlflow.start_run(...) as run`` leaves it."""
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    if not finished:  # still RUNNING, before its test
        run = client.create_run(experiment_id, run_name=run_name)
        client.log_param(run.info.run_id, "pooling", pooling)
        return run
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
        mlflow.log_params({"pooling": pooling, "train_size": str(train_size)})
        mlflow.log_metric("test_accuracy", accuracy)
    return run


def _namespace(client, run, **names):
    return {"mlflow": mlflow, "client": client, "run": run, "params": PARAMS, **names}


def _incorrect(exercise, namespace, *words):
    verdict = exercise.evaluate(namespace)
    assert verdict.status == INCORRECT, verdict
    assert GENERIC_FAILURE not in verdict.message, verdict
    for word in words:
        assert word in verdict.message, verdict
    return verdict


# -- 03.1 a note on the run -------------------------------------------------------------------
# Each test has an experiment of its own: the check looks there for runs the tag went to.
def test_note_untouched_is_not_attempted(store):
    run = _trained(store, "ex03-untouched")
    assert ex03.q1.evaluate(_namespace(store, run, noted_run_id=...)).status == NOT_ATTEMPTED


def test_note_solution_is_correct(store):
    namespace = _namespace(store, _trained(store, "ex03-solved"))
    exec(ex03.q1.solution_code, namespace)
    verdict = ex03.q1.evaluate(namespace)
    assert verdict.status == CORRECT, verdict
    assert f"reviews_seen={REVIEWS_SEEN}" in verdict.message


def test_note_outside_the_run_mistake_finds_the_stray_run_and_ends_it(store, monkeypatch):
    run = _trained(store, "ex03-stray")
    # The notebook made its experiment the active one; the mistake's set_tag starts a run there.
    # (monkeypatch puts MLflow's active experiment back after the test.)
    monkeypatch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    mlflow.set_experiment(experiment_id=run.info.experiment_id)
    namespace = _namespace(store, run)
    try:
        exec(ex03.q1.mistake, namespace)
        stray = mlflow.active_run()
        assert stray is not None and stray.info.run_id != run.info.run_id
        verdict = _incorrect(ex03.q1, namespace, "Your run has no tag `note`",
                             f"Your tag went to another run, {stray.info.run_id}",
                             "The check ended that stray run")
        assert mlflow.active_run() is None, verdict
        assert store.get_run(stray.info.run_id).info.status == "FINISHED"
        # Checked again, the stray run is still named, and there is nothing left to end.
        verdict = _incorrect(ex03.q1, namespace, f"Your tag went to another run, {stray.info.run_id}")
        assert "ended" not in verdict.message
    finally:
        mlflow.end_run()


def test_note_in_a_run_reopened_and_never_ended_says_end_it(store):
    run = _trained(store, "ex03-left-open")
    namespace = _namespace(store, run, noted_run_id=run.info.run_id)
    # The run's experiment is the active one, as in notebook 03 (an earlier test in this
    # process may have made another one active, and start_run refuses a run outside it).
    mlflow.set_experiment(experiment_id=run.info.experiment_id)
    try:
        exec("mlflow.start_run(run_id=run.info.run_id)  # no `with`: nothing ends it\n"
             'mlflow.set_tag("note", "mine")\n'
             'mlflow.log_metric("reviews_seen", params.train_size * params.max_epochs)', namespace)
        assert store.get_run(run.info.run_id).info.status == "RUNNING"
        _incorrect(ex03.q1, namespace, "stays RUNNING", "mlflow.end_run()")
    finally:
        mlflow.end_run()
    assert ex03.q1.evaluate(namespace).status == CORRECT


def test_note_on_no_run_says_where_to_call_set_tag(store):
    run = _trained(store, "ex03-no-tag")
    verdict = _incorrect(ex03.q1, _namespace(store, run, noted_run_id=run.info.run_id),
                         "Your run has no tag `note`", "mlflow.start_run(run_id=run.info.run_id)")
    assert "another run" not in verdict.message


def test_note_on_another_run_says_tag_this_one(store):
    run = _trained(store, "ex03-other-run")
    other = _trained(store, "ex03-other-run", run_name="other")
    store.set_tag(other.info.run_id, "note", "on the wrong run")
    _incorrect(ex03.q1, _namespace(store, run, noted_run_id=other.info.run_id),
               "'other'", f"not the run `run` of this notebook ({run.info.run_id})")


@pytest.mark.parametrize("given", [None, 42, "  "], ids=["none", "number", "blank"])
def test_note_not_a_run_id_says_what_it_should_be(store, given):
    run = _trained(store, "ex03-not-an-id")
    _incorrect(ex03.q1, _namespace(store, run, noted_run_id=given), "should be a run id")


def test_note_run_object_instead_of_its_id_says_what_it_should_be(store):
    run = _trained(store, "ex03-run-object")
    _incorrect(ex03.q1, _namespace(store, run, noted_run_id=run), "should be a run id",
               "run.info.run_id")


def test_note_unknown_run_id_is_incorrect(store):
    run = _trained(store, "ex03-unknown")
    _incorrect(ex03.q1, _namespace(store, run, noted_run_id="f" * 32), "There is no run")


def test_note_empty_tag_asks_for_text(store):
    run = _trained(store, "ex03-empty-note")
    store.set_tag(run.info.run_id, "note", " ")
    _incorrect(ex03.q1, _namespace(store, run, noted_run_id=run.info.run_id), "`note` is empty")


def test_note_without_the_metric_says_log_it(store):
    run = _trained(store, "ex03-no-metric")
    store.set_tag(run.info.run_id, "note", "mine")
    verdict = _incorrect(ex03.q1, _namespace(store, run, noted_run_id=run.info.run_id),
                         "no metric `reviews_seen`", "log_metric")
    assert "exactly" not in verdict.message


def test_note_metric_under_a_near_name_says_the_exact_name(store):
    run = _trained(store, "ex03-near-name")
    store.set_tag(run.info.run_id, "note", "mine")
    store.log_metric(run.info.run_id, "reviews-seen", REVIEWS_SEEN)
    _incorrect(ex03.q1, _namespace(store, run, noted_run_id=run.info.run_id),
               "`reviews-seen`", "must be exactly `reviews_seen`")


def test_note_wrong_count_then_logged_again_is_correct(store):
    run = _trained(store, "ex03-wrong-count")
    namespace = _namespace(store, run, noted_run_id=run.info.run_id)
    store.set_tag(run.info.run_id, "note", "mine")
    store.log_metric(run.info.run_id, "reviews_seen", PARAMS.train_size)  # epochs forgotten
    store.log_metric(run.info.run_id, "reviews_seen", REVIEWS_SEEN + 1)
    _incorrect(ex03.q1, namespace, f"`reviews_seen` is {REVIEWS_SEEN + 1}", f"{REVIEWS_SEEN}")
    # As the message says: log the value again, and the latest one counts.
    store.log_metric(run.info.run_id, "reviews_seen", REVIEWS_SEEN)
    assert ex03.q1.evaluate(namespace).status == CORRECT


def test_note_before_the_notebooks_run_says_run_from_the_top(store):
    run = _trained(store, "ex03-no-run")
    namespace = _namespace(store, run, noted_run_id=run.info.run_id)
    del namespace["params"]
    _incorrect(ex03.q1, namespace, "`run` and `params` are not defined")


# -- 03.2 pooling compared ----------------------------------------------------------------------
POOLING = "ex03-pooling"


@pytest.fixture(scope="module")
def pooling_runs(store):
    """Notebook 03's run and the runs its second exercise may come up with."""
    return {
        "run": _trained(store, POOLING, accuracy=0.80),
        "pooler": _trained(store, POOLING, pooling="pooler", accuracy=0.75, run_name="pooler"),
        "mean-again": _trained(store, POOLING, accuracy=0.78, run_name="pooler"),
        "unfinished": _trained(store, POOLING, pooling="pooler", finished=False, run_name="pooler"),
        "elsewhere": _trained(store, "ex03-elsewhere", pooling="pooler", run_name="pooler"),
        "smaller": _trained(store, POOLING, pooling="pooler", run_name="pooler", train_size=200),
    }


def _search_part(code: str) -> str:
    """An exercise's code without its ``utils.ensure_run`` statement: the rest, which asks
    ``mlflow.search_runs`` for the two runs, runs here against ``pooler_run_id``."""
    tree = ast.parse(code)
    tree.body = [statement for statement in tree.body if "ensure_run" not in ast.unparse(statement)]
    return ast.unparse(tree)


def _compared(store, runs, pooler_run_id, code=ex03.q2.solution_code):
    namespace = _namespace(store, runs["run"], pooler_run_id=pooler_run_id,
                           params=dataclasses.replace(PARAMS, experiment_name=POOLING))
    exec(_search_part(code), namespace)
    return namespace


def test_pooling_untouched_is_not_attempted(store, pooling_runs):
    namespace = _namespace(store, pooling_runs["run"], pooler_run_id=..., comparison=...)
    assert ex03.q2.evaluate(namespace).status == NOT_ATTEMPTED


def test_pooling_solution_is_correct(store, pooling_runs):
    namespace = _compared(store, pooling_runs, pooling_runs["pooler"].info.run_id)
    verdict = ex03.q2.evaluate(namespace)
    assert verdict.status == CORRECT, verdict
    assert "'mean' 0.800 against 'pooler' 0.750" in verdict.message


def test_pooling_left_at_its_default_mistake_says_it_compares_nothing(store, pooling_runs):
    # utils.ensure_run without pooling= trains (or finds) a run with the default, "mean".
    namespace = _compared(store, pooling_runs, pooling_runs["mean-again"].info.run_id,
                          code=ex03.q2.mistake)
    _incorrect(ex03.q2, namespace, "pooling='mean'", "compares nothing", 'pooling="pooler"')


def test_pooling_the_notebooks_own_run_says_train_a_second(store, pooling_runs):
    namespace = _compared(store, pooling_runs, pooling_runs["run"].info.run_id)
    _incorrect(ex03.q2, namespace, "the notebook's own run `run`")


@pytest.mark.parametrize("which, words", [
    ("smaller", ["trained on other data", "train_size=200 (`run`: 500)", "train_size=params.train_size"]),
    ("elsewhere", ["in another experiment", "experiment_name=params.experiment_name"]),
    ("unfinished", ["RUNNING", "no test_accuracy"]),
], ids=["other-data", "other-experiment", "unfinished"])
def test_pooling_a_run_that_cannot_be_compared_says_why(store, pooling_runs, which, words):
    run = pooling_runs[which]
    comparison = mlflow.search_runs(experiment_names=[POOLING])
    namespace = _namespace(store, pooling_runs["run"], pooler_run_id=run.info.run_id,
                           comparison=comparison)
    _incorrect(ex03.q2, namespace, *words)


@pytest.mark.parametrize("given", [None, "f" * 32], ids=["none", "unknown"])
def test_pooling_not_a_run_id_is_incorrect(store, pooling_runs, given):
    namespace = _namespace(store, pooling_runs["run"], pooler_run_id=given, comparison=pd.DataFrame())
    _incorrect(ex03.q2, namespace, "`pooler_run_id`" if given is None else "There is no run")


def test_pooling_comparison_as_a_list_of_runs_asks_for_the_dataframe(store, pooling_runs):
    pooler = pooling_runs["pooler"].info.run_id
    listed = mlflow.search_runs(experiment_names=[POOLING], output_format="list")
    namespace = _namespace(store, pooling_runs["run"], pooler_run_id=pooler, comparison=listed)
    _incorrect(ex03.q2, namespace, "should be the DataFrame", "it is a list")


def test_pooling_comparison_without_run_ids_says_take_it_as_it_comes(store, pooling_runs):
    namespace = _compared(store, pooling_runs, pooling_runs["pooler"].info.run_id)
    namespace["comparison"] = namespace["comparison"][["params.pooling", "metrics.test_accuracy"]]
    _incorrect(ex03.q2, namespace, "no `run_id` column")


def test_pooling_comparison_without_both_runs_names_the_missing_one(store, pooling_runs):
    pooler = pooling_runs["pooler"].info.run_id
    only_pooler = mlflow.search_runs(experiment_names=[POOLING],
                                     filter_string=f"attributes.run_id = '{pooler}'")
    namespace = _namespace(store, pooling_runs["run"], pooler_run_id=pooler, comparison=only_pooler)
    _incorrect(ex03.q2, namespace, f"lacks run(s) {pooling_runs['run'].info.run_id}")


def test_pooling_comparison_without_the_columns_says_which(store, pooling_runs):
    namespace = _compared(store, pooling_runs, pooling_runs["pooler"].info.run_id)
    namespace["comparison"] = namespace["comparison"][["run_id", "metrics.test_accuracy"]]
    _incorrect(ex03.q2, namespace, "no column 'params.pooling'")


def test_pooling_one_answer_left_untouched_is_named(store, pooling_runs):
    namespace = _namespace(store, pooling_runs["run"], comparison=...,
                           pooler_run_id=pooling_runs["pooler"].info.run_id)
    _incorrect(ex03.q2, namespace, "`comparison` is still `...`")


def test_pooling_before_the_notebooks_run_says_run_from_the_top(store, pooling_runs):
    namespace = _compared(store, pooling_runs, pooling_runs["pooler"].info.run_id)
    del namespace["run"]
    _incorrect(ex03.q2, namespace, "`run` is not defined")


# -- 03.3 a training loop, instrumented ------------------------------------------------------
@pytest.fixture
def loop(store):
    """The names the exercise cell finds: the word counts and targets, in an experiment of
    the test's own (a few reviews are enough; each run takes under a second)."""
    import torch

    mlflow.set_experiment(f"ex03-loop-{os.urandom(3).hex()}")
    features = torch.rand(12, 8)
    return _namespace(store, None, torch=torch, features=features,
                      targets=(features.sum(1) > 4).float(), tiny_run_id=...)


def test_loop_untouched_is_not_attempted(loop):
    assert ex03.q3.evaluate(loop).status == NOT_ATTEMPTED


def test_loop_solution_is_correct(loop):
    exec(ex03.q3.solution_code, loop)
    verdict = ex03.q3.evaluate(loop)
    assert verdict.status == CORRECT, verdict
    assert "`train_loss` at 30 steps" in verdict.message


def test_loop_metric_without_steps_mistake_says_pass_step(loop):
    exec(ex03.q3.mistake, loop)
    _incorrect(ex03.q3, loop, "all at step 0", "step=step")


@pytest.mark.parametrize("change, words", [
    (('mlflow.log_params(tiny_params)', 'pass'), ["no parameters", "mlflow.log_params"]),
    (('mlflow.log_metric("train_loss", loss.item(), step=step)', 'pass'), ["no metric"]),
    (('signature=signature,', 'signature=None, serialization_format="pickle",'), ["no signature"]),
], ids=["no-params", "no-metric", "no-signature"])
def test_loop_a_missing_record_is_named(loop, change, words):
    code = ex03.q3.solution_code.replace(*change)
    if "no signature" in words:  # nor an input example, from which MLflow would infer one
        code = code.replace("input_example=features[:3].numpy(), ", "")
    assert code != ex03.q3.solution_code
    exec(code, loop)
    _incorrect(ex03.q3, loop, *words)


def test_loop_a_model_logged_outside_the_run_is_named(loop):
    code = ex03.q3.solution_code.replace("    signature = ", "signature = ").replace(
        "    mlflow.pytorch.log_model(", "mlflow.pytorch.log_model(").replace(
        "                             input_example=", "                         input_example=")
    assert code != ex03.q3.solution_code
    exec(code, loop)
    _incorrect(ex03.q3, loop, "The run logged no model", "outside any run")


def test_loop_a_run_left_open_is_named(loop):
    code = ex03.q3.solution_code.replace(
        'with mlflow.start_run(run_name="tiny_loop") as tiny_run:', 'if tiny_run := mlflow.start_run(run_name="tiny_loop"):')
    exec(code, loop)
    try:
        _incorrect(ex03.q3, loop, "still RUNNING")
    finally:
        mlflow.end_run()
