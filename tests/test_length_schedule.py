"""--length_schedule (GPT-BERT's 128 -> 256 -> 512 tokens late in the run at constant tokens per
step): the schedule's phases, the blocks joined into one sequence, the shapes the model trains on
step by step in the custom loop, and the refusals."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from conftest import ROOT, run_loop
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from training.plan import StepPlan, joined_blocks
from training.setup import TrainingSetup


def test_the_schedule_parses_and_gives_each_phase_its_length(make_args, tmp_path):
    args = make_args("train", "--torch_training", "--length_schedule", "0.7:2,0.9:4", "--output_dir", tmp_path,
                     "--max_position_embeddings", "128")
    assert args.length_schedule == [(0.7, 2), (0.9, 4)]
    plan = StepPlan.from_args(args)
    assert [plan.length_at(f) for f in (0.0, 0.69, 0.7, 0.89, 0.9, 1.0)] == [1, 1, 2, 2, 4, 4]
    assert StepPlan.from_args(make_args("train", "--output_dir", tmp_path)).length_at(0.95) == 1


def test_joined_blocks_continue_each_start_with_the_blocks_after_it():
    blocks = torch.tensor([7, 2, 9, 4, 5, 1, 0, 3])
    assert joined_blocks(blocks, 1, 10).tolist() == blocks.tolist()
    # Worked by hand: the first half start runs of 2; start 9 of 10 blocks would run past the end: 8.
    assert joined_blocks(blocks, 2, 10).tolist() == [7, 8, 2, 3, 8, 9, 4, 5]
    # The first quarter start runs of 4; start 9 moves back to 6.
    assert joined_blocks(torch.tensor([3, 9, 1, 2, 4, 5, 6, 7]), 4, 10).tolist() == [3, 4, 5, 6, 6, 7, 8, 9]


def test_the_custom_loop_trains_longer_sequences_late_at_the_same_tokens(make_args, tmp_path, monkeypatch):
    shapes = []
    original = TrainingSetup.training_batch

    def recording(self, batch, step):
        shapes.append((step, tuple(batch["input_ids"].shape)))
        return original(self, batch, step)

    monkeypatch.setattr(TrainingSetup, "training_batch", recording)
    out = tmp_path / "run"
    args = make_args("train", "--torch_training", "--length_schedule", "0.5:2,0.75:4", "--max_steps", "8",
                     "--batch_size", "4", "--gradient_accumulation_steps", "2", "--logging_steps", "1",
                     "--eval_steps", "8", "--output_dir", out, "--max_position_embeddings", "128")
    results = run_loop("pytorch", args)
    # Two micro-batches a step: 4 blocks of 32 tokens, then 2 of 64 from half-way, then 1 of 128.
    assert shapes == [(s, (4, 32)) for s in range(4) for _ in range(2)] + \
        [(s, (2, 64)) for s in (4, 5) for _ in range(2)] + [(s, (1, 128)) for s in (6, 7) for _ in range(2)]
    assert results["tokens_seen"] == 8 * 8 * 32  # every step the same 8 blocks' tokens
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    assert [e.value for e in acc.Scalars("train/sequence_length")] == [32] * 4 + [64] * 2 + [128] * 2
    assert all(torch.isfinite(torch.tensor(e.value)) for e in acc.Scalars("train/loss"))


@pytest.mark.parametrize(("extra", "message"), [
    (["--length_schedule", "0.7:2"], "--length_schedule joins blocks inside the custom loop's step: add "
                                     "--torch_training"),
    (["--torch_training", "--length_schedule", "0.7:3"], "--batch_size 32 does not split into sequences of 3"),
    (["--torch_training", "--length_schedule", "0.7:2,0.9:8"], "exceed --max_position_embeddings 512: raise it to "
                                                               "1024"),
    (["--torch_training", "--length_schedule", "0.9:2,0.7:4"], "the shares must be distinct, ascending"),
    (["--torch_training", "--length_schedule", "late:2"], "entry 'late:2' is not SHARE:BLOCKS"),
])
def test_a_bad_schedule_is_refused_in_one_line(extra, message, tmp_path):
    proc = subprocess.run([sys.executable, "run.py", "train", "--tokenizer_dir", str(tmp_path / "tok"), "--output_dir",
                           str(tmp_path / "run"), *extra],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "run").exists()


def test_an_init_model_with_too_few_positions_is_refused(make_args, tmp_path):
    from training.setup import prepare_training
    from utils import UserError

    first = tmp_path / "first"
    run_loop("pytorch", make_args("train", "--torch_training", "--max_steps", "2", "--output_dir", first,
                                  "--eval_steps", "2"))
    args = make_args("train", "--torch_training", "--init_model", first / "best_model", "--length_schedule", "0.5:4",
                     "--output_dir", tmp_path / "b")  # 4 blocks of 32 tokens: 128, the model has 64
    with pytest.raises(UserError, match="exceed the 64 positions"):
        prepare_training(args)
    assert not (tmp_path / "b").exists()
