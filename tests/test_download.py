"""The downloads (corpus/fetch.py, corpus/download.py, corpus/blimp_download.py,
evaluation/official_download.py, and tools/download.py, their command line) against a local
HTTP server (127.0.0.1, port 0) started here: never the internet.

The server serves in-memory files, honours `Range: bytes=N-` (unless told not
to), and can be told to cut or stall its next response after K bytes, or to
answer 404. Every request's path and Range header is recorded."""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import socket
import subprocess
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import corpus.blimp_download as blimp_download
import corpus.download as download
import evaluation.official_download as official_download
import tools.download as cli
from corpus.blimp_download import download_blimp
from corpus.download import download_corpus
from corpus.editions import detect_corpus
from corpus.fetch import MARKER
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


def zip_of(files: dict[str, str | bytes]) -> bytes:
    """A zip holding `files` (name inside the zip -> content)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in files.items():
            zf.writestr(name, content)
    return buf.getvalue()


def make_zip(top: str | None = "babylm_data") -> bytes:
    """A small corpus zip laid out like the release (with macOS junk beside the top folder)."""
    prefix = f"{top}/" if top else ""
    files = {}
    for split, ext in (("babylm_10M", "train"), ("babylm_100M", "train"), ("babylm_dev", "dev"),
                       ("babylm_test", "test")):
        for source in ("aochildes", "qed"):
            # Random-ish text so the zip is tens of kB and a cut lands mid-body.
            files[f"{prefix}{split}/{source}.{ext}"] = "".join(
                f"{source} {split} line {i} {hashlib.md5(str(i).encode()).hexdigest()}\n" for i in range(400))
    if top:
        files[f"__MACOSX/{top}/._babylm_dev"] = b"\0"
    return zip_of(files)


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
    code = cli.main(["corpus", "--data_dir", str(data_dir), "--url", url, "--timeout", "5", "--no_progress"])
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
    assert len(blimp_download.BLIMP_PARADIGMS) == 67 == len(set(blimp_download.BLIMP_PARADIGMS))


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
    assert cli.main(argv) == 0
    assert cli.main(argv) == 0
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
        cli.main(["corpus", "--sha256", "xyz"])
    assert e.value.code == 2


# --------------------------------------------------------------------------- the official evaluation data

def jsonl(*rows: dict) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


READING_CSV = (",".join(official_download.READING_COLUMNS) + "\n"
               + "The dog ran.,ran,,,3.1,3,2,,210,230,250,240,300\n"
               + "The cat sat.,sat,The dog ran.,ran,3.0,3,2,3,200,220,260,230,310\n")


def eval_files(suffix: str) -> dict[str, str]:
    """One small file per official task, in the folder names of the release's full_eval/ ('_filtered'
    and plain) or fast_eval/ ('_fast'), each line in the format evaluation/tasks.py decodes."""
    pair = {"sentence_good": "The cats sleep.", "sentence_bad": "The cats sleeps."}
    blimp = "blimp_fast" if suffix == "_fast" else "blimp_filtered"
    supplement = "supplement_fast" if suffix == "_fast" else "supplement_filtered"
    wug = {"sentences": "They are wuggy.\tThey are wuggity.", "ratio": 0.7}
    return {
        f"{blimp}/adjunct_island.jsonl": jsonl(*({**pair, "field": "syntax", "UID": "adjunct_island",
                                                  "linguistics_term": "island_effects"} for _ in range(3))),
        f"{supplement}/hypernym.jsonl": jsonl(pair, pair),
        f"entity_tracking{suffix if suffix == '_fast' else ''}/regular.jsonl": jsonl(
            {"input_prefix": "The apple is in Box 1. Box 1 contains", "options": [" the apple", " nothing"],
             "numops": 0}),
        "wug_adj_nominalization/wug_adj.jsonl": jsonl(wug),
        "wug_past_tense/wug_past.jsonl": jsonl(wug, wug),
        "reading/reading_data.csv": READING_CSV,
    }


def release_files(top: str | None = "evaluation_data") -> dict[str, str | bytes]:
    """The evaluation_data folder as the release lays it out: full_eval/ with EWoK and COMPS, and
    fast_eval/ whose EWoK comes as a zip inside (ewok_fast.zip, with its own top folder)."""
    prefix = f"{top}/" if top else ""
    ewok = {"Domain": "physics", "ContextType": "short", "ContextDiff": "a", "TargetDiff": "b",
            "Context1": "The ball fell.", "Context2": "The ball rose.", "Target1": "It went down.",
            "Target2": "It went up."}
    full = {**eval_files("_filtered"), "ewok_filtered/physics.jsonl": jsonl(ewok),
            "comps/comps_base.jsonl": jsonl({"prefix_acceptable": "A robin", "prefix_unacceptable": "A rock",
                                             "property_phrase": "can fly."}),
            "glue_filtered/boolq.train.jsonl": "not a zero-shot task: installed as it is\n"}
    fast = {**eval_files("_fast"), "ewok_fast.zip": zip_of({"ewok_fast/physics.jsonl": jsonl(ewok, ewok)})}
    return {**{f"{prefix}full_eval/{k}": v for k, v in full.items()},
            **{f"{prefix}fast_eval/{k}": v for k, v in fast.items()}}


@pytest.fixture
def official(server, tmp_path):
    """Serve a small evaluation_data zip; returns (url, zip bytes, eval_dir); eval_dir's parent does not exist."""
    body = zip_of(release_files())
    server.files["/evaluation_data.zip"] = body
    return server.url("evaluation_data.zip"), body, tmp_path / "data" / "official_eval"


