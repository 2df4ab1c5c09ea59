"""The run folder (--output_dir of `run.py train`): its format, its state and its one reader.

    <run>/checkpoints/checkpoint-<step>/   resumable checkpoints (complete once their marker exists)
    <run>/best_model/                      model + tokenizer + run_args.json of the best validation loss
    <run>/chck_<mark>/                     the same, saved when the words seen crossed each --checkpoint_words mark
    <run>/train_results.json               written last: its presence marks a finished run
    <run>/log.txt, <run>/tensorboard/, <run>/.lock

`RunFolder` is the only code that knows these names: training decides with it whether a folder
may be (re)started or resumed, locks, clears and tidies it, and writes every saved model folder
(best_model/, chck_*, each with the identity of its weights: training/identity.py) and the
results through it; the model card, the learning curve, the report,
the export and the checkpoint evaluation read a finished run back through it (`train_results`,
`best_model`, `word_checkpoints`, `revisions`), so a change of the format has one place to go."""

from __future__ import annotations

import argparse
import enum
import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from transformers.utils import logging as hf_logging

from training.identity import WeightsIdentity, folder_identity, write_identity
from utils import (
    BEST_MODEL_DIR,
    CHECKPOINTS_DIR,
    LOG_FILE,
    MAIN,
    RUN_ARGS,
    TENSORBOARD_DIR,
    TRAIN_RESULTS,
    WORD_CHECKPOINT_PREFIX,
    FolderLock,
    RunLogger,
    UserError,
    atomic_dir,
    parse_word_mark,
    remove_path,
    restore_replaced,
    write_json_atomic,
)

# A checkpoint folder is complete once its last file exists: the custom loop's
# pipeline_state.json (its whole folder is renamed into place) or the HF Trainer's
# trainer_state.json (written after model, optimizer and RNG states).
PIPELINE_STATE = "pipeline_state.json"
TRAINER_STATE = "trainer_state.json"
COMPLETE_MARKERS = (PIPELINE_STATE, TRAINER_STATE)
# What a run writes; --overwrite_output_dir clears exactly these (and the chck_* folders).
RUN_OUTPUTS = (CHECKPOINTS_DIR, BEST_MODEL_DIR, TENSORBOARD_DIR, LOG_FILE, TRAIN_RESULTS)


class RunState(enum.Enum):
    """What a run folder holds: decided from its files alone, in `RunFolder.state`."""

    NEW = "not started"
    FINISHED = "finished"
    RESUMABLE = "interrupted, with a complete checkpoint"
    INCOMPLETE = "interrupted, without a complete checkpoint"


@dataclass(frozen=True)
class RunRequest:
    """What the command asks of the run folder: the options `RunFolder.decide` weighs."""

    resume: str | None  # --resume: None, "yes" or "auto"
    overwrite: bool  # --overwrite_output_dir
    torch_training: bool  # which loop: each resumes only its own checkpoints
    batch_size: int
    accumulation: int  # --gradient_accumulation_steps
    world: int = 1  # processes

    @classmethod
    def from_args(cls, args: argparse.Namespace, world: int = 1) -> RunRequest:
        return cls(resume=args.resume, overwrite=bool(args.overwrite_output_dir),
                   torch_training=bool(args.torch_training), batch_size=args.batch_size,
                   accumulation=args.gradient_accumulation_steps, world=world)

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.accumulation * self.world


@dataclass(frozen=True)
class SavedModel:
    """A model folder of a finished run, with what train_results.json records of it (None
    where it records nothing: a chck_* folder of a run that did not finish, say)."""

    name: str  # best_model or chck_<mark>
    path: Path
    mark: int | None = None  # the --checkpoint_words mark (chck_* only)
    step: int | None = None  # the optimizer step it was saved at
    words_seen: int | None = None  # source-text words trained on up to that step


def save_model_folder(model, tokenizer, run_args: Mapping | argparse.Namespace, folder: str | Path,
                      step: int | None = None, words_seen: int | None = None) -> None:
    """Save model + tokenizer + the run's arguments as a standard transformers folder, with the
    identity of its weights (training/identity.py: their digest, `step`, `words_seen`), written
    beside the target and renamed into place (never half-written)."""
    hf_logging.disable_progress_bar()  # no "Writing model shards" bar at every validation
    with atomic_dir(folder) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json_atomic(tmp / RUN_ARGS, dict(vars(run_args) if isinstance(run_args, argparse.Namespace)
                                               else run_args))
        write_identity(tmp, step, words_seen)


