"""Train a byte-level BPE tokenizer from scratch on the selected training files.

Two flavours share the same BPE model and differ in their special tokens:
- `clm` (GPT-2 / Llama): `<|endoftext|>` is bos, eos and unk, plus `<pad>` for
  batching; nothing is added around a text (like GPT-2's tokenizer); a pair of
  texts is joined by `<|endoftext|>`.
- `mlm` (BERT): `<s>` (cls/bos), `</s>` (sep/eos), `<pad>`, `<unk>`, `<mask>`;
  a text is wrapped as `<s> text </s>` (pairs: `<s> a </s> b </s>`, with
  token type ids 0/1 as BERT's classification head expects).

Optional normalization (off by default) is part of the saved tokenizer, so it
applies wherever the folder is loaded: to the training blocks, the test text,
BLiMP's sentences and any external pipeline's input alike.
- `lowercase`: one token sequence for "Even"/"even" and "Susan"/"susan"
  (aochildes is all lower case, the other sources and BLiMP are not).
- `join_punctuation`: removes the space that the PTB-style sources (aochildes,
  cbt) put before `. , ? ! ; :` and the clitics `'s n't`, so "her ." and
  "do n't" are the same tokens as the prose sources' "her." and "don't".

The result is a fast-tokenizer folder that `AutoTokenizer.from_pretrained`
loads offline."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from corpus.cleaning import clean_files
from utils import UserError, atomic_dir, numbered_lines

CLM_SPECIAL = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
               "unk_token": "<|endoftext|>", "pad_token": "<pad>"}
MLM_SPECIAL = {"bos_token": "<s>", "cls_token": "<s>", "eos_token": "</s>", "sep_token": "</s>",
               "pad_token": "<pad>", "unk_token": "<unk>", "mask_token": "<mask>"}
# What `join_punctuation` attaches to the word before it (PTB tokenization splits these off).
DETACHED = (".", ",", "?", "!", ";", ":", "'s", "n't")


def iter_lines(files: list[Path]) -> Iterator[str]:
    """Yield the non-empty lines of the files, stripped (UserError on bytes that are not UTF-8)."""
    for path in files:
        for _, line in numbered_lines(path):
            line = line.strip()
            if line:
                yield line


def train_tokenizer(files: list[Path], out_dir: str | Path, kind: str = "clm", vocab_size: int = 16000,
                    min_frequency: int = 2, model_max_length: int = 512,
                    clean: bool = True, lowercase: bool = False,
                    join_punctuation: bool = False) -> PreTrainedTokenizerFast:
    """Train a `kind` ('clm' or 'mlm') tokenizer on `files` and save it to `out_dir`.

    The folder is written under a temporary name and renamed into place, so an
    interrupted run never leaves a half-written tokenizer. Files without any text
    or with bytes that are not UTF-8 are a UserError, and nothing is written."""
    special_map = CLM_SPECIAL if kind == "clm" else MLM_SPECIAL
    # Unique special tokens in a fixed order: they get the ids 0, 1, ...
    specials = list(dict.fromkeys(special_map.values()))

    tok = Tokenizer(models.BPE())
    steps = [normalizers.Lowercase()] if lowercase else []
    steps += [normalizers.Replace(" " + p, p) for p in DETACHED] if join_punctuation else []
    if steps:
        tok.normalizer = normalizers.Sequence(steps)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=specials,
        # Start from all 256 bytes so no input is ever out of vocabulary.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=True,
    )
    # Trained on the text the models will see: cleaned the same way as the dataset,
    # so no vocabulary is spent on speaker labels or markup.
    lines = iter(clean_files(files)[0]) if clean else iter_lines(files)
    first = next(lines, None)
    if first is None:  # `tokenizers` would train a tokenizer of bare bytes without a word
        raise UserError(f"the train files {' '.join(map(str, files))} contain no text: "
                        "pick files that hold text, or fix --data_dir")
    # A UserError raised by the line iterator (a non-UTF-8 line) propagates out of the Rust trainer.
    tok.train_from_iterator(itertools.chain([first], lines), trainer=trainer)
    fast = _wrapped(tok, kind, special_map, model_max_length)
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        fast.save_pretrained(tmp)
    return fast


def _wrapped(tok: Tokenizer, kind: str, special_map: dict[str, str],
             model_max_length: int) -> PreTrainedTokenizerFast:
    """A trained `tokenizers` BPE as a transformers fast tokenizer, with the family's special tokens
    and pair template."""
    if kind == "mlm":
        bos, eos = special_map["cls_token"], special_map["sep_token"]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A {eos}",
            pair=f"{bos} $A {eos} $B:1 {eos}:1",
            special_tokens=[(bos, tok.token_to_id(bos)), (eos, tok.token_to_id(eos))],
        )
    else:
        # A single text gets nothing added (as GPT-2); a pair, as in fine-tuning
        # inputs, is joined by <|endoftext|> so the two sentences stay apart.
        sep = special_map["eos_token"]
        tok.post_processor = processors.TemplateProcessing(
            single="$A", pair=f"$A {sep} $B:1", special_tokens=[(sep, tok.token_to_id(sep))],
        )
    tokens = dict(special_map)
    if kind == "mlm":
        # RoBERTa-style: "<mask>" swallows the space before it, so "a <mask>" masks the word " b".
        tokens["mask_token"] = AddedToken("<mask>", lstrip=True, rstrip=False, special=True)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
        # BERT's classification head uses token type ids for sentence pairs; GPT-2/Llama take none.
        model_input_names=(["input_ids", "attention_mask"] if kind == "clm"
                           else ["input_ids", "token_type_ids", "attention_mask"]),
        **tokens,
    )
    return fast


def load_tokenizer(folder: str | Path, option: str = "--tokenizer_dir"):
    """The tokenizer saved in `folder`: by the tokenizer action (`--tokenizer_dir`) or
    beside a saved model (`option="--model_dir"`). UserError, with the fix for that
    option, when the folder holds no tokenizer or its files do not load."""
    if option == "--tokenizer_dir":
        fix = "run the tokenizer action (make step1) first or fix --tokenizer_dir"
    else:
        fix = f"pass a model folder saved with its tokenizer (a training step's best_model) as {option}"
    folder = Path(folder)
    if not any((folder / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
        raise UserError(f"no tokenizer in '{folder}' (no tokenizer.json): {fix}")
    # A gpt_bert model folder's config.json names the project's own model code (auto_map), which
    # AutoTokenizer would otherwise stop to ask about on stdin; the tokenizer itself is standard.
    config = folder / "config.json"
    own_code = config.is_file() and "auto_map" in json.loads(config.read_text())
    try:
        return AutoTokenizer.from_pretrained(folder, trust_remote_code=own_code)
    # Exception, not a list: the `tokenizers` library raises the bare Exception class for a
    # tokenizer.json it cannot parse ("data did not match any variant ..."), and transformers
    # raises JSONDecodeError, KeyError, AttributeError, ValueError or OSError depending on which
    # file is damaged and how. Anything raised here means the folder does not load.
    except Exception as e:
        detail = (str(e).strip().splitlines() or [""])[0][:200]
        raise UserError(f"cannot load the tokenizer in '{folder}' ({type(e).__name__}: {detail}): "
                        f"the files are damaged; {fix}") from None
