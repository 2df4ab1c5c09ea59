"""The model card (training/model_card.py): every field against the run files it comes from,
missing files left out without a crash, and a real tiny training run writing best_model/README.md."""

from __future__ import annotations

import json
import os
import re

import pytest
import torch
from conftest import run_loop
from transformers import AutoTokenizer

from custom_models import build_model, count_parameters
from training.model_card import CARD_FILE, write_model_card
from training.run_folder import save_model_folder
from utils import UserError

# Two training files of known word counts (str.split(): runs of spaces, tabs, blank lines) and a
# third file of the split that the run did not train on.
ALPHA = "one two  three\n\n\tfour five\n"  # 5 words
BETA = "a b c d e f g\nh\u00a0i\n"  # 9 words (str.split() also splits at the no-break space)
GAMMA = "not trained on\n"
ZERO_SHOT = {"backend": "causal", "eval_dir": "fast_eval", "model_type": "gpt2",
             "results": {"official": {"blimp/blimp_fast": {"metric": "accuracy", "score": 61.25, "items": 80,
                                                           "ties": 2}},
                         "strict": {"blimp/blimp_fast": {"metric": "accuracy", "score": 58.75, "items": 80,
                                                         "ties": 2}}}}


@pytest.fixture
def fake_run(tmp_path, make_args):
    """A run folder as training leaves it: best_model/ (a real tiny GPT-2 saved the way training
    saves it, with run_args.json), two chck_* folders and train_results.json; its training data
    is two files of the tmp corpus. Returns (run_dir, the model)."""
    data = tmp_path / "corpus"
    (data / "babylm_10M").mkdir(parents=True)
    for name, text in (("alpha", ALPHA), ("beta", BETA), ("gamma", GAMMA)):
        (data / "babylm_10M" / f"{name}.train").write_text(text, encoding="utf-8")
    run_dir = tmp_path / "save" / "step_card"
    args = make_args("train", "--model_type", "gpt2", "--output_dir", run_dir, "--data_dir", data,
                     "--train_files", "alpha", "beta", "--learning_rate", "0.0042", "--batch_size", "7",
                     "--train_split", "10M")
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer_dir)
    torch.manual_seed(0)
    model = build_model(args, tokenizer)
    for folder in ("best_model", "chck_1K", "chck_500"):
        save_model_folder(model, tokenizer, args, run_dir / folder)
    results = {"loop": "pytorch", "steps": 30, "best_step": 20, "best_eval_loss": 3.5, "best_eval_perplexity": 33.1,
               "best_words_seen": 1400, "tokens_seen": 6720, "train_words": 14, "words_seen": 2100,
               "corpus": "corpus data: the 2023 BabyLM release (training files in data/babylm_10M)",
               "checkpoint_words": {"chck_500": {"words": 500, "step": 15, "words_seen": 508},
                                    "chck_1K": {"words": 1000, "step": 29, "words_seen": 1030}}}
    (run_dir / "train_results.json").write_text(json.dumps(results))
    return run_dir, model


def card_of(run_dir) -> str:
    path = write_model_card(run_dir)
    assert path == run_dir / "best_model" / CARD_FILE
    return path.read_text(encoding="utf-8")


def table_rows(card: str, first_cell: str) -> list[list[str]]:
    """The cells of every markdown table row whose first cell is `first_cell`."""
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in card.splitlines() if line.startswith("|")]
    return [row for row in rows if row[0] == first_cell]


def fact(card: str, name: str) -> str | None:
    found = re.search(rf"^- \*\*{re.escape(name)}:\*\* (.*)$", card, re.MULTILINE)
    return found.group(1) if found else None


def front_matter(card: str) -> dict[str, str | list[str]]:
    """The YAML front matter as the Hub reads it (yaml is not installed: `key: value` and `- item` lines)."""
    lines = card.splitlines()
    assert lines[0] == "---"
    end = lines.index("---", 1)
    meta: dict[str, str | list[str]] = {}
    key = None
    for line in lines[1:end]:
        if line.startswith("- "):
            assert key is not None and isinstance(meta[key], list), line
            meta[key].append(line[2:])
        else:
            key, _, value = line.partition(": ")
            key = key.rstrip(":")
            assert re.fullmatch(r"[a-z_]+", key), line
            meta[key] = value or []
    return meta


