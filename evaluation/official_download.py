"""The official BabyLM 2025 evaluation data: evaluation-pipeline-2025's `evaluation_data`
folder (its OSF project, as one zip), installed as EVAL_DIR/full_eval/ and fast_eval/.

    python -m tools.download official_eval [--eval_dir data/official_eval] [--url URL --sha256 HEX --size N]
    python -m tools.download official_eval [--eval_dir data/official_eval] --from FOLDER

The data is installed only once every task file decodes line by line (evaluation/tasks.py)
and the reading CSV has its columns; the release pins no checksum, so `sha256/size` are
unchecked unless given. `--from` installs a copy of that folder downloaded by hand, with the
same checks. Download, resume and atomic install: corpus/fetch.py."""

from __future__ import annotations

import csv
import os
import shutil
import sys
import zipfile
import zlib
from pathlib import Path

from corpus.fetch import (
    MARKER,
    RETRIES,
    RETRY_WAIT,
    TIMEOUT,
    entries,
    extract_all,
    fetch_zip,
    is_empty_dir,
    move_into_place,
    now,
    read_marker,
    unzip_download,
    write_marker,
)
from evaluation.tasks import READING_FILE, TASKS, find_tasks, read_task
from utils import UserError, temp_dir_beside, write_failure

# The official BabyLM 2025 evaluation data: evaluation-pipeline-2025's README says to "download the
# evaluation_data folder" of the OSF project below (full_eval/ and fast_eval/, one folder per task).
# OSF serves a folder as a zip built on request (its `?zip=` link) and the README pins no checksum,
# size or version, so by default neither the size nor the sha256 is checked: every line of every task
# file is (--sha256/--size pin a copy). The folder id in the URL is the one public download scripts
# use for evaluation_data (not checked from here); if OSF moves it, pass --url (or download by hand, --from).
OFFICIAL_EVAL_PAGE = "https://osf.io/ryjfm/"
OFFICIAL_EVAL_URL = "https://files.osf.io/v1/resources/ryjfm/providers/osfstorage/6819f54f5dc6fc2bff0a7bba/?zip="
EVAL_SETS = ("full_eval", "fast_eval")
# The release ships EWoK's fast set as an encrypted ewok_fast.zip (unpacked here when it sits in a set,
# fast_eval/ by its name); the pipeline's README gives this password for it.
EWOK_FAST_PASSWORD = "BabyLM2025"
# The columns evaluation-pipeline-2025's reading evaluation reads from reading/reading_data.csv.
READING_COLUMNS = ("item", "word", "prev_item", "prev_word", "Subtlex_log10", "length", "context_length",
                   "prev_length", "RTfirstfix", "RTfirstpass", "RTgopast", "RTrightbound", "self_paced_reading_time")


class _InvalidData(UserError):
    """A task file of the official evaluation data that does not decode (named by file and line)."""


def download_official_eval(eval_dir: str | Path = "data/official_eval", url: str = OFFICIAL_EVAL_URL,
                           sha256: str | None = None, size: int | None = None, *,
                           zip_password: str | None = EWOK_FAST_PASSWORD, timeout: float = TIMEOUT,
                           retries: int = RETRIES, retry_wait: float = RETRY_WAIT, progress: bool = True) -> bool:
    """Download the official evaluation data zip, check it and install its full_eval/ and fast_eval/
    folders in `eval_dir`; False if `eval_dir` already holds them.

    As the corpus: `eval_dir` must be absent, empty or already hold the data;
    the zip collects in `<eval_dir>.zip.part` (resumed when the server allows
    it), is checked against `size` and `sha256` when given (the release pins
    neither, so both default to None), unpacked beside `eval_dir`, and installed
    with one rename only once every task file has been decoded line by line
    (evaluation/tasks.py) and the reading CSV has its columns. A zip that does
    not unpack, or whose data does not decode, is deleted (a rerun downloads it
    afresh) and nothing is installed."""
    eval_dir = Path(eval_dir)
    if sha256 is not None:
        sha256 = sha256.lower()
    if _official_eval_present(eval_dir, sha256):
        return False
    hint = (f"or download the evaluation_data folder from {OFFICIAL_EVAL_PAGE} another way and install it with "
            "`python -m tools.download official_eval --from FOLDER` (checked as usual), or rerun with "
            "--url file:///ABSOLUTE/PATH/TO/evaluation_data.zip")
    part, digest = fetch_zip(url, eval_dir, size, sha256, hint, timeout, retries, retry_wait, progress)
    marker = {"url": url, "sha256": digest, "size": part.stat().st_size, "downloaded": now(),
              "by": "tools/download.py official_eval"}
    tmp = temp_dir_beside(eval_dir)
    try:
        unpacked = tmp / "unpacked"
        unpacked.mkdir()
        unzip_download(part, unpacked, progress)
        root = _eval_sets_root(unpacked)
        if root is None:
            part.unlink()
            raise UserError(f"{url} gave a zip with no full_eval/ or fast_eval/ folder: it was deleted and nothing "
                            f"was installed; check --url (the evaluation_data folder of {OFFICIAL_EVAL_PAGE})")
        try:
            _install_sets(root, eval_dir, tmp, marker, copy=False, zip_password=zip_password)
        except _InvalidData as e:
            part.unlink()
            raise UserError(f"{url} gave invalid evaluation data: {e}; the download was deleted and nothing "
                            "was installed") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    part.unlink()
    return True


