"""The identity of a saved model's weights, and whether a result still names the model it scored.

A model folder a run writes (best_model/, chck_*, through `RunFolder.save_model`) gets

    weights_identity.json   {"digest": sha256 of its weight files' names and bytes,
                             "files": [their names], "step": the optimizer step, "words_seen": ...}

written into the folder before it is renamed into place. Reading a folder never trusts that
file: the digest is computed again from the weights (`folder_identity`) and compared with it; a
folder without the file (saved before identities, or not by a run) gets its digest computed and
its step and words unknown, and a folder whose file no longer matches its weights says so
(`WeightsIdentity.problem`). The digest of each file is memoised per process by its path, size,
mtime, ctime and inode, so a file changed in any way (its ctime moves even when its mtime is put
back) is hashed again.

Every result a model produces records the identity it scored, {"folder", "digest", "step",
"words_seen"}: under the key "model" in our own summaries, and in a sidecar `model.json` beside
the official files (which stay byte for byte as the official code writes them). `staleness`
compares a recorded identity with the folder as it is now; the report, the model card and the
submission call a result whose digest differs stale.

`refuse_if_training` is the lock rule: a run folder whose training holds its lock (a live
process: the OS drops the lock when it ends) is not evaluated; and `loaded` brackets a model's
loading with two identity reads, so a folder replaced while it was being read is refused rather
than scored half old, half new."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from utils import FolderLock, UserError, sha256_of, write_json_atomic

IDENTITY_FILE = "weights_identity.json"
SIDECAR = "model.json"  # beside the official files of a task: the identity of the model they came from
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")
T = TypeVar("T")

# (resolved path, size, mtime_ns, ctime_ns, inode) -> the file's sha256
_memo: dict[tuple, str] = {}


@dataclass(frozen=True)
class WeightsIdentity:
    """Which weights a model folder holds: their digest, and the step and words seen it was saved at
    (None when unknown). `problem`: why the folder's own record cannot be believed, if it cannot."""

    folder: str
    digest: str
    step: int | None = None
    words_seen: int | None = None
    problem: str | None = None

    def to_json(self) -> dict:
        """What a result records of the model it scored."""
        return {"folder": self.folder, "digest": self.digest, "step": self.step, "words_seen": self.words_seen}

    @property
    def short(self) -> str:
        return self.digest[:8]


def describe(identity: dict | WeightsIdentity) -> str:
    """'step 300, 1,234 words (digest 1a2b3c4d)' ('step ?' when unknown)."""
    data = identity.to_json() if isinstance(identity, WeightsIdentity) else identity
    step, words = data.get("step"), data.get("words_seen")
    text = f"step {step}" if isinstance(step, int) else "step ?"
    text += f", {words:,} words" if isinstance(words, int) else ""
    return f"{text} (digest {str(data.get('digest', ''))[:8]})"


def weight_files(folder: str | Path) -> list[Path]:
    """The weight files of a model folder, by name."""
    folder = Path(folder)
    return sorted({p for pattern in WEIGHT_PATTERNS for p in folder.glob(pattern) if p.is_file()},
                  key=lambda p: p.name)


def _file_digest(path: Path) -> str:
    """sha256 of one file, memoised by its path and everything a change of it moves."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)
    if key not in _memo:
        _memo[key] = sha256_of(path)
    return _memo[key]


def weights_digest(folder: str | Path) -> str | None:
    """sha256 over the weight files' names and contents, in name order; None when there are none."""
    files = weight_files(folder)
    if not files:
        return None
    h = hashlib.sha256()
    for path in files:
        h.update(f"{path.name}\0{_file_digest(path)}\n".encode())
    return h.hexdigest()


def write_identity(folder: str | Path, step: int | None, words_seen: int | None) -> None:
    """weights_identity.json of a model folder being written (before it is renamed into place)."""
    folder = Path(folder)
    digest = weights_digest(folder)
    if digest is None:
        raise UserError(f"'{folder}' holds no weight files (*.safetensors): nothing to identify")
    write_json_atomic(folder / IDENTITY_FILE, {"digest": digest, "files": [p.name for p in weight_files(folder)],
                                               "step": step, "words_seen": words_seen})


