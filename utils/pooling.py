"""Mean pooling: the sentence vector a sentence encoder such as all-MiniLM-L6-v2 was trained for.

lightning-flash's Hugging Face backbones put the classification layer on BERT's *pooler
output*, a vector computed from the first ([CLS]) token by a layer that all-MiniLM-L6-v2
never trained: it was trained to represent a sentence by the average of its token vectors.
This module gives flash's ``TextClassifier`` that average, through flash's own extension
point, its backbone registry::

    TextClassifier(backbone=MEAN_POOLING, pretrained="<hub id or folder>", labels=..., ...)

The encoder is any Hugging Face model; ``strategy="freeze"`` freezes it and trains only the
linear head, as with flash's own backbones.

The classes below are pickled *by value* (cloudpickle), so a model logged with MLflow loads
wherever its pinned requirements are installed, without this course's package.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from dataclasses import dataclass
from typing import Any

import cloudpickle
import torch
from flash.core.data.io.input import DataKeys
from flash.text import TextClassifier
from flash.text.classification.adapters import GenericAdapter, GenericCollate
from torch import Tensor, nn

#: The name of the mean-pooling backbone in ``TextClassifier.backbones``.
MEAN_POOLING = "mean_pooling"


@contextlib.contextmanager
def quiet_loading():
    """No progress bar while transformers loads weights: reading 90 MB from disk is quick."""
    from transformers.utils import logging as transformers_logging

    was_on = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            transformers_logging.enable_progress_bar()


@contextlib.contextmanager
def flash_loading():
    """While flash builds one of its own Hugging Face backbones: keep the process's warnings
    (flash switches every warning off, for this process and, through PYTHONWARNINGS, its
    subprocesses) and draw no progress bar for the weights."""
    import os
    import warnings

    from utils.env import temporary_environment

    with warnings.catch_warnings(), quiet_loading(), \
            temporary_environment(PYTHONWARNINGS=os.environ.get("PYTHONWARNINGS")):
        yield


class MeanPoolingEncoder(nn.Module):
    """A Hugging Face encoder whose output is the average of its token vectors.

    Padding tokens are left out of the average (the attention mask says which they are).
    When every weight of the encoder is frozen, it runs in evaluation mode and without
    recording gradients: the head alone is trained, so nothing flows back through it.

    Dropout on the attention weights is switched off: on a CPU it keeps PyTorch from using
    its fast attention kernel and makes a training step of the whole network about twice as
    slow, and an epoch or two on a few thousand reviews does not need it (the dropout
    between layers stays).
    """

    def __init__(self, pretrained: str) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoModel

        config = AutoConfig.from_pretrained(pretrained)
        if hasattr(config, "attention_probs_dropout_prob"):  # BERT's name for it
            config.attention_probs_dropout_prob = 0.0
        with quiet_loading():
            self.encoder = AutoModel.from_pretrained(pretrained, config=config)

    @property
    def num_features(self) -> int:
        return int(self.encoder.config.hidden_size)

    def forward(self, tokens: dict[str, Tensor]) -> Tensor:
        frozen = not any(p.requires_grad for p in self.encoder.parameters())
        if frozen:
            # A frozen encoder is a fixed feature extractor: no dropout, which also lets
            # PyTorch use its fast attention kernel (Lightning puts every module back into
            # training mode at each epoch, so this is checked on every batch).
            self.encoder.eval()
        with torch.no_grad() if frozen else contextlib.nullcontext():
            hidden = self.encoder(
                input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
            ).last_hidden_state
        mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


@dataclass
class Tokenize:
    """Reviews to padded token tensors, cut at ``max_length`` tokens."""

    tokenizer: Any
    max_length: int

    def __call__(self, texts: list[str]) -> dict[str, Tensor]:
        encoded = self.tokenizer(
            list(texts), max_length=self.max_length, truncation=True, padding=True, return_tensors="pt"
        )
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}


class TokenCollate(GenericCollate):
    """flash's generic collate, keeping the tokenizer's dictionary of tensors as it is."""

    @staticmethod
    def to_tensor(sample: dict[str, Any]) -> dict[str, Any]:
        return {
            key: value if key in (DataKeys.INPUT, DataKeys.METADATA) else torch.as_tensor(value)
            for key, value in sample.items()
        }


class MeanPoolingAdapter(GenericAdapter):
    """flash's generic adapter (encoder + linear head) around :class:`MeanPoolingEncoder`."""

    def __init__(self, backbone, num_classes: int, max_length: int = 128, head="linear",
                 pretrained: str | None = None) -> None:
        if not pretrained:
            raise ValueError(f"backbone={MEAN_POOLING!r} needs pretrained=<Hugging Face id or folder>")
        super().__init__(functools.partial(backbone, pretrained, max_length), num_classes,
                         max_length=max_length, head=head)
        self.collate_fn = TokenCollate(self.collate_fn.tokenizer)

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Any:
        batch = super().predict_step(batch, batch_idx, dataloader_idx)
        # flash splits a predicted batch into one item per review; give it the token ids of
        # each review instead of the tokenizer's dictionary, which it cannot split.
        batch[DataKeys.INPUT] = list(batch[DataKeys.INPUT]["input_ids"])
        return batch


def load_mean_pooling(pretrained: str, max_length: int):
    """The registry's loader: ``(encoder, tokenizer, number of features)``."""
    from transformers import AutoTokenizer

    encoder = MeanPoolingEncoder(pretrained)
    tokenizer = Tokenize(AutoTokenizer.from_pretrained(pretrained, use_fast=True), max_length)
    return encoder, tokenizer, encoder.num_features


if MEAN_POOLING not in TextClassifier.backbones.available_keys():
    TextClassifier.backbones(load_mean_pooling, name=MEAN_POOLING, adapter=MeanPoolingAdapter)
# A logged model then carries these classes with it (see the module's docstring).
cloudpickle.register_pickle_by_value(sys.modules[__name__])
