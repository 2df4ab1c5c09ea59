"""Scores of candidate completions for the zero-shot suite: the log-probability a model
gives the tokens of a sentence that overlap its completion, under one of three backends
and one of two conventions.

Backends (as in evaluation-pipeline-2025):
- `causal`: one forward pass; token i is read from the output at position i-1.
- `mlm`: one copy of the sentence per scored token, that token replaced by the mask
  token, read at its own position (pseudo-log-likelihood).
- `mntp` (GPT-BERT): the same masked copies, bidirectional attention, the prediction
  for token i read at position i-1 (the model always predicts the next token).

Conventions:
- `official` reproduces the official scorer: the tokenizer's own special tokens are
  added, the scored tokens are those whose characters overlap the completion, token 0
  is never scored (causal: nothing predicts it), the first candidate wins a tie.
- `strict` (the research default, the pipeline's BLiMP convention): every token of the
  completion is scored, a causal model conditioned on BOS (EOS if the tokenizer has
  none) so the first word counts too; masked models mask the later sub-tokens of the
  same word as well (`within_word_l2r`, Kauf & Ivanova 2023) unless --pll_variant token;
  a tie counts as wrong.

Speed, against the official loop (kept here as `plain_scores`, the `make bench` baseline
and a cross-check in the tests): the tokenizer runs once over all sentences, identical
scoring requests run once, requests are sorted by length so a batch carries little
padding, and the vocabulary head runs only at the positions that are read."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm import tqdm
from transformers import PreTrainedModel

from custom_models import body_and_head, is_hybrid
from utils import UserError

BACKENDS = ("causal", "mlm", "mntp")
CONVENTIONS = ("official", "strict")
PLL_VARIANTS = ("within_word_l2r", "token")


@dataclass(frozen=True)
class Plan:
    """How one candidate is scored: its token ids, and for each scored token the positions
    replaced by the mask token in the copy the model sees (none for causal), the position
    the prediction is read at, and the token's id."""

    ids: tuple[int, ...]
    reads: tuple[tuple[tuple[int, ...], int, int], ...]  # (masked positions, read position, target id)

    def inputs(self, mask_id: int | None) -> list[tuple[int, ...]]:
        """The ids the model sees for each read (for tests and the plain loop)."""
        out = []
        for masked, _, _ in self.reads:
            seq = list(self.ids)
            for i in masked:
                seq[i] = mask_id
            out.append(tuple(seq))
        return out


def default_backend(model_type: str) -> str:
    """The backend a model is built for: gpt_bert -> mntp, masked LMs -> mlm, else causal."""
    from custom_models import is_causal

    if is_hybrid(model_type):
        return "mntp"
    return "causal" if is_causal(model_type) else "mlm"


def _phrase(offsets: list[tuple[int, int]], start_char: int, special: list[bool]) -> list[int]:
    """Positions of the tokens whose characters end after `start_char` (overlap the completion);
    special tokens (offsets (0, 0)) never do."""
    return [i for i, (_, end) in enumerate(offsets) if end > start_char and not special[i]]


def make_plans(tokenizer, sentences: list[str], completions: list[str], backend: str, convention: str,
               variant: str = "within_word_l2r") -> list[Plan]:
    """One Plan per (sentence, completion); the completion must be the end of its sentence."""
    if backend not in BACKENDS or convention not in CONVENTIONS:
        raise ValueError(f"backend {backend!r} / convention {convention!r}")
    if backend != "causal" and tokenizer.mask_token_id is None:
        raise UserError(f"the {backend} backend masks tokens but the tokenizer has no mask token: "
                        "pass --backend causal or a model saved with its masked-LM tokenizer")
    strict_causal = convention == "strict" and backend == "causal"
    enc = tokenizer(sentences, add_special_tokens=not strict_causal, return_offsets_mapping=True,
                    return_special_tokens_mask=True)
    prefix = None
    if strict_causal:
        prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        if prefix is None:
            raise UserError("strict causal scoring conditions on BOS, but the tokenizer has neither a BOS nor "
                            "an EOS token: pass --convention official")
    plans = []
    for k, (sentence, completion) in enumerate(zip(sentences, completions, strict=True)):
        if not sentence.endswith(completion):
            raise ValueError(f"completion {completion!r} does not end {sentence!r}")
        ids, offsets = enc["input_ids"][k], [tuple(o) for o in enc["offset_mapping"][k]]
        special = [bool(s) for s in enc["special_tokens_mask"][k]]
        start_char = len(sentence) - len(completion)
        if backend == "causal":
            if convention == "official":
                # The official scorer shifts the start by the first token's offset and never scores token 0.
                start_char += offsets[0][0] if offsets else 0
                scored = [i for i in _phrase(offsets, start_char, special) if i >= 1]
            else:
                ids = [prefix] + ids
                scored = [i + 1 for i in _phrase(offsets, start_char, special)]
            plans.append(Plan(tuple(ids), tuple(((), i - 1, ids[i]) for i in scored)))
            continue
        phrase = _phrase(offsets, start_char, special)
        shift = 1 if backend == "mntp" else 0  # mntp reads token i at position i-1
        if shift and 0 in phrase:
            raise UserError("the mntp backend reads token i at position i-1, so the tokenizer must start every "
                            "text with a special token (<s>): use the mlm tokenizer the model was trained with")
        words = enc.word_ids(k)
        reads = []
        for i in phrase:
            masked = [i]
            if convention == "strict" and variant == "within_word_l2r":
                # the rest of the word cannot give its own pieces away
                masked += [later for later in phrase if later > i and words[later] == words[i]]
            reads.append((tuple(masked), i - shift, ids[i]))
        plans.append(Plan(tuple(ids), tuple(reads)))
    return plans


