"""The bookkeeping of a run while it trains, the same in both loops: the clock of the time
budget, the progress bar, the best validation loss with early stopping, the words seen with
their --checkpoint_words folders, the logging window's loss parts, and the error a
non-finite loss ends the run with. Each keeps what a checkpoint must restore in its
`state_dict`. Model folders are saved through a `save(name)` callable (the run folder's
`RunFolder.save_model` on rank 0), so nothing here knows the run folder's layout."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from tqdm import tqdm

import training.distributed as distributed
from training.run_folder import RunFolder
from utils import BEST_MODEL_DIR, WORD_CHECKPOINT_PREFIX, RunLogger, UserError, word_mark_name

SaveModel = Callable[[str, int, int | None], None]  # save the run's model as its folder `name`, at (step, words seen)


class NonFiniteLoss(UserError):
    """The loss became NaN/inf: the run stops before the optimizer step, so the
    last checkpoint and the best model stay good."""

    @classmethod
    def at(cls, folder: RunFolder, value: float, step: int, skippable: bool) -> NonFiniteLoss:
        skip = ", or pass --skip_nonfinite to skip such batches" if skippable else ""
        kept = (f"the best model so far is in {folder.best_model}" if folder.best_model.is_dir()
                else "no model was saved yet (no validation had run)")
        resume = ", and --resume restarts from the last checkpoint" if folder.checkpoints() else ""
        return cls(f"the loss became {value} at optimizer step {step}: lower --learning_rate or --grad_norm_clip"
                   f"{skip}; {kept}{resume}")


class TrainingClock:
    """Wall-clock seconds spent inside optimizer steps (compiling included; validation,
    checkpoint writing and logging not, so how often a run validates does not change
    what it trains), across resumes. With --max_minutes its share of the budget drives
    the learning-rate schedule and ends the run. Both loops' logged tokens/s is a window's
    tokens over this clock's seconds in that window, as train_results' tokens_seen / step_seconds.

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
        """Whether the budget is used up (never without one)."""
        return self.budget is not None and self.used >= self.budget


class TrainingBar:
    """The training progress bar (rank 0 only): optimizer steps, or with --max_minutes the
    budget's seconds. Both show the step, and the loss and tokens/s of the last log."""

    def __init__(self, clock: TrainingClock, total_steps: int, done_steps: int = 0) -> None:
        self.clock = clock
        hidden = not distributed.is_main()
        if clock.budget is not None:
            self.bar = tqdm(total=round(clock.budget), initial=round(clock.used),
                            desc="training (time budget)", unit="s", dynamic_ncols=True, disable=hidden)
        else:
            self.bar = tqdm(total=total_steps, initial=done_steps, desc="training", unit="step",
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
        """The metrics of a training log (the tags of `RunLogger.metrics`)."""
        self.values.update(loss=f"{metrics['train/loss']:.3f}", tok_s=f"{metrics['train/tokens_per_second']:.0f}")
        self.bar.set_postfix(self.values)

    def close(self) -> None:
        self.bar.close()


class WordMarks:
    """--checkpoint_words: counts the words of the source text the run has trained on
    (of every block of every optimizer step, over all processes; a block's words are
    those of the lines ending in it, see pretraining_dataset.build_blocks) and saves a
    model folder `chck_<mark>` (model + tokenizer + run_args, like best_model) at the
    optimizer step where the count reaches each mark. Stored in every checkpoint."""

    def __init__(self, marks: list[int] | None, save: SaveModel, logger: RunLogger) -> None:
        self.marks = marks or []
        self.save = save
        self.logger = logger
        self.words = 0  # words seen so far, across resumes
        self.saved: dict[str, dict] = {}  # folder name -> {"words": mark, "step": step, "words_seen": count}

    def add(self, words: int, step: int) -> None:
        """Count the words optimizer `step` (1-based, done) trained on; save the folders of the marks it reached."""
        before, self.words = self.words, self.words + int(words)
        for mark in self.marks:
            if before < mark <= self.words:
                name = WORD_CHECKPOINT_PREFIX + word_mark_name(mark)
                self.saved[name] = {"words": mark, "step": step, "words_seen": self.words}
                self.save(name, step, self.words)
                self.logger.info(f"step {step}: {self.words} words seen, saved {name}/")

    def state_dict(self) -> dict:
        return {"words": self.words, "saved": self.saved}

    def load_state_dict(self, state: dict | None) -> None:
        if state is None:  # a checkpoint older than the words count
            if self.marks:
                self.logger.warning("the checkpoint holds no word count: --checkpoint_words counts from 0")
            return
        self.words, self.saved = state["words"], state["saved"]


class BestTracker:
    """Keeps the best validation loss, saves the best model, counts patience, and
    the training time so far: the bookkeeping both loops store in each checkpoint."""

    def __init__(self, save: SaveModel, logger: RunLogger, clock: TrainingClock, patience: int | None,
                 marks: WordMarks | None = None) -> None:
        self.save = save
        self.logger = logger
        self.clock = clock  # stored with the tracker: a resumed run continues its time budget
        self.patience = patience
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
                "last_eval_step": self.last_eval_step, "seconds": self.seconds(), "step_seconds": self.clock.used,
                "best_words": self.best_words}

    def load_state_dict(self, state: dict) -> None:
        self.seconds_before, self.started = state["seconds"], time.time()
        self.best_loss, self.best_step = state["best_loss"], state["best_step"]
        self.bad_evals, self.last_eval_step = state["bad_evals"], state["last_eval_step"]
        self.clock.used = state.get("step_seconds", 0.0)  # absent in checkpoints older than the clock
        self.best_words = state.get("best_words")

    def update(self, step: int, eval_loss: float) -> bool:
        """Record a validation result; save the model if it is the best so far.
        Returns True when early stopping says to stop."""
        self.last_eval_step = step
        if eval_loss < self.best_loss:
            self.best_loss, self.best_step, self.bad_evals = eval_loss, step, 0
            self.best_words = self.marks.words if self.marks is not None else None
            self.save(BEST_MODEL_DIR, step, self.best_words)
            self.logger.info(f"step {step}: new best validation loss {eval_loss:.4f}, saved {BEST_MODEL_DIR}/")
            return False
        self.bad_evals += 1
        if self.patience and self.bad_evals >= self.patience:
            self.logger.info(f"step {step}: no better validation loss in {self.patience} evaluations; stopping early")
            return True
        return False


def add_loss_parts(window: dict[str, list[float]], parts: dict) -> None:
    """Add one micro-batch's loss parts (distillation, hybrid: tag -> scalar tensor) to a
    logging window {tag: [sum, micro-batches]}: both loops keep their window this way."""
    for tag, value in parts.items():
        total = window.setdefault(tag, [0.0, 0])
        total[0], total[1] = total[0] + float(value), total[1] + 1
