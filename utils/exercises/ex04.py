"""Exercises of notebook 04: the best run, a metric's history over REST, the parameters that
differ between two runs."""

from __future__ import annotations

import numbers

from utils.exercises import Exercise, Incorrect, find_run, tracking_client
from utils.i18n import N_
from utils.i18n import gettext as _

HISTORY_METRIC = "system/cpu_utilization_percentage"


# -- 04.2 the best run ------------------------------------------------------------------
def _check_best(answers: dict, namespace: dict) -> str:
    name = namespace.get("experiment_name")
    experiment = tracking_client().get_experiment_by_name(name) if isinstance(name, str) else None
    if experiment is None:
        raise Incorrect(_("The notebook's `experiment_name` names no experiment here: run the "
                          "notebook's cells from the top first."))
    chosen = find_run(answers["best_run_id"], "`best_run_id`")
    finished = [r for r in tracking_client().search_runs([experiment.experiment_id],
                                                         filter_string="attributes.status = 'FINISHED'",
                                                 max_results=5000)
                if "val_accuracy" in r.data.metrics]
    if not finished:
        raise Incorrect(_("No finished run of {name!r} has a val_accuracy yet: run the comparison cells "
                          "first.").format(name=name))
    scores = {r.info.run_id: r.data.metrics["val_accuracy"] for r in finished}
    best, worst = max(scores.values()), min(scores.values())
    if chosen.info.experiment_id != experiment.experiment_id:
        raise Incorrect(_("Run {run_id} is in another experiment: search "
                          "`experiment_names=[experiment_name]`.").format(run_id=chosen.info.run_id))
    if chosen.info.status != "FINISHED":
        raise Incorrect(_("Run {run_id} is {status}, not FINISHED: filter with "
                          "`filter_string=\"attributes.status = 'FINISHED'\"`.").format(
            run_id=chosen.info.run_id, status=chosen.info.status))
    value = chosen.data.metrics.get("val_accuracy")
    if value is None:
        raise Incorrect(_("Run {run_name!r} has no val_accuracy at all.").format(run_name=chosen.info.run_name))
    if value == best:
        return _("run {run_name!r} ({run_id}) has the highest val_accuracy "
                 "of the experiment's {count} finished runs, {best:.3f}.").format(
            run_name=chosen.info.run_name, run_id=chosen.info.run_id, count=len(finished), best=best)
    if value == worst:
        raise Incorrect(_("Run {run_name!r} has the LOWEST val_accuracy ({value:.3f}; the "
                          "best is {best:.3f}): `order_by` sorts in ascending order unless you add "
                          "DESC, as in `order_by=[\"metrics.val_accuracy DESC\"]`.").format(
            run_name=chosen.info.run_name, value=value, best=best))
    raise Incorrect(_("Run {run_name!r} has val_accuracy {value:.3f}, but the best finished "
                      "run has {best:.3f}. Sort the whole experiment with `order_by=[\"metrics.val_accuracy "
                      "DESC\"]` and take the first row.").format(run_name=chosen.info.run_name, value=value,
                                                                  best=best))


q2 = Exercise(
    key="04.2",
    title=N_("The best run"),
    answers=("best_run_id",),
    check=_check_best,
    hint=N_(
        "`mlflow.search_runs(experiment_names=[experiment_name], filter_string=..., "
        "order_by=[...])` returns a DataFrame, one row per run, in the order you ask for; "
        "`\"metrics.val_accuracy DESC\"` puts the highest first, and `.run_id.iloc[0]` is the "
        "first row's id."
    ),
    solution='''\
best = mlflow.search_runs(experiment_names=[experiment_name],
                          filter_string="attributes.status = 'FINISHED'",
                          order_by=["metrics.val_accuracy DESC"], max_results=1)
best_run_id = best.run_id.iloc[0]''',
    mistake='''\
best = mlflow.search_runs(experiment_names=[experiment_name],
                          filter_string="attributes.status = 'FINISHED'",
                          order_by=["metrics.val_accuracy"], max_results=1)  # ascending: the lowest first
best_run_id = best.run_id.iloc[0]''',
)


