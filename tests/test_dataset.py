"""Selecting files, packing, the cache, and MLM masking."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from conftest import SAMPLE
from transformers import AutoTokenizer

import pretraining_dataset as pdata
from corpus.editions import EDITIONS, resolve_files
from pretraining_dataset import BlockDataset, load_blocks, mask_tokens, stack_blocks
from utils import UserError


def test_sample_corpus_layout():
    for split, ext in (("babylm_10M", "train"), ("babylm_dev", "dev"), ("babylm_test", "test")):
        assert sorted(p.stem for p in (SAMPLE / split).glob(f"*.{ext}")) == sorted(EDITIONS["2023"].sources)
    size = sum(p.stat().st_size for p in SAMPLE.rglob("*") if p.is_file())
    assert size < 500_000


def test_resolve_files_selection(caplog, tmp_path):
    assert len(resolve_files(SAMPLE, "train", None)) == 10
    # A partial corpus: a missing BabyLM source is skipped with a warning ...
    (tmp_path / "babylm_dev").mkdir()
    (tmp_path / "babylm_test").mkdir()
    (tmp_path / "babylm_dev" / "qed.dev").write_text("a line\n")
    (tmp_path / "babylm_dev" / "extra.dev").write_text("a line\n")
    with caplog.at_level(logging.WARNING):
        files = resolve_files(tmp_path, "validation", ["qed", "cbt", "extra"])
    assert [p.name for p in files] == ["qed.dev", "extra.dev"]  # a non-BabyLM name with a file is used
    assert "'cbt'" in caplog.text
    with pytest.raises(UserError, match="none of the validation sources cbt wikipedia"):
        resolve_files(tmp_path, "validation", ["cbt", "wikipedia"])
    # ... but any other name without a file is a typo, listing the sources present.
    with pytest.raises(UserError, match="'qde' has no file .* pick from .*: extra qed$"):
        resolve_files(tmp_path, "validation", ["qde", "qed"])
    with pytest.raises(UserError, match="'nope' .* not a BabyLM source"):
        resolve_files(SAMPLE, "test", ["nope"])
    with pytest.raises(UserError, match="not found"):
        resolve_files(SAMPLE / "missing", "train", None)


def test_packing_keeps_every_token_but_the_remainder(tok_dirs, tmp_path):
    tok = AutoTokenizer.from_pretrained(tok_dirs["clm"])
    files = resolve_files(SAMPLE, "train", ["aochildes", "qed"])
    blocks, meta = load_blocks(files, tok, 50, tmp_path, "train", clean=False)
    assert blocks.shape[1] == 50 and meta["blocks"] == len(blocks) and meta["cleaning"] is None
    # Brute force: every non-empty line tokenized on its own, followed by EOS.
    stream = []
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                stream += tok(line.strip())["input_ids"] + [tok.eos_token_id]
    assert meta["tokens"] == len(stream)
    aochildes = sum(len(tok(line.strip())["input_ids"]) + 1
                    for line in files[0].read_text().splitlines() if line.strip())
    assert meta["tokens_per_file"] == [aochildes, len(stream) - aochildes]
    assert 0 <= meta["dropped_tokens"] < 50
    assert np.array_equal(np.asarray(blocks).reshape(-1), stream[: len(blocks) * 50])


def test_cleaning_is_applied_counted_and_switchable(tok_dirs, tmp_path, caplog):
    from corpus.cleaning import clean_files

    tok = AutoTokenizer.from_pretrained(tok_dirs["clm"])
    files = resolve_files(SAMPLE, "train", ["aochildes", "switchboard", "wikipedia"])
    with caplog.at_level(logging.INFO):
        blocks, meta = load_blocks(files, tok, 40, tmp_path, "train")
    lines, counts = clean_files(files)
    assert meta["cleaning"] == counts and counts["chat_speaker_label"] > 0 and counts["wiki_headers"] > 0
    assert "cleaning changed lines" in caplog.text and "chat_speaker_label" in caplog.text
    stream = [t for line in lines for t in tok(line)["input_ids"] + [tok.eos_token_id]]
    assert np.array_equal(np.asarray(blocks).reshape(-1), stream[: blocks.size])  # the cleaned text is packed
    assert not any(line.startswith("*MOT:") for line in lines)
    raw, raw_meta = load_blocks(files, tok, 40, tmp_path, "train", clean=False)  # a separate cache entry
    assert raw_meta["tokens"] > meta["tokens"] and len(list(tmp_path.glob("train-*"))) == 2


def test_mlm_lines_end_with_sep(tok_dirs, tmp_path):
    tok = AutoTokenizer.from_pretrained(tok_dirs["mlm"])
    blocks, _ = load_blocks(resolve_files(SAMPLE, "train", ["qed"]), tok, 40, tmp_path, "train")
    flat = np.asarray(blocks).reshape(-1)
    # Each line is <s> ... </s>: as many <s> as </s> (up to the cut at the end).
    assert abs(int((flat == tok.cls_token_id).sum()) - int((flat == tok.sep_token_id).sum())) <= 1
    assert tok.eos_token_id == tok.sep_token_id


def test_cache_hit_skips_tokenizing(tok_dirs, tmp_path, monkeypatch, caplog):
    tok = AutoTokenizer.from_pretrained(tok_dirs["clm"])
    files = resolve_files(SAMPLE, "validation", None)
    first, _ = load_blocks(files, tok, 32, tmp_path, "validation")

    def boom(*args, **kwargs):
        raise AssertionError("tokenized again despite the cache")

    monkeypatch.setattr(pdata, "tokenize_and_pack", boom)
    with caplog.at_level(logging.INFO):
        second, _ = load_blocks(files, tok, 32, tmp_path, "validation")
    assert "used cached dataset" in caplog.text
    assert np.array_equal(first, second)
    # A different block size is a different dataset: it must not hit the cache.
    with pytest.raises(AssertionError, match="tokenized again"):
        load_blocks(files, tok, 16, tmp_path, "validation")


def test_num_proc_gives_the_same_blocks(tok_dirs):
    tok = AutoTokenizer.from_pretrained(tok_dirs["clm"])
    lines = pdata.read_lines(resolve_files(SAMPLE, "train", ["cbt", "switchboard"]))
    one, d1, _ = pdata.tokenize_and_pack(lines, tok, 64, num_proc=1)
    two, d2, _ = pdata.tokenize_and_pack(lines, tok, 64, num_proc=2)
    assert np.array_equal(one, two) and d1 == d2


def test_mlm_masking_rates_and_specials(tok_dirs):
    tok = AutoTokenizer.from_pretrained(tok_dirs["mlm"])
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(len(tok.all_special_ids), len(tok), (200, 128), generator=g)
    ids[:, 0], ids[:, 64], ids[:, -1] = tok.cls_token_id, tok.sep_token_id, tok.sep_token_id
    masked_ids, labels = mask_tokens(ids, tok, 0.15, g)
    chosen = labels != -100
    special = torch.isin(ids, torch.tensor(tok.all_special_ids))
    assert not chosen[special].any()  # special tokens are never masked
    assert torch.equal(masked_ids[special], ids[special])
    assert torch.equal(labels[chosen], ids[chosen])  # labels are the original tokens
    rate = chosen.sum().item() / (~special).sum().item()
    assert abs(rate - 0.15) < 0.01
    n = chosen.sum().item()
    to_mask = (masked_ids == tok.mask_token_id) & chosen
    unchanged = (masked_ids == ids) & chosen
    assert abs(to_mask.sum().item() / n - 0.8) < 0.03
    # 10% random (a random token can equal the original, so "unchanged" is slightly above 10%).
    assert abs(unchanged.sum().item() / n - 0.1) < 0.03
    assert torch.equal(masked_ids[~chosen], ids[~chosen])

    rate_30 = (mask_tokens(ids, tok, 0.3, g)[1] != -100).sum().item() / (~special).sum().item()
    assert abs(rate_30 - 0.3) < 0.015  # the probability is an option


def test_fixed_mask_is_deterministic(tok_dirs):
    tok = AutoTokenizer.from_pretrained(tok_dirs["mlm"])
    blocks = np.random.default_rng(0).integers(10, len(tok), size=(8, 32))
    a = BlockDataset(blocks, tok, 0.15, fixed_mask_seed=7)
    b = BlockDataset(blocks, tok, 0.15, fixed_mask_seed=7)
    for i in (5, 0, 3):
        assert torch.equal(a[i]["labels"], b[i]["labels"])
        assert (a[i]["labels"] != -100).any()
    batch = stack_blocks([a[0], a[1]])  # pre-masked examples are only stacked
    assert torch.equal(batch["labels"][1], a[1]["labels"])
