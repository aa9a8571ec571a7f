"""Exercises of notebook 05: a registered champion of your own, loaded by its alias, and a
request to the model server."""

from __future__ import annotations

from utils.exercises import Exercise, Incorrect, tracking_client
from utils.i18n import N_
from utils.i18n import gettext as _

MY_MODEL = "my-sentiment-classifier"
ALIAS = "champion"
LABELS = ("negative", "positive")


def _champion_version():
    """The version of MY_MODEL that the alias names, or Incorrect saying what is missing."""
    from mlflow.exceptions import MlflowException

    client = tracking_client()
    try:
        client.get_registered_model(MY_MODEL)
    except MlflowException:
        names = ", ".join(repr(m.name) for m in client.search_registered_models(max_results=50))
        message = (_("There is no registered model {model!r} (the registry holds {names}): pass "
                     "exactly that name to `mlflow.register_model`.") if names else
                   _("There is no registered model {model!r} (the registry holds none): pass exactly "
                     "that name to `mlflow.register_model`."))
        raise Incorrect(message.format(model=MY_MODEL, names=names)) from None
    try:
        return client.get_model_version_by_alias(MY_MODEL, ALIAS)
    except MlflowException:
        versions = [str(v.version) for v in client.search_model_versions(f"name = '{MY_MODEL}'")]
        raise Incorrect(_("{model!r} has version(s) {versions} but no alias {alias!r}: give it one "
                          "with `client.set_registered_model_alias({model!r}, {alias!r}, version)`.")
                        .format(model=MY_MODEL, versions=", ".join(versions), alias=ALIAS)) from None


def _labels(value, what: str, count: int) -> list[str]:
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        raise Incorrect(_("{what} is the whole DataFrame of predictions: take its `label` column, "
                          "as a list (`.tolist()`).").format(what=what))
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        raise Incorrect(_("{what} holds the whole predictions, a dictionary per review: take each "
                          "one's `label`.").format(what=what))
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise Incorrect(_("{what} should be a list of labels like ['positive', 'negative']; it is "
                          "{value!r}.").format(what=what, value=value))
    unknown = sorted(set(value) - set(LABELS))
    if unknown:
        raise Incorrect(_("{what} holds {unknown}, which are not the model's labels {labels}.")
                        .format(what=what, unknown=unknown, labels=list(LABELS)))
    if len(value) != count:
        raise Incorrect(_("{what} has {given} labels for {count} reviews: one label per review.")
                        .format(what=what, given=len(value), count=count))
    return list(value)


# -- 05.1 a champion of your own -------------------------------------------------------------
def _check_champion(answers: dict, namespace: dict) -> str:
    name = namespace.get("experiment_name")
    experiment = tracking_client().get_experiment_by_name(name) if isinstance(name, str) else None
    if experiment is None:
        raise Incorrect(_("The notebook's `experiment_name` names no experiment here: run the "
                          "notebook's cells from the top first."))
    champion = _champion_version()
    given = answers["my_version"]
    owner = getattr(given, "name", MY_MODEL)
    if owner != MY_MODEL:
        raise Incorrect(_("`my_version` is a version of {owner!r}, not of your model {model!r}: "
                          "keep what `mlflow.register_model(..., \"my-sentiment-classifier\")` returns.")
                        .format(owner=owner, model=MY_MODEL))
    number = str(getattr(given, "version", given))
    if number != str(champion.version):
        raise Incorrect(_("`my_version` is version {number}, but the alias {alias!r} names version "
                          "{version}: give the alias to the version you registered.")
                        .format(number=number, alias=ALIAS, version=champion.version))
    runs = [r for r in tracking_client().search_runs([experiment.experiment_id],
                                             filter_string="attributes.status = 'FINISHED'",
                                             max_results=5000)
            if "test_accuracy" in r.data.metrics]
    source = next((r for r in runs if r.info.run_id == champion.run_id), None)
    if source is None:
        raise Incorrect(_("Version {version} comes from run {run_id}, which is not a finished run of "
                          "{name!r} with a test_accuracy: register the model of one.")
                        .format(version=champion.version, run_id=champion.run_id, name=name))
    if len(runs) < 2:
        raise Incorrect(_("{name!r} has only one finished run with a test_accuracy: there is no best "
                          "to choose yet. Run the cell above the exercise (`utils.ensure_run(...)`), "
                          "which makes sure of a second run, then register the better one.").format(name=name))
    best = max(r.data.metrics["test_accuracy"] for r in runs)
    accuracy = source.data.metrics["test_accuracy"]
    if accuracy < best:
        raise Incorrect(_("Version {version} comes from run {run_name!r} with test_accuracy "
                          "{accuracy:.3f}, but the best run of {name!r} has {best:.3f}: sort with "
                          "`order_by=[\"metrics.test_accuracy DESC\"]`.")
                        .format(version=champion.version, run_name=source.info.run_name,
                                accuracy=accuracy, name=name, best=best))
    return _("{model}@{alias} is version {version}, the model of run {run_name!r} (test_accuracy "
             "{accuracy:.3f}, the experiment's best).").format(
        model=MY_MODEL, alias=ALIAS, version=champion.version, run_name=source.info.run_name,
        accuracy=accuracy)