# -- 04.1 a metric's history over REST ------------------------------------------------------
def _check_history(answers: dict, namespace: dict) -> str:
    run_id = namespace.get("run_id")
    if not isinstance(run_id, str):
        raise Incorrect(_("The notebook's `run_id` is not defined: run its cells from the top first."))
    history = sorted(tracking_client().get_metric_history(run_id, HISTORY_METRIC),
                     key=lambda m: (m.step, m.timestamp))
    if not history:  # e.g. recorded where psutil was missing: no answer could be right
        raise Incorrect(_("Run {run_id} has no values of {metric} at all, so it has no "
                          "history to fetch: its system metrics were not recorded. Run the notebook's "
                          "cells from the top in the course's environment, then the exercise.").format(
            run_id=run_id, metric=HISTORY_METRIC))
    wanted = [m.value for m in history]
    given = answers["cpu_history"]
    if isinstance(given, dict):
        raise Incorrect(_("`cpu_history` is the whole JSON answer: take its `metrics` list, and "
                          "from each entry its `value`."))
    if isinstance(given, (str, bytes)) or not hasattr(given, "__iter__"):
        raise Incorrect(_("`cpu_history` should be a list of numbers, the `value` of each entry of "
                          "the answer's `metrics` list; it is {given!r}.").format(given=given))
    given = list(given)
    if any(isinstance(v, dict) for v in given):
        raise Incorrect(_("`cpu_history` holds the answer's metric entries (dictionaries with `key`, "
                          "`value`, `step` and `timestamp`), not numbers: keep only each entry's "
                          "`value`, as in `[m[\"value\"] for m in entries]`."))
    if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in given):
        raise Incorrect(_("`cpu_history` should be a list of numbers, the `value` of each entry of "
                          "the answer's `metrics` list."))
    values = [float(v) for v in given]
    if values == wanted:
        return _("{count} values of {metric}, from step {first} to "
                 "{last}: the REST API and `client.get_metric_history` agree.").format(
            count=len(values), metric=HISTORY_METRIC, first=history[0].step, last=history[-1].step)
    if len(values) == 1 and len(wanted) > 1 and values[0] == wanted[-1]:
        raise Incorrect(_("That is the metric's latest value only: `runs/get` gives one value per "
                          "metric, and the history has {count}. Ask "
                          "`GET /api/2.0/mlflow/metrics/get-history` with `run_id` and `metric_key`.").format(
            count=len(wanted)))
    if sorted(values) == sorted(wanted):
        raise Incorrect(_("These are the right values in the wrong order: sort the entries by "
                          "their `step` first."))
    raise Incorrect(_("These {count} values are not the history of {metric} of run "
                      "{run_id} ({wanted} values): check `metric_key` and `run_id`.").format(
        count=len(values), metric=HISTORY_METRIC, run_id=run_id, wanted=len(wanted)))


q1 = Exercise(
    key="04.1",
    title=N_("A metric's history over REST"),
    answers=("cpu_history",),
    check=_check_history,
    hint=N_(
        "`requests.get(f\"{api}/metrics/get-history\", params={\"run_id\": run_id, "
        "\"metric_key\": \"system/cpu_utilization_percentage\"}, auth=server.auth)`; the answer's "
        "JSON has a list `metrics` whose entries have `step` and `value`."
    ),
    solution=f'''\
answer = requests.get(f"{{api}}/metrics/get-history", auth=server.auth, timeout=30,
                      params={{"run_id": run_id, "metric_key": "{HISTORY_METRIC}"}})
answer.raise_for_status()
cpu_history = [m["value"] for m in sorted(answer.json()["metrics"], key=lambda m: m["step"])]''',
    mistake=f'''\
answer = requests.get(f"{{api}}/runs/get", params={{"run_id": run_id}}, auth=server.auth, timeout=30)
cpu_history = [m["value"] for m in answer.json()["run"]["data"]["metrics"]
                if m["key"] == "{HISTORY_METRIC}"]  # the latest value only''',
)


# -- 04.3 the parameters that differ ---------------------------------------------------------
def _check_differing(answers: dict, namespace: dict) -> str:
    compared = namespace.get("compared")
    if not isinstance(compared, list) or len(compared) < 2:
        raise Incorrect(_("The notebook's `compared` (the ids of the comparison runs) is not "
                          "defined: run the comparison cells first."))
    first, second = (tracking_client().get_run(run_id).data.params for run_id in compared[:2])
    wanted = {name for name in set(first) | set(second) if first.get(name) != second.get(name)}
    given = answers["differing_params"]
    if isinstance(given, str) or not hasattr(given, "__iter__"):
        raise Incorrect(_("`differing_params` should be a set of parameter names, like "
                          "{{'a', 'b'}}; it is {given!r}.").format(given=given))
    names = {str(name).removeprefix("params.") for name in given}
    if names == wanted:
        return _("{names}: the learning rate, once as the parameters cell "
                 "calls it and once as autologging read it from the optimizer.").format(
            names=", ".join(sorted(wanted)))
    extra, missing = names - wanted, wanted - names
    if missing == {"lr"} and not extra:
        raise Incorrect(_("Also `lr`: autologging records the optimizer's learning rate under its own "
                          "name, beside ours. Compare every parameter of both runs, not only the "
                          "parameters cell's."))
    if extra and not missing:
        raise Incorrect(_("{names} have the same value in both runs: keep only "
                          "the names whose values differ.").format(names=", ".join(sorted(extra))))
    raise Incorrect(_("The parameters whose values differ are not {names}: compare "
                      "`first[name] != second[name]` for every name of both dictionaries.").format(
        names=sorted(names)))


q3 = Exercise(
    key="04.3",
    title=N_("What tells the two runs apart"),
    answers=("differing_params",),
    check=_check_differing,
    hint=N_(
        "`first = mlflow.get_run(compared[0]).data.params` is a dictionary of name to text; "
        "the names are `set(first) | set(second)`, and a name differs when "
        "`first.get(name) != second.get(name)`."
    ),
    solution='''\
first, second = (mlflow.get_run(run_id).data.params for run_id in compared[:2])
differing_params = {name for name in set(first) | set(second) if first.get(name) != second.get(name)}''',
    mistake='''\
from utils.training import RUN_PARAMETERS  # the parameters cell's names, and no others

first, second = (mlflow.get_run(run_id).data.params for run_id in compared[:2])
differing_params = {name for name in RUN_PARAMETERS if first[name] != second[name]}''',
)