def install_official_eval(source: str | Path, eval_dir: str | Path = "data/official_eval", *,
                          zip_password: str | None = EWOK_FAST_PASSWORD) -> bool:
    """Install a copy of the official evaluation data placed by hand (`source`: the release's
    evaluation_data folder, holding full_eval/ and/or fast_eval/) in `eval_dir`, with the download's
    checks and atomic install; `source` is left as it is. False if `eval_dir` already holds the data."""
    source, eval_dir = Path(source), Path(eval_dir)
    if not source.is_dir():
        raise UserError(f"--from '{source}' is not a folder: pass the release's evaluation_data folder "
                        "(holding full_eval/ and/or fast_eval/)")
    root = _eval_sets_root(source)
    if root is None:
        raise UserError(f"'{source}' holds no full_eval/ or fast_eval/ folder (nor an evaluation_data/ folder "
                        f"holding them): pass the evaluation_data folder of {OFFICIAL_EVAL_PAGE}")
    if _official_eval_present(eval_dir, None):
        return False
    marker = {"from": str(root.resolve()), "installed": now(), "by": "tools/download.py official_eval --from"}
    tmp = temp_dir_beside(eval_dir)
    try:
        try:
            _install_sets(root, eval_dir, tmp, marker, copy=True, zip_password=zip_password)
        except _InvalidData as e:
            raise UserError(f"'{root}' holds invalid evaluation data: {e}; nothing was installed") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return True


def _official_eval_present(eval_dir: Path, sha256: str | None) -> bool:
    """True (and says so) if `eval_dir` already holds the official evaluation data; False if it
    is free to install into; a UserError if it holds something else, which is never overwritten."""
    if not eval_dir.exists():
        return False
    if not eval_dir.is_dir():
        raise UserError(f"{eval_dir} exists and is not a folder: move it away or pass another --eval_dir")
    marker = read_marker(eval_dir)
    if marker is not None:
        origin = marker.get("url") or marker.get("from")
        if sha256 is None or marker.get("sha256") == sha256:
            print(f"{eval_dir} already holds the official evaluation data (from {origin}): nothing done")
            return True
        raise UserError(f"{eval_dir} holds another download (sha256 {marker.get('sha256')} from {origin}), not "
                        f"the requested {sha256}: pass another --eval_dir, or delete {eval_dir} to replace it")
    if is_empty_dir(eval_dir):
        return False
    if any((eval_dir / name).is_dir() for name in EVAL_SETS):
        print(f"{eval_dir} already holds {' and '.join(n + '/' for n in EVAL_SETS if (eval_dir / n).is_dir())} "
              "(placed there by hand, not checked): nothing done. To check it, move it away and install it "
              "with --from")
        return True
    raise UserError(f"{eval_dir} exists but holds neither an installed copy ({MARKER}) nor full_eval/ or "
                    "fast_eval/: refusing to overwrite it; move it away, or pass another --eval_dir")


def _eval_sets_root(folder: Path) -> Path | None:
    """The folder holding full_eval/ and/or fast_eval/: `folder` itself, or its evaluation_data/ or
    only subfolder (a zip of the release's evaluation_data folder may or may not keep that name)."""
    children = [p for p in entries(folder) if p.is_dir()]
    candidates = [folder, *(p for p in children if p.name == "evaluation_data" or len(children) == 1)]
    return next((c for c in candidates if any((c / name).is_dir() for name in EVAL_SETS)), None)


