"""Shared plumbing: the run logger (console + log file + TensorBoard), seeding,
device choice, atomic file writes, strict UTF-8 line reading, and the error type
the CLI turns into a one-line message."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import logging.handlers
import os
import random
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open


class UserError(Exception):
    """Bad input from the user: run.py prints the message on one line and exits 1."""


# --------------------------------------------------------------------------- run folder names
# The files and folders the steps write, named once: every module that writes or reads a run
# folder (evaluation/report.py reads what the others write) uses these.
TRAIN_RESULTS = "train_results.json"  # written last by training: its presence marks a finished run
TEST_RESULTS = "test_results.json"
BLIMP_RESULTS, BLIMP_TABLE = "blimp_results.json", "blimp_results.md"
FINETUNE_RESULTS = "finetune_results.json"
CURVE_RESULTS = "learning_curve.json"
BEST_MODEL_DIR = "best_model"
CHECKPOINTS_DIR = "checkpoints"
WORD_CHECKPOINT_PREFIX = "chck_"  # --checkpoint_words folders: chck_1M, chck_500K, ...
RESULTS_DIR = "results"  # a run's evaluation results, in the official layout (evaluation/layout.py)
MAIN = "main"  # the revision a run's final model (best_model/) is filed under there
RUN_ARGS = "run_args.json"  # beside every saved model: the options that trained it
LOG_FILE = "log.txt"
TENSORBOARD_DIR = "tensorboard"


# --------------------------------------------------------------------------- the challenge's rules
# Per track: the most words of training data, and at most MAX_EPOCHS passes over it (--track).
TRACK_WORD_BUDGET = {"strict-small": 10_000_000, "strict": 100_000_000}
TRACKS = (*TRACK_WORD_BUDGET, "none")
MAX_EPOCHS = 10

# --------------------------------------------------------------------------- words-seen marks
# --checkpoint_words babylm: every 1M words up to 10M, then every 10M up to 100M (BabyLM 2024/2025).
BABYLM_WORD_MARKS = tuple(n * 1_000_000 for n in range(1, 10)) + tuple(n * 10_000_000 for n in range(1, 11))
WORD_SUFFIXES = {"": 1, "K": 1_000, "M": 1_000_000, "B": 1_000_000_000}


def word_mark_name(words: int) -> str:
    """A mark's folder label: 1000000 -> '1M', 500000 -> '500K', 1500000 -> '1500K', 999 -> '999',
    1000000000 -> '1000M': never 'B', because the official revision lists (collate_preds.py) go up to
    chck_1000M and a strict-track submission must use their names."""
    for suffix in ("M", "K"):
        if words % WORD_SUFFIXES[suffix] == 0:
            return f"{words // WORD_SUFFIXES[suffix]}{suffix}"
    return str(words)


def parse_word_mark(text: str) -> int | None:
    """The words a mark names: '1M' -> 1000000, '1.5M' -> 1500000, '999' -> 999, and a folder name
    'chck_500K' -> 500000; None unless it is a positive whole number of words."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMB]?)", text.strip().upper().removeprefix("CHCK_"))
    if not match:
        return None
    value = Decimal(match.group(1)) * WORD_SUFFIXES[match.group(2)]
    return int(value) if value == int(value) and value >= 1 else None


def model_name_and_revision(model_dir: str | Path) -> tuple[str, str]:
    """(model name, revision) a saved model's results are filed under (the official layout,
    evaluation/layout.py): a run's best_model/ is (<run>, main) and its chck_<mark>/ is
    (<run>, chck_<mark>); any other folder is (<folder name>, main)."""
    model_dir = Path(model_dir).resolve()
    if model_dir.name == BEST_MODEL_DIR:
        return model_dir.parent.name, MAIN
    if model_dir.name.startswith(WORD_CHECKPOINT_PREFIX):
        return model_dir.parent.name, model_dir.name
    return model_dir.name, MAIN


# --------------------------------------------------------------------------- logging


