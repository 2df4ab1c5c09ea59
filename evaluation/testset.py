"""The test action: loss and perplexity of a saved model on the test files (with
`validation.evaluate_lm`, the definition both training loops validate with), and
BLiMP on the same loaded model when --blimp_dir is given."""

from __future__ import annotations

import argparse
from pathlib import Path

from corpus.editions import resolve_files
from custom_models import is_causal, load_model_and_tokenizer
from pretraining_dataset import load_blocks
from training.hardware import log_choice
from training.identity import loaded, recorded
from training.validation import EVAL_MASK_SEED, eval_collator, eval_dataset, evaluate_lm
from utils import TEST_RESULTS, RunLogger, get_device, write_json_atomic


def run_test(args: argparse.Namespace) -> dict:
    """The test action: loss and perplexity of `--model_dir` on the test files,
    written to `<output_dir>/test_results.json` and TensorBoard."""
    out = Path(args.output_dir)
    model_dir = Path(args.model_dir)
    # Every input is checked, and the test files read and packed, before the run folder is made.
    (model, tokenizer), identity = loaded(model_dir, lambda: load_model_and_tokenizer(
        model_dir, args.attn_implementation, args.block_size))
    paradigms = None
    if args.blimp_dir:
        from evaluation.blimp import load_paradigms

        paradigms = load_paradigms(args.blimp_dir)  # a bad BLiMP folder fails before anything is written
    device = get_device(args.device)
    causal = is_causal(model.config.model_type)
    logger = RunLogger(None)  # console only until the test files are read and packed
    try:
        files = resolve_files(args.data_dir, "test", args.test_files, args.train_split, logger, args.cache_dir)
        blocks, meta = load_blocks(files, tokenizer, args.block_size, args.cache_dir, "test", args.num_proc, logger,
                                   clean=not args.no_cleaning)
        logger.attach(out)
        log_choice(logger, args, compiles=False)
        logger.info(f"testing {model_dir} on {meta['blocks']} blocks of {args.block_size} tokens "
                    f"from {len(files)} test files")
        model.to(device)
        metrics = evaluate_lm(model, eval_dataset(blocks, tokenizer, causal, args.mlm_probability),
                              eval_collator(tokenizer, causal), args.eval_batch_size, device, args.precision)
        results = {
            "model_dir": str(model_dir),
            "model": recorded(identity),  # the weights scored (training/identity.py)
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
            from evaluation.blimp import run_blimp

            # The same loaded model and pairs; blimp_results.json/.md beside test_results.json.
            run_blimp(args, logger, model=model, tokenizer=tokenizer, paradigms=paradigms, identity=identity)
        # Last: Make takes test_results.json as "this test step is done", BLiMP included.
        write_json_atomic(out / TEST_RESULTS, results)
        logger.info(f"-> {out / 'test_results.json'}")
        return results
    finally:
        logger.close()

