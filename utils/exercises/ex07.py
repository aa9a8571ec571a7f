"""Exercises of notebook 07: the best child run of a search in one query, and a search of
the learner's own recorded as child runs of a new parent."""

from __future__ import annotations

from utils.exercises import Exercise, Incorrect, find_run, tracking_client
from utils.i18n import N_
from utils.i18n import gettext as _

PARENT_TAG = "mlflow.parentRunId"


def _children(experiment_id: str, parent_id: str) -> list:
    return tracking_client().search_runs([experiment_id], filter_string=f"tags.{PARENT_TAG} = '{parent_id}'",
                                 max_results=1000)


def _search(namespace) -> tuple[str, str]:
    """The notebook's experiment id and the search's parent run id."""
    experiment, parent_id = namespace.get("experiment"), namespace.get("parent_run_id")
    if experiment is None or not isinstance(parent_id, str):
        raise Incorrect(_("The notebook's `experiment` and `parent_run_id` are not defined: run the "
                          "notebook's cells from the top first (the search), then the exercise."))
    return experiment.experiment_id, parent_id


# -- 07.1 the best child, in one query -------------------------------------------------------
def _check_best_child(answers: dict, namespace: dict) -> str:
    import pandas as pd

    experiment_id, parent_id = _search(namespace)
    table = answers["best_child"]
    if not isinstance(table, pd.DataFrame):
        raise Incorrect(_("`best_child` should be the DataFrame that `mlflow.search_runs` returns; "
                          "it is a {kind}.").format(kind=type(table).__name__))
    if "run_id" not in table.columns or table.empty:
        raise Incorrect(_("`best_child` has no run: take the DataFrame of `mlflow.search_runs(...)` "
                          "as it comes, with the filter on the parent."))
    if len(table) != 1:
        raise Incorrect(_("`best_child` has {rows} rows: pass `max_results=1`, so that the "
                          "store returns the best run only.").format(rows=len(table)))
    children = _children(experiment_id, parent_id)
    values = {run.info.run_id: run.data.metrics["value"] for run in children
              if "value" in run.data.metrics and run.info.status == "FINISHED"}
    if not values:
        raise Incorrect(_("The parent {parent_id} has no finished child run: run the search first.")
                        .format(parent_id=parent_id))
    run_id = table["run_id"].iloc[0]
    pruned = {run.info.run_id for run in children if run.info.status == "KILLED"}
    if run_id in pruned:
        raise Incorrect(_("`best_child` is a pruned trial (status KILLED): its value is the last accuracy "
                          "it reported before the pruner stopped it, not the result of a whole training. "
                          "Keep to the finished trials: add `attributes.status = 'FINISHED'` to the filter."))
    if run_id not in values:
        parent = tracking_client().get_run(run_id).data.tags.get(PARENT_TAG)
        message = (_("`best_child` is a run without a parent, not a child of `parent_run_id`: the "
                     "experiment holds other searches too. Filter on the parent: "
                     "`filter_string=f\"tags.mlflow.parentRunId = '{{parent_run_id}}'\"`.")
                   if parent is None else
                   _("`best_child` is a child of another parent ({parent}), not a child of "
                     "`parent_run_id`: the experiment holds other searches too. Filter on the parent: "
                     "`filter_string=f\"tags.mlflow.parentRunId = '{{parent_run_id}}'\"`."))
        raise Incorrect(message.format(parent=parent))
    best, worst = max(values.values()), min(values.values())
    if values[run_id] < best:
        message = (_("`best_child` has the value {value:.3f} (the worst one), the best child has "
                     "{best:.3f}. The study maximizes the validation accuracy: order by "
                     "`metrics.value DESC`, the highest first; ASC puts the lowest first.")
                   if values[run_id] == worst else
                   _("`best_child` has the value {value:.3f}, the best child has {best:.3f}. The study "
                     "maximizes the validation accuracy: order by `metrics.value DESC`, the highest "
                     "first; ASC puts the lowest first."))
        raise Incorrect(message.format(value=values[run_id], best=best))
    return _("trial {trial} with the value {best:.3f}, the best of {count} children, from one query.").format(
        trial=table["tags.numbers"].iloc[0] if "tags.numbers" in table else "?", best=best,
        count=len(values))


_BEST_CHILD = '''\
best_child = mlflow.search_runs(
    experiment_ids=[experiment.experiment_id],
    filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}' and attributes.status = 'FINISHED'",
    order_by=["metrics.value DESC"], max_results=1)
best_child[["run_id", "tags.numbers", "metrics.value", "params.learning_rate"]]'''

