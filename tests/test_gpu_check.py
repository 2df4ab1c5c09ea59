"""tools/gpu_check.py, the CPU side of the GPU check: the bundle holds everything a run
needs without tokenizing (so a machine without `datasets` runs from it), and the summary's
numbers (tokens/s, MFU against the measured and the datasheet rate) are computed right.
`python -m tools.gpu_check run --smoke` runs every step on the CPU (minutes: not a test)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT, SAMPLE

from tools import gpu_check


def test_the_bundle_trains_without_datasets_or_pyarrow(tmp_path):
    bundle = tmp_path / "bundle"
    gpu_check.bundle(SAMPLE, ROOT / "data" / "sample_eval" / "blimp", bundle, vocab_size=600)
    assert (bundle / "tokenizer_clm" / "tokenizer.json").is_file() and (bundle / "blimp").is_dir()
    # The GPU machine has neither library: with both unimportable, a run from the bundle still trains.
    code = ("import sys; sys.modules['datasets'] = None; sys.modules['pyarrow'] = None; sys.modules['pyarrow.compute']"
            " = None; import run; sys.exit(run.main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", code, "train", "--torch_training", "--data_dir", str(bundle / "data"),
                           "--cache_dir", str(bundle / "cache"), "--tokenizer_dir", str(bundle / "tokenizer_clm"),
                           "--block_size", "128", "--hidden_size", "32", "--num_layers", "2", "--num_heads", "2",
                           "--max_steps", "2", "--output_dir", str(tmp_path / "run")],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "used cached dataset" in done.stderr and "tokenized" not in done.stderr
    # The bench step too, from a copy of the bundle elsewhere (as on the GPU machine).
    moved = tmp_path / "elsewhere" / "bundle"
    shutil.copytree(bundle, moved, symlinks=True)
    shutil.rmtree(bundle)
    code_bench = code.replace("import run; sys.exit(run.main(sys.argv[1:]))", "from tools import bench; bench.main()")
    done = subprocess.run([sys.executable, "-c", code_bench, "--data_dir", str(moved / "data"), "--out_dir",
                           str(moved / "bench"), "--models", "gpt2", "--sizes", "step2", "--loops", "plain_fp32",
                           "--warmup", "1", "--steps", "1", "--repeats", "1", "--skip", "curves", "blimp", "packing",
                           "zero_shot"],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "tokenized" not in done.stderr and (moved / "bench" / "bench.json").is_file()


def test_the_summary_computes_tokens_per_second_and_mfu(tmp_path):
    runs = tmp_path / "runs"
    (runs / "gpt2_step2").mkdir(parents=True)
    (runs / "gpt2_step2" / "train_results.json").write_text(json.dumps({
        "tokens_seen": 4_000_000, "step_seconds": 40.0, "steps": 977, "fast_path": "precision bf16, compile on (X)",
        "compile_seconds": 12.5, "peak_memory_mb": 2048.0, "parameters": 7_000_000, "best_eval_loss": 4.5}))
    (runs / "gpt2_step2_test").mkdir()
    (runs / "gpt2_step2_test" / "test_results.json").write_text(json.dumps({"test_loss": 4.6}))
    (runs / "gpt2_step2_test" / "blimp_results.json").write_text(json.dumps({"overall": 0.625}))
    info = {"device": "NVIDIA H200", "torch": "2.11", "cuda": "12.8", "smoke": False,
            "bf16_matmul_tflops": 700.0, "datasheet_bf16_tflops": 989.0}
    (row,) = gpu_check._runs_summary(runs, info)
    assert row["tokens_per_second"] == 100_000
    assert row["mfu_measured"] == pytest.approx(6 * 7e6 * 1e5 / 700e12)
    assert row["mfu_datasheet"] == pytest.approx(6 * 7e6 * 1e5 / 989e12)
    text = gpu_check.markdown({"info": info, "steps": [{"step": "gpt2_step2", "status": "ok", "seconds": 61.0}],
                               "runs": [row], "bench": None})
    assert "| gpt2_step2 | precision bf16, compile on (X) | 977 | 100,000 | 0.6% / 0.4% | 12.5 | 2,048 | 4.500 | " \
           "4.600 | 62.5 |" in text
