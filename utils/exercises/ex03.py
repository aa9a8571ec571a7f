"""Exercises of notebook 03: a note on a finished run, a second run to compare, and a
training loop the learner instruments with MLflow."""

from __future__ import annotations

from utils.exercises import Exercise, Incorrect, find_run, tracking_client
from utils.i18n import N_
from utils.i18n import gettext as _
from utils.training import RUN_PARAMETERS


# -- 03.1 a note on the run -------------------------------------------------------------
def _stray_runs(experiment_id: str, after: int, apart_from: str) -> list:
    """Runs of the experiment that started after ``after`` (ms) and carry a tag ``note``."""
    runs = tracking_client().search_runs([experiment_id], filter_string=f"attributes.start_time > {after}",
                                 max_results=50)
    return [r for r in runs if r.info.run_id != apart_from and "note" in r.data.tags]


def _check_note(answers: dict, namespace: dict) -> str:
    import mlflow

    trained = namespace.get("run")
    params = namespace.get("params")
    if trained is None or params is None:
        raise Incorrect(_("The notebook's `run` and `params` are not defined: run the notebook's "
                          "cells from the top first, then the exercise."))
    noted = find_run(answers["noted_run_id"], "`noted_run_id`")
    run_id = trained.info.run_id
    wanted = params.train_size * params.max_epochs
    if noted.info.run_id != run_id:
        raise Incorrect(_("`noted_run_id` is the run {run_name!r} ({noted_run_id}), "
                          "not the run `run` of this notebook ({run_id}): tag that one.").format(
            run_name=noted.info.run_name, noted_run_id=noted.info.run_id, run_id=run_id))
    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        raise Incorrect(_("Your run is active again and stays RUNNING: `mlflow.start_run(run_id=...)` "
                          "reopened it and nothing ended it, so the notebook's next runs cannot start. "
                          "Call `mlflow.end_run()` now; next time write `with mlflow.start_run(run_id=...):`, "
                          "which ends the run after the block."))
    record = noted.data
    if "note" not in record.tags:
        strays = _stray_runs(trained.info.experiment_id, trained.info.start_time, run_id)
        stray_text = ""
        if strays:
            stray_text = _(" Your tag went to another run, {stray_run_id}: outside a "
                           "`with mlflow.start_run(run_id=...)` block, `mlflow.set_tag` started a "
                           "new run and tagged that one.").format(stray_run_id=strays[0].info.run_id)
            active = mlflow.active_run()
            if active is not None and active.info.run_id in {r.info.run_id for r in strays}:
                mlflow.end_run()  # so that the notebook's next cells are not logged into it
                stray_text += _(" (The check ended that stray run, which was still active.)")
        raise Incorrect(_("Your run has no tag `note`.{stray_text} Reopen the run with "
                          "`with mlflow.start_run(run_id=run.info.run_id):` and call "
                          "`mlflow.set_tag` inside the block, or use "
                          "`client.set_tag(run.info.run_id, ...)`.").format(stray_text=stray_text))
    if not str(record.tags["note"]).strip():
        raise Incorrect(_("Your tag `note` is empty: give it some text of yours."))
    if "reviews_seen" not in record.metrics:
        near = [key for key in record.metrics if "review" in key.lower() or "seen" in key.lower()]
        if near:
            raise Incorrect(_("The tag is there, but the run has no metric `reviews_seen` (there is "
                              "{names}: the name must be exactly `reviews_seen`). Log it with "
                              "`mlflow.log_metric` (inside the `with` block) or "
                              "`client.log_metric(run.info.run_id, ...)`.").format(
                names=", ".join(f"`{k}`" for k in near)))
        raise Incorrect(_("The tag is there, but the run has no metric `reviews_seen`. "
                          "Log it with `mlflow.log_metric` (inside the `with` block) or "
                          "`client.log_metric(run.info.run_id, ...)`."))
    if record.metrics["reviews_seen"] != wanted:
        raise Incorrect(_("`reviews_seen` is {seen:g}, but the run trained on "
                          "{train_size} reviews for {max_epochs} epoch(s): {wanted}. "
                          "Log the new value again: a metric keeps every value, and the latest one "
                          "counts.").format(seen=record.metrics["reviews_seen"], train_size=params.train_size,
                                            max_epochs=params.max_epochs, wanted=wanted))
    return _("run {run_id} has the tag note={note!r} and the metric "
             "reviews_seen={wanted:g}; a finished run takes more records whenever you reopen it.").format(
        run_id=run_id, note=record.tags["note"], wanted=wanted)


