"""Both training loops: loss drops, same output layout, best model reloads
through the Auto classes with the same logits, continuing from a saved model."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
from conftest import SAMPLE, run_loop
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from transformers import (
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
)

import huggingface_trainer_loop
import pytorch_training_loop
from corpus.editions import resolve_files
from custom_models import build_model
from tokenizer import load_tokenizer, train_tokenizer
from training.run_folder import save_model_folder
from training.tracking import BestTracker, TrainingClock
from utils import UserError

TRAIN = ["--num_train_epochs", "1", "--batch_size", "8", "--learning_rate", "3e-3", "--eval_steps", "20",
         "--logging_steps", "5", "--warmup_ratio", "0.1"]


def scalars(run_dir, tag):
    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    return [e.value for e in acc.Scalars(tag)]


def run_layout(run_dir):
    return sorted(p.name for p in run_dir.iterdir())


@pytest.mark.parametrize(("loop", "model_type"), [("pytorch", "gpt2"), ("huggingface", "gpt2"),
                                                  ("pytorch", "llama"), ("huggingface", "bert")])
def test_loop_trains_and_saves_a_loadable_best_model(loop, model_type, make_args, tmp_path):
    kind = "mlm" if model_type == "bert" else "clm"
    out = tmp_path / "run"
    flag = ["--torch_training"] if loop == "pytorch" else []
    # Masked LM learns from 15% of the tokens only: give it more epochs.
    epochs = ["--num_train_epochs", "3"] if model_type == "bert" else []
    args = make_args("train", *flag, "--model_type", model_type, "--output_dir", out, *TRAIN, *epochs, kind=kind)
    results = run_loop(loop, args)

    # The loss clearly drops: from ln(vocab) for an untrained model to well below.
    losses = scalars(out, "train/loss")
    assert losses[-1] < losses[0] - 1.0, losses
    assert results["best_eval_loss"] < math.log(600) - 1.0
    assert results["loop"] == loop and results["steps"] == results["planned_steps"]
    for tag in ("train/lr", "train/grad_norm", "train/tokens_per_second", "eval/loss", "eval/perplexity"):
        assert scalars(out, tag), tag
    assert run_layout(out) == [".lock", "best_model", "checkpoints", "log.txt", "tensorboard", "train_results.json"]
    saved = json.loads((out / "best_model" / "run_args.json").read_text())
    assert saved["model_type"] == model_type and saved["torch_training"] == (loop == "pytorch")

    # External harnesses load the folder through the Auto classes, no custom code.
    auto = AutoModelForMaskedLM if model_type == "bert" else AutoModelForCausalLM
    model = auto.from_pretrained(out / "best_model").eval()
    tok = AutoTokenizer.from_pretrained(out / "best_model")
    assert model.config.vocab_size == len(tok)
    assert model.config.pad_token_id == tok.pad_token_id and model.config.eos_token_id == tok.eos_token_id
    clf = AutoModelForSequenceClassification.from_pretrained(out / "best_model", num_labels=2)
    enc = tok(["the dog runs .", "a cat"], padding=True, return_tensors="pt")
    assert clf(**enc).logits.shape == (2, 2)


@pytest.mark.parametrize("loop", ["pytorch", "huggingface"])
def test_tokens_per_second_is_the_windows_tokens_over_its_step_time(loop, make_args, tmp_path, monkeypatch):
    # Every optimizer step takes 0.25 s on the step clock, whatever the wall clock says: the logged
    # rate is then exactly tokens over 0.25 s a step, whether or not a validation (here every 3 steps,
    # across the 5-step logging windows) or the first step's set-up fell inside the window.
    def quarter_second_step(clock):
        clock.used += 0.25
        clock._since = None

    monkeypatch.setattr(TrainingClock, "stop", quarter_second_step)
    out = tmp_path / "run"
    flag = ["--torch_training"] if loop == "pytorch" else []
    args = make_args("train", *flag, "--output_dir", out, *TRAIN, "--eval_steps", "3", "--max_steps", "23")
    results = run_loop(loop, args)
    rates = scalars(out, "train/tokens_per_second")
    full_step = 8 * 32 / 0.25  # batch 8 blocks of 32 tokens
    assert results["steps"] == 23 and results["step_seconds"] == pytest.approx(0.25 * 23, abs=0.1)
    # Windows ending at steps 5, 10, 15, 20 (and 23 in the custom loop, which also logs the last step): all full steps.
    assert len(rates) >= 4 and rates == pytest.approx([full_step] * len(rates)), rates


def test_saved_model_reloads_to_the_same_logits(make_args, tmp_path):
    for model_type, kind, auto in (("gpt2", "clm", AutoModelForCausalLM), ("llama", "clm", AutoModelForCausalLM),
                                   ("bert", "mlm", AutoModelForMaskedLM)):
        args = make_args("train", "--model_type", model_type, "--output_dir", tmp_path, kind=kind)
        tok = AutoTokenizer.from_pretrained(args.tokenizer_dir)
        torch.manual_seed(0)
        model = build_model(args, tok).eval()
        folder = tmp_path / model_type
        save_model_folder(model, tok, args, folder)
        ids = tok(["the dog sees the ball ."], return_tensors="pt")["input_ids"]
        reloaded = auto.from_pretrained(folder).eval()
        with torch.no_grad():
            assert torch.allclose(model(ids).logits, reloaded(ids).logits, atol=1e-6)


def test_continue_from_saved_model(make_args, tmp_path):
    first = make_args("train", "--torch_training", "--output_dir", tmp_path / "a", *TRAIN,
                      "--train_files", "aochildes", "switchboard", "qed")
    a = run_loop("pytorch", first)
    # A learning rate of 1e-12 (0 is refused) moves no float32 weight: the continued
    # model is the saved one, so its validation loss equals the first run's best.
    second = make_args("train", "--torch_training", "--output_dir", tmp_path / "b", *TRAIN,
                       "--learning_rate", "1e-12", "--max_steps", "3", "--train_files", "cbt",
                       "--init_model", tmp_path / "a" / "best_model")
    b = run_loop("pytorch", second)
    assert b["best_eval_loss"] == pytest.approx(a["best_eval_loss"], abs=1e-5)
    # ... and with a real learning rate it keeps learning from there.
    third = make_args("train", "--torch_training", "--output_dir", tmp_path / "c", *TRAIN,
                      "--init_model", tmp_path / "a" / "best_model")
    c = run_loop("pytorch", third)
    assert c["best_eval_loss"] < a["best_eval_loss"]


def test_continue_with_another_tokenizer_is_refused(make_args, tmp_path, tok_dirs):
    first = make_args("train", "--torch_training", "--output_dir", tmp_path / "a", "--max_steps", "2")
    run_loop("pytorch", first)
    other = tmp_path / "tok_other"
    train_tokenizer(resolve_files(SAMPLE, "train", ["qed"]), other, "clm", vocab_size=400)
    bad = make_args("train", "--torch_training", "--output_dir", tmp_path / "b", "--max_steps", "2",
                    "--tokenizer_dir", other, "--init_model", tmp_path / "a" / "best_model")
    with pytest.raises(UserError, match="vocabulary of 600"):
        run_loop("pytorch", bad)


def test_finished_run_is_not_overwritten(make_args, tmp_path):
    args = make_args("train", "--torch_training", "--output_dir", tmp_path / "a", "--max_steps", "2")
    run_loop("pytorch", args)
    before = (tmp_path / "a" / "train_results.json").read_text()
    with pytest.raises(UserError, match="--overwrite_output_dir"):
        run_loop("pytorch", args)
    assert (tmp_path / "a" / "train_results.json").read_text() == before


def test_best_tracker_patience(tmp_path, monkeypatch):
    saved = []
    logger = SimpleNamespace(info=lambda msg: None)
    tracker = BestTracker(lambda name, *_: saved.append(name), logger, TrainingClock(None), patience=2)
    # step: loss -> stop? A new best resets the count; the 2nd evaluation in a row without one stops.
    losses = [(10, 3.0, False), (20, 2.5, False), (30, 2.7, False), (40, 2.4, False), (50, 2.4, False),
              (60, 2.6, True)]
    assert [tracker.update(step, loss) for step, loss, _ in losses] == [stop for _, _, stop in losses]
    assert (tracker.best_loss, tracker.best_step) == (2.4, 40)  # a tie is not a new best
    assert len(saved) == 3  # saved at each new best only
    never = BestTracker(lambda name, *_: saved.append(name), logger, TrainingClock(None), patience=0)
    assert not any(never.update(step, loss) for step, loss in [(1, 1.0), *((s, 2.0) for s in range(2, 12))])


@pytest.mark.parametrize("loop", ["pytorch", "huggingface"])
def test_early_stopping(loop, make_args, tmp_path, monkeypatch):
    # Validation loss rises after the first evaluation: patience 2 stops at the third (step 6).
    losses = iter([3.0, 3.1, 3.2, 3.3, 3.4, 3.5])
    module = pytorch_training_loop if loop == "pytorch" else huggingface_trainer_loop
    monkeypatch.setattr(module, "evaluate_lm",
                        lambda *a, **k: {"loss": (loss := next(losses)), "perplexity": math.exp(loss), "tokens": 1})
    flag = ["--torch_training"] if loop == "pytorch" else []
    args = make_args("train", *flag, "--output_dir", tmp_path / "a",
                     "--eval_steps", "2", "--max_steps", "40", "--early_stopping_patience", "2")
    results = run_loop(loop, args)
    assert results["steps"] == 6 and results["best_step"] == 2 and results["best_eval_loss"] == 3.0


def test_gradient_accumulation_matches_a_larger_batch(make_args, tmp_path):
    # Same permutation of blocks, so 2 micro-batches of 4 = 1 batch of 8 (dropout is 0).
    common = ["--torch_training", "--max_steps", "5", "--logging_steps", "1", "--eval_steps", "100"]
    big = make_args("train", *common, "--batch_size", "8", "--output_dir", tmp_path / "big")
    small = make_args("train", *common, "--batch_size", "4", "--gradient_accumulation_steps", "2",
                      "--output_dir", tmp_path / "acc")
    run_loop("pytorch", big)
    run_loop("pytorch", small)
    assert scalars(tmp_path / "acc", "train/loss") == pytest.approx(scalars(tmp_path / "big", "train/loss"), abs=1e-4)
    assert scalars(tmp_path / "acc", "train/grad_norm") == pytest.approx(
        scalars(tmp_path / "big", "train/grad_norm"), rel=1e-3)


@pytest.mark.parametrize("loop", ["pytorch", "huggingface"])
def test_curriculum_feeds_the_sampler_blocks_in_both_loops(loop, make_args, tmp_path, monkeypatch):
    import training.setup as training_setup

    seen = []
    real_getitem = training_setup.BlockDataset.__getitem__

    def recording_getitem(self, i):
        if self.fixed_mask_seed is None:  # training blocks only, not validation
            seen.append(int(i))
        return real_getitem(self, i)

    real_batch = training_setup.BlockDataset.batch

    def recording_batch(self, indices):  # the custom loop reads whole batches
        seen.extend(int(i) for i in indices)
        return real_batch(self, indices)

    monkeypatch.setattr(training_setup.BlockDataset, "__getitem__", recording_getitem)
    monkeypatch.setattr(training_setup.BlockDataset, "batch", recording_batch)
    captured = {}
    real_prepare = training_setup.prepare_training

    def capture(args):
        captured["setup"] = real_prepare(args)
        return captured["setup"]

    monkeypatch.setattr(training_setup, "prepare_training", capture)
    flag = ["--torch_training"] if loop == "pytorch" else []
    args = make_args("train", *flag, "--output_dir", tmp_path / "run", "--difficulty", "length", "--pacing", "root",
                     "--batch_size", "4", "--gradient_accumulation_steps", "2", "--max_steps", "40",
                     "--eval_steps", "100", "--logging_steps", "1")
    run_loop(loop, args)
    curriculum = captured["setup"].curriculum
    expected = [int(i) for t in range(40) for i in curriculum.batch(t)]
    assert seen[: len(expected)] == expected  # exactly the curriculum's blocks, step by step
    shares = scalars(tmp_path / "run", "train/curriculum_share")
    assert shares[0] == pytest.approx(0.1) and shares[-1] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(shares, shares[1:], strict=False))


@pytest.mark.parametrize("loop", ["pytorch", "huggingface"])
def test_objective_schedule_switches_masking_at_the_step(loop, make_args, tmp_path, monkeypatch):
    import training.objective as training_objective

    used = []
    real_mask = training_objective.mask_tokens
    monkeypatch.setattr(training_objective, "mask_tokens",
                        lambda ids, tok, p, *a: used.append(p) or real_mask(ids, tok, p, *a))
    flag = ["--torch_training"] if loop == "pytorch" else []
    args = make_args("train", *flag, "--model_type", "bert", "--output_dir", tmp_path / "run", "--max_steps", "10",
                     "--batch_size", "4", "--gradient_accumulation_steps", "2", "--logging_steps", "1",
                     "--objective_schedule", "0:mlm_probability=0.3,5:mlm_probability=0.15", kind="mlm")
    objective = training_objective.StepObjective.from_args(args)
    assert objective.mlm_probability_at(4) == 0.3 and objective.mlm_probability_at(5) == 0.15
    run_loop(loop, args)
    assert used[:20] == [0.3] * 10 + [0.15] * 10  # 2 micro-batches per step, switched at step 5
    assert scalars(tmp_path / "run", "train/mlm_probability") == pytest.approx([0.3] * 5 + [0.15] * 5)


def test_source_curriculum_starts_with_the_easier_files(make_args, tmp_path, monkeypatch):
    import training.setup as training_setup
    from training.curriculum import majority_source

    captured = {}
    real_prepare = training_setup.prepare_training
    monkeypatch.setattr(training_setup, "prepare_training",
                        lambda args: captured.setdefault("setup", real_prepare(args)))
    # cbt (harder) is listed first: the order must come from the ranks, not the file order.
    args = make_args("train", "--torch_training", "--output_dir", tmp_path / "run", "--difficulty", "source",
                     "--train_files", "cbt", "qed", "--max_steps", "30", "--batch_size", "4", "--eval_steps", "100")
    run_loop("pytorch", args)
    setup = captured["setup"]
    sources = majority_source(setup.train_meta["tokens_per_file"], 32, len(setup.train_dataset))
    early = [int(i) for t in range(5) for i in setup.curriculum.batch(t)]  # p(t) = 0.1 < qed's share
    assert set(sources[early]) == {1}  # only qed blocks (file index 1) while the pool is small
    late = [int(i) for t in range(26, 30) for i in setup.curriculum.batch(t)]
    assert 0 in set(sources[late])  # cbt joins once the pool has grown


def test_eval_blocks_validates_on_evenly_spaced_blocks(make_args, tmp_path):
    """--eval_blocks 7: the validation loss is that of the same 7 evenly spaced blocks, recomputed by hand."""
    import numpy as np

    from pretraining_dataset import load_blocks
    from training.validation import eval_collator, eval_dataset, evaluate_lm

    out = tmp_path / "run"
    args = make_args("train", "--torch_training", "--output_dir", out, "--max_steps", 4, "--batch_size", 4,
                     "--eval_steps", 4, "--eval_blocks", 7)
    results = run_loop("pytorch", args)
    tok = load_tokenizer(out / "best_model", "--model_dir")
    blocks, _ = load_blocks(resolve_files(SAMPLE, "validation", None), tok, 32, args.cache_dir, "validation")
    assert len(blocks) > 7
    chosen = blocks[[round(x) for x in np.linspace(0, len(blocks) - 1, 7)]]
    model = AutoModelForCausalLM.from_pretrained(out / "best_model")
    loss = evaluate_lm(model, eval_dataset(chosen, tok, True, 0.15), eval_collator(tok, True), 64, "cpu", "fp32")
    assert results["best_eval_loss"] == pytest.approx(loss["loss"], abs=1e-5)
    assert loss["tokens"] == 7 * 31
