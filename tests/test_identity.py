"""Results that name the model they scored (training/identity.py): a saved folder's identity is
checked, not trusted; a result scored before training replaced best_model/ (an evaluation during
training, a retrained run) is refused by the submission and marked stale by the report and the
model card; a run whose training holds the folder lock is not evaluated, fine-tuned or scored
over its checkpoints (the lock holder's pid is named)."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from conftest import ROOT, SAMPLE, TINY_MODEL
from official_tree import save_run_models
from transformers import AutoTokenizer

import evaluation.report as report
import run
from custom_models import load_model_and_tokenizer
from evaluation.submission import build_submission
from training.identity import IDENTITY_FILE, folder_identity, loaded, staleness, weights_digest
from training.model_card import write_model_card
from training.run_folder import RunFolder
from utils import FolderLock, UserError

FAST = ROOT / "data" / "sample_eval" / "fast_eval"


def train(save, name, tok_dirs, tmp_path, *extra: str) -> RunFolder:
    """A tiny run (4 steps, best model kept at steps 2 and 4) in save/name."""
    assert run.main(["train", "--torch_training", "--data_dir", str(SAMPLE), "--cache_dir", str(tmp_path / "cache"),
                     *TINY_MODEL, "--tokenizer_dir", str(tok_dirs["clm"]), "--output_dir", str(save / name),
                     "--max_steps", "4", "--eval_steps", "2", "--logging_steps", "2", *extra]) == 0
    return RunFolder(save / name)


def test_a_saved_folder_is_checked_not_trusted(tok_dirs, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tok_dirs["clm"])
    ids = save_run_models(tmp_path / "r", tokenizer, ["best_model"])
    folder = tmp_path / "r" / "best_model"
    stored = json.loads((folder / IDENTITY_FILE).read_text())
    assert stored["digest"] == ids["best_model"].digest and (stored["step"], stored["words_seen"]) == (1, 1000)
    assert ids["best_model"].problem is None
    # A weight file changed in place, same size, its mtime put back: never taken from the memo.
    weights = folder / "model.safetensors"
    stat, data = weights.stat(), bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    tampered = folder_identity(folder)
    assert tampered.digest != stored["digest"] and tampered.step is None
    assert "no longer match weights_identity.json (saved at step 1" in tampered.problem
    # A result made of the tampered weights is not stale (same digest) but untrusted, for every collector.
    assert staleness(tampered.to_json(), tampered, "best_model").startswith("untrusted: best_model/ its weights")
    assert staleness(stored, tampered, "best_model").startswith("stale: scored step 1")
    # A folder saved without the file: its digest computed, step and words unknown.
    (folder / IDENTITY_FILE).unlink()
    plain = folder_identity(folder)
    assert (plain.digest, plain.step, plain.words_seen, plain.problem) == (weights_digest(folder), None, None, None)


def test_a_folder_replaced_while_it_is_loaded_is_refused(tok_dirs, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tok_dirs["clm"])
    save_run_models(tmp_path / "r", tokenizer, ["best_model"])
    folder = tmp_path / "r" / "best_model"

    def load_while_training_saves():
        model, tok = load_model_and_tokenizer(folder)
        save_run_models(tmp_path / "r", tokenizer, ["best_model"], seed=7)  # the next best model lands
        return model, tok

    with pytest.raises(UserError, match="was replaced while it was being read"):
        loaded(folder, load_while_training_saves)
    (_, _), identity = loaded(folder, lambda: load_model_and_tokenizer(folder))
    assert identity.digest == folder_identity(folder).digest


def test_evaluated_during_training_then_replaced_is_refused_and_marked_stale(tok_dirs, tmp_path, capsys):
    """run.py evaluate on best_model/ while training runs, simulated: evaluate, then training saves a
    new best model through the run folder (as BestTracker does); submission, report and card see it."""
    save = tmp_path / "save"
    folder = train(save, "step2_1", tok_dirs, tmp_path)
    full = tmp_path / "full_eval" / "blimp_filtered"  # a small set under the full set's name
    shutil.copytree(FAST / "blimp_fast", full)
    assert run.main(["evaluate", "--model_dir", str(folder.best_model), "--eval_dir", str(full.parent),
                     "--convention", "official"]) == 0
    summary = json.loads(next((folder.path / "results").glob("*/main/zero_shot_summary_*.json")).read_text())
    scored = folder.train_results()["best_step"]
    assert summary["model"]["step"] == scored and summary["model"]["digest"] == folder.identity().digest
    sidecar = folder.path / "results" / "step2_1" / "main" / "zero_shot" / "causal" / "blimp" / "blimp_filtered"
    assert json.loads((sidecar / "model.json").read_text()) == summary["model"]
    # Training goes on: a better model replaces best_model/.
    model, tokenizer = load_model_and_tokenizer(folder.best_model)
    with torch.no_grad():
        next(model.parameters()).add_(0.01)
    folder.save_model("best_model", model, tokenizer, folder.run_args(), step=876, words_seen=5000)
    with pytest.raises(UserError) as refused:
        build_submission(folder.path)
    message = str(refused.value)
    assert "\n" not in message
    assert f"blimp/blimp_filtered (full set) is stale: scored step {scored}" in message
    assert "best_model/ is now step 876, 5,000 words" in message
    assert f"`make evaluate STEP=step2_1 SAVE_DIR={save} EVAL_SET=full_eval`" in message
    text = report.write_report(save).read_text()
    row = next(line for line in text.splitlines() if line.startswith("| step2_1 (main) |"))
    assert f"stale: scored step {scored}" in row and "best_model/ is now step 876" in row
    card = write_model_card(folder.path).read_text()
    assert f"stale: scored step {scored}" in card and "### Zero-shot" not in card


def test_a_retrained_run_marks_its_old_test_and_blimp_stale(tok_dirs, tmp_path):
    save = tmp_path / "save"
    folder = train(save, "step2_1", tok_dirs, tmp_path)
    assert run.main(["test", "--data_dir", str(SAMPLE), "--cache_dir", str(tmp_path / "cache"), "--block_size", "32",
                     "--model_dir", str(folder.best_model), "--blimp_dir", str(ROOT / "data" / "sample_eval" / "blimp"),
                     "--output_dir", str(save / "step2_2")]) == 0
    test = json.loads((save / "step2_2" / "test_results.json").read_text())
    assert test["model"]["digest"] == folder.identity().digest
    row = next(line for line in report.write_report(save).read_text().splitlines() if line.startswith("| step2_1 |"))
    assert f"{test['test_perplexity']:.2f}" in row and "stale" not in row
    train(save, "step2_1", tok_dirs, tmp_path, "--overwrite_output_dir", "--seed", "3")  # RESTART=1
    row = next(line for line in report.write_report(save).read_text().splitlines() if line.startswith("| step2_1 |"))
    assert row.count("stale: scored step 4") == 2 and f"{test['test_perplexity']:.2f}" not in row


def test_a_run_being_trained_is_not_evaluated(tok_dirs, tmp_path, capsys):
    tokenizer = AutoTokenizer.from_pretrained(tok_dirs["clm"])
    run_dir = tmp_path / "r"
    save_run_models(run_dir, tokenizer, ["best_model", "chck_1M"])
    lock = FolderLock(run_dir)  # what training holds while it runs
    try:
        assert FolderLock.holder(run_dir) == str(os.getpid())
        for argv in (["evaluate", "--model_dir", str(run_dir / "best_model"), "--eval_dir", str(FAST)],
                     ["finetune", "--model_dir", str(run_dir / "best_model"), "--output_dir", str(tmp_path / "ft"),
                      "--glue_dir", str(ROOT / "data" / "sample_eval" / "glue")],
                     ["evaluate_checkpoints", "--model_dir", str(run_dir), "--eval_dir", str(FAST)]):
            assert run.main(argv) == 1
            err = capsys.readouterr().err
            assert f"is being trained (pid {os.getpid()} holds its lock)" in err and "wait for the training" in err
            assert err.count("\n") == 1
    finally:
        lock.release()
    assert FolderLock.holder(run_dir) is None
    assert not (tmp_path / "ft").exists() and not (run_dir / "results").exists()
