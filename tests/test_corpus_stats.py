"""Corpus statistics: counts on tiny hand-made files against hand-computed
numbers, per-split totals, the markdown table, and the token statistics of a
byte-level tokenizer trained on the sample corpus (and of a word-level one)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

import corpus.stats as corpus_stats
from corpus.stats import byte_token_classes, file_stats, markdown_table
from corpus.stats import corpus_stats as stats_of_corpus
from utils import UserError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def clm(tok_dirs):
    return AutoTokenizer.from_pretrained(tok_dirs["clm"])


@pytest.fixture(scope="module")
def mlm(tok_dirs):
    return AutoTokenizer.from_pretrained(tok_dirs["mlm"])


def test_file_counts_are_the_pipelines_lines_words_and_characters(tmp_path):
    # Empty and blank lines do not count; lines are stripped; "☃" is one character.
    path = write(tmp_path / "qed.train", "the cat sat .\n\n   \n  a ☃ b  \nyes\n")
    row = file_stats(path)
    assert row == {"file": "qed.train", "source": "qed", "lines": 3, "words": 4 + 3 + 1,
                   "chars": 13 + 5 + 3, "words_per_line": 8 / 3}


def test_clean_counts_what_cleaning_leaves(tmp_path):
    path = write(tmp_path / "switchboard.train", "A:\tYeah. [laughter]\n[noise]\nB:\tRight.\n")
    assert (file_stats(path)["lines"], file_stats(path)["words"]) == (3, 3 + 1 + 2)
    row = file_stats(path, clean=True)
    assert (row["lines"], row["words"], row["chars"]) == (2, 2, len("Yeah.") + len("Right."))


def test_characters_the_vocabulary_lacks_are_byte_fallback(tmp_path, clm):
    # The sample corpus has no snowman: each of its 3 UTF-8 bytes is a token of one byte
    # that is not a character by itself.
    path = write(tmp_path / "snow.train", "☃☃\n")
    row = file_stats(path, clm)
    assert row["words"] == 1
    assert row["tokens"] == 6 and row["tokens_per_word"] == 6.0
    assert row["single_byte_tokens"] == 6 and row["byte_fallback_tokens"] == 6
    assert row["single_byte_share"] == 1.0 and row["byte_fallback_share"] == 1.0
    assert row["unk_tokens"] == 0 and row["unk_share"] == 0.0


def test_ordinary_single_byte_tokens_are_not_fallback(clm):
    single_byte, fallback = byte_token_classes(clm)
    assert single_byte.sum() == 256  # the initial alphabet, whatever the vocabulary size
    for text in (".", ",", "?", "a"):
        (token_id,) = clm(text, add_special_tokens=False)["input_ids"]
        assert single_byte[token_id] and not fallback[token_id], text
    # Special tokens are neither.
    for token_id in clm.all_special_ids:
        assert not single_byte[token_id] and not fallback[token_id]


def test_token_counts_match_the_tokenizer_and_do_not_depend_on_chunking(tmp_path, clm, monkeypatch):
    lines = ["the dog is big .", "Once upon a time, there was a hen.", "“Hi,” said Posy ☃.", "Yeah."] * 7
    path = write(tmp_path / "mix.train", "\n".join(lines) + "\n")
    ids = [i for line in lines for i in clm(line, add_special_tokens=False)["input_ids"]]
    single_byte, fallback = byte_token_classes(clm)
    whole = file_stats(path, clm)
    assert whole["tokens"] == len(ids)
    assert whole["single_byte_tokens"] == sum(bool(single_byte[i]) for i in ids)
    assert whole["byte_fallback_tokens"] == sum(bool(fallback[i]) for i in ids) == 3 * 7  # the snowmen
    assert whole["tokens_per_word"] == len(ids) / sum(len(line.split()) for line in lines)
    monkeypatch.setattr(corpus_stats, "CHUNK_LINES", 3)
    assert file_stats(path, clm) == whole


def test_unk_hits_are_counted(tmp_path, clm, mlm):
    path = write(tmp_path / "odd.train", "a <unk> b\n<|endoftext|> c\n")
    assert file_stats(path, mlm)["unk_tokens"] == 1  # <unk>
    assert file_stats(path, clm)["unk_tokens"] == 1  # the causal tokenizer's unk is <|endoftext|>


def test_a_word_level_tokenizer_has_unk_but_no_byte_counts(tmp_path):
    backend = Tokenizer(models.WordLevel({"[UNK]": 0, "the": 1, "cat": 2}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    assert byte_token_classes(tok) is None
    row = file_stats(write(tmp_path / "cbt.train", "the cat sat\nthe dog\n"), tok)
    assert (row["tokens"], row["unk_tokens"], row["unk_share"]) == (5, 2, 0.4)
    assert row["single_byte_tokens"] is None and row["byte_fallback_share"] is None
    table = markdown_table([{"split": "s", **row}])
    assert table.splitlines()[2].endswith("| 5 | 1.000 | - | - | 40.000 |")


def make_corpus(root: Path) -> Path:
    write(root / "babylm_10M" / "aochildes.train", "hi .\nlook at that !\n")
    write(root / "babylm_10M" / "qed.train", "So we add six.\n\n")
    write(root / "babylm_10M" / "notes.txt", "not a corpus file\n")
    write(root / "babylm_dev" / "qed.dev", "Right?\n")
    write(root / "babylm_test" / "qed.test", "Fine .\n")
    return root


def test_corpus_stats_rows_and_totals_per_split(tmp_path):
    rows = stats_of_corpus(make_corpus(tmp_path / "data"))
    assert [(r["split"], r["file"]) for r in rows] == [
        ("babylm_10M", "aochildes.train"), ("babylm_10M", "qed.train"), ("babylm_10M", "total"),
        ("babylm_dev", "qed.dev"), ("babylm_dev", "total"), ("babylm_test", "qed.test"), ("babylm_test", "total")]
    total = rows[2]
    assert (total["lines"], total["words"], total["chars"]) == (3, 2 + 4 + 4, 4 + 14 + 14)
    assert total["words_per_line"] == 10 / 3
    assert rows[4]["words"] == 1


def test_corpus_stats_total_with_a_tokenizer(tmp_path, clm):
    rows = stats_of_corpus(make_corpus(tmp_path / "data"), tokenizer=clm)
    files, total = rows[:2], rows[2]
    for key in ("tokens", "single_byte_tokens", "byte_fallback_tokens", "unk_tokens"):
        assert total[key] == sum(row[key] for row in files)
    assert total["tokens_per_word"] == total["tokens"] / total["words"]
    assert total["byte_fallback_tokens"] == 0


def test_corpus_stats_train_split_and_bad_folders(tmp_path):
    root = make_corpus(tmp_path / "data")
    write(root / "babylm_100M" / "cbt.train", "a b c\n")
    rows = stats_of_corpus(root, train_split="babylm_100M")
    assert [r["file"] for r in rows if r["split"] == "babylm_100M"] == ["cbt.train", "total"]
    with pytest.raises(UserError, match="not found"):
        stats_of_corpus(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no corpus"):
        stats_of_corpus(tmp_path / "empty")


def test_markdown_table(tmp_path):
    rows = stats_of_corpus(make_corpus(tmp_path / "data"))
    table = markdown_table(rows).splitlines()
    assert table[0] == "| split | file | lines | words | chars | words/line |"
    assert table[1] == "|---|---|---:|---:|---:|---:|"
    assert table[2] == "| babylm_10M | aochildes.train | 2 | 6 | 18 | 3.00 |"
    assert table[4] == "| **babylm_10M** | **total** | **3** | **10** | **32** | **3.33** |"
    assert len(table) == 2 + len(rows)


def test_markdown_table_with_token_columns(tmp_path, clm):
    rows = stats_of_corpus(make_corpus(tmp_path / "data"), tokenizer=clm)
    header = markdown_table(rows).splitlines()[0]
    assert header.endswith("| tokens | tokens/word | 1-byte % | byte-fallback % | unk % |")


def test_big_numbers_get_thousands_separators():
    row = {"split": "babylm_10M", "file": "cbt.train", "lines": 26000, "words": 570860, "chars": 3_100_000,
           "words_per_line": 21.956}
    assert markdown_table([row]).splitlines()[2] == "| babylm_10M | cbt.train | 26,000 | 570,860 | 3,100,000 | 21.96 |"