q1 = Exercise(
    key="05.1",
    title=N_("A champion of your own"),
    answers=("my_version",),
    check=_check_champion,
    hint=N_(
        "`mlflow.search_runs(experiment_names=[experiment_name], order_by=[\"metrics.test_accuracy "
        "DESC\"], max_results=1)` gives the best run first. `mlflow.register_model("
        "f\"runs:/{run_id}/model\", \"my-sentiment-classifier\")` returns the new version; "
        "`client.set_registered_model_alias(name, \"champion\", version.version)` gives it the alias."
    ),
    solution='''\
best = mlflow.search_runs(experiment_names=[experiment_name], filter_string="attributes.status = 'FINISHED'",
                          order_by=["metrics.test_accuracy DESC"], max_results=1)
my_version = mlflow.register_model(f"runs:/{best.run_id.iloc[0]}/model", "my-sentiment-classifier")
client.set_registered_model_alias("my-sentiment-classifier", "champion", my_version.version)''',
    mistake='''\
best = mlflow.search_runs(experiment_names=[experiment_name], filter_string="attributes.status = 'FINISHED'",
                          order_by=["metrics.test_accuracy DESC"], max_results=1)
my_version = mlflow.register_model(f"runs:/{best.run_id.iloc[0]}/model", "my-sentiment-classifier")
# ... and no alias''',
)


# -- 05.2 by its alias ---------------------------------------------------------------------
def _check_alias_load(answers: dict, namespace: dict) -> str:
    import mlflow

    uri = answers["my_champion_uri"]
    if not isinstance(uri, str):
        raise Incorrect(_("`my_champion_uri` should be the URI you loaded, a string like "
                          "'models:/{model}@{alias}'; it is {uri!r}.").format(model=MY_MODEL, alias=ALIAS, uri=uri))
    if f"@{ALIAS}" not in uri:
        message = (_("{uri!r} names the newest version, not the version the alias points at: a "
                     "registry URI with an alias reads 'models:/{model}@{alias}'. When the alias "
                     "moves, that URI follows it.") if uri.rstrip("/").endswith("/latest") else
                   _("{uri!r} names a version by its number or another name, not the version the "
                     "alias points at: a registry URI with an alias reads 'models:/{model}@{alias}'. "
                     "When the alias moves, that URI follows it."))
        raise Incorrect(message.format(uri=uri, model=MY_MODEL, alias=ALIAS))
    registered = uri.strip().removeprefix("models:/").split("@")[0]
    if uri.strip().startswith("models:/") and registered != MY_MODEL:
        raise Incorrect(_("{uri!r} names the registered model {registered!r}, not yours: load "
                          "'models:/{model}@{alias}'.").format(uri=uri, registered=registered,
                                                               model=MY_MODEL, alias=ALIAS))
    champion = _champion_version()
    wanted = mlflow.models.get_model_info(f"models:/{MY_MODEL}/{champion.version}").model_id
    if mlflow.models.get_model_info(uri).model_id != wanted:
        raise Incorrect(_("{uri!r} is not the model of {model}@{alias}: load that one.")
                        .format(uri=uri, model=MY_MODEL, alias=ALIAS))
    reviews = list(namespace.get("reviews") or [])
    if not reviews:
        raise Incorrect(_("The notebook's `reviews` is not defined: run the notebook's cells from the "
                          "top first, then the exercise."))
    labels = _labels(answers["my_labels"], "`my_labels`", len(reviews))
    # The champion's own answer: loading the course's classifier again takes well under a second.
    predicted = mlflow.pyfunc.load_model(uri).predict(reviews)["label"].tolist()
    if labels != predicted:
        raise Incorrect(_("Your champion labels `reviews` {predicted}, not {labels}: keep the `label` "
                          "column of what its `predict(reviews)` returns, in order.")
                        .format(predicted=predicted, labels=labels))
    return _("{uri} classified the {count} reviews as {labels}.").format(uri=uri, count=len(reviews),
                                                                        labels=labels)