q1 = Exercise(
    key="03.1",
    title=N_("A note on your run"),
    answers=("noted_run_id",),
    check=_check_note,
    hint=N_(
        "`mlflow.set_tag(key, value)` and `mlflow.log_metric(key, value)` write to the active "
        "run; `with mlflow.start_run(run_id=run.info.run_id):` makes the finished run active "
        "again for the block. Or write to the run by its id with the client: "
        "`client.set_tag(run.info.run_id, key, value)`, `client.log_metric(...)`."
    ),
    solution='''\
client.set_tag(run.info.run_id, "note", "my first autologged run")
client.log_metric(run.info.run_id, "reviews_seen", params.train_size * params.max_epochs)
noted_run_id = run.info.run_id''',
    mistake='''\
mlflow.set_tag("note", "my first autologged run")  # no active run: MLflow starts a new one
mlflow.log_metric("reviews_seen", params.train_size * params.max_epochs)
noted_run_id = run.info.run_id''',
)


# -- 03.2 pooling compared --------------------------------------------------------------
def _check_comparison(answers: dict, namespace: dict) -> str:
    import pandas as pd

    if namespace.get("run") is None:
        raise Incorrect(_("The notebook's `run` is not defined: run the notebook's cells from the "
                          "top first, then the exercise."))
    trained = tracking_client().get_run(namespace["run"].info.run_id)  # as recorded, with its metrics
    other = find_run(answers["pooler_run_id"], "`pooler_run_id`")
    if other.info.run_id == trained.info.run_id:
        raise Incorrect(_("`pooler_run_id` is the notebook's own run `run`: train a second run "
                          "with `utils.ensure_run(...)` of parameters with pooling=\"pooler\", and take "
                          "its id."))
    if other.info.experiment_id != trained.info.experiment_id:
        raise Incorrect(_("Run {run_id} is in another experiment: keep "
                          "`params.experiment_name`, so that both runs are in one.").format(
            run_id=other.info.run_id))
    pooling = other.data.params.get("pooling")
    if pooling != "pooler":
        raise Incorrect(_("Your new run has pooling={pooling!r}, the same as `run`: it compares "
                          "nothing. Change it: `dataclasses.replace(params, run_name=\"pooler\", "
                          "pooling=\"pooler\")`.").format(pooling=pooling))
    if other.info.status != "FINISHED" or "test_accuracy" not in other.data.metrics:
        raise Incorrect(_("Run {run_id} is {status} and has no test_accuracy: "
                          "let it finish (utils.ensure_run trains and tests it).").format(
            run_id=other.info.run_id, status=other.info.status))
    differ = [name for name in RUN_PARAMETERS if name != "pooling"
              and other.data.params.get(name) != trained.data.params.get(name)]
    if differ:
        shown = ", ".join(_("{name}={value} (`run`: {run_value})").format(
            name=name, value=other.data.params.get(name), run_value=trained.data.params.get(name))
            for name in differ)
        raise Incorrect(_("Your pooler run differs from `run` in more than pooling: {shown}. Then the "
                          "comparison cannot tell which change made the difference. Start from the "
                          "notebook's own parameters: `dataclasses.replace(params, run_name=\"pooler\", "
                          "pooling=\"pooler\")`.").format(shown=shown))
    table = answers["comparison"]
    if not isinstance(table, pd.DataFrame):
        raise Incorrect(_("`comparison` should be the DataFrame that `mlflow.search_runs` returns; "
                          "it is a {kind}.").format(kind=type(table).__name__))
    if "run_id" not in table.columns:
        raise Incorrect(_("`comparison` has no `run_id` column: take the DataFrame of "
                          "`mlflow.search_runs(...)` as it comes."))
    listed = set(table["run_id"])
    wanted = {trained.info.run_id, other.info.run_id}
    if not wanted <= listed:
        missing = ", ".join(sorted(wanted - listed))
        raise Incorrect(_("`comparison` lacks run(s) {missing}. Filter on both ids: "
                          "`filter_string=f\"attributes.run_id IN ('{{run.info.run_id}}', "
                          "'{{pooler_run_id}}')\"`.").format(missing=missing))
    for column in ("params.pooling", "metrics.test_accuracy"):
        if column not in table.columns:
            raise Incorrect(_("`comparison` has no column {column!r}: ask `mlflow.search_runs` "
                              "for the runs of the experiment, which gives every parameter and "
                              "metric.").format(column=column))
    mean = trained.data.metrics.get("test_accuracy", float("nan"))
    pooler = other.data.metrics["test_accuracy"]
    if mean >= pooler:
        won = _("test accuracy {pooling!r} {mean:.3f} against 'pooler' {pooler:.3f}: the average of "
                "the token vectors wins.")
    else:
        won = _("test accuracy {pooling!r} {mean:.3f} against 'pooler' {pooler:.3f}: the pooler "
                "output, this time wins.")
    return won.format(pooling=trained.data.params.get("pooling"), mean=mean, pooler=pooler)


