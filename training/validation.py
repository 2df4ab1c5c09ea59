"""Validation loss: the one definition of an LM's loss and perplexity on a packed split.

`evaluate_lm` is the single definition of validation/test loss, used by both
training loops (validation), the test step and the learning curve, so the numbers
are comparable everywhere: the mean negative log-likelihood per predicted token
(token-weighted over the whole split, not a mean of batch means). For MLM the
masked positions come from a fixed seed (see BlockDataset), so every run scores the
same masks. Training machinery: the evaluation layer (evaluation/testset.py, the test
action) builds on it, never the other way round."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset
from transformers import PreTrainedModel

import training.distributed as distributed
from custom_models import is_causal
from pretraining_dataset import BlockDataset, CLMCollator, stack_blocks
from training.hardware import autocast

EVAL_MASK_SEED = 1234  # fixed masking of MLM validation/test blocks


@torch.no_grad()
def evaluate_lm(model: PreTrainedModel, dataset: Dataset, collator, batch_size: int,
                device: torch.device, precision: str = "fp32") -> dict[str, float]:
    """Token-weighted mean loss and perplexity of `model` on `dataset`.

    With several processes (see training/distributed.py) every rank scores every world_size-th
    block and the sums are added up, so every rank gets the same whole-split result."""
    was_training = model.training
    model.eval()
    causal = is_causal(model.config.model_type)
    total_nll, total_tokens = 0.0, 0
    world = distributed.world_size()
    if world > 1:
        dataset = Subset(dataset, range(distributed.rank(), len(dataset), world))
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collator):
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast(device, precision):
            logits = model(input_ids=batch["input_ids"]).logits
        labels = batch["labels"]
        if causal:  # position t predicts token t+1
            logits, labels = logits[:, :-1], labels[:, 1:]
        nll = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), labels.reshape(-1),
                              ignore_index=-100, reduction="sum")
        total_nll += nll.item()
        total_tokens += int((labels != -100).sum())
    model.train(was_training)
    total_nll, total_tokens = distributed.sum_across([total_nll, total_tokens])
    total_tokens = int(total_tokens)
    loss = total_nll / max(total_tokens, 1)
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "tokens": total_tokens}


def spread_blocks(blocks, count: int | None):
    """`count` blocks evenly spaced over `blocks` (all when count is None or not smaller), so every
    validation file keeps its share and the same blocks are chosen every time (--eval_blocks)."""
    if count is None or count >= len(blocks):
        return blocks
    return blocks[np.linspace(0, len(blocks) - 1, count).round().astype(np.int64)]


def eval_dataset(blocks, tokenizer, causal: bool, mlm_probability: float) -> BlockDataset:
    """A validation/test dataset: plain blocks for causal LMs, fixed masks for MLMs."""
    if causal:
        return BlockDataset(blocks)
    return BlockDataset(blocks, tokenizer, mlm_probability, fixed_mask_seed=EVAL_MASK_SEED)


def eval_collator(tokenizer, causal: bool):
    """The collator matching `eval_dataset`."""
    return CLMCollator() if causal else stack_blocks
