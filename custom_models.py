"""Build GPT-2, Llama and BERT models from the size options, or load a saved one.

Configs are built locally (never fetched) with the vocabulary size and special
token ids of the project's own tokenizer. GPT-2, Llama and BERT are stock
transformers architectures, so a saved folder loads through AutoModelForCausalLM /
AutoModelForMaskedLM / AutoModelForSequenceClassification with no custom code.
The exceptions are the hybrid GPT-BERT models (`gpt_bert`, and `ltg_bert` on its
authors' body; hybrid_model.py): their folders carry their own code and load with
trust_remote_code=True (passed here for those types only) through AutoModelForCausalLM
(what this module loads: causal by default), AutoModelForMaskedLM (masked next-token
mode) or AutoModel (the body)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    BertConfig,
    GPT2Config,
    LlamaConfig,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.utils import logging as hf_logging

from hybrid_model import BODY_PIECES
from tokenizer import load_tokenizer
from utils import UserError

# gpt_bert and ltg_bert are causal by default (validation loss, test loss and BLiMP score them as
# causal LMs); they also have a masked next-token mode (training batches, --hybrid_scoring masked).
CAUSAL_TYPES = ("gpt2", "llama", "gpt_bert", "ltg_bert")
MASKED_TYPES = ("bert",)
HYBRID_TYPES = ("gpt_bert", "ltg_bert")
# The hybrid body's switches (hybrid_model.BODY_PIECES) are options of the same names; None (not
# given) keeps the model type's own setting.


def is_causal(model_type: str) -> bool:
    """True for causal LMs (gpt2, llama, the hybrids gpt_bert and ltg_bert), False for masked LMs (bert)."""
    return model_type in CAUSAL_TYPES


def is_hybrid(model_type: str) -> bool:
    """True for the hybrid causal + masked next-token models (gpt_bert, ltg_bert)."""
    return model_type in HYBRID_TYPES


def build_config(args: argparse.Namespace, tokenizer) -> PretrainedConfig:
    """A fresh config for `args.model_type` sized by the options, ids from `tokenizer`."""
    pieces = {name: getattr(args, name) for name in BODY_PIECES if getattr(args, name, None) is not None}
    if pieces and not is_hybrid(args.model_type):
        flags = " ".join(f"--{name}" if on else f"--no-{name}" for name, on in pieces.items())
        raise UserError(f"{flags} switches a piece of the gpt_bert/ltg_bert body, not of {args.model_type}: "
                        "drop it or pass --model_type gpt_bert or ltg_bert")
    inner = args.intermediate_size or 4 * args.hidden_size
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id}
    if args.model_type == "gpt2":
        return GPT2Config(
            vocab_size=len(tokenizer), n_positions=args.max_position_embeddings, n_embd=args.hidden_size,
            n_layer=args.num_layers, n_head=args.num_heads, n_inner=inner,
            resid_pdrop=args.dropout, embd_pdrop=args.dropout, attn_pdrop=args.dropout, **ids,
        )
    if args.model_type == "llama":
        return LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=args.hidden_size, intermediate_size=inner,
            num_hidden_layers=args.num_layers, num_attention_heads=args.num_heads,
            max_position_embeddings=args.max_position_embeddings, attention_dropout=args.dropout,
            tie_word_embeddings=True, **ids,
        )
    if (args.model_type == "bert" or is_hybrid(args.model_type)) and tokenizer.mask_token_id is None:
        raise UserError(f"--model_type {args.model_type} needs a tokenizer with a mask token: "
                        "train it with --tokenizer_type mlm")
    if args.model_type == "bert":
        return BertConfig(
            vocab_size=len(tokenizer), hidden_size=args.hidden_size, num_hidden_layers=args.num_layers,
            num_attention_heads=args.num_heads, intermediate_size=inner,
            hidden_dropout_prob=args.dropout, attention_probs_dropout_prob=args.dropout,
            max_position_embeddings=args.max_position_embeddings, **ids,
        )
    if is_hybrid(args.model_type):
        from hybrid_model import CLASSES

        return CLASSES[args.model_type][0](
            vocab_size=len(tokenizer), hidden_size=args.hidden_size, num_hidden_layers=args.num_layers,
            num_attention_heads=args.num_heads, intermediate_size=inner,
            max_position_embeddings=args.max_position_embeddings, dropout=args.dropout,
            mask_token_id=tokenizer.mask_token_id, **pieces, **ids,
        )
    raise UserError(f"unknown --model_type {args.model_type}")


def saved_model_type(folder: str | Path) -> str:
    """The `model_type` recorded in a saved model folder's config.json."""
    config = Path(folder) / "config.json"
    if not config.is_file():
        raise UserError(f"'{folder}' is not a saved model folder (no config.json): "
                        "pass the best_model folder a training step wrote")
    try:
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (ValueError, AttributeError):  # not JSON / not UTF-8 / not a JSON object
        model_type = None
    if not isinstance(model_type, str):
        raise UserError(f"'{config}' is damaged (not a JSON object with a model_type): "
                        "pass the best_model folder a training step wrote")
    return model_type


