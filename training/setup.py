"""What both training loops share, so they cannot drift apart: the run folder,
tokenizer, model, datasets and collators, the step count, AdamW with its
parameter groups, the warm-up + cosine schedule, the best-model folder and the
final results file, the words-seen checkpoints (--checkpoint_words), the clock
of the time budget (--max_minutes). The loops differ only in who drives the steps.

With several processes (torchrun, see training/distributed.py) every rank runs all of this
(so every rank checks the inputs and fails with the same message), but only rank 0
writes: the run folder, log.txt, TensorBoard, best_model/, chck_*/ and
train_results.json. The global batch of an optimizer step is --batch_size x
--gradient_accumulation_steps x processes."""

from __future__ import annotations

import argparse
import enum
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import Dataset
from tqdm import tqdm
from transformers import PreTrainedModel, get_cosine_schedule_with_warmup
from transformers.utils import logging as hf_logging

import training.distributed as distributed
from corpus.editions import detect_corpus, expand_names
from custom_models import (
    build_model,
    check_tokenizer_fits,
    count_parameters,
    is_causal,
    is_hybrid,
    load_model,
    saved_model_type,
)
from pretraining_dataset import BlockDataset, CLMCollator, load_splits, mask_tokens, stack_blocks
from tokenizer import load_tokenizer
from training.curriculum import CurriculumSampler, curriculum_for, majority_source, source_ranks
from training.hardware import DTYPES, compile_seconds, log_choice, resolve_fast_path
from training.model_card import write_model_card
from training.validation import eval_collator, eval_dataset, spread_blocks
from utils import (
    BEST_MODEL_DIR,
    CHECKPOINTS_DIR,
    LOG_FILE,
    MAX_EPOCHS,
    RUN_ARGS,
    TENSORBOARD_DIR,
    TRACK_WORD_BUDGET,
    TRAIN_RESULTS,
    WORD_CHECKPOINT_PREFIX,
    FolderLock,
    RunLogger,
    UserError,
    atomic_dir,
    remove_path,
    restore_replaced,
    set_seed,
    word_mark_name,
    write_json_atomic,
)


class NonFiniteLoss(UserError):
    """The loss became NaN/inf: the run stops before the optimizer step, so the
    last checkpoint and the best model stay good."""

    @classmethod
    def at(cls, setup: TrainingSetup, value: float, step: int, skippable: bool) -> NonFiniteLoss:
        skip = ", or pass --skip_nonfinite to skip such batches" if skippable else ""
        best = setup.run_dir / BEST_MODEL_DIR
        kept = (f"the best model so far is in {best}" if best.is_dir()
                else "no model was saved yet (no validation had run)")
        resume = ", and --resume restarts from the last checkpoint" if list_checkpoints(setup.run_dir) else ""
        return cls(f"the loss became {value} at optimizer step {step}: lower --learning_rate or --grad_norm_clip"
                   f"{skip}; {kept}{resume}")


class TrainingClock:
    """Wall-clock seconds spent inside optimizer steps (compiling included; validation,
    checkpoint writing and logging not, so how often a run validates does not change
    what it trains), across resumes. With --max_minutes its share of the budget drives
    the learning-rate schedule and ends the run.

    `used` only moves when a step ends (`stop`); under several processes it is then
    rank 0's value on every rank, so all ranks schedule the same LR and stop together."""

    def __init__(self, budget_minutes: float | None) -> None:
        self.budget = budget_minutes * 60.0 if budget_minutes is not None else None
        self.used = 0.0
        self._since: float | None = None

    def start(self) -> None:
        """An optimizer step begins."""
        if self._since is None:
            self._since = time.perf_counter()

    def stop(self) -> None:
        """An optimizer step ended: add its time (rank 0's total under several processes)."""
        if self._since is not None:
            self.used += time.perf_counter() - self._since
            self._since = None
        if distributed.world_size() > 1:
            self.used = distributed.sum_across([self.used if distributed.is_main() else 0.0])[0]

    def fraction(self) -> float:
        """Share of the budget used by the steps ended so far (0 without a budget)."""
        return min(self.used / self.budget, 1.0) if self.budget else 0.0

    def expired(self) -> bool:
        return self.budget is not None and self.used >= self.budget


@dataclass
class TrainingSetup:
    """Everything a training loop needs, built once from the argparse namespace."""

    args: argparse.Namespace
    run_dir: Path
    logger: RunLogger
    device: torch.device
    tokenizer: object
    model: PreTrainedModel
    causal: bool
    train_dataset: Dataset
    eval_dataset: Dataset
    train_collator: object
    eval_collator: object
    total_steps: int
    warmup_steps: int
    tokens_per_step: int  # of a full optimizer step (an epoch's last may be shorter: the loops count what they train)
    train_meta: dict
    resume_from: Path | None = None
    curriculum: CurriculumSampler | None = None  # --difficulty: which blocks each optimizer step trains on
    hybrid: bool = False  # gpt_bert: each step's batch is masked next-token or causal (`training_batch`)
    teachers: list = field(default_factory=list)  # --teacher_models: eval mode, no gradients
    clock: TrainingClock = field(default_factory=lambda: TrainingClock(None))
    steps_per_epoch: int = 0
    corpus: str = ""  # the detected corpus layout (corpus/editions.py Corpus.describe)
    # time.perf_counter() when this process starts training, then at the end of each
    # optimizer step (both loops): what `make bench` turns into step times.
    step_clock: list[float] = field(default_factory=list)

    def close(self) -> None:
        """Flush and close the run's log and TensorBoard, and give the run folder's lock back."""
        self.logger.close()