class RunLogger:
    """One logger for a run: messages go to the console and `<run_dir>/log.txt`,
    metrics to TensorBoard under `<run_dir>/tensorboard` (and as a line to both).

    Both training loops and the test step log through this, so TensorBoard tags
    are the same whichever loop produced a run."""

    def __init__(self, run_dir: str | Path | None, name: str = "babylm", purge_step: int | None = None) -> None:
        self.log = logging.getLogger(f"{name}.{id(self)}")
        self.log.setLevel(logging.INFO)
        self.log.propagate = False
        self.fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(self.fmt)
        self.log.addHandler(console)
        # Messages logged before the run folder exists are kept for its log.txt.
        self.early = logging.handlers.BufferingHandler(capacity=100_000)
        self.log.addHandler(self.early)
        self.writer = None
        self.lock: FolderLock | None = None
        if run_dir is not None:
            self.attach(run_dir, purge_step)

    def attach(self, run_dir: str | Path, purge_step: int | None = None, lock: FolderLock | None = None) -> None:
        """Start writing `<run_dir>/log.txt` (with the messages logged so far) and TensorBoard,
        holding the folder's lock (`lock`, or one taken now) until `close`.

        A step creates its run folder only once its inputs have been checked, so
        bad input leaves nothing behind."""
        run_dir = Path(run_dir)
        self.lock = lock or FolderLock(run_dir)
        file_handler = logging.FileHandler(run_dir / LOG_FILE, encoding="utf-8")
        file_handler.setFormatter(self.fmt)
        for record in self.early.buffer:
            file_handler.handle(record)
        self.log.removeHandler(self.early)
        self.log.addHandler(file_handler)
        # Imported lazily: TensorBoard's import is slow and not needed by
        # the tokenizer or dataset steps run without a run folder.
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: a resumed run hides the events the killed run wrote after its checkpoint.
        self.writer = SummaryWriter(log_dir=str(run_dir / TENSORBOARD_DIR), purge_step=purge_step)

    def silence(self) -> None:
        """Errors only: for the ranks other than 0 of a run in several processes."""
        self.log.setLevel(logging.ERROR)

    def info(self, msg: str) -> None:
        self.log.info(msg)

    def warning(self, msg: str) -> None:
        self.log.warning(msg)

    def metrics(self, step: int, values: dict[str, float], echo: bool = False) -> None:
        """Write scalar metrics (tags like `train/loss`) to TensorBoard at `step`."""
        if self.writer is not None:
            for tag, value in values.items():
                self.writer.add_scalar(tag, float(value), step)
        if echo:
            shown = " ".join(f"{k}={v:.4g}" for k, v in values.items())
            self.info(f"step {step}: {shown}")

    def hparams(self, args: dict[str, Any]) -> None:
        """Record the run's arguments as a TensorBoard text summary."""
        if self.writer is not None:
            # training_options is the parser's list of option names, not a setting.
            table = "\n".join(f"| {k} | {v} |" for k, v in sorted(args.items()) if k != "training_options")
            self.writer.add_text("hparams", "| option | value |\n|---|---|\n" + table, 0)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
        for handler in list(self.log.handlers):
            handler.close()
            self.log.removeHandler(handler)
        if self.lock is not None:
            self.lock.release()
            self.lock = None


