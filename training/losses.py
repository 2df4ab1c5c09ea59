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
for those two and for --z_loss and --document_mask (the stock Trainer loss otherwise).
--z_loss adds X * mean(logsumexp(logits)^2) over the predicted tokens to every one of them.

Every loss passes a batch's 'attention_mask' (--document_mask: [batch, query, key] booleans,
training/objective.py `document_attention_mask`) on to the model: the hybrid's body takes it
as it is, HF's bodies as the additive 4D mask of `mask_keywords`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from custom_models import body_and_head, is_causal, is_hybrid
from training.objective import MASKING_KERNELS
from utils import UserError

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
    autocast dtype and the softmax in float32, as the plain loss does.

    With `z_loss` X > 0 the loss is the mean cross-entropy plus X times the mean squared
    log-partition (logsumexp of the logits) of the same rows (PaLM's z-loss, in GPT-BERT's
    recipe): it keeps the logits from drifting, and its gradient w.r.t. a row's logits,
    2 X logsumexp times the softmax, is added to the softmax in the same chunk loop. Returns
    (loss, the z term X * mean logsumexp^2, which carries no gradient of its own)."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                z_loss: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        device = hidden.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype
        with torch.autocast(device, enabled=False):
            h, w = hidden.to(dtype), weight.to(dtype)
            grad_hidden = torch.empty_like(h)
            grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
            total = torch.zeros((), dtype=torch.float32, device=hidden.device)
            z_total = torch.zeros((), dtype=torch.float32, device=hidden.device)
            rows = max(1, CHUNK_LOGITS // weight.size(0))
            for start in range(0, h.size(0), rows):
                chunk, target = h[start:start + rows], targets[start:start + rows]
                logits = (chunk @ w.T).float()
                log_z = torch.logsumexp(logits, dim=-1)
                total += (log_z - logits.gather(1, target[:, None])[:, 0]).sum()
                probs = logits.sub_(log_z[:, None]).exp_()  # softmax, in place: d loss / d logits, times n
                if z_loss:  # d (X lse^2) / d logits = 2 X lse softmax; skipped at 0, so the plain loss is unchanged
                    z_total += log_z.square().sum()
                    probs.mul_((1.0 + 2.0 * z_loss * log_z)[:, None])
                probs[torch.arange(len(target), device=probs.device), target] -= 1.0
                probs = probs.to(dtype)
                torch.mm(probs, w, out=grad_hidden[start:start + rows])
                grad_weight += (probs.T @ chunk).float()
        n = max(h.size(0), 1)
        ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.n, ctx.dtypes = n, (hidden.dtype, weight.dtype)
        if not h.size(0):  # as F.cross_entropy: nan when empty
            loss, z_term = total.new_tensor(float("nan")), total.new_tensor(float("nan"))
        else:
            loss, z_term = ((total + z_loss * z_total) / n if z_loss else total / n), z_loss * z_total / n
        ctx.mark_non_differentiable(z_term)
        return loss, z_term

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor, grad_z_term: torch.Tensor | None = None):
        grad_hidden, grad_weight = ctx.saved_tensors
        scale = grad_loss / ctx.n
        hidden_dtype, weight_dtype = ctx.dtypes
        grad_hidden = (grad_hidden * scale.to(grad_hidden.dtype)).to(hidden_dtype)
        return grad_hidden, (grad_weight * scale).to(weight_dtype), None, None


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, z_loss: float = 0.0,
                         return_z: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]:
    """`F.cross_entropy(hidden @ weight.T, targets)` (mean; positions whose target is -100 left
    out) without materialising the logits: see `_LinearCrossEntropy`. `hidden` is [tokens, hidden].
    With `z_loss` X: plus X * mean(logsumexp(logits)^2) over the same rows. With `return_z`:
    (loss, that z term, detached; None when X is 0)."""
    kept = targets != -100
    if not bool(kept.all()):
        hidden, targets = hidden[kept], targets[kept]
    loss, z_term = _LinearCrossEntropy.apply(hidden, weight, targets, z_loss)
    if return_z:
        return loss, z_term if z_loss else None
    return loss


