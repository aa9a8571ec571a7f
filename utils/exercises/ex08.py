"""Exercises of notebook 08 (your own project): a metric of your own in train.py, and a
release bar that the current champion would not clear.

Each check reads the project's store (the copy's `mlflow.db`, or `MLFLOW_TRACKING_URI`) and
the copy's own `train.py`, never a copy of the answer.
"""

from __future__ import annotations

from pathlib import Path

from utils.exercises import Exercise, Incorrect, find_run, tracking_client
from utils.i18n import N_
from utils.i18n import gettext as _

OWN_METRICS = ("train_loss", "val_loss", "val_accuracy")  # what train.py logs as it comes
MODEL_NAME, CHAMPION = "imdb-sentiment-project", "champion"


def _project(namespace) -> Path:
    project = namespace.get("project")
    if project is None or not (Path(project) / "train.py").is_file():
        raise Incorrect(_("The notebook's `project` is not defined: run the notebook's cells from "
                          "the top first (the copy of the project), then the exercise."))
    return Path(project)


# -- 08.1 a metric of your own ---------------------------------------------------------------
def _check_new_metric(answers: dict, namespace: dict) -> str:
    metric = answers["new_metric"]
    if not isinstance(metric, str) or not metric.strip():
        raise Incorrect(_("`new_metric` should be the name of the metric you added, a string; it is "
                          "{value!r}.").format(value=metric))
    if metric in OWN_METRICS:
        raise Incorrect(_("train.py logs `{metric}` already: add a metric of your own, such as "
                          "`val_error_rate`.").format(metric=metric))
    script = _project(namespace) / "train.py"
    if metric not in script.read_text(encoding="utf-8"):
        raise Incorrect(_("The project's train.py does not mention `{metric}`: add a "
                          "`mlflow.log_metric(\"{metric}\", ..., step=epoch)` line to its epoch loop, "
                          "save it, run `python train.py` again and take the run id it "
                          "prints.").format(metric=metric))
    run = find_run(answers["metric_run_id"], "`metric_run_id`")
    if metric not in run.data.metrics:
        if run.info.start_time / 1000 < script.stat().st_mtime:
            raise Incorrect(_("The run {run_id} started before you changed train.py, so it could not "
                              "log `{metric}`: run `python train.py` again and take the run id it "
                              "prints.").format(run_id=run.info.run_id, metric=metric))
        raise Incorrect(_("The run {run_id} has no metric `{metric}`: check that your line runs inside "
                          "the `with mlflow.start_run(...)` block, in the epoch loop.").format(
                              run_id=run.info.run_id, metric=metric))
    history = tracking_client().get_metric_history(run.info.run_id, metric)
    epochs = int(run.data.params.get("epochs", "1"))
    if epochs > 1 and len({m.step for m in history}) < 2:
        raise Incorrect(_("`{metric}` has {count} value(s), all at step {step}: log it once per "
                          "epoch with `step=epoch`, so that MLflow keeps its curve.").format(
                              metric=metric, count=len(history), step=history[0].step))
    values = ", ".join(f"{m.value:.3f}" for m in sorted(history, key=lambda m: m.step))
    return _("run {run_id} logged `{metric}` once per epoch: {values}.").format(
        run_id=run.info.run_id, metric=metric, values=values)


_NEW_METRIC = '''\
from pathlib import Path

new_metric = "val_error_rate"
script = Path("train.py")
script.write_text(script.read_text().replace(
    "            print(f\\"epoch {epoch}: val_loss",
    "            mlflow.log_metric(\\"val_error_rate\\", 1 - val_accuracy, step=epoch)\\n"
    "            print(f\\"epoch {epoch}: val_loss"))
output = !python train.py --train-size {train_size} --epochs {epochs} --max-length {max_length}
print(output.n)
metric_run_id = run_id_of(output)'''

