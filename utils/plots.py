"""Plots of what MLflow recorded for a run."""

from __future__ import annotations

import re
from collections.abc import Sequence

# Autologged names: ``train_accuracy_step`` (one training step, recorded every few steps
# with the global step as its step), ``val_accuracy`` and ``test_accuracy`` (per epoch,
# with the epoch as its step). ``train_accuracy`` and ``*_epoch`` repeat epoch averages.
_NAME = re.compile(r"^(?P<stage>train|val|test)_(?P<measure>.+?)(?P<suffix>_step|_epoch)?$")


def metric_histories(run_id: str, client=None) -> dict[str, list]:
    """Every metric of a run with its full history (``mlflow.entities.Metric`` lists by step)."""
    import mlflow

    client = client or mlflow.MlflowClient()
    run = client.get_run(run_id)
    return {
        key: sorted(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))
        for key in sorted(run.data.metrics)
    }


def training_curves(histories: dict[str, list], steps_per_epoch: int
                    ) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """``{measure: {stage: [(training step, value), ...]}}`` from autologged histories.

    Training values come from the ``*_step`` metrics at their own step (counted from 1);
    validation and test values, recorded once per epoch, are placed at the last step of
    their epoch.
    """
    curves: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for key, history in histories.items():
        match = _NAME.match(key)
        if not match:
            continue
        stage, suffix = match["stage"], match["suffix"]
        if stage == "train" and suffix == "_step":
            points = [(m.step + 1, m.value) for m in history]
        elif stage in ("val", "test") and not suffix:
            points = [((m.step + 1) * steps_per_epoch, m.value) for m in history]
        else:
            continue
        curves.setdefault(match["measure"], {})[stage] = points
    return curves


def plot_training_curves(run_id: str, steps_per_epoch: int, client=None,
                         measures: Sequence[str] | None = None):
    """One panel per measure (accuracy, cross-entropy ...): the training values recorded
    every few steps, the validation value at the end of each epoch, and the test value as
    a dashed line; returns the figure.

    ``steps_per_epoch`` (training batches per epoch) places the epochs on the step axis.
    """
    import matplotlib.pyplot as plt

    from utils.errors import CourseError

    curves = training_curves(metric_histories(run_id, client), steps_per_epoch)
    measures = [m for m in (measures or sorted(curves)) if m in curves]
    if not measures:
        raise CourseError(f"Run {run_id} has no train_/val_/test_ metrics to plot.")
    figure, axes = plt.subplots(1, len(measures), figsize=(5.5 * len(measures), 3.8), squeeze=False)
    for axis, measure in zip(axes[0], measures):
        stages = curves[measure]
        if "train" in stages:
            x, y = zip(*stages["train"])
            axis.plot(x, y, ".-", alpha=0.7, label="training (one step)")
        if "val" in stages:
            x, y = zip(*stages["val"])
            axis.plot(x, y, "s", markersize=8, label="validation (end of epoch)")
        if "test" in stages:
            axis.axhline(stages["test"][-1][1], color="grey", linestyle="--", label="test")
        for epoch_end in range(steps_per_epoch, max(x for s in stages.values() for x, _ in s) + 1,
                               steps_per_epoch):
            axis.axvline(epoch_end, color="lightgrey", linewidth=0.8)
        axis.set_title(measure.replace("_", " "))
        axis.set_xlabel("training step")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle(f"run {run_id[:8]}…: metric history recorded by MLflow")
    figure.tight_layout()
    return figure
