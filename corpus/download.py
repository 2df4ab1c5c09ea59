"""Download the BabyLM corpus, the BLiMP evaluation sets and the official evaluation data.

    python -m corpus.download corpus [--data_dir data/babylm_data] [--url URL --sha256 HEX --size N]
    python -m corpus.download blimp  [--blimp_dir data/blimp] [--base_url URL] [--paradigms NAME ...]
    python -m corpus.download official_eval [--eval_dir data/official_eval] [--url URL --sha256 HEX --size N]
    python -m corpus.download official_eval [--eval_dir data/official_eval] --from FOLDER

`corpus` fetches the 2023 BabyLM release zip (the one the original experiment
used; `--url/--sha256/--size` select a mirror or another release), checks its
size and sha256, and installs the zip's `babylm_data/` folder as DATA_DIR, so
that DATA_DIR/babylm_10M/*.train, babylm_dev/*.dev, babylm_test/*.test exist.
`blimp` fetches the 67 BLiMP paradigms, one `<paradigm>.jsonl` each, into
BLIMP_DIR (BLiMP publishes no checksums, so each file is only checked to be
non-empty jsonl whose every line has `sentence_good` and `sentence_bad`).
`official_eval` fetches the BabyLM 2025 evaluation data (the `evaluation_data`
folder of evaluation-pipeline-2025's OSF project, as one zip) and installs its
`full_eval/` and `fast_eval/` in EVAL_DIR, once every task file decodes line by
line (evaluation/tasks.py) and the reading CSV has its columns; the release
pins no checksum, so `--sha256/--size` are unchecked unless given. `--from`
installs a copy of that folder downloaded by hand, with the same checks.

What all three guarantee:
- Nothing half-done at the destination: files are downloaded next to it
  (`DATA_DIR.zip.part`, `BLIMP_DIR.part/`, `EVAL_DIR.zip.part`), checked, and
  only then moved into place with one rename. An interrupted or bad download
  leaves the destination absent (or as it was).
- Resume: a broken connection keeps what arrived; the next attempt asks for the
  rest with `Range: bytes=N-` (and starts over if the server ignores that).
  Each run retries a broken transfer itself (`--retries`, default 3, waiting
  2, 4, 6 s), then stops with an error saying to rerun to resume.
- No hang: every connect and read times out (`--timeout`, default 30 s).
- Idempotent: a destination holding our marker file (`.download.json`, with the
  sha256 and URL) or the expected files is left alone ("nothing done"); a
  destination holding anything else is refused, never overwritten.
- No network (DNS failure, refused, timeout at connect): one error naming the
  URL and how to place the files by hand. A failure to connect is not retried,
  because a second try a few seconds later almost never differs.

Networking is the standard library's urllib (it honours https_proxy/no_proxy).
Errors are `utils.UserError`; the CLI prints them as one line and exits 1."""

from __future__ import annotations

import argparse
import csv
import http.client
import json
import os
import re
import shutil
import sys
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

from tqdm import tqdm

from corpus.editions import EDITIONS, load_dataset_dict, write_text_corpus
from evaluation.tasks import READING_FILE, TASKS, find_tasks, read_task
from utils import UserError, sha256_of, temp_dir_beside, write_failure

# --------------------------------------------------------------------------- sources

CORPUS_URL = "https://github.com/babylm/babylm.github.io/raw/main/babylm_data.zip"
CORPUS_SHA256 = "1337771192c61fa38c7eca2ef535f568c19270789b114fe7c60fe23e4314ab57"
CORPUS_SIZE = 253_170_132
# Where each release is published. 2023: the zip above, with its size and sha256. 2024 (used
# again in 2025): the OSF project below publishes text_data/ (train_10M/, train_100M/, dev/,
# test/) with no checksum and no stable direct link, so --url must name the zip (or a copy,
# file:///...) and nothing but the layout is checked.
CORPUS_PAGES = {"2023": CORPUS_URL, "2024": "https://osf.io/5mk3x/"}
# The 2023 zip's folders; any release's folder names (a zip's single top folder that is not one
# of these is its root, e.g. babylm_data/ or text_data/).
CORPUS_FOLDERS = ("babylm_10M", "babylm_100M", "babylm_dev", "babylm_test")
RELEASE_FOLDERS = frozenset(name for e in EDITIONS.values() for name in (*e.train_dirs.values(), e.dev_dir, e.test_dir))

