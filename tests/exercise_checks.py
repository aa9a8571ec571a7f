"""What the tests of the notebooks' exercises share (tests/test_exercises_0*.py).

Each exercise is checked against a real temporary MLflow store, without training (runs are
made with the MLflow client): its solution must say ``Correct``, its typical mistake and the
other wrong answers ``Incorrect``, each with a message of its own (never the generic one).
Left untouched, an exercise says ``Not attempted`` before its check runs at all:
tests/test_exercise_framework.py checks that once for every exercise.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pkgutil
import tempfile
from pathlib import Path

import mlflow
from mlflow.entities import Metric, Param

from tests.notebook_runner import workspace_store
import utils.exercises
from utils.exercises import CORRECT, GENERIC_FAILURE, INCORRECT, Exercise

# Every exercise of the course: those of utils/exercises/ex01.py, ex02.py ...
MODULES = [importlib.import_module(f"utils.exercises.{module.name}")
           for module in pkgutil.iter_modules(utils.exercises.__path__) if module.name.startswith("ex")]
EXERCISES = [value for module in MODULES for value in vars(module).values() if isinstance(value, Exercise)]
# A new store migrates its SQLite schema in many transactions, each synced to disk: seconds
# on a busy disk, next to nothing in memory. So the stores go to /dev/shm where there is one.
RAM = Path("/dev/shm")


@contextlib.contextmanager
def exercise_store(prefix: str):
    """A new course workspace (in memory where it can be) with this process pointed at it,
    as the notebook's kernel is; MLflow and the environment are put back after."""
    ram = RAM if RAM.is_dir() and os.access(RAM, os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix=f"course-{prefix}-", dir=ram) as folder, \
            workspace_store(Path(folder) / "ws") as workspace:
        yield workspace


def verdict(exercise, namespace, status, *words):
    """The exercise's verdict on ``namespace``: ``status``, never the generic failure, and a
    message that holds each of ``words``."""
    found = exercise.evaluate(namespace)
    assert found.status == status, found.line
    assert GENERIC_FAILURE not in found.message, found.line
    for word in words:
        assert word in found.message, found.line
    return found


def correct(exercise, namespace, *words):
    return verdict(exercise, namespace, CORRECT, *words)


def incorrect(exercise, namespace, *words):
    return verdict(exercise, namespace, INCORRECT, *words)


def executed(code: str, namespace: dict) -> dict:
    """A copy of ``namespace`` after ``code`` ran in it, as the exercise cell runs (an
    exercise's solution or mistake, or the learner's variant of one)."""
    namespace = dict(namespace)
    exec(code, namespace)  # noqa: S102
    return namespace


def recorded_run(experiment: str, name: str, params=None, metrics=None, tags=None,
                 status: str | None = "FINISHED", history: tuple[str, list[float]] | None = None) -> str:
    """A run made with the MLflow client (no training) in the experiment named ``experiment``:
    ``params``, ``metrics`` (``history``: a metric's values at steps 0, 1, ...), ``tags``;
    ended with ``status`` (None: left RUNNING). Returns its id."""
    client = mlflow.MlflowClient()
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    run_id = client.create_run(experiment_id, run_name=name, tags=tags or {}).info.run_id
    now = 1_700_000_000_000
    steps = [Metric(history[0], value, now + step, step) for step, value in enumerate(history[1])] if history else []
    client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in (metrics or {}).items()] + steps,
                     params=[Param(k, str(v)) for k, v in (params or {}).items()])
    if status:
        client.set_terminated(run_id, status)
    return run_id