q2 = Exercise(
    key="03.2",
    title=N_("Pooling, compared"),
    answers=("pooler_run_id", "comparison"),
    check=_check_comparison,
    hint=N_(
        "`utils.ensure_run(dataclasses.replace(params, run_name=\"pooler\", pooling=\"pooler\"))` "
        "returns the id of the new run (`import dataclasses` first). "
        "`mlflow.search_runs(experiment_names=[params.experiment_name], filter_string=...)` returns "
        "a DataFrame with a row per run and columns `params.*` and `metrics.*`."
    ),
    solution='''\
import dataclasses

pooler_run_id = utils.ensure_run(dataclasses.replace(params, run_name="pooler", pooling="pooler"))
comparison = mlflow.search_runs(
    experiment_names=[params.experiment_name],
    filter_string=f"attributes.run_id IN ('{run.info.run_id}', '{pooler_run_id}')")
comparison[["tags.mlflow.runName", "params.pooling", "metrics.test_accuracy"]]''',
    mistake='''\
import dataclasses

pooler_run_id = utils.ensure_run(dataclasses.replace(params, run_name="pooler"))  # pooling left as it was
comparison = mlflow.search_runs(
    experiment_names=[params.experiment_name],
    filter_string=f"attributes.run_id IN ('{run.info.run_id}', '{pooler_run_id}')")''',
)


