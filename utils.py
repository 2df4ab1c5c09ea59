"""Shared plumbing: the run logger (console + log file + TensorBoard), seeding,
device choice, atomic file writes, strict UTF-8 line reading, and the error type
the CLI turns into a one-line message."""

from __future__ import annotations

import hashlib
import json
import logging
import logging.handlers
import os
import random
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch


class UserError(Exception):
    """Bad input from the user: run.py prints the message on one line and exits 1."""


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
        if run_dir is not None:
            self.attach(run_dir, purge_step)

    def attach(self, run_dir: str | Path, purge_step: int | None = None) -> None:
        """Start writing `<run_dir>/log.txt` (with the messages logged so far) and TensorBoard.

        A step creates its run folder only once its inputs have been checked, so
        bad input leaves nothing behind."""
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(run_dir / "log.txt", encoding="utf-8")
        file_handler.setFormatter(self.fmt)
        for record in self.early.buffer:
            file_handler.handle(record)
        self.log.removeHandler(self.early)
        self.log.addHandler(file_handler)
        # Imported lazily: TensorBoard's import is slow and not needed by
        # the tokenizer or dataset steps run without a run folder.
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: a resumed run hides the events the killed run wrote after its checkpoint.
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=purge_step)

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
            table = "\n".join(f"| {k} | {v} |" for k, v in sorted(args.items()))
            self.writer.add_text("hparams", "| option | value |\n|---|---|\n" + table, 0)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
        for handler in list(self.log.handlers):
            handler.close()
            self.log.removeHandler(handler)


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


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write text to a temporary file in the same folder, then rename it into place,
    so a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def write_json_atomic(path: str | Path, data: Any) -> None:
    """`write_text_atomic` for JSON (indented, keys sorted)."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def replace_dir(tmp_dir: Path, final_dir: Path) -> None:
    """Move a completely written folder into place, replacing any older one.

    The old folder is first renamed aside and only removed once the new one is
    in place, so at every moment one complete version exists on disk."""
    final_dir = Path(final_dir)
    old = final_dir.with_name(f".{final_dir.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if final_dir.exists():
        os.replace(final_dir, old)
    os.replace(tmp_dir, final_dir)
    if old.exists():
        shutil.rmtree(old)


def temp_dir_beside(final_dir: str | Path) -> Path:
    """A fresh temporary folder next to `final_dir` (same file system, so rename is atomic)."""
    final_dir = Path(final_dir)
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=final_dir.parent, prefix=f".{final_dir.name}.", suffix=".tmp"))


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
