"""The command line of run.py: one sub-command per action, each with only the options it reads.

ACTIONS is the one table of actions: name -> the function that runs it ("module:function",
imported only when the action runs, so --help stays fast), its option groups (cli_options.py, each
option with its range or choices beside it) and the options it cannot do without. An option of
another action is a usage error; `--config recipe.toml` reads options from a file (cli_config.py),
the command line winning. parse_args returns one flat namespace per action; the training loops and
evaluation read it."""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from functools import cache
from typing import NoReturn

from cli_config import config_argv
from cli_options import (
    BLIMP,
    COMPUTE,
    CORPUS,
    CURRICULUM,
    EVALUATION,
    EXPORT,
    FINETUNE,
    GENERAL,
    MODEL,
    OBJECTIVE,
    OPTIMIZER,
    OUTPUTS,
    PLL,
    RANGES,
    REPORT,
    RESULTS,
    SAVED_MODEL,
    SCHEDULE,
    SUBMISSION,
    TOKENIZER,
    TRACK,
    ZERO_SHOT,
    Group,
)
from utils import BABYLM_WORD_MARKS, parse_word_mark

# The optimizer options only --finetune_protocol ours reads (the official recipe has its own values).
OURS_ONLY = ("warmup_ratio", "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon", "grad_norm_clip",
             "attn_implementation")
HELP_WIDTH = 160  # one line for most options: `run.py train --help` stays short


@dataclass(frozen=True)
class Action:
    """One action of run.py: what it does, the function that runs it ("module:function"), its
    option groups in --help's order, and the options it needs as (option, what to give)."""

    does: str
    handler: str
    groups: tuple[Group, ...]
    needs: tuple[tuple[str, str], ...] = ()


SAVED = "a saved model folder, e.g. save_dir/step2_1/best_model"
RUN = "a training run's folder, e.g. save_dir/step2_1"
STEP1 = "the folder step1 wrote"
BLIMP_FILES = "a folder of BLiMP jsonl files"
EVAL_SET = "the official fast_eval/ or full_eval/ folder; make eval_data fetches them"
COMPILE_CACHE = CORPUS.only("cache_dir")  # training/hardware.py keeps torch.compile's caches below it
INPUT_FILES = CORPUS.only("data_dir", "train_split", "cache_dir", "no_cleaning")
# Fine-tuning (--finetune_protocol ours) steps AdamW on the warm-up + cosine schedule: LAMB, the LR
# floor and cool-down and the EMA of the weights are pretraining's.
FINETUNE_OPTIMIZER = OPTIMIZER.only("warmup_ratio", "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon",
                                    "grad_norm_clip", "seed")
