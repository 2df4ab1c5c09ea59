"""The official BabyLM fine-tuning protocol (`--finetune_protocol official`, the default),
written for this project after evaluation-pipeline-2025's `evaluation_pipeline/finetune/`
(bf55c11). evaluation/finetune.py drives a run; this module holds what makes it official:

- texts: each task's fields in the official order (`OFFICIAL_LAYOUTS`): MultiRC and WSC put
  the question first and the passage second, WSC's question ends "in this passage";
- model: the saved model loaded through `AutoModel` (trust_remote_code=True, as officially)
  under a head of its own (`ClassifierHead`: LayerNorm without weights, Linear, GELU,
  LayerNorm, Dropout 0.1, Linear; eps 1e-5), the parameters named as officially
  (`transformer.*`, `classifier.nonlinearity.{1,5}.*`); only input ids and the attention
  mask reach the model (no token types);
- pooling: the official head reads token 0. A causal decoder's token 0 has seen nothing
  else, which leaves it at the majority class (official issue #38), so GPT-2 and Llama are
  read at their last real token instead (`default_pool`; --finetune_pool first gives the
  official reading). BERT and the hybrid (bidirectional under AutoModel) read token 0;
- optimizer and schedule: AdamW over every parameter (weight decay 0.01, betas (0.9, 0.999),
  eps 1e-8), linear warm-up over int(6% of the steps), then cosine down to 0.1 of the peak;
  no gradient clipping;
- batches: the train data in a `DataLoader(shuffle=True, drop_last=True)` (the last partial
  batch is dropped) and validation in order in batches of 64, also through a DataLoader: each
  DataLoader iterator draws from torch's global generator, so the dropout masks that follow
  are the official run's too;
- files: results.txt (`name: value` lines of the best epoch's metrics, no final newline) and
  predictions.json (one line of JSON), as the official trainer writes them.

Nothing here imports the official pipeline; tests/test_finetune_official.py compares the two."""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from transformers import AutoConfig, AutoModel
from transformers.utils import logging as hf_logging

from custom_models import is_hybrid

PROTOCOLS = ("official", "ours")
POOLS = ("first", "last")
# The official trainer's defaults (evaluation_pipeline/finetune/run.py).
WEIGHT_DECAY, BETAS, EPSILON = 0.01, (0.9, 0.999), 1e-8
WARMUP_PROPORTION, MIN_FACTOR = 0.06, 0.1
HEAD_DROPOUT, HEAD_LAYER_NORM_EPS = 0.1, 1e-5
VALID_BATCH_SIZE = 64
# The optimizer and schedule values an official run uses, recorded in place of the options it ignores.
# (attn_implementation None: transformers' default for the model, as the official AutoModel call.)
OFFICIAL_RECIPE = {"weight_decay": WEIGHT_DECAY, "adam_beta1": BETAS[0], "adam_beta2": BETAS[1],
                   "adam_epsilon": EPSILON, "warmup_ratio": WARMUP_PROPORTION, "grad_norm_clip": 0.0,
                   "attn_implementation": None}

# Task -> (first text, second text), each (fields, template): the fields are put into the
# template in order, or joined by spaces without one. A task not named here has no official
# layout (the official code refuses it); it falls back to our own (finetune_data.example_texts).
OFFICIAL_LAYOUTS: dict[str, tuple[tuple[tuple[str, ...], str | None], ...]] = {
    "boolq": ((("question",), None), (("passage",), None)),
    "cola": ((("sentence",), None),),
    "mnli": ((("premise",), None), (("hypothesis",), None)),
    "mrpc": ((("sentence1",), None), (("sentence2",), None)),
    "multirc": ((("question", "answer"), "Question: {} Answer: {}"), (("paragraph",), None)),
    "qnli": ((("question",), None), (("sentence",), None)),
    "qqp": ((("question1",), None), (("question2",), None)),
    "rte": ((("sentence1",), None), (("sentence2",), None)),
    "sst2": ((("sentence",), None),),
    "wsc": ((("span2_text", "span1_text"), 'Does "{}" refer to "{}" in this passage?'), (("text",), None)),
}


# --------------------------------------------------------------------------- texts


def official_texts(task: str, record: dict) -> tuple[str, ...] | None:
    """The text(s) of one jsonl record in the official layout of `task`; None when the task has
    none. Raises KeyError naming the first field that is missing or not a string."""
    layout = OFFICIAL_LAYOUTS.get(task)
    if layout is None:
        return None
    texts = []
    for fields, template in layout:
        values = [record.get(field) for field in fields]
        for field, value in zip(fields, values, strict=True):
            if not isinstance(value, str):
                raise KeyError(field)
        texts.append(template.format(*values) if template else " ".join(values))
    return tuple(texts)


# --------------------------------------------------------------------------- model


def default_pool(model_type: str) -> str:
    """Where the head reads a model by default: the last real token of a causal decoder
    (GPT-2, Llama), the first otherwise (BERT, and the hybrid, bidirectional under AutoModel)."""
    return "last" if model_type in ("gpt2", "llama") else "first"


