"""Exercises of notebook 05: a registered champion of your own, loaded by its alias, and a
request to the model server."""

from __future__ import annotations

from utils.exercises import Exercise, Incorrect, tracking_client

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
        names = [m.name for m in client.search_registered_models(max_results=50)]
        raise Incorrect(f"There is no registered model {MY_MODEL!r} (the registry holds "
                        f"{', '.join(map(repr, names)) or 'none'}): pass exactly that name to "
                        "`mlflow.register_model`.") from None
    try:
        return client.get_model_version_by_alias(MY_MODEL, ALIAS)
    except MlflowException:
        versions = [str(v.version) for v in client.search_model_versions(f"name = '{MY_MODEL}'")]
        raise Incorrect(f"{MY_MODEL!r} has version(s) {', '.join(versions)} but no alias "
                        f"{ALIAS!r}: give it one with `client.set_registered_model_alias"
                        f"({MY_MODEL!r}, {ALIAS!r}, version)`.") from None


def _labels(value, what: str, count: int) -> list[str]:
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        raise Incorrect(f"{what} is the whole DataFrame of predictions: take its `label` column, "
                        "as a list (`.tolist()`).")
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        raise Incorrect(f"{what} holds the whole predictions, a dictionary per review: take each "
                        "one's `label`.")
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise Incorrect(f"{what} should be a list of labels like ['positive', 'negative']; it is {value!r}.")
    unknown = sorted(set(value) - set(LABELS))
    if unknown:
        raise Incorrect(f"{what} holds {unknown}, which are not the model's labels {list(LABELS)}.")
    if len(value) != count:
        raise Incorrect(f"{what} has {len(value)} labels for {count} reviews: one label per review.")
    return list(value)


# -- 05.1 a champion of your own -------------------------------------------------------------
def _check_champion(answers: dict, namespace: dict) -> str:
    name = namespace.get("experiment_name")
    experiment = tracking_client().get_experiment_by_name(name) if isinstance(name, str) else None
    if experiment is None:
        raise Incorrect("The notebook's `experiment_name` names no experiment here: run the "
                        "notebook's cells from the top first.")
    champion = _champion_version()
    given = answers["my_version"]
    owner = getattr(given, "name", MY_MODEL)
    if owner != MY_MODEL:
        raise Incorrect(f"`my_version` is a version of {owner!r}, not of your model {MY_MODEL!r}: "
                        "keep what `mlflow.register_model(..., \"my-sentiment-classifier\")` returns.")
    number = str(getattr(given, "version", given))
    if number != str(champion.version):
        raise Incorrect(f"`my_version` is version {number}, but the alias {ALIAS!r} names version "
                        f"{champion.version}: give the alias to the version you registered.")
    runs = [r for r in tracking_client().search_runs([experiment.experiment_id],
                                             filter_string="attributes.status = 'FINISHED'",
                                             max_results=5000)
            if "test_accuracy" in r.data.metrics]
    source = next((r for r in runs if r.info.run_id == champion.run_id), None)
    if source is None:
        raise Incorrect(f"Version {champion.version} comes from run {champion.run_id}, which is not a "
                        f"finished run of {name!r} with a test_accuracy: register the model of one.")
    if len(runs) < 2:
        raise Incorrect(f"{name!r} has only one finished run with a test_accuracy: there is no best "
                        "to choose yet. Run the cell above the exercise (`utils.ensure_run(...)`), "
                        "which makes sure of a second run, then register the better one.")
    best = max(r.data.metrics["test_accuracy"] for r in runs)
    accuracy = source.data.metrics["test_accuracy"]
    if accuracy < best:
        raise Incorrect(f"Version {champion.version} comes from run {source.info.run_name!r} with "
                        f"test_accuracy {accuracy:.3f}, but the best run of {name!r} has {best:.3f}: "
                        "sort with `order_by=[\"metrics.test_accuracy DESC\"]`.")
    return (f"{MY_MODEL}@{ALIAS} is version {champion.version}, the model of run "
            f"{source.info.run_name!r} (test_accuracy {accuracy:.3f}, the experiment's best).")


