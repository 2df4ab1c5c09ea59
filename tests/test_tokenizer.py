"""Tokenizer training: round trip, special tokens, offline loading."""

from __future__ import annotations

from conftest import SAMPLE
from transformers import AutoTokenizer

TEXTS = ["the dog sees the ball .", "Where are   you going, Mister Brown?", "naïve café — “quoted” 123",
         "= = = History = = ="]


def test_clm_round_trip_and_specials(tok_dirs):
    tok = AutoTokenizer.from_pretrained(tok_dirs["clm"])
    assert len(tok) == 600
    for text in TEXTS:
        ids = tok(text)["input_ids"]
        assert tok.decode(ids) == text  # byte-level BPE loses nothing, adds nothing
    assert tok.bos_token == tok.eos_token == "<|endoftext|>"
    assert tok.pad_token == "<pad>" and tok.pad_token_id != tok.eos_token_id
    # Unseen characters fall back to bytes instead of <unk>.
    assert tok.unk_token_id not in tok("汉字 ☃")["input_ids"]


def test_mlm_specials_and_template(tok_dirs):
    tok = AutoTokenizer.from_pretrained(tok_dirs["mlm"])
    names = ["cls_token", "sep_token", "pad_token", "unk_token", "mask_token"]
    ids = [getattr(tok, n + "_id") for n in names]
    assert None not in ids and len(set(ids)) == 5
    assert tok.bos_token_id == tok.cls_token_id and tok.eos_token_id == tok.sep_token_id
    enc = tok("the dog", "a cat")
    assert enc["input_ids"][0] == tok.cls_token_id and enc["input_ids"][-1] == tok.sep_token_id
    assert enc["input_ids"].count(tok.sep_token_id) == 2
    assert set(enc["token_type_ids"]) == {0, 1}
    text = "the dog sees the ball ."
    assert tok.decode(tok(text)["input_ids"], skip_special_tokens=True) == text
    # The mask token is one token, also right after a word.
    masked = tok("the <mask> runs")["input_ids"]
    assert masked.count(tok.mask_token_id) == 1


def test_tokenizer_folder_is_complete(tok_dirs):
    for folder in tok_dirs.values():
        assert (folder / "tokenizer.json").is_file()
        leftovers = [p.name for p in folder.parent.iterdir() if p.name.startswith(".")]
        assert leftovers == []  # the temporary folder was renamed into place


def test_clm_pairs_are_separated(tok_dirs):
    tok = AutoTokenizer.from_pretrained(tok_dirs["clm"])
    single = tok("the dog")["input_ids"]
    pair = tok("the dog", "a cat")["input_ids"]
    assert tok.eos_token_id not in single  # nothing added to one text
    assert pair == single + [tok.eos_token_id] + tok("a cat")["input_ids"]


def test_normalizing_tokenizer_pools_case_and_ptb_punctuation(tmp_path, tok_dirs):
    """--lowercase --join_punctuation (through run.py): the PTB-split, lower-case spelling of a sentence
    and its prose spelling become the same tokens, also after reloading the folder; the default
    tokenizer keeps them apart (so the normalizer, not the sample text, makes them equal)."""
    import run

    out = tmp_path / "norm"
    assert run.main(["tokenizer", "--data_dir", str(SAMPLE), "--tokenizer_dir", str(out), "--vocab_size", "600",
                     "--lowercase", "--join_punctuation"]) == 0
    norm, plain = AutoTokenizer.from_pretrained(out), AutoTokenizer.from_pretrained(tok_dirs["clm"])
    ptb, prose = "where is the dog , mister brown ? it 's here . i do n't know !", \
        "Where is the dog, Mister Brown? It's here. I don't know!"
    assert norm(ptb)["input_ids"] == norm(prose)["input_ids"]
    assert plain(ptb)["input_ids"] != plain(prose)["input_ids"]
    assert norm.decode(norm(prose)["input_ids"]) == ptb.replace(" ,", ",").replace(" ?", "?").replace(
        " 's", "'s").replace(" .", ".").replace(" n't", "n't").replace(" !", "!")
    # Only the listed marks are joined: a quote or a dash keeps its space, and the specials still work.
    assert norm.decode(norm("a ' b - c")["input_ids"]) == "a ' b - c"
    assert norm("the dog<|endoftext|>")["input_ids"][-1] == norm.eos_token_id