q2 = Exercise(
    key="05.2",
    title=N_("By its alias"),
    answers=("my_champion_uri", "my_labels"),
    check=_check_alias_load,
    hint=N_(
        "A registry URI with an alias reads `models:/<name>@<alias>`, here "
        "`\"models:/my-sentiment-classifier@champion\"`. `mlflow.pyfunc.load_model(uri).predict(reviews)` "
        "returns a DataFrame; `[\"label\"].tolist()` is its labels."
    ),
    solution=f'''\
my_champion_uri = "models:/{MY_MODEL}@{ALIAS}"
my_labels = mlflow.pyfunc.load_model(my_champion_uri).predict(reviews)["label"].tolist()''',
    mistake=f'''\
my_champion_uri = "models:/{MY_MODEL}/latest"  # the newest version, whatever the alias says
my_labels = mlflow.pyfunc.load_model(my_champion_uri).predict(reviews)["label"].tolist()''',
)


# -- 05.3 a request of your own --------------------------------------------------------------
def _check_request(answers: dict, namespace: dict) -> str:
    import json

    import requests

    reviews = answers["my_reviews"]
    if not isinstance(reviews, (list, tuple)) or not reviews or not all(
            isinstance(r, str) and r.strip() for r in reviews):
        raise Incorrect(_("`my_reviews` should be a list of review texts; it is {reviews!r}.")
                        .format(reviews=reviews))
    response = answers["my_response"]
    if not isinstance(response, requests.Response):
        raise Incorrect(_("`my_response` should be what `requests.post(...)` returned; it is a "
                          "{kind}.").format(kind=type(response).__name__))
    served = namespace.get("served")
    if served is None or not response.url.startswith(served.invocations_url):
        raise Incorrect(_("Your request went to {url}, not to the model server's "
                          "`served.invocations_url`.").format(url=response.url))
    try:
        sent = json.loads(response.request.body or b"null")
    except ValueError:
        sent = None
    if not isinstance(sent, dict) or "dataframe_records" not in sent:
        message = (_("Your request sent {fields}, not `dataframe_records`: pass "
                     "`json={{\"dataframe_records\": [{{\"review\": r}} for r in my_reviews]}}`, a "
                     "row per review, each a dictionary of its columns.") if isinstance(sent, dict) else
                   _("Your request sent no JSON, not `dataframe_records`: pass "
                     "`json={{\"dataframe_records\": [{{\"review\": r}} for r in my_reviews]}}`, a "
                     "row per review, each a dictionary of its columns."))
        fields = ", ".join(f"`{key}`" for key in sent) if isinstance(sent, dict) else ""
        raise Incorrect(message.format(fields=fields))
    rows = sent["dataframe_records"]
    if rows != [{"review": review} for review in reviews]:
        raise Incorrect(_("Your `dataframe_records` are {rows!r}: they should be one row "
                          "`{{\"review\": ...}}` per review of `my_reviews`, in order.").format(rows=rows))
    if response.status_code != 200:
        raise Incorrect(_("The server answered {status}: {text}").format(
            status=response.status_code, text=response.text.strip()[:300]))
    labels = _labels(answers["my_served_labels"], "`my_served_labels`", len(reviews))
    expected = [p["label"] for p in response.json()["predictions"]]
    if labels != expected:
        raise Incorrect(_("The server labelled your reviews {expected}, not {labels}: keep each "
                          "prediction's `label`, in order.").format(expected=expected, labels=labels))
    return _("the server read your {count} rows and classified them as {labels}.").format(
        count=len(reviews), labels=labels)


_REQUEST = '''\
my_reviews = ["An unforgettable film, clever and tender.", "Boring from start to finish."]
my_response = requests.post(served.invocations_url, timeout=60,
                            json={"dataframe_records": [{"review": review} for review in my_reviews]})
my_served_labels = [prediction["label"] for prediction in my_response.json()["predictions"]]'''

q3 = Exercise(
    key="05.3",
    title=N_("A request of your own"),
    answers=("my_reviews", "my_response", "my_served_labels"),
    check=_check_request,
    hint=N_(
        "`requests.post(served.invocations_url, json={\"dataframe_records\": [{\"review\": r} for r "
        "in my_reviews]})` sends them and returns the response; its `.json()[\"predictions\"]` is a "
        "list with a dictionary per review, whose `label` you want."
    ),
    solution=_REQUEST,
    # The typical mistake: the reviews sent the way the notebook's cell sent them, not as rows.
    mistake=_REQUEST.replace('json={"dataframe_records": [{"review": review} for review in my_reviews]}',
                             'json={"inputs": my_reviews}'),
)