BLIMP_BASE_URL = "https://raw.githubusercontent.com/alexwarstadt/blimp/master/data"
# The 67 paradigm UIDs of BLiMP (Warstadt et al., 2020): the files of the repository's data/ folder.
BLIMP_PARADIGMS = (
    "adjunct_island", "anaphor_gender_agreement", "anaphor_number_agreement", "animate_subject_passive",
    "animate_subject_trans", "causative", "complex_NP_island",
    "coordinate_structure_constraint_complex_left_branch", "coordinate_structure_constraint_object_extraction",
    "determiner_noun_agreement_1", "determiner_noun_agreement_2", "determiner_noun_agreement_irregular_1",
    "determiner_noun_agreement_irregular_2", "determiner_noun_agreement_with_adj_2",
    "determiner_noun_agreement_with_adj_irregular_1", "determiner_noun_agreement_with_adj_irregular_2",
    "determiner_noun_agreement_with_adjective_1", "distractor_agreement_relational_noun",
    "distractor_agreement_relative_clause", "drop_argument", "ellipsis_n_bar_1", "ellipsis_n_bar_2",
    "existential_there_object_raising", "existential_there_quantifiers_1", "existential_there_quantifiers_2",
    "existential_there_subject_raising", "expletive_it_object_raising", "inchoative", "intransitive",
    "irregular_past_participle_adjectives", "irregular_past_participle_verbs",
    "irregular_plural_subject_verb_agreement_1", "irregular_plural_subject_verb_agreement_2",
    "left_branch_island_echo_question", "left_branch_island_simple_question",
    "matrix_question_npi_licensor_present", "npi_present_1", "npi_present_2", "only_npi_licensor_present",
    "only_npi_scope", "passive_1", "passive_2", "principle_A_c_command", "principle_A_case_1",
    "principle_A_case_2", "principle_A_domain_1", "principle_A_domain_2", "principle_A_domain_3",
    "principle_A_reconstruction", "regular_plural_subject_verb_agreement_1",
    "regular_plural_subject_verb_agreement_2", "sentential_negation_npi_licensor_present",
    "sentential_negation_npi_scope", "sentential_subject_island", "superlative_quantifiers_1",
    "superlative_quantifiers_2", "tough_vs_raising_1", "tough_vs_raising_2", "transitive", "wh_island",
    "wh_questions_object_gap", "wh_questions_subject_gap", "wh_questions_subject_gap_long_distance",
    "wh_vs_that_no_gap", "wh_vs_that_no_gap_long_distance", "wh_vs_that_with_gap",
    "wh_vs_that_with_gap_long_distance",
)

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

MARKER = ".download.json"  # hidden, so neither the corpus globs nor evaluation/blimp.py's *.jsonl see it
TIMEOUT = 30.0  # seconds per connect and per read
RETRIES = 3  # automatic resumes of a broken transfer within one run
RETRY_WAIT = 2.0  # seconds; attempt k waits k * RETRY_WAIT
CHUNK = 1 << 16
USER_AGENT = "babylm-pipeline-download/1"  # some hosts refuse urllib's default agent


# --------------------------------------------------------------------------- one file, resumable


class _Broken(Exception):
    """The transfer broke after the server answered: what arrived is kept, a retry resumes."""


def fetch(url: str, part: Path, size: int | None = None, *, hint: str = "", timeout: float = TIMEOUT,
          retries: int = RETRIES, retry_wait: float = RETRY_WAIT, progress: bool = True) -> None:
    """Download `url` into the file `part`, continuing from the bytes `part` already holds.

    On return `part` holds the whole body the server announced (not checked
    further: the caller verifies). `size`, when known, is the expected total:
    a server announcing another total is an error before anything is written.
    A transfer that breaks (cut connection, read timeout, HTTP 5xx) is resumed
    up to `retries` times; after that a UserError says to rerun, and `part`
    keeps what arrived. A failure to connect is a UserError at once, ending
    with `hint` (how to get the file by hand). `part`'s folder is created only
    once the server answers, so a failed connection creates nothing."""
    for attempt in range(1, retries + 2):
        try:
            _fetch_once(url, part, size, hint, timeout, progress)
            return
        except _Broken as e:
            have = part.stat().st_size if part.exists() else 0
            if attempt > retries:
                raise UserError(f"the download of {url} broke off ({e}; {attempt} attempts): {have} bytes are "
                                f"kept in {part}; rerun the same command to resume") from None
            wait = retry_wait * attempt
            print(f"download broke off ({e}); resuming from byte {have} in {wait:g} s", file=sys.stderr)
            time.sleep(wait)


