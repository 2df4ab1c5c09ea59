"""Generic, resumable, checked downloads: the plumbing of corpus/download.py (the corpus),
corpus/blimp_download.py (BLiMP) and evaluation/official_download.py (the official
evaluation data); tools/download.py is their command line.

What every download built on it guarantees:
- Nothing half-done at the destination: files are downloaded next to it
  (`DEST.zip.part`, `DEST.part/`), checked, and only then moved into place with one
  rename. An interrupted or bad download leaves the destination absent (or as it was).
- Resume: a broken connection keeps what arrived; the next attempt asks for the
  rest with `Range: bytes=N-` (and starts over if the server ignores that).
  Each run retries a broken transfer itself (`retries`, default 3, waiting
  2, 4, 6 s), then stops with an error saying to rerun to resume.
- No hang: every connect and read times out (`timeout`, default 30 s).
- Idempotent: a destination holding our marker file (`.download.json`, with the
  sha256 and URL) or the expected files is left alone ("nothing done"); a
  destination holding anything else is refused, never overwritten.
- No network (DNS failure, refused, timeout at connect): one error naming the
  URL and how to place the files by hand. A failure to connect is not retried,
  because a second try a few seconds later almost never differs.

Networking is the standard library's urllib (it honours https_proxy/no_proxy).
Errors are `utils.UserError`."""

from __future__ import annotations

import http.client
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
import zipfile
from datetime import UTC, datetime
from pathlib import Path

from tqdm import tqdm

from utils import UserError, sha256_of

MARKER = ".download.json"  # hidden, so neither the corpus globs nor evaluation/blimp.py's *.jsonl see it
TIMEOUT = 30.0  # seconds per connect and per read
RETRIES = 3  # automatic resumes of a broken transfer within one run
RETRY_WAIT = 2.0  # seconds; attempt k waits k * RETRY_WAIT
CHUNK = 1 << 16
USER_AGENT = "babylm-pipeline-download/1"  # some hosts refuse urllib's default agent


# --------------------------------------------------------------------------- one file, resumable


class Broken(Exception):
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
        except Broken as e:
            have = part.stat().st_size if part.exists() else 0
            if attempt > retries:
                raise UserError(f"the download of {url} broke off ({e}; {attempt} attempts): {have} bytes are "
                                f"kept in {part}; rerun the same command to resume") from None
            wait = retry_wait * attempt
            print(f"download broke off ({e}); resuming from byte {have} in {wait:g} s", file=sys.stderr)
            time.sleep(wait)


def _fetch_once(url: str, part: Path, size: int | None, hint: str, timeout: float, progress: bool) -> None:
    """One request for the rest of `url` after the bytes in `part`; raises Broken when it breaks off."""
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset >= size:
        if offset == size:
            return  # complete from an earlier run that stopped before the check
        part.unlink()  # longer than the whole file: not a prefix of it
        offset = 0
    response = _open(url, part, offset, hint, timeout)
    with response:
        offset, start, total = _resume_point(response, url, part, offset)
        length = response.headers.get("Content-Length")
        end = start + int(length) if length and length.isdigit() else None
        total = total if total is not None else end
        if size is not None and total is not None and total != size:
            part.unlink(missing_ok=True)
            raise UserError(f"{url} is {total} bytes, expected {size}: a different file; nothing was installed. "
                            "If the URL is another release or mirror, pass its --size and --sha256 "
                            "(or 'none' to skip a check)")
        done = _write_body(response, part, offset, total or size, size, progress)
    # http.client returns b'' instead of raising when a connection closes early: compare with the header.
    if end is not None and done < end:
        raise Broken(f"connection closed after {done} of {end} bytes")


def _open(url: str, part: Path, offset: int, hint: str, timeout: float) -> http.client.HTTPResponse:
    """The server's answer to a request for `url` from byte `offset`; Broken for an answer worth
    retrying (HTTP 5xx or 429, a refused resume), a UserError for any other failure."""
    try:
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    except ValueError as e:  # 'unknown url type'
        raise UserError(f"'{url}' is not a URL ({e}): pass an http(s):// or file:// address") from None
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        # build_opener per call: proxies are read from the environment now, not at first import.
        return urllib.request.build_opener().open(request, timeout=timeout)
    except urllib.error.HTTPError as e:  # before URLError: it is one
        e.close()
        if e.code == 416 and offset:
            part.unlink()  # the server has nothing after `offset`: the partial file is not this file's prefix
            raise Broken("the server refused to resume; starting over") from None
        if e.code >= 500 or e.code == 429:
            raise Broken(f"HTTP {e.code} {e.reason}") from None
        raise UserError(f"{url}: the server answered HTTP {e.code} {e.reason}; check the URL{_hint(hint)}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", None) or e
        kept = f" ({offset} bytes kept in {part} for resuming)" if offset else ""
        raise UserError(f"cannot reach {url} ({reason}){kept}: check the network connection "
                        f"(and https_proxy if you need one){_hint(hint)}") from None


