"""Corpus files -> tokenized, packed blocks (cached on disk) -> batches.

Pipeline: the files of a split (picked by corpus/editions.py), drop empty lines, tokenize
with `datasets` (batched map, `num_proc` processes), end every line with the EOS
token, concatenate everything and cut it into blocks of `block_size` tokens.
Only the final remainder (< block_size tokens of the whole split) is dropped.

Each block also records the words (whitespace-separated, of the source text) of
the lines whose last token falls in it: what `--checkpoint_words` counts.

The packed blocks are cached under `cache_dir/<split>-<key>/` where the key
hashes the files' contents, the tokenizer and the block size, so the second run
with the same inputs loads the blocks instead of tokenizing again."""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from corpus.cleaning import clean_files, format_counts, rules_digest
from utils import UserError, atomic_dir, numbered_lines, sha256_of, write_json_atomic

CACHE_VERSION = 4  # bump when the packing format changes, to invalidate old caches

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- reading text


def read_lines(files: list[Path]) -> list[str]:
    """All non-empty lines of the files, stripped, in file order (UserError on bytes that are not UTF-8)."""
    lines = []
    for path in files:
        lines.extend(s for s in (line.strip() for _, line in numbered_lines(path)) if s)
    return lines


# --------------------------------------------------------------------------- tokenize + pack


def cache_key(files: list[Path], tokenizer, block_size: int, clean: bool = True) -> str:
    """Hash of everything the packed blocks depend on: file contents, cleaning rules,
    tokenizer, block size (editing a cleaning rule rebuilds the caches)."""
    h = hashlib.sha256()
    h.update(f"v{CACHE_VERSION} block={block_size} clean={rules_digest() if clean else 'off'}\n".encode())
    for path in files:
        h.update(f"{path.name} {sha256_of(path)}\n".encode())
    h.update(tokenizer.backend_tokenizer.to_str().encode())
    h.update(json.dumps(sorted(map(str, tokenizer.all_special_tokens))).encode())
    return h.hexdigest()[:20]


def tokenize_and_pack(lines: list[str], tokenizer, block_size: int,
                      num_proc: int = 1) -> tuple[np.ndarray, int, np.ndarray]:
    """Tokenize `lines`, end each with EOS, concatenate and cut into blocks.

    Returns (blocks [n_blocks, block_size], tokens dropped at the end, tokens of
    each line). Blocks are uint16 when the vocabulary fits (every vocabulary of up
    to 65,536 tokens), else int32: half the bytes to read per training batch."""
    # Imported here, not at the top: a run whose blocks are already cached (a GPU machine without
    # `datasets`, see tools/gpu_check.py) never tokenizes, and needs neither library.
    import pyarrow.compute as pc
    from datasets import Dataset as HFDataset

    eos = tokenizer.eos_token_id

    def encode(batch: dict) -> dict:
        # verbose=False: a line longer than model_max_length is fine here, blocks are cut later.
        ids = tokenizer(batch["text"], add_special_tokens=True, verbose=False)["input_ids"]
        # An MLM tokenizer's template already ends each text with </s> (= eos);
        # a causal one adds nothing, so the separator is appended here.
        return {"input_ids": [x if x and x[-1] == eos else x + [eos] for x in ids]}

    ds = HFDataset.from_dict({"text": lines})
    ds = ds.map(encode, batched=True, num_proc=num_proc if num_proc > 1 else None,
                remove_columns=["text"], desc="tokenizing")
    column = ds.data.column("input_ids")
    flat = pc.list_flatten(column).to_numpy().astype(np.uint16 if len(tokenizer) <= 65536 else np.int32)
    n_blocks = len(flat) // block_size
    blocks = flat[: n_blocks * block_size].reshape(n_blocks, block_size)
    return blocks, len(flat) - n_blocks * block_size, pc.list_value_length(column).to_numpy()