def _fetch_once(url: str, part: Path, size: int | None, hint: str, timeout: float, progress: bool) -> None:
    """One request for the rest of `url` after the bytes in `part`; raises _Broken when it breaks off."""
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset >= size:
        if offset == size:
            return  # complete from an earlier run that stopped before the check
        part.unlink()  # longer than the whole file: not a prefix of it
        offset = 0
    try:
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    except ValueError as e:  # 'unknown url type'
        raise UserError(f"'{url}' is not a URL ({e}): pass an http(s):// or file:// address") from None
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        # build_opener per call: proxies are read from the environment now, not at first import.
        response = urllib.request.build_opener().open(request, timeout=timeout)
    except urllib.error.HTTPError as e:  # before URLError: it is one
        e.close()
        if e.code == 416 and offset:
            part.unlink()  # the server has nothing after `offset`: the partial file is not this file's prefix
            raise _Broken("the server refused to resume; starting over") from None
        if e.code >= 500 or e.code == 429:
            raise _Broken(f"HTTP {e.code} {e.reason}") from None
        raise UserError(f"{url}: the server answered HTTP {e.code} {e.reason}; check the URL{_hint(hint)}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", None) or e
        kept = f" ({offset} bytes kept in {part} for resuming)" if offset else ""
        raise UserError(f"cannot reach {url} ({reason}){kept}: check the network connection "
                        f"(and https_proxy if you need one){_hint(hint)}") from None

    with response:
        start, total = 0, None
        if response.status == 206:
            start, total = _content_range(response.headers.get("Content-Range"))
            if start != offset:  # the partial file cannot be continued: drop it, the retry starts over
                part.unlink(missing_ok=True)
                raise _Broken(f"the server resumed at byte {start}, not {offset}; starting over")
        elif offset:
            print(f"{url}: the server does not resume downloads; starting over from byte 0", file=sys.stderr)
            offset = 0
        length = response.headers.get("Content-Length")
        end = start + int(length) if length and length.isdigit() else None
        total = total if total is not None else end
        if size is not None and total is not None and total != size:
            part.unlink(missing_ok=True)
            raise UserError(f"{url} is {total} bytes, expected {size}: a different file; nothing was installed. "
                            "If the URL is another release or mirror, pass its --size and --sha256 "
                            "(or 'none' to skip a check)")
        part.parent.mkdir(parents=True, exist_ok=True)
        done = offset
        with open(part, "ab" if offset else "wb") as f, tqdm(
                total=total or size, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                desc=part.name.removesuffix(".part"), disable=not progress, leave=False) as bar:
            try:
                while chunk := response.read1(CHUNK):  # read1: what arrived is written before a timeout
                    f.write(chunk)
                    done += len(chunk)
                    bar.update(len(chunk))
                    if size is not None and done > size:
                        break  # more than the whole file: stop, the size check rejects it
            except (OSError, http.client.HTTPException) as e:  # reset, read timeout, IncompleteRead
                raise _Broken(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__) from None
    # http.client returns b'' instead of raising when a connection closes early: compare with the header.
    if end is not None and done < end:
        raise _Broken(f"connection closed after {done} of {end} bytes")


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total or None) from a Content-Range header like 'bytes 100-199/200';
    (None, None) if unreadable, which the caller treats as a resume at the wrong byte."""
    match = re.fullmatch(r"\s*bytes\s+(\d+)-\d+/(\d+|\*)\s*", value or "")
    if not match:
        return None, None
    return int(match[1]), None if match[2] == "*" else int(match[2])


def _hint(hint: str) -> str:
    return f"; {hint}" if hint else ""


def verify_file(path: Path, size: int | None, sha256: str | None, url: str) -> str:
    """Check a downloaded file's size and sha256 (None skips a check); return its sha256.

    A mismatch deletes the file (a rerun then downloads afresh, instead of
    resuming a corrupt prefix) and raises a UserError with expected and got."""
    got_size = path.stat().st_size
    got_sha = sha256_of(path)
    problems = []
    if size is not None and got_size != size:
        problems.append(f"size {got_size} bytes, expected {size}")
    if sha256 is not None and got_sha != sha256:
        problems.append(f"sha256 {got_sha}, expected {sha256}")
    if problems:
        path.unlink()
        raise UserError(f"{url} gave a file with {' and '.join(problems)}: it was deleted and nothing was "
                        "installed. Rerun to download it again; if the URL is another release or mirror, "
                        "pass its --size and --sha256 (or 'none' to skip a check)")
    return got_sha


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def _read_marker(folder: Path) -> dict | None:
    """Our marker's content, or None when the folder has none (or an unreadable one)."""
    try:
        info = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _write_marker(folder: Path, info: dict) -> None:
    """Write the marker into a folder that is not in place yet (so a plain write is atomic enough,
    and the file gets the usual permissions, not a temporary file's private ones)."""
    (folder / MARKER).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _move_into_place(src: Path, dest: Path) -> None:
    """Rename a finished folder to `dest` (absent or empty); a UserError if `dest` filled up meanwhile."""
    try:
        os.replace(src, dest)
    except OSError as e:
        raise UserError(f"cannot move the download into {dest} ({e.strerror}): did something create it "
                        f"meanwhile? Move {dest} away and rerun") from None