q1 = Exercise(
    key="08.1",
    title=N_("A metric of your own"),
    answers=("new_metric", "metric_run_id"),
    check=_check_new_metric,
    hint=N_("Open `train.py` of the copy (`project`) and find the epoch loop: after "
            "`val_loss, val_accuracy = validate(...)`, add for example "
            "`mlflow.log_metric(\"val_error_rate\", 1 - val_accuracy, step=epoch)`. Save, run "
            "`output = !python train.py ...` again as above, and take its run id with `run_id_of(output)`."),
    solution=_NEW_METRIC,
    # The typical mistake: train.py changed, but the run is the one from before the change.
    mistake=_NEW_METRIC.replace(
        "output = !python train.py --train-size {train_size} --epochs {epochs} --max-length {max_length}\n"
        "print(output.n)\n"
        "metric_run_id = run_id_of(output)",
        "metric_run_id = run_id  # the run trained before train.py changed"),
)


# -- 08.2 a bar the champion would not clear -------------------------------------------------
def _check_strict_bar(answers: dict, namespace: dict) -> str:
    bar = answers["strict_bar"]
    if isinstance(bar, bool) or not isinstance(bar, (int, float)) or not 0 < bar <= 1:
        raise Incorrect(_("`strict_bar` should be an accuracy between 0 and 1, the `--min-accuracy` "
                          "you gave the gate; it is {value!r}.").format(value=bar))
    client = tracking_client()
    experiment = client.get_experiment_by_name("imdb-sentiment")
    runs = [] if experiment is None else client.search_runs(
        [experiment.experiment_id], "attributes.run_name = 'evaluation'",
        order_by=["attributes.start_time DESC"], max_results=100)
    gated = [run for run in runs if run.data.params.get("min_accuracy")
             and float(run.data.params["min_accuracy"]) == float(bar)]
    if not gated:
        raise Incorrect(_("No gate ran with `--min-accuracy {bar}`: run "
                          "`!python evaluate.py models:/imdb-sentiment-project@champion "
                          "--min-accuracy {{strict_bar}}`.").format(bar=bar))
    run = gated[0]
    candidate = run.data.params.get("candidate", "")
    if f"@{CHAMPION}" not in candidate:
        raise Incorrect(_("The gate with that bar judged {candidate}, not the champion: give it "
                          "`models:/imdb-sentiment-project@champion`, so that it judges the model "
                          "in service.").format(candidate=candidate))
    accuracy = run.data.metrics.get("accuracy_score", float("nan"))
    if run.data.tags.get("verdict") != "refused":
        raise Incorrect(_("The champion passed: its accuracy {accuracy:.4f} clears a bar of {bar}. "
                          "Raise the bar above {accuracy:.4f}.").format(accuracy=accuracy, bar=bar))
    version = run.data.params.get("champion_version")
    return _("the gate refused the champion itself (accuracy {accuracy:.4f} < {bar}): a bar above "
             "what the model in service scores holds every candidate back, and version {version} "
             "stays the champion.").format(accuracy=accuracy, bar=bar, version=version)


_STRICT_BAR = '''\
strict_bar = 0.95
!python evaluate.py models:/imdb-sentiment-project@champion --min-accuracy {strict_bar} 2>&1 | grep -E "^(PASSED|REFUSED)"'''

q2 = Exercise(
    key="08.2",
    title=N_("A bar the champion would not clear"),
    answers=("strict_bar",),
    check=_check_strict_bar,
    hint=N_("The evaluation run of the gate above logged the champion's accuracy "
            "(`accuracy_score`). Choose a higher `--min-accuracy`, and give the gate the champion "
            "itself: `!python evaluate.py models:/imdb-sentiment-project@champion --min-accuracy "
            "{strict_bar}`."),
    solution=_STRICT_BAR,
    # The typical mistake: a bar below what the champion scores.
    mistake=_STRICT_BAR.replace("strict_bar = 0.95", "strict_bar = 0.5"),
)
