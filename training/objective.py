"""What each optimizer step trains on: the objective schedule (--objective_schedule,
--mlm_probability and --mlm_probability_end, --mask_span, gpt_bert's --hybrid_ratio and
--hybrid_mix) and the training batch it turns a step's blocks into.

Both loops build the batch in the step itself (`StepObjective.batch`), so a schedule switches
at the same step in both (a DataLoader collates ahead of the step), and a resumed run agrees:
everything here is a function of the step (and, with --mlm_probability_end under
--max_minutes, of the share of the time budget used, as the LR schedule is).

--document_mask adds each batch's block-diagonal attention mask (`document_attention_mask`):
a block is cut from one packed stream of corpus lines, each ending with EOS, and no token
attends across a line's end (GPT-BERT's packing, with a line as the document)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from pretraining_dataset import mask_spans, mask_tokens
from utils import UserError

# The attention kernels that take an arbitrary [query, key] mask (flash and flex attention do not).
MASKING_KERNELS = ("eager", "sdpa")


def segment_ids(ids: torch.Tensor, eos_id: int) -> torch.Tensor:
    """The line each position of `ids` [..., length] belongs to, counted from 0 in each row: an
    EOS token ends its line (it belongs to the line it ends, not to the next one)."""
    eos = (ids == eos_id).long()
    return eos.cumsum(-1) - eos


def document_attention_mask(ids: torch.Tensor, eos_id: int) -> torch.Tensor:
    """[batch, query, key] booleans, True where query and key are in the same line
    (`segment_ids`): block-diagonal, bidirectional within each block (the losses add the
    causal part where the model is causal)."""
    segments = segment_ids(ids, eos_id)
    return segments[:, :, None] == segments[:, None, :]


def check_document_mask(args: argparse.Namespace, world: int = 1) -> None:
    """--document_mask needs an attention kernel that takes a custom mask, and, in `world` > 1
    processes, the custom loop (UserError otherwise)."""
    if not getattr(args, "document_mask", False):
        return
    if args.attn_implementation not in MASKING_KERNELS:
        raise UserError(f"--document_mask needs an attention kernel that takes a custom mask, not "
                        f"{args.attn_implementation}: pass --attn_implementation eager or sdpa")
    if world > 1 and not args.torch_training:  # the Trainer's path then runs the pipeline's loss, outside its DDP
        raise UserError("--document_mask trains with the HF Trainer in one process only: under torchrun pass "
                        "--torch_training (the custom loop)")


def run_progress(total_steps: int, budget_fraction: Callable[[], float] | None = None,
                 capped: bool = False) -> Callable[[int], float]:
    """The share of the run done when optimizer step `step` (0-based: the steps done) starts, as
    the LR schedule counts it (training/optim.py make_scheduler): step / total_steps; with a time
    budget (`budget_fraction`, --max_minutes) the share of it used, or, when the step count is
    `capped` too, the larger of that and the capped steps' share."""
    if budget_fraction is None:
        return lambda step: step / max(total_steps, 1)
    return lambda step: max(budget_fraction(), step / total_steps if capped else 0.0)