# --------------------------------------------------------------------------- the corpus


def download_corpus(data_dir: str | Path = "data/babylm_data", url: str | None = CORPUS_URL,
                    sha256: str | None = CORPUS_SHA256, size: int | None = CORPUS_SIZE, *,
                    timeout: float = TIMEOUT, retries: int = RETRIES, retry_wait: float = RETRY_WAIT,
                    progress: bool = True, edition: str = "2023") -> bool:
    """Download, verify and install the BabyLM corpus zip as `data_dir`; False if it was already there.

    `data_dir` must be absent, empty, or already hold the corpus (our marker
    with the same sha256, or babylm_dev/, babylm_test/ and a training folder);
    anything else is refused. The zip is downloaded to `<data_dir>.zip.part`
    (kept between runs for resuming, deleted once installed), checked against
    `size` and `sha256` (None skips a check) before anything is unpacked,
    unpacked into a temporary folder beside `data_dir`, and renamed into place.
    The zip's single top folder (`babylm_data/`, `text_data/`) becomes `data_dir`; a zip with
    the corpus folders at its top level is installed as it is. `edition` names the release
    whose folders are expected (corpus/editions.py)."""
    data_dir = Path(data_dir)
    if sha256 is not None:
        sha256 = sha256.lower()
    if url is None:
        raise UserError(f"the {edition} corpus has no published direct link: download its zip from "
                        f"{CORPUS_PAGES[edition]} and pass --url file:///ABSOLUTE/PATH/TO/the.zip "
                        "(make data CORPUS_OPTS=...)")
    if _corpus_present(data_dir, sha256, edition):
        return False
    train = EDITIONS[edition].train_dirs["10M"]
    hint = (f"or get {url} another way and either rerun with --url file:///ABSOLUTE/PATH/TO/the.zip "
            f"(checked and installed as usual) or unzip it and move its top folder to {data_dir}, "
            f"so that {data_dir}/{train}/*.train exist")
    part, digest = _fetch_zip(url, data_dir, size, sha256, hint, timeout, retries, retry_wait, progress)
    _install_zip(part, data_dir, {"url": url, "sha256": digest, "size": part.stat().st_size, "edition": edition,
                                  "downloaded": _now(), "by": "corpus/download.py corpus"}, progress, edition)
    part.unlink()
    print(f"installed the {edition} BabyLM corpus in {data_dir} (sha256 {digest})")
    return True


def download_dataset(hub_id: str, data_dir: str | Path, revision: str | None = None) -> bool:
    """A Hugging Face dataset (a hub id, or a local dataset folder) written once as text files in
    `data_dir` (train/, dev/, test/; corpus/editions.py write_text_corpus), so that later runs
    read it offline; False when `data_dir` holds it already."""
    data_dir = Path(data_dir)
    marker = data_dir / "meta.json"
    if marker.is_file() and json.loads(marker.read_text()).get("source") == hub_id:
        print(f"{data_dir} already holds the dataset {hub_id}: nothing done")
        return False
    if data_dir.exists() and not _is_empty_dir(data_dir):
        raise UserError(f"{data_dir} exists and holds something else: refusing to overwrite it; move it away, or "
                        "pass another --data_dir")
    meta = write_text_corpus(load_dataset_dict(hub_id, revision), data_dir, source=hub_id)
    held = f"; {' and '.join(meta['held_out'])} held out from train" if meta["held_out"] else ""
    print(f"wrote the dataset {hub_id} ({', '.join(f'{k}: {v} rows' for k, v in meta['splits'].items())}) "
          f"as text files in {data_dir}{held}")
    return True


def _fetch_zip(url: str, target: Path, size: int | None, sha256: str | None, hint: str, timeout: float,
               retries: int, retry_wait: float, progress: bool) -> tuple[Path, str]:
    """Download `url` into `<target>.zip.part` (resuming what an earlier run left) and check its
    size and sha256; returns the file and its sha256. The one download path of the corpus and
    the official evaluation data."""
    part = target.with_name(target.name + ".zip.part")
    resumed = f" (resuming after {part.stat().st_size} bytes)" if part.exists() else ""
    print(f"downloading {url} -> {part}{resumed}")
    fetch(url, part, size, hint=hint, timeout=timeout, retries=retries, retry_wait=retry_wait, progress=progress)
    return part, verify_file(part, size, sha256, url)