def global_batch(args: argparse.Namespace, world: int = 1) -> int:
    """Blocks per optimizer step over all `world` processes: batch x accumulation x processes."""
    return args.batch_size * args.gradient_accumulation_steps * world


def steps_per_epoch(args: argparse.Namespace, n_blocks: int, world: int = 1) -> int:
    """Optimizer steps of one pass over `n_blocks` blocks: the last one may hold fewer blocks
    than a global batch (one process) or be filled up from the epoch's start (several; see
    pytorch_training_loop.step_blocks), so the count is the same for any number of processes."""
    return math.ceil(n_blocks / global_batch(args, world))


# With --max_minutes the clock ends the run; the step count is only the loops' upper bound.
BUDGET_STEP_CAP = 2**31 - 1


def count_steps(args: argparse.Namespace, n_blocks: int, world: int = 1) -> int:
    """Optimizer steps of the run: --max_steps if set, else epochs x steps per epoch
    (with --max_minutes: BUDGET_STEP_CAP, the clock decides; under a --track, at most
    MAX_EPOCHS epochs' steps)."""
    per_epoch = steps_per_epoch(args, n_blocks, world)
    if args.max_minutes is not None:
        return BUDGET_STEP_CAP if (args.track or "none") == "none" else MAX_EPOCHS * per_epoch
    return args.max_steps if args.max_steps is not None else max(1, math.ceil(args.num_train_epochs * per_epoch))


def track_rules(args: argparse.Namespace, world: int = 1) -> Callable[[str, dict], None] | None:
    """--track strict-small/strict: the challenge's rules as a `load_splits` check, which sees the
    training split's meta before anything is written: at most the track's words of training
    data (words as the run reads them: whitespace-separated, after cleaning) and at most
    MAX_EPOCHS epochs planned. A --max_minutes run is not refused: `count_steps` stops it at
    the last step of the tenth epoch. None for --track none (nothing is checked)."""
    track = args.track or "none"
    if track == "none":
        return None

    def check(split: str, meta: dict) -> None:
        if split != "train":
            return
        budget = TRACK_WORD_BUDGET[track]
        if meta["words"] > budget:
            raise UserError(f"the training data holds {meta['words']:,} words, over the {track} track's budget of "
                            f"{budget:,}: train on fewer files (--train_files), or pass --track "
                            f"{'strict' if track == 'strict-small' else 'none'}")
        per_epoch = steps_per_epoch(args, meta["blocks"], world)
        if args.max_minutes is None:
            epochs = args.max_steps / per_epoch if args.max_steps is not None else args.num_train_epochs
            if epochs > MAX_EPOCHS:
                raise UserError(f"the run plans {epochs:.4g} epochs over its training data, over the {track} track's "
                                f"{MAX_EPOCHS}: pass --num_train_epochs {MAX_EPOCHS} or less (or --max_steps "
                                f"{MAX_EPOCHS * per_epoch} or less), or --track none")

    return check