class FolderLock:
    """One writer per output folder: an advisory lock (flock) on `<folder>/.lock`, taken
    when a step starts writing there. The OS drops it when the process ends, however it
    ends, so a killed run never leaves it stuck; the file itself stays, unlocked."""

    NAME = ".lock"
    ATTEMPTS, WAIT_SECONDS = 10, 0.05  # half a second in all

    def __init__(self, folder: str | Path) -> None:
        import fcntl  # POSIX: the pipeline runs on Linux and macOS

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.file = open(folder / self.NAME, "a+")  # noqa: SIM115 (held open until release)
        # A reader's probe (`holder`) holds a shared lock for an instant: a writer that starts in that
        # instant retries for a moment rather than refusing a folder nobody is writing.
        for attempt in range(self.ATTEMPTS):
            try:
                fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt + 1 < self.ATTEMPTS:
                    time.sleep(self.WAIT_SECONDS)
        else:
            self.file.seek(0)
            holder = self.file.read().strip() or "?"
            self.file.close()
            raise UserError(f"another process (pid {holder}) is writing to '{folder}': wait for it to end, "
                            "or pick another output folder")
        self.file.truncate(0)
        self.file.write(f"{os.getpid()}\n")
        self.file.flush()

    def release(self) -> None:
        """Unlock (closing the file drops the flock), clearing the pid so no later message names this
        process as a writer."""
        self.file.truncate(0)
        self.file.close()

    @classmethod
    def holder(cls, folder: str | Path) -> str | None:
        """The pid (as the lock file gives it, '?' when it gives none) of the live process holding
        `folder`'s lock, or None when nobody holds it. Probed with a shared, non-blocking flock
        dropped at once, so two probes never block each other."""
        import fcntl

        path = Path(folder) / cls.NAME
        try:
            file = open(path)  # noqa: SIM115 (closed below)
        except OSError:
            return None
        with file:
            try:
                fcntl.flock(file, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return file.read().strip() or "?"
            fcntl.flock(file, fcntl.LOCK_UN)
        return None


# --------------------------------------------------------------------------- seeding / device


def set_seed(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def get_device(name: str = "auto") -> torch.device:
    """`auto` picks cuda, then mps, then cpu; any other value is used as given."""
    if name != "auto":
        if name.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"--device {name} asked for, but CUDA is not available: use --device cpu")
        if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
            raise UserError(f"--device {name}: there are only {torch.cuda.device_count()} CUDA devices")
        if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise UserError("--device mps asked for, but MPS is not available: use --device cpu")
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


# --------------------------------------------------------------------------- files


def sha256_of(path: str | Path) -> str:
    """The sha256 hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------- atomic writes
# Everything a run writes is written beside its final name and renamed into place, after
# fsync of the data and then of the folder, so neither a killed process nor a power cut
# leaves a half-written file under a final name. A write that fails (disk full, read-only
# folder) removes its temporary file or folder and is reported in one line naming the path.

# torch.save reports a failed write as a RuntimeError from its zip writer, not an OSError.
_TORCH_WRITE_ERRORS = ("PytorchStreamWriter failed", "unexpected pos", "file write failed")


def write_failure(path: str | Path, error: BaseException) -> UserError | None:
    """The one-line error for a failed write of `path`, or None when `error` is not a
    file-system failure (a bug, which must keep its traceback)."""
    if isinstance(error, OSError):
        cause = error.strerror or str(error)
        where = f" ({error.filename})" if error.filename and str(error.filename) != str(path) else ""
        return UserError(f"cannot write '{path}': {cause}{where}; check the free space and permissions there")
    if isinstance(error, RuntimeError) and any(m in str(error) for m in _TORCH_WRITE_ERRORS):
        return UserError(f"cannot write '{path}': the write failed (disk full?); check the free space there")
    return None


def fsync_path(path: Path) -> None:
    """Flush a file's data, or a folder's entries (renames and new files), to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_path(path: Path) -> None:
    """Remove a file or a folder tree; nothing when it does not exist."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write text to a temporary file in the same folder, fsync it, then rename it into
    place, so a reader never sees a half-written file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise write_failure(path, e) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_path(path.parent)
    except BaseException as e:
        remove_path(Path(tmp))
        failure = write_failure(path, e)
        if failure is None:
            raise
        raise failure from None


def write_json_atomic(path: str | Path, data: Any) -> None:
    """`write_text_atomic` for JSON (indented, keys sorted)."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def replace_dir(tmp_dir: Path, final_dir: Path) -> None:
    """Move a completely written folder into place, replacing any older one.

    Its files are fsync'ed first. The old folder is renamed aside (`.<name>.old`) and only
    removed once the new one is in place, so at every moment one complete version exists on
    disk; a process killed between the two renames leaves it aside, and `restore_replaced`
    gives it its name back."""
    final_dir = Path(final_dir)
    for file in tmp_dir.rglob("*"):
        if file.is_file():
            fsync_path(file)
    fsync_path(tmp_dir)
    old = final_dir.with_name(f".{final_dir.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if final_dir.exists():
        os.replace(final_dir, old)
    os.replace(tmp_dir, final_dir)
    fsync_path(final_dir.parent)
    if old.exists():
        shutil.rmtree(old)


def restore_replaced(folder: Path) -> None:
    """In `folder`: a `.<name>.old` that `replace_dir` set aside gets its name back when
    `<name>` is missing (else it is dropped), and temporary `.*.tmp` files and folders left
    by killed writes are removed."""
    for old in folder.glob(".*.old"):
        final = folder / old.name[1:-len(".old")]
        if final.exists():
            remove_path(old)
        else:
            os.replace(old, final)
    for tmp in folder.glob(".*.tmp"):
        remove_path(tmp)


def temp_dir_beside(final_dir: str | Path) -> Path:
    """A fresh temporary folder next to `final_dir` (same file system, so rename is atomic)."""
    final_dir = Path(final_dir)
    try:
        final_dir.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=final_dir.parent, prefix=f".{final_dir.name}.", suffix=".tmp"))
    except OSError as e:
        raise write_failure(final_dir, e) from None


