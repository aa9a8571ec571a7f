"""A custom MLflow flavor of the course's classifier: the ``pytorch`` flavor plus a
``python_function`` whose ``predict`` takes review texts (notebook 05 explains it). It
travels in the model's ``code/`` folder: it imports only what the model's requirements name.
"""

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

# One unnamed column, so that a list of reviews fits; ``any``, as the model server would turn
# a number (or a JSON null) into the text "3" (or "None") before the model could refuse it.
SIGNATURE = ModelSignature(inputs=Schema([ColSpec(AnyType())]), outputs=Schema(
    [ColSpec("string", "label"), ColSpec("double", "positive_probability")]))
EXAMPLE_REVIEWS = [
    "A moving story with wonderful actors. I loved every minute of it.",
    "Two hours of my life I will never get back. Dull, predictable and badly acted.",
]
REVIEW_COLUMN = "review"
LOADER_MODULE = "sentiment_model"  # this file's name in a logged model's code/ folder
BATCH_SIZE = 32


def _bad_input(message: str) -> MlflowException:
    # INVALID_PARAMETER_VALUE: MLflow's model server answers it with HTTP 400, not 500.
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def review_texts(model_input: Any) -> list[str]:
    """The texts of a string, a list, a Series, or a DataFrame of one ``review`` column (or an
    unnamed one, as MLflow makes from a list)."""
    if isinstance(model_input, str):
        model_input = [model_input]
    if isinstance(model_input, pd.DataFrame):
        names = [str(column) for column in model_input.columns]
        if len(names) != 1 or names[0] not in (REVIEW_COLUMN, "0"):
            raise _bad_input(
                f"Give the reviews as a list of strings or in one column named {REVIEW_COLUMN!r}; "
                f"got the columns {names}.")
        model_input = model_input.iloc[:, 0]
    if isinstance(model_input, pd.Series) or type(model_input).__name__ == "ndarray":
        model_input = model_input.tolist()
    if not isinstance(model_input, (list, tuple)):
        raise _bad_input(
            f"Give the reviews as a list of strings or a DataFrame with a {REVIEW_COLUMN!r} "
            f"column; got {type(model_input).__name__}.")
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
    """``(labels, probabilities of the positive label)`` of the reviews, from a run's module."""
    import torch
    from flash.core.data.io.input import DataKeys

    labels = list(network.hparams["labels"])
    collate = network.adapter.collate_fn
    positive = labels.index("positive") if "positive" in labels else len(labels) - 1
    reviews = list(reviews)
    was_training = network.training
    network.eval()
    predicted, probabilities = [], []
    try:
        with torch.inference_mode():
            for start in range(0, len(reviews), batch_size):
                texts = reviews[start:start + batch_size]
                batch = collate([{DataKeys.INPUT: text} for text in texts])
                # Mean pooling's adapter nests the tokens under INPUT; flash's own, not.
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
    """Save with the ``pytorch`` flavor and this module as ``python_function`` loader."""
    import mlflow.pyfunc
    import mlflow.pytorch

    mlflow_model = mlflow_model or Model()
    mlflow.pytorch.save_model(
        pytorch_model, path, mlflow_model=mlflow_model, code_paths=[os.path.abspath(__file__)],
        signature=signature, input_example=input_example, pip_requirements=pip_requirements,
        # torch.export (pt2, MLflow 3's default) cannot trace the tokenizer and flash's objects.
        serialization_format="pickle")
    pytorch_flavor = mlflow_model.flavors["pytorch"]
    generic = mlflow_model.flavors["python_function"]
    mlflow.pyfunc.add_to_model(
        mlflow_model, loader_module=LOADER_MODULE, data=pytorch_flavor["model_data"],
        code=pytorch_flavor.get("code"), conda_env=generic["env"]["conda"],
        python_env=generic["env"]["virtualenv"])
    mlflow_model.save(os.path.join(path, "MLmodel"))


def log_model(pytorch_model, name: str = "model", **kwargs):
    """``mlflow.pytorch.log_model`` with this flavor (``kwargs``: those of :func:`save_model`)."""
    return Model.log(artifact_path=None, name=name, flavor=sys.modules[__name__],
                     pytorch_model=pytorch_model, **kwargs)
