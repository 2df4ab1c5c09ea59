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
and a cross-check in the tests), with the same arithmetic: the tokenizer runs once over all
sentences; identical scoring requests run once; a causal model reads every sentence of a
task as prefix trees, so that a shared prefix (an entity-tracking context, the start of a
BLiMP pair) is computed once; batches are sorted by length and sized in tokens, not
sentences; and the vocabulary head runs only at the positions that are read."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm
from transformers import BertModel, PreTrainedModel

from custom_models import body_and_head, is_causal, is_hybrid
from training.losses import additive
from training.objective import MASKING_KERNELS
from utils import UserError

BACKENDS = ("causal", "mlm", "mntp")
CONVENTIONS = ("official", "strict")
PLL_VARIANTS = ("within_word_l2r", "token")
# Tokens a forward pass carries, padding included. Measured on a 2-core Xeon with the step2
# sizes (ad-hoc runs of score_plans): 2k-8k tokens equally fast; 64 masked copies of BLiMP-length
# sentences a pass (~800 tokens) 2-3x slower, 16k tokens 20-35% slower (activations leave the cache).
TOKENS_PER_BATCH = 4096
# Nodes a prefix-tree row holds at most: long enough that an entity-tracking context and many of its
# continuations share a row; short enough that the [query, key] mask stays cheap. A task of short
# sentences gets rows of twice its longest sequence (at least TREE_ROW_MIN): attention costs the
# square of the row, and rows of 512 made BLiMP's causal scoring of a 2 x 64 model 5x slower in
# attention (sdpa 2.2 s of 13 s for blimp_fast) than rows that just hold a minimal pair.
TREE_ROW_TOKENS = 512
TREE_ROW_MIN = 64


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


def hidden_states(model: PreTrainedModel, ids: torch.Tensor, mask: torch.Tensor, bidirectional: bool,
                  positions: torch.Tensor | None = None) -> torch.Tensor:
    """The body's last hidden states (before the vocabulary head); gpt_bert bidirectional for mntp.

    `mask` is [batch, key] (1 = token, 0 = padding), or [batch, query, key] booleans, what
    each query may attend to (the prefix tree of `score_plans`), given with `positions`."""
    body, _ = body_and_head(model)
    extra = {} if positions is None else {"position_ids": positions}
    if is_hybrid(model.config.model_type):
        return body(ids, mask, bidirectional=bidirectional, **extra)
    if mask.dim() == 3:  # eager and sdpa take a custom mask as [batch, head, query, key], added to the scores
        mask = additive(mask, torch.float32)[:, None]
    return body(input_ids=ids, attention_mask=mask, **extra).last_hidden_state