ACTIONS: dict[str, Action] = {
    "tokenizer": Action("train a tokenizer on the train files", "run:run_tokenizer", (
        CORPUS.only("data_dir", "train_split", "train_files", "cache_dir", "no_cleaning"), TOKENIZER),
        (("tokenizer_dir", "where to save the tokenizer"),)),
    "dataset": Action("tokenize, pack and cache the train, validation and test files", "run:run_dataset", (
        CORPUS, TOKENIZER.only("tokenizer_dir")), (("tokenizer_dir", STEP1),)),
    "stats": Action("corpus statistics per split and file (and per token with --tokenizer_dir)", "run:run_stats", (
        INPUT_FILES, TOKENIZER.only("tokenizer_dir"), OUTPUTS.only("output_dir"))),
    "train": Action("train a model (HF Trainer, or the custom loop with --torch_training)", "run:run_train", (
        CORPUS.only("data_dir", "train_split", "train_files", "validation_files", "cache_dir", "block_size",
                    "num_proc", "no_cleaning"),
        TOKENIZER.only("tokenizer_dir"), MODEL, OUTPUTS, SCHEDULE, OPTIMIZER, EVALUATION, OBJECTIVE, CURRICULUM,
        TRACK, COMPUTE), (("tokenizer_dir", STEP1), ("output_dir", "the run folder"))),
    "test": Action("loss and perplexity of a saved model on the test files (and BLiMP with --blimp_dir)",
                   "evaluation.testset:run_test", (
        SAVED_MODEL, OUTPUTS.only("output_dir"),
        CORPUS.only("data_dir", "train_split", "test_files", "cache_dir", "block_size", "num_proc", "no_cleaning"),
        EVALUATION.only("eval_batch_size"), OBJECTIVE.only("mlm_probability"), BLIMP, PLL, COMPUTE),
        (("output_dir", "the run folder"), ("model_dir", SAVED))),
    "blimp": Action("BLiMP accuracy of a saved model", "evaluation.blimp:run_blimp", (
        SAVED_MODEL, OUTPUTS.only("output_dir"), BLIMP, PLL, COMPILE_CACHE, COMPUTE),
        (("output_dir", "the run folder"), ("model_dir", SAVED), ("blimp_dir", BLIMP_FILES))),
    "evaluate": Action("the official zero-shot suite on a saved model", "evaluation.zero_shot:run_evaluate", (
        SAVED_MODEL, ZERO_SHOT, PLL, RESULTS, OUTPUTS.only("output_dir"), COMPILE_CACHE, COMPUTE),
        (("model_dir", SAVED), ("eval_dir", EVAL_SET))),
    "finetune": Action("fine-tune a saved model on the (Super)GLUE tasks", "evaluation.finetune:run_finetune", (
        SAVED_MODEL, FINETUNE, FINETUNE_OPTIMIZER, OUTPUTS.only("output_dir"), RESULTS, COMPILE_CACHE, COMPUTE),
        (("output_dir", "the run folder"), ("model_dir", SAVED),
         ("glue_dir", "a folder of <task>.train.jsonl/<task>.valid.jsonl"))),
    "report": Action("gather every run under --save_dir into report.md and plots", "run:run_report", (REPORT,)),
    "curve": Action("BLiMP and validation loss of each chck_* folder and the best model of a run",
                    "evaluation.learning_curve:run_curve", (
        SAVED_MODEL, BLIMP, PLL, CORPUS.only("cache_dir", "num_proc"),
        EVALUATION.only("eval_batch_size", "eval_blocks"), COMPUTE), (("model_dir", RUN), ("blimp_dir", BLIMP_FILES))),
    "evaluate_checkpoints": Action("the fast zero-shot suite on every chck_* folder of a run, then AoA",
                                   "evaluation.checkpoints:run_evaluate_checkpoints", (
        SAVED_MODEL, ZERO_SHOT.only("eval_dir", "backend", "zero_shot_tasks", "zero_shot_tokens_per_batch"), PLL,
        RESULTS, OUTPUTS.only("output_dir"), TRACK, COMPILE_CACHE, COMPUTE),
        (("model_dir", RUN), ("eval_dir", EVAL_SET))),
    "submission": Action("the official submission file of a run, every item count checked",
                         "evaluation.submission:run_submission", (
        SAVED_MODEL, ZERO_SHOT.only("backend"), RESULTS, TRACK, SUBMISSION), (("model_dir", RUN),)),
    "export": Action("the run as a git repository: main and a branch per chck_* (--push uploads it)",
                     "evaluation.export:run_export", (SAVED_MODEL, EXPORT), (("model_dir", RUN),)),
}


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends '(default: X)' to every option, unless its help already says the default; wide, so
    that most options take one line."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=40, width=HELP_WIDTH)

    def _get_default_metavar_for_optional(self, action: argparse.Action) -> str:
        if action.type in (int, float):
            return "N" if action.type is int else "X"
        return "DIR" if action.dest.endswith(("_dir", "_model")) else "TEXT"

    def _get_help_string(self, action: argparse.Action) -> str:
        if "default:" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class _OneLineErrorParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr, exit code 2, without the
    usage block (the pipeline's errors are all one line: what is wrong, how to fix it)."""

    options: dict[str, argparse.Action]  # option string -> its action (an action's parser)

    def error(self, message: str) -> NoReturn:
        """Print 'run.py: error: MESSAGE (see python PROG --help)' and exit with code 2."""
        message = " ".join(message.splitlines())
        self.exit(2, f"run.py: error: {message} (see python {self.prog} --help)\n")


def _recording(group: argparse._ArgumentGroup, options: dict[str, argparse.Action]):
    """`group`, noting each option it is given in `options` (option string -> action)."""

    class Recorder:
        def add_argument(self, *flags: str, **kwargs) -> argparse.Action:
            action = group.add_argument(*flags, **kwargs)
            options.update(dict.fromkeys(flags, action))
            return action

    return Recorder()


def build_parser() -> _OneLineErrorParser:
    """Return the parser for `python run.py ACTION [options]`: one sub-parser per action of ACTIONS,
    in `.action_parsers` (each with `.options`: its option strings)."""
    p = _OneLineErrorParser(prog="run.py", description="BabyLM pipeline. `python run.py ACTION --help` lists "
                            "the options of one action.", formatter_class=_HelpFormatter)
    subs = p.add_subparsers(dest="action", metavar="ACTION", required=True, title="actions",
                            parser_class=_OneLineErrorParser)
    p.action_parsers = {}
    for name, spec in ACTIONS.items():
        sub = subs.add_parser(name, help=spec.does, description=f"{name}: {spec.does}.",
                              usage=f"python run.py {name} [options]", formatter_class=_HelpFormatter)
        sub.options = {}
        for group in (GENERAL, *spec.groups):
            group.add_to(_recording(sub.add_argument_group(group.title), sub.options))
        p.action_parsers[name] = sub
    return p


@cache
def action_options(action: str) -> tuple[str, ...]:
    """The option names (dests) of `action`, in its --help's order (--config and --debug left out)."""
    sub = build_parser().action_parsers[action]
    general = {"config", "debug", "help"}
    return tuple(dict.fromkeys(a.dest for a in sub.options.values() if a.dest not in general))


def compute_actions() -> tuple[str, ...]:
    """The actions that compute with a model, in --precision (training also --compile)."""
    return tuple(name for name in ACTIONS if "precision" in action_options(name))


def _refuse_unknown(parser: _OneLineErrorParser, action: str, rest: list[str]) -> NoReturn:
    """A usage error for the words the action's parser did not take, naming an option of
    another action as such."""
    sub = parser.action_parsers[action]
    for word in rest:
        flag = word.split("=", 1)[0]
        owners = [name for name, other in parser.action_parsers.items() if flag in other.options]
        if word.startswith("--") and owners:
            sub.error(f"{flag} is not an option of the {action} action (an option of {', '.join(owners)})")
    sub.error(f"unrecognized arguments: {' '.join(rest)}")


def _parse(parser: _OneLineErrorParser, argv: list[str]) -> argparse.Namespace:
    """Parse `argv`, refusing options of other actions."""
    args, rest = parser.parse_known_args(argv)
    if rest:
        _refuse_unknown(parser, args.action, rest)
    return args


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line (the --config files' options first, so the command line wins) and
    check the options that depend on each other. The namespace holds the action's options only."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = _parse(parser, argv)
    sub = parser.action_parsers[args.action]
    if args.config:
        from_files = [word for path in args.config for word in config_argv(path, args.action, sub.options,
                                                                           parser.action_parsers, sub.error)]
        args = _parse(parser, [args.action, *from_files, *argv[1:]])
    del args.config  # the record of what ran (run_args.json) holds the options themselves
    for name, what in ACTIONS[args.action].needs:
        if getattr(args, name) is None:
            sub.error(f"the {args.action} action needs --{name} ({what})")
    _check_ranges(sub, args)
    _check_together(sub, args)
    if "attn_implementation" in vars(args) and args.attn_implementation is None:
        # Training compiled faster with eager attention on this project's CPU (docs/speed.md);
        # scoring long items (entity tracking) was 1.6x as fast with sdpa.
        args.attn_implementation = "eager" if args.action in ("train", "finetune") else "sdpa"
    if args.action == "train":
        _train_defaults(sub, args)
    return args


def _train_defaults(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The train action's defaults that depend on other options, and its parsed option texts."""
    # Which options are the training run's (saved in run_args.json; the model card lists them).
    args.training_options = list(action_options("train"))
    if args.num_train_epochs is None:
        args.num_train_epochs = 1.0
    if args.model_type is None and args.init_model is None:
        args.model_type = "gpt2"  # with --init_model, training takes the saved model's type
    if args.length_schedule is not None:
        args.length_schedule = _parse_lengths(parser, args.length_schedule)
        _check_lengths(parser, args)
    if args.objective_schedule is not None:
        args.objective_schedule = _parse_schedule(parser, args.objective_schedule)
        if args.mlm_probability_end is not None and any("mlm_probability" in s for _, s in args.objective_schedule):
            parser.error("--mlm_probability_end and --objective_schedule's mlm_probability both set the masking "
                         "share by step: drop one of them")
    args.hybrid_masked_share = _parse_ratio(parser, args.hybrid_ratio)
    if args.checkpoint_words is not None:
        args.checkpoint_words = _parse_word_marks(parser, args.checkpoint_words)


SCHEDULE_KEYS = ("mlm_probability", "masked_share")


def _parse_schedule(parser: argparse.ArgumentParser, text: str) -> list[tuple[int, dict[str, float]]]:
    """'0:mlm_probability=0.3,2000:mlm_probability=0.15' -> [(0, {...}), (2000, {...})], checked."""
    entries = []
    for item in text.split(","):
        step, _, setting = item.strip().partition(":")
        key, _, value = setting.partition("=")
        try:
            step_n, number = int(step), float(value)
        except ValueError:
            parser.error(f"--objective_schedule entry '{item}' is not STEP:KEY=VALUE, e.g. 0:mlm_probability=0.3")
        if key not in SCHEDULE_KEYS:
            parser.error(f"--objective_schedule key '{key}' is not one of {', '.join(SCHEDULE_KEYS)}")
        if not (0.0 <= number <= 1.0 if key == "masked_share" else 0.0 < number < 1.0):
            parser.error(f"--objective_schedule {key}={value} must be between 0 and 1")
        entries.append((step_n, {key: number}))
    steps = [s for s, _ in entries]
    if steps != sorted(set(steps)) or steps[0] < 0:
        parser.error("--objective_schedule steps must be distinct, ascending and >= 0")
    return entries


def _parse_word_marks(parser: argparse.ArgumentParser, items: list[str]) -> list[int]:
    """['1M', '1.5M', '20M'] -> [1000000, 1500000, 20000000]; 'babylm' adds BABYLM_WORD_MARKS.
    The numbers given must be whole, positive and ascending."""
    given = []
    for item in items:
        if item.lower() == "babylm":
            continue
        value = parse_word_mark(item)
        if value is None:
            parser.error(f"--checkpoint_words {item} is not a positive whole number of words, e.g. 500K, 1M, 1.5M "
                         "or 1000000")
        given.append(value)
    if given != sorted(set(given)):
        parser.error(f"--checkpoint_words {' '.join(items)}: the marks must be distinct and ascending")
    babylm = BABYLM_WORD_MARKS if any(item.lower() == "babylm" for item in items) else ()
    return sorted(set(given) | set(babylm))


def _parse_lengths(parser: argparse.ArgumentParser, text: str) -> list[tuple[float, int]]:
    """--length_schedule '0.7:2,0.9:4' -> [(0.7, 2), (0.9, 4)]: shares of the run in [0, 1), ascending,
    each with a whole number of blocks per sequence."""
    entries = []
    for item in text.split(","):
        share, _, blocks = item.strip().partition(":")
        try:
            entries.append((float(share), int(blocks)))
        except ValueError:
            parser.error(f"--length_schedule entry '{item}' is not SHARE:BLOCKS, e.g. 0.7:2 (from 70% of the run on, "
                         "2 blocks per sequence)")
    shares = [s for s, _ in entries]
    if not all(0 <= s < 1 for s in shares) or shares != sorted(set(shares)):
        parser.error(f"--length_schedule {text}: the shares must be distinct, ascending and in [0, 1)")
    if any(b < 1 for _, b in entries):
        parser.error(f"--length_schedule {text}: blocks per sequence must be 1 or more")
    return entries


def _parse_ratio(parser: argparse.ArgumentParser, text: str) -> float:
    """--hybrid_ratio 'MASKED:CAUSAL' (whole numbers, not both 0) -> the share of masked steps."""
    masked, _, causal = text.partition(":")
    try:
        m, c = int(masked), int(causal)
    except ValueError:
        m = c = -1
    if m < 0 or c < 0 or m + c == 0:
        parser.error(f"--hybrid_ratio {text} is not MASKED:CAUSAL with whole numbers >= 0, not both 0, e.g. 15:1")
    return m / (m + c)


def _check_ranges(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Every numeric option of the action within the range declared beside it (cli_options._number);
    an option left out (None) keeps its default."""
    for name, value in vars(args).items():
        valid = RANGES.get(name)
        if valid is not None and value is not None and not valid.holds(value):
            parser.error(f"--{name} must be {valid.says()}, got {value}{valid.hint}")


def _check_together(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The options that depend on each other."""
    if "device" in vars(args) and not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", args.device):
        parser.error(f"--device {args.device} is not one of auto, cpu, mps, cuda, cuda:N")
    if args.action == "finetune" and args.finetune_cross_fit == 1:
        parser.error("--finetune_cross_fit 1 leaves no fold to train on: pass 0 (off) or K >= 2 folds")
    if args.action == "finetune" and args.finetune_protocol == "official":
        for name in OURS_ONLY:  # the official recipe fixes these: a value given would be silently ignored
            if getattr(args, name) != parser.get_default(name):
                parser.error(f"--{name} is not read by --finetune_protocol official (its recipe's own values are "
                             f"used): pass --finetune_protocol ours to set it")
    if args.action == "train":
        _check_training(parser, args)


def _check_lengths(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """--length_schedule: the custom loop, micro-batches that split into whole sequences, positions enough."""
    longest = max(blocks for _, blocks in args.length_schedule)
    if not args.torch_training:
        parser.error("--length_schedule joins blocks inside the custom loop's step: add --torch_training")
    uneven = [blocks for _, blocks in args.length_schedule if args.batch_size % blocks]
    if uneven:
        parser.error(f"--batch_size {args.batch_size} does not split into sequences of {uneven[0]} blocks "
                     f"(--length_schedule): use a --batch_size divisible by {uneven[0]}")
    if args.init_model is None and args.block_size * longest > args.max_position_embeddings:
        parser.error(f"--length_schedule's longest sequences ({longest} x --block_size {args.block_size} tokens) "
                     f"exceed --max_position_embeddings {args.max_position_embeddings}: raise it to "
                     f"{args.block_size * longest}")


def _check_training(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The training options that depend on each other."""
    if args.hybrid_mix == "batch" and args.batch_size < 2:
        parser.error("--hybrid_mix batch splits each micro-batch into masked and causal sequences, which one "
                     "sequence cannot hold: raise --batch_size to 2 or more, or pass --hybrid_mix step")
    if args.max_minutes is not None:
        given = [f"--{n}" for n in ("max_steps", "num_train_epochs") if getattr(args, n) is not None]
        if given:
            parser.error(f"--max_minutes sets the length of the run, so {' and '.join(given)} cannot: drop "
                         f"{'them' if len(given) > 1 else 'it'} or --max_minutes")
    if args.init_model is None and args.block_size > args.max_position_embeddings:
        parser.error(f"--block_size {args.block_size} exceeds --max_position_embeddings "
                     f"{args.max_position_embeddings}: raise the latter or lower the former")
    if args.hidden_size % args.num_heads:
        parser.error(f"--hidden_size {args.hidden_size} must be divisible by --num_heads {args.num_heads}")
    if args.warmup_ratio + args.cooldown_ratio >= 1:
        parser.error(f"--warmup_ratio {args.warmup_ratio} and --cooldown_ratio {args.cooldown_ratio} add up to 1 or "
                     "more, leaving no steps for the cosine decay: lower one of them")
    if args.cooldown_ratio > 0 and args.min_lr_ratio == 0:
        parser.error("--cooldown_ratio falls from --min_lr_ratio to 0, and with --min_lr_ratio 0 its steps would "
                     "train at LR 0: give --min_lr_ratio (GPT-BERT: 0.1) or drop --cooldown_ratio")
    if args.start_percent > args.end_percent:
        parser.error(f"--start_percent {args.start_percent} is after --end_percent {args.end_percent}: the pool "
                     "starts growing before it stops")
    if args.pacing_steps is not None and args.difficulty is None:
        parser.error("--pacing_steps paces a curriculum: give --difficulty too, or drop --pacing_steps")
    if args.max_minutes is not None and args.difficulty is not None and args.pacing_steps is None:
        parser.error("--difficulty paces the data over a known number of steps, which --max_minutes leaves open: "
                     "give --pacing_steps N, or train the curriculum with --max_steps or --num_train_epochs")