def hidden_states(model: PreTrainedModel, ids: torch.Tensor, mask: torch.Tensor, bidirectional: bool) -> torch.Tensor:
    """The body's last hidden states (before the vocabulary head); gpt_bert bidirectional for mntp."""
    body, _ = body_and_head(model)
    if is_hybrid(model.config.model_type):
        return body(ids, mask, bidirectional=bidirectional)
    return body(input_ids=ids, attention_mask=mask).last_hidden_state


def _pad(seqs: list[tuple[int, ...]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and their attention mask."""
    lengths = torch.tensor([len(s) for s in seqs])
    mask = (torch.arange(int(lengths.max()))[None, :] < lengths[:, None]).long()
    ids = torch.full(mask.shape, pad_id, dtype=torch.long)
    ids[mask.bool()] = torch.tensor([t for s in seqs for t in s], dtype=torch.long)
    return ids, mask


def pad_id_of(tokenizer, backend: str) -> int:
    """The padding id, chosen as the official pipeline does when the tokenizer has none."""
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    fallback = tokenizer.eos_token_id if backend == "causal" else tokenizer.cls_token_id
    return fallback if fallback is not None else 0


@torch.no_grad()
def score_plans(model: PreTrainedModel, plans: list[Plan], backend: str, pad_id: int, mask_id: int | None = None,
                batch_size: int = 64, device: torch.device | str = "cpu", desc: str | None = None) -> list[float]:
    """Sum of log-probabilities of each plan's scored tokens, in float32.

    Each distinct input (ids and masked positions) is run once (a causal sentence carries
    all its reads; a masked copy carries one), inputs are batched by length, and the head
    runs only at the read positions."""
    inputs: dict[tuple[tuple[int, ...], tuple[int, ...]], list[tuple[int, int, int]]] = {}
    for k, plan in enumerate(plans):
        for masked, pos, target in plan.reads:
            inputs.setdefault((plan.ids, masked), []).append((k, pos, target))
    order = sorted(inputs, key=lambda key: len(key[0]))
    _, head = body_and_head(model)
    bidirectional = backend == "mntp"
    totals = torch.zeros(len(plans), dtype=torch.float64)
    model.eval()
    for start in tqdm(range(0, len(order), batch_size), desc=desc, disable=desc is None, leave=False):
        keys = order[start: start + batch_size]
        ids, mask = _pad([key[0] for key in keys], pad_id)
        masked = [(row, i) for row, key in enumerate(keys) for i in key[1]]
        if masked:
            ids[tuple(torch.tensor(masked).T)] = mask_id
        hidden = hidden_states(model, ids.to(device), mask.to(device), bidirectional)
        reads = [(row, k, pos, target) for row, key in enumerate(keys) for k, pos, target in inputs[key]]
        rows = torch.tensor([r[0] for r in reads], device=hidden.device)
        positions = torch.tensor([r[2] for r in reads], device=hidden.device)
        targets = torch.tensor([r[3] for r in reads], device=hidden.device)
        logp = torch.log_softmax(head(hidden[rows, positions]).float(), dim=-1)
        values = logp.gather(-1, targets[:, None])[:, 0].double().cpu()
        totals.index_add_(0, torch.tensor([r[1] for r in reads]), values)
    return totals.tolist()


@torch.no_grad()
def plain_scores(model: PreTrainedModel, plans_per_candidate: list[list[Plan]], backend: str, pad_id: int,
                 mask_id: int | None = None, batch_size: int = 64,
                 device: torch.device | str = "cpu") -> list[list[float]]:
    """The official pipeline's loop, for `make bench` and the tests: items in file order,
    `batch_size` items a batch, one padded forward pass per candidate slot (causal) or per
    `batch_size` masked copies (mlm, mntp), the full output through log-softmax; no sorting,
    no deduplication. `plans_per_candidate[c][i]` is candidate c of item i; returns the same."""
    bidirectional = backend == "mntp"
    scores = [[0.0] * len(plans) for plans in plans_per_candidate]
    n_items = len(plans_per_candidate[0])
    model.eval()
    for start in range(0, n_items, batch_size):
        for c, plans in enumerate(plans_per_candidate):
            batch = plans[start: start + batch_size]
            if backend == "causal":
                ids, mask = _pad([p.ids for p in batch], pad_id)
                logits = _logits(model, ids.to(device), mask.to(device), bidirectional)
                logp = torch.log_softmax(logits.float(), dim=-1)
                for row, plan in enumerate(batch):
                    scores[c][start + row] = sum(logp[row, pos, target].item() for _, pos, target in plan.reads)
                continue
            jobs = [(row, seq, read[1], read[2]) for row, plan in enumerate(batch)
                    for seq, read in zip(plan.inputs(mask_id), plan.reads, strict=True)]
            for j in range(0, len(jobs), batch_size):
                chunk = jobs[j: j + batch_size]
                ids, mask = _pad([job[1] for job in chunk], pad_id)
                logp = torch.log_softmax(_logits(model, ids.to(device), mask.to(device), bidirectional).float(), -1)
                for n, (row, _, pos, target) in enumerate(chunk):
                    scores[c][start + row] += logp[n, pos, target].item()
    return scores


def _logits(model: PreTrainedModel, ids: torch.Tensor, mask: torch.Tensor, bidirectional: bool) -> torch.Tensor:
    """The model's full output (every position through the head), as the official pipeline gets it."""
    if is_hybrid(model.config.model_type):
        return model(input_ids=ids, attention_mask=mask, bidirectional=bidirectional).logits
    return model(input_ids=ids, attention_mask=mask).logits
