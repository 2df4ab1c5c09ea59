"""The BabyLM corpus: a release's zip, or a Hugging Face dataset written as text files.

    python -m tools.download corpus [--edition 2023|2024] [--data_dir DIR] [--url URL --sha256 HEX --size N]
    python -m tools.download dataset HUB_ID [--data_dir DIR] [--revision REV]

`download_corpus` fetches the 2023 BabyLM release zip (the one the original experiment
used; `url/sha256/size` select a mirror or another release), checks its size and sha256,
and installs the zip's `babylm_data/` folder as DATA_DIR, so that
DATA_DIR/babylm_10M/*.train, babylm_dev/*.dev, babylm_test/*.test exist. The download is
resumable, checked and atomic (corpus/fetch.py says how). `download_dataset` writes a hub
dataset once as text files, so that later runs read it offline."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from corpus.editions import EDITIONS, load_dataset_dict, write_text_corpus
from corpus.fetch import (
    MARKER,
    RETRIES,
    RETRY_WAIT,
    TIMEOUT,
    entries,
    fetch_zip,
    is_empty_dir,
    move_into_place,
    now,
    read_marker,
    unzip_download,
    write_marker,
)
from utils import UserError, temp_dir_beside

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
    part, digest = fetch_zip(url, data_dir, size, sha256, hint, timeout, retries, retry_wait, progress)
    _install_zip(part, data_dir, {"url": url, "sha256": digest, "size": part.stat().st_size, "edition": edition,
                                  "downloaded": now(), "by": "tools/download.py corpus"}, progress, edition)
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
    if data_dir.exists() and not is_empty_dir(data_dir):
        raise UserError(f"{data_dir} exists and holds something else: refusing to overwrite it; move it away, or "
                        "pass another --data_dir")
    meta = write_text_corpus(load_dataset_dict(hub_id, revision), data_dir, source=hub_id)
    held = f"; {' and '.join(meta['held_out'])} held out from train" if meta["held_out"] else ""
    print(f"wrote the dataset {hub_id} ({', '.join(f'{k}: {v} rows' for k, v in meta['splits'].items())}) "
          f"as text files in {data_dir}{held}")
    return True


def _corpus_present(data_dir: Path, sha256: str | None, edition: str = "2023") -> bool:
    """True (and says so) if `data_dir` already holds the corpus; False if it is free to install
    into; a UserError if it holds something else, which is never overwritten."""
    if not data_dir.exists():
        return False
    if not data_dir.is_dir():
        raise UserError(f"{data_dir} exists and is not a folder: move it away or pass another --data_dir")
    marker = read_marker(data_dir)
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
    if is_empty_dir(data_dir):
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
        unzip_download(zip_path, unpacked, progress)
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
        write_marker(content, marker)
        move_into_place(content, data_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _content_root(unpacked: Path, zip_path: Path) -> Path:
    """The folder to install: the zip's single top folder, unless that is itself a corpus folder."""
    found = entries(unpacked)
    if not found:
        raise UserError(f"{zip_path} is an empty zip: nothing was installed; check --url")
    if len(found) == 1 and found[0].is_dir() and found[0].name not in RELEASE_FOLDERS:
        return found[0]
    return unpacked
