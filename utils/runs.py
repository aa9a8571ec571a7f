"""Runs for the notebooks after 03: found in the store, or trained with notebook 03's code.

:func:`record_run` trains and records a run with the functions notebook 03 defines in its
``#@save`` cells (:mod:`utils.ch03`), so no second copy of the run exists.
:func:`ensure_run` reuses a run only when its logged parameters equal the ones asked for;
:func:`ensure_example_run` gives notebooks 04 and 05 a run to look at without running
notebook 03 first.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from utils.env import temporary_environment
from utils.errors import CourseError
from utils.training import (DEFAULTS, RERUN_TAG, RunParameters, data_folder, loggable_params,
                            quiet_libraries, release_memory, validate_parameters)
from utils.workspace import TRACKING_URI_ENV, get_workspace, use_workspace, workspace_lock


class _DropMessages(logging.Filter):
    def __init__(self, *beginnings: str):
        super().__init__()
        self.beginnings = beginnings

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.beginnings)


@contextmanager
def messages_explained_in_03_left_out() -> Iterator[None]:
    """Leave out two kinds of MLflow messages that notebook 03 explains ("About the
    messages"), so that each run trained for a later notebook prints only what is new:
    system metrics' start and stop notices, and the advice to save in ``pt2`` rather than
    pickle. MLflow's warning about the Lightning version stays, in every run."""
    system_metrics = logging.getLogger("mlflow.system_metrics")
    pytorch_flavor = logging.getLogger("mlflow.pytorch")
    pickle_advice = _DropMessages("Saving pytorch model by Pickle")
    level = system_metrics.level
    system_metrics.setLevel(logging.WARNING)
    pytorch_flavor.addFilter(pickle_advice)
    try:
        yield
    finally:
        system_metrics.setLevel(level)
        pytorch_flavor.removeFilter(pickle_advice)


def run_pieces(params: RunParameters):
    """The subset's folder, the data module, the classifier and the trainer of a run, built
    by notebook 03's own functions (:mod:`utils.ch03`), as its cells build them."""
    from utils import ch03

    quiet_libraries()
    folder = data_folder(params)
    datamodule = ch03.review_data_module(folder, params)
    return folder, datamodule, ch03.sentiment_classifier(params, datamodule.labels), ch03.sentiment_trainer(params)


def record_run(params: RunParameters, experiment_id: str | None = None):
    """Train, test and record one run with notebook 03's own functions (:mod:`utils.ch03`);
    return the finished run. It goes into the experiment ``experiment_id``, else
    ``params.experiment_name``, which becomes the active experiment.

    Autologging is switched off again afterwards if it was off before, and the machine is
    sampled every 2 s, as notebook 03 sets it.
    """
    import mlflow
    from mlflow.utils.autologging_utils import autologging_is_disabled

    from utils import ch03

    if experiment_id:
        mlflow.set_experiment(experiment_id=experiment_id)
    else:
        mlflow.set_experiment(params.experiment_name)
    folder, datamodule, model, trainer = run_pieces(params)
    autolog_was_off = autologging_is_disabled("pytorch")
    ch03.autolog_lightning()
    try:
        with temporary_environment(MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL="2"), \
                messages_explained_in_03_left_out(), \
                mlflow.start_run(run_name=params.run_name, log_system_metrics=True) as run:
            ch03.train_test_and_log(params, datamodule, model, trainer, ch03.review_datasets(folder))
    finally:
        if autolog_was_off:
            mlflow.pytorch.autolog(disable=True)
    del datamodule, model, trainer
    release_memory()
    return mlflow.get_run(run.info.run_id)


# -- runs and the models they logged -------------------------------------------------------
def logged_model_of_run(run_id: str, client=None):
    """The model a run logged (an MLflow 3 ``LoggedModel``), or None when it logged none."""
    import mlflow

    client = client or mlflow.MlflowClient()
    run = client.get_run(run_id)
    outputs = run.outputs.model_outputs if run.outputs else []
    ready = [client.get_logged_model(output.model_id) for output in outputs]
    ready = [model for model in ready if str(model.status).upper().endswith("READY")]
    # The course names its model "model"; prefer it if a run logged several.
    ready.sort(key=lambda model: model.name != "model")
    return ready[0] if ready else None


def _finished_runs_named(experiment_name: str, run_name: str, client):
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return []
    by_name = "" if "'" in run_name else f"attributes.run_name = '{run_name}' and "
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"{by_name}attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1000,
    )
    return [run for run in runs if run.info.run_name == run_name]