def _corpus_present(data_dir: Path, sha256: str | None, edition: str = "2023") -> bool:
    """True (and says so) if `data_dir` already holds the corpus; False if it is free to install
    into; a UserError if it holds something else, which is never overwritten."""
    if not data_dir.exists():
        return False
    if not data_dir.is_dir():
        raise UserError(f"{data_dir} exists and is not a folder: move it away or pass another --data_dir")
    marker = _read_marker(data_dir)
    if marker is not None and marker.get("edition", "2023") != edition:  # markers before editions were 2023's
        raise UserError(f"{data_dir} holds the {marker.get('edition', '2023')} corpus, not the requested {edition}: "
                        "pass another --data_dir (make DATA_DIR=...), or delete it to replace it")
    if marker is not None:
        if sha256 is None or marker.get("sha256") == sha256:
            print(f"{data_dir} already holds the corpus downloaded from {marker.get('url')} "
                  f"(sha256 {marker.get('sha256')}): nothing done")
            return True
        raise UserError(f"{data_dir} holds another download (sha256 {marker.get('sha256')} from "
                        f"{marker.get('url')}), not the requested {sha256}: pass another --data_dir, "
                        f"or delete {data_dir} to replace it")
    if _is_empty_dir(data_dir):
        return False
    for edition in EDITIONS.values():
        has_train = any(any((data_dir / split).glob("*.train")) for split in edition.train_dirs.values())
        if has_train and (data_dir / edition.dev_dir).is_dir() and (data_dir / edition.test_dir).is_dir():
            print(f"{data_dir} already holds the {edition.name} BabyLM corpus layout (placed there by hand, not "
                  "checked): nothing done")
            return True
    raise UserError(f"{data_dir} exists but holds neither a downloaded corpus ({MARKER}) nor a BabyLM release's "
                    "folders: refusing to overwrite it; move it away, or pass another --data_dir")


