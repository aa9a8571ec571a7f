"""The checks of notebook 03's exercises (tests/exercise_checks.py). The namespace has the
names the check cells read: `run`, `params`, `client`, `mlflow`, `experiment`. Of 03.2's
solution and mistake, everything runs but the call of ``utils.ensure_run`` (which trains),
whose run is made here instead."""

from __future__ import annotations

import ast
import dataclasses
import os

import mlflow
import pandas as pd
import pytest

from tests.exercise_checks import correct, executed, exercise_store, incorrect, recorded_run
from utils.exercises import CORRECT, ex03
from utils.training import RUN_PARAMETERS, RunParameters

PARAMS = RunParameters(backbone="sentence-transformers/all-MiniLM-L6-v2")
REVIEWS_SEEN = PARAMS.train_size * PARAMS.max_epochs


@pytest.fixture(scope="module")
def store():
    with exercise_store("ex03"):
        yield mlflow.MlflowClient()


def _trained(experiment, run_name="chapter02", accuracy=0.8, status="FINISHED", **changed):
    """A run as notebook 03 records it (every parameter of the parameters cell, ``changed``
    apart), made without training."""
    params = {**{name: getattr(PARAMS, name) for name in RUN_PARAMETERS}, **changed}
    metrics = {"test_accuracy": accuracy} if status else {}
    return mlflow.get_run(recorded_run(experiment, run_name, params, metrics, status=status))


def _namespace(client, run, **names):
    return {"mlflow": mlflow, "client": client, "run": run, "params": PARAMS, **names}


# -- 03.1 a note on the run -------------------------------------------------------------------
# Each test has an experiment of its own: the check looks there for runs the tag went to.
def test_note_solution_is_correct(store):
    namespace = executed(ex03.q1.solution_code, _namespace(store, _trained("ex03-solved")))
    correct(ex03.q1, namespace, f"reviews_seen={REVIEWS_SEEN}")


def test_note_outside_the_run_mistake_finds_the_stray_run_and_ends_it(store, monkeypatch):
    run = _trained("ex03-stray")
    # The notebook made its experiment the active one; the mistake's set_tag starts a run there.
    # (monkeypatch puts MLflow's active experiment back after the test.)
    monkeypatch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    mlflow.set_experiment(experiment_id=run.info.experiment_id)
    try:
        namespace = executed(ex03.q1.mistake, _namespace(store, run))
        stray = mlflow.active_run()
        assert stray is not None and stray.info.run_id != run.info.run_id
        incorrect(ex03.q1, namespace, "Your run has no tag `note`",
                  f"Your tag went to another run, {stray.info.run_id}", "The check ended that stray run")
        assert mlflow.active_run() is None
        assert store.get_run(stray.info.run_id).info.status == "FINISHED"
        # Checked again, the stray run is still named, and there is nothing left to end.
        verdict = incorrect(ex03.q1, namespace, f"Your tag went to another run, {stray.info.run_id}")
        assert "ended" not in verdict.message
    finally:
        mlflow.end_run()


def test_note_in_a_run_reopened_and_never_ended_says_end_it(store):
    run = _trained("ex03-left-open")
    # The run's experiment is the active one, as in notebook 03 (an earlier test in this
    # process may have made another one active, and start_run refuses a run outside it).
    mlflow.set_experiment(experiment_id=run.info.experiment_id)
    try:
        namespace = executed("mlflow.start_run(run_id=run.info.run_id)  # no `with`: nothing ends it\n"
                             'mlflow.set_tag("note", "mine")\n'
                             'mlflow.log_metric("reviews_seen", params.train_size * params.max_epochs)\n'
                             "noted_run_id = run.info.run_id", _namespace(store, run))
        assert store.get_run(run.info.run_id).info.status == "RUNNING"
        incorrect(ex03.q1, namespace, "stays RUNNING", "mlflow.end_run()")
    finally:
        mlflow.end_run()
    correct(ex03.q1, namespace)


