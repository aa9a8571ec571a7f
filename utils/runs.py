"""Runs for the notebooks after 03: found in the store, or trained and recorded by notebook
03's own ``#@save`` functions (utils.ch03), so that notebooks 04 to 07 need not run 03 first.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from utils.errors import CourseError
from utils.i18n import gettext as _
from utils.training import (RERUN_TAG, RunParameters, data_folder, loggable_params, quiet_libraries,
                            release_memory, validate_parameters)
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


def run_pieces(params: RunParameters, *callbacks):
    """The data folder, data module, classifier and trainer (with ``callbacks`` added) of a run
    of ``params``, built by notebook 03's ``#@save`` functions as its cells build them."""
    from utils import ch03

    quiet_libraries()
    data_dir = data_folder(params)
    datamodule = ch03.review_data_module(data_dir, params)
    model = ch03.sentiment_classifier(params, datamodule.labels)
    trainer = ch03.sentiment_trainer(params)
    trainer.callbacks.extend(callbacks)
    return data_dir, datamodule, model, trainer


def train_run(params: RunParameters, *callbacks, checkpoint: bool = True, **start_run_options) -> str:
    """Train, test and record one run of ``params`` as notebook 03 does: :func:`run_pieces`,
    autologging (``checkpoint``), then ``ch03.record_run`` (``start_run_options`` go to
    ``mlflow.start_run``). Autologging is left as it was. Returns the run's id."""
    import mlflow
    from mlflow.utils.autologging_utils import autologging_is_disabled

    from utils import ch03

    pieces = run_pieces(params, *callbacks)
    autolog_was_off = autologging_is_disabled("pytorch")
    ch03.autolog_lightning(checkpoint)
    try:
        with messages_explained_in_03_left_out():
            run = ch03.record_run(params, *pieces, **start_run_options)[0]
    finally:
        if autolog_was_off:
            mlflow.pytorch.autolog(disable=True)
        del pieces
        release_memory()
    return run.info.run_id


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


def _ensure(any_params: bool, params: RunParameters) -> str:
    """Find the run, else train and record it; one process at a time."""
    import mlflow

    if not os.environ.get(TRACKING_URI_ENV):  # mlflow.set_tracking_uri() sets it too
        use_workspace()
    found = find_run(params, any_params)
    if found:
        return found
    if mlflow.active_run() is not None:
        raise CourseError(_(
            "Run {run_id} is still active; end it (mlflow.end_run()) before training another."
        ).format(run_id=mlflow.active_run().info.run_id))
    with workspace_lock(get_workspace(), "example-run"):
        found = find_run(params, any_params)  # another process may have trained it meanwhile
        if found:
            return found
        training = (_("No finished run {run_name!r} in experiment {experiment_name!r}: training "
                      "{run_name!r} ({train_size}/{val_size}/{test_size} reviews, {max_epochs} "
                      "epoch(s)).") if any_params else
                    _("No finished run {run_name!r} with these parameters in experiment "
                      "{experiment_name!r}: training {run_name!r} ({train_size}/{val_size}/"
                      "{test_size} reviews, {max_epochs} epoch(s))."))
        print(training.format(run_name=params.run_name, experiment_name=params.experiment_name,
                              train_size=params.train_size, val_size=params.val_size,
                              test_size=params.test_size, max_epochs=params.max_epochs))
        mlflow.set_experiment(params.experiment_name)
        return train_run(params)


def ensure_run(params: RunParameters | None = None, **parameters: Any) -> str:
    """The id of a finished run with exactly these parameters of notebook 03: ``params``
    (checked ones, such as the ``params`` of notebook 03), or the keyword ``parameters``, the
    others at their defaults. Trains it if there is none."""
    return _ensure(False, params if params is not None else validate_parameters(**parameters))


def ensure_example_run(**parameters: Any) -> str:
    """The id of a finished run named ``run_name`` to look at, whatever its parameters
    (notebooks 04 and 05 study the reader's own run of 03); trains one with ``parameters``
    (the others at their defaults) if there is none."""
    return _ensure(True, validate_parameters(**parameters))