def test_words_per_training_file_and_total(fake_run):
    run_dir, _ = fake_run
    card = card_of(run_dir)
    assert table_rows(card, "alpha.train") == [["alpha.train", "5"]]
    assert table_rows(card, "beta.train") == [["beta.train", "9"]]
    assert table_rows(card, "gamma.train") == []  # in the folder, but not one of --train_files
    assert table_rows(card, "**total**") == [["**total**", "**14**"]]
    assert fact(card, "Training split") == "`10M`"
    assert fact(card, "Corpus") == "corpus data: the 2023 BabyLM release (training files in data/babylm_10M)"


def test_track_only_when_the_run_records_one(fake_run):
    """The track comes from train_results.json (what the run checked), never from an option's default."""
    run_dir, _ = fake_run
    args_file = run_dir / "best_model" / "run_args.json"
    args_file.write_text(json.dumps({**json.loads(args_file.read_text()), "track": "strict-small"}))
    assert fact(card_of(run_dir), "Track") is None
    results_file = run_dir / "train_results.json"
    results_file.write_text(json.dumps({**json.loads(results_file.read_text()), "track": "strict"}))
    assert fact(card_of(run_dir), "Track") == "strict"


def test_model_details_come_from_the_saved_model(fake_run):
    run_dir, model = fake_run
    card = card_of(run_dir)
    assert fact(card, "Parameters") == f"{count_parameters(model):,}"
    config = model.config
    assert fact(card, "Model type") == "gpt2"
    assert fact(card, "Hidden size") == str(config.n_embd) == "32"
    assert fact(card, "Layers") == str(config.n_layer) and fact(card, "Attention heads") == str(config.n_head)
    assert fact(card, "Vocabulary") == str(config.vocab_size)
    assert fact(card, "Context length") == "64 positions (trained on blocks of 32 tokens)"
    assert fact(card, "Tokenizer") == "byte-level BPE"
    assert 'AutoModelForCausalLM.from_pretrained("' in card and "trust_remote_code" not in card
    meta = front_matter(card)
    assert meta["pipeline_tag"] == "text-generation" and meta["library_name"] == "transformers"
    assert meta["language"] == "en" and {"babylm", "gpt2"} <= set(meta["tags"])


def test_hybrid_loads_with_trust_remote_code_and_bert_fills_masks(fake_run):
    run_dir, _ = fake_run
    config_file = run_dir / "best_model" / "config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, "model_type": "gpt_bert"}))
    card = card_of(run_dir)
    assert 'AutoModelForCausalLM.from_pretrained("' in card and "trust_remote_code=True" in card
    assert "custom_code" in front_matter(card)["tags"]
    config_file.write_text(json.dumps({**config, "model_type": "bert"}))
    card = card_of(run_dir)
    assert front_matter(card)["pipeline_tag"] == "fill-mask" and "AutoModelForMaskedLM" in card


def test_checkpoints_are_listed_with_their_words_and_steps(fake_run):
    run_dir, _ = fake_run
    card = card_of(run_dir)
    rows = table_rows(card, "`chck_500`") + table_rows(card, "`chck_1K`")
    assert rows == [["`chck_500`", "500", "15", "508"], ["`chck_1K`", "1,000", "29", "1,030"]]
    assert card.index("`chck_500`") < card.index("`chck_1K`")  # by words, not by name
    assert not (run_dir / "chck_500" / CARD_FILE).exists()  # the card goes into best_model/ only


def test_hyper_parameters_are_the_runs_options(fake_run):
    run_dir, _ = fake_run
    card = card_of(run_dir)
    args = json.loads((run_dir / "best_model" / "run_args.json").read_text())
    assert table_rows(card, "learning_rate") == [["learning_rate", str(args["learning_rate"])]] == [
        ["learning_rate", "0.0042"]]
    assert table_rows(card, "batch_size") == [["batch_size", "7"]]
    assert table_rows(card, "train_files") == [["train_files", "alpha beta"]]
    # Not hyper-parameters, or inactive in this run: options of other actions, bookkeeping,
    # distillation without teachers, masking for a causal LM.
    for name in ("finetune_learning_rate", "blimp_batch_size", "output_dir", "distill_alpha", "mlm_probability"):
        assert table_rows(card, name) == [], name