@dataclass(frozen=True)
class StepObjective:
    """The model's kind and the masking options, as the training step reads them."""

    tokenizer: object
    causal: bool
    hybrid: bool  # gpt_bert: each step's batch is masked next-token or causal
    mlm_probability: float
    masked_share: float  # gpt_bert: the share of masked next-token steps (--hybrid_ratio)
    schedule: tuple = ()  # --objective_schedule: (start step, {key: value}) entries
    mask_span: int = 1  # --mask_span: 1 masks token by token (`mask_tokens`), more masks spans (`mask_spans`)
    mlm_probability_end: float | None = None  # --mlm_probability_end: linear from mlm_probability to this
    progress: Callable[[int], float] | None = None  # the run's share done at a step (`run_progress`)
    mix: str = "step"  # --hybrid_mix: each step one mode ("step") or both in every micro-batch ("batch")
    document_mask: bool = False  # --document_mask: each batch carries its block-diagonal 'attention_mask'

    @classmethod
    def from_args(cls, args: argparse.Namespace, tokenizer: object = None, causal: bool = True,
                  hybrid: bool = False, progress: Callable[[int], float] | None = None) -> StepObjective:
        """The objective of the train action's options; `progress` (`run_progress`) is needed
        with --mlm_probability_end (prepare_training has run `check_document_mask`)."""
        return cls(tokenizer=tokenizer, causal=causal, hybrid=hybrid, mlm_probability=args.mlm_probability,
                   masked_share=args.hybrid_masked_share, schedule=tuple(args.objective_schedule or ()),
                   mask_span=args.mask_span, mlm_probability_end=args.mlm_probability_end, progress=progress,
                   mix=args.hybrid_mix, document_mask=args.document_mask)

    def _scheduled(self, key: str, default: float, step: int) -> float:
        """`key` at optimizer `step`: its last --objective_schedule entry at or before the step, else `default`."""
        value = default
        for start, setting in self.schedule:
            if start <= step:
                value = setting.get(key, value)
        return value

    def mlm_probability_at(self, step: int) -> float:
        """The masking probability at optimizer `step`: with --mlm_probability_end, linear from
        --mlm_probability at the start of the run to it at the end (`progress`, the steps done
        over the run's steps, as the authors' schedule); else --objective_schedule's, else
        --mlm_probability (the parser refuses the end with a schedule that sets it)."""
        if self.mlm_probability_end is None:
            return self._scheduled("mlm_probability", self.mlm_probability, step)
        if self.progress is None:
            raise ValueError("--mlm_probability_end needs the run's progress: pass StepObjective.from_args(progress=)")
        done = min(max(self.progress(step), 0.0), 1.0)
        return self.mlm_probability + (self.mlm_probability_end - self.mlm_probability) * done

    def masked_share_at(self, step: int) -> float:
        """gpt_bert: the share of masked next-token steps (or, with --hybrid_mix batch, of each
        micro-batch's sequences) at optimizer `step` (--objective_schedule masked_share, else
        from --hybrid_ratio)."""
        return self._scheduled("masked_share", self.masked_share, step)

    def step_is_masked(self, step: int) -> bool:
        """Whether optimizer `step` of a gpt_bert run trains masked next-token prediction.
        Evenly interleaved: step t is masked when floor((t + 1) p) > floor(t p) for the
        share p, so every 1/p steps hold their share exactly (15:1: a causal step, then 15
        masked ones, repeated; 1:1: alternating, causal first). A function of the step only,
        so both loops and a resumed run agree."""
        p = self.masked_share_at(step)
        return math.floor((step + 1) * p + 1e-9) > math.floor(step * p + 1e-9)

    def masked_rows(self, rows: int, step: int) -> int:
        """--hybrid_mix batch: how many of a micro-batch's `rows` sequences are masked at
        optimizer `step`: the share rounded half up (15:1 of 32: 30; 1:1 of 8: 4), and at
        least one of each mode when the share is strictly between 0 and 1 and there are two
        sequences or more."""
        p = self.masked_share_at(step)
        n = math.floor(p * rows + 0.5)
        if 0.0 < p < 1.0 and rows >= 2:
            n = min(max(n, 1), rows - 1)
        return n

    def mask(self, ids: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(masked ids, labels) of blocks `ids` at optimizer `step`: spans (`mask_spans`) with
        --mask_span above 1, else token by token (`mask_tokens`, what runs before the option used)."""
        p = self.mlm_probability_at(step)
        if self.mask_span > 1:
            return mask_spans(ids, self.tokenizer, p, self.mask_span)
        return mask_tokens(ids, self.tokenizer, p)

    def _next_token_masked(self, ids: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        masked, labels = self.mask(ids, step)
        # Token j is predicted at position j-1, so the first position of a block is never a target.
        masked[:, 0], labels[:, 0] = ids[:, 0], -100
        return masked, labels

    def batch(self, batch: dict, step: int) -> dict:
        """A training batch ({'input_ids'} at least) as the model takes it at optimizer
        `step` (0-based): causal blocks with labels; masked-LM blocks masked with that
        step's probability; gpt_bert blocks either (`step_is_masked`), with
        'bidirectional' saying which, or with --hybrid_mix batch both: the first
        'masked_rows' sequences masked, the rest causal, and 'masked_share' the weight of
        the masked part's loss ('input_ids' holds all the sequences). With --document_mask
        every kind also holds 'attention_mask' (`document_attention_mask`, row for row)."""
        if not self.document_mask:
            return self._batch(batch, step)
        if self.tokenizer is None or self.tokenizer.eos_token_id is None:
            raise ValueError("--document_mask needs the tokenizer's EOS token: pass StepObjective(tokenizer=)")
        # From the blocks as read, before any masking, so the lines are the corpus's whatever the
        # masking replaces. Every kind keeps the rows in order (a mixed batch: masked rows, then causal).
        allowed = document_attention_mask(batch["input_ids"], self.tokenizer.eos_token_id)
        return {**self._batch(batch, step), "attention_mask": allowed}

    def _batch(self, batch: dict, step: int) -> dict:
        """`batch` without the document mask."""
        if self.hybrid:
            ids = batch["input_ids"]
            if self.mix == "batch":
                n = self.masked_rows(len(ids), step)
                masked, labels = self._next_token_masked(ids[:n], step)
                return {"input_ids": torch.cat([masked, ids[n:]]), "labels": torch.cat([labels, ids[n:]]),
                        "masked_rows": n, "masked_share": self.masked_share_at(step)}
            if not self.step_is_masked(step):
                return {"input_ids": ids, "labels": ids, "bidirectional": False}
            masked, labels = self._next_token_masked(ids, step)
            return {"input_ids": masked, "labels": labels, "bidirectional": True}
        if self.causal:  # labels are the inputs; the model shifts them
            return batch if "labels" in batch else {**batch, "labels": batch["input_ids"]}
        ids, labels = self.mask(batch["input_ids"], step)
        return {"input_ids": ids, "labels": labels}