def find_example_run(experiment_name: str = DEFAULTS["experiment_name"],
                     run_name: str = DEFAULTS["run_name"]) -> str | None:
    """The newest FINISHED run of that name in that experiment that logged a model,
    whatever its parameters."""
    import mlflow

    client = mlflow.MlflowClient()
    for run in _finished_runs_named(experiment_name, run_name, client):
        if logged_model_of_run(run.info.run_id, client) is not None:
            return run.info.run_id
    return None


def find_run(params: RunParameters) -> str | None:
    """The newest FINISHED run named ``params.run_name`` in ``params.experiment_name`` that
    logged a model and whose logged parameters equal :func:`loggable_params` of ``params``;
    one that is not a re-run (tag :data:`RERUN_TAG`) when there is one."""
    import mlflow

    client = mlflow.MlflowClient()
    wanted = loggable_params(params)
    runs = _finished_runs_named(params.experiment_name, params.run_name, client)
    # A run trained again from another's record (notebook 04, tools.batch rerun) is equal to
    # it; the original comes first, so that re-runs do not chain.
    runs.sort(key=lambda run: RERUN_TAG in run.data.tags)
    for run in runs:
        logged = {name: run.data.params.get(name) for name in wanted}
        if logged == wanted and logged_model_of_run(run.info.run_id, client) is not None:
            return run.info.run_id
    return None


def _train_one(params: RunParameters, find, why: str) -> str:
    """Train and record a run for ``params`` unless ``find()`` finds one; one process at a time."""
    import mlflow

    if not os.environ.get(TRACKING_URI_ENV):  # mlflow.set_tracking_uri() sets it too
        use_workspace()
    found = find()
    if found:
        return found
    if mlflow.active_run() is not None:
        raise CourseError(
            f"Run {mlflow.active_run().info.run_id} is still active; end it (mlflow.end_run()) "
            "before training another."
        )
    with workspace_lock(get_workspace(), "example-run"):
        found = find()  # another process may have trained it meanwhile
        if found:
            return found
        print(f"{why}: training {params.run_name!r} ({params.train_size}/{params.val_size}/"
              f"{params.test_size} reviews, {params.max_epochs} epoch(s)).")
        return record_run(params).info.run_id


def ensure_run(experiment_name: str = DEFAULTS["experiment_name"],
               run_name: str = DEFAULTS["run_name"], **parameters: Any) -> str:
    """The id of a finished run with exactly these parameters; trains it if there is none.

    ``parameters`` are notebook 03's (``train_size=400``, ``learning_rate=0.03`` ...); the
    others take their defaults. A run is reused only when it has the same name and its
    logged parameters (:func:`loggable_params`) equal the ones asked for; otherwise a new
    one is trained with :func:`record_run`, notebook 03's code.
    """
    params = validate_parameters(experiment_name=experiment_name, run_name=run_name, **parameters)
    return _train_one(params, lambda: find_run(params),
                      f"No finished run {run_name!r} with these parameters in {experiment_name!r}")


def ensure_example_run(experiment_name: str = DEFAULTS["experiment_name"],
                       run_name: str = DEFAULTS["run_name"], **parameters: Any) -> str:
    """The id of a run to look at, such as notebook 03 records; trains one if there is none.

    Returns the newest FINISHED run named ``run_name`` in ``experiment_name`` that logged a
    model, whatever its parameters: notebooks 04 and 05 study the reader's own run of
    notebook 03. Without one, it trains one with :func:`ensure_run` (``parameters``, such as
    ``train_size=40``, change notebook 03's defaults).
    """
    params = validate_parameters(experiment_name=experiment_name, run_name=run_name, **parameters)
    return _train_one(params, lambda: find_example_run(experiment_name, run_name),
                      f"No finished run {run_name!r} in experiment {experiment_name!r}")