def _install_zip(zip_path: Path, data_dir: Path, marker: dict, progress: bool = True, edition: str = "2023") -> None:
    """Unpack into a temporary folder beside `data_dir`, write the marker, rename into place."""
    tmp = temp_dir_beside(data_dir)
    try:
        # A plain subfolder (not mkdtemp's, which is private 0700) becomes data_dir when the zip has no top folder.
        unpacked = tmp / "unpacked"
        unpacked.mkdir()
        _unzip_download(zip_path, unpacked, progress)
        content = _content_root(unpacked, zip_path)
        release = EDITIONS[edition]
        missing = [name for name in (release.dev_dir, release.test_dir) if not (content / name).is_dir()]
        if not any((content / name).is_dir() for name in release.train_dirs.values()):
            missing.insert(0, release.train_dirs["10M"])
        if missing:
            # The checksum matched what was asked for, so install anyway (a slice, or a release that
            # names its folders differently), but say what the pipeline will not find.
            print(f"warning: the zip has no {', '.join(missing)}/ folder of the {edition} release; the pipeline "
                  "holds out dev and test from the training files when those are missing", file=sys.stderr)
        _write_marker(content, marker)
        _move_into_place(content, data_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _extract_all(zip_path: Path, dest: Path, progress: bool, password: bytes | None = None) -> None:
    """Unpack every member of `zip_path` under `dest`, with a progress bar; zipfile's errors pass
    through (BadZipFile also for a member whose CRC does not match). `password` opens members
    encrypted with the classic zip cipher and is ignored for the others."""
    with zipfile.ZipFile(zip_path) as zf:
        members = zf.infolist()
        # extract() drops absolute paths and '..', so no member lands outside `dest`.
        with tqdm(total=sum(m.file_size for m in members), unit="B", unit_scale=True,
                  unit_divisor=1024, desc="unpacking", disable=not progress, leave=False) as bar:
            for member in members:
                zf.extract(member, dest, pwd=password)
                bar.update(member.file_size)


def _unzip_download(zip_path: Path, dest: Path, progress: bool) -> None:
    """_extract_all for a downloaded zip: one that does not unpack is deleted (so a rerun
    downloads it afresh instead of resuming it) and reported as a UserError."""
    try:
        _extract_all(zip_path, dest, progress)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as e:
        zip_path.unlink()
        raise UserError(f"{zip_path} is not a readable zip ({e}): it was deleted and nothing was installed; "
                        "rerun to download it again") from None


def _entries(folder: Path) -> list[Path]:
    """The folder's entries without the `__MACOSX/` resource forks and `.DS_Store` files that
    macOS puts beside the content of the zips it makes."""
    return [p for p in folder.iterdir() if p.name not in ("__MACOSX", ".DS_Store")]


def _content_root(unpacked: Path, zip_path: Path) -> Path:
    """The folder to install: the zip's single top folder, unless that is itself a corpus folder."""
    entries = _entries(unpacked)
    if not entries:
        raise UserError(f"{zip_path} is an empty zip: nothing was installed; check --url")
    if len(entries) == 1 and entries[0].is_dir() and entries[0].name not in RELEASE_FOLDERS:
        return entries[0]
    return unpacked


# --------------------------------------------------------------------------- BLiMP


def download_blimp(blimp_dir: str | Path = "data/blimp", base_url: str = BLIMP_BASE_URL,
                   paradigms: Sequence[str] = BLIMP_PARADIGMS, *, timeout: float = TIMEOUT,
                   retries: int = RETRIES, retry_wait: float = RETRY_WAIT, progress: bool = True) -> bool:
    """Download `<base_url>/<paradigm>.jsonl` for each paradigm into `blimp_dir`; False if already there.

    Files collect in `<blimp_dir>.part/` (a rerun reuses the finished ones and
    resumes a partial one); each is checked to be non-empty jsonl whose every
    line has `sentence_good` and `sentence_bad` strings (BLiMP publishes no
    checksums, so this is the only check). When all are there the folder is
    renamed to `blimp_dir` with a marker listing the paradigms and each file's
    sha256. `blimp_dir` must be absent, empty, or already hold the paradigms."""
    blimp_dir = Path(blimp_dir)
    paradigms = list(paradigms)
    bad = [p for p in paradigms if not re.fullmatch(r"[A-Za-z0-9_]+", p)]
    if not paradigms or bad or len(set(paradigms)) != len(paradigms):
        raise UserError(f"paradigm names must be distinct UIDs like wh_island; got {' '.join(bad or paradigms)}")
    if _blimp_present(blimp_dir, paradigms):
        return False
    base = base_url.rstrip("/")
    part_dir = blimp_dir.with_name(blimp_dir.name + ".part")
    hint = (f"or place the files by hand: download {base}/<paradigm>.jsonl for every paradigm "
            f"(BLIMP_PARADIGMS in corpus/download.py) into {blimp_dir}")
    print(f"downloading {len(paradigms)} BLiMP paradigms from {base}/ -> {part_dir}")
    digests = {}
    for name in tqdm(paradigms, unit="file", desc="BLiMP", disable=not progress, leave=False):
        url, final = f"{base}/{name}.jsonl", part_dir / f"{name}.jsonl"
        if not final.is_file():  # a file an earlier, interrupted run finished is kept
            part = part_dir / f"{name}.jsonl.part"
            fetch(url, part, None, hint=hint, timeout=timeout, retries=retries, retry_wait=retry_wait,
                  progress=False)
            _check_blimp_file(part, url)
            os.replace(part, final)
        digests[name] = sha256_of(final)
    for stale in part_dir.iterdir():  # files of paradigms an earlier run asked for, this one does not
        if stale.name != MARKER and stale.name.removesuffix(".part").removesuffix(".jsonl") not in digests:
            stale.unlink()
    _write_marker(part_dir, {"base_url": base, "paradigms": paradigms, "sha256": digests,
                             "downloaded": _now(), "by": "corpus/download.py blimp"})
    _move_into_place(part_dir, blimp_dir)
    print(f"installed {len(paradigms)} BLiMP paradigms in {blimp_dir}")
    return True


def _blimp_present(blimp_dir: Path, paradigms: list[str]) -> bool:
    """True (and says so) if `blimp_dir` already holds every paradigm; False if it is free;
    a UserError if it holds something else."""
    if not blimp_dir.exists():
        return False
    if not blimp_dir.is_dir():
        raise UserError(f"{blimp_dir} exists and is not a folder: move it away or pass another --blimp_dir")
    if _is_empty_dir(blimp_dir):
        return False
    have = all((blimp_dir / f"{name}.jsonl").is_file() for name in paradigms)
    marker = _read_marker(blimp_dir)
    if have:
        how = f"downloaded from {marker.get('base_url')}" if marker else "placed there by hand, not checked"
        print(f"{blimp_dir} already holds the {len(paradigms)} BLiMP paradigms ({how}): nothing done")
        return True
    if marker is not None:
        raise UserError(f"{blimp_dir} holds a BLiMP download of other paradigms "
                        f"({len(marker.get('paradigms', []))} of them): delete it to download again, "
                        "or pass another --blimp_dir")
    raise UserError(f"{blimp_dir} exists and holds other files (not a BLiMP download): refusing to overwrite "
                    "it; move it away, or pass another --blimp_dir")


def _check_blimp_file(path: Path, url: str) -> None:
    """Every non-empty line must be a JSON object with sentence_good/sentence_bad strings.

    Checking every line (not only the first) also catches a truncated file, whose
    last line is cut. A bad file is deleted, so a rerun downloads it again."""
    def bad(why: str) -> NoReturn:
        path.unlink()
        raise UserError(f"{url} is not a BLiMP jsonl file ({why}): it was deleted and nothing was installed; "
                        "check --base_url and the paradigm names, then rerun")

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        bad("not UTF-8 text")
    rows = 0
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            bad(f"line {n} is not JSON")
        if not (isinstance(row, dict) and all(isinstance(row.get(k), str) for k in ("sentence_good", "sentence_bad"))):
            bad(f"line {n} has no sentence_good/sentence_bad strings")
        rows += 1
    if not rows:
        bad("empty")


# --------------------------------------------------------------------------- the official evaluation data


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
            "`python -m corpus.download official_eval --from FOLDER` (checked as usual), or rerun with "
            "--url file:///ABSOLUTE/PATH/TO/evaluation_data.zip")
    part, digest = _fetch_zip(url, eval_dir, size, sha256, hint, timeout, retries, retry_wait, progress)
    marker = {"url": url, "sha256": digest, "size": part.stat().st_size, "downloaded": _now(),
              "by": "corpus/download.py official_eval"}
    tmp = temp_dir_beside(eval_dir)
    try:
        unpacked = tmp / "unpacked"
        unpacked.mkdir()
        _unzip_download(part, unpacked, progress)
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
    marker = {"from": str(root.resolve()), "installed": _now(), "by": "corpus/download.py official_eval --from"}
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
    marker = _read_marker(eval_dir)
    if marker is not None:
        origin = marker.get("url") or marker.get("from")
        if sha256 is None or marker.get("sha256") == sha256:
            print(f"{eval_dir} already holds the official evaluation data (from {origin}): nothing done")
            return True
        raise UserError(f"{eval_dir} holds another download (sha256 {marker.get('sha256')} from {origin}), not "
                        f"the requested {sha256}: pass another --eval_dir, or delete {eval_dir} to replace it")
    if _is_empty_dir(eval_dir):
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
    children = [p for p in _entries(folder) if p.is_dir()]
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
    _write_marker(staged, {**marker, "items": counts})
    _move_into_place(staged, eval_dir)
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
            _extract_all(archive, scratch, progress=False, password=password)
        except (RuntimeError, NotImplementedError, zipfile.BadZipFile, zipfile.LargeZipFile, EOFError,
                zlib.error) as e:  # RuntimeError: encrypted, bad password; NotImplementedError: AES
            shutil.rmtree(scratch, ignore_errors=True)
            print(f"warning: {set_dir.name}/{archive.name} does not unpack ({e}): it is installed as it is; "
                  f"unpack it by hand into {set_dir.name}/{target.name}/", file=sys.stderr)
            continue
        entries = _entries(scratch)
        os.replace(entries[0] if len(entries) == 1 and entries[0].is_dir() else scratch, target)
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