# A checkpoint folder is complete once its last file exists: the custom loop's
# pipeline_state.json (its whole folder is renamed into place) or the HF Trainer's
# trainer_state.json (written after model, optimizer and RNG states).
COMPLETE_MARKERS = ("pipeline_state.json", "trainer_state.json")
# What a run writes; --overwrite_output_dir clears exactly these (and the chck_* folders).
RUN_OUTPUTS = (CHECKPOINTS_DIR, BEST_MODEL_DIR, TENSORBOARD_DIR, LOG_FILE, TRAIN_RESULTS)


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete resumable checkpoints of a run, oldest first."""
    folder = Path(run_dir) / CHECKPOINTS_DIR
    found = [p for p in folder.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()
             and any((p / m).is_file() for m in COMPLETE_MARKERS)]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def checkpoint_step(path: Path) -> int:
    return int(path.name.split("-")[-1])


class RunState(enum.Enum):
    """What a run folder holds: decided from its files alone, in `run_state`."""

    NEW = "not started"
    FINISHED = "finished"
    RESUMABLE = "interrupted, with a complete checkpoint"
    INCOMPLETE = "interrupted, without a complete checkpoint"


def run_state(run_dir: Path) -> RunState:
    """The state of `run_dir`. A run is started once it has written a checkpoint folder, a
    best model or a words-seen checkpoint (log.txt and TensorBoard alone do not count: an
    error before the first step leaves them); it is finished once train_results.json exists."""
    if (run_dir / TRAIN_RESULTS).is_file():
        return RunState.FINISHED
    if list_checkpoints(run_dir):
        return RunState.RESUMABLE
    started = [run_dir / CHECKPOINTS_DIR, run_dir / BEST_MODEL_DIR, run_dir / f".{BEST_MODEL_DIR}.old",
               *run_dir.glob(f"{WORD_CHECKPOINT_PREFIX}*")]
    return RunState.INCOMPLETE if any(p.exists() for p in started) else RunState.NEW


def _check_run_dir(args: argparse.Namespace, run_dir: Path, world: int = 1) -> tuple[Path | None, bool]:
    """Refuse to clobber or resume a run unless told to, with one message per state of the
    folder that names the command that works. Returns (the checkpoint to resume from or None,
    whether to clear the folder's outputs before training)."""
    if args.resume and args.overwrite_output_dir:
        raise UserError("--resume and --overwrite_output_dir contradict each other: pass one of them")
    if args.overwrite_output_dir:
        return None, True
    state = run_state(run_dir)
    elsewhere = "or pick another --output_dir"
    if state is RunState.FINISHED:
        raise UserError(f"'{run_dir}' already holds a finished run ({TRAIN_RESULTS}), so there is nothing to "
                        f"resume: pass --overwrite_output_dir to train again, {elsewhere}")
    if state is RunState.RESUMABLE:
        checkpoint = list_checkpoints(run_dir)[-1]
        if not args.resume:
            raise UserError(f"'{run_dir}' holds an interrupted run with a complete checkpoint ({checkpoint.name}): "
                            f"pass --resume to continue it, --overwrite_output_dir to start over, {elsewhere}")
        # The one check that the checkpoint was written by this loop (each loop resumes only its own).
        marker = "pipeline_state.json" if args.torch_training else "trainer_state.json"
        if not (checkpoint / marker).is_file():
            other = "the HF Trainer loop: resume without" if args.torch_training else "the custom loop: resume with"
            raise UserError(f"'{checkpoint}' was written by {other} --torch_training")
        _check_resume_processes(args, checkpoint, world)
        return checkpoint, False
    if state is RunState.INCOMPLETE:
        if args.resume == "auto":
            return None, True
        nothing = ", so there is nothing to resume" if args.resume else ""
        raise UserError(f"'{run_dir}' holds an interrupted run without a complete checkpoint (it stopped before or "
                        f"during its first save){nothing}: pass --overwrite_output_dir or --resume auto to start it "
                        f"over, {elsewhere}")
    if args.resume == "yes":
        raise UserError(f"there is no run to resume in '{run_dir}' (nothing was trained there): start it without "
                        "--resume (or with --resume auto)")
    return None, False


def _take_run_dir(args: argparse.Namespace, run_dir: Path, world: int,
                  decided: tuple[Path | None, bool]) -> FolderLock:
    """Lock the run folder (one training process writes it; rank 0), then decide again: another
    run that wrote there between the first check and the lock must not be clobbered."""
    lock = FolderLock(run_dir)
    try:
        if _check_run_dir(args, run_dir, world) != decided:
            raise UserError(f"another run wrote to '{run_dir}' while this one was starting: run the command again "
                            "to see what the folder holds now")
    except UserError:
        lock.release()
        raise
    return lock


def tidy_run_dir(run_dir: Path) -> None:
    """Finish or drop what a killed process left half-done in `run_dir`: folders renamed aside
    by `replace_dir` get their name back (`restore_replaced`), temporary files and folders go,
    and so do checkpoint folders without their completion marker (a Trainer killed mid-save)."""
    for folder in (run_dir, run_dir / CHECKPOINTS_DIR):
        restore_replaced(folder)
    for path in (run_dir / CHECKPOINTS_DIR).glob("checkpoint-*"):
        if path.is_dir() and path not in list_checkpoints(run_dir):
            shutil.rmtree(path)


def _check_resume_processes(args: argparse.Namespace, checkpoint: Path, world: int) -> None:
    """The custom loop resumes with any number of processes whose global batch is the
    checkpoint's (its position is counted in optimizer steps); the HF Trainer's own resume
    needs the number of processes that wrote the checkpoint."""
    if args.torch_training:
        progress = json.loads((checkpoint / "pipeline_state.json").read_text())["progress"]
        saved = progress.get("global_batch")  # absent in checkpoints older than this check: one process
        if saved is not None and saved != global_batch(args, world):
            raise UserError(f"'{checkpoint}' was written with a global batch of {saved} blocks (--batch_size x "
                            f"--gradient_accumulation_steps x processes), this run's is {global_batch(args, world)} "
                            f"({args.batch_size} x {args.gradient_accumulation_steps} x {world}): resume with the "
                            "same global batch")
        return
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    saved = state.get("stateful_callbacks", {}).get("_PipelineCallback", {}).get("attributes", {}).get("world_size", 1)
    if saved != world:
        raise UserError(f"'{checkpoint}' was written by the HF Trainer in {saved} processes and this run has {world}: "
                        f"the Trainer resumes with the same number of processes (torchrun --nproc_per_node), "
                        "or train with --torch_training, which resumes with any number")


def _check_distributed(args: argparse.Namespace, hybrid: bool, world: int) -> None:
    """What several processes do not support, refused before anything is written."""
    if world == 1:
        return
    if args.skip_nonfinite:
        raise UserError(f"--skip_nonfinite works in one process only (this run has {world}): every process would "
                        "have to skip the same step; drop the option")
    if not args.torch_training and (args.teacher_models or hybrid):
        raise UserError("distillation and gpt_bert models train with the HF Trainer in one process only: under "
                        "torchrun pass --torch_training (the custom loop)")


def prepare_training(args: argparse.Namespace) -> TrainingSetup:
    """Check the inputs, then build the run folder, data, model and step counts.

    All checks that can fail on bad input run before anything is written (on every rank)."""
    run_dir = Path(args.output_dir)
    world, main = distributed.world_size(), distributed.is_main()
    resume_from, clear_outputs = _check_run_dir(args, run_dir, world)
    tokenizer = load_tokenizer(args.tokenizer_dir)
    model_type = _check_model_type(args, tokenizer)
    causal, hybrid = is_causal(model_type), is_hybrid(model_type)
    _check_distributed(args, hybrid, world)
    teacher_dirs = load_teacher_checks(args, tokenizer, model_type)
    logger = RunLogger(None)  # console only until every input has been checked
    if not main:  # rank 0 speaks for all
        logger.silence()
        hf_logging.set_verbosity_error()
    corpus = detect_corpus(args.data_dir, args.train_split, args.cache_dir)
    train_files = corpus.files("train", args.train_files, logger)
    val_files = corpus.files("validation", args.validation_files, logger)
    if args.difficulty == "source":  # run_args.json records the sources, not @easier/@harder
        args.easier_files, args.harder_files = (expand_names(corpus, names)
                                                for names in (args.easier_files, args.harder_files))
    device = distributed.process_device(args.device)
    resolve_fast_path(args, device)  # run.py has done it already; programmatic callers (bench) may not
    teachers = [_teacher(folder, args, tokenizer, device) for folder in teacher_dirs]
    set_seed(args.seed)
    model = build_model(args, tokenizer).to(device)
    if world > 1:  # the same initial weights on every rank, then each rank its own dropout and masking draws
        set_seed(args.seed + distributed.rank())
    with distributed.main_first():  # rank 0 builds the cache, the others then read it
        (train_blocks, train_meta), (val_blocks, _) = load_splits(
            [("train", train_files), ("validation", val_files)], tokenizer, args.block_size, args.cache_dir,
            args.num_proc, logger, clean=not args.no_cleaning, check=track_rules(args, world))
    total = count_steps(args, len(train_blocks), world)
    val_blocks = spread_blocks(val_blocks, args.eval_blocks)
    curriculum = _curriculum(args, train_blocks, train_meta, tokenizer, total, world) if args.difficulty else None
    if main:  # every input is checked: only now is the run folder written
        _open_run_dir(args, run_dir, world, (resume_from, clear_outputs), logger)
    setup = TrainingSetup(
        args=args, run_dir=run_dir, logger=logger, device=device, tokenizer=tokenizer, model=model, causal=causal,
        train_dataset=BlockDataset(train_blocks, words=train_meta["words_per_block"]),
        eval_dataset=eval_dataset(val_blocks, tokenizer, causal, args.mlm_probability),
        # MLM blocks are masked in the training step (`training_batch`), where the step is known.
        train_collator=CLMCollator() if causal else stack_blocks,
        eval_collator=eval_collator(tokenizer, causal),
        total_steps=total, warmup_steps=round(args.warmup_ratio * total),
        # One process with a global batch above the corpus trains the whole corpus per step.
        tokens_per_step=(min(global_batch(args, world), len(train_blocks)) if world == 1
                         else global_batch(args, world)) * args.block_size,
        train_meta=train_meta, resume_from=resume_from, curriculum=curriculum, hybrid=hybrid, teachers=teachers,
        steps_per_epoch=steps_per_epoch(args, len(train_blocks), world), clock=TrainingClock(args.max_minutes),
        corpus=corpus.describe(),
    )
    _log_start(setup, len(val_blocks), teacher_dirs, world)
    return setup


def _check_model_type(args: argparse.Namespace, tokenizer) -> str:
    """The model type to train (--init_model's, recorded in args), checked against the objective
    schedule and the tokenizer."""
    if args.init_model:  # the saved model's type; run_args.json records it
        saved = saved_model_type(args.init_model)
        if args.model_type not in (None, saved):
            raise UserError(f"--init_model {args.init_model} is a {saved} model but --model_type says "
                            f"{args.model_type}: drop --model_type (it continues the saved model) or pass {saved}")
        args.model_type = saved
    model_type = args.model_type
    causal, hybrid = is_causal(model_type), is_hybrid(model_type)
    schedule_keys = {key for _, setting in args.objective_schedule or [] for key in setting}
    if causal and not hybrid and schedule_keys:
        raise UserError(f"--objective_schedule sets masking, but {model_type} is a causal LM: drop the option "
                        "or train a masked LM")
    if not hybrid and "masked_share" in schedule_keys:
        raise UserError(f"--objective_schedule key masked_share needs --model_type gpt_bert, not {model_type}: "
                        "drop that key")
    if (not causal or hybrid) and tokenizer.mask_token_id is None:
        raise UserError(f"{model_type} {'is a masked LM and ' if not causal else ''}needs a tokenizer with a mask "
                        "token: train it with --tokenizer_type mlm")
    return model_type


def _curriculum(args: argparse.Namespace, train_blocks, train_meta: dict, tokenizer, total: int,
                world: int) -> CurriculumSampler:
    """--difficulty: the sampler that paces the training blocks in (UserError when it cannot be built)."""
    try:
        sources = {}
        if args.difficulty == "source":  # each block's file (by majority of its tokens) and that file's rank
            sources = {
                "block_sources": majority_source(train_meta["tokens_per_file"], args.block_size, len(train_blocks)),
                "source_rank": source_ranks([Path(f).stem for f in train_meta["files"]],
                                            [args.easier_files, args.harder_files]),
                "tie_break_seed": args.seed,  # otherwise the first pool is the start of the first file
            }
        return curriculum_for(
            train_blocks, args.difficulty, tokenizer.eos_token_id, args.pacing_steps or total,
            global_batch(args, world), args.pacing, args.seed,
            start_percent=args.start_percent, end_percent=args.end_percent, start_share=args.start_share,
            vocab_size=len(tokenizer), **sources)
    except ValueError as e:
        raise UserError(f"cannot build the curriculum: {e}") from None


def _open_run_dir(args: argparse.Namespace, run_dir: Path, world: int, decided: tuple[Path | None, bool],
                  logger: RunLogger) -> None:
    """Rank 0, once every input is checked: lock the run folder, clear it when starting over
    (bad input must not cost the old run, so only now), tidy what a killed run left, and
    start the log and TensorBoard there."""
    resume_from, clear_outputs = decided
    lock = _take_run_dir(args, run_dir, world, decided)
    if clear_outputs:
        if run_state(run_dir) is not RunState.NEW:
            logger.info(f"starting over in {run_dir}: its earlier outputs are removed")
        for path in [run_dir / name for name in RUN_OUTPUTS] + list(run_dir.glob(f"{WORD_CHECKPOINT_PREFIX}*")):
            remove_path(path)
    tidy_run_dir(run_dir)
    # On resume, TensorBoard hides what the killed run logged after the checkpoint.
    logger.attach(run_dir, purge_step=checkpoint_step(resume_from) + 1 if resume_from else None, lock=lock)


def _log_start(setup: TrainingSetup, n_val_blocks: int, teacher_dirs: list[str], world: int) -> None:
    """What the run is about to do, in the log (and its options in TensorBoard)."""
    args, logger, total = setup.args, setup.logger, setup.total_steps
    logger.info(setup.corpus)
    start = f"resuming from {setup.resume_from}" if setup.resume_from else (
        f"from {args.init_model}" if args.init_model else "from scratch")
    n_blocks = len(setup.train_dataset)
    logger.info(f"{args.model_type} ({count_parameters(setup.model) / 1e6:.2f}M parameters, {start}) on "
                f"{setup.device}; {n_blocks} training blocks, {n_val_blocks} validation blocks; "
                + (f"{args.max_minutes:g} minutes of optimizer steps" if args.max_minutes is not None
                   else f"{total} optimizer steps") + f" of {setup.tokens_per_step} tokens"
                + (f" ({world} processes of {args.batch_size} x {args.gradient_accumulation_steps} blocks)"
                   if world > 1 else ""))
    if args.checkpoint_words and args.max_minutes is None:
        planned = total * global_batch(args, world) * setup.train_meta["block_words"] / max(n_blocks, 1)
        reached = sum(mark <= planned for mark in args.checkpoint_words)
        logger.info(f"--checkpoint_words: {len(args.checkpoint_words)} marks, about {reached} of them within the "
                    f"run's ~{planned:,.0f} words")
    if setup.teachers:
        logger.info(f"distilling from {len(setup.teachers)} teachers ({', '.join(teacher_dirs)}): alpha "
                    f"{args.distill_alpha}, temperature {args.distill_temperature}")
    if setup.hybrid:
        logger.info(f"hybrid objective: masked:causal steps {args.hybrid_ratio} "
                    f"({args.hybrid_masked_share:.1%} masked next-token steps)")
    log_choice(logger, args)
    logger.hparams(vars(args))


def load_teacher_checks(args: argparse.Namespace, tokenizer, model_type: str) -> list[str]:
    """The --teacher_models folders, checked without loading their weights: each holds a
    model of the student's kind (causal or masked) with the student's tokenizer."""
    if not args.teacher_models:
        return []
    if is_hybrid(model_type):
        raise UserError("distillation into a gpt_bert model is not supported: drop --teacher_models or train a "
                        "gpt2, llama or bert student")
    student_vocab = tokenizer.get_vocab()
    for folder in args.teacher_models:
        teacher_type = saved_model_type(folder)
        if is_causal(teacher_type) != is_causal(model_type) or is_hybrid(teacher_type):
            kind = lambda t: "a masked LM" if not is_causal(t) else f"a causal LM ({t})"  # noqa: E731
            raise UserError(f"--teacher_models {folder} is {kind(teacher_type)} but the student ({model_type}) is "
                            f"{kind(model_type)}: distil from teachers that predict what the student predicts")
        teacher_tok = load_tokenizer(folder, "--teacher_models")
        if (teacher_tok.get_vocab() != student_vocab or teacher_tok.all_special_tokens != tokenizer.all_special_tokens):
            raise UserError(f"--teacher_models {folder} was trained with another tokenizer than --tokenizer_dir "
                            f"{args.tokenizer_dir} ({len(teacher_tok)} vs {len(tokenizer)} tokens, or different "
                            "tokens): teachers and student must share the tokenizer; train the teachers with it")
    return [str(f) for f in args.teacher_models]


def _teacher(folder: str, args: argparse.Namespace, tokenizer, device: torch.device) -> PreTrainedModel:
    """A teacher model: loaded, checked, in eval mode without gradients, in the run's precision."""
    teacher = load_model(folder, args.attn_implementation)
    check_tokenizer_fits(teacher.config, tokenizer, folder, args.block_size, option="--teacher_models")
    if teacher.config.vocab_size != len(tokenizer):
        raise UserError(f"--teacher_models {folder} has a vocabulary of {teacher.config.vocab_size} but the "
                        f"tokenizer has {len(tokenizer)} tokens: teachers and student must share the tokenizer")
    teacher.requires_grad_(False)
    return teacher.to(device, dtype=DTYPES[args.precision]).eval()


def _scheduled(args: argparse.Namespace, key: str, default: float, step: int) -> float:
    """`key` at optimizer `step`: its last --objective_schedule entry at or before the step, else `default`."""
    value = default
    for start, setting in args.objective_schedule or []:
        if start <= step:
            value = setting.get(key, value)
    return value


def mlm_probability_at(args: argparse.Namespace, step: int) -> float:
    """The masking probability at optimizer `step` (--objective_schedule, else --mlm_probability)."""
    return _scheduled(args, "mlm_probability", args.mlm_probability, step)


def masked_share_at(args: argparse.Namespace, step: int) -> float:
    """gpt_bert: the share of masked next-token steps at optimizer `step` (--objective_schedule
    masked_share, else from --hybrid_ratio)."""
    return _scheduled(args, "masked_share", args.hybrid_masked_share, step)


def hybrid_step_is_masked(args: argparse.Namespace, step: int) -> bool:
    """Whether optimizer `step` of a gpt_bert run trains masked next-token prediction.
    Evenly interleaved: step t is masked when floor((t + 1) p) > floor(t p) for the
    share p, so every 1/p steps hold their share exactly (15:1: a causal step, then 15
    masked ones, repeated; 1:1: alternating, causal first). A function of the step only,
    so both loops and a resumed run agree."""
    p = masked_share_at(args, step)
    return math.floor((step + 1) * p + 1e-9) > math.floor(step * p + 1e-9)


def training_batch(setup: TrainingSetup, batch: dict, step: int) -> dict:
    """A training batch ({'input_ids'} at least) as the model takes it at optimizer
    `step` (0-based): causal blocks with labels; masked-LM blocks masked with that
    step's probability; gpt_bert blocks either (`hybrid_step_is_masked`), with
    'bidirectional' saying which.
    Both loops call this in the step itself, so a schedule switches at the same step
    in both (a DataLoader collates ahead of the step)."""
    if setup.hybrid:
        ids = batch["input_ids"]
        if not hybrid_step_is_masked(setup.args, step):
            return {"input_ids": ids, "labels": ids, "bidirectional": False}
        masked, labels = mask_tokens(ids, setup.tokenizer, mlm_probability_at(setup.args, step))
        # Token j is predicted at position j-1, so the first position of a block is never a target.
        masked[:, 0], labels[:, 0] = ids[:, 0], -100
        return {"input_ids": masked, "labels": labels, "bidirectional": True}
    if setup.causal:  # labels are the inputs; the model shifts them
        return batch if "labels" in batch else {**batch, "labels": batch["input_ids"]}
    ids, labels = mask_tokens(batch["input_ids"], setup.tokenizer, mlm_probability_at(setup.args, step))
    return {"input_ids": ids, "labels": labels}


def make_optimizer(model: PreTrainedModel, lr: float, weight_decay: float, betas: tuple[float, float],
                   eps: float) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only: biases and norm weights (all the
    1-D parameters) are not decayed. Both loops and fine-tuning use it."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    # The fused kernel (one pass over all parameters) is the same update as the default
    # for-each implementation, and measurably faster on CPU (see `make bench`).
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=params[0].device.type in ("cpu", "cuda"))