q1 = Exercise(
    key="05.1",
    title="A champion of your own",
    answers=("my_version",),
    check=_check_champion,
    hint=(
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
        raise Incorrect(f"`my_champion_uri` should be the URI you loaded, a string like "
                        f"'models:/{MY_MODEL}@{ALIAS}'; it is {uri!r}.")
    if f"@{ALIAS}" not in uri:
        what = "the newest version" if uri.rstrip("/").endswith("/latest") else "a version by its number or another name"
        raise Incorrect(f"{uri!r} names {what}, not the version the alias points at: a registry "
                        f"URI with an alias reads 'models:/{MY_MODEL}@{ALIAS}'. When the alias moves, "
                        "that URI follows it.")
    registered = uri.strip().removeprefix("models:/").split("@")[0]
    if uri.strip().startswith("models:/") and registered != MY_MODEL:
        raise Incorrect(f"{uri!r} names the registered model {registered!r}, not yours: load "
                        f"'models:/{MY_MODEL}@{ALIAS}'.")
    champion = _champion_version()
    wanted = mlflow.models.get_model_info(f"models:/{MY_MODEL}/{champion.version}").model_id
    if mlflow.models.get_model_info(uri).model_id != wanted:
        raise Incorrect(f"{uri!r} is not the model of {MY_MODEL}@{ALIAS}: load that one.")
    reviews = list(namespace.get("reviews") or [])
    if not reviews:
        raise Incorrect("The notebook's `reviews` is not defined: run the notebook's cells from the "
                        "top first, then the exercise.")
    labels = _labels(answers["my_labels"], "`my_labels`", len(reviews))
    # The champion's own answer: loading the course's classifier again takes well under a second.
    predicted = mlflow.pyfunc.load_model(uri).predict(reviews)["label"].tolist()
    if labels != predicted:
        raise Incorrect(f"Your champion labels `reviews` {predicted}, not {labels}: keep the `label` "
                        "column of what its `predict(reviews)` returns, in order.")
    return f"{uri} classified the {len(reviews)} reviews as {labels}."


q2 = Exercise(
    key="05.2",
    title="By its alias",
    answers=("my_champion_uri", "my_labels"),
    check=_check_alias_load,
    hint=(
        f"A registry URI with an alias reads `models:/<name>@<alias>`, here "
        f"`\"models:/{MY_MODEL}@{ALIAS}\"`. `mlflow.pyfunc.load_model(uri).predict(reviews)` returns "
        "a DataFrame; `[\"label\"].tolist()` is its labels."
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
    import requests

    reviews = answers["my_reviews"]
    if not isinstance(reviews, (list, tuple)) or not reviews or not all(
            isinstance(r, str) and r.strip() for r in reviews):
        raise Incorrect(f"`my_reviews` should be a list of review texts; it is {reviews!r}.")
    labels = _labels(answers["my_served_labels"], "`my_served_labels`", len(reviews))
    served = namespace.get("served")
    if served is None or not getattr(served, "is_running", False):
        raise Incorrect("The model server is not running: run the cell that starts it "
                        "(`served = utils.serve_model(...)`), then your cell, then this one.")
    answer = requests.post(served.invocations_url, json={"inputs": list(reviews)}, timeout=30)
    expected = [p["label"] for p in answer.json()["predictions"]]
    if labels != expected:
        raise Incorrect(f"The server labels your reviews {expected}, not {labels}: send exactly "
                        "`my_reviews`, in order, and keep each prediction's `label`.")
    return f"the server classified your {len(reviews)} reviews as {labels}."


q3 = Exercise(
    key="05.3",
    title="A request of your own",
    answers=("my_reviews", "my_served_labels"),
    check=_check_request,
    hint=(
        "`requests.post(served.invocations_url, json={\"dataframe_records\": [{\"review\": r} for r "
        "in my_reviews]})` sends them; the answer's `.json()[\"predictions\"]` is a list with a "
        "dictionary per review, whose `label` you want."
    ),
    solution='''\
my_reviews = ["An unforgettable film, clever and tender.", "Boring from start to finish."]
answer = requests.post(served.invocations_url, timeout=60,
                       json={"dataframe_records": [{"review": review} for review in my_reviews]})
my_served_labels = [prediction["label"] for prediction in answer.json()["predictions"]]''',
    mistake='''\
my_reviews = ["An unforgettable film, clever and tender.", "Boring from start to finish."]
answer = requests.post(served.invocations_url, timeout=60,
                       json={"dataframe_records": [{"review": review} for review in my_reviews]})
my_served_labels = answer.json()["predictions"]  # whole predictions, not their labels''',
)
