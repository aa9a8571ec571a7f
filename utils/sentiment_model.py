"""The course's classifier as an MLflow model that reads text: one model, two flavors.

``mlflow.pytorch.log_model`` saves a network with two flavors: ``pytorch``, which training
code loads back as the network, and a generic ``python_function`` whose ``predict`` turns a
DataFrame of numbers into a tensor. Reviews are text, so through that generic interface the
model fails (``could not convert string to float``), and so would ``mlflow models serve``.

This module is a small *custom flavor*, built the way MLflow builds its own: a module with
``save_model`` that ``mlflow.models.Model.log`` calls, and ``mlflow.pyfunc.add_to_model`` to
say how the saved files load as a ``python_function``:

- :func:`save_model` saves the network with ``mlflow.pytorch.save_model``, so that
  ``mlflow.pytorch.load_model(uri)`` gives it back exactly as before, and copies this file
  into the model's ``code/`` folder;
- it then names this file the model's ``python_function`` loader: :func:`_load_pyfunc` loads
  the network and wraps it in :class:`SentimentClassifier`, whose ``predict`` takes reviews
  (a list of strings, or a DataFrame whose one column is ``review``) and returns, for each,
  its ``label`` and the probability that it is positive.

Why not a ``PythonModel`` (``mlflow.pyfunc.log_model(python_model=...)``)? It would give the
text interface too, but the model would then have the ``python_function`` flavor only, and
``mlflow.pytorch.load_model`` could not load it any more.

This file also runs inside the logged model, in processes that do not have the course's
package (``mlflow models serve``, batch jobs): it imports only MLflow, torch, pandas and
lightning-flash, which the model's requirements name.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import Model, ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types import ColSpec, Schema
from mlflow.types.schema import AnyType

#: What goes in and what comes out. The input is one column without a name, so that a plain
#: list of reviews is accepted as well as a DataFrame with a ``review`` column. Its type is
#: ``any`` rather than ``string`` so that the model itself checks that each review is text:
#: declared ``string``, MLflow's model server would turn a number (or a JSON null) into the
#: text "3" (or "None") before the model could refuse it.
SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec(AnyType())]),
    outputs=Schema([ColSpec("string", "label"), ColSpec("double", "positive_probability")]),
)
#: Saved with the model (``input_example.json``), shown by the UI, and tried by MLflow when it
#: logs the model.
EXAMPLE_REVIEWS = [
    "A moving story with wonderful actors. I loved every minute of it.",
    "Two hours of my life I will never get back. Dull, predictable and badly acted.",
]
#: The column name a DataFrame of reviews may use.
REVIEW_COLUMN = "review"
#: The module name this file has inside a logged model (its ``code/`` folder).
LOADER_MODULE = "sentiment_model"
BATCH_SIZE = 32


def _bad_input(message: str) -> MlflowException:
    # INVALID_PARAMETER_VALUE: MLflow's model server answers it with HTTP 400, not 500.
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def review_texts(model_input: Any) -> list[str]:
    """The reviews in ``model_input``, checked: a string, a list of strings, a Series, or a
    DataFrame with one column named ``review`` (or unnamed, as MLflow makes from a list)."""
    if isinstance(model_input, str):
        model_input = [model_input]
    if isinstance(model_input, pd.DataFrame):
        names = [str(column) for column in model_input.columns]
        if len(names) != 1 or names[0] not in (REVIEW_COLUMN, "0"):
            raise _bad_input(
                f"Give the reviews as a list of strings or in one column named {REVIEW_COLUMN!r}; "
                f"got the columns {names}."
            )
        model_input = model_input.iloc[:, 0]
    if isinstance(model_input, pd.Series) or type(model_input).__name__ == "ndarray":
        model_input = model_input.tolist()
    if not isinstance(model_input, (list, tuple)):
        raise _bad_input(
            f"Give the reviews as a list of strings or a DataFrame with a {REVIEW_COLUMN!r} "
            f"column; got {type(model_input).__name__}."
        )
    if not model_input:
        raise _bad_input("There are no reviews to classify: give at least one review text.")
    for number, review in enumerate(model_input):
        if not isinstance(review, str):
            raise _bad_input(f"Review {number} is {review!r} ({type(review).__name__}), not text.")
        if not review.strip():
            raise _bad_input(f"Review {number} is empty: give the text of a review.")
    return list(model_input)


def classify(network, reviews: Iterable[str], batch_size: int = BATCH_SIZE
             ) -> tuple[list[str], list[float]]:
    """``(labels, probabilities of the positive label)`` of the course's classifier
    (the Lightning module of a run) for each review, in order.

    The reviews are tokenized as in training (the tokenizer is part of the module) and run
    ``batch_size`` at a time, without gradients, on the device the module is on.
    """
    import torch
    from flash.core.data.io.input import DataKeys

    labels = list(getattr(network, "hparams", {}).get("labels") or [])
    collate = getattr(getattr(network, "adapter", None), "collate_fn", None)
    if not labels or collate is None:
        raise _bad_input(f"{type(network).__name__} is not a text classifier trained by the course.")
    positive = labels.index("positive") if "positive" in labels else len(labels) - 1
    reviews = list(reviews)
    was_training = network.training
    network.eval()
    predicted, probabilities = [], []
    try:
        with torch.inference_mode():
            for start in range(0, len(reviews), batch_size):
                batch = collate([{DataKeys.INPUT: text} for text in reviews[start:start + batch_size]])
                # flash's generic adapter (mean pooling) nests the tokens under INPUT; its
                # Hugging Face adapter (pooler output) takes them at the top level.
                logits = network(batch.get(DataKeys.INPUT, batch))
                chances = torch.softmax(logits.float(), dim=-1)
                predicted += [labels[i] for i in chances.argmax(dim=-1).tolist()]
                probabilities += chances[:, positive].tolist()
    finally:
        network.train(was_training)
    return predicted, probabilities


class SentimentClassifier:
    """The ``python_function`` implementation: reviews in, labels and probabilities out."""

    def __init__(self, network) -> None:
        self.network = network

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> pd.DataFrame:
        labels, probabilities = classify(self.network, review_texts(model_input))
        return pd.DataFrame({"label": labels, "positive_probability": probabilities})


def _load_pyfunc(path: str, model_config: dict[str, Any] | None = None) -> SentimentClassifier:
    """Called by ``mlflow.pyfunc.load_model`` with the model's ``data`` folder."""
    import mlflow.pytorch

    model_folder = os.path.dirname(os.path.abspath(path))
    return SentimentClassifier(mlflow.pytorch.load_model(model_folder, map_location="cpu"))


