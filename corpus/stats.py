"""Corpus statistics per split and file, as rows for a markdown table.

Per file: lines, words, characters and words per line; given a tokenizer, also
tokens, tokens per word and how much of the text the tokenizer could only spell
out in raw bytes. The counts follow the pipeline: a line is a non-empty line
after stripping (empty lines are dropped when the dataset is built), a word is a
whitespace-separated piece, characters are Unicode code points of those lines
(line ends not counted), and tokens are the tokenizer's tokens of each line
without special tokens (no BOS/EOS/CLS), so tokens per word measures only how
finely the text is split.

Byte statistics, for a byte-level BPE tokenizer (the pipeline's, GPT-2's):
- `single_byte_tokens`: tokens that are one symbol of the 256-byte initial
  alphabet, i.e. stand for exactly one byte. Most are ordinary: ",", ".", "?",
  a lone letter. Reported, but not a measure of failure.
- `byte_fallback_tokens`: tokens that hold only part of a character: their
  bytes are not valid UTF-8 on their own (e.g. the first byte of "☃", or two of
  the three bytes of "’"). These are characters the vocabulary has no token
  for, spelt in raw bytes: the byte-level counterpart of <unk>.
- `unk_tokens`: hits of `unk_token_id`. Byte-level BPE never needs <unk>, so
  this is 0 unless the text contains the unk token's string literally (the
  pipeline's causal tokenizer uses <|endoftext|> as unk).
For other tokenizers (WordPiece, Unigram) the two byte counts are None and
only unk hits are counted."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from corpus.cleaning import clean_lines, source_of
from corpus.editions import SPLIT_EXT, detect_corpus
from utils import UserError, numbered_lines

CHUNK_LINES = 10_000  # lines tokenized per batch: fast, and memory stays small for 100M-word files
COUNTS = ("lines", "words", "chars")
TOKEN_COUNTS = ("tokens", "single_byte_tokens", "byte_fallback_tokens", "unk_tokens")


# --------------------------------------------------------------------------- byte-level token classes


def _byte_to_symbol() -> dict[int, str]:
    """GPT-2's byte -> symbol map used by byte-level BPE: printable Latin-1 bytes
    are their own character, the other 68 bytes are shifted to chr(256 + n)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    shifted = (b for b in range(256) if b not in table)
    table.update({b: chr(256 + n) for n, b in enumerate(shifted)})
    return table


SYMBOL_TO_BYTE = {symbol: byte for byte, symbol in _byte_to_symbol().items()}


def _is_byte_level(tokenizer) -> bool:
    """True when the tokenizer's pre-tokenizer or decoder is ByteLevel (possibly inside a Sequence)."""
    spec = json.loads(tokenizer.backend_tokenizer.to_str())

    def has_byte_level(node) -> bool:
        if isinstance(node, dict):
            return node.get("type") == "ByteLevel" or any(has_byte_level(v) for v in node.values())
        if isinstance(node, list):
            return any(has_byte_level(v) for v in node)
        return False

    return has_byte_level(spec.get("pre_tokenizer")) or has_byte_level(spec.get("decoder"))


def byte_token_classes(tokenizer) -> tuple[np.ndarray, np.ndarray] | None:
    """(single_byte, byte_fallback): boolean arrays indexed by token id (see the
    module docstring), or None when the tokenizer is not byte-level.
    Special and added tokens are in neither class."""
    if not _is_byte_level(tokenizer):
        return None
    size = len(tokenizer)
    single_byte = np.zeros(size, dtype=bool)
    fallback = np.zeros(size, dtype=bool)
    added = set(tokenizer.get_added_vocab().values())
    for token, token_id in tokenizer.get_vocab().items():
        if token_id in added or token_id >= size:
            continue
        raw = [SYMBOL_TO_BYTE.get(symbol) for symbol in token]
        if None in raw:  # not a byte-level symbol string
            continue
        single_byte[token_id] = len(raw) == 1
        try:
            bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            fallback[token_id] = True
    return single_byte, fallback


# --------------------------------------------------------------------------- statistics


def _lines(path: Path, clean: bool) -> list[str]:
    """The non-empty stripped lines of `path` (strict UTF-8), cleaned with its source's rules if asked."""
    lines = [s for s in (line.strip() for _, line in numbered_lines(path)) if s]
    return clean_lines(lines, source_of(path))[0] if clean else lines


def _chunks(lines: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(lines), size):
        yield lines[start:start + size]


def _token_counts(lines: list[str], tokenizer, classes) -> dict[str, int | None]:
    counts = dict.fromkeys(TOKEN_COUNTS, 0)
    if classes is None:
        counts["single_byte_tokens"] = counts["byte_fallback_tokens"] = None
    unk = tokenizer.unk_token_id
    for chunk in _chunks(lines, CHUNK_LINES):
        # The Rust tokenizer directly: the same ids as tokenizer(chunk), a third faster, and no
        # warning about lines longer than model_max_length (nothing is fed to a model here).
        encodings = tokenizer.backend_tokenizer.encode_batch(chunk, add_special_tokens=False)
        flat = np.fromiter(itertools.chain.from_iterable(e.ids for e in encodings), dtype=np.int64)
        counts["tokens"] += len(flat)
        if unk is not None:
            counts["unk_tokens"] += int(np.count_nonzero(flat == unk))
        if classes is not None:
            single_byte, fallback = classes
            counts["single_byte_tokens"] += int(np.count_nonzero(single_byte[flat]))
            counts["byte_fallback_tokens"] += int(np.count_nonzero(fallback[flat]))
    return counts