# -- 03.3 a training loop, instrumented ----------------------------------------------------
def _check_tiny_loop(answers: dict, namespace: dict) -> str:
    import mlflow

    tiny = find_run(answers["tiny_run_id"], "`tiny_run_id`")
    client = tracking_client()
    run_id = tiny.info.run_id
    experiment = namespace.get("experiment")
    if experiment is not None and tiny.info.experiment_id != experiment.experiment_id:
        other = client.get_experiment(tiny.info.experiment_id).name
        raise Incorrect(_("Run {run_id} is in the experiment {other!r}, not in this notebook's "
                          "{experiment!r}: record the loop as a run of its own there. Call "
                          "`mlflow.set_experiment(params.experiment_name)` before the `with` block, or "
                          "pass `experiment_id=experiment.experiment_id` to `mlflow.start_run`.").format(
            run_id=run_id, other=other, experiment=experiment.name))
    if tiny.info.status == "RUNNING":
        raise Incorrect(_("Run {run_id} is still RUNNING: the training was not inside a "
                          "`with mlflow.start_run` block, which ends the run after it "
                          "(or `mlflow.end_run()` was never called).").format(run_id=run_id))
    if not tiny.data.params:
        raise Incorrect(_("The run has no parameters: call `mlflow.log_params({...})` with the "
                          "learning rate and the number of steps, inside the `with` block."))
    histories = {key: client.get_metric_history(run_id, key) for key in tiny.data.metrics
                 if not key.startswith("system/")}
    if not histories:
        raise Incorrect(_("The run has no metric: call `mlflow.log_metric(\"train_loss\", loss.item(), "
                          "step=step)` in the loop."))
    key, history = max(histories.items(), key=lambda item: len(item[1]))
    if len(history) < 2:
        raise Incorrect(_("The metric `{key}` has a single value: log it at every step of the loop, "
                          "not once after it.").format(key=key))
    if len({m.step for m in history}) == 1:
        raise Incorrect(_("The metric `{key}` has {count} values, all at step "
                          "{step}: without `step=step`, MLflow records each value at "
                          "step 0 and the UI cannot draw a curve. Pass `step=step` to `log_metric`.").format(
            key=key, count=len(history), step=history[0].step))
    outputs = tiny.outputs.model_outputs if tiny.outputs else []
    if not outputs:
        stray = mlflow.last_logged_model()
        outside = stray is not None and not stray.source_run_id
        if outside:
            raise Incorrect(_("The run logged no model. A model was logged outside any run (its "
                              "`source_run_id` is empty): call `mlflow.pytorch.log_model` inside the "
                              "`with mlflow.start_run` block."))
        raise Incorrect(_("The run logged no model. Call `mlflow.pytorch.log_model(tiny_model, "
                          "name=\"model\", ...)` inside the `with mlflow.start_run` block."))
    info = mlflow.models.get_model_info(f"models:/{outputs[0].model_id}")
    if "pytorch" not in info.flavors:
        raise Incorrect(_("The run's model has the flavors {flavors}, not `pytorch`: "
                          "log it with `mlflow.pytorch.log_model`.").format(flavors=", ".join(info.flavors)))
    if info.signature is None:
        raise Incorrect(_("The model has no signature, so MLflow cannot say what goes in and out "
                          "(and a model server cannot check a request). Pass `signature=` "
                          "(`mlflow.models.infer_signature(inputs, outputs)`) or an `input_example=`."))
    if not info.saved_input_example_info:
        raise Incorrect(_("The model has a signature but no input example: pass `input_example=` "
                          "(a few rows of the features, as a numpy array)."))
    losses = [m.value for m in sorted(history, key=lambda m: m.step)]
    return _("run {run_id}: {count} parameter(s), `{key}` at {steps} steps "
             "({first:.3f} -> {last:.3f}), and a PyTorch model with its signature and "
             "input example.").format(run_id=run_id, count=len(tiny.data.params), key=key,
                                      steps=len(history), first=losses[0], last=losses[-1])


_TINY_LOOP = '''\
tiny_params = {"learning_rate": 0.01, "steps": 30}
torch.manual_seed(0)
tiny_model = torch.nn.Linear(features.shape[1], 1)
optimizer = torch.optim.Adam(tiny_model.parameters(), lr=tiny_params["learning_rate"])
with mlflow.start_run(run_name="tiny_loop") as tiny_run:
    mlflow.log_params(tiny_params)
    for step in range(tiny_params["steps"]):
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(tiny_model(features).squeeze(1), targets)
        loss.backward()
        optimizer.step()
        mlflow.log_metric("train_loss", loss.item(), step=step)
    signature = mlflow.models.infer_signature(features[:3].numpy(), tiny_model(features[:3]).detach().numpy())
    mlflow.pytorch.log_model(tiny_model, name="model", signature=signature,
                             input_example=features[:3].numpy(), pip_requirements=["torch"])
tiny_run_id = tiny_run.info.run_id'''

q3 = Exercise(
    key="03.3",
    title=N_("Instrument a training loop yourself"),
    answers=("tiny_run_id",),
    check=_check_tiny_loop,
    hint=N_(
        "Put the whole loop inside `with mlflow.start_run(run_name=\"tiny_loop\") as tiny_run:`. "
        "In it: `mlflow.log_params({...})` first, `mlflow.log_metric(\"train_loss\", loss.item(), "
        "step=step)` in the loop, and after it `mlflow.pytorch.log_model(tiny_model, name=\"model\", "
        "signature=..., input_example=features[:3].numpy(), pip_requirements=[\"torch\"])`. "
        "Then `tiny_run_id = tiny_run.info.run_id`."
    ),
    solution=_TINY_LOOP,
    # The typical mistake: the metric logged without its step.
    mistake=_TINY_LOOP.replace('mlflow.log_metric("train_loss", loss.item(), step=step)',
                               'mlflow.log_metric("train_loss", loss.item())  # no step'),
)