def split_lines(files: list[Path], split: str, clean: bool = True) -> tuple[list[str], dict | None, list[int]]:
    """The (cleaned) non-empty lines of `files`, the per-rule cleaning counts, and
    how many of the lines each file gave; a UserError when there is no text."""
    lines, counts, per_file = [], None, []
    for path in files:
        file_lines, file_counts = clean_files([path]) if clean else (read_lines([path]), None)
        lines.extend(file_lines)
        per_file.append(len(file_lines))
        if file_counts is not None:
            counts = {k: (counts or {}).get(k, 0) + n for k, n in file_counts.items()}
    if not lines:
        raise UserError(f"the {split} files {' '.join(map(str, files))} contain no text: "
                        "pick files that hold text, or fix --data_dir")
    return lines, counts, per_file


def build_blocks(files: list[Path], lines: list[str], counts: dict | None, lines_per_file: list[int], tokenizer,
                 block_size: int, split: str, num_proc: int = 1) -> tuple[np.ndarray, dict, np.ndarray]:
    """Tokenize and pack `lines` (read from `files`) in memory; writes nothing.
    Returns (blocks, meta, words of each block)."""
    blocks, dropped, line_tokens = tokenize_and_pack(lines, tokenizer, block_size, num_proc)
    ends = np.cumsum(lines_per_file)
    if len(blocks) == 0:
        raise UserError(f"the {split} files hold fewer than --block_size {block_size} tokens: "
                        "use a smaller --block_size or more files")
    # Words per block: a line's words count in the block holding its last token (its EOS); the
    # lines ending in the dropped remainder count nowhere, so the blocks sum to the words trained on.
    line_words = np.array([len(line.split()) for line in lines], dtype=np.int64)
    last_block = (np.cumsum(line_tokens) - 1) // block_size
    kept = last_block < len(blocks)
    words = np.bincount(last_block[kept], weights=line_words[kept], minlength=len(blocks)).astype(np.int32)
    meta = {
        "split": split,
        "files": [str(p) for p in files],
        "lines": len(lines),
        "words": int(line_words.sum()),
        "block_words": int(words.sum()),
        "tokens": int(blocks.size + dropped),
        "blocks": int(len(blocks)),
        "block_size": block_size,
        "dropped_tokens": int(dropped),
        "cleaning": counts,
        # Which file each stretch of the packed stream came from (the `source` curriculum).
        "tokens_per_file": [int(line_tokens[a:b].sum()) for a, b in zip(ends - lines_per_file, ends, strict=True)],
    }
    return blocks, meta, words


def load_splits(specs: list[tuple[str, list[Path]]], tokenizer, block_size: int, cache_dir: str | Path,
                num_proc: int = 1, logger=log, clean: bool = True,
                check: Callable[[str, dict], None] | None = None) -> list[tuple[np.ndarray, dict]]:
    """Packed blocks for each (split, files), from the cache when present.

    Every split that is not cached is built in memory first; the cache is written
    only once all of them succeeded, so a bad file in any split leaves nothing behind.
    `check(split, meta)` runs on every split's meta before anything is written (the
    challenge's rules, training/plan.py) and refuses with a UserError.
    Returns (blocks, meta) per split; meta records files, line/word/token counts and
    how many lines each cleaning rule changed, and (in memory only, not in meta.json)
    'words_per_block', the words of each block (`build_blocks`), memory-mapped."""
    folders = [Path(cache_dir) / f"{split}-{cache_key(files, tokenizer, block_size, clean)}" for split, files in specs]
    # All text is read and checked before anything is tokenized, then all is packed before anything is cached.
    todo = {folder: (split, files, *split_lines(files, split, clean))
            for (split, files), folder in zip(specs, folders, strict=True) if not (folder / "meta.json").is_file()}
    for split, files, _, _, per_file in todo.values():
        for path, n in zip(files, per_file, strict=True):
            if n == 0:
                logger.warning(f"{split} file {path} holds no text{' after cleaning' if clean else ''}: it adds "
                               "nothing to the split (remove it, or check that it is the file you meant)")
    built = {folder: build_blocks(files, lines, counts, per_file, tokenizer, block_size, split, num_proc)
             for folder, (split, files, lines, counts, per_file) in todo.items()}
    if check is not None:
        for (split, _), folder in zip(specs, folders, strict=True):
            check(split, built[folder][1] if folder in built else json.loads((folder / "meta.json").read_text()))
    results = []
    for (split, _), folder in zip(specs, folders, strict=True):
        if folder in built:
            blocks, meta, words = built[folder]
            # Written under a temporary name and renamed: a killed build leaves no cache entry.
            with atomic_dir(folder) as tmp:
                np.save(tmp / "blocks.npy", blocks)
                np.save(tmp / "words.npy", words)
                write_json_atomic(tmp / "meta.json", meta)
            logger.info(f"{split}: tokenized {meta['lines']} lines ({meta['words']} words, {meta['tokens']} tokens) "
                        f"into {meta['blocks']} blocks of {block_size}; dropped the last {meta['dropped_tokens']} "
                        f"tokens; cached in {folder}")
        else:
            meta = json.loads((folder / "meta.json").read_text())
            logger.info(f"{split}: used cached dataset {folder} ({meta['blocks']} blocks of {block_size})")
        if meta.get("cleaning"):
            logger.info(f"{split}: cleaning changed lines: {format_counts(meta['cleaning'])}")
        meta["words_per_block"] = np.load(folder / "words.npy", mmap_mode="r")
        results.append((np.load(folder / "blocks.npy", mmap_mode="r"), meta))
    return results


