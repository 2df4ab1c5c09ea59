"""Command-line front end: `python run.py ACTION [options]`.

Actions: `tokenizer` (train one on the train files), `dataset` (tokenize, pack
and cache the train/validation/test files), `stats` (corpus statistics), `train` (with the HF Trainer, or the
custom loop with --torch_training; fresh or from --init_model), `test` (loss and
perplexity of --model_dir on the test files), `blimp`, `evaluate` (the official zero-shot
suite), `finetune`, `report`, `curve`
(BLiMP and validation loss of a run's words-seen checkpoints), `evaluate_checkpoints`,
`submission`, `export` (the run as a model repository with a branch per checkpoint). See `python run.py --help`
and `python run.py ACTION --help` (each action's options only). The table of actions, their options
and the functions that run them is argument_parser.ACTIONS; the functions below are the actions
whose work is the front end's own.

`torchrun --nproc_per_node=N run.py train ...` trains data-parallel in N processes
(training/distributed.py); the other actions run in one process."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable

from argument_parser import ACTIONS, compute_actions, parse_args
from utils import UserError

# Quiet third-party noise that is not about the user's run.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def run_tokenizer(args: argparse.Namespace) -> None:
    """Train and save a tokenizer on the selected training files."""
    from corpus.editions import detect_corpus
    from tokenizer import train_tokenizer

    corpus = detect_corpus(args.data_dir, args.train_split, args.cache_dir)
    files = corpus.files("train", args.train_files)
    print(corpus.describe())  # once the input is known good: bad input stays one line
    tok = train_tokenizer(files, args.tokenizer_dir, args.tokenizer_type, args.vocab_size,
                          args.min_frequency, args.model_max_length, clean=not args.no_cleaning,
                          lowercase=args.lowercase, join_punctuation=args.join_punctuation)
    print(f"trained a {args.tokenizer_type} tokenizer ({len(tok)} tokens) on {len(files)} files "
          f"-> {args.tokenizer_dir}")


def run_dataset(args: argparse.Namespace) -> None:
    """Tokenize, pack and cache every split (a later train or test step reuses the cache)."""
    from corpus.editions import detect_corpus
    from pretraining_dataset import load_splits
    from tokenizer import load_tokenizer
    from utils import RunLogger

    tokenizer = load_tokenizer(args.tokenizer_dir)
    logger = RunLogger(None)
    names = {"train": args.train_files, "validation": args.validation_files, "test": args.test_files}
    try:
        # Every split is selected and packed before any is cached, so bad input caches nothing.
        corpus = detect_corpus(args.data_dir, args.train_split, args.cache_dir)
        specs = [(split, corpus.files(split, chosen, logger)) for split, chosen in names.items()]
        load_splits(specs, tokenizer, args.block_size, args.cache_dir, args.num_proc, logger,
                    clean=not args.no_cleaning)
        logger.info(corpus.describe())
    finally:
        logger.close()


def run_train(args: argparse.Namespace) -> None:
    """Train with the loop --torch_training selects (data-parallel when started by torchrun)."""
    import training.distributed as distributed
    from training.setup import prepare_training

    if args.torch_training:
        from pytorch_training_loop import train
    else:
        from huggingface_trainer_loop import train
    distributed.init_distributed(args.device)
    try:
        setup = prepare_training(args)
        try:
            train(setup)
        finally:
            setup.close()
    finally:
        distributed.shutdown()


def run_stats(args: argparse.Namespace) -> None:
    """Corpus statistics per split and file (and per token with --tokenizer_dir);
    printed, and written to --output_dir as corpus_stats.md/.json when given."""
    from pathlib import Path

    from corpus.stats import corpus_stats, markdown_table
    from tokenizer import load_tokenizer
    from utils import write_json_atomic, write_text_atomic

    tokenizer = load_tokenizer(args.tokenizer_dir) if args.tokenizer_dir else None
    rows = corpus_stats(args.data_dir, args.train_split, tokenizer, clean=not args.no_cleaning,
                        cache_dir=args.cache_dir)
    table = markdown_table(rows)
    print(table, end="")
    if args.output_dir:
        write_text_atomic(Path(args.output_dir) / "corpus_stats.md", table)
        write_json_atomic(Path(args.output_dir) / "corpus_stats.json", rows)


def run_report(args: argparse.Namespace) -> None:
    """Gather every finished step under --save_dir into report.md and plots."""
    from evaluation.report import write_report

    write_report(args.save_dir)


def handler(action: str) -> Callable[[argparse.Namespace], object]:
    """The function that runs `action` (ACTIONS' "module:function"), imported now: --help stays fast."""
    module, _, function = ACTIONS[action].handler.partition(":")
    return getattr(sys.modules[__name__] if module == "run" else importlib.import_module(module), function)


def main(argv: list[str] | None = None) -> int:
    """Parse, dispatch, and turn a UserError into one line on stderr and exit code 1."""
    args = parse_args(argv)
    if args.action != "export" or args.push is None:  # nothing is ever fetched from the hub; `export --push`
        os.environ.setdefault("HF_HUB_OFFLINE", "1")    # is the one upload
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    computes = args.action in compute_actions()
    if computes and args.num_threads is not None:
        import torch

        torch.set_num_threads(args.num_threads)
    try:
        if world > 1 and args.action != "train":
            raise UserError(f"the {args.action} action runs in one process: start it with python, not torchrun "
                            "(only train runs in several)")
        if computes:
            # Chosen before any input is read, so that an impossible --compile on writes nothing;
            # each action logs the choice once its inputs are checked (training/hardware.py).
            from training.hardware import resolve_fast_path

            if args.action != "train":  # only training compiles: the log says compile off, as it runs
                args.compile = "off"
            resolve_fast_path(args)
        handler(args.action)(args)
    except UserError as e:
        if args.debug:
            raise
        # Under torchrun every process reports; torchrun then stops the others.
        print(f"error{f' (rank {rank})' if world > 1 else ''}: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # a file-system failure that no writer turned into a UserError: still one line
        if args.debug:
            raise
        where = f" ('{e.filename}')" if e.filename else ""
        print(f"error: {e.strerror or e}{where}: check the path, its permissions and the free space there "
              "(--debug shows the traceback)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"interrupted: {args.action} stopped by Ctrl-C; nothing was left half-written (a training run "
              "continues from its last complete checkpoint with --resume)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