class ClassifierHead(nn.Module):
    """The official head: normalise, a hidden layer with GELU, normalise, dropout, the logits."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float = HEAD_DROPOUT,
                 eps: float = HEAD_LAYER_NORM_EPS) -> None:
        super().__init__()
        self.nonlinearity = nn.Sequential(
            nn.LayerNorm(hidden_size, eps, elementwise_affine=False),
            nn.Linear(hidden_size, hidden_size),
            nn.GELU(),
            nn.LayerNorm(hidden_size, eps, elementwise_affine=False),
            nn.Dropout(dropout),
            nn.Linear(hidden_size, num_labels),
        )

    def forward(self, encodings: torch.Tensor) -> torch.Tensor:
        return self.nonlinearity(encodings)


class OfficialClassifier(nn.Module):
    """A saved model's body (`transformer`) with the official head (`classifier`), read at the
    first token or at the last real one (`pool`; batches padded on the right)."""

    def __init__(self, transformer: nn.Module, hidden_size: int, num_labels: int, pool: str = "first") -> None:
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        self.transformer = transformer
        self.classifier = ClassifierHead(hidden_size, num_labels)  # built after the body, as officially
        self.pool = pool

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [batch, num_labels]. `token_type_ids` is accepted and not passed on: the
        official batches hold input ids and the attention mask only."""
        out = self.transformer(input_ids=input_ids, attention_mask=attention_mask)
        hidden = out[0] if isinstance(out, tuple) else out.last_hidden_state
        if self.pool == "last":
            last = attention_mask.long().sum(-1) - 1
            pooled = hidden[torch.arange(hidden.size(0), device=hidden.device), last]
        else:
            pooled = hidden[:, 0]
        return self.classifier(pooled)


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers prints a table of new/unused weights and a progress bar at every load; the
    caller logs one line instead."""
    verbosity, bar_enabled = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar_enabled:
            hf_logging.enable_progress_bar()


def load_official_classifier(model_dir: str | Path, num_labels: int, pool: str) -> tuple[OfficialClassifier, list[str]]:
    """`model_dir` through AutoModel (trust_remote_code=True, as officially; a hybrid folder
    whose saved config predates AutoModel in its auto_map loads the repository's GPTBertModel)
    under a fresh official head, in float32. Returns the model and its freshly initialised
    weights. Draws from torch's global generator exactly as the official model's constructor."""
    with quiet_transformers():
        config = AutoConfig.from_pretrained(model_dir, trust_remote_code=True)
        if is_hybrid(config.model_type) and "AutoModel" not in (getattr(config, "auto_map", None) or {}):
            from hybrid_model import CLASSES
            body, info = CLASSES[config.model_type][1].from_pretrained(model_dir, dtype=torch.float32,
                                                                       output_loading_info=True)
        else:
            body, info = AutoModel.from_pretrained(model_dir, trust_remote_code=True, dtype=torch.float32,
                                                   output_loading_info=True)
    model = OfficialClassifier(body, config.hidden_size, num_labels, pool)
    head = [f"classifier.{name}" for name, _ in model.classifier.named_parameters()]
    return model, sorted(f"transformer.{k}" for k in info["missing_keys"]) + head


# --------------------------------------------------------------------------- optimizer and schedule


def official_optimizer(model: nn.Module, lr: float) -> torch.optim.AdamW:
    """AdamW over every parameter in one group: weight decay 0.01 on all, betas (0.9, 0.999)."""
    return torch.optim.AdamW(model.parameters(), lr=lr, betas=BETAS, eps=EPSILON, weight_decay=WEIGHT_DECAY,
                             amsgrad=False)


def official_lr_factor(step: int, warmup_steps: int, total_steps: int, min_factor: float = MIN_FACTOR) -> float:
    """The multiplier of the peak LR at `step`: linear from 0 over `warmup_steps`, then a
    cosine from 1 down to `min_factor` at `total_steps`, and `min_factor` after it."""
    if step < warmup_steps:
        return float(step) / float(max(1, warmup_steps))
    progress = float(step - warmup_steps) / float(max(1, total_steps - warmup_steps))
    return max(min_factor, min_factor + (1 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def official_scheduler(optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The official schedule over `total_steps` optimizer steps: warm-up int(6% of them)."""
    warmup = int(WARMUP_PROPORTION * total_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: official_lr_factor(step, warmup, total_steps))


def official_step(optimizer: torch.optim.Optimizer, scheduler, scaler: torch.amp.GradScaler) -> None:
    """One update without clipping: the optimizer (through the fp16 scaler, a no-op otherwise),
    the schedule, and the gradients cleared."""
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)


# --------------------------------------------------------------------------- batches


def train_batches(size: int, batch_size: int) -> DataLoader:
    """The index batches of one training epoch: shuffled by a DataLoader as officially, whose
    iterator draws twice from torch's global generator (a base seed, then the sampler's seed);
    the last partial batch is dropped."""
    return DataLoader(range(size), batch_size=batch_size, shuffle=True, drop_last=True, collate_fn=list)


def valid_batches(size: int) -> DataLoader:
    """The index batches of one validation pass: in file order, 64 at a time; iterating it draws
    the DataLoader's base seed from the global generator, as the official validation does."""
    return DataLoader(range(size), batch_size=VALID_BATCH_SIZE, shuffle=False, collate_fn=list)


def steps_per_epoch(size: int, batch_size: int) -> int:
    """Optimizer steps in one epoch: full batches only."""
    return size // batch_size


# --------------------------------------------------------------------------- files


def official_results_text(metrics: dict[str, float], cross_fit: int = 0) -> str:
    """results.txt as the official run writes it: `name: value` per metric, no final newline;
    a cross-fitted task says so in a last line (the submission looks for CROSS-FIT)."""
    lines = [f"{name}: {value}" for name, value in metrics.items()]
    if cross_fit:
        lines.append(f"CROSS-FIT: {cross_fit} folds of the valid file (not the official protocol)")
    return "\n".join(lines)


def official_predictions_text(task: str, preds: list[int]) -> str:
    """predictions.json as the official run writes it (json.dump, one line, no final newline)."""
    return json.dumps({task: {"predictions": [{"id": f"{task}_{i}", "pred": int(p)} for i, p in enumerate(preds)]}})