def save_model(path: str, mlflow_model: Model | None = None, pytorch_model=None, *,
               signature: ModelSignature = SIGNATURE, input_example: Any = EXAMPLE_REVIEWS,
               pip_requirements: list[str] | None = None, **kwargs) -> None:
    """Save ``pytorch_model`` at ``path`` with the ``pytorch`` flavor and this module as its
    ``python_function`` loader. ``kwargs`` that ``Model.log`` adds for itself are ignored."""
    import mlflow.pyfunc
    import mlflow.pytorch

    mlflow_model = mlflow_model or Model()
    mlflow.pytorch.save_model(
        pytorch_model, path, mlflow_model=mlflow_model, code_paths=[_this_file()],
        signature=signature, input_example=input_example, pip_requirements=pip_requirements,
        # The module holds its tokenizer and flash's Python objects, which torch.export (pt2,
        # MLflow 3's default) cannot trace: it is saved as a pickle.
        serialization_format="pickle",
    )
    pytorch_flavor = mlflow_model.flavors["pytorch"]
    generic = mlflow_model.flavors["python_function"]
    mlflow.pyfunc.add_to_model(
        mlflow_model, loader_module=LOADER_MODULE, data=pytorch_flavor["model_data"],
        code=pytorch_flavor.get("code"), conda_env=generic["env"]["conda"],
        python_env=generic["env"]["virtualenv"],
    )
    mlflow_model.save(os.path.join(path, "MLmodel"))


def log_model(pytorch_model, name: str = "model", *, signature: ModelSignature = SIGNATURE,
              input_example: Any = EXAMPLE_REVIEWS, pip_requirements: list[str] | None = None,
              **kwargs):
    """``mlflow.models.Model.log`` with this flavor: log the classifier in the active run, as
    ``mlflow.pytorch.log_model`` would, with a ``python_function`` flavor that takes texts."""
    return Model.log(artifact_path=None, name=name, flavor=sys.modules[__name__],
                     pytorch_model=pytorch_model, signature=signature,
                     input_example=input_example, pip_requirements=pip_requirements, **kwargs)


def _this_file() -> str:
    path = os.path.abspath(__file__)
    if os.path.basename(path) != f"{LOADER_MODULE}.py":
        raise RuntimeError(f"{path} must be named {LOADER_MODULE}.py: logged models import it so.")
    return path
