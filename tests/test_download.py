"""corpus/download.py against a local HTTP server (127.0.0.1, port 0) started here: never the internet.

The server serves in-memory files, honours `Range: bytes=N-` (unless told not
to), and can be told to cut or stall its next response after K bytes, or to
answer 404. Every request's path and Range header is recorded."""

from __future__ import annotations

import hashlib
import io
import json
import re
import socket
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import corpus.download as download
from corpus.download import MARKER, download_blimp, download_corpus
from utils import UserError

FAST = {"timeout": 5.0, "retries": 0, "retry_wait": 0.0}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        state = self.server.state
        rng = self.headers.get("Range")
        state.requests.append((self.path, rng))
        body = state.files.get(self.path)
        if body is None or state.not_found:
            self.send_error(404)
            return
        if state.fail_once:  # a passing server hiccup
            state.fail_once = False
            self.send_error(503)
            return
        start = 0
        if rng and not state.ignore_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", rng)[1])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        payload = body[start:]
        if state.cut_after is not None:  # this response only: K bytes, then a dead connection
            k, state.cut_after = state.cut_after, None
            self.wfile.write(payload[:k])
            self.wfile.flush()
            if state.stall:
                time.sleep(3)  # longer than the client's timeout
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(payload)

    def log_message(self, *args) -> None:
        pass


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass  # a client that hung up on purpose (size check, timeout) is not worth a traceback


class Server:
    """A local file server; `url(name)` is the address of files[f'/{name}']."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.cut_after: int | None = None
        self.stall = False
        self.ignore_range = False
        self.not_found = False
        self.fail_once = False
        self.httpd = QuietServer(("127.0.0.1", 0), Handler)
        self.httpd.state = self
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """A proxy from the environment must not carry requests for 127.0.0.1 off the machine."""
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")


@pytest.fixture
def server():
    s = Server()
    yield s
    s.stop()


def make_zip(top: str | None = "babylm_data") -> bytes:
    """A small corpus zip laid out like the release (with macOS junk beside the top folder)."""
    buf = io.BytesIO()
    prefix = f"{top}/" if top else ""
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for split, ext in (("babylm_10M", "train"), ("babylm_100M", "train"), ("babylm_dev", "dev"),
                           ("babylm_test", "test")):
            for source in ("aochildes", "qed"):
                # Random-ish text so the zip is tens of kB and a cut lands mid-body.
                text = "".join(f"{source} {split} line {i} {hashlib.md5(str(i).encode()).hexdigest()}\n"
                               for i in range(400))
                zf.writestr(f"{prefix}{split}/{source}.{ext}", text)
        if top:
            zf.writestr(f"__MACOSX/{top}/._babylm_dev", b"\0")
    return buf.getvalue()


@pytest.fixture
def corpus(server, tmp_path):
    """Serve a corpus zip; returns (url, zip bytes, data_dir); data_dir's parent does not exist yet."""
    body = make_zip()
    server.files["/babylm_data.zip"] = body
    return server.url("babylm_data.zip"), body, tmp_path / "data" / "babylm_data"


def get(url, body, data_dir, **kw):
    """download_corpus with the served zip's real size and sha256 unless overridden."""
    args = {"sha256": hashlib.sha256(body).hexdigest(), "size": len(body), **FAST, **kw}
    return download_corpus(data_dir, url, **args)


def part_of(data_dir: Path) -> Path:
    return data_dir.with_name(data_dir.name + ".zip.part")


def test_corpus_installs_then_does_nothing(server, corpus, capsys):
    url, body, data_dir = corpus
    assert get(url, body, data_dir) is True
    assert (data_dir / "babylm_10M" / "aochildes.train").read_text().startswith("aochildes babylm_10M line 0")
    assert sorted(p.name for p in data_dir.iterdir()) == [MARKER, *sorted(download.CORPUS_FOLDERS)]
    marker = json.loads((data_dir / MARKER).read_text())
    assert marker["sha256"] == hashlib.sha256(body).hexdigest() and marker["url"] == url
    assert [p.name for p in data_dir.parent.iterdir()] == ["babylm_data"]  # no .part, no temporary folder
    assert (data_dir.stat().st_mode & 0o777) != 0o700  # not mkdtemp's private mode

    n = len(server.requests)
    assert get(url, body, data_dir) is False
    assert "nothing done" in capsys.readouterr().out
    assert len(server.requests) == n


def test_zip_without_top_folder(server, corpus):
    url, _, data_dir = corpus
    body = make_zip(top=None)
    server.files["/babylm_data.zip"] = body
    assert get(url, body, data_dir)
    assert (data_dir / "babylm_test" / "qed.test").is_file() and (data_dir / MARKER).is_file()


def test_resume_after_cut_connection(server, corpus):
    url, body, data_dir = corpus
    k = len(body) // 3
    server.cut_after = k
    with pytest.raises(UserError, match="rerun the same command to resume"):
        get(url, body, data_dir)
    assert part_of(data_dir).stat().st_size == k
    assert not data_dir.exists()

    assert get(url, body, data_dir)
    assert server.requests[-1] == ("/babylm_data.zip", f"bytes={k}-")
    assert (data_dir / "babylm_dev" / "qed.dev").is_file() and not part_of(data_dir).exists()