def get_official(url: str, eval_dir: Path, **kw) -> bool:
    return official_download.download_official_eval(eval_dir, url, **{**FAST, "progress": False, **kw})


def write_tree(root: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content if isinstance(content, bytes) else content.encode())


def test_official_eval_installs_then_does_nothing(server, official, capsys):
    url, body, eval_dir = official
    assert get_official(url, eval_dir) is True
    assert sorted(p.name for p in eval_dir.iterdir()) == [MARKER, "fast_eval", "full_eval"]
    files = release_files()
    for name in ("full_eval/blimp_filtered/adjunct_island.jsonl", "fast_eval/reading/reading_data.csv",
                 "full_eval/glue_filtered/boolq.train.jsonl"):
        assert (eval_dir / name).read_bytes() == files[f"evaluation_data/{name}"].encode()
    # The zip inside fast_eval/ became the task folder the pipeline reads.
    assert not (eval_dir / "fast_eval" / "ewok_fast.zip").exists()
    assert [p.name for p in (eval_dir / "fast_eval" / "ewok_fast").iterdir()] == ["physics.jsonl"]
    marker = json.loads((eval_dir / MARKER).read_text())
    assert marker["url"] == url and marker["sha256"] == hashlib.sha256(body).hexdigest()
    assert marker["items"]["full_eval"] == {"blimp_filtered": 3, "supplement_filtered": 2, "ewok_filtered": 1,
                                            "entity_tracking": 1, "wug_adj_nominalization": 1, "wug_past_tense": 2,
                                            "comps": 1, "reading": 2}
    assert marker["items"]["fast_eval"]["ewok_fast"] == 2
    assert [p.name for p in eval_dir.parent.iterdir()] == ["official_eval"]  # no .part, no temporary folder

    # What evaluation/tasks.py finds in the installed sets.
    from evaluation.tasks import find_tasks

    assert [(task, folder.name) for task, folder in find_tasks(eval_dir / "fast_eval")] == [
        ("blimp", "blimp_fast"), ("blimp", "supplement_fast"), ("ewok", "ewok_fast"),
        ("entity_tracking", "entity_tracking_fast"), ("wug_adj", "wug_adj_nominalization"),
        ("wug_past", "wug_past_tense")]
    n = len(server.requests)
    assert get_official(url, eval_dir) is False
    assert "nothing done" in capsys.readouterr().out and len(server.requests) == n


def test_official_eval_zip_without_top_folder(server, official):
    url, _, eval_dir = official
    server.files["/evaluation_data.zip"] = zip_of(release_files(top=None))
    assert get_official(url, eval_dir)
    assert (eval_dir / "full_eval" / "comps" / "comps_base.jsonl").is_file()


def test_official_eval_bad_line_installs_nothing(server, official):
    url, _, eval_dir = official
    files = release_files()
    name = "evaluation_data/full_eval/entity_tracking/regular.jsonl"
    files[name] += json.dumps({"input_prefix": "Box 2 contains", "options": [" a", " b"]}) + "\n"  # no numops
    server.files["/evaluation_data.zip"] = zip_of(files)
    with pytest.raises(UserError) as e:
        get_official(url, eval_dir)
    message = str(e.value)
    assert "full_eval/entity_tracking/regular.jsonl:2 needs an integer 'numops'" in message
    assert "nothing was installed" in message and "\n" not in message and ".tmp" not in message
    assert [p.name for p in eval_dir.parent.iterdir()] == []  # no eval_dir, no .part, no temporary folder