def optimizer_step(model: PreTrainedModel, optimizer: torch.optim.Optimizer, scheduler, scaler: torch.amp.GradScaler,
                   grad_norm_clip: float) -> float:
    """Clip the gradients (0: no clipping; their norm is returned, for the log), then step the
    optimizer, the gradient scaler and the LR schedule: the custom loop and fine-tuning both."""
    clip = grad_norm_clip if grad_norm_clip > 0 else float("inf")
    scaler.unscale_(optimizer)  # fp16: clip the true gradients
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip).item()
    scaler.step(optimizer)  # fp16: skipped when a gradient overflowed (the scale then shrinks)
    scaler.update()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm


def training_optimizer(model: PreTrainedModel, args: argparse.Namespace) -> torch.optim.AdamW:
    """The pretraining optimizer: `make_optimizer` with --learning_rate and the AdamW options."""
    return make_optimizer(model, args.learning_rate, args.weight_decay, (args.adam_beta1, args.adam_beta2),
                          args.adam_epsilon)


def lr_factor(fraction: float, warmup_ratio: float) -> float:
    """The LR multiplier when `fraction` of the run is done: linear warm-up over the first
    `warmup_ratio`, then cosine decay to 0 at the end (get_cosine_schedule_with_warmup's shape)."""
    if fraction < warmup_ratio:
        return fraction / warmup_ratio
    return 0.5 * (1.0 + math.cos(math.pi * min((fraction - warmup_ratio) / (1.0 - warmup_ratio), 1.0)))


