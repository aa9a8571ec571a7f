"""Exercises of notebook 07: the best child run of a search in one query, and a search of
the learner's own recorded as child runs of a new parent."""

from __future__ import annotations

from utils.exercises import Exercise, Incorrect, find_run, tracking_client

PARENT_TAG = "mlflow.parentRunId"


def _children(experiment_id: str, parent_id: str) -> list:
    return tracking_client().search_runs([experiment_id], filter_string=f"tags.{PARENT_TAG} = '{parent_id}'",
                                 max_results=1000)


def _search(namespace) -> tuple[str, str]:
    """The notebook's experiment id and the search's parent run id."""
    experiment, parent_id = namespace.get("experiment"), namespace.get("parent_run_id")
    if experiment is None or not isinstance(parent_id, str):
        raise Incorrect("The notebook's `experiment` and `parent_run_id` are not defined: run the "
                        "notebook's cells from the top first (the search), then the exercise.")
    return experiment.experiment_id, parent_id


# -- 07.1 the best child, in one query -------------------------------------------------------
def _check_best_child(answers: dict, namespace: dict) -> str:
    import pandas as pd

    experiment_id, parent_id = _search(namespace)
    table = answers["best_child"]
    if not isinstance(table, pd.DataFrame):
        raise Incorrect(f"`best_child` should be the DataFrame that `mlflow.search_runs` returns; "
                        f"it is a {type(table).__name__}.")
    if "run_id" not in table.columns or table.empty:
        raise Incorrect("`best_child` has no run: take the DataFrame of `mlflow.search_runs(...)` "
                        "as it comes, with the filter on the parent.")
    if len(table) != 1:
        raise Incorrect(f"`best_child` has {len(table)} rows: pass `max_results=1`, so that the "
                        "store returns the best run only.")
    values = {run.info.run_id: run.data.metrics["value"] for run in _children(experiment_id, parent_id)
              if "value" in run.data.metrics}
    if not values:
        raise Incorrect(f"The parent {parent_id} has no finished child run: run the search first.")
    run_id = table["run_id"].iloc[0]
    if run_id not in values:
        parent = tracking_client().get_run(run_id).data.tags.get(PARENT_TAG)
        whose = ("a run without a parent" if parent is None else
                 f"a child of another parent ({parent})")
        raise Incorrect(f"`best_child` is {whose}, not a child of `parent_run_id`: the experiment "
                        "holds other searches too. Filter on the parent: "
                        "`filter_string=f\"tags.mlflow.parentRunId = '{parent_run_id}'\"`.")
    best, worst = max(values.values()), min(values.values())
    if values[run_id] < best:
        direction = " (the worst one)" if values[run_id] == worst else ""
        raise Incorrect(f"`best_child` has the value {values[run_id]:.3f}{direction}, the best child "
                        f"has {best:.3f}. The study maximizes the validation accuracy: order by "
                        "`metrics.value DESC`, the highest first; ASC puts the lowest first.")
    return (f"trial {table['tags.numbers'].iloc[0] if 'tags.numbers' in table else '?'} with the "
            f"value {best:.3f}, the best of {len(values)} children, from one query.")


_BEST_CHILD = '''\
best_child = mlflow.search_runs(
    experiment_ids=[experiment.experiment_id],
    filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'",
    order_by=["metrics.value DESC"], max_results=1)
best_child[["run_id", "tags.numbers", "metrics.value", "params.learning_rate", "params.batch_size"]]'''

q1 = Exercise(
    key="07.1",
    title="The best child, in one query",
    answers=("best_child",),
    check=_check_best_child,
    hint=(
        "`mlflow.search_runs(experiment_ids=[experiment.experiment_id], filter_string=..., "
        "order_by=[...], max_results=1)`. The filter is the one of *Parent and child runs*; "
        "Optuna's value is the metric `value`, and `\"metrics.value DESC\"` orders from the "
        "highest."
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
        raise Incorrect(f"Run {parent_id} is itself a child run (of {parent.data.tags[PARENT_TAG]}): "
                        "`own_parent_id` should be the new parent, started without `nested=True`.")
    children = _children(experiment_id, parent_id)
    if not children:
        flat = tracking_client().search_runs(
            [experiment_id], filter_string=f"attributes.start_time >= {parent.info.start_time}",
            max_results=50)
        flat = [run for run in flat if run.info.run_id != parent_id
                and PARENT_TAG not in run.data.tags and "max_length" in run.data.params]
        if flat:
            raise Incorrect(
                f"The parent {parent.info.run_name!r} has no child run, and {len(flat)} run(s) "
                "with a max_length started after it have no parent: they are flat runs. "
                "`nested=True` makes a child of the run that is active at that moment; start "
                "the children before the parent ends (before `mlflow.end_run()`, or inside its "
                "`with` block).")
        raise Incorrect(f"The parent {parent.info.run_name!r} has no child run: start one per "
                        "max_length with `mlflow.start_run(run_name=..., nested=True)` while the "
                        "parent is active.")
    if parent.info.status == "RUNNING":
        raise Incorrect(f"The parent {parent.info.run_name!r} is still RUNNING: end it with "
                        "`mlflow.end_run()` after the children.")
    unfinished = [run.info.run_name for run in children if run.info.status != "FINISHED"]
    if unfinished:
        raise Incorrect(f"Child run(s) {', '.join(unfinished)} did not finish: each child's "
                        "`with mlflow.start_run(..., nested=True)` block should hold a whole training.")
    lengths = {run.data.params.get("max_length") for run in children}
    if len(children) < 2 or len(lengths - {None}) < 2:
        raise Incorrect(f"The parent has {len(children)} child run(s) with max_length "
                        f"{', '.join(sorted(str(v) for v in lengths))}: a search needs at least two "
                        "values. Train one child for 32 and one for 128.")
    missing = [run.info.run_name for run in children if "val_accuracy" not in run.data.metrics]
    if missing:
        raise Incorrect(f"Child run(s) {', '.join(missing)} have no val_accuracy: train inside "
                        "each child with `search.train_and_log(params)`.")
    scores = sorted(((run.data.metrics["val_accuracy"], run.data.params["max_length"]) for run in children),
                    reverse=True)
    return (f"{len(children)} children under {parent.info.run_name!r}; max_length "
            f"{scores[0][1]} had the best validation accuracy, {scores[0][0]:.3f}.")


_OWN_SEARCH = '''\
own_parent = mlflow.start_run(run_name="max-length-search")
for length in (32, 128):
    with mlflow.start_run(run_name=f"max_length-{length}", nested=True):
        search.train_and_log(training.validate_parameters(**{**fixed, "max_length": length}))
mlflow.end_run()
own_parent_id = own_parent.info.run_id'''

q2 = Exercise(
    key="07.2",
    title="A search of your own",
    answers=("own_parent_id",),
    check=_check_own_search,
    hint=(
        "`own_parent = mlflow.start_run(run_name=\"max-length-search\")` starts the parent; in a "
        "loop over (32, 128), `with mlflow.start_run(run_name=..., nested=True):` around "
        "`search.train_and_log(training.validate_parameters(**{**fixed, \"max_length\": length}))`; "
        "then `mlflow.end_run()` ends the parent."
    ),
    solution=_OWN_SEARCH,
    # The typical mistake: the children start after the parent ended, as flat runs.
    mistake=_OWN_SEARCH.replace(
        'own_parent = mlflow.start_run(run_name="max-length-search")\n',
        'own_parent = mlflow.start_run(run_name="max-length-search")\n'
        'mlflow.end_run()  # the parent ends before its children start\n'),
)