@pytest.mark.parametrize("tags, metrics, words, not_said", [
    ({}, {}, ["Your run has no tag `note`", "mlflow.start_run(run_id=run.info.run_id)"], "another run"),
    ({"note": " "}, {}, ["`note` is empty"], None),
    ({"note": "mine"}, {}, ["no metric `reviews_seen`", "log_metric"], "exactly"),
    ({"note": "mine"}, {"reviews-seen": REVIEWS_SEEN}, ["`reviews-seen`", "must be exactly `reviews_seen`"], None),
], ids=["no-tag", "empty-note", "no-metric", "near-name"])
def test_note_a_record_missing_from_the_run_is_named(store, tags, metrics, words, not_said):
    run = _trained(f"ex03-records-{os.urandom(3).hex()}")
    for key, value in tags.items():
        store.set_tag(run.info.run_id, key, value)
    for key, value in metrics.items():
        store.log_metric(run.info.run_id, key, value)
    verdict = incorrect(ex03.q1, _namespace(store, run, noted_run_id=run.info.run_id), *words)
    assert not_said is None or not_said not in verdict.message


@pytest.mark.parametrize("given, words", [
    (None, ["should be a run id"]), (42, ["should be a run id"]), ("  ", ["should be a run id"]),
    ("the-run-object", ["should be a run id", "run.info.run_id"]),
    ("f" * 32, ["There is no run"]),
    ("another-run", ["'other'", "not the run `run` of this notebook"]),
], ids=["none", "number", "blank", "run-object", "unknown", "another-run"])
def test_note_on_something_else_than_the_run_says_what_it_should_be(store, given, words):
    run = _trained("ex03-other-run")
    if given == "the-run-object":
        given = run
    elif given == "another-run":
        given = _trained("ex03-other-run", run_name="other").info.run_id
        store.set_tag(given, "note", "on the wrong run")
    incorrect(ex03.q1, _namespace(store, run, noted_run_id=given), *words)


def test_note_wrong_count_then_logged_again_is_correct(store):
    run = _trained("ex03-wrong-count")
    namespace = _namespace(store, run, noted_run_id=run.info.run_id)
    store.set_tag(run.info.run_id, "note", "mine")
    store.log_metric(run.info.run_id, "reviews_seen", REVIEWS_SEEN + 1)
    incorrect(ex03.q1, namespace, f"`reviews_seen` is {REVIEWS_SEEN + 1}", f"{REVIEWS_SEEN}")
    # As the message says: log the value again, and the latest one counts.
    store.log_metric(run.info.run_id, "reviews_seen", REVIEWS_SEEN)
    assert ex03.q1.evaluate(namespace).status == CORRECT


def test_note_before_the_notebooks_run_says_run_from_the_top(store):
    run = _trained("ex03-no-run")
    namespace = _namespace(store, run, noted_run_id=run.info.run_id)
    del namespace["params"]
    incorrect(ex03.q1, namespace, "`run` and `params` are not defined")


# -- 03.2 pooling compared ----------------------------------------------------------------------
POOLING = "ex03-pooling"


@pytest.fixture(scope="module")
def pooling_runs(store):
    """Notebook 03's run and the runs its second exercise may come up with."""
    return {
        "run": _trained(POOLING, accuracy=0.80),
        "pooler": _trained(POOLING, "pooler", accuracy=0.75, pooling="pooler"),
        "mean-again": _trained(POOLING, "pooler", accuracy=0.78),
        "unfinished": _trained(POOLING, "pooler", status=None, pooling="pooler"),
        "elsewhere": _trained("ex03-elsewhere", "pooler", pooling="pooler"),
        "smaller": _trained(POOLING, "pooler", pooling="pooler", train_size=200),
        "longer": _trained(POOLING, "pooler", pooling="pooler", max_epochs=2),  # the same sizes
    }


def _search_part(code: str) -> str:
    """An exercise's code without its ``utils.ensure_run`` statement: the rest, which asks
    ``mlflow.search_runs`` for the two runs, runs here against ``pooler_run_id``."""
    tree = ast.parse(code)
    tree.body = [statement for statement in tree.body if "ensure_run" not in ast.unparse(statement)]
    return ast.unparse(tree)


def _compared(store, runs, which, code=ex03.q2.solution_code, **names):
    namespace = _namespace(store, runs["run"], pooler_run_id=runs[which].info.run_id,
                           params=dataclasses.replace(PARAMS, experiment_name=POOLING))
    return {**executed(_search_part(code), namespace), **names}


def test_pooling_solution_is_correct(store, pooling_runs):
    correct(ex03.q2, _compared(store, pooling_runs, "pooler"), "'mean' 0.800 against 'pooler' 0.750")


def test_pooling_left_as_it_was_mistake_says_it_compares_nothing(store, pooling_runs):
    # utils.ensure_run of the notebook's params renamed trains (or finds) a run with "mean".
    namespace = _compared(store, pooling_runs, "mean-again", code=ex03.q2.mistake)
    incorrect(ex03.q2, namespace, "pooling='mean'", "compares nothing", 'pooling="pooler"')


