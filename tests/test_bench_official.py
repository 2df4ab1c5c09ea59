"""`make bench`'s zero-shot section (tools/bench_official.py): the agreement count it prints
beside each speed, its clean skip without the official pipeline, and a real run against the
official scorer (in its own process) on a slice of the sample fast set, where every item
must agree."""

from __future__ import annotations

import json
import shutil

from conftest import ROOT
from official_tree import OFFICIAL, needs_official

from tools import bench_official
from tools.bench import ZERO_SHOT_SIZES
from tools.bench_report import markdown

SAMPLE_FAST = ROOT / "data" / "sample_eval" / "fast_eval"


def bench_text(zero_shot: dict) -> str:
    """bench.md of a bench that ran only the zero-shot section."""
    info = {"cpu": "c", "torch_threads": 1, "hardware": "h", "auto_choice": "a"}
    return markdown({"info": info, "matmul": {"bf16_tflops": 1.0, "fp32_tflops": 1.0}, "training": [], "other": [],
                     "zero_shot": zero_shot})


def write_predictions(path, blocks: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({key: {"predictions": rows} for key, rows in blocks.items()}))


def test_agreement_counts_the_same_choices_and_reading_surprisals(tmp_path):
    theirs, ours = tmp_path / "theirs.json", tmp_path / "ours.json"
    write_predictions(theirs, {"a": [{"id": "a_0", "pred": "x y."}, {"id": "a_1", "pred": "z."}],
                               "b": [{"id": "b_0", "pred": "w."}]})
    write_predictions(ours, {"a": [{"id": "a_0", "pred": "x y."}, {"id": "a_1", "pred": "x y."}],
                             "b": [{"id": "b_0", "pred": "w."}]})
    assert bench_official.agreement(ours, theirs) == (2, 3)
    nan = float("nan")
    write_predictions(theirs, {"reading": [{"id": 0, "pred": 3.0, "prev_pred": nan},
                                           {"id": 1, "pred": 2.0, "prev_pred": 1.0},
                                           {"id": 2, "pred": 5.0, "prev_pred": nan}]})
    write_predictions(ours, {"reading": [{"id": 0, "pred": 3.00001, "prev_pred": nan},  # within 1e-4, both NaN
                                         {"id": 1, "pred": 2.0, "prev_pred": 1.001},  # off by 1e-3
                                         {"id": 2, "pred": 5.0, "prev_pred": 4.0}]})  # NaN against a number
    assert bench_official.agreement(ours, theirs) == (1, 3)


def test_the_section_is_skipped_with_a_note_without_the_official_pipeline(tmp_path):
    result = bench_official.bench_against_official(SAMPLE_FAST, tmp_path / "nowhere", {}, "tiny", [], ("causal",),
                                                   tmp_path)
    assert "no official pipeline at" in result["skipped"]
    text = bench_text(result)
    assert "## Zero-shot suite against the official pipeline" in text and "Skipped: no official pipeline" in text


@needs_official("aiohttp", "PIL")
def test_ours_against_the_official_scorer_agrees_on_every_item(tmp_path, tok_dirs):
    """Both scorers on the same saved models (causal and mlm), three data folders and the reading
    CSV: one row per folder with both speeds, and every prediction the same."""
    eval_dir = tmp_path / "fast_eval"
    for folder in ("blimp_fast", "entity_tracking_fast", "reading"):
        shutil.copytree(SAMPLE_FAST / folder, eval_dir / folder)
    result = bench_official.bench_against_official(eval_dir, OFFICIAL, tok_dirs, "tiny", ZERO_SHOT_SIZES["tiny"],
                                                   ("causal", "mlm"), tmp_path / "out")
    assert [(r["backend"], r["data"]) for r in result["rows"]] == [
        (backend, data) for backend in ("causal", "mlm") for data in ("blimp_fast", "entity_tracking_fast", "reading")]
    for row in result["rows"]:
        assert row["items"] > 0 and row["agreeing"] == row["items"], row
        assert row["official_seconds"] > 0 and row["our_seconds"] > 0
        # the official loop never does less arithmetic than the least an exact scorer needs
        assert row["arithmetic_bound"] is None if row["data"] == "reading" else row["arithmetic_bound"] >= 1, row
    assert [s["items"] for s in result["suites"]] == [sum(r["items"] for r in result["rows"][:3])] * 2
    assert "| causal (gpt2) | entity_tracking_fast |" in bench_text(result)