def load_blocks(files: list[Path], tokenizer, block_size: int, cache_dir: str | Path, split: str,
                num_proc: int = 1, logger=log, clean: bool = True) -> tuple[np.ndarray, dict]:
    """`load_splits` for one split."""
    return load_splits([(split, files)], tokenizer, block_size, cache_dir, num_proc, logger, clean)[0]


# --------------------------------------------------------------------------- datasets and collators


def mask_tokens(input_ids: torch.Tensor, tokenizer, probability: float,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: choose `probability` of the non-special tokens; of those, 80%
    become <mask>, 10% a random token, 10% stay. Labels are -100 elsewhere."""
    input_ids = input_ids.clone()
    labels = input_ids.clone()
    special = torch.isin(input_ids, torch.tensor(tokenizer.all_special_ids))
    probs = torch.full(input_ids.shape, probability)
    probs[special] = 0.0
    masked = torch.bernoulli(probs, generator=generator).bool()
    labels[~masked] = -100
    to_mask = torch.bernoulli(torch.full(input_ids.shape, 0.8), generator=generator).bool() & masked
    input_ids[to_mask] = tokenizer.mask_token_id
    to_random = torch.bernoulli(torch.full(input_ids.shape, 0.5), generator=generator).bool() & masked & ~to_mask
    random_ids = torch.randint(len(tokenizer), input_ids.shape, generator=generator)
    input_ids[to_random] = random_ids[to_random]
    return input_ids, labels


def draw_spans(shape: tuple[int, int], max_span: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Cut each row of a [rows, length] batch into consecutive spans whose lengths are drawn
    uniformly from 1..`max_span` (the row's last span may be cut short by the row's end).
    Returns each position's span number within its row, [rows, length] (0, 0, 1, 2, 2, 2, ...).
    The first draw of `mask_spans`: the same generator state gives the same spans."""
    rows, length = shape
    # `length` draws cover any row, since every span holds at least one token.
    lengths = torch.randint(1, max_span + 1, (rows, length), generator=generator)
    starts = (lengths.cumsum(1) - lengths).clamp(max=length)  # starts past the end land in a column dropped below
    first = torch.zeros(rows, length + 1, dtype=torch.long).scatter_(1, starts, 1)[:, :length]
    return first.cumsum(1) - 1


def mask_spans(input_ids: torch.Tensor, tokenizer, probability: float, max_span: int,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Span masking as in GPT-BERT (Charpentier & Samuel 2024; their SpanMaskingStrategy),
    for a [rows, length] batch: each row is cut into spans of 1..`max_span` tokens
    (`draw_spans`), every span gets one uniform score, and in a row of L non-special tokens
    the k = max(1, floor(L * probability + U(0, 1))) lowest-scoring tokens are chosen: about
    `probability` of the tokens on average (stochastic rounding keeps the expectation exact
    however short the row), whole spans at a time. The span holding the k-th token is taken
    whole, so a row gets up to max_span - 1 tokens more than k. Special tokens are never chosen.
    Each chosen span is replaced as one: 80% <mask>, 10% random non-special tokens, 10%
    unchanged. Returns (masked ids, labels: the original ids where chosen, -100 elsewhere).

    The authors also lower a position's score by how often it was masked in earlier epochs,
    which needs per-block state kept across the run (and in checkpoints); that is left out:
    every draw here depends on the generator only. With max_span 1 this draws each token's
    choice differently from `mask_tokens` (a fixed count per row, not a coin per token), so
    training keeps `mask_tokens` for --mask_span 1."""
    ids = input_ids.clone()
    rows, length = ids.shape
    special = torch.isin(ids, torch.tensor(tokenizer.all_special_ids))
    span = draw_spans((rows, length), max_span, generator)
    scores = torch.rand(rows, length, generator=generator).gather(1, span)  # one score per span
    scores[special] = math.inf
    maskable = (~special).sum(1)
    k = (maskable * probability + torch.rand(rows, generator=generator)).floor().long().clamp(min=1)
    k = torch.minimum(k, maskable)  # 0 in a row of special tokens only
    threshold = scores.sort(1).values.gather(1, (k - 1).clamp(min=0)[:, None])
    masked = (scores <= threshold) & ~special & (k > 0)[:, None]
    labels = torch.where(masked, input_ids, -100)
    choice = torch.rand(rows, length, generator=generator).gather(1, span)  # one replacement per span
    allowed = torch.ones(len(tokenizer), dtype=torch.bool)
    allowed[tokenizer.all_special_ids] = False
    vocabulary = allowed.nonzero()[:, 0]
    random_ids = vocabulary[torch.randint(len(vocabulary), (rows, length), generator=generator)]
    to_random = masked & (choice >= 0.8) & (choice < 0.9)
    ids[masked & (choice < 0.8)] = tokenizer.mask_token_id
    ids[to_random] = random_ids[to_random]
    return ids, labels


class BlockDataset(Dataset):
    """Packed blocks as {'input_ids'}. With `fixed_mask_seed` set (MLM evaluation),
    each block also gets 'labels' from a masking that depends only on the seed and
    the block's index, so validation and test losses are comparable across runs,
    batch sizes and training loops. With `words` (the words of each block, see
    `build_blocks`), items also carry 'words', which the training step removes and counts."""

    def __init__(self, blocks: np.ndarray, tokenizer=None, mlm_probability: float = 0.15,
                 fixed_mask_seed: int | None = None, words: np.ndarray | None = None) -> None:
        self.blocks = blocks
        self.tokenizer = tokenizer
        self.mlm_probability = mlm_probability
        self.fixed_mask_seed = fixed_mask_seed
        self.words = words

    def __len__(self) -> int:
        return len(self.blocks)

    def batch(self, indices: torch.Tensor) -> torch.Tensor:
        """The blocks at `indices` as one int64 [len(indices), block_size] tensor: a single
        fancy-indexed read of the memory-mapped cache (the custom loop's data path)."""
        return torch.from_numpy(self.blocks[indices.numpy()].astype(np.int64))

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        ids = torch.from_numpy(np.asarray(self.blocks[i], dtype=np.int64))
        if self.words is not None:
            return {"input_ids": ids, "words": torch.tensor(int(self.words[i]))}
        if self.fixed_mask_seed is None:
            return {"input_ids": ids}
        g = torch.Generator().manual_seed(self.fixed_mask_seed * 1_000_003 + i)
        ids, labels = mask_tokens(ids, self.tokenizer, self.mlm_probability, g)
        return {"input_ids": ids, "labels": labels}


class CLMCollator:
    """Stack blocks; labels are the inputs (the model shifts them)."""

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        ids = torch.stack([e["input_ids"] for e in examples])
        if "words" in examples[0]:
            return {"input_ids": ids, "labels": ids.clone(), "words": torch.stack([e["words"] for e in examples])}
        return {"input_ids": ids, "labels": ids.clone()}


def stack_blocks(examples: list[dict]) -> dict[str, torch.Tensor]:
    """Stack every field of the examples: masked-LM training blocks (input_ids only;
    masked later, in the training step) and fixed-mask evaluation blocks (with labels)."""
    return {key: torch.stack([e[key] for e in examples]) for key in examples[0]}
