"""Language-model evaluation: loss and perplexity on a packed split.

`evaluate_lm` is the single definition of validation/test loss, used by both
training loops and by the test step, so the numbers are comparable everywhere:
the mean negative log-likelihood per predicted token (token-weighted over the
whole split, not a mean of batch means). For MLM the masked positions come from
a fixed seed (see BlockDataset), so every run scores the same masks."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset
from transformers import PreTrainedModel

import distributed
from custom_models import check_tokenizer_fits, is_causal, load_model
from hardware import autocast, log_choice
from pretraining_dataset import BlockDataset, CLMCollator, load_blocks, resolve_files, stack_blocks
from utils import RunLogger, get_device, write_json_atomic

EVAL_MASK_SEED = 1234  # fixed masking of MLM validation/test blocks


@torch.no_grad()
def evaluate_lm(model: PreTrainedModel, dataset: Dataset, collator, batch_size: int,
                device: torch.device, precision: str = "fp32") -> dict[str, float]:
    """Token-weighted mean loss and perplexity of `model` on `dataset`.

    With several processes (see distributed.py) every rank scores every world_size-th
    block and the sums are added up, so every rank gets the same whole-split result."""
    was_training = model.training
    model.eval()
    causal = is_causal(model.config.model_type)
    total_nll, total_tokens = 0.0, 0
    world = distributed.world_size()
    if world > 1:
        dataset = Subset(dataset, range(distributed.rank(), len(dataset), world))
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collator):
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast(device, precision):
            logits = model(input_ids=batch["input_ids"]).logits
        labels = batch["labels"]
        if causal:  # position t predicts token t+1
            logits, labels = logits[:, :-1], labels[:, 1:]
        nll = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), labels.reshape(-1),
                              ignore_index=-100, reduction="sum")
        total_nll += nll.item()
        total_tokens += int((labels != -100).sum())
    model.train(was_training)
    total_nll, total_tokens = distributed.sum_across([total_nll, total_tokens])
    total_tokens = int(total_tokens)
    loss = total_nll / max(total_tokens, 1)
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "tokens": total_tokens}


def spread_blocks(blocks, count: int | None):
    """`count` blocks evenly spaced over `blocks` (all when count is None or not smaller), so every
    validation file keeps its share and the same blocks are chosen every time (--eval_blocks)."""
    if count is None or count >= len(blocks):
        return blocks
    return blocks[np.linspace(0, len(blocks) - 1, count).round().astype(np.int64)]


def eval_dataset(blocks, tokenizer, causal: bool, mlm_probability: float) -> BlockDataset:
    """A validation/test dataset: plain blocks for causal LMs, fixed masks for MLMs."""
    if causal:
        return BlockDataset(blocks)
    return BlockDataset(blocks, tokenizer, mlm_probability, fixed_mask_seed=EVAL_MASK_SEED)


def eval_collator(tokenizer, causal: bool):
    """The collator matching `eval_dataset`."""
    return CLMCollator() if causal else stack_blocks


def run_test(args: argparse.Namespace) -> dict:
    """The test action: loss and perplexity of `--model_dir` on the test files,
    written to `<output_dir>/test_results.json` and TensorBoard."""
    out = Path(args.output_dir)
    model_dir = Path(args.model_dir)
    # Every input is checked, and the test files read and packed, before the run folder is made.
    model = load_model(model_dir, args.attn_implementation)  # checks the folder first
    from training_setup import load_tokenizer  # not at the top: training_setup imports this module

    tokenizer = load_tokenizer(model_dir, "--model_dir")
    check_tokenizer_fits(model.config, tokenizer, model_dir, args.block_size)
    paradigms = None
    if args.blimp_dir:
        from blimp import load_paradigms

        paradigms = load_paradigms(args.blimp_dir)  # a bad BLiMP folder fails before anything is written
    device = get_device(args.device)
    causal = is_causal(model.config.model_type)
    logger = RunLogger(None)  # console only until the test files are read and packed
    try:
        files = resolve_files(args.data_dir, "test", args.test_files, args.train_split, logger)
        blocks, meta = load_blocks(files, tokenizer, args.block_size, args.cache_dir, "test", args.num_proc, logger,
                                   clean=not args.no_cleaning)
        logger.attach(out)
        log_choice(logger, args)
        logger.info(f"testing {model_dir} on {meta['blocks']} blocks of {args.block_size} tokens "
                    f"from {len(files)} test files")
        model.to(device)
        metrics = evaluate_lm(model, eval_dataset(blocks, tokenizer, causal, args.mlm_probability),
                              eval_collator(tokenizer, causal), args.eval_batch_size, device, args.precision)
        results = {
            "model_dir": str(model_dir),
            "test_files": [str(p) for p in files],
            "test_loss": metrics["loss"],
            "test_perplexity": metrics["perplexity"],
            "scored_tokens": metrics["tokens"],
            "block_size": args.block_size,
            "precision": args.precision,
            "objective": "causal LM" if causal
            else f"masked LM ({args.mlm_probability:.0%} masked, seed {EVAL_MASK_SEED})",
        }
        if causal:
            # Per word of the test text, which runs with different tokenizers share (a loss per token
            # is not comparable across vocabularies). The words are those of the lines ending in a
            # scored block; each block's first token is not predicted, as in test_loss.
            results["test_words"] = int(meta["words_per_block"].sum())
            results["test_nats_per_word"] = metrics["loss"] * metrics["tokens"] / results["test_words"]
        logger.metrics(0, {"test/loss": metrics["loss"], "test/perplexity": metrics["perplexity"]})
        logger.info(f"test loss {metrics['loss']:.4f}, perplexity {metrics['perplexity']:.2f} "
                    f"on {metrics['tokens']} tokens")
        if args.blimp_dir:
            from blimp import run_blimp

            # The same loaded model and pairs; blimp_results.json/.md beside test_results.json.
            run_blimp(args, logger, model=model, tokenizer=tokenizer, paradigms=paradigms)
        # Last: Make takes test_results.json as "this test step is done", BLiMP included.
        write_json_atomic(out / "test_results.json", results)
        logger.info(f"-> {out / 'test_results.json'}")
        return results
    finally:
        logger.close()

