"""What each optimizer step trains on: the objective schedule (--objective_schedule,
--mlm_probability, gpt_bert's --hybrid_ratio) and the training batch it turns a step's blocks into.

Both loops build the batch in the step itself (`StepObjective.batch`), so a schedule switches
at the same step in both (a DataLoader collates ahead of the step), and a resumed run agrees:
everything here is a function of the step."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

from pretraining_dataset import mask_tokens


@dataclass(frozen=True)
class StepObjective:
    """The model's kind and the masking options, as the training step reads them."""

    tokenizer: object
    causal: bool
    hybrid: bool  # gpt_bert: each step's batch is masked next-token or causal
    mlm_probability: float
    masked_share: float  # gpt_bert: the share of masked next-token steps (--hybrid_ratio)
    schedule: tuple = ()  # --objective_schedule: (start step, {key: value}) entries

    @classmethod
    def from_args(cls, args: argparse.Namespace, tokenizer: object = None, causal: bool = True,
                  hybrid: bool = False) -> StepObjective:
        return cls(tokenizer=tokenizer, causal=causal, hybrid=hybrid, mlm_probability=args.mlm_probability,
                   masked_share=args.hybrid_masked_share, schedule=tuple(args.objective_schedule or ()))

    def _scheduled(self, key: str, default: float, step: int) -> float:
        """`key` at optimizer `step`: its last --objective_schedule entry at or before the step, else `default`."""
        value = default
        for start, setting in self.schedule:
            if start <= step:
                value = setting.get(key, value)
        return value

    def mlm_probability_at(self, step: int) -> float:
        """The masking probability at optimizer `step` (--objective_schedule, else --mlm_probability)."""
        return self._scheduled("mlm_probability", self.mlm_probability, step)

    def masked_share_at(self, step: int) -> float:
        """gpt_bert: the share of masked next-token steps at optimizer `step` (--objective_schedule
        masked_share, else from --hybrid_ratio)."""
        return self._scheduled("masked_share", self.masked_share, step)

    def step_is_masked(self, step: int) -> bool:
        """Whether optimizer `step` of a gpt_bert run trains masked next-token prediction.
        Evenly interleaved: step t is masked when floor((t + 1) p) > floor(t p) for the
        share p, so every 1/p steps hold their share exactly (15:1: a causal step, then 15
        masked ones, repeated; 1:1: alternating, causal first). A function of the step only,
        so both loops and a resumed run agree."""
        p = self.masked_share_at(step)
        return math.floor((step + 1) * p + 1e-9) > math.floor(step * p + 1e-9)

    def batch(self, batch: dict, step: int) -> dict:
        """A training batch ({'input_ids'} at least) as the model takes it at optimizer
        `step` (0-based): causal blocks with labels; masked-LM blocks masked with that
        step's probability; gpt_bert blocks either (`step_is_masked`), with
        'bidirectional' saying which."""
        if self.hybrid:
            ids = batch["input_ids"]
            if not self.step_is_masked(step):
                return {"input_ids": ids, "labels": ids, "bidirectional": False}
            masked, labels = mask_tokens(ids, self.tokenizer, self.mlm_probability_at(step))
            # Token j is predicted at position j-1, so the first position of a block is never a target.
            masked[:, 0], labels[:, 0] = ids[:, 0], -100
            return {"input_ids": masked, "labels": labels, "bidirectional": True}
        if self.causal:  # labels are the inputs; the model shifts them
            return batch if "labels" in batch else {**batch, "labels": batch["input_ids"]}
        ids, labels = mask_tokens(batch["input_ids"], self.tokenizer, self.mlm_probability_at(step))
        return {"input_ids": ids, "labels": labels}