def make_scheduler(optimizer: torch.optim.Optimizer, setup: TrainingSetup):
    """Linear warm-up to the peak LR, then cosine decay to 0 at the last step; with
    --max_minutes over the share of the time budget used instead of the steps done, or,
    under a --track (which caps the run at MAX_EPOCHS epochs), over the larger of that
    share and the share of the capped steps: the schedule ends with whichever ends the run."""
    if setup.args.max_minutes is not None:
        capped = setup.total_steps < BUDGET_STEP_CAP
        return LambdaLR(optimizer, lambda step: lr_factor(
            max(setup.clock.fraction(), step / setup.total_steps if capped else 0.0), setup.args.warmup_ratio))
    return get_cosine_schedule_with_warmup(optimizer, setup.warmup_steps, setup.total_steps)


class TrainingBar:
    """The training progress bar (rank 0 only): optimizer steps, or with --max_minutes the
    budget's seconds. Both show the step, and the loss and tokens/s of the last log."""

    def __init__(self, setup: TrainingSetup, done_steps: int = 0) -> None:
        self.clock = setup.clock
        hidden = not distributed.is_main()
        if self.clock.budget is not None:
            self.bar = tqdm(total=round(self.clock.budget), initial=round(self.clock.used),
                            desc="training (time budget)", unit="s", dynamic_ncols=True, disable=hidden)
        else:
            self.bar = tqdm(total=setup.total_steps, initial=done_steps, desc="training", unit="step",
                            dynamic_ncols=True, disable=hidden)
        self.values: dict[str, str] = {}

    def step_done(self, step: int) -> None:
        """Optimizer step `step` (1-based) ended, after `clock.stop()`."""
        if self.clock.budget is not None:
            self.values["step"] = str(step)  # a seconds bar does not show the step by itself
            self.bar.set_postfix(self.values, refresh=False)
            self.bar.update(round(min(self.clock.used, self.clock.budget)) - self.bar.n)
        else:
            self.bar.update(1)

    def show(self, metrics: dict[str, float]) -> None:
        """The metrics of a training log (the tags of `setup.logger.metrics`)."""
        self.values.update(loss=f"{metrics['train/loss']:.3f}", tok_s=f"{metrics['train/tokens_per_second']:.0f}")
        self.bar.set_postfix(self.values)

    def close(self) -> None:
        self.bar.close()


