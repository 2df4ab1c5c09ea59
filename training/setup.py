"""The assembly of a training run: `prepare_training` checks the inputs, then builds the
run folder, tokenizer, model, datasets and collators, the step count and the curriculum into a
`TrainingSetup`, which both loops train from, so they cannot drift apart. Its methods hand each
loop the shared pieces built from the run's options: AdamW or LAMB and the LR schedule (training/optim.py),
the training batch of a step (training/objective.py), the best-model tracker, the word marks and
the progress bar (training/tracking.py), the metrics' tags, and train_results.json at the end.
The loops differ only in who drives the steps. The run folder's format is training/run_folder.py's.

With several processes (torchrun, see training/distributed.py) every rank runs all of this
(so every rank checks the inputs and fails with the same message), but only rank 0
writes: the run folder, log.txt, TensorBoard, best_model/, chck_*/ and
train_results.json. The global batch of an optimizer step is --batch_size x
--gradient_accumulation_steps x processes."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import Dataset
from transformers import PreTrainedModel
from transformers.utils import logging as hf_logging

import training.distributed as distributed
from corpus.editions import detect_corpus, expand_names
from custom_models import build_model, count_parameters, is_causal, is_hybrid, saved_model_type
from pretraining_dataset import BlockDataset, CLMCollator, load_splits, stack_blocks
from tokenizer import load_tokenizer
from training.curriculum import CurriculumSampler, curriculum_for, majority_source, source_ranks
from training.hardware import compile_seconds, log_choice, resolve_fast_path
from training.model_card import write_model_card
from training.objective import StepObjective, check_document_mask, run_progress
from training.optim import make_optimizer, make_scheduler
from training.plan import BUDGET_STEP_CAP, StepPlan
from training.run_folder import RunFolder, RunRequest
from training.teachers import check_teachers, load_teacher
from training.tracking import BestTracker, TrainingBar, TrainingClock, WordMarks
from training.validation import eval_collator, eval_dataset, spread_blocks
from utils import BEST_MODEL_DIR, MAX_EPOCHS, RunLogger, UserError, set_seed


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
    plan: StepPlan  # the global batch and step counts
    objective: StepObjective  # what each step's batch is (`training_batch`)
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
    # --ema_decay (custom loop): the average of the weights, which validation and the saved model
    # folders use; the loop builds it (training/optim.py make_ema) and keeps it in its checkpoints.
    ema: AveragedModel | None = None

    @property
    def folder(self) -> RunFolder:
        """The run folder: its checkpoints, saved model folders and results."""
        return RunFolder(self.run_dir)

    def close(self) -> None:
        """Flush and close the run's log and TensorBoard, and give the run folder's lock back."""
        self.logger.close()

    @property
    def judged_model(self) -> PreTrainedModel:
        """The weights the run is judged by: validated, saved as best_model/ and chck_*: the EMA's
        with --ema_decay, else the model being trained."""
        return self.ema.module if self.ema is not None else self.model

    def save_model(self, name: str, step: int | None = None, words_seen: int | None = None) -> None:
        """Save the judged weights (`judged_model`) as the run's folder `name` (best_model, chck_<mark>), at
        optimizer `step` after `words_seen` words (its identity); rank 0 only."""
        if distributed.is_main():
            self.folder.save_model(name, self.judged_model, self.tokenizer, vars(self.args), step, words_seen)

    def word_marks(self) -> WordMarks:
        """The --checkpoint_words counter, saving its chck_* folders into the run."""
        return WordMarks(self.args.checkpoint_words, self.save_model, self.logger)

    def best_tracker(self, marks: WordMarks | None = None) -> BestTracker:
        """The best-model and early-stopping tracker, keeping this run's clock."""
        return BestTracker(self.save_model, self.logger, self.clock, self.args.early_stopping_patience, marks)

    def progress_bar(self, done_steps: int = 0) -> TrainingBar:
        return TrainingBar(self.clock, self.total_steps, done_steps)

    def optimizer_and_scheduler(self) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
        """The pretraining optimizer (--optimizer: AdamW or LAMB, with --learning_rate and the
        --adam_* options) and its LR schedule: linear warm-up, cosine decay to --min_lr_ratio and
        the --cooldown_ratio linear cool-down to 0 over the steps, or with --max_minutes over the
        share of the time budget used (under a --track, which caps the run at MAX_EPOCHS epochs,
        over the larger of that share and the share of the capped steps)."""
        args = self.args
        optimizer = make_optimizer(self.model, args.learning_rate, args.weight_decay,
                                   (args.adam_beta1, args.adam_beta2), args.adam_epsilon, args.optimizer)
        budget = self.clock.fraction if args.max_minutes is not None else None
        return optimizer, make_scheduler(optimizer, self.warmup_steps, self.total_steps, args.warmup_ratio, budget,
                                         capped=self.total_steps < BUDGET_STEP_CAP, min_lr_ratio=args.min_lr_ratio,
                                         cooldown_ratio=args.cooldown_ratio)

    def training_batch(self, batch: dict, step: int) -> dict:
        """The batch the model trains on at optimizer `step` (0-based): `StepObjective.batch`.
        Both loops call this in the step itself, so a schedule switches at the same step in both."""
        return self.objective.batch(batch, step)

    def blocks_per_sequence(self, step: int) -> int:
        """Consecutive blocks joined into one training sequence at optimizer `step` (0-based):
        --length_schedule at the run's share done (as the LR schedule counts it), else 1."""
        return self.plan.length_at(self.objective.progress(step)) if self.plan.lengths else 1

    def train_metrics(self, step: int, loss: float, lr: float, grad_norm: float, tokens_per_second: float,
                      epoch: float, part_means: dict[str, float]) -> dict[str, float]:
        """The train/* metrics of one log at optimizer `step` (1-based), under the same tags for both loops."""
        metrics = {"train/loss": loss, "train/lr": lr, "train/grad_norm": grad_norm,
                   "train/tokens_per_second": tokens_per_second, "train/epoch": epoch}
        if self.curriculum:
            metrics["train/curriculum_share"] = self.curriculum.share(step - 1)
        if self.args.objective_schedule or self.args.mlm_probability_end is not None:
            metrics["train/mlm_probability"] = self.objective.mlm_probability_at(step - 1)
        if self.hybrid:
            metrics["train/masked_share"] = self.objective.masked_share_at(step - 1)
        if self.plan.lengths:
            metrics["train/sequence_length"] = self.blocks_per_sequence(step - 1) * self.args.block_size
        return {**metrics, **part_means}

    def log_eval(self, step: int, metrics: dict[str, float]) -> None:
        """Send validation metrics to TensorBoard and the log, under the same tags for both loops."""
        self.logger.metrics(step, {"eval/loss": metrics["loss"], "eval/perplexity": metrics["perplexity"]}, echo=True)

    def finish(self, tracker: BestTracker, steps_done: int, loop: str, tokens_seen: int,
               marks: WordMarks | None = None) -> dict:
        """Write `train_results.json` (last, atomically: it marks the run finished; rank 0 only) and
        the model card. `tokens_seen`: the tokens of every block trained on, over all processes,
        across resumes. Returns the results."""
        args, folder = self.args, self.folder
        results = {
            "loop": loop,
            "best_eval_loss": tracker.best_loss,
            "best_eval_perplexity": math.exp(min(tracker.best_loss, 50.0)),
            "best_step": tracker.best_step,
            "best_words_seen": tracker.best_words,  # source-text words trained on up to the best step
            "steps": steps_done,
            "planned_steps": None if args.max_minutes is not None else self.total_steps,
            "max_minutes": args.max_minutes,
            "step_seconds": round(self.clock.used, 1),  # inside optimizer steps (the --max_minutes clock)
            "tokens_seen": tokens_seen,
            "train_words": self.train_meta["words"],
            "track": args.track or "none",  # the rules checked (StepPlan.track_rules)
            "corpus": self.corpus,
            "train_files": self.train_meta["files"],
            "train_seconds": round(tracker.seconds(), 1),  # across resumes
            "best_model": str(folder.best_model),
            "processes": distributed.world_size(),
            "precision": args.precision,
            "compile": args.compile,
            # This process's time in torch.compile (a resumed run counts only its own): reruns load
            # the kernels from the cache under --cache_dir and pay less.
            "compile_seconds": compile_seconds() if args.compile else 0.0,
            "fast_path": args.fast_path["summary"],
            "parameters": count_parameters(self.model),
            # The CUDA allocator's peak of this process (None on other devices; the bench samples CPU memory).
            "peak_memory_mb": (round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
                               if self.device.type == "cuda" else None),
        }
        if marks is not None:
            results["words_seen"] = marks.words
            results["checkpoint_words"] = marks.saved  # chck_<mark> -> the mark, the step that reached it, words then
        if args.max_minutes is not None and self.total_steps < BUDGET_STEP_CAP and steps_done >= self.total_steps:
            self.logger.info(f"stopped at the end of epoch {MAX_EPOCHS} ({steps_done} steps), before the time budget: "
                             f"the {args.track} track allows at most {MAX_EPOCHS} epochs over the training data")
            results["stopped_at_max_epochs"] = True
        if distributed.is_main():
            folder.write_results(results)
            if folder.best_model.is_dir():  # absent only when no validation loss was finite
                write_model_card(self.run_dir)  # best_model/README.md, from the files just written
        self.logger.info(f"done: best validation loss {tracker.best_loss:.4f} at step {tracker.best_step}; "
                         f"model in {folder.best_model}; TensorBoard: {folder.tensorboard_dir}")
        return results


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
    if not args.torch_training and args.z_loss:  # its loss calls the model's parts, outside the Trainer's DDP
        raise UserError("--z_loss trains with the HF Trainer in one process only: under torchrun pass "
                        "--torch_training (the custom loop)")