def cross_entropy_z(logits: torch.Tensor, targets: torch.Tensor,
                    z_loss: float = 0.0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The written-out (compiled) counterpart of `linear_cross_entropy(..., return_z=True)` on
    logits [rows, vocabulary]: (mean cross-entropy in float32, -100 targets left out, plus
    X * mean(logsumexp^2) over the same rows; the z term detached, None when X is 0)."""
    logits = logits.float()
    loss = F.cross_entropy(logits, targets)
    if not z_loss:
        return loss, None
    kept = targets != -100
    z_term = z_loss * torch.logsumexp(logits[kept], dim=-1).square().mean()
    return loss + z_term, z_term.detach()


def _plain_head(head: torch.nn.Module) -> torch.Tensor | None:
    """The head's weight when the head is one bias-free linear map (GPT-2, Llama, the hybrid), the
    case `linear_cross_entropy` computes; None otherwise (BERT's dense + LayerNorm + projection)."""
    if type(head) is torch.nn.Linear and head.bias is None:
        return head.weight
    return None


def additive(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A boolean may-attend mask (any shape) as the float one attention adds to its scores: 0, or
    the dtype's lowest value. Training's document masks and the zero-shot scorer's trees both."""
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(~allowed,
                                                                                        torch.finfo(dtype).min)


def additive_mask(allowed: torch.Tensor, causal: bool, dtype: torch.dtype) -> torch.Tensor:
    """[batch, query, key] may-attend booleans as the float [batch, 1, query, key] mask that HF's
    eager and sdpa attention add to their scores (0, or the dtype's lowest value), one head
    broadcast to all (as evaluation/scoring.py `hidden_states`). With a 4D mask HF's causal
    models no longer add the causal part themselves, so `causal` ANDs in the lower triangle."""
    if causal:
        n = allowed.size(-1)
        allowed = allowed & torch.ones(n, n, dtype=torch.bool, device=allowed.device).tril()
    return additive(allowed, dtype)[:, None]


def mask_keywords(model: PreTrainedModel, causal: bool) -> Callable[[torch.Tensor | None], dict]:
    """A function from a batch's 'attention_mask' ([batch, query, key] booleans, or None) to the
    keywords that restrict `model` (or its body) to it: the hybrid takes the booleans as they are
    (its body adds the causal part itself unless bidirectional); HF's GPT-2, Llama and BERT the
    additive mask (`additive_mask`, `causal` for the causal LMs) in their parameters' dtype
    (autocast casts it with the scores). Kernel and dtype are read once, outside any compiled call."""
    if is_hybrid(model.config.model_type):
        return lambda allowed: {} if allowed is None else {"attention_mask": allowed}
    kernel, dtype = model.config._attn_implementation, model.dtype

    def keywords(allowed: torch.Tensor | None) -> dict:
        if allowed is None:
            return {}
        if kernel not in MASKING_KERNELS:  # flash and flex attention take no [query, key] mask
            raise UserError(f"--document_mask needs eager or sdpa attention, but the model runs {kernel}: pass "
                            "--attn_implementation eager or sdpa")
        return {"attention_mask": additive_mask(allowed, causal, dtype)}

    return keywords


class CausalLMLoss(torch.nn.Module):
    """Mean next-token cross-entropy of a causal LM (GPT-2, Llama), the value of the
    model's own `loss`: the body, then the vocabulary head at every position but the last
    (which predicts nothing), then cross-entropy against labels shifted by one.

    Eager: the head and the loss are `linear_cross_entropy`, chunked, 10-15% faster per step
    on a float32 CPU than the model's own loss (docs/speed.md). Compiled (`fused=False`):
    written out as body, head and cross-entropy so that torch.compile sees them as one graph
    (HF's GPT-2 forward has a graph break before its loss) and fuses the loss itself."""

    def __init__(self, model: PreTrainedModel, fused: bool = True, z_loss: float = 0.0) -> None:
        super().__init__()
        self.body, self.head = body_and_head(model)
        self.fused = fused and _plain_head(self.head) is not None
        self.z_loss = z_loss
        self.masks = mask_keywords(model, causal=True)

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor,
                attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(mean loss, its --z_loss term, detached; None without one). `attention_mask`: --document_mask's
        [batch, query, key] booleans (made causal here), or None for plain causal attention."""
        # use_cache=False: no generation cache in training
        hidden = self.body(input_ids=input_ids, use_cache=False, **self.masks(attention_mask)).last_hidden_state
        targets = labels[:, 1:].flatten()
        if self.fused:
            return linear_cross_entropy(hidden[:, :-1].flatten(0, 1), self.head.weight, targets, self.z_loss,
                                        return_z=True)
        logits = self.head(hidden[:, :-1])
        return cross_entropy_z(logits.flatten(0, 1), targets, self.z_loss)


def _plain_loss(model: PreTrainedModel, compile: bool = False,
                z_loss: float = 0.0) -> Callable[[dict], tuple[torch.Tensor, torch.Tensor | None]]:
    """`make_loss_fn` with the --z_loss term beside the loss: batch -> (loss, z term or None)."""
    if is_causal(model.config.model_type):
        causal = CausalLMLoss(model, fused=not compile, z_loss=z_loss)
        forward = torch.compile(causal) if compile else causal
        return lambda batch: forward(batch["input_ids"], batch["labels"], batch.get("attention_mask"))
    body, head = body_and_head(model)
    masks = mask_keywords(model, causal=False)
    if compile:
        body = torch.compile(body)
        head = torch.compile(head, dynamic=True)  # the number of masked tokens changes every batch

    def masked_lm_loss(batch: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        hidden = body(input_ids=batch["input_ids"], **masks(batch.get("attention_mask"))).last_hidden_state
        chosen = batch["labels"] != -100
        logits = head(hidden[chosen])
        return cross_entropy_z(logits, batch["labels"][chosen], z_loss)

    return masked_lm_loss


def make_loss_fn(model: PreTrainedModel, compile: bool = False, z_loss: float = 0.0) -> Callable[[dict], torch.Tensor]:
    """A function from a training batch ({'input_ids', 'labels'}, and --document_mask's
    'attention_mask') to its mean loss (with `z_loss` X: plus X * mean(logsumexp(logits)^2) over
    the predicted tokens)."""
    loss_fn = _plain_loss(model, compile, z_loss)
    return lambda batch: loss_fn(batch)[0]


# --------------------------------------------------------------------------- distillation and the hybrid objective

Objective = Callable[[dict], tuple[torch.Tensor, dict[str, torch.Tensor]]]


def make_objective(model: PreTrainedModel, teachers: Sequence[PreTrainedModel] = (), alpha: float = 0.5,
                   temperature: float = 2.0, compile: bool = False, z_loss: float = 0.0) -> Objective:
    """The training loss of both loops: a function from a training batch to (mean loss,
    parts to log as TensorBoard scalars, detached).

    - plain GPT-2 / Llama / BERT: `make_loss_fn`, no parts (unchanged speed);
    - the hybrid model (gpt_bert): next-token cross-entropy in the batch's mode
      (`batch['bidirectional']`), logged as train/masked_loss or train/causal_loss; a batch
      that holds both (--hybrid_mix batch, `batch['masked_rows']`) weighs them by
      `batch['masked_share']`;
    - with `teachers`: alpha * CE + (1 - alpha) * T^2 * KL(teacher average || student),
      both per predicted token, logged as train/ce_loss and train/distill_kl.
    With `z_loss` X > 0 each adds X * mean(logsumexp(logits)^2) over the predicted tokens (in the
    hybrid's mixed batch, per part with the parts' weights), logged as train/z_loss; the other
    parts stay cross-entropies, comparable with runs without it. Each passes the batch's
    'attention_mask' (--document_mask), if any, to every model it runs (`mask_keywords`)."""
    if teachers:
        return _distillation(model, list(teachers), alpha, temperature, compile, z_loss)
    if is_hybrid(model.config.model_type):
        return _hybrid(model, compile, z_loss)
    plain = _plain_loss(model, compile, z_loss)
    if not z_loss:
        return lambda batch: (plain(batch)[0], {})

    def with_z(batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss, z_term = plain(batch)
        return loss, {"train/z_loss": z_term}

    return with_z


def _hybrid(model: PreTrainedModel, compile: bool, z_loss: float = 0.0) -> Objective:
    """Both modes predict token t+1 at position t; the head runs only where there is a
    target (in masked mode the masked tokens' previous positions, about 15%)."""
    body, head = body_and_head(model)
    fused = None if compile else _plain_head(head)  # eager: the chunked head and loss (see CausalLMLoss)
    if compile:
        body = torch.compile(body)
        head = torch.compile(head, dynamic=True)

    def part(ids: torch.Tensor, labels: torch.Tensor, bidirectional: bool,
             allowed: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(loss, z term or None) of sequences all in one mode; `allowed` their document mask or None."""
        hidden = body(ids, allowed, bidirectional=bidirectional)  # the body adds the causal part itself
        targets = labels[:, 1:]
        chosen = targets != -100
        if fused is not None:
            return linear_cross_entropy(hidden[:, :-1][chosen], fused, targets[chosen], z_loss, return_z=True)
        return cross_entropy_z(head(hidden[:, :-1][chosen]), targets[chosen], z_loss)

    def hybrid_loss(batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if batch.get("masked_rows") is not None:
            return mixed_loss(batch)
        bidirectional = bool(batch.get("bidirectional", False))
        loss, z_term = part(batch["input_ids"], batch["labels"], bidirectional, batch.get("attention_mask"))
        tag = "train/masked_loss" if bidirectional else "train/causal_loss"
        if z_term is None:
            return loss, {tag: loss.detach()}
        return loss, {tag: loss.detach() - z_term, "train/z_loss": z_term}

    def mixed_loss(batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The first `masked_rows` sequences masked (bidirectional), the rest causal: p * mean masked
        loss + (1 - p) * mean causal loss, p the step's masked share. Weighted by share, not by
        token count, as GPT-BERT's authors do (15 of 16 GPUs masked, 1 causal, each GPU's loss a
        mean over its own tokens), so the ~15% of masked targets per sequence do not shrink the
        masked objective against the causal one's ~100%. A part with no sequence is left out."""
        n, share = int(batch["masked_rows"]), float(batch["masked_share"])
        ids, labels, allowed = batch["input_ids"], batch["labels"], batch.get("attention_mask")
        masked_mask, causal_mask = (None, None) if allowed is None else (allowed[:n], allowed[n:])
        found = []  # (weight, tag, loss, z term)
        if n > 0:
            found.append((share, "train/masked_loss", *part(ids[:n], labels[:n], True, masked_mask)))
        if n < ids.size(0):
            found.append((1.0 - share, "train/causal_loss", *part(ids[n:], labels[n:], False, causal_mask)))
        if len(found) == 1:  # one mode only (a share of 0 or 1, or a single sequence): that part alone
            found = [(1.0, *found[0][1:])]
        loss = sum(weight * part_loss for weight, _, part_loss, _ in found)
        parts = {tag: part_loss.detach() - (z_term if z_term is not None else 0.0)
                 for _, tag, part_loss, z_term in found}
        if z_loss:
            parts["train/z_loss"] = sum(weight * z_term for weight, _, _, z_term in found)
        return loss, parts

    return hybrid_loss


def _predicted_logits(model, ids: torch.Tensor, chosen: torch.Tensor, causal: bool,
                      allowed: torch.Tensor | None = None) -> torch.Tensor:
    """Logits at the predicting positions [n_chosen, vocab]: for a causal LM position t
    (predicting token t+1, `chosen` over labels[:, 1:]), for a masked LM the masked
    positions; BERT's vocabulary head runs there only. `allowed`: --document_mask's
    [batch, query, key] booleans, or None."""
    masks = mask_keywords(model, causal=is_causal(model.config.model_type))
    if not is_causal(model.config.model_type):
        body, head = body_and_head(model)
        return head(body(input_ids=ids, **masks(allowed)).last_hidden_state[chosen])
    logits = model(input_ids=ids, **masks(allowed)).logits
    return (logits[:, :-1] if causal else logits)[chosen]


def distill_kl(student_logits: torch.Tensor, teacher_logits: Sequence[torch.Tensor],
               temperature: float) -> torch.Tensor:
    """Mean over rows (predicted tokens) of KL(p || q): p the average of the teachers'
    softmax(logits / T) distributions, q the student's softmax(logits / T). float32."""
    log_q = F.log_softmax(student_logits.float() / temperature, dim=-1)
    p = sum(F.softmax(t.float() / temperature, dim=-1) for t in teacher_logits) / len(teacher_logits)
    return F.kl_div(log_q, p, reduction="none").sum(-1).mean()  # 0 * log 0 counts as 0


def _distillation(model: PreTrainedModel, teachers: list[PreTrainedModel], alpha: float, temperature: float,
                  compile: bool, z_loss: float = 0.0) -> Objective:
    causal = model.config.model_type != "bert"
    student = model
    if compile and is_causal(model.config.model_type):
        student = torch.compile(model)

    def distillation_loss(batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        ids, labels = batch["input_ids"], batch["labels"]
        targets = labels[:, 1:] if causal else labels
        chosen = targets != -100
        allowed = batch.get("attention_mask")  # --document_mask: the teachers see the same lines only
        logits = _predicted_logits(student, ids, chosen, causal, allowed)
        with torch.no_grad():
            teacher_logits = [_predicted_logits(t, ids, chosen, causal, allowed) for t in teachers]
        ce = F.cross_entropy(logits.float(), targets[chosen])
        kl = distill_kl(logits, teacher_logits, temperature)
        loss = alpha * ce + (1.0 - alpha) * temperature ** 2 * kl
        parts = {"train/ce_loss": ce.detach(), "train/distill_kl": kl.detach()}
        if z_loss:  # on the student's logits at the predicted tokens, beside both terms
            z_term = z_loss * torch.logsumexp(logits.float(), dim=-1).square().mean()
            loss = loss + z_term
            parts["train/z_loss"] = z_term.detach()
        return loss, parts

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
