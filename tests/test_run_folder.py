"""The run folder's one reader (training/run_folder.py): a finished run's best model, train results
and words-seen checkpoints, and the model card, the learning curve, the report and the export
reading them through it, so they all see the same folders with the same words and steps."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoTokenizer

from custom_models import build_model
from evaluation.export import revisions
from evaluation.learning_curve import curve_points
from evaluation.report import collect
from training.model_card import write_model_card
from training.run_folder import RunFolder, save_model_folder
from utils import MAIN, UserError

RECORDED = {"chck_500": {"words": 500, "step": 15, "words_seen": 508},
            "chck_1K": {"words": 1000, "step": 29, "words_seen": 1030}}


@pytest.fixture
def finished(tmp_path, make_args) -> RunFolder:
    """A finished run: best_model/, two recorded chck_* folders written through RunFolder.save_model,
    a chck_2K folder train_results.json does not record, and a recorded chck_5K that is gone."""
    folder = RunFolder(tmp_path / "save" / "step_x")
    args = make_args("train", "--model_type", "gpt2", "--output_dir", folder.path)
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer_dir)
    torch.manual_seed(0)
    model = build_model(args, tokenizer)
    for name in ("best_model", "chck_1K", "chck_500"):
        assert folder.save_model(name, model, tokenizer, vars(args)) == folder.path / name
    save_model_folder(model, tokenizer, args, folder.path / "chck_2K")  # a stray folder (a run started over)
    folder.write_results({"loop": "pytorch", "steps": 30, "best_step": 20, "best_eval_loss": 3.5,
                          "best_eval_perplexity": 33.1, "best_words_seen": 1400, "tokens_seen": 6720,
                          "train_seconds": 1.0, "train_files": ["a.train"],
                          "checkpoint_words": {**RECORDED, "chck_5K": {"words": 5000, "step": 99, "words_seen": 5001}}})
    return folder


def test_the_reader_of_a_finished_run(finished):
    assert finished.state().value == "finished" and finished.train_results()["best_step"] == 20
    assert finished.run_args()["model_type"] == "gpt2"
    found = finished.word_checkpoints()
    assert [(m.name, m.mark, m.step, m.words_seen) for m in found] == [
        ("chck_500", 500, 15, 508), ("chck_1K", 1000, 29, 1030)]  # by words seen; the missing chck_5K left out
    every = finished.word_checkpoints(recorded_only=False)
    assert [(m.name, m.step) for m in every] == [("chck_500", 15), ("chck_1K", 29), ("chck_2K", None)]
    best = finished.best_point()
    assert (best.name, best.path, best.step, best.words_seen) == ("best_model", finished.best_model, 20, 1400)
    assert revisions(finished.path) == finished.revisions() == [
        (MAIN, finished.best_model), ("chck_500", finished.path / "chck_500"), ("chck_1K", finished.path / "chck_1K")]


def test_card_curve_report_and_export_read_the_same_run(finished):
    points = curve_points(finished.path)
    assert [(p["name"], p["words"], p["step"]) for p in points] == [
        ("chck_500", 508, 15), ("chck_1K", 1030, 29), ("best_model", 1400, 20)]
    card = write_model_card(finished.path).read_text()
    rows = [line for line in card.splitlines() if line.startswith("| `chck_")]
    assert rows == ["| `chck_500` | 500 | 15 | 508 |", "| `chck_1K` | 1,000 | 29 | 1,030 |", "| `chck_2K` |  |  |  |"]
    (row,) = collect(finished.path.parent)
    assert (row["step"], row["loop"], row["best_eval_loss"], row["tokens"]) == ("step_x", "pytorch", 3.5, 6720)
    assert [name for name, _ in revisions(finished.path)] == [MAIN, *(p["name"] for p in points[:-1])]


def test_an_unfinished_run_is_refused_by_every_reader(finished):
    finished.results_file.unlink()
    assert finished.read_results() is None and finished.state().value.startswith("interrupted")
    for read in (finished.train_results, finished.word_checkpoints, finished.revisions,
                 lambda: curve_points(finished.path)):
        with pytest.raises(UserError, match="no finished training run"):
            read()
    assert json.loads((finished.best_model / "run_args.json").read_text())["model_type"] == "gpt2"