def _add_ratios(row: dict) -> dict:
    """Fill in the ratios of a row from its counts (shared by file and total rows)."""
    row["words_per_line"] = row["words"] / row["lines"] if row["lines"] else 0.0
    if "tokens" in row:
        tokens = row["tokens"]
        row["tokens_per_word"] = tokens / row["words"] if row["words"] else 0.0
        for name in ("single_byte", "byte_fallback", "unk"):
            n = row[f"{name}_tokens"]
            row[f"{name}_share"] = None if n is None else (n / tokens if tokens else 0.0)
    return row


def file_stats(path: str | Path, tokenizer=None, clean: bool = False) -> dict:
    """Statistics of one corpus file (see the module docstring for the definitions).

    Keys: file, source, lines, words, chars, words_per_line; with a tokenizer also
    tokens, tokens_per_word, single_byte_tokens/_share, byte_fallback_tokens/_share
    (None for a tokenizer that is not byte-level), unk_tokens/_share. `clean=True`
    measures the lines as `cleaning.clean_lines` leaves them."""
    classes = byte_token_classes(tokenizer) if tokenizer is not None else None
    return _file_stats(Path(path), tokenizer, clean, classes)


def _file_stats(path: Path, tokenizer, clean: bool, classes) -> dict:
    """`file_stats` with the byte classes computed once by the caller (once per corpus, not per file)."""
    lines = _lines(path, clean)
    row = {"file": path.name, "source": source_of(path), "lines": len(lines),
           "words": sum(len(line.split()) for line in lines), "chars": sum(map(len, lines))}
    if tokenizer is not None:
        row.update(_token_counts(lines, tokenizer, classes))
    return _add_ratios(row)


def _total(split: str, rows: list[dict]) -> dict:
    total = {"split": split, "file": "total", "source": ""}
    for key in (*COUNTS, *TOKEN_COUNTS):
        if key in rows[0]:
            values = [row[key] for row in rows]
            total[key] = None if None in values else sum(values)
    return _add_ratios(total)


def corpus_stats(data_dir: str | Path, train_split: str | None = None, tokenizer=None,
                 clean: bool = False, cache_dir: str | Path = "cache") -> list[dict]:
    """Rows of `file_stats` for every file of the three splits of the corpus in `data_dir`
    (any layout corpus/editions.py reads), each with its `split` (folder name), and after
    each split a `total` row. A split folder that is missing or empty is left out (a
    partial corpus); no file at all is a UserError."""
    corpus = detect_corpus(data_dir, train_split, cache_dir)
    classes = byte_token_classes(tokenizer) if tokenizer is not None else None
    rows: list[dict] = []
    for split, folder in corpus.folders.items():
        split_rows = [{"split": folder.name, **_file_stats(path, tokenizer, clean, classes)}
                      for path in sorted(folder.glob(f"*{SPLIT_EXT[split]}"))]
        if split_rows:
            rows.extend([*split_rows, _total(folder.name, split_rows)])
    if not rows:
        raise UserError(f"no corpus files (*.train, *.dev, *.test) in {', '.join(map(str, corpus.folders.values()))}: "
                        "fix --data_dir or --train_split")
    return rows


# --------------------------------------------------------------------------- markdown

# (header, row key, format); the token columns are shown only when rows have tokens.
COLUMNS = (("split", "split", "{}"), ("file", "file", "{}"), ("lines", "lines", "{:,}"),
           ("words", "words", "{:,}"), ("chars", "chars", "{:,}"), ("words/line", "words_per_line", "{:.2f}"))
TOKEN_COLUMNS = (("tokens", "tokens", "{:,}"), ("tokens/word", "tokens_per_word", "{:.3f}"),
                 ("1-byte %", "single_byte_share", "{:.2%}"), ("byte-fallback %", "byte_fallback_share", "{:.3%}"),
                 ("unk %", "unk_share", "{:.3%}"))


def markdown_table(rows: list[dict]) -> str:
    """The rows as a markdown table (numbers right-aligned, total rows in bold,
    '-' for a value that does not apply)."""
    columns = COLUMNS + (TOKEN_COLUMNS if any("tokens" in row for row in rows) else ())
    lines = ["| " + " | ".join(header for header, _, _ in columns) + " |",
             "|" + "|".join("---" if fmt == "{}" else "---:" for _, _, fmt in columns) + "|"]
    for row in rows:
        cells = []
        for _, key, fmt in columns:
            value = row.get(key)
            cell = "-" if value is None else fmt.format(value).replace("%", "")
            cells.append(f"**{cell}**" if row.get("file") == "total" and cell != "-" else cell)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
