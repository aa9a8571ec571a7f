"""Exercises of notebook 01 (local setup): ask the store about Default, make an experiment.

Each check reads the MLflow store in effect (the course workspace the notebook uses), never
a copy of the answer.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlparse

from utils.exercises import Exercise, Incorrect, tracking_client
from utils.i18n import N_
from utils.i18n import gettext as _


def _as_path(location: str) -> Path | None:
    """The local folder an artifact location names (a path or a ``file:`` URI), else None."""
    parsed = urlparse(location)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path)).resolve()
    if parsed.scheme == "" and location:
        return Path(location).resolve()
    return None


# -- 01.1 -----------------------------------------------------------------------------------
def _check_default_location(answers, namespace):
    from mlflow.entities import Experiment

    answer = answers["default_location"]
    default = tracking_client().get_experiment("0")
    if isinstance(answer, Experiment):
        raise Incorrect(_("`default_location` holds the whole Experiment object. The location "
                          "is one of its attributes: add `.artifact_location`."))
    if not isinstance(answer, (str, os.PathLike)):
        raise Incorrect(_("`default_location` should be text, a folder or a URI; you set a "
                          "{kind}.").format(kind=type(answer).__name__))
    text = str(answer).strip()
    if text == default.experiment_id:
        raise Incorrect(_("`0` is Default's id, the number that names the experiment. Ask the "
                          "client for the experiment with that id, and take its "
                          "`artifact_location`."))
    if text.startswith(("http://", "https://", "sqlite:", "databricks")):
        raise Incorrect(_("{text} is a tracking URI: where the client sends its questions, and "
                          "where the metadata lives. The artifact location is where Default "
                          "keeps its files: an attribute of the experiment.").format(text=text))
    expected = _as_path(default.artifact_location)
    given = _as_path(text)
    if given is not None and given == expected:
        return _("Default keeps its files in {location}, one folder per run; "
                 "its metadata is in the backend store, mlflow.db.").format(
                     location=default.artifact_location)
    if given is not None and expected is not None and given == expected.parent:
        raise Incorrect(_("{text} is the artifact folder of the whole workspace. Each experiment "
                          "has a folder of its own below it: ask the client for Default's.").format(
                              text=text))
    raise Incorrect(_("{text!r} is not where Default keeps its files. Ask the client for the "
                      "experiment with id `\"0\"` (or by its name) and read its "
                      "`artifact_location`.").format(text=text))


q1 = Exercise(
    key="01.1",
    title=N_("Where Default keeps its files"),
    answers=("default_location",),
    check=_check_default_location,
    hint=N_("`client.get_experiment(experiment_id)` returns one experiment, and "
            "`client.get_experiment_by_name(name)` finds one by its name. An experiment has an "
            "`artifact_location` attribute."),
    solution='default_location = client.get_experiment("0").artifact_location',
    mistake='default_location = client.get_experiment("0")',
)


# -- 01.2 -----------------------------------------------------------------------------------
def _check_own_experiment(answers, namespace):
    from mlflow.entities import Experiment

    name = answers["my_experiment_name"]
    if isinstance(name, Experiment):
        raise Incorrect(_("`my_experiment_name` holds the whole Experiment object; set it to the "
                          "name only (the experiment's `.name`)."))
    if not isinstance(name, str) or not name.strip():
        raise Incorrect(_("`my_experiment_name` should be the name of your experiment, as text."))
    if name == "Default":
        raise Incorrect(_("Default is the experiment every store starts with, not one of your "
                          "own: choose a new name."))
    experiment = tracking_client().get_experiment_by_name(name)
    if experiment is None:
        raise Incorrect(_("The store has no experiment named {name!r}. "
                          "`mlflow.set_experiment(name)` creates it (and returns it when it "
                          "exists already).").format(name=name))
    if experiment.lifecycle_stage != "active":
        raise Incorrect(_("Your experiment {name!r} is deleted. Restore it with "
                          "`client.restore_experiment(experiment_id)`, or choose another name.").format(
                              name=name))
    own = {key: value for key, value in experiment.tags.items() if not key.startswith("mlflow.")}
    if not own:
        raise Incorrect(_("Your experiment {name!r} exists but has no tag of your own. Add one "
                          "with `client.set_experiment_tag(experiment_id, key, value)`.").format(
                              name=name))
    tags = ", ".join(f"{key}={value!r}" for key, value in sorted(own.items()))
    return _("experiment {name!r} (id {experiment_id}) carries your tag {tags}. "
             "The UI lists it among the experiments.").format(
                 name=name, experiment_id=experiment.experiment_id, tags=tags)


q2 = Exercise(
    key="01.2",
    title=N_("An experiment of your own, with a tag"),
    answers=("my_experiment_name",),
    check=_check_own_experiment,
    hint=N_("`mlflow.set_experiment(name)` creates the experiment when it is missing and returns "
            "it either way, so your cell can run twice. Then "
            "`client.set_experiment_tag(experiment.experiment_id, \"key\", \"value\")` tags it."),
    solution=('my_experiment_name = "my-first-experiment"\n'
              "my_experiment = mlflow.set_experiment(my_experiment_name)\n"
              'client.set_experiment_tag(my_experiment.experiment_id, "purpose", "learning MLflow")'),
    mistake=('my_experiment_name = "my-untagged-experiment"\n'
             "mlflow.set_experiment(my_experiment_name)"),
)
