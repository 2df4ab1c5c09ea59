"""The same training through `transformers.Trainer` (the default loop).

Equivalence with the custom loop is by construction, not by copied settings:
the optimizer, its parameter groups and the warm-up/cosine schedule are built by
training/setup.py (training/optim.py) and handed to the Trainer; validation uses the same
`evaluate_lm`; the best model, early stopping, TensorBoard tags and
train_results.json go through the same helpers. The Trainer drives the steps,
gradient accumulation, clipping (`max_grad_norm`) and --precision (bf16, or fp16 with loss scaling).

Under torchrun the Trainer trains data-parallel itself (DDP through accelerate, on
the process group training/distributed.py initialised; --batch_size per process); the
pipeline's callback logs, saves the best model and the chck_* folders on rank 0 only.
Its resume is the Trainer's own and needs the number of processes that wrote the
checkpoint."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import ExportableState

import training.distributed as distributed
from training.curriculum import CurriculumIndexSampler
from training.hardware import autocast
from training.losses import make_objective
from training.run_folder import RunFolder
from training.setup import TrainingSetup
from training.tracking import BestTracker, NonFiniteLoss, WordMarks, add_loss_parts
from training.validation import evaluate_lm


class _SharedEvalTrainer(Trainer):
    """A Trainer whose validation is the pipeline's `evaluate_lm` (token-weighted
    loss, fixed MLM masks), so both loops report the same number."""

    def __init__(self, *args, setup: TrainingSetup, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.setup = setup
        # Distillation, the hybrid objective, --z_loss and --document_mask: the loss is the pipeline's own
        # (training/losses.py, as in the custom loop), a mean per micro-batch that the Trainer divides by the
        # accumulation steps, like the custom loop. Otherwise the stock Trainer loss. (--document_mask's
        # [batch, query, key] mask is not one the stock loss's model(**inputs) could take.)
        self.own_loss = bool(setup.teachers) or setup.hybrid or bool(setup.args.z_loss) or setup.args.document_mask
        if self.own_loss:
            self.loss_is_scaled_for_ga = False
        self.objective = None
        self.window_parts: dict[str, list[float]] = {}  # tag -> [sum, micro-batches] since the last log
        self.step_words = 0  # words of this process's blocks in the current optimizer step
        self.step_tokens = 0  # and their tokens

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not self.own_loss:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if self.objective is None:  # built like the custom loop's, on the model (compiling its parts with --compile)
            s = self.setup
            self.objective = make_objective(s.model, s.teachers, s.args.distill_alpha, s.args.distill_temperature,
                                            s.args.compile, s.args.z_loss)
        with autocast(self.setup.device, self.setup.args.precision):  # teachers and heads too, not only forward()
            loss, parts = self.objective(inputs)
        add_loss_parts(self.window_parts, parts)
        return (loss, None) if return_outputs else loss

    def _get_train_sampler(self, train_dataset=None):
        # --difficulty: the curriculum's block order (the same blocks per step as the custom loop).
        if self.setup.curriculum is None:
            return super()._get_train_sampler(train_dataset)
        return CurriculumIndexSampler(self.setup.curriculum, self.setup.steps_per_epoch)

    def training_step(self, model, inputs, num_items_in_batch=None):
        words = inputs.pop("words", None)  # the blocks' source words (BlockDataset), counted for --checkpoint_words
        if words is not None:
            self.step_words += int(words.sum())
        self.step_tokens += inputs["input_ids"].numel()
        inputs = self.setup.training_batch(inputs, self.state.global_step)  # MLM: masked at this step
        loss = super().training_step(model, inputs, num_items_in_batch)
        # Checked per micro-batch, before the optimizer step and any save, so no
        # checkpoint ever holds NaN weights (--skip_nonfinite is custom-loop only).
        if not torch.isfinite(loss):
            raise NonFiniteLoss.at(self.setup.folder, loss.item(), self.state.global_step + 1, skippable=False)
        return loss

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        s = self.setup
        metrics = evaluate_lm(self.model, s.eval_dataset, s.eval_collator, s.args.eval_batch_size,
                              s.device, s.args.precision)
        out = {f"{metric_key_prefix}_loss": metrics["loss"], f"{metric_key_prefix}_perplexity": metrics["perplexity"]}
        self.log(out)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, out)
        return out


class _PipelineCallback(TrainerCallback, ExportableState):
    """Routes the Trainer's events into the pipeline's logger and best-model tracker.

    As an ExportableState its tracker state (best loss, early-stopping count) is
    stored in each checkpoint's trainer_state.json, which the Trainer writes
    after the model, optimizer and RNG states: the file marks a complete checkpoint."""

    def __init__(self, setup: TrainingSetup, tracker: BestTracker, marks: WordMarks) -> None:
        self.setup = setup
        self.tracker = tracker
        self.marks = marks
        self.window_from = setup.clock.used  # the clock's seconds when the logging window began
        self.last_saved_step = -1
        self.tokens_seen = 0  # of every block trained on, all processes, across resumes
        self.window_tokens = 0  # since the last log
        self.trainer: _SharedEvalTrainer | None = None
        # With --max_minutes the bar shows the budget (the Trainer's own counts steps to a cap).
        self.bar = setup.progress_bar() if setup.clock.budget is not None else None

    def state(self) -> dict:
        return {"args": {}, "attributes": {**self.tracker.state_dict(), "word_marks": self.marks.state_dict(),
                                           "world_size": distributed.world_size(), "tokens_seen": self.tokens_seen}}

    def on_epoch_end(self, args, state, control, **kwargs):
        # Validate at each epoch end, as the custom loop does, unless this step
        # was just validated (the Trainer also validates at its last step).
        if self.tracker.last_eval_step != state.global_step:
            control.should_evaluate = True
        if self.last_saved_step != state.global_step:  # and a checkpoint, unless this step was just saved
            control.should_save = True
        return control

    def on_train_begin(self, args, state, control, **kwargs):
        self.setup.step_clock.append(time.perf_counter())

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()

    def on_step_begin(self, args, state, control, **kwargs):
        self.setup.clock.start()

    def on_step_end(self, args, state, control, **kwargs):
        clock = self.setup.clock
        clock.stop()
        if self.bar is not None:
            self.bar.step_done(state.global_step)
        if clock.expired():  # the budget is used up: validate and save this last step, then stop
            control.should_training_stop = control.should_evaluate = control.should_save = True
        self.setup.step_clock.append(time.perf_counter())
        # The words and tokens of the step's blocks on every process (one small all-reduce per step).
        words, tokens = distributed.sum_across([self.trainer.step_words, self.trainer.step_tokens])
        self.marks.add(int(words), state.global_step)
        self.tokens_seen += int(tokens)
        self.window_tokens += int(tokens)
        self.trainer.step_words = self.trainer.step_tokens = 0

    def on_save(self, args, state, control, **kwargs):
        self.last_saved_step = state.global_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "loss" not in logs:
            return
        used = self.setup.clock.used
        tokens, self.window_tokens = self.window_tokens, 0
        # The Trainer's loss is already averaged over processes; loss parts (distillation, hybrid) exist only
        # in one-process runs (prepare_training refuses them under torchrun with this loop).
        parts = {tag: total / n for tag, (total, n) in self.trainer.window_parts.items()}
        metrics = self.setup.train_metrics(state.global_step, logs["loss"], logs.get("learning_rate", 0.0),
                                logs.get("grad_norm", 0.0), tokens / max(used - self.window_from, 1e-9),
                                logs.get("epoch", 0.0), parts)
        self.setup.logger.metrics(state.global_step, metrics)
        if self.bar is not None:
            self.bar.show(metrics)
        self.trainer.window_parts = {}
        self.window_from = used

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        step = state.global_step
        self.setup.log_eval(step, {"loss": metrics["eval_loss"], "perplexity": metrics["eval_perplexity"]})
        # Every process has the same loss (evaluate_lm sums over them); rank 0's decision goes to all.
        if distributed.broadcast_flag(self.tracker.update(step, metrics["eval_loss"])):
            control.should_training_stop = True
        return control


def train(setup: TrainingSetup) -> dict:
    """Train with the Hugging Face Trainer on a prepared setup (`training.setup.prepare_training`);
    returns the contents of train_results.json. The caller closes the setup."""
    optimizer, scheduler = setup.optimizer_and_scheduler()
    marks = setup.word_marks()
    tracker = setup.best_tracker(marks)
    callback = _PipelineCallback(setup, tracker, marks)
    if setup.resume_from is not None:
        _restore_callback(callback, setup.resume_from, setup.tokens_per_step)
    trainer = _SharedEvalTrainer(
        model=setup.model,
        args=_training_arguments(setup),
        data_collator=setup.train_collator,
        train_dataset=setup.train_dataset,
        eval_dataset=setup.eval_dataset,
        optimizers=(optimizer, scheduler),
        callbacks=[callback],
        setup=setup,
    )
    callback.trainer = trainer  # the loss parts it gathers are logged with the loss
    # Validates at its last step too (eval_strategy="steps"); the Trainer's own
    # resume restores model, optimizer, scheduler, RNG states and the data position.
    trainer.train(resume_from_checkpoint=str(setup.resume_from) if setup.resume_from else None)
    return setup.finish(tracker, trainer.state.global_step, loop="huggingface", tokens_seen=callback.tokens_seen,
                        marks=marks)


def _restore_callback(callback: _PipelineCallback, checkpoint: Path, tokens_per_step: int) -> None:
    """The tracker, word count and tokens seen stored in the checkpoint's trainer_state.json (the
    loop that wrote it was checked in prepare_training)."""
    state = RunFolder.checkpoint_state(checkpoint)
    stored = state["stateful_callbacks"][_PipelineCallback.__name__]["attributes"]
    callback.tracker.load_state_dict(stored)
    callback.marks.load_state_dict(stored.get("word_marks"))
    # Older checkpoints hold no count: the estimate they used (full steps).
    callback.tokens_seen = stored.get("tokens_seen", state["global_step"] * tokens_per_step)


def _training_arguments(setup: TrainingSetup) -> TrainingArguments:
    """The Trainer's arguments: the run's batch, steps, precision, validation, logging and
    checkpoint schedule; its checkpoints go to the run folder's checkpoints/."""
    args = setup.args
    return TrainingArguments(
        output_dir=str(setup.folder.checkpoints_dir),
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.eval_batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        max_steps=setup.total_steps,  # the same step count as the custom loop (with --max_minutes a cap)
        disable_tqdm=setup.clock.budget is not None,  # the callback's bar shows the time budget
        max_grad_norm=args.grad_norm_clip,  # 0 turns clipping off, as in the custom loop
        bf16=args.precision == "bf16",
        fp16=args.precision == "fp16",  # the Trainer scales the fp16 loss itself
        torch_compile=args.compile,
        eval_strategy="steps",
        eval_steps=args.eval_steps,
        logging_strategy="steps",
        logging_steps=args.logging_steps,
        # Resumable checkpoints (the best model is saved by the shared tracker).
        save_strategy="steps",
        save_steps=args.save_steps,
        save_total_limit=args.save_total_limit,
        report_to="none",  # TensorBoard goes through the shared logger
        seed=args.seed,
        data_seed=args.seed,
        use_cpu=setup.device.type == "cpu",
        dataloader_num_workers=0,
        remove_unused_columns=False,
        ddp_find_unused_parameters=False,  # every parameter gets a gradient
        logging_nan_inf_filter=False,  # never hide a NaN/inf loss in the logs
    )