def save_model_folder(model: PreTrainedModel, tokenizer, args: argparse.Namespace, folder: str | Path) -> None:
    """Save model + tokenizer + the run's arguments as a standard transformers folder,
    written beside the target and renamed into place (never half-written)."""
    hf_logging.disable_progress_bar()  # no "Writing model shards" bar at every validation
    with atomic_dir(folder) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json_atomic(tmp / RUN_ARGS, vars(args))


class BestTracker:
    """Keeps the best validation loss, saves the best model, counts patience, and
    the training time so far: the bookkeeping both loops store in each checkpoint."""

    def __init__(self, setup: TrainingSetup, marks: WordMarks | None = None) -> None:
        self.setup = setup
        self.marks = marks  # to record the words seen at the best step
        self.best_loss = math.inf
        self.best_step = -1
        self.best_words: int | None = None
        self.bad_evals = 0
        self.last_eval_step = -1
        self.seconds_before = 0.0  # training time of the runs this one resumed
        self.started = time.time()

    def seconds(self) -> float:
        """Training time of the whole run, across resumes."""
        return self.seconds_before + time.time() - self.started

    def state_dict(self) -> dict:
        """What a resumed run needs to continue early stopping, best-model keeping and its clock."""
        return {"best_loss": self.best_loss, "best_step": self.best_step, "bad_evals": self.bad_evals,
                "last_eval_step": self.last_eval_step, "seconds": self.seconds(), "step_seconds": self.setup.clock.used,
                "best_words": self.best_words}

    def load_state_dict(self, state: dict) -> None:
        self.seconds_before, self.started = state["seconds"], time.time()
        self.best_loss, self.best_step = state["best_loss"], state["best_step"]
        self.bad_evals, self.last_eval_step = state["bad_evals"], state["last_eval_step"]
        self.setup.clock.used = state.get("step_seconds", 0.0)  # absent in checkpoints older than the clock
        self.best_words = state.get("best_words")

    def update(self, step: int, eval_loss: float) -> bool:
        """Record a validation result; save the model if it is the best so far.
        Returns True when early stopping says to stop."""
        s = self.setup
        self.last_eval_step = step
        if eval_loss < self.best_loss:
            self.best_loss, self.best_step, self.bad_evals = eval_loss, step, 0
            self.best_words = self.marks.words if self.marks is not None else None
            if distributed.is_main():
                save_model_folder(s.model, s.tokenizer, s.args, s.run_dir / BEST_MODEL_DIR)
            s.logger.info(f"step {step}: new best validation loss {eval_loss:.4f}, saved {BEST_MODEL_DIR}/")
            return False
        self.bad_evals += 1
        patience = s.args.early_stopping_patience
        if patience and self.bad_evals >= patience:
            s.logger.info(f"step {step}: no better validation loss in {patience} evaluations; stopping early")
            return True
        return False