def prepare_training(args: argparse.Namespace) -> TrainingSetup:
    """Check the inputs, then build the run folder, data, model and step counts.

    All checks that can fail on bad input run before anything is written (on every rank)."""
    run_dir = Path(args.output_dir)
    world, main = distributed.world_size(), distributed.is_main()
    request, plan = RunRequest.from_args(args, world), StepPlan.from_args(args, world)
    decided = RunFolder(run_dir).decide(request)
    tokenizer = load_tokenizer(args.tokenizer_dir)
    model_type = _check_model_type(args, tokenizer)
    causal, hybrid = is_causal(model_type), is_hybrid(model_type)
    _check_distributed(args, hybrid, world)
    check_document_mask(args, world)
    if args.ema_decay and not args.torch_training:
        # The Trainer's checkpoints are complete once trainer_state.json is written, before any
        # callback could add the average: a resume would lose it. The custom loop keeps it exactly.
        raise UserError(f"--ema_decay {args.ema_decay} works in the custom loop only: add --torch_training, or drop "
                        "--ema_decay")
    teacher_dirs = check_teachers(args.teacher_models, tokenizer, args.tokenizer_dir, model_type)
    logger = RunLogger(None)  # console only until every input has been checked
    if not main:  # rank 0 speaks for all
        logger.silence()
        hf_logging.set_verbosity_error()
    corpus, train_files, val_files = _data_files(args, logger)
    device = distributed.process_device(args.device)
    resolve_fast_path(args, device)  # run.py has done it already; programmatic callers (bench) may not
    model, teachers = _models(args, tokenizer, teacher_dirs, device, world)
    _check_positions(args, model.config, plan)
    with distributed.main_first():  # rank 0 builds the cache, the others then read it
        (train_blocks, train_meta), (val_blocks, _) = load_splits(
            [("train", train_files), ("validation", val_files)], tokenizer, args.block_size, args.cache_dir,
            args.num_proc, logger, clean=not args.no_cleaning, check=plan.track_rules())
    total = plan.count_steps(len(train_blocks))
    clock = TrainingClock(args.max_minutes)
    # --mlm_probability_end moves with the run's share done, as the LR schedule counts it (optimizer_and_scheduler).
    progress = run_progress(total, clock.fraction if args.max_minutes is not None else None,
                            capped=total < BUDGET_STEP_CAP)
    val_blocks = spread_blocks(val_blocks, args.eval_blocks)
    curriculum = _curriculum(args, train_blocks, train_meta, tokenizer, total, world) if args.difficulty else None
    if main:  # every input is checked: only now is the run folder written
        RunFolder(run_dir).open(request, decided, logger)
    setup = TrainingSetup(
        args=args, run_dir=run_dir, logger=logger, device=device, tokenizer=tokenizer, model=model, causal=causal,
        train_dataset=BlockDataset(train_blocks, words=train_meta["words_per_block"]),
        eval_dataset=eval_dataset(val_blocks, tokenizer, causal, args.mlm_probability),
        # MLM blocks are masked in the training step (`training_batch`), where the step is known.
        train_collator=CLMCollator() if causal else stack_blocks,
        eval_collator=eval_collator(tokenizer, causal),
        total_steps=total, warmup_steps=round(args.warmup_ratio * total),
        # One process with a global batch above the corpus trains the whole corpus per step.
        tokens_per_step=(min(plan.global_batch, len(train_blocks)) if world == 1
                         else plan.global_batch) * args.block_size,
        train_meta=train_meta, plan=plan, objective=StepObjective.from_args(args, tokenizer, causal, hybrid, progress),
        resume_from=decided[0], curriculum=curriculum, hybrid=hybrid, teachers=teachers,
        steps_per_epoch=plan.steps_per_epoch(len(train_blocks)), clock=clock,
        corpus=corpus.describe(),
    )
    _log_start(setup, len(val_blocks), teacher_dirs, world)
    return setup


