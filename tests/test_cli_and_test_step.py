"""run.py front end: help, one-line errors, and the test action's numbers."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT, SAMPLE
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

import run
from argument_parser import build_parser
from corpus.cleaning import clean_files
from corpus.editions import resolve_files
from pretraining_dataset import load_blocks


def test_help_documents_every_option_with_its_default():
    parsers = build_parser().action_parsers
    for name, parser in parsers.items():
        for action in parser._actions:
            if action.dest == "help":
                continue
            assert action.help, f"{name}: {action.dest} has no help"
            assert "default:" in parser._get_formatter()._get_help_string(action), (name, action.dest)
    text = parsers["train"].format_help()
    assert "--torch_training" in text and "(default: 128)" in text


def test_missing_corpus_is_one_line_and_exit_1(tmp_path):
    proc = subprocess.run([sys.executable, "run.py", "tokenizer", "--data_dir", str(tmp_path / "nowhere"),
                           "--tokenizer_dir", str(tmp_path / "tok")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "nowhere" in lines[0] and "data/sample" in lines[0]
    assert not (tmp_path / "tok").exists()


def test_user_errors_exit_1(make_args, tmp_path, capsys):
    assert run.main(["test", "--model_dir", str(tmp_path), "--output_dir", str(tmp_path / "o")]) == 1
    assert "not a saved model folder" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    code = run.main(["train", "--data_dir", str(SAMPLE), "--tokenizer_dir", str(tmp_path / "none"),
                     "--output_dir", str(tmp_path / "o")])
    assert code == 1 and "no tokenizer" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: bad values are usage errors (exit 2)
        run.main(["train", "--tokenizer_dir", "x", "--output_dir", "y", "--block_size", "0"])


def test_dataset_action_builds_every_split_once(tok_dirs, tmp_path):
    argv = ["dataset", "--data_dir", str(SAMPLE), "--cache_dir", str(tmp_path), "--tokenizer_dir",
            str(tok_dirs["clm"]), "--block_size", "32", "--train_files", "qed", "cbt"]
    assert run.main(argv) == 0
    entries = sorted(p.name.split("-")[0] for p in tmp_path.iterdir())
    assert entries == ["test", "train", "validation"]
    meta = json.loads(next(tmp_path.glob("train-*/meta.json")).read_text())
    assert [p.split("/")[-1] for p in meta["files"]] == ["qed.train", "cbt.train"]
    assert run.main(argv) == 0  # second time: all three from the cache
    assert len(list(tmp_path.iterdir())) == 3


def brute_force_loss(model, blocks, causal, dataset=None):
    nll, count = 0.0, 0
    with torch.no_grad():
        for i in range(len(blocks)):
            if causal:
                ids = torch.tensor(blocks[i], dtype=torch.long)[None]
                logits = model(ids).logits[0, :-1]
                labels = ids[0, 1:]
            else:
                item = dataset[i]
                logits = model(item["input_ids"][None]).logits[0]
                labels = item["labels"]
            keep = labels != -100
            nll += F.cross_entropy(logits[keep], labels[keep], reduction="sum").item()
            count += int(keep.sum())
    return nll / count


@pytest.mark.parametrize("model_type", ["gpt2", "bert"])
def test_test_action_matches_brute_force(model_type, make_args, tmp_path):
    from custom_models import build_model
    from training.run_folder import save_model_folder
    from training.validation import eval_dataset

    kind = "mlm" if model_type == "bert" else "clm"
    args = make_args("train", "--model_type", model_type, "--output_dir", tmp_path, kind=kind)
    tok = AutoTokenizer.from_pretrained(args.tokenizer_dir)
    torch.manual_seed(1)
    model = build_model(args, tok).eval()
    save_model_folder(model, tok, args, tmp_path / "model")

    assert run.main(["test", "--data_dir", str(SAMPLE), "--cache_dir", str(tmp_path / "cache"),
                     "--model_dir", str(tmp_path / "model"), "--output_dir", str(tmp_path / "t"),
                     "--block_size", "32", "--test_files", "qed", "aochildes", "--eval_batch_size", "7"]) == 0
    results = json.loads((tmp_path / "t" / "test_results.json").read_text())
    blocks, _ = load_blocks(resolve_files(SAMPLE, "test", ["qed", "aochildes"]), tok, 32, tmp_path / "cache", "test")
    causal = model_type == "gpt2"
    auto = AutoModelForCausalLM if causal else AutoModelForMaskedLM
    reloaded = auto.from_pretrained(tmp_path / "model").eval()
    expected = brute_force_loss(reloaded, blocks, causal, eval_dataset(blocks, tok, causal, 0.15))
    assert results["test_loss"] == pytest.approx(expected, abs=1e-4)
    assert results["test_perplexity"] == pytest.approx(math.exp(expected), rel=1e-4)
    assert (tmp_path / "t" / "tensorboard").is_dir()
    if causal:  # per word: the words of the lines whose EOS falls in a kept block, counted here afresh
        ends, words, n = [], [], 0
        for line in clean_files(resolve_files(SAMPLE, "test", ["qed", "aochildes"]))[0]:
            n += len(tok(line)["input_ids"]) + 1  # + EOS
            ends.append(n - 1)
            words.append(len(line.split()))
        kept = sum(w for end, w in zip(ends, words, strict=True) if end < len(blocks) * 32)
        assert results["test_words"] == kept
        scored = len(blocks) * 31  # each block's first token is not predicted
        assert results["test_nats_per_word"] == pytest.approx(expected * scored / kept, rel=1e-4)
    else:
        assert "test_nats_per_word" not in results


def test_stats_action_writes_the_table(tok_dirs, tmp_path, capsys):
    assert run.main(["stats", "--data_dir", str(SAMPLE), "--tokenizer_dir", str(tok_dirs["clm"]),
                     "--output_dir", str(tmp_path), "--no_cleaning"]) == 0
    printed = capsys.readouterr().out
    rows = json.loads((tmp_path / "corpus_stats.json").read_text())
    assert (tmp_path / "corpus_stats.md").read_text() == printed
    qed = next(r for r in rows if r.get("file") == "qed.train")
    words = sum(len(line.split()) for line in (SAMPLE / "babylm_10M" / "qed.train").read_text().splitlines())
    assert qed["words"] == words and qed["tokens_per_word"] > 1.0
    assert run.main(["stats", "--data_dir", str(SAMPLE)]) == 0  # by default: the cleaned text the models see
    cleaned = capsys.readouterr().out
    assert cleaned != printed and "qed.train" in cleaned