@contextlib.contextmanager
def atomic_dir(final_dir: str | Path) -> Iterator[Path]:
    """Write a folder: yields a temporary folder beside `final_dir`, which replaces it
    (`replace_dir`) when the block ends. When the block fails, the temporary folder is
    removed, the old `final_dir` stays, and a file-system failure becomes one UserError."""
    final_dir = Path(final_dir)
    tmp = temp_dir_beside(final_dir)
    try:
        yield tmp
        replace_dir(tmp, final_dir)
    except BaseException as e:
        remove_path(tmp)
        failure = write_failure(final_dir, e)
        if failure is None:
            raise
        raise failure from None


# --------------------------------------------------------------------------- reading text


def numbered_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line) of every line of a UTF-8 text file.

    Bytes that are not UTF-8 are an error naming the file and the line, not
    replaced: a corpus silently turned into U+FFFD characters would train a
    tokenizer and a model on them."""
    try:
        with open(path, encoding="utf-8") as f:
            yield from enumerate(f, 1)
    except UnicodeDecodeError:
        where = _first_non_utf8_line(path)
        raise UserError(f"{path}{where} is not valid UTF-8: fix or re-encode the file "
                        "(e.g. iconv -f latin1 -t utf-8)") from None


def jsonl_objects(path: str | Path) -> Iterator[tuple[str, dict]]:
    """('<path>:<line>', object) for every non-blank line of a JSON-lines file; a line that is
    not a JSON object is a UserError naming the file and line."""
    for n, line in numbered_lines(path):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{where} is not valid JSON ({e.msg}): fix or remove that line") from None
        if not isinstance(row, dict):
            raise UserError(f"{where} is not a JSON object: fix or remove that line")
        yield where, row


def _first_non_utf8_line(path: str | Path) -> str:
    """' line N (byte 0xXX)' for the first line of `path` that does not decode, or ''.

    Lines are split on b'\\n', which is never part of a multi-byte UTF-8 character."""
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                return f" line {n} (byte 0x{raw[e.start]:02x})"
    return ""


def count_parameters(model_dir: Path) -> int | None:
    """Parameters stored in the folder's safetensors (tied weights are stored, and counted, once);
    None without weights or with unreadable ones (the report and the model card show a blank)."""
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    try:
        for path in files:
            with safe_open(str(path), "pt") as f:
                for key in f.keys():  # noqa: SIM118 (safe_open is not a dict)
                    n = 1
                    for dim in f.get_slice(key).get_shape():
                        n *= dim
                    total += n
    except (OSError, SafetensorError):
        return None
    return total