def add_loss_parts(window: dict[str, list[float]], parts: dict) -> None:
    """Add one micro-batch's loss parts (distillation, hybrid: tag -> scalar tensor) to a
    logging window {tag: [sum, micro-batches]}: both loops keep their window this way."""
    for tag, value in parts.items():
        total = window.setdefault(tag, [0.0, 0])
        total[0], total[1] = total[0] + float(value), total[1] + 1


def train_metrics(setup: TrainingSetup, step: int, loss: float, lr: float, grad_norm: float,
                  tokens_per_second: float, epoch: float, part_means: dict[str, float]) -> dict[str, float]:
    """The train/* metrics of one log at optimizer `step` (1-based), under the same tags for both loops."""
    args = setup.args
    metrics = {"train/loss": loss, "train/lr": lr, "train/grad_norm": grad_norm,
               "train/tokens_per_second": tokens_per_second, "train/epoch": epoch}
    if setup.curriculum:
        metrics["train/curriculum_share"] = setup.curriculum.share(step - 1)
    if args.objective_schedule:
        metrics["train/mlm_probability"] = mlm_probability_at(args, step - 1)
    if setup.hybrid:
        metrics["train/masked_share"] = masked_share_at(args, step - 1)
    return {**metrics, **part_means}


def log_eval(setup: TrainingSetup, step: int, metrics: dict[str, float]) -> None:
    """Send validation metrics to TensorBoard and the log, under the same tags for both loops."""
    setup.logger.metrics(step, {"eval/loss": metrics["loss"], "eval/perplexity": metrics["perplexity"]}, echo=True)


