"""The custom loop's training loss for one batch, built once per run.

Causal LMs: the model's own loss (next-token cross-entropy), written out as body,
head and cross-entropy in one module (`CausalLMLoss`). Masked LMs (BERT):
the same mean cross-entropy over the masked tokens, but the vocabulary head (a
dense layer, a LayerNorm and the 16k-way projection) runs only at the masked
positions, about 15% of them, instead of at every position as
`BertForMaskedLM.forward` does; that head is most of a small BERT's compute
(see `make bench`). With --compile the pieces are torch.compiled; the modules
stay the model's own, so saving and validation use the plain model.

`make_objective` is what both loops train with: the plain loss above, or the
hybrid (GPT-BERT) objective, or ensemble distillation (BabyLlama), each with the
parts of the loss to log. The HF Trainer path calls it from `compute_loss` only
for those two (the stock Trainer loss otherwise)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from custom_models import body_and_head, is_causal, is_hybrid


class CausalLMLoss(torch.nn.Module):
    """Mean next-token cross-entropy of a causal LM (GPT-2, Llama), the value of the
    model's own `loss`: the body, then the vocabulary head at every position but the last
    (which predicts nothing), then cross-entropy against labels shifted by one. Written
    out so that torch.compile sees body, head and loss as one graph: HF's GPT-2 forward
    has a graph break before its loss, and HF runs the head at the last position too."""

    def __init__(self, model: PreTrainedModel) -> None:
        super().__init__()
        self.body, self.head = body_and_head(model)

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        hidden = self.body(input_ids=input_ids, use_cache=False).last_hidden_state  # no generation cache in training
        logits = self.head(hidden[:, :-1])
        return F.cross_entropy(logits.flatten(0, 1).float(), labels[:, 1:].flatten())


def make_loss_fn(model: PreTrainedModel, compile: bool = False) -> Callable[[dict], torch.Tensor]:
    """A function from a training batch ({'input_ids', 'labels'}) to its mean loss."""
    if is_causal(model.config.model_type):
        causal = CausalLMLoss(model)
        forward = torch.compile(causal) if compile else causal
        return lambda batch: forward(batch["input_ids"], batch["labels"])
    body, head = body_and_head(model)
    if compile:
        body = torch.compile(body)
        head = torch.compile(head, dynamic=True)  # the number of masked tokens changes every batch

    def masked_lm_loss(batch: dict) -> torch.Tensor:
        hidden = body(input_ids=batch["input_ids"]).last_hidden_state
        chosen = batch["labels"] != -100
        logits = head(hidden[chosen])
        return F.cross_entropy(logits.float(), batch["labels"][chosen])

    return masked_lm_loss


# --------------------------------------------------------------------------- distillation and the hybrid objective

Objective = Callable[[dict], tuple[torch.Tensor, dict[str, torch.Tensor]]]


def make_objective(model: PreTrainedModel, teachers: Sequence[PreTrainedModel] = (), alpha: float = 0.5,
                   temperature: float = 2.0, compile: bool = False) -> Objective:
    """The training loss of both loops: a function from a training batch to (mean loss,
    parts to log as TensorBoard scalars, detached).

    - plain GPT-2 / Llama / BERT: `make_loss_fn`, no parts (unchanged speed);
    - the hybrid model (gpt_bert): next-token cross-entropy in the batch's mode
      (`batch['bidirectional']`), logged as train/masked_loss or train/causal_loss;
    - with `teachers`: alpha * CE + (1 - alpha) * T^2 * KL(teacher average || student),
      both per predicted token, logged as train/ce_loss and train/distill_kl."""
    if teachers:
        return _distillation(model, list(teachers), alpha, temperature, compile)
    if is_hybrid(model.config.model_type):
        return _hybrid(model, compile)
    plain = make_loss_fn(model, compile)
    return lambda batch: (plain(batch), {})


def _hybrid(model: PreTrainedModel, compile: bool) -> Objective:
    """Both modes predict token t+1 at position t; the head runs only where there is a
    target (in masked mode the masked tokens' previous positions, about 15%)."""
    body, head = body_and_head(model)
    if compile:
        body = torch.compile(body)
        head = torch.compile(head, dynamic=True)

    def hybrid_loss(batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        bidirectional = bool(batch.get("bidirectional", False))
        hidden = body(batch["input_ids"], bidirectional=bidirectional)
        targets = batch["labels"][:, 1:]
        chosen = targets != -100
        loss = F.cross_entropy(head(hidden[:, :-1][chosen]).float(), targets[chosen])
        return loss, {"train/masked_loss" if bidirectional else "train/causal_loss": loss.detach()}

    return hybrid_loss


def _predicted_logits(model, ids: torch.Tensor, chosen: torch.Tensor, causal: bool) -> torch.Tensor:
    """Logits at the predicting positions [n_chosen, vocab]: for a causal LM position t
    (predicting token t+1, `chosen` over labels[:, 1:]), for a masked LM the masked
    positions; BERT's vocabulary head runs there only."""
    if not is_causal(model.config.model_type):
        body, head = body_and_head(model)
        return head(body(input_ids=ids).last_hidden_state[chosen])
    logits = model(input_ids=ids).logits
    return (logits[:, :-1] if causal else logits)[chosen]


def distill_kl(student_logits: torch.Tensor, teacher_logits: Sequence[torch.Tensor],
               temperature: float) -> torch.Tensor:
    """Mean over rows (predicted tokens) of KL(p || q): p the average of the teachers'
    softmax(logits / T) distributions, q the student's softmax(logits / T). float32."""
    log_q = F.log_softmax(student_logits.float() / temperature, dim=-1)
    p = sum(F.softmax(t.float() / temperature, dim=-1) for t in teacher_logits) / len(teacher_logits)
    return F.kl_div(log_q, p, reduction="none").sum(-1).mean()  # 0 * log 0 counts as 0


def _distillation(model: PreTrainedModel, teachers: list[PreTrainedModel], alpha: float, temperature: float,
                  compile: bool) -> Objective:
    causal = model.config.model_type != "bert"
    student = model
    if compile and is_causal(model.config.model_type):
        student = torch.compile(model)

    def distillation_loss(batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        ids, labels = batch["input_ids"], batch["labels"]
        targets = labels[:, 1:] if causal else labels
        chosen = targets != -100
        logits = _predicted_logits(student, ids, chosen, causal)
        with torch.no_grad():
            teacher_logits = [_predicted_logits(t, ids, chosen, causal) for t in teachers]
        ce = F.cross_entropy(logits.float(), targets[chosen])
        kl = distill_kl(logits, teacher_logits, temperature)
        loss = alpha * ce + (1.0 - alpha) * temperature ** 2 * kl
        return loss, {"train/ce_loss": ce.detach(), "train/distill_kl": kl.detach()}

    return distillation_loss


class ObjectiveModule(torch.nn.Module):
    """The model and its training objective as one module, forward(batch) -> (loss, parts):
    what DistributedDataParallel wraps in the custom loop. DDP prepares its gradient
    all-reduce in its own forward, and the objective may call parts of the model (BERT's
    body and head, the hybrid's) rather than the model itself, so the whole objective
    runs inside DDP's forward. The model is a submodule, so DDP sees its parameters; the
    (compiled) pieces the objective calls share them. Teachers are not registered: they
    have no gradients to synchronise."""

    def __init__(self, model: PreTrainedModel, objective: Objective) -> None:
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.objective(batch)
