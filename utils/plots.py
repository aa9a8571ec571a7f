"""Plots of what MLflow recorded for a run."""

from __future__ import annotations

import re
from collections.abc import Sequence

# Lightning logs a metric logged "on step and on epoch" under three names: ``x``,
# ``x_step`` and ``x_epoch``. The plain name is the epoch value again.
_STAGES = ("train", "val", "test")
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


def epoch_curves(histories: dict[str, list]) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """``{measure: {stage: [(epoch, value), ...]}}`` from autologged histories.

    Autologging records epoch-level values with the epoch number as the step. Step-level
    names (``*_step``) and the duplicate ``*_epoch`` names are left out.
    """
    curves: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for key, history in histories.items():
        match = _NAME.match(key)
        if not match or match["suffix"]:
            continue
        points = [(m.step + 1, m.value) for m in history]  # epoch 0 is the first epoch
        curves.setdefault(match["measure"], {})[match["stage"]] = points
    return curves


def plot_training_curves(run_id: str, client=None, measures: Sequence[str] | None = None):
    """One panel per measure (accuracy, cross-entropy ...) with its training and validation
    values per epoch, and the test value as a dashed line; returns the figure.

    With one epoch every line is a single point: train with ``max_epochs`` above 1 to see
    the values change over the epochs.
    """
    import matplotlib.pyplot as plt

    curves = epoch_curves(metric_histories(run_id, client))
    measures = [m for m in (measures or sorted(curves)) if m in curves]
    if not measures:
        from utils.errors import CourseError

        raise CourseError(f"Run {run_id} has no train_/val_/test_ metrics to plot.")
    figure, axes = plt.subplots(1, len(measures), figsize=(5.5 * len(measures), 3.8), squeeze=False)
    for axis, measure in zip(axes[0], measures):
        stages = curves[measure]
        epochs = sorted({epoch for stage in ("train", "val") for epoch, _ in stages.get(stage, [])})
        for stage, style in (("train", "o-"), ("val", "s-")):
            if stage in stages:
                x, y = zip(*stages[stage])
                axis.plot(x, y, style, label={"train": "training", "val": "validation"}[stage])
        if "test" in stages:
            axis.axhline(stages["test"][-1][1], color="grey", linestyle="--", label="test")
        axis.set_title(measure.replace("_", " "))
        axis.set_xlabel("epoch")
        if epochs:
            axis.set_xticks(epochs)
            axis.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(f"run {run_id[:8]}…: metric history recorded by MLflow")
    figure.tight_layout()
    return figure
