"""How long a run trains: blocks per optimizer step, steps per epoch, the step count, the
sequence length's schedule (blocks joined per sequence), and the challenge's rules for a --track,
from the handful of options that decide them."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from utils import MAX_EPOCHS, TRACK_WORD_BUDGET, UserError

# With --max_minutes the clock ends the run; the step count is only the loops' upper bound.
BUDGET_STEP_CAP = 2**31 - 1


def joined_blocks(blocks: torch.Tensor, multiplier: int, n_blocks: int) -> torch.Tensor:
    """A step's blocks for sequences `multiplier` blocks long (--length_schedule) at the same tokens
    per step: the first len(blocks) // multiplier of them, each followed by the blocks after it in
    the packed stream (the text that continues it), as one flat list whose runs of `multiplier`
    are the sequences. A start too near the end of the stream moves back so that its run fits."""
    if multiplier == 1:
        return blocks
    starts = blocks[: len(blocks) // multiplier].clamp(max=n_blocks - multiplier)
    return (starts[:, None] + torch.arange(multiplier)).flatten()


@dataclass(frozen=True)
class StepPlan:
    """The options that size a run (--batch_size, --gradient_accumulation_steps, --max_steps,
    --num_train_epochs, --max_minutes, --track, --length_schedule) and the number of processes."""

    batch_size: int
    accumulation: int
    max_steps: int | None
    epochs: float
    max_minutes: float | None
    track: str = "none"
    world: int = 1
    # --length_schedule: (share of the run, blocks joined into one sequence from then on), ascending
    lengths: tuple[tuple[float, int], ...] = ()

    @classmethod
    def from_args(cls, args: argparse.Namespace, world: int = 1) -> StepPlan:
        return cls(batch_size=args.batch_size, accumulation=args.gradient_accumulation_steps,
                   max_steps=args.max_steps, epochs=args.num_train_epochs, max_minutes=args.max_minutes,
                   track=args.track or "none", world=world, lengths=tuple(args.length_schedule or ()))

    def length_at(self, fraction: float) -> int:
        """How many consecutive blocks make one training sequence when `fraction` of the run is done
        (--length_schedule; 1 without it, or before its first entry)."""
        multiplier = 1
        for start, blocks in self.lengths:
            if fraction >= start:
                multiplier = blocks
        return multiplier

    @property
    def global_batch(self) -> int:
        """Blocks per optimizer step over all processes: batch x accumulation x processes."""
        return self.batch_size * self.accumulation * self.world

    def steps_per_epoch(self, n_blocks: int) -> int:
        """Optimizer steps of one pass over `n_blocks` blocks: the last one may hold fewer blocks
        than a global batch (one process) or be filled up from the epoch's start (several; see
        pytorch_training_loop.step_blocks), so the count is the same for any number of processes."""
        return math.ceil(n_blocks / self.global_batch)

    def count_steps(self, n_blocks: int) -> int:
        """Optimizer steps of the run: --max_steps if set, else epochs x steps per epoch
        (with --max_minutes: BUDGET_STEP_CAP, the clock decides; under a --track, at most
        MAX_EPOCHS epochs' steps)."""
        per_epoch = self.steps_per_epoch(n_blocks)
        if self.max_minutes is not None:
            return BUDGET_STEP_CAP if self.track == "none" else MAX_EPOCHS * per_epoch
        return self.max_steps if self.max_steps is not None else max(1, math.ceil(self.epochs * per_epoch))

    def track_rules(self) -> Callable[[str, dict], None] | None:
        """--track strict-small/strict: the challenge's rules as a `load_splits` check, which sees the
        training split's meta before anything is written: at most the track's words of training
        data (words as the run reads them: whitespace-separated, after cleaning) and at most
        MAX_EPOCHS epochs planned. A --max_minutes run is not refused: `count_steps` stops it at
        the last step of the tenth epoch. None for --track none (nothing is checked)."""
        track = self.track
        if track == "none":
            return None

        def check(split: str, meta: dict) -> None:
            if split != "train":
                return
            budget = TRACK_WORD_BUDGET[track]
            if meta["words"] > budget:
                raise UserError(f"the training data holds {meta['words']:,} words, over the {track} track's budget "
                                f"of {budget:,}: train on fewer files (--train_files), or pass --track "
                                f"{'strict' if track == 'strict-small' else 'none'}")
            per_epoch = self.steps_per_epoch(meta["blocks"])
            if self.max_minutes is None:
                epochs = self.max_steps / per_epoch if self.max_steps is not None else self.epochs
                if epochs > MAX_EPOCHS:
                    raise UserError(f"the run plans {epochs:.4g} epochs over its training data, over the {track} "
                                    f"track's {MAX_EPOCHS}: pass --num_train_epochs {MAX_EPOCHS} or less (or "
                                    f"--max_steps {MAX_EPOCHS * per_epoch} or less), or --track none")

        return check