def checkpoint_step(path: Path) -> int:
    """The optimizer step of a checkpoints/checkpoint-<step> folder."""
    return int(path.name.split("-")[-1])


class RunFolder:
    """One run folder: its names, its state, its lock and tidy-up, its checkpoints, the saved
    model folders written into it, and the reader of a finished run."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # ------------------------------------------------------------------ names

    @property
    def best_model(self) -> Path:
        return self.path / BEST_MODEL_DIR

    @property
    def results_file(self) -> Path:
        return self.path / TRAIN_RESULTS

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / CHECKPOINTS_DIR

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / TENSORBOARD_DIR

    def checkpoint_path(self, step: int) -> Path:
        """Where the resumable checkpoint of optimizer `step` goes."""
        return self.checkpoints_dir / f"checkpoint-{step}"

    def word_folders(self) -> list[Path]:
        """Every chck_* path in the folder (complete or not)."""
        return list(self.path.glob(f"{WORD_CHECKPOINT_PREFIX}*"))

    # ------------------------------------------------------------------ state

    def checkpoints(self) -> list[Path]:
        """Complete resumable checkpoints of the run, oldest first."""
        found = [p for p in self.checkpoints_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()
                 and any((p / m).is_file() for m in COMPLETE_MARKERS)]
        return sorted(found, key=checkpoint_step)

    def is_finished(self) -> bool:
        return self.results_file.is_file()

    def state(self) -> RunState:
        """A run is started once it has written a checkpoint folder, a best model or a words-seen
        checkpoint (log.txt and TensorBoard alone do not count: an error before the first step
        leaves them); it is finished once train_results.json exists."""
        if self.is_finished():
            return RunState.FINISHED
        if self.checkpoints():
            return RunState.RESUMABLE
        started = [self.checkpoints_dir, self.best_model, self.path / f".{BEST_MODEL_DIR}.old", *self.word_folders()]
        return RunState.INCOMPLETE if any(p.exists() for p in started) else RunState.NEW

    @staticmethod
    def checkpoint_state(checkpoint: Path) -> dict:
        """The bookkeeping a checkpoint holds: the custom loop's pipeline_state.json, else the
        HF Trainer's trainer_state.json."""
        own = checkpoint / PIPELINE_STATE
        return json.loads((own if own.is_file() else checkpoint / TRAINER_STATE).read_text())

    def decide(self, request: RunRequest) -> tuple[Path | None, bool]:
        """Refuse to clobber or resume a run unless told to, with one message per state of the
        folder that names the command that works. Returns (the checkpoint to resume from or None,
        whether to clear the folder's outputs before training)."""
        if request.resume and request.overwrite:
            raise UserError("--resume and --overwrite_output_dir contradict each other: pass one of them")
        if request.overwrite:
            return None, True
        state, run_dir = self.state(), self.path
        elsewhere = "or pick another --output_dir"
        if state is RunState.FINISHED:
            raise UserError(f"'{run_dir}' already holds a finished run ({TRAIN_RESULTS}), so there is nothing to "
                            f"resume: pass --overwrite_output_dir to train again, {elsewhere}")
        if state is RunState.RESUMABLE:
            checkpoint = self.checkpoints()[-1]
            if not request.resume:
                raise UserError(f"'{run_dir}' holds an interrupted run with a complete checkpoint "
                                f"({checkpoint.name}): pass --resume to continue it, --overwrite_output_dir to start "
                                f"over, {elsewhere}")
            self._check_resumable(checkpoint, request)
            return checkpoint, False
        if state is RunState.INCOMPLETE:
            if request.resume == "auto":
                return None, True
            nothing = ", so there is nothing to resume" if request.resume else ""
            raise UserError(f"'{run_dir}' holds an interrupted run without a complete checkpoint (it stopped before "
                            f"or during its first save){nothing}: pass --overwrite_output_dir or --resume auto to "
                            f"start it over, {elsewhere}")
        if request.resume == "yes":
            raise UserError(f"there is no run to resume in '{run_dir}' (nothing was trained there): start it without "
                            "--resume (or with --resume auto)")
        return None, False

    @staticmethod
    def _check_resumable(checkpoint: Path, request: RunRequest) -> None:
        """The checkpoint was written by this loop (each loop resumes only its own). The custom
        loop resumes with any number of processes whose global batch is the checkpoint's (its
        position is counted in optimizer steps); the HF Trainer's own resume needs the number of
        processes that wrote the checkpoint."""
        marker = PIPELINE_STATE if request.torch_training else TRAINER_STATE
        if not (checkpoint / marker).is_file():
            other = "the HF Trainer loop: resume without" if request.torch_training else "the custom loop: resume with"
            raise UserError(f"'{checkpoint}' was written by {other} --torch_training")
        state = RunFolder.checkpoint_state(checkpoint)
        if request.torch_training:
            saved = state["progress"].get("global_batch")  # absent in checkpoints older than this check: one process
            if saved is not None and saved != request.global_batch:
                raise UserError(f"'{checkpoint}' was written with a global batch of {saved} blocks (--batch_size x "
                                f"--gradient_accumulation_steps x processes), this run's is {request.global_batch} "
                                f"({request.batch_size} x {request.accumulation} x {request.world}): resume with "
                                "the same global batch")
            return
        callback = state.get("stateful_callbacks", {}).get("_PipelineCallback", {})
        saved = callback.get("attributes", {}).get("world_size", 1)
        if saved != request.world:
            raise UserError(f"'{checkpoint}' was written by the HF Trainer in {saved} processes and this run has "
                            f"{request.world}: the Trainer resumes with the same number of processes (torchrun "
                            "--nproc_per_node), or train with --torch_training, which resumes with any number")

    def lock(self, request: RunRequest, decided: tuple[Path | None, bool]) -> FolderLock:
        """Lock the run folder (one training process writes it; rank 0), then decide again: another
        run that wrote there between the first check and the lock must not be clobbered."""
        lock = FolderLock(self.path)
        try:
            if self.decide(request) != decided:
                raise UserError(f"another run wrote to '{self.path}' while this one was starting: run the command "
                                "again to see what the folder holds now")
        except UserError:
            lock.release()
            raise
        return lock

    def open(self, request: RunRequest, decided: tuple[Path | None, bool], logger: RunLogger) -> None:
        """Rank 0, once every input is checked: lock the run folder, clear it when starting over
        (bad input must not cost the old run, so only now), tidy what a killed run left, and
        start the log and TensorBoard there."""
        resume_from, clear_outputs = decided
        lock = self.lock(request, decided)
        if clear_outputs:
            if self.state() is not RunState.NEW:
                logger.info(f"starting over in {self.path}: its earlier outputs are removed")
            for path in [self.path / name for name in RUN_OUTPUTS] + self.word_folders():
                remove_path(path)
        self.tidy()
        # On resume, TensorBoard hides what the killed run logged after the checkpoint.
        logger.attach(self.path, purge_step=checkpoint_step(resume_from) + 1 if resume_from else None, lock=lock)

    def tidy(self) -> None:
        """Finish or drop what a killed process left half-done: folders renamed aside by
        `replace_dir` get their name back (`restore_replaced`), temporary files and folders go,
        and so do checkpoint folders without their completion marker (a Trainer killed mid-save)."""
        for folder in (self.path, self.checkpoints_dir):
            restore_replaced(folder)
        complete = self.checkpoints()
        for path in self.checkpoints_dir.glob("checkpoint-*"):
            if path.is_dir() and path not in complete:
                shutil.rmtree(path)

    def drop_old_checkpoints(self, keep: int) -> None:
        """Remove the oldest complete checkpoints beyond the newest `keep` (--save_total_limit)."""
        for old in self.checkpoints()[:-keep]:
            shutil.rmtree(old)

    # ------------------------------------------------------------------ writing

    def save_model(self, name: str, model, tokenizer, run_args: Mapping, step: int | None = None,
                   words_seen: int | None = None) -> Path:
        """Write the model folder `name` (best_model or chck_<mark>) into the run, saved at optimizer
        `step` after `words_seen` words (its weights_identity.json): the one place a saved model
        folder enters a run folder."""
        folder = self.path / name
        save_model_folder(model, tokenizer, run_args, folder, step, words_seen)
        return folder

    def write_results(self, results: dict) -> None:
        """train_results.json, atomically: written last, it marks the run finished."""
        write_json_atomic(self.results_file, results)

    # ------------------------------------------------------------------ reading a finished run

    @classmethod
    def finished_in(cls, save_dir: str | Path) -> list[RunFolder]:
        """The finished runs among the folders of `save_dir` (those with train_results.json), by name."""
        return [cls(p.parent) for p in sorted(Path(save_dir).glob(f"*/{TRAIN_RESULTS}"))]

    def read_results(self) -> dict | None:
        """train_results.json, or None when the run did not finish (ValueError when it is damaged)."""
        return json.loads(self.results_file.read_text()) if self.is_finished() else None

    def train_results(self) -> dict:
        """A finished run's train_results.json; UserError when the folder holds none."""
        results = self.read_results()
        if results is None:
            raise UserError(f"'{self.path}' holds no finished training run (no train_results.json): pass a "
                            "training step's folder as --model_dir, e.g. save_dir/step2_1")
        return results

    def run_args(self, name: str = BEST_MODEL_DIR) -> dict | None:
        """The run_args.json of the saved model folder `name`, or None when there is none."""
        path = self.path / name / RUN_ARGS
        return json.loads(path.read_text()) if path.is_file() else None

    def word_checkpoints(self, results: dict | None = None, recorded_only: bool = True) -> list[SavedModel]:
        """The chck_* folders of the run by words seen (their marks' order), with the mark, step
        and words seen train_results.json records for each (`results`: the file's contents when
        already read; else it is read, and UserError when the run did not finish). `recorded_only`:
        only those the file records (a finished run's checkpoints), else every chck_* folder
        present, recorded or not (the model card lists them all)."""
        saved = (results if results is not None else self.train_results()).get("checkpoint_words") or {}
        found = []
        for path in self.word_folders():
            entry = saved.get(path.name)
            if not path.is_dir() or (entry is None and recorded_only):
                continue
            entry = entry or {}
            found.append(SavedModel(path.name, path, entry.get("words"), entry.get("step"), entry.get("words_seen")))
        # The marks' order is that of the words seen (a mark is reached after the smaller ones).
        return sorted(found, key=lambda m: (parse_word_mark(m.name) or 0, m.name))

    def best_point(self, results: dict | None = None) -> SavedModel | None:
        """best_model/ with the step and words seen of its best step; None when the run recorded no
        word count there (trained without --checkpoint_words counting)."""
        results = results if results is not None else self.train_results()
        if results.get("best_words_seen") is None:
            return None
        return SavedModel(BEST_MODEL_DIR, self.best_model, None, results["best_step"], results["best_words_seen"])

    def identity(self, name: str = BEST_MODEL_DIR) -> WeightsIdentity | None:
        """The identity of the weights the model folder `name` holds now (best_model, chck_<mark>),
        checked against the one stored when it was saved; None when it holds no weights."""
        return folder_identity(self.path / name)

    def model_folder(self, revision: str) -> Path:
        """The model folder a results revision was scored from: best_model/ for main, else chck_<mark>/."""
        return self.best_model if revision == MAIN else self.path / revision

    def revisions(self) -> list[tuple[str, Path]]:
        """(revision, model folder) of a finished run as the official evaluation reads a model
        repository: main (best_model/) first, then every chck_* by words seen."""
        self.train_results()  # a UserError naming the folder when no run finished there
        if not (self.best_model / "config.json").is_file():
            raise UserError(f"'{self.best_model}' holds no saved model: export a finished run whose "
                            "validation loss was finite")
        return [(MAIN, self.best_model)] + [(m.name, m.path) for m in self.word_checkpoints()]


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete resumable checkpoints of the run folder `run_dir`, oldest first."""
    return RunFolder(run_dir).checkpoints()