def _stored(folder: Path) -> dict | None:
    try:
        data = json.loads((folder / IDENTITY_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def folder_identity(folder: str | Path, name: str | None = None) -> WeightsIdentity | None:
    """The identity of the weights `folder` holds now, checked against its weights_identity.json
    (None when it holds no weights). `name`: what results call the folder (default its name)."""
    folder = Path(folder)
    digest = weights_digest(folder)
    if digest is None:
        return None
    name = name or folder.name
    stored = _stored(folder)
    if stored is None:
        return WeightsIdentity(name, digest)
    if stored.get("digest") != digest:
        return WeightsIdentity(name, digest, problem=f"its weights no longer match {IDENTITY_FILE} (saved at "
                                                     f"{describe(stored)}): they were changed after training "
                                                     "saved them")
    return WeightsIdentity(name, digest, stored.get("step"), stored.get("words_seen"))


def staleness(recorded: dict | None, current: WeightsIdentity | None, folder: str) -> str | None:
    """Why a result that recorded `recorded` does not describe `folder` as it is now (`current`),
    or None when it does: 'stale: scored step 300 (digest 1a2b3c4d), best_model/ is now step 876
    (digest 9f8e7d6c)'; 'unidentified: ...' for a result that recorded no identity; 'untrusted: ...' when
    the folder's weights no longer match what training recorded of them."""
    if not isinstance(recorded, dict) or not recorded.get("digest"):
        return f"unidentified: the result does not record which weights of {folder}/ it scored"
    if current is None:
        return f"stale: scored {describe(recorded)}, {folder}/ now holds no weights"
    if recorded["digest"] != current.digest:
        return f"stale: scored {describe(recorded)}, {folder}/ is now {describe(current)}"
    if current.problem:  # the weights scored are these, but they are not what training saved
        return f"untrusted: {folder}/ {current.problem}"
    return None


def recorded(identity: WeightsIdentity | None) -> dict | None:
    """What a result records of the weights it scored (None when they could not be identified)."""
    return identity.to_json() if identity is not None else None


def write_sidecar(folder: str | Path, identity: WeightsIdentity | dict | None) -> None:
    """model.json beside a task's official files: the identity of the model that wrote them. None
    (files written without one) removes an older model.json, which would vouch for other weights."""
    if identity is None:
        (Path(folder) / SIDECAR).unlink(missing_ok=True)
        return
    data = identity.to_json() if isinstance(identity, WeightsIdentity) else identity
    write_json_atomic(Path(folder) / SIDECAR, data)


def read_sidecar(folder: str | Path) -> dict | None:
    """The model.json of a task folder, or None when there is none (or it is damaged)."""
    try:
        data = json.loads((Path(folder) / SIDECAR).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def run_folder_of(model_dir: str | Path) -> Path:
    """The run folder a model folder belongs to: the nearest folder at or above it that holds a run's
    lock file (best_model/, chck_*/ and checkpoints/checkpoint-N/ all sit inside their run), else
    `model_dir` itself."""
    model_dir = Path(model_dir).resolve()
    for folder in (model_dir, *list(model_dir.parents)[:3]):
        if (folder / FolderLock.NAME).is_file():
            return folder
    return model_dir


def refuse_if_training(model_dir: str | Path, action: str) -> None:
    """UserError naming the pid when the run folder of `model_dir` is locked by its training (a live
    process): its best_model/ and chck_* may be replaced while they are scored."""
    run_dir = run_folder_of(model_dir)
    holder = FolderLock.holder(run_dir)
    if holder is not None:
        raise UserError(f"'{run_dir}' is being trained (pid {holder} holds its lock), so its model folders may be "
                        f"replaced while {action} reads them: wait for the training to end, or {action} a copy "
                        f"(cp -r {model_dir} elsewhere)")


def loaded(folder: str | Path, load: Callable[[], T], name: str | None = None) -> tuple[T, WeightsIdentity | None]:
    """`load()` (which reads `folder`) and the identity of what it read (None for a folder without
    weight files we know, which `load` read some other way): the folder's identity before and after
    must agree, else UserError (it was replaced while being read)."""
    folder = Path(folder)
    before = folder_identity(folder, name)
    result = load()
    after = folder_identity(folder, name)
    if (before is None) != (after is None) or (before is not None and before.digest != after.digest):
        raise UserError(f"'{folder}' was replaced while it was being read (a training run saving into it?): "
                        "run the command again once nothing writes there")
    return result, after


def check_unchanged(folder: str | Path, identity: WeightsIdentity) -> None:
    """UserError when `folder` no longer holds the weights of `identity` (replaced during a long job)."""
    now = folder_identity(folder, identity.folder)
    if now is None or now.digest != identity.digest:
        raise UserError(f"'{folder}' changed while it was being evaluated (was {describe(identity)}): run the "
                        "command again once nothing writes there")