def _resume_point(response: http.client.HTTPResponse, url: str, part: Path,
                  offset: int) -> tuple[int, int, int | None]:
    """(the byte to write from, the first byte of the body, the total from Content-Range or None):
    a 206 answer must resume at `offset` (else the partial file is dropped and Broken raised);
    a 200 answer to a resume request starts over from byte 0."""
    if response.status == 206:
        start, total = _content_range(response.headers.get("Content-Range"))
        if start != offset:  # the partial file cannot be continued: drop it, the retry starts over
            part.unlink(missing_ok=True)
            raise Broken(f"the server resumed at byte {start}, not {offset}; starting over")
        return offset, start, total
    if offset:
        print(f"{url}: the server does not resume downloads; starting over from byte 0", file=sys.stderr)
    return 0, 0, None


def _write_body(response: http.client.HTTPResponse, part: Path, offset: int, total: int | None,
                size: int | None, progress: bool) -> int:
    """Append the body to `part` (or write it afresh when `offset` is 0); the bytes `part` then
    holds. Stops past `size` (the size check rejects the file); Broken when the transfer breaks."""
    part.parent.mkdir(parents=True, exist_ok=True)
    done = offset
    with open(part, "ab" if offset else "wb") as f, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
            desc=part.name.removesuffix(".part"), disable=not progress, leave=False) as bar:
        try:
            while chunk := response.read1(CHUNK):  # read1: what arrived is written before a timeout
                f.write(chunk)
                done += len(chunk)
                bar.update(len(chunk))
                if size is not None and done > size:
                    break  # more than the whole file: stop, the size check rejects it
        except (OSError, http.client.HTTPException) as e:  # reset, read timeout, IncompleteRead
            raise Broken(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__) from None
    return done


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


def fetch_zip(url: str, target: Path, size: int | None, sha256: str | None, hint: str, timeout: float,
              retries: int, retry_wait: float, progress: bool) -> tuple[Path, str]:
    """Download `url` into `<target>.zip.part` (resuming what an earlier run left) and check its
    size and sha256; returns the file and its sha256. The one download path of the corpus and
    the official evaluation data."""
    part = target.with_name(target.name + ".zip.part")
    resumed = f" (resuming after {part.stat().st_size} bytes)" if part.exists() else ""
    print(f"downloading {url} -> {part}{resumed}")
    fetch(url, part, size, hint=hint, timeout=timeout, retries=retries, retry_wait=retry_wait, progress=progress)
    return part, verify_file(part, size, sha256, url)


# --------------------------------------------------------------------------- folders, markers, zips


def now() -> str:
    """The current UTC time, to the second, as a marker records it."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def is_empty_dir(path: Path) -> bool:
    """Whether `path` is a folder with nothing in it."""
    return path.is_dir() and not any(path.iterdir())


def read_marker(folder: Path) -> dict | None:
    """Our marker's content, or None when the folder has none (or an unreadable one)."""
    try:
        info = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def write_marker(folder: Path, info: dict) -> None:
    """Write the marker into a folder that is not in place yet (so a plain write is atomic enough,
    and the file gets the usual permissions, not a temporary file's private ones)."""
    (folder / MARKER).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def move_into_place(src: Path, dest: Path) -> None:
    """Rename a finished folder to `dest` (absent or empty); a UserError if `dest` filled up meanwhile."""
    try:
        os.replace(src, dest)
    except OSError as e:
        raise UserError(f"cannot move the download into {dest} ({e.strerror}): did something create it "
                        f"meanwhile? Move {dest} away and rerun") from None


def extract_all(zip_path: Path, dest: Path, progress: bool, password: bytes | None = None) -> None:
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


def unzip_download(zip_path: Path, dest: Path, progress: bool) -> None:
    """extract_all for a downloaded zip: one that does not unpack is deleted (so a rerun
    downloads it afresh instead of resuming it) and reported as a UserError."""
    try:
        extract_all(zip_path, dest, progress)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as e:
        zip_path.unlink()
        raise UserError(f"{zip_path} is not a readable zip ({e}): it was deleted and nothing was installed; "
                        "rerun to download it again") from None


def entries(folder: Path) -> list[Path]:
    """The folder's entries without the `__MACOSX/` resource forks and `.DS_Store` files that
    macOS puts beside the content of the zips it makes."""
    return [p for p in folder.iterdir() if p.name not in ("__MACOSX", ".DS_Store")]
