"""--checkpoint_words: the words of each packed block against a line-by-line count, the
option's format, and both loops saving exactly the folders of the marks a run crosses
(the 2-process count is in test_distributed.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import SAMPLE, run_loop
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

from argument_parser import parse_args
from corpus.editions import resolve_files
from pretraining_dataset import load_blocks, split_lines
from tokenizer import load_tokenizer
from utils import BABYLM_WORD_MARKS, word_mark_name


def test_words_per_block_against_a_line_by_line_count(tok_dirs, tmp_path):
    """A line's words count in the block holding its last token; lines ending in the dropped
    remainder count nowhere."""
    block = 40
    for kind in ("clm", "mlm"):
        tok = load_tokenizer(tok_dirs[kind])
        files = resolve_files(SAMPLE, "train", ["qed", "cbt"])
        blocks, meta = load_blocks(files, tok, block, tmp_path / kind, "train")
        lines, _, _ = split_lines(files, "train")
        expected = np.zeros(len(blocks), dtype=np.int64)
        position = 0
        for line in lines:
            ids = tok(line, add_special_tokens=True)["input_ids"]
            if not ids or ids[-1] != tok.eos_token_id:
                ids = ids + [tok.eos_token_id]
            position += len(ids)
            if (position - 1) // block < len(blocks):
                expected[(position - 1) // block] += len(line.split())
        assert np.array_equal(meta["words_per_block"], expected), kind
        assert meta["block_words"] == expected.sum() <= meta["words"]
        assert list((tmp_path / kind).glob("train-*/words.npy"))


def test_option_format():
    base = ["train", "--tokenizer_dir", "t", "--output_dir", "o", "--checkpoint_words"]
    assert parse_args([*base, "500K", "1.5M", "2000000", "3B"]).checkpoint_words == [
        500_000, 1_500_000, 2_000_000, 3_000_000_000]
    babylm = parse_args([*base, "babylm"]).checkpoint_words
    assert babylm == list(BABYLM_WORD_MARKS) and len(babylm) == 19
    assert [word_mark_name(w) for w in babylm[8:11]] == ["9M", "10M", "20M"] and word_mark_name(babylm[-1]) == "100M"
    assert parse_args([*base, "babylm", "500K", "200M"]).checkpoint_words == [500_000, *BABYLM_WORD_MARKS, 200_000_000]
    assert [word_mark_name(w) for w in (999, 1500, 1_500_000, 2_000_000_000)] == ["999", "1500", "1500K", "2000M"]
    assert word_mark_name(1_000_000_000) == "1000M"  # the official strict list's last name, never "1B"


@pytest.mark.parametrize(("loop", "model_type"), [("pytorch", "bert"), ("huggingface", "gpt2")])
def test_one_epoch_saves_exactly_the_marks_it_crosses(loop, model_type, make_args, tmp_path):
    """One epoch trains on every block once, so the words seen are all the blocks' words,
    whatever the data order; the marks below that are saved, the one above is not."""
    kind = "mlm" if model_type == "bert" else "clm"
    out = tmp_path / "run"
    flag = ["--torch_training"] if loop == "pytorch" else []
    args = make_args("train", *flag, "--model_type", model_type, "--output_dir", out, "--batch_size", "64",
                     "--num_train_epochs", "1", "--eval_steps", "1000", "--logging_steps", "10",
                     "--checkpoint_words", "10K", "20K", "40K", "1M", kind=kind)
    results = run_loop(loop, args)
    cache = next((tmp_path / "cache").glob("train-*"))
    total = int(np.load(cache / "words.npy").sum())
    assert total == json.loads((cache / "meta.json").read_text())["block_words"] and 40_000 < total < 1_000_000
    assert results["words_seen"] == total
    assert sorted(results["checkpoint_words"]) == ["chck_10K", "chck_20K", "chck_40K"]
    assert sorted(p.name for p in out.glob("chck_*")) == ["chck_10K", "chck_20K", "chck_40K"]
    steps = [results["checkpoint_words"][n]["step"] for n in ("chck_10K", "chck_20K", "chck_40K")]
    assert steps == sorted(steps) and 1 < steps[0] and steps[-1] <= results["steps"]
    auto = AutoModelForMaskedLM if model_type == "bert" else AutoModelForCausalLM
    auto.from_pretrained(out / "chck_20K")
    assert json.loads((out / "chck_20K" / "run_args.json").read_text())["checkpoint_words"][0] == 10_000
