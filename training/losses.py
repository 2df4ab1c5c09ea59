"""The custom loop's training loss for one batch, built once per run.

Causal LMs: the model's own loss (next-token cross-entropy), written out as body,
head and cross-entropy in one module (`CausalLMLoss`); eager, the head and its
cross-entropy are one chunked step (`linear_cross_entropy`) that never holds the whole
[tokens, vocabulary] logits (the hybrid's objective uses it too). Masked LMs (BERT):
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

# Logits a chunk of `linear_cross_entropy` holds at once (32 MB in float32): 512 rows of a 16k vocabulary.
# Measured on a 2-core AMD EPYC, one thread, the step2 GPT-2's 4096-token batch: 256 to 512 rows were
# equally fast, 2048 rows 2% slower, the whole batch at once (the plain loss) 12-15% slower.
CHUNK_LOGITS = 1 << 23


class _LinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of `hidden @ weight.T` against `targets`, chunk by chunk, with both
    gradients computed in the forward pass (softmax minus one-hot, times the weight and the
    hidden states). The full [tokens, vocabulary] logits, their log-softmax and their
    gradient (three tensors of 260 MB for the step2 GPT-2's batch) never exist: a chunk's
    logits are used while they are in cache, and nothing but the two gradients is kept for
    backward. The same three matrix products as the plain loss, so the same FLOPs; it is the
    memory traffic that goes (see docs/speed.md). Under autocast the products run in the
    autocast dtype and the softmax in float32, as the plain loss does."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        device = hidden.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype
        with torch.autocast(device, enabled=False):
            h, w = hidden.to(dtype), weight.to(dtype)
            grad_hidden = torch.empty_like(h)
            grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
            total = torch.zeros((), dtype=torch.float32, device=hidden.device)
            rows = max(1, CHUNK_LOGITS // weight.size(0))
            for start in range(0, h.size(0), rows):
                chunk, target = h[start:start + rows], targets[start:start + rows]
                logits = (chunk @ w.T).float()
                log_z = torch.logsumexp(logits, dim=-1)
                total += (log_z - logits.gather(1, target[:, None])[:, 0]).sum()
                probs = logits.sub_(log_z[:, None]).exp_()  # softmax, in place: d loss / d logits, times n
                probs[torch.arange(len(target), device=probs.device), target] -= 1.0
                probs = probs.to(dtype)
                torch.mm(probs, w, out=grad_hidden[start:start + rows])
                grad_weight += (probs.T @ chunk).float()
        n = max(h.size(0), 1)
        ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.n, ctx.dtypes = n, (hidden.dtype, weight.dtype)
        return total / n if h.size(0) else total.new_tensor(float("nan"))  # as F.cross_entropy: nan when empty

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):
        grad_hidden, grad_weight = ctx.saved_tensors
        scale = grad_loss / ctx.n
        hidden_dtype, weight_dtype = ctx.dtypes
        grad_hidden = (grad_hidden * scale.to(grad_hidden.dtype)).to(hidden_dtype)
        return grad_hidden, (grad_weight * scale).to(weight_dtype), None


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """`F.cross_entropy(hidden @ weight.T, targets)` (mean; positions whose target is -100 left
    out) without materialising the logits: see `_LinearCrossEntropy`. `hidden` is [tokens, hidden]."""
    kept = targets != -100
    if not bool(kept.all()):
        hidden, targets = hidden[kept], targets[kept]
    return _LinearCrossEntropy.apply(hidden, weight, targets)


def _plain_head(head: torch.nn.Module) -> torch.Tensor | None:
    """The head's weight when the head is one bias-free linear map (GPT-2, Llama, the hybrid), the
    case `linear_cross_entropy` computes; None otherwise (BERT's dense + LayerNorm + projection)."""
    if type(head) is torch.nn.Linear and head.bias is None:
        return head.weight
    return None


class CausalLMLoss(torch.nn.Module):
    """Mean next-token cross-entropy of a causal LM (GPT-2, Llama), the value of the
    model's own `loss`: the body, then the vocabulary head at every position but the last
    (which predicts nothing), then cross-entropy against labels shifted by one.

    Eager: the head and the loss are `linear_cross_entropy`, chunked, 10-15% faster per step
    on a float32 CPU than the model's own loss (docs/speed.md). Compiled (`fused=False`):
    written out as body, head and cross-entropy so that torch.compile sees them as one graph
    (HF's GPT-2 forward has a graph break before its loss) and fuses the loss itself."""

    def __init__(self, model: PreTrainedModel, fused: bool = True) -> None:
        super().__init__()
        self.body, self.head = body_and_head(model)
        self.fused = fused and _plain_head(self.head) is not None

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        hidden = self.body(input_ids=input_ids, use_cache=False).last_hidden_state  # no generation cache in training
        targets = labels[:, 1:].flatten()
        if self.fused:
            return linear_cross_entropy(hidden[:, :-1].flatten(0, 1), self.head.weight, targets)
        logits = self.head(hidden[:, :-1])
        return F.cross_entropy(logits.flatten(0, 1).float(), targets)


def make_loss_fn(model: PreTrainedModel, compile: bool = False) -> Callable[[dict], torch.Tensor]:
    """A function from a training batch ({'input_ids', 'labels'}) to its mean loss."""
    if is_causal(model.config.model_type):
        causal = CausalLMLoss(model, fused=not compile)
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
    fused = None if compile else _plain_head(head)  # eager: the chunked head and loss (see CausalLMLoss)
    if compile:
        body = torch.compile(body)
        head = torch.compile(head, dynamic=True)

    def hybrid_loss(batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        bidirectional = bool(batch.get("bidirectional", False))
        hidden = body(batch["input_ids"], bidirectional=bidirectional)
        targets = batch["labels"][:, 1:]
        chosen = targets != -100
        if fused is not None:
            loss = linear_cross_entropy(hidden[:, :-1][chosen], fused, targets[chosen])
        else:
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