q1 = Exercise(
    key="07.1",
    title=N_("The best child, in one query"),
    answers=("best_child",),
    check=_check_best_child,
    hint=N_(
        "`mlflow.search_runs(experiment_ids=[experiment.experiment_id], filter_string=..., "
        "order_by=[...], max_results=1)`. The filter is the one of *Parent and child runs*, "
        "`and attributes.status = 'FINISHED'`; Optuna's value is the metric `value`, and "
        "`\"metrics.value DESC\"` orders from the highest."
    ),
    solution=_BEST_CHILD,
    # The typical mistake: the best by the wrong direction.
    mistake=_BEST_CHILD.replace("metrics.value DESC", "metrics.value ASC"),
)


# -- 07.2 a search of your own ---------------------------------------------------------------
def _check_own_search(answers: dict, namespace: dict) -> str:
    parent = find_run(answers["own_parent_id"], "`own_parent_id`")
    parent_id = parent.info.run_id
    experiment_id = parent.info.experiment_id
    if parent.data.tags.get(PARENT_TAG):
        raise Incorrect(_("Run {run_id} is itself a child run (of {parent_id}): `own_parent_id` "
                          "should be the new parent, started without `nested=True`.")
                        .format(run_id=parent_id, parent_id=parent.data.tags[PARENT_TAG]))
    children = _children(experiment_id, parent_id)
    if not children:
        flat = tracking_client().search_runs(
            [experiment_id], filter_string=f"attributes.start_time >= {parent.info.start_time}",
            max_results=50)
        flat = [run for run in flat if run.info.run_id != parent_id
                and PARENT_TAG not in run.data.tags and "max_length" in run.data.params]
        if flat:
            raise Incorrect(_(
                "The parent {name!r} has no child run, and {count} run(s) "
                "with a max_length started after it have no parent: they are flat runs. "
                "`nested=True` makes a child of the run that is active at that moment; start "
                "the children before the parent ends (before `mlflow.end_run()`, or inside its "
                "`with` block).").format(name=parent.info.run_name, count=len(flat)))
        raise Incorrect(_("The parent {name!r} has no child run: start one per "
                          "max_length with `mlflow.start_run(run_name=..., nested=True)` while the "
                          "parent is active.").format(name=parent.info.run_name))
    if parent.info.status == "RUNNING":
        raise Incorrect(_("The parent {name!r} is still RUNNING: end it with "
                          "`mlflow.end_run()` after the children.").format(name=parent.info.run_name))
    unfinished = [run.info.run_name for run in children if run.info.status != "FINISHED"]
    if unfinished:
        raise Incorrect(_("Child run(s) {names} did not finish: each child's "
                          "`with mlflow.start_run(..., nested=True)` block should hold a whole training.")
                        .format(names=", ".join(unfinished)))
    missing = [run.info.run_name for run in children if "val_accuracy" not in run.data.metrics]
    if missing:
        raise Incorrect(_("Child run(s) {names} have no val_accuracy: each child should be "
                          "a training, `search.train(params, nested=True)` inside the parent.")
                        .format(names=", ".join(missing)))
    lengths = sorted((run.data.params.get("max_length") or "none" for run in children), key=str)
    if sorted(lengths) != ["128", "32"]:
        raise Incorrect(_("The parent's children have max_length {lengths}; the search asks "
                          "for one child with 32 and one with 128 (`dataclasses.replace(base_params, "
                          "max_length=length, ...)` for each).").format(lengths=", ".join(lengths)))
    scores = sorted(((run.data.metrics["val_accuracy"], run.data.params["max_length"]) for run in children),
                    reverse=True)
    return _("{count} children under {name!r}; max_length {max_length} had the best validation "
             "accuracy, {accuracy:.3f}.").format(count=len(children), name=parent.info.run_name,
                                                 max_length=scores[0][1], accuracy=scores[0][0])


_OWN_SEARCH = '''\
import dataclasses

with mlflow.start_run(run_name="max-length-search") as own_parent:
    for length in (32, 128):
        search.train(dataclasses.replace(base_params, max_length=length, run_name=f"max_length-{length}"),
                     nested=True)
own_parent_id = own_parent.info.run_id'''

q2 = Exercise(
    key="07.2",
    title=N_("A search of your own"),
    answers=("own_parent_id",),
    check=_check_own_search,
    hint=N_(
        "`with mlflow.start_run(run_name=\"max-length-search\") as own_parent:` holds the parent "
        "open; inside it, for each length in (32, 128), `search.train(dataclasses.replace(base_params, "
        "max_length=length, run_name=f\"max_length-{length}\"), nested=True)` trains a child. Then "
        "`own_parent_id = own_parent.info.run_id`."
    ),
    solution=_OWN_SEARCH,
    # The typical mistake: the children start after the parent ended, as flat runs.
    mistake='''\
import dataclasses

with mlflow.start_run(run_name="max-length-search") as own_parent:
    pass  # the parent ends here, before its children start
for length in (32, 128):
    search.train(dataclasses.replace(base_params, max_length=length, run_name=f"max_length-{length}"),
                 nested=True)
own_parent_id = own_parent.info.run_id''',
)