def test_official_eval_reading_csv_without_a_column(server, official):
    url, _, eval_dir = official
    files = release_files()
    files["evaluation_data/fast_eval/reading/reading_data.csv"] = READING_CSV.replace("RTgopast", "RT_go_past")
    server.files["/evaluation_data.zip"] = zip_of(files)
    with pytest.raises(UserError, match=r"fast_eval/reading/reading_data.csv has no column RTgopast"):
        get_official(url, eval_dir)
    assert not eval_dir.exists()


def test_official_eval_reading_csv_short_row(server, official):
    url, _, eval_dir = official
    files = release_files()
    files["evaluation_data/full_eval/reading/reading_data.csv"] = READING_CSV + "cut,short\n"
    server.files["/evaluation_data.zip"] = zip_of(files)
    with pytest.raises(UserError, match=r"full_eval/reading/reading_data.csv:4 has 2 fields, the header 13"):
        get_official(url, eval_dir)


def test_official_eval_resume_after_cut_connection(server, official):
    url, body, eval_dir = official
    k = len(body) // 2
    server.cut_after = k
    with pytest.raises(UserError, match="rerun the same command to resume"):
        get_official(url, eval_dir)
    assert eval_dir.with_name("official_eval.zip.part").stat().st_size == k and not eval_dir.exists()
    assert get_official(url, eval_dir)
    assert server.requests[-1] == ("/evaluation_data.zip", f"bytes={k}-")


def test_official_eval_pinned_checksum_through_the_cli(server, official, capsys):
    url, body, eval_dir = official
    argv = ["official_eval", "--url", url, "--timeout", "5", "--retries", "0", "--no_progress"]
    assert cli.main([*argv, "--eval_dir", str(eval_dir), "--sha256", hashlib.sha256(body).hexdigest(),
                          "--size", str(len(body))]) == 0
    other = eval_dir.with_name("other")
    capsys.readouterr()
    assert cli.main([*argv, "--eval_dir", str(other), "--sha256", "0" * 64]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "expected " + "0" * 64 in err and err.count("\n") == 1
    assert not other.exists()


def test_official_eval_archive_without_sets(server, official):
    url, _, eval_dir = official
    server.files["/evaluation_data.zip"] = zip_of({"evaluation_data/README.txt": "nothing here"})
    with pytest.raises(UserError, match="no full_eval/ or fast_eval/ folder"):
        get_official(url, eval_dir)
    assert [p.name for p in eval_dir.parent.iterdir()] == []


def test_official_eval_from_a_folder(tmp_path, capsys):
    source = tmp_path / "download" / "evaluation_data"
    write_tree(source, release_files(top=None))
    before = sorted(str(p.relative_to(source)) for p in source.rglob("*"))
    eval_dir = tmp_path / "data" / "official_eval"
    argv = ["official_eval", "--eval_dir", str(eval_dir), "--from", str(source.parent)]  # finds evaluation_data/
    assert cli.main(argv) == 0
    assert (eval_dir / "fast_eval" / "ewok_fast" / "physics.jsonl").is_file()
    assert json.loads((eval_dir / MARKER).read_text())["from"] == str(source.resolve())
    assert sorted(str(p.relative_to(source)) for p in source.rglob("*")) == before  # the source is untouched
    assert cli.main(argv) == 0
    assert "nothing done" in capsys.readouterr().out


def test_official_eval_from_a_folder_with_a_bad_line(tmp_path):
    source = tmp_path / "evaluation_data"
    files = release_files(top=None)
    files["fast_eval/blimp_fast/adjunct_island.jsonl"] += '{"sentence_good": "cut\n'
    write_tree(source, files)
    eval_dir = tmp_path / "data" / "official_eval"
    with pytest.raises(UserError) as e:
        official_download.install_official_eval(source, eval_dir)
    assert f"'{source}' holds invalid evaluation data: fast_eval/blimp_fast/adjunct_island.jsonl:4 is not " \
           "valid JSON" in str(e.value)
    assert not eval_dir.exists() and [p.name for p in eval_dir.parent.iterdir()] == []


def test_official_eval_from_refuses_checksums_and_url(tmp_path):
    for extra in (["--sha256", "0" * 64], ["--url", "http://127.0.0.1:9/x.zip"]):
        with pytest.raises(SystemExit) as e:
            cli.main(["official_eval", "--from", str(tmp_path), *extra])
        assert e.value.code == 2


def test_official_eval_placed_by_hand_or_foreign(server, official, capsys):
    url, _, eval_dir = official
    (eval_dir / "full_eval" / "blimp_filtered").mkdir(parents=True)
    assert get_official(url, eval_dir) is False
    assert "by hand" in capsys.readouterr().out

    foreign = eval_dir.with_name("mine")
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="refusing to overwrite"):
        get_official(url, foreign)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"] and server.requests == []