@pytest.mark.parametrize("which, words", [
    ("smaller", ["differs from `run` in more than pooling", "train_size=200 (`run`: 500)",
                 'dataclasses.replace(params, run_name="pooler", pooling="pooler")']),
    ("longer", ["differs from `run` in more than pooling", "max_epochs=2 (`run`: 1)"]),
    ("elsewhere", ["in another experiment", "params.experiment_name"]),
    ("unfinished", ["RUNNING", "no test_accuracy"]),
    ("run", ["the notebook's own run `run`"]),
], ids=["other-data", "other-epochs", "other-experiment", "unfinished", "the-same-run"])
def test_pooling_a_run_that_cannot_be_compared_says_why(store, pooling_runs, which, words):
    incorrect(ex03.q2, _compared(store, pooling_runs, which), *words)


def test_pooling_a_comparison_not_as_search_runs_gives_it_is_named(store, pooling_runs):
    pooler, run = pooling_runs["pooler"].info.run_id, pooling_runs["run"].info.run_id
    listed = mlflow.search_runs(experiment_names=[POOLING], output_format="list")
    incorrect(ex03.q2, _compared(store, pooling_runs, "pooler", comparison=listed),
              "should be the DataFrame", "it is a list")
    table = _compared(store, pooling_runs, "pooler")["comparison"]
    for columns, words in ((["params.pooling", "metrics.test_accuracy"], ["no `run_id` column"]),
                           (["run_id", "metrics.test_accuracy"], ["no column 'params.pooling'"])):
        incorrect(ex03.q2, _compared(store, pooling_runs, "pooler", comparison=table[columns]), *words)
    only_pooler = table[table["run_id"] == pooler]
    incorrect(ex03.q2, _compared(store, pooling_runs, "pooler", comparison=only_pooler), f"lacks run(s) {run}")


def test_pooling_before_the_notebooks_run_says_run_from_the_top(store, pooling_runs):
    namespace = _compared(store, pooling_runs, "pooler")
    del namespace["run"]
    incorrect(ex03.q2, namespace, "`run` is not defined")


# -- 03.3 a training loop, instrumented ------------------------------------------------------
@pytest.fixture
def loop(store):
    """The names the exercise cell finds: the word counts and targets, in an experiment of
    the test's own (a few reviews are enough; each run takes under a second)."""
    import torch

    experiment = mlflow.set_experiment(f"ex03-loop-{os.urandom(3).hex()}")
    features = torch.rand(12, 8)
    return _namespace(store, None, torch=torch, features=features, experiment=experiment,
                      targets=(features.sum(1) > 4).float(), tiny_run_id=...)


def test_loop_solution_is_correct(loop):
    correct(ex03.q3, executed(ex03.q3.solution_code, loop), "`train_loss` at 30 steps")


def test_loop_metric_without_steps_mistake_says_pass_step(loop):
    incorrect(ex03.q3, executed(ex03.q3.mistake, loop), "all at step 0", "step=step")


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
    incorrect(ex03.q3, executed(code, loop), *words)


def test_loop_a_model_logged_outside_the_run_is_named(loop):
    code = ex03.q3.solution_code.replace("    signature = ", "signature = ").replace(
        "    mlflow.pytorch.log_model(", "mlflow.pytorch.log_model(").replace(
        "                             input_example=", "                         input_example=")
    assert code != ex03.q3.solution_code
    incorrect(ex03.q3, executed(code, loop), "The run logged no model", "outside any run")


def test_loop_a_run_left_open_is_named(loop):
    code = ex03.q3.solution_code.replace(
        'with mlflow.start_run(run_name="tiny_loop") as tiny_run:', 'if tiny_run := mlflow.start_run(run_name="tiny_loop"):')
    try:
        incorrect(ex03.q3, executed(code, loop), "still RUNNING")
    finally:
        mlflow.end_run()


def test_loop_recorded_in_another_experiment_is_named(loop):
    # The notebook's `experiment` is another one than the experiment active when the loop ran.
    other = mlflow.set_experiment(f"ex03-elsewhere-{os.urandom(3).hex()}")
    incorrect(ex03.q3, executed(ex03.q3.solution_code, loop), f"is in the experiment {other.name!r}",
              f"not in this notebook's {loop['experiment'].name!r}", "mlflow.set_experiment(params.experiment_name)")
