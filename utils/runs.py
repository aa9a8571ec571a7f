"""Runs for the notebooks after 03: found in the store, or trained and recorded by notebook
03's own ``#@save`` functions (utils.ch03), so that notebooks 04 to 07 need not run 03 first.
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


def _no_pickle_advice(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Saving pytorch model by Pickle")


@contextmanager
def messages_explained_in_03_left_out() -> Iterator[None]:
    """Leave out MLflow's messages that notebook 03 explains (system metrics' start and stop,
    the advice against pickle); its warning about the Lightning version stays."""
    system_metrics = logging.getLogger("mlflow.system_metrics")
    pytorch_flavor = logging.getLogger("mlflow.pytorch")
    level = system_metrics.level
    system_metrics.setLevel(logging.WARNING)
    pytorch_flavor.addFilter(_no_pickle_advice)
    try:
        yield
    finally:
        system_metrics.setLevel(level)
        pytorch_flavor.removeFilter(_no_pickle_advice)


def run_pieces(params: RunParameters):
    """The data folder, data module, classifier and trainer of a run, as notebook 03 builds them."""
    from utils import ch03

    quiet_libraries()
    folder = data_folder(params)
    datamodule = ch03.review_data_module(folder, params)
    model = ch03.sentiment_classifier(params, datamodule.labels)
    return folder, datamodule, model, ch03.sentiment_trainer(params)


def record_run(params: RunParameters, experiment_id: str | None = None):
    """Train, test and record one run as notebook 03 does, into the experiment
    ``experiment_id``, else ``params.experiment_name``; return the finished run."""
    import mlflow
    from mlflow.utils.autologging_utils import autologging_is_disabled

    from utils import ch03

    mlflow.set_experiment(None if experiment_id else params.experiment_name, experiment_id)
    folder, datamodule, model, trainer = run_pieces(params)
    autolog_was_off = autologging_is_disabled("pytorch")
    ch03.autolog_lightning()
    try:
        with temporary_environment(MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL="2"), \
                messages_explained_in_03_left_out(), \
                mlflow.start_run(run_name=params.run_name, log_system_metrics=True) as run:
            datasets = ch03.review_datasets(folder)
            ch03.train_test_and_log(params, datamodule, model, trainer, datasets)
    finally:
        if autolog_was_off:
            mlflow.pytorch.autolog(disable=True)
    del datamodule, model, trainer
    release_memory()
    return mlflow.get_run(run.info.run_id)


def logged_model_of_run(run_id: str, client=None):
    """The model a run logged (an MLflow 3 ``LoggedModel``), or None when it logged none."""
    import mlflow

    client = client or mlflow.MlflowClient()
    run = client.get_run(run_id)
    outputs = run.outputs.model_outputs if run.outputs else []
    ready = [client.get_logged_model(output.model_id) for output in outputs]
    ready = [model for model in ready if str(model.status).upper().endswith("READY")]
    ready.sort(key=lambda model: model.name != "model")  # the course's name for its model
    return ready[0] if ready else None


def find_run(params: RunParameters, any_params: bool = False) -> str | None:
    """The newest FINISHED run named ``params.run_name`` in ``params.experiment_name`` that
    logged a model and, unless ``any_params``, whose logged parameters equal
    :func:`loggable_params` of ``params``."""
    import mlflow

    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(params.experiment_name)
    if experiment is None:
        return None
    by_name = "" if "'" in params.run_name else f"attributes.run_name = '{params.run_name}' and "
    runs = client.search_runs([experiment.experiment_id], max_results=1000,
                              filter_string=f"{by_name}attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"])
    runs = [run for run in runs if run.info.run_name == params.run_name]
    wanted = loggable_params(params)
    if not any_params:  # an original before the runs trained again from it: re-runs do not chain
        runs.sort(key=lambda run: RERUN_TAG in run.data.tags)
    for run in runs:
        equal = any_params or {name: run.data.params.get(name) for name in wanted} == wanted
        if equal and logged_model_of_run(run.info.run_id, client) is not None:
            return run.info.run_id
    return None


def _ensure(any_params: bool, experiment_name: str, run_name: str, parameters: dict) -> str:
    """Find the run, else train and record it; one process at a time."""
    import mlflow

    params = validate_parameters(experiment_name=experiment_name, run_name=run_name, **parameters)
    if not os.environ.get(TRACKING_URI_ENV):  # mlflow.set_tracking_uri() sets it too
        use_workspace()
    found = find_run(params, any_params)
    if found:
        return found
    if mlflow.active_run() is not None:
        raise CourseError(
            f"Run {mlflow.active_run().info.run_id} is still active; end it (mlflow.end_run()) "
            "before training another."
        )
    with workspace_lock(get_workspace(), "example-run"):
        found = find_run(params, any_params)  # another process may have trained it meanwhile
        if found:
            return found
        which = "" if any_params else " with these parameters"
        print(f"No finished run {run_name!r}{which} in experiment {experiment_name!r}: training "
              f"{run_name!r} ({params.train_size}/{params.val_size}/{params.test_size} reviews, "
              f"{params.max_epochs} epoch(s)).")
        return record_run(params).info.run_id


def ensure_run(experiment_name: str = DEFAULTS["experiment_name"],
               run_name: str = DEFAULTS["run_name"], **parameters: Any) -> str:
    """The id of a finished run with exactly these parameters of notebook 03 (the others at
    their defaults); trains it if there is none."""
    return _ensure(False, experiment_name, run_name, parameters)


def ensure_example_run(experiment_name: str = DEFAULTS["experiment_name"],
                       run_name: str = DEFAULTS["run_name"], **parameters: Any) -> str:
    """The id of a finished run of that name to look at, whatever its parameters (notebooks 04
    and 05 study the reader's own run of 03); trains one with ``parameters`` if there is none."""
    return _ensure(True, experiment_name, run_name, parameters)