def _data_files(args: argparse.Namespace, logger: RunLogger):
    """The detected corpus and its training and validation files (--difficulty source: the
    easier/harder groups expanded to the sources, which run_args.json then records)."""
    corpus = detect_corpus(args.data_dir, args.train_split, args.cache_dir)
    train_files = corpus.files("train", args.train_files, logger)
    val_files = corpus.files("validation", args.validation_files, logger)
    if args.difficulty == "source":  # run_args.json records the sources, not @easier/@harder
        args.easier_files, args.harder_files = (expand_names(corpus, names)
                                                for names in (args.easier_files, args.harder_files))
    return corpus, train_files, val_files


def _models(args: argparse.Namespace, tokenizer, teacher_dirs: list[str], device: torch.device,
            world: int) -> tuple[PreTrainedModel, list[PreTrainedModel]]:
    """The teachers, then the student built from --seed (the same initial weights on every rank;
    then each rank its own dropout and masking draws)."""
    teachers = [load_teacher(folder, tokenizer, device, args.attn_implementation, args.block_size, args.precision)
                for folder in teacher_dirs]
    set_seed(args.seed)
    model = build_model(args, tokenizer).to(device)
    if world > 1:
        set_seed(args.seed + distributed.rank())
    return model, teachers


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
        raise UserError(f"--objective_schedule key masked_share needs --model_type gpt_bert or ltg_bert, not "
                        f"{model_type}: drop that key")
    masking = [f"--{name}" for name, off in (("mask_span", 1), ("mlm_probability_end", None))
               if getattr(args, name) != off]
    if causal and not hybrid and masking:
        raise UserError(f"{' and '.join(masking)} set{'s' if len(masking) == 1 else ''} masking, but {model_type} "
                        "is a causal LM: drop the option or train a masked LM")
    if not hybrid and args.hybrid_mix != "step":
        raise UserError(f"--hybrid_mix {args.hybrid_mix} mixes the hybrid's two modes, but {model_type} is not a "
                        "hybrid model: drop the option or pass --model_type gpt_bert")
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
            StepPlan.from_args(args, world).global_batch, args.pacing, args.seed,
            start_percent=args.start_percent, end_percent=args.end_percent, start_share=args.start_share,
            vocab_size=len(tokenizer), **sources)
    except ValueError as e:
        raise UserError(f"cannot build the curriculum: {e}") from None


