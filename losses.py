"""The custom loop's training loss for one batch, built once per run.

Causal LMs: the model's own loss (next-token cross-entropy). Masked LMs (BERT):
the same mean cross-entropy over the masked tokens, but the vocabulary head (a
dense layer, a LayerNorm and the 16k-way projection) runs only at the masked
positions, about 15% of them, instead of at every position as
`BertForMaskedLM.forward` does; that head is most of a small BERT's compute
(see `make bench`). With --compile the pieces are torch.compiled; the modules
stay the model's own, so saving and validation use the plain model."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from transformers import BertForMaskedLM, PreTrainedModel


def make_loss_fn(model: PreTrainedModel, compile: bool = False) -> Callable[[dict], torch.Tensor]:
    """A function from a training batch ({'input_ids', 'labels'}) to its mean loss."""
    if not isinstance(model, BertForMaskedLM):
        forward = torch.compile(model) if compile else model
        return lambda batch: forward(**batch).loss
    body, head = model.bert, model.cls
    if compile:
        body = torch.compile(body)
        head = torch.compile(head, dynamic=True)  # the number of masked tokens changes every batch

    def masked_lm_loss(batch: dict) -> torch.Tensor:
        hidden = body(input_ids=batch["input_ids"]).last_hidden_state
        chosen = batch["labels"] != -100
        logits = head(hidden[chosen])
        return F.cross_entropy(logits.float(), batch["labels"][chosen])

    return masked_lm_loss
