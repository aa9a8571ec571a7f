"""A ``mean_pooling`` backbone for flash's ``TextClassifier``: the average of the token
vectors, which all-MiniLM-L6-v2 was trained for (flash's backbones use BERT's pooler output,
which it never trained). Pickled by value: a logged model loads without the course's package.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import warnings
from dataclasses import dataclass
from typing import Any

import cloudpickle
import torch
from flash.core.data.io.input import DataKeys
from flash.text import TextClassifier
from flash.text.classification.adapters import GenericAdapter, GenericCollate
from torch import Tensor, nn

MEAN_POOLING = "mean_pooling"


@contextlib.contextmanager
def quiet_loading():
    """No progress bar while transformers loads weights from disk."""
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
    """While flash builds a backbone: keep the warnings it would switch off (here and, by
    PYTHONWARNINGS, in subprocesses) and draw no progress bar."""
    from utils.env import temporary_environment

    with warnings.catch_warnings(), quiet_loading(), \
            temporary_environment(PYTHONWARNINGS=os.environ.get("PYTHONWARNINGS")):
        yield


class MeanPoolingEncoder(nn.Module):
    """A Hugging Face encoder whose output is the average of its (non-padding) token vectors."""

    def __init__(self, pretrained: str) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoModel

        config = AutoConfig.from_pretrained(pretrained)
        # No attention dropout: on a CPU it keeps PyTorch from its fast attention kernel
        # (a step twice as slow), and a short training does not need it.
        if hasattr(config, "attention_probs_dropout_prob"):
            config.attention_probs_dropout_prob = 0.0
        with quiet_loading():
            self.encoder = AutoModel.from_pretrained(pretrained, config=config)

    def forward(self, tokens: dict[str, Tensor]) -> Tensor:
        frozen = not any(p.requires_grad for p in self.encoder.parameters())
        if frozen:
            # A fixed feature extractor: no dropout, no gradients. Checked on every batch, as
            # Lightning puts every module back into training mode at each epoch.
            self.encoder.eval()
        with torch.no_grad() if frozen else contextlib.nullcontext():
            hidden = self.encoder(input_ids=tokens["input_ids"],
                                  attention_mask=tokens["attention_mask"]).last_hidden_state
        mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


@dataclass
class Tokenize:
    """Reviews to padded token tensors, cut at ``max_length`` tokens."""

    tokenizer: Any
    max_length: int

    def __call__(self, texts: list[str]) -> dict[str, Tensor]:
        encoded = self.tokenizer(list(texts), max_length=self.max_length, truncation=True,
                                 padding=True, return_tensors="pt")
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}


class TokenCollate(GenericCollate):
    """flash's generic collate, keeping the tokenizer's dictionary of tensors as it is."""

    @staticmethod
    def to_tensor(sample: dict[str, Any]) -> dict[str, Any]:
        return {key: value if key in (DataKeys.INPUT, DataKeys.METADATA) else torch.as_tensor(value)
                for key, value in sample.items()}


class MeanPoolingAdapter(GenericAdapter):
    """flash's generic adapter (encoder + linear head) around :class:`MeanPoolingEncoder`."""

    def __init__(self, backbone, num_classes: int, max_length: int = 128, head="linear",
                 pretrained: str | None = None) -> None:
        if not pretrained:
            raise ValueError(
                f"backbone={MEAN_POOLING!r} needs pretrained=<Hugging Face id or folder>")
        super().__init__(functools.partial(backbone, pretrained, max_length), num_classes,
                         max_length=max_length, head=head)
        self.collate_fn = TokenCollate(self.collate_fn.tokenizer)

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Any:
        batch = super().predict_step(batch, batch_idx, dataloader_idx)
        # flash splits a predicted batch per review: not the tokenizer's dictionary, its ids.
        batch[DataKeys.INPUT] = list(batch[DataKeys.INPUT]["input_ids"])
        return batch


def load_mean_pooling(pretrained: str, max_length: int):
    """The registry's loader: ``(encoder, tokenizer, number of features)``."""
    from transformers import AutoTokenizer

    encoder = MeanPoolingEncoder(pretrained)
    tokenizer = Tokenize(AutoTokenizer.from_pretrained(pretrained, use_fast=True), max_length)
    return encoder, tokenizer, int(encoder.encoder.config.hidden_size)


if MEAN_POOLING not in TextClassifier.backbones.available_keys():
    TextClassifier.backbones(load_mean_pooling, name=MEAN_POOLING, adapter=MeanPoolingAdapter)
# A logged model then carries these classes with it (see the module's docstring).
cloudpickle.register_pickle_by_value(sys.modules[__name__])