def test_evaluation_table_only_with_a_current_summary(fake_run):
    run_dir, _ = fake_run
    card = card_of(run_dir)
    assert "Not evaluated yet" in card and f"make evaluate STEP=step_card SAVE_DIR={run_dir.parent}" in card
    assert table_rows(card, "blimp/blimp_fast") == []

    # A checkpoint's scores (its own revision of the run's results) are not this model's.
    other = run_dir / "results" / "step_card" / "chck_500" / "zero_shot_summary_causal.json"
    other.parent.mkdir(parents=True)
    other.write_text(json.dumps(ZERO_SHOT))
    card = card_of(run_dir)
    assert table_rows(card, "blimp/blimp_fast") == [] and "Not evaluated yet" in card

    summary = run_dir / "results" / "step_card" / "main" / "zero_shot_summary_causal.json"
    summary.parent.mkdir(parents=True)
    summary.write_text(json.dumps(ZERO_SHOT))
    card = card_of(run_dir)
    assert table_rows(card, "blimp/blimp_fast") == [["blimp/blimp_fast", "accuracy", "80", "61.25", "58.75",
                                                                "2", "2"]]  # ties under each convention
    assert "Not evaluated yet" not in card

    # A summary older than the weights scored an earlier model of this folder (a run started over).
    weights = (run_dir / "best_model" / "model.safetensors").stat().st_mtime
    os.utime(summary, (weights - 60, weights - 60))
    card = card_of(run_dir)
    assert table_rows(card, "blimp/blimp_fast") == [] and "Not evaluated yet" in card

    # The layout before evaluation/layout.py: results/<model folder>/<revision>/.
    summary.unlink()
    (run_dir / "results" / "best_model" / "main").mkdir(parents=True)
    (run_dir / "results" / "best_model" / "main" / "zero_shot_summary_causal.json").write_text(json.dumps(ZERO_SHOT))
    assert table_rows(card_of(run_dir), "blimp/blimp_fast")

    # A checkpoint's own card (not written by training, but possible) reads its revision.
    card = write_model_card(run_dir, run_dir / "chck_500").read_text()
    assert table_rows(card, "blimp/blimp_fast") and "`chck_500`" in card


def test_finetune_results_of_this_model_only(fake_run):
    run_dir, _ = fake_run
    task = {"metrics": {"accuracy": 0.75, "f1": 0.5, "eval_loss": 0.6}, "best_epoch": 3}
    for name, model_dir in (("finetune_step_card", run_dir / "best_model"), ("finetune_other", run_dir / "chck_1K")):
        folder = run_dir.parent / name
        folder.mkdir()
        (folder / "finetune_results.json").write_text(json.dumps({"model_dir": str(model_dir), "tasks": {
            "mrpc" if name == "finetune_step_card" else "rte": task}}))
    card = card_of(run_dir)
    assert table_rows(card, "mrpc") == [["mrpc", "0.7500", "0.5000", "3"]]
    assert table_rows(card, "rte") == []  # another model's results
    assert "Not evaluated yet" not in card


def test_missing_files_leave_their_fields_out(fake_run):
    run_dir, model = fake_run
    (run_dir / "train_results.json").unlink()
    card = card_of(run_dir)
    assert fact(card, "Optimizer steps") is None and fact(card, "This model") is None
    assert table_rows(card, "`chck_1K`") == [["`chck_1K`", "", "", ""]]  # listed, no words or step to show
    assert table_rows(card, "**total**") == [["**total**", "**14**"]]  # resolved from run_args.json
    assert fact(card, "Parameters") == f"{count_parameters(model):,}"

    # Without run_args.json and the corpus, and with damaged weights: what is left.
    (run_dir / "best_model" / "run_args.json").unlink()
    (run_dir / "best_model" / "model.safetensors").write_bytes(b"not safetensors")
    card = card_of(run_dir)
    assert table_rows(card, "**total**") == [] and table_rows(card, "learning_rate") == []
    assert fact(card, "Parameters") is None and fact(card, "Model type") == "gpt2"

    with pytest.raises(UserError, match="no model folder"):
        write_model_card(run_dir, run_dir / "absent")
    assert not (run_dir / "absent").exists()


@pytest.mark.parametrize("loop", ["pytorch", "huggingface"])
def test_a_training_run_writes_the_card(loop, make_args, tmp_path):
    out = tmp_path / "run"
    flag = ["--torch_training"] if loop == "pytorch" else []
    args = make_args("train", *flag, "--model_type", "gpt2", "--output_dir", out, "--max_steps", "2",
                     "--train_files", "qed", "--checkpoint_words", "10")
    results = run_loop(loop, args)
    card = (out / "best_model" / CARD_FILE).read_text(encoding="utf-8")
    meta = front_matter(card)
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "text-generation"
    assert "babylm" in meta["tags"] and "gpt2" in meta["tags"]
    assert fact(card, "Model type") == "gpt2" and fact(card, "Optimizer steps") == "2"
    assert fact(card, "Parameters") == f"{results['parameters']:,}"
    assert table_rows(card, "qed.train") and table_rows(card, "`chck_10`")[0][2] == "1"
    assert "Not evaluated yet" in card