def _check_positions(args: argparse.Namespace, config, plan: StepPlan) -> None:
    """UserError when --length_schedule's longest sequences exceed the model's positions (a fresh
    model's were checked by the parser; this is for --init_model's)."""
    longest = max((blocks for _, blocks in plan.lengths), default=1) * args.block_size
    positions = getattr(config, "max_position_embeddings", None)
    if positions is not None and longest > positions:
        raise UserError(f"--length_schedule's longest sequences ({longest} tokens) exceed the {positions} positions "
                        f"of {args.init_model or 'the model'}: lower the schedule's last BLOCKS or --block_size")


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
        planned = total * setup.plan.global_batch * setup.train_meta["block_words"] / max(n_blocks, 1)
        reached = sum(mark <= planned for mark in args.checkpoint_words)
        logger.info(f"--checkpoint_words: {len(args.checkpoint_words)} marks, about {reached} of them within the "
                    f"run's ~{planned:,.0f} words")
    _log_optimizer(logger, args)
    if setup.teachers:
        logger.info(f"distilling from {len(setup.teachers)} teachers ({', '.join(teacher_dirs)}): alpha "
                    f"{args.distill_alpha}, temperature {args.distill_temperature}")
    if setup.hybrid:
        what = "sequences of every micro-batch" if args.hybrid_mix == "batch" else "steps"
        logger.info(f"hybrid objective: masked:causal {what} {args.hybrid_ratio} "
                    f"({args.hybrid_masked_share:.1%} masked next-token {what.split()[0]})")
    if args.mask_span > 1 or args.mlm_probability_end is not None:
        spans = f"spans of 1-{args.mask_span} tokens" if args.mask_span > 1 else "token by token"
        logger.info(f"masking: {spans}, {args.mlm_probability:g} of the tokens"
                    + (f" falling linearly to {args.mlm_probability_end:g} at the end of the run"
                       if args.mlm_probability_end is not None else ""))
    if args.z_loss:
        logger.info(f"z-loss: {args.z_loss:g} x mean logsumexp(logits)^2 added to the loss")
    if args.document_mask:
        logger.info("document mask: attention stays within each line of the packed blocks (block-diagonal; "
                    "validation unmasked)")
    if args.length_schedule:
        phases = ", ".join(f"{blocks * args.block_size} from {share:.0%}" for share, blocks in args.length_schedule)
        logger.info(f"sequence length: {args.block_size} tokens, then {phases} of the run (consecutive blocks "
                    "joined; the same tokens per step)")
    log_choice(logger, args)
    logger.hparams(vars(args))


def _log_optimizer(logger: RunLogger, args: argparse.Namespace) -> None:
    """The optimizer, the LR schedule's shape and the EMA, in the start log."""
    kind = ("LAMB (Adam steps scaled by ||w|| / ||step|| per decayed matrix, training/optim.py Lamb)"
            if args.optimizer == "lamb" else "AdamW")
    shape = f"warm-up {args.warmup_ratio:.1%}, cosine to {args.min_lr_ratio:g} x the peak"
    if args.cooldown_ratio:
        shape += f", then linear to 0 over the last {args.cooldown_ratio:.1%}"
    logger.info(f"optimizer: {kind}, peak LR {args.learning_rate:g}, weight decay {args.weight_decay:g}; LR {shape}")
    if args.ema_decay:
        logger.info(f"EMA of the weights (decay {args.ema_decay:g}): validation, {BEST_MODEL_DIR}/ and the chck_* "
                    "folders use the averaged weights; the live weights train on (and resume from checkpoints/)")