def test_automatic_retry_resumes_within_one_run(server, corpus):
    url, body, data_dir = corpus
    server.cut_after = 1000
    assert get(url, body, data_dir, retries=1)
    assert [r for _, r in server.requests] == [None, "bytes=1000-"]


def test_server_error_is_retried(server, corpus):
    url, body, data_dir = corpus
    server.fail_once = True
    assert get(url, body, data_dir, retries=1)
    assert len(server.requests) == 2


def test_file_url_installs_a_zip_fetched_elsewhere(tmp_path):
    body = make_zip()
    local = tmp_path / "babylm_data.zip"
    local.write_bytes(body)
    data_dir = tmp_path / "data" / "babylm_data"
    assert get(local.as_uri(), body, data_dir)
    assert (data_dir / "babylm_10M" / "qed.train").is_file() and local.is_file()


def test_server_ignoring_range_restarts_from_zero(server, corpus):
    url, body, data_dir = corpus
    server.cut_after = 1000
    server.ignore_range = True
    assert get(url, body, data_dir, retries=1)
    assert [r for _, r in server.requests] == [None, "bytes=1000-"]  # asked, got 200, started over
    assert json.loads((data_dir / MARKER).read_text())["size"] == len(body)


def test_stalled_server_times_out(server, corpus):
    url, body, data_dir = corpus
    server.cut_after, server.stall = 500, True
    began = time.monotonic()
    with pytest.raises(UserError, match="rerun"):
        get(url, body, data_dir, timeout=0.5)
    assert time.monotonic() - began < 2.5
    assert part_of(data_dir).stat().st_size == 500 and not data_dir.exists()


def test_checksum_mismatch_installs_nothing(server, corpus):
    url, body, data_dir = corpus
    wrong = "0" * 64
    with pytest.raises(UserError) as e:
        get(url, body, data_dir, sha256=wrong)
    message = str(e.value)
    assert wrong in message and hashlib.sha256(body).hexdigest() in message and "--sha256" in message
    assert not data_dir.exists() and not part_of(data_dir).exists()
    assert [p.name for p in data_dir.parent.iterdir()] == []


def test_size_mismatch_installs_nothing(server, corpus):
    url, body, data_dir = corpus
    with pytest.raises(UserError, match=f"{len(body)} bytes, expected {len(body) + 1}"):
        get(url, body, data_dir, size=len(body) + 1)
    assert not data_dir.exists() and not part_of(data_dir).exists()


def test_size_mismatch_of_partial_file_from_an_earlier_run(server, corpus):
    """A leftover .part longer than the file is discarded, not resumed."""
    url, body, data_dir = corpus
    data_dir.parent.mkdir()
    part_of(data_dir).write_bytes(b"x" * (len(body) + 10))
    assert get(url, body, data_dir)
    assert server.requests[-1][1] is None


def test_server_gone(server, corpus):
    url, body, data_dir = corpus
    server.stop()
    with pytest.raises(UserError) as e:
        get(url, body, data_dir)
    assert f"cannot reach {url}" in str(e.value) and f"{data_dir}/babylm_10M/*.train exist" in str(e.value)
    assert "\n" not in str(e.value)
    assert not data_dir.parent.exists()  # nothing created at all