def load_model(folder: str | Path, attn_implementation: str = "sdpa") -> PreTrainedModel:
    """Load a saved causal or masked LM through the Auto classes."""
    model_type = saved_model_type(folder)
    auto = AutoModelForCausalLM if is_causal(model_type) else AutoModelForMaskedLM
    # No "Loading weights" progress bar on stderr: it would come before any one-line error.
    bar_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        # float32 whatever the folder was saved in: scores and test losses are never computed
        # in a lower precision (bf16 autocast stays an explicit option of the training loops).
        if is_hybrid(model_type):  # its own code, saved in the folder (hybrid_model.py)
            return auto.from_pretrained(folder, trust_remote_code=True, dtype=torch.float32)
        return auto.from_pretrained(folder, attn_implementation=attn_implementation, dtype=torch.float32)
    # Broad on purpose: transformers and safetensors raise many unrelated types for a damaged
    # folder (OSError, ValueError, RuntimeError, SafetensorError, ...); all mean "not a usable model".
    except Exception as e:
        detail = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise UserError(f"cannot load the model in '{folder}' ({detail}): "
                        "pass the best_model folder a training step wrote") from None
    finally:
        if bar_enabled:
            hf_logging.enable_progress_bar()


def body_and_head(model: PreTrainedModel) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The model's transformer body and its vocabulary head, so that a loss or a scorer can
    run the head (about half of a small model's compute) only where it needs logits: BERT's
    `bert` and `cls` (dense + LayerNorm + projection), the hybrid's `model` and `lm_head`, a
    causal LM's base model and output embeddings. The one place that knows each family's names."""
    model_type = model.config.model_type
    if is_hybrid(model_type):
        return model.model, model.lm_head
    if not is_causal(model_type):
        return model.bert, model.cls
    return model.base_model, model.get_output_embeddings()


def load_model_and_tokenizer(folder: str | Path, attn_implementation: str = "sdpa", block_size: int | None = None,
                             option: str = "--model_dir") -> tuple[PreTrainedModel, Any]:
    """A saved model and the tokenizer saved beside it, checked to fit each other (and blocks
    of `block_size` tokens); UserError naming `option` otherwise."""
    model = load_model(folder, attn_implementation)  # checks the folder first
    tokenizer = load_tokenizer(folder, option)
    check_tokenizer_fits(model.config, tokenizer, folder, block_size, option=option)
    return model, tokenizer


def check_tokenizer_fits(config: PretrainedConfig, tokenizer, model_dir: str | Path, block_size: int | None = None,
                         option: str = "--model_dir", needs_mask: bool = True) -> None:
    """UserError unless `tokenizer` (and blocks of `block_size` tokens) can feed the model of `config`.

    The tokenizer may not have more tokens than the model's vocabulary (its ids would
    index past the embeddings; fewer is fine, as in models with a padded vocabulary),
    a masked LM scored by masking (`needs_mask`) needs a mask token, and a block must
    fit the model's positions."""
    vocab = getattr(config, "vocab_size", None)
    if vocab is not None and len(tokenizer) > vocab:
        raise UserError(f"the tokenizer of {option} {model_dir} has {len(tokenizer)} tokens but the model's "
                        f"vocabulary has {vocab}: save the model with the tokenizer it was trained with")
    needs_mask = needs_mask and (not is_causal(config.model_type) or is_hybrid(config.model_type))
    if needs_mask and tokenizer.mask_token_id is None:
        raise UserError(f"{option} {model_dir} is a masked LM ({config.model_type}) but its tokenizer has no mask "
                        "token: save it with the tokenizer it was trained with (--tokenizer_type mlm)")
    positions = getattr(config, "max_position_embeddings", None)
    if block_size is not None and positions is not None and block_size > positions:
        raise UserError(f"--block_size {block_size} exceeds the {positions} positions of {option} {model_dir}: "
                        f"pass --block_size {positions} or less")


def build_model(args: argparse.Namespace, tokenizer) -> PreTrainedModel:
    """A fresh model from the size options, or the saved `--init_model` to continue training."""
    if args.init_model:
        model = load_model(args.init_model, args.attn_implementation)
        if model.config.vocab_size != len(tokenizer):
            raise UserError(f"--init_model {args.init_model} has a vocabulary of {model.config.vocab_size} "
                            f"but --tokenizer_dir {args.tokenizer_dir} has {len(tokenizer)}: "
                            "continue with the tokenizer the model was trained with")
        if model.config.max_position_embeddings < args.block_size:
            raise UserError(f"--block_size {args.block_size} exceeds the positions of --init_model "
                            f"({model.config.max_position_embeddings})")
        return model
    config = build_config(args, tokenizer)
    if is_hybrid(args.model_type):
        from hybrid_model import CLASSES

        return CLASSES[args.model_type][2](config)
    auto = AutoModelForCausalLM if is_causal(args.model_type) else AutoModelForMaskedLM
    return auto.from_config(config, attn_implementation=args.attn_implementation)


def count_parameters(model: PreTrainedModel) -> int:
    """Number of distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())