# --------------------------------------------------------------------------- command line


class _Parser(argparse.ArgumentParser):
    """Usage errors on one line with exit code 2, like run.py's parser."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.splitlines())} (see python {self.prog} --help)\n")


def _sha256_arg(value: str) -> str | None:
    if value.lower() == "none":
        return None
    if not re.fullmatch(r"[0-9a-fA-F]{64}", value):
        raise argparse.ArgumentTypeError(f"'{value}' is not 64 hex digits (or 'none' to skip the check)")
    return value.lower()


def _size_arg(value: str) -> int | None:
    if value.lower() == "none":
        return None
    if not value.isdigit() or int(value) == 0:
        raise argparse.ArgumentTypeError(f"'{value}' is not a positive byte count (or 'none' to skip the check)")
    return int(value)


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if not number > 0:
        raise argparse.ArgumentTypeError(f"'{value}' is not a positive number of seconds")
    return number


def _count_arg(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"'{value}' is not a count >= 0")
    return int(value)


def build_parser() -> argparse.ArgumentParser:
    """The parser of `python -m corpus.download corpus|blimp|official_eval [options]`."""
    parser = _Parser(prog="python -m corpus.download",
                     description="Download the BabyLM corpus, the BLiMP paradigms or the official evaluation data.")
    sub = parser.add_subparsers(dest="what", required=True, parser_class=_Parser)
    corpus = sub.add_parser("corpus", help="a BabyLM corpus zip -> DATA_DIR")
    corpus.add_argument("--data_dir", default="data/babylm_data",
                        help="where to install the corpus (gets babylm_10M/, babylm_dev/, ...; default: %(default)s)")
    corpus.add_argument("--edition", choices=("2023", "2024"), default="2023",
                        help="the release (2024 is also 2025's); 2024 needs --url (default: %(default)s)")
    corpus.add_argument("--url", default=CORPUS_URL,
                        help="the zip; a mirror keeps the default checksum and size (default: the 2023 release, "
                        "%(default)s; 2024 has no published direct link: pass its zip's)")
    corpus.add_argument("--sha256", type=_sha256_arg, default=CORPUS_SHA256,
                        help="expected sha256 of the zip, 'none' to skip the check (default: the 2023 zip's, "
                        "%(default)s; 2024: unchecked, none is published)")
    corpus.add_argument("--size", type=_size_arg, default=CORPUS_SIZE,
                        help="expected size of the zip in bytes, 'none' to skip the check (default: the 2023 zip's, "
                        "%(default)s; 2024: unchecked)")
    hub = sub.add_parser("dataset", help="a Hugging Face dataset (hub id or local folder) -> text files in DATA_DIR")
    hub.add_argument("hub_id", help="the dataset's hub id (org/name) or a local dataset folder")
    hub.add_argument("--data_dir", default="data/babylm_data", help="where to write the text files (default: "
                     "%(default)s)")
    hub.add_argument("--revision", default=None, help="the dataset revision (default: main)")
    hub.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    blimp = sub.add_parser("blimp", help="the BLiMP paradigms -> BLIMP_DIR")
    blimp.add_argument("--blimp_dir", default="data/blimp",
                       help="where to put <paradigm>.jsonl (default: %(default)s)")
    blimp.add_argument("--base_url", default=BLIMP_BASE_URL,
                       help="folder URL holding <paradigm>.jsonl (default: %(default)s)")
    blimp.add_argument("--paradigms", nargs="+", default=BLIMP_PARADIGMS, metavar="UID",
                       help="paradigms to download (default: all 67, BLIMP_PARADIGMS in corpus/download.py)")
    official = sub.add_parser("official_eval", help="the official BabyLM 2025 evaluation data -> EVAL_DIR")
    official.add_argument("--eval_dir", default="data/official_eval",
                          help="where to install full_eval/ and fast_eval/ (default: %(default)s)")
    source = official.add_mutually_exclusive_group()
    source.add_argument("--url", default=OFFICIAL_EVAL_URL,
                        help="zip of the release's evaluation_data folder (default: OSF's, %(default)s)")
    source.add_argument("--from", dest="from_dir", metavar="DIR",
                        help="install a copy of a folder placed by hand (the evaluation_data folder, holding "
                        "full_eval/ and/or fast_eval/) instead of downloading; checked the same way")
    official.add_argument("--sha256", type=_sha256_arg, default=None,
                          help="expected sha256 of the zip (default: unchecked, the release pins none)")
    official.add_argument("--size", type=_size_arg, default=None,
                          help="expected size of the zip in bytes (default: unchecked, the release pins none)")
    official.add_argument("--zip_password", default=EWOK_FAST_PASSWORD,
                          help="password of the zips inside a set (fast_eval/ewok_fast.zip; default: the one "
                          "the pipeline's README gives)")
    for p in (corpus, blimp, official):  # our own downloads (a hub dataset is fetched by `datasets`)
        p.add_argument("--timeout", type=_positive_float, default=TIMEOUT,
                       help="seconds to wait for a connection or for data (default: %(default)s)")
        p.add_argument("--retries", type=_count_arg, default=RETRIES,
                       help="automatic resumes of a broken transfer before giving up (default: %(default)s)")
        p.add_argument("--no_progress", action="store_true", help="no progress bars")
        p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; a UserError is one line `error: ...` on stderr and exit code 1."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.what == "official_eval" and args.from_dir and (args.sha256 or args.size):
        parser.error("--sha256 and --size check a downloaded zip: they do not apply to --from")
    common = ({} if args.what == "dataset" else
              {"timeout": args.timeout, "retries": args.retries, "progress": not args.no_progress})
    try:
        if args.what == "corpus":
            # The defaults are the 2023 zip's; another release keeps only what was given.
            other = args.edition != "2023"
            url = None if other and args.url == CORPUS_URL else args.url
            sha256 = None if other and args.sha256 == CORPUS_SHA256 else args.sha256
            size = None if other and args.size == CORPUS_SIZE else args.size
            download_corpus(args.data_dir, url, sha256, size, edition=args.edition, **common)
        elif args.what == "dataset":
            download_dataset(args.hub_id, args.data_dir, args.revision)
        elif args.what == "blimp":
            download_blimp(args.blimp_dir, args.base_url, args.paradigms, **common)
        elif args.from_dir:
            install_official_eval(args.from_dir, args.eval_dir, zip_password=args.zip_password)
        else:
            download_official_eval(args.eval_dir, args.url, args.sha256, args.size,
                                   zip_password=args.zip_password, **common)
    except UserError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume the download", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