def test_server_gone_through_the_cli(server, corpus, capsys):
    url, body, data_dir = corpus
    server.stop()
    code = download.main(["corpus", "--data_dir", str(data_dir), "--url", url, "--timeout", "5", "--no_progress"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: cannot reach") and err.count("\n") == 1


def test_not_found(server, corpus):
    url, body, data_dir = corpus
    server.not_found = True
    with pytest.raises(UserError, match="HTTP 404"):
        get(url, body, data_dir)
    assert not data_dir.parent.exists()


def test_foreign_data_dir_is_not_overwritten(server, corpus):
    url, body, data_dir = corpus
    data_dir.mkdir(parents=True)
    (data_dir / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="refusing to overwrite"):
        get(url, body, data_dir)
    assert [p.name for p in data_dir.iterdir()] == ["notes.txt"]
    assert server.requests == []  # refused before downloading anything


def test_other_release_in_data_dir_is_not_overwritten(server, corpus):
    url, body, data_dir = corpus
    assert get(url, body, data_dir)
    with pytest.raises(UserError, match="holds another download"):
        get(url, body, data_dir, sha256="1" * 64)


def test_layout_placed_by_hand_counts_as_done(server, corpus, capsys):
    url, body, data_dir = corpus
    for split in ("babylm_10M", "babylm_dev", "babylm_test"):
        (data_dir / split).mkdir(parents=True)
    (data_dir / "babylm_10M" / "qed.train").write_text("hello\n")
    assert get(url, body, data_dir) is False
    assert "by hand" in capsys.readouterr().out and server.requests == []


def test_empty_data_dir_is_filled(server, corpus):
    url, body, data_dir = corpus
    data_dir.mkdir(parents=True)
    assert get(url, body, data_dir)
    assert (data_dir / "babylm_10M" / "qed.train").is_file()


# --------------------------------------------------------------------------- BLiMP

PARADIGMS = ["adjunct_island", "wh_island", "passive_1"]


def blimp_line(name: str, i: int) -> str:
    return json.dumps({"sentence_good": f"Good {name} {i}.", "sentence_bad": f"Bad {name} {i}.",
                       "field": "syntax", "UID": name}) + "\n"


@pytest.fixture
def blimp(server, tmp_path):
    for name in PARADIGMS:
        server.files[f"/data/{name}.jsonl"] = "".join(blimp_line(name, i) for i in range(50)).encode()
    return server.url("data"), tmp_path / "data" / "blimp"


def test_paradigm_list():
    assert len(download.BLIMP_PARADIGMS) == 67 == len(set(download.BLIMP_PARADIGMS))


def test_blimp_installs_then_does_nothing(server, blimp, capsys):
    base, blimp_dir = blimp
    assert download_blimp(blimp_dir, base, PARADIGMS, **FAST)
    assert sorted(p.name for p in blimp_dir.iterdir()) == sorted([MARKER] + [f"{p}.jsonl" for p in PARADIGMS])
    assert (blimp_dir / "wh_island.jsonl").read_bytes() == server.files["/data/wh_island.jsonl"]
    assert json.loads((blimp_dir / MARKER).read_text())["paradigms"] == PARADIGMS
    assert [p.name for p in blimp_dir.parent.iterdir()] == ["blimp"]

    # evaluation/blimp.py reads what was installed (the marker is not a *.jsonl).
    from evaluation.blimp import load_paradigms

    assert sorted(p.name for p in load_paradigms(blimp_dir)) == sorted(PARADIGMS)
    n = len(server.requests)
    assert not download_blimp(blimp_dir, base, PARADIGMS, **FAST)
    assert "nothing done" in capsys.readouterr().out and len(server.requests) == n


def test_blimp_through_the_cli(server, blimp, capsys):
    base, blimp_dir = blimp
    argv = ["blimp", "--blimp_dir", str(blimp_dir), "--base_url", base, "--paradigms", *PARADIGMS, "--timeout", "5"]
    assert download.main(argv) == 0
    assert download.main(argv) == 0
    assert "nothing done" in capsys.readouterr().out
    assert len(list(blimp_dir.glob("*.jsonl"))) == 3


def test_blimp_bad_file_installs_nothing_and_rerun_resumes(server, blimp):
    base, blimp_dir = blimp
    good = server.files["/data/passive_1.jsonl"]
    server.files["/data/passive_1.jsonl"] = b"<html>rate limited</html>\n"
    with pytest.raises(UserError, match="passive_1.jsonl is not a BLiMP jsonl file"):
        download_blimp(blimp_dir, base, PARADIGMS, **FAST)
    assert not blimp_dir.exists()

    server.files["/data/passive_1.jsonl"] = good
    server.requests.clear()
    assert download_blimp(blimp_dir, base, PARADIGMS, **FAST)
    assert [path for path, _ in server.requests] == ["/data/passive_1.jsonl"]  # the other two were kept


def test_blimp_truncated_file_is_rejected(server, blimp):
    base, blimp_dir = blimp
    server.files["/data/wh_island.jsonl"] = server.files["/data/wh_island.jsonl"][:-20]
    with pytest.raises(UserError, match="line 50 is not JSON"):
        download_blimp(blimp_dir, base, PARADIGMS, **FAST)
    assert not blimp_dir.exists()


def test_blimp_missing_paradigm(server, blimp):
    base, blimp_dir = blimp
    with pytest.raises(UserError, match="HTTP 404"):
        download_blimp(blimp_dir, base, [*PARADIGMS, "no_such_paradigm"], **FAST)
    assert not blimp_dir.exists()


def test_blimp_server_gone(server, blimp):
    base, blimp_dir = blimp
    server.stop()
    with pytest.raises(UserError, match=f"cannot reach {base}/adjunct_island.jsonl.*by hand"):
        download_blimp(blimp_dir, base, PARADIGMS, **FAST)
    assert not blimp_dir.parent.exists()


def test_blimp_foreign_dir_is_not_overwritten(server, blimp):
    base, blimp_dir = blimp
    blimp_dir.mkdir(parents=True)
    (blimp_dir / "mine.jsonl").write_text(blimp_line("mine", 0))
    with pytest.raises(UserError, match="refusing to overwrite"):
        download_blimp(blimp_dir, base, PARADIGMS, **FAST)
    assert [p.name for p in blimp_dir.iterdir()] == ["mine.jsonl"] and server.requests == []


def test_cli_usage_errors():
    with pytest.raises(SystemExit) as e:
        download.main(["corpus", "--sha256", "xyz"])
    assert e.value.code == 2