class WordMarks:
    """--checkpoint_words: counts the words of the source text the run has trained on
    (of every block of every optimizer step, over all processes; a block's words are
    those of the lines ending in it, see pretraining_dataset.build_blocks) and saves a
    model folder `chck_<mark>` (model + tokenizer + run_args, like best_model) at the
    optimizer step where the count reaches each mark. Stored in every checkpoint."""

    def __init__(self, setup: TrainingSetup) -> None:
        self.setup = setup
        self.marks = setup.args.checkpoint_words or []
        self.words = 0  # words seen so far, across resumes
        self.saved: dict[str, dict] = {}  # folder name -> {"words": mark, "step": step, "words_seen": count}

    def add(self, words: int, step: int) -> None:
        """Count the words optimizer `step` (1-based, done) trained on; save the folders of the marks it reached."""
        before, self.words = self.words, self.words + int(words)
        for mark in self.marks:
            if before < mark <= self.words:
                name = WORD_CHECKPOINT_PREFIX + word_mark_name(mark)
                self.saved[name] = {"words": mark, "step": step, "words_seen": self.words}
                s = self.setup
                if distributed.is_main():
                    save_model_folder(s.model, s.tokenizer, s.args, s.run_dir / name)
                s.logger.info(f"step {step}: {self.words} words seen, saved {name}/")

    def state_dict(self) -> dict:
        return {"words": self.words, "saved": self.saved}

    def load_state_dict(self, state: dict | None) -> None:
        if state is None:  # a checkpoint older than the words count
            if self.marks:
                self.setup.logger.warning("the checkpoint holds no word count: --checkpoint_words counts from 0")
            return
        self.words, self.saved = state["words"], state["saved"]


def finish_run(setup: TrainingSetup, tracker: BestTracker, steps_done: int, loop: str, tokens_seen: int,
               marks: WordMarks | None = None) -> dict:
    """Write `train_results.json` (last, atomically: it marks the run finished; rank 0 only).
    `tokens_seen`: the tokens of every block trained on, over all processes, across resumes."""
    results = {
        "loop": loop,
        "best_eval_loss": tracker.best_loss,
        "best_eval_perplexity": math.exp(min(tracker.best_loss, 50.0)),
        "best_step": tracker.best_step,
        "best_words_seen": tracker.best_words,  # source-text words trained on up to the best step
        "steps": steps_done,
        "planned_steps": None if setup.args.max_minutes is not None else setup.total_steps,
        "max_minutes": setup.args.max_minutes,
        "step_seconds": round(setup.clock.used, 1),  # inside optimizer steps (the --max_minutes clock)
        "tokens_seen": tokens_seen,
        "train_words": setup.train_meta["words"],
        "track": setup.args.track or "none",  # the rules checked (track_rules)
        "corpus": setup.corpus,
        "train_files": setup.train_meta["files"],
        "train_seconds": round(tracker.seconds(), 1),  # across resumes
        "best_model": str(setup.run_dir / BEST_MODEL_DIR),
        "processes": distributed.world_size(),
        "precision": setup.args.precision,
        "compile": setup.args.compile,
        # This process's time in torch.compile (a resumed run counts only its own): reruns load
        # the kernels from the cache under --cache_dir and pay less.
        "compile_seconds": compile_seconds() if setup.args.compile else 0.0,
        "fast_path": setup.args.fast_path["summary"],
        "parameters": count_parameters(setup.model),
        # The CUDA allocator's peak of this process (None on other devices; the bench samples CPU memory).
        "peak_memory_mb": (round(torch.cuda.max_memory_allocated(setup.device) / 2**20, 1)
                           if setup.device.type == "cuda" else None),
    }
    if marks is not None:
        results["words_seen"] = marks.words
        results["checkpoint_words"] = marks.saved  # chck_<mark> -> the mark, the step that reached it, words then
    if setup.args.max_minutes is not None and setup.total_steps < BUDGET_STEP_CAP and steps_done >= setup.total_steps:
        setup.logger.info(f"stopped at the end of epoch {MAX_EPOCHS} ({steps_done} steps), before the time budget: the "
                          f"{setup.args.track} track allows at most {MAX_EPOCHS} epochs over the training data")
        results["stopped_at_max_epochs"] = True
    if distributed.is_main():
        write_json_atomic(setup.run_dir / TRAIN_RESULTS, results)
        if (setup.run_dir / BEST_MODEL_DIR).is_dir():  # absent only when no validation loss was finite
            write_model_card(setup.run_dir)  # best_model/README.md, from the files just written
    setup.logger.info(f"done: best validation loss {tracker.best_loss:.4f} at step {tracker.best_step}; "
                      f"model in {setup.run_dir / BEST_MODEL_DIR}; TensorBoard: {setup.run_dir / TENSORBOARD_DIR}")
    return results
