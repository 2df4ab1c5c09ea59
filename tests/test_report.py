"""make report: every finished step in one table, blank rows for missing steps, plots."""

from __future__ import annotations

import json

from conftest import ROOT, SAMPLE, TINY_MODEL

import report
import run


def test_report_gathers_finished_steps(tok_dirs, tmp_path):
    save = tmp_path / "save"
    common = ["--data_dir", str(SAMPLE), "--cache_dir", str(tmp_path / "cache"), *TINY_MODEL]
    assert run.main(["train", "--torch_training", *common, "--tokenizer_dir", str(tok_dirs["clm"]),
                     "--output_dir", str(save / "step2_1"), "--max_steps", "6", "--eval_steps", "3",
                     "--logging_steps", "1"]) == 0
    assert run.main(["test", *common, "--model_dir", str(save / "step2_1" / "best_model"),
                     "--blimp_dir", str(ROOT / "data" / "sample_eval" / "blimp"),
                     "--output_dir", str(save / "step2_2")]) == 0
    path = report.write_report(save)
    text = path.read_text()
    test = json.loads((save / "step2_2" / "test_results.json").read_text())
    blimp = json.loads((save / "step2_2" / "blimp_results.json").read_text())
    row = next(line for line in text.splitlines() if line.startswith("| step2_1 |"))
    assert f"{test['test_perplexity']:.2f}" in row and f"{100 * blimp['overall']:.1f}" in row
    assert "gpt2 2x32" in row and "causal LM" in row
    assert row.count("|") == next(line for line in text.splitlines() if line.startswith("| step |")).count("|")
    params = report.count_parameters(save / "step2_1" / "best_model")
    assert f"{params:,}" in row
    # Steps that have not run are blank rows, not a crash.
    assert "| step3_1 |  |" in text
    for png in ("loss_curves.png", "blimp_fields.png"):
        assert (save / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_on_an_empty_folder(tmp_path):
    text = report.write_report(tmp_path).read_text()
    assert "| step2_1 |" in text and not (tmp_path / "loss_curves.png").exists()