def final_hidden_at(model: PreTrainedModel, ids: torch.Tensor, mask: torch.Tensor, bidirectional: bool,
                    rows: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """The final hidden states at (rows, positions) only, [reads, hidden], for masked copies
    read at one position each: the last layer computes its keys and values everywhere but its
    queries, feed-forward and norms only at those positions (a fifth less work for 4 layers,
    the same arithmetic). BERT and the hybrid; any other body runs whole."""
    body, _ = body_and_head(model)
    if "reads" in inspect.signature(body.forward).parameters:  # the hybrid (a folder saved before: whole)
        return body(ids, mask, bidirectional=bidirectional, reads=(rows, positions))
    if (not isinstance(body, BertModel) or body.config.is_decoder  # a decoder BERT would need a causal mask
            or getattr(body.config, "position_embedding_type", "absolute") != "absolute"):
        return hidden_states(model, ids, mask, bidirectional)[rows, positions]
    x = body.embeddings(input_ids=ids)
    # [batch, 1, 1, key], added to the attention scores: no query attends to padding.
    padding = additive(mask.bool(), x.dtype)[:, None, None]
    for layer in body.encoder.layer[:-1]:
        x = layer(x, attention_mask=padding)
    last = body.encoder.layer[-1]
    attention = last.attention.self
    reads, length = rows.numel(), x.size(1)
    heads, size = attention.num_attention_heads, attention.attention_head_size
    query = attention.query(x[rows, positions]).view(reads, heads, 1, size)
    key, value = (linear(x)[rows].view(reads, length, heads, size).transpose(1, 2)
                  for linear in (attention.key, attention.value))
    context = F.scaled_dot_product_attention(query, key, value, attn_mask=padding[rows], scale=attention.scaling)
    hidden = last.attention.output(context.reshape(reads, heads * size), x[rows, positions])
    return last.output(last.intermediate(hidden), hidden)


def takes_tree_masks(model: PreTrainedModel) -> bool:
    """Whether the body takes position ids (a hybrid folder saved before it did, does not) and
    a [query, key] mask of any shape (flash and flex attention kernels do not: eager and sdpa do)."""
    body, _ = body_and_head(model)
    kernel_ok = is_hybrid(model.config.model_type) or model.config._attn_implementation in MASKING_KERNELS
    return kernel_ok and "position_ids" in inspect.signature(body.forward).parameters


def pad_batch(seqs: list[tuple[int, ...]] | list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
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


def batches(lengths: list[int], tokens_per_batch: int) -> list[list[int]]:
    """Indices grouped into batches, shortest first, as many to a batch as fit `tokens_per_batch`
    once padded (at least one): a fixed count of sentences would make passes over short ones
    too small to keep the matrix units busy and passes over long ones too large for the cache."""
    out: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        if out and (len(out[-1]) + 1) * lengths[i] <= tokens_per_batch:
            out[-1].append(i)
        else:
            out.append([i])
    return out


@dataclass
class _Row:
    """One packed row of the prefix tree: a token per node, its depth (the position id) and
    its parent's index in the row (-1 for a root)."""

    tokens: list[int] = field(default_factory=list)
    depths: list[int] = field(default_factory=list)
    parents: list[int] = field(default_factory=list)

    def allowed(self, length: int) -> np.ndarray:
        """[query, key]: each node sees itself and its ancestors, nothing else (padding sees itself)."""
        allowed = np.eye(length, dtype=bool)
        for node, parent in enumerate(self.parents):
            if parent >= 0:
                allowed[node] |= allowed[parent]
        return allowed


def prefix_tree_rows(seqs: list[tuple[int, ...]], row_tokens: int) -> tuple[list[_Row], dict]:
    """The distinct sequences as prefix trees packed into rows of about `row_tokens` nodes:
    a prefix that several sequences share (an entity-tracking context, the start of a BLiMP
    pair) is one set of nodes, computed once. Returns the rows and, for each sequence,
    (row, the node of each of its positions). In sorted order a sequence shares the most with
    the one before it, so the rows are filled in that order."""
    rows: list[_Row] = []
    where: dict[tuple[int, ...], tuple[int, list[int]]] = {}
    previous: tuple[int, ...] = ()
    path: list[int] = []
    for seq in sorted(set(seqs)):
        shared, limit = 0, min(len(seq), len(previous))
        while shared < limit and seq[shared] == previous[shared]:
            shared += 1
        if not rows or len(rows[-1].tokens) + len(seq) - shared > max(row_tokens, len(seq)):
            rows.append(_Row())
            shared = 0
        row = rows[-1]
        path = path[:shared]
        for depth in range(shared, len(seq)):
            row.tokens.append(seq[depth])
            row.depths.append(depth)
            row.parents.append(path[-1] if path else -1)
            path.append(len(row.tokens) - 1)
        where[seq] = (len(rows) - 1, list(path))
        previous = seq
    return rows, where


@torch.no_grad()
def score_plans(model: PreTrainedModel, plans: list[Plan], backend: str, pad_id: int, mask_id: int | None = None,
                tokens_per_batch: int = TOKENS_PER_BATCH, device: torch.device | str = "cpu",
                desc: str | None = None, share_prefixes: bool = True,
                row_tokens: int = TREE_ROW_TOKENS) -> list[float]:
    """Sum of log-probabilities of each plan's scored tokens, in float32.

    Causal (`share_prefixes`, when the body takes position ids): the sequences go through
    the model as prefix trees (`prefix_tree_rows`), each node attending to its ancestors
    only, so a shared prefix is computed once (the fast sets: 3.1M tokens become 0.34M).
    Otherwise each distinct input (ids and masked positions) is run once: a causal sentence
    carries all its reads, a masked copy one. Either way, batches of about
    `tokens_per_batch` tokens, and the head runs only at the positions read."""
    model.eval()
    _, head = body_and_head(model)
    totals = torch.zeros(len(plans), dtype=torch.float64)
    if backend == "causal" and share_prefixes and takes_tree_masks(model):
        longest = max((len(plan.ids) for plan in plans if plan.reads), default=1)
        row_tokens = min(row_tokens, max(TREE_ROW_MIN, 2 * longest))
        rows, where = prefix_tree_rows([plan.ids for plan in plans if plan.reads], row_tokens)
        reads: list[list[tuple[int, int, int]]] = [[] for _ in rows]  # per row: (plan, node, target)
        for k, plan in enumerate(plans):
            if not plan.reads:
                continue
            row, nodes = where[plan.ids]
            reads[row] += [(k, nodes[pos], target) for _, pos, target in plan.reads]
        groups = batches([len(row.tokens) for row in rows], tokens_per_batch)
        for group in tqdm(groups, desc=desc, disable=desc is None, leave=False):
            found = [(b, node, k, target) for b, r in enumerate(group) for k, node, target in reads[r]]
            if not found:
                continue
            ids, _ = pad_batch([rows[r].tokens for r in group], pad_id)
            positions, _ = pad_batch([rows[r].depths for r in group], 0)
            allowed = torch.from_numpy(np.stack([rows[r].allowed(ids.size(1)) for r in group]))
            hidden = hidden_states(model, ids.to(device), allowed.to(device), False, positions.to(device))
            at, nodes, owners, targets = _columns(found, hidden.device)
            # A node read by several plans (a shared prefix predicting the same next token) goes
            # through the head once.
            distinct, which = torch.unique(at * ids.size(1) + nodes, return_inverse=True)
            _accumulate(head, hidden[distinct // ids.size(1), distinct % ids.size(1)], owners, targets, totals, which)
        return totals.tolist()
    inputs: dict[tuple[tuple[int, ...], tuple[int, ...]], list[tuple[int, int, int]]] = {}
    for k, plan in enumerate(plans):
        for masked, pos, target in plan.reads:
            inputs.setdefault((plan.ids, masked), []).append((k, pos, target))
    keys = list(inputs)
    for group in tqdm(batches([len(key[0]) for key in keys], tokens_per_batch), desc=desc, disable=desc is None,
                      leave=False):
        ids, mask = pad_batch([keys[i][0] for i in group], pad_id)
        masked = [(row, pos) for row, i in enumerate(group) for pos in keys[i][1]]
        if masked:
            ids[tuple(torch.tensor(masked).T)] = mask_id
        ids, mask = ids.to(device), mask.to(device)
        rows, positions, owners, targets = _columns([(row, pos, k, target) for row, i in enumerate(group)
                                                     for k, pos, target in inputs[keys[i]]], ids.device)
        if backend == "causal":  # every position of a sentence is read: the whole pass is needed
            hidden = hidden_states(model, ids, mask, False)[rows, positions]
        else:  # a masked copy is read at one position (or a few)
            hidden = final_hidden_at(model, ids, mask, backend == "mntp", rows, positions)
        _accumulate(head, hidden, owners, targets, totals)
    return totals.tolist()


def _columns(reads: list[tuple[int, int, int, int]], device: torch.device) -> tuple[torch.Tensor, ...]:
    """(rows, positions, owners, targets) of the reads: rows, positions and targets on `device`."""
    rows, positions, owners, targets = torch.from_numpy(np.array(reads, dtype=np.int64).reshape(-1, 4)).T.contiguous()
    return rows.to(device), positions.to(device), owners, targets.to(device)


def _accumulate(head: torch.nn.Module, hidden: torch.Tensor, owners: torch.Tensor, targets: torch.Tensor,
                totals: torch.Tensor, which: torch.Tensor | None = None) -> None:
    """Add log p(target) of each read to totals[owner]: read r's final hidden state is row which[r]
    of `hidden` (row r without `which`). log p = logit - logsumexp: the log-softmax's value at
    the target without writing the whole [rows, vocabulary] log-softmax."""
    logits = head(hidden).float()
    log_z = torch.logsumexp(logits, dim=-1)
    rows = torch.arange(len(targets), device=logits.device) if which is None else which
    totals.index_add_(0, owners, (logits[rows, targets] - log_z[rows]).double().cpu())


@torch.no_grad()
def plain_scores(model: PreTrainedModel, plans_per_candidate: list[list[Plan]], backend: str, pad_id: int,
                 mask_id: int | None = None, batch_size: int = 64,
                 device: torch.device | str = "cpu") -> list[list[float]]:
    """The official pipeline's loop (evaluation-pipeline-2025, sentence_zero_shot), for `make
    bench` and the tests: items in file order, `batch_size` items a batch, each candidate slot
    in turn. Causal: one padded pass over the batch without its last column, log-softmax over
    every position, the phrase summed. mlm and mntp: every masked copy of the batch padded to
    the longest, `batch_size` copies a pass, log-softmax at the masked positions. The head runs
    at every position; no sorting, no deduplication. `plans_per_candidate[c][i]` is candidate
    c of item i; returns the same."""
    bidirectional = backend == "mntp"
    scores = []
    model.eval()
    for plans in plans_per_candidate:
        out = torch.zeros(len(plans), dtype=torch.float64)
        for start in range(0, len(plans), batch_size):
            batch = plans[start: start + batch_size]
            if backend == "causal":
                ids, mask = pad_batch([p.ids for p in batch], pad_id)
                if ids.size(1) < 2:
                    continue  # one token: nothing is predicted
                phrase = torch.zeros(ids.size(0), ids.size(1) - 1)
                for row, plan in enumerate(batch):
                    phrase[row, [pos for _, pos, _ in plan.reads]] = 1.0
                logp = torch.log_softmax(_logits(model, ids[:, :-1].to(device), mask[:, :-1].to(device),
                                                 bidirectional).float(), dim=-1)
                target = logp.gather(-1, ids[:, 1:].to(device)[..., None])[..., 0].cpu()
                out[start: start + len(batch)] = (target * phrase).sum(1).double()
                continue
            copies = [(start + row, seq, pos, target) for row, plan in enumerate(batch)
                      for seq, (_, pos, target) in zip(plan.inputs(mask_id), plan.reads, strict=True)]
            if not copies:
                continue
            ids, mask = pad_batch([copy[1] for copy in copies], pad_id)
            for j in range(0, len(copies), batch_size):
                chunk = copies[j: j + batch_size]
                logits = _logits(model, ids[j: j + batch_size].to(device), mask[j: j + batch_size].to(device),
                                 bidirectional)
                at = logits[torch.arange(len(chunk)), torch.tensor([copy[2] for copy in chunk])]
                logp = torch.log_softmax(at.float(), dim=-1)
                values = logp.gather(-1, torch.tensor([copy[3] for copy in chunk], device=logp.device)[:, None])
                out.index_add_(0, torch.tensor([copy[0] for copy in chunk]), values[:, 0].double().cpu())
        scores.append(out.tolist())
    return scores


def _logits(model: PreTrainedModel, ids: torch.Tensor, mask: torch.Tensor, bidirectional: bool) -> torch.Tensor:
    """The model's full output (every position through the head), as the official pipeline gets it."""
    if is_hybrid(model.config.model_type):
        return model(input_ids=ids, attention_mask=mask, bidirectional=bidirectional).logits
    return model(input_ids=ids, attention_mask=mask).logits