def _install_sets(root: Path, eval_dir: Path, tmp: Path, marker: dict, *, copy: bool,
                  zip_password: str | None) -> None:
    """Stage root's sets in `tmp` (copied, or moved when `root` is already an unpacked download),
    unpack the zips they hold, decode every task file, then write the marker (with the items per
    task folder) and rename the staged folder to `eval_dir`. _InvalidData for a bad line."""
    staged = tmp / "eval"
    staged.mkdir()
    names = [name for name in EVAL_SETS if (root / name).is_dir()]
    password = zip_password.encode("utf-8") if zip_password else None
    for name in names:
        try:
            if copy:
                shutil.copytree(root / name, staged / name)
            else:
                os.replace(root / name, staged / name)
            _unpack_nested_zips(staged / name, password)
        except OSError as e:  # a full disk, a folder we may not write
            raise write_failure(eval_dir, e) from None
    counts = _check_sets(staged, names)
    write_marker(staged, {**marker, "items": counts})
    move_into_place(staged, eval_dir)
    for name in names:
        print(f"{eval_dir}/{name}: " + ", ".join(f"{folder} {n}" for folder, n in counts[name].items()))
    missing = [name for name in EVAL_SETS if name not in names]
    print(f"installed the official evaluation data in {eval_dir}"
          + (f" (the source has no {' or '.join(m + '/' for m in missing)})" if missing else ""))


def _unpack_nested_zips(set_dir: Path, password: bytes | None) -> None:
    """Unpack each zip a set holds in place of a task folder (the release ships EWoK's fast set as an
    encrypted ewok_fast.zip) into a folder named after it, then delete the zip. A zip that does not open here
    (another cipher or password, a damaged file) is installed as it is, with a warning, since the
    rest of the data is usable without it; a folder of the zip's name already there is kept."""
    for archive in sorted(set_dir.glob("*.zip")):
        target = set_dir / archive.stem
        if target.exists():
            continue
        scratch = set_dir / f".{archive.stem}.unpacking"
        try:
            extract_all(archive, scratch, progress=False, password=password)
        except (RuntimeError, NotImplementedError, zipfile.BadZipFile, zipfile.LargeZipFile, EOFError,
                zlib.error) as e:  # RuntimeError: encrypted, bad password; NotImplementedError: AES
            shutil.rmtree(scratch, ignore_errors=True)
            print(f"warning: {set_dir.name}/{archive.name} does not unpack ({e}): it is installed as it is; "
                  f"unpack it by hand into {set_dir.name}/{target.name}/", file=sys.stderr)
            continue
        found = entries(scratch)
        os.replace(found[0] if len(found) == 1 and found[0].is_dir() else scratch, target)
        shutil.rmtree(scratch, ignore_errors=True)
        archive.unlink()


def _check_sets(staged: Path, names: list[str]) -> dict[str, dict[str, int]]:
    """Items per task folder (rows for reading/) of each set, after decoding every line of every
    task file; _InvalidData naming the first bad file and line relative to `staged` (the same
    path as in the source), or a set holding no task folder at all. Other folders (glue_filtered,
    ...) are not checked."""
    known = sorted({folder for folders, _ in TASKS.values() for folder in folders} | {READING_FILE.parent.name})
    counts = {}
    try:
        for name in names:
            set_dir = staged / name
            found = {}
            for task, folder in find_tasks(set_dir):
                # A task folder without *.jsonl (a format nothing here reads) must not block the others.
                if not any(folder.glob("*.jsonl")):
                    print(f"warning: {name}/{folder.name} holds no *.jsonl file: installed as it is, not checked",
                          file=sys.stderr)
                    continue
                found[folder.name] = len(read_task(task, folder).items)
            if (set_dir / READING_FILE).is_file():
                found[READING_FILE.parent.name] = _check_reading_csv(set_dir / READING_FILE)
            if not found:
                raise UserError(f"{set_dir} holds none of the task folders {', '.join(known)}")
            counts[name] = found
    except UserError as e:
        raise _InvalidData(str(e).replace(f"{staged}{os.sep}", "")) from None
    return counts


def _check_reading_csv(path: Path) -> int:
    """The rows of the reading-times CSV, after checking that its header names every column the
    reading evaluation reads (READING_COLUMNS) and that every row has the header's number of fields."""
    rows = 0
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:  # -sig: a spreadsheet's BOM is not a column
            reader = csv.reader(f)
            header = next(reader, None)
            if not header:
                raise UserError(f"{path} is empty: restore the file")
            missing = [c for c in READING_COLUMNS if c not in header]
            if missing:
                raise UserError(f"{path} has no column {', '.join(missing)}: not the release's reading data")
            for row in reader:
                if not row:
                    continue
                if len(row) != len(header):
                    raise UserError(f"{path}:{reader.line_num} has {len(row)} fields, the header {len(header)}: "
                                    "fix that line")
                rows += 1
    except UnicodeDecodeError:
        raise UserError(f"{path} is not valid UTF-8: restore the file") from None
    except csv.Error as e:
        raise UserError(f"{path}:{reader.line_num} is not valid CSV ({e}): fix that line") from None
    if not rows:
        raise UserError(f"{path} has a header but no rows: restore the file")
    return rows