@pytest.mark.skipif(shutil.which("zip") is None, reason="needs the zip command to make an encrypted zip")
def test_official_eval_encrypted_ewok_fast(tmp_path, capsys):
    """The release's ewok_fast.zip is encrypted: it opens with the README's password; with another
    password it is installed as it is, with a warning, and the rest is installed."""
    source, inner = tmp_path / "evaluation_data", tmp_path / "inner"
    files = release_files(top=None)
    with zipfile.ZipFile(io.BytesIO(files.pop("fast_eval/ewok_fast.zip"))) as plain:
        plain.extractall(inner)
    write_tree(source, files)
    subprocess.run(["zip", "-q", "-r", "-P", official_download.EWOK_FAST_PASSWORD,
                    str(source / "fast_eval" / "ewok_fast.zip"), "ewok_fast"], cwd=inner, check=True)
    with zipfile.ZipFile(source / "fast_eval" / "ewok_fast.zip") as zf:
        assert all(m.flag_bits & 0x1 for m in zf.infolist() if not m.is_dir())  # encrypted

    assert official_download.install_official_eval(source, tmp_path / "good")
    assert (tmp_path / "good" / "fast_eval" / "ewok_fast" / "physics.jsonl").is_file()

    assert official_download.install_official_eval(source, tmp_path / "wrong", zip_password="not it")
    assert "fast_eval/ewok_fast.zip does not unpack" in capsys.readouterr().err
    assert (tmp_path / "wrong" / "fast_eval" / "ewok_fast.zip").is_file()
    assert (tmp_path / "wrong" / "full_eval" / "blimp_filtered").is_dir()


def test_official_eval_task_folder_without_jsonl_is_installed_unchecked(server, official, capsys):
    url, _, eval_dir = official
    files = {k: v for k, v in release_files().items() if "/full_eval/comps/" not in k}
    files["evaluation_data/full_eval/comps/comps_base.csv"] = "a,b\n1,2\n"  # a format nothing here reads
    server.files["/evaluation_data.zip"] = zip_of(files)
    assert get_official(url, eval_dir)
    assert "full_eval/comps holds no *.jsonl file: installed as it is" in capsys.readouterr().err
    assert (eval_dir / "full_eval" / "comps" / "comps_base.csv").is_file()
    assert "comps" not in json.loads((eval_dir / MARKER).read_text())["items"]["full_eval"]


def test_the_2024_release_installs_from_its_zip_and_needs_a_url(server, tmp_path, capsys):
    files = {f"text_data/{folder}/{source}.{ext}": f"{source} {folder} line\n" * 60
             for folder, ext in (("train_10M", "train"), ("dev", "dev"), ("test", "test"))
             for source in ("childes", "simple_wiki")}
    body = zip_of(files)
    server.files["/text_data.zip"] = body
    data_dir = tmp_path / "babylm_2024"
    argv = ["corpus", "--edition", "2024", "--data_dir", str(data_dir), "--no_progress", "--retries", "0"]
    assert cli.main(argv) == 1  # no published link: the error names where to get the zip
    assert "no published direct link: download its zip from https://osf.io/5mk3x/" in capsys.readouterr().err
    assert cli.main([*argv, "--url", server.url("text_data.zip")]) == 0  # no checksum is checked for 2024
    assert sorted(p.name for p in data_dir.iterdir()) == [MARKER, "dev", "test", "train_10M"]
    assert json.loads((data_dir / MARKER).read_text())["edition"] == "2024"
    assert detect_corpus(data_dir, cache_dir=tmp_path / "cache").layout == "2024"
    assert cli.main([*argv, "--url", server.url("text_data.zip")]) == 0
    assert "nothing done" in capsys.readouterr().out


def test_another_edition_is_not_taken_for_the_installed_one(server, corpus, capsys):
    url, body, data_dir = corpus
    assert get(url, body, data_dir)  # the 2023 corpus
    argv = ["corpus", "--edition", "2024", "--data_dir", str(data_dir), "--url", url, "--no_progress"]
    assert cli.main(argv) == 1
    assert "holds the 2023 corpus, not the requested 2024" in capsys.readouterr().err
