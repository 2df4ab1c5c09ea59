"""The learning curve of a training run: BLiMP accuracy and validation loss against
the words of source text seen.

A run trained with --checkpoint_words saved a model folder chck_<mark> at each mark
(train_results.json says at which step and how many words); its best_model is the
run's last point, at the words seen up to its best step. `python run.py curve
--model_dir RUN --blimp_dir DIR` scores every one of these folders with the
project's BLiMP code and its validation loss (the run's own validation files and
block size, float32; --eval_blocks N: N evenly spaced blocks of them) and writes
RUN/learning_curve.json, a list of points {name, words, step, blimp, eval_loss}
sorted by words, each with the identity of the weights it scored ("model", training/identity.py).
`make report` plots every run's curve in learning_curves.png."""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from corpus.editions import resolve_files
from custom_models import check_tokenizer_fits, is_causal, load_model
from evaluation.blimp import evaluate_blimp, load_paradigms, warn_duplicates
from pretraining_dataset import load_blocks
from tokenizer import load_tokenizer
from training.hardware import log_choice
from training.identity import loaded, recorded, refuse_if_training
from training.run_folder import RunFolder
from training.validation import eval_collator, eval_dataset, evaluate_lm, spread_blocks
from utils import BEST_MODEL_DIR, CURVE_RESULTS, RunLogger, UserError, get_device, write_json_atomic


def curve_points(run_dir: str | Path) -> list[dict]:
    """The model folders of a finished run to score, sorted by words seen: every chck_*
    folder (words = its mark's actual count) and best_model (words up to the best step)."""
    folder = RunFolder(run_dir)
    results = folder.train_results()
    saved = [*folder.word_checkpoints(results), folder.best_point(results)]
    points = [{"name": m.name, "words": m.words_seen, "step": m.step} for m in saved if m is not None]
    if not points:
        raise UserError(f"'{run_dir}' has no chck_* folders and no word count at its best step: train it with "
                        "--checkpoint_words (e.g. babylm) to get a learning curve")
    return sorted(points, key=lambda p: (p["words"], p["name"] != BEST_MODEL_DIR))


def run_curve(args: argparse.Namespace) -> list[dict]:
    """The curve action: score every point of `--model_dir` (a run folder); write learning_curve.json there."""
    run_dir = Path(args.model_dir)
    refuse_if_training(run_dir, "curve")  # its chck_* and best_model/ may be replaced while scored
    points = curve_points(run_dir)
    paradigms = load_paradigms(args.blimp_dir)  # a bad BLiMP folder fails before any scoring
    run_args = RunFolder(run_dir).run_args(points[-1]["name"])

    tokenizer = load_tokenizer(run_dir / points[-1]["name"], "--model_dir")
    files = resolve_files(run_args["data_dir"], "validation", run_args.get("validation_files"),
                          run_args.get("train_split"), cache_dir=run_args.get("cache_dir", args.cache_dir))
    device = get_device(args.device)
    logger = RunLogger(None)
    try:
        log_choice(logger, args, compiles=False)
        warn_duplicates(paradigms, logger)
        blocks, _ = load_blocks(files, tokenizer, run_args["block_size"], args.cache_dir, "validation",
                                args.num_proc, logger, clean=not run_args.get("no_cleaning", False))
        blocks = spread_blocks(blocks, args.eval_blocks)
        for point in tqdm(points, desc="learning curve", unit="model", dynamic_ncols=True):
            folder = run_dir / point["name"]
            model, identity = loaded(folder, lambda: load_model(folder, args.attn_implementation))  # noqa: B023
            check_tokenizer_fits(model.config, tokenizer, folder, run_args["block_size"])
            model.to(device)
            causal = is_causal(model.config.model_type)
            metrics = evaluate_lm(model, eval_dataset(blocks, tokenizer, causal, run_args["mlm_probability"]),
                                  eval_collator(tokenizer, causal), args.eval_batch_size, device, args.precision)
            summary = evaluate_blimp(model, tokenizer, paradigms, args.blimp_batch_size, device, args.pll_variant,
                                     prefix_space=args.blimp_prefix_space, hybrid_scoring=args.hybrid_scoring,
                                     precision=args.precision)
            point.update(model=recorded(identity), eval_loss=metrics["loss"], blimp=summary["overall"],
                         blimp_fields=summary["fields"])
            logger.info(f"{point['name']}: {point['words']:,} words, validation loss {metrics['loss']:.4f}, "
                        f"BLiMP {100 * summary['overall']:.1f}%")
        write_json_atomic(run_dir / CURVE_RESULTS, {"run": str(run_dir), "blimp_dir": str(args.blimp_dir),
                                                 "validation_files": [str(f) for f in files],
                                                 "eval_blocks": len(blocks), "points": points})
        logger.info(f"-> {run_dir / CURVE_RESULTS}")
    finally:
        logger.close()
    return points
