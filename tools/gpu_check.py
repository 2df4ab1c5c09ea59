"""`make gpu_check`: the pipeline run on one CUDA GPU and measured, in about 7 minutes,
ending in one markdown summary (`<out>/gpu_check.md`, with `gpu_check.json` beside it).

Two halves, because the GPU machine has only the repository, no network and no `datasets`:

- `bundle` (on the CPU, `make gpu_bundle`): copies the corpus slice and the BLiMP
  folder into `gpu_bundle/` (git-ignored), trains both tokenizers there and packs the
  dataset cache at the block size the run uses, so the GPU run never tokenizes.
- `run` (on the GPU machine, `make gpu_check`, its own python3): every step is a
  subprocess with a time limit, so one failure is recorded and the others still run:
  the step2 GPT-2, the step6-size GPT-2 and the step4 BERT trained for a time budget
  with the default fast path (`--precision auto --compile auto`), each tested with
  BLiMP; a gpt_bert hybrid and a distillation student for a few dozen steps; one
  process under torchrun through the NCCL process group; the bench (custom loop
  against the HF Trainer at the same options, step2 and 8x512 GPT-2). Tokens/s comes
  from the runs' own step clock, MFU = 6 x parameters x tokens/s against the GPU's
  measured bf16 matmul rate and its datasheet peak, and the peak GPU memory of each
  training run from train_results.json.

`run --smoke` does the same with tiny sizes and steps on any device (the CPU here):
what the CPU-side test runs."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from corpus.editions import resolve_files
from pretraining_dataset import load_splits
from tokenizer import load_tokenizer
from tools.bench import bench_data_dir, matmul_tflops

ROOT = Path(__file__).resolve().parent.parent
# Tokens per block of every run and of the cache the bundle packs (the bench trains on 128 too).
BLOCK = 128
# Dense bf16 tensor-core peaks from the datasheets, TFLOP/s (without sparsity).
DATASHEET_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0, "L4": 121.0}
SIZES = {"step2": ["--hidden_size", "256", "--num_layers", "4", "--num_heads", "4"],
         "step6": ["--hidden_size", "512", "--num_layers", "8", "--num_heads", "8"],
         "tiny": ["--hidden_size", "32", "--num_layers", "2", "--num_heads", "2"]}


# --------------------------------------------------------------------------- bundle (CPU)


def bundle(data_dir: Path, blimp_dir: Path, out: Path, vocab_size: int) -> None:
    """Copy the corpus and BLiMP into `out`, train the tokenizers and pack the cache there."""
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(data_dir, out / "data", ignore=shutil.ignore_patterns("babylm_100M", "*.zip"))
    shutil.copytree(blimp_dir, out / "blimp")
    for kind in ("clm", "mlm"):
        _run_py(["tokenizer", "--data_dir", str(out / "data"), "--tokenizer_type", kind, "--vocab_size",
                 str(vocab_size), "--tokenizer_dir", str(out / f"tokenizer_{kind}")], cwd=ROOT)
        _run_py(["dataset", "--data_dir", str(out / "data"), "--tokenizer_dir", str(out / f"tokenizer_{kind}"),
                 "--cache_dir", str(out / "cache"), "--block_size", str(BLOCK)], cwd=ROOT)
    # The bench's own corpus view (a short validation file), its tokenizers and cache: a GPU machine
    # without `datasets` must not tokenize there either.
    bench_dir = out / "bench"
    bench_data = bench_data_dir(out / "data", bench_dir)  # train and validation only
    for kind in ("clm", "mlm"):  # the bench loads both tokenizers
        shutil.copytree(out / f"tokenizer_{kind}", bench_dir / f"tokenizer_{kind}")
    specs = [(split, resolve_files(bench_data, split, None)) for split in ("train", "validation")]
    # Only GPT-2's cache: the check benches GPT-2 alone (the 64 MiB the working tree may carry).
    load_splits(specs, load_tokenizer(bench_dir / "tokenizer_clm"), BLOCK, bench_dir / "cache")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"bundle ready: {out} ({size / 2**20:.1f} MiB; the working tree that travels must stay under 64 MiB)")


def _run_py(argv: list[str], cwd: Path) -> None:
    subprocess.run([sys.executable, "run.py", *argv], cwd=cwd, check=True)


# --------------------------------------------------------------------------- run (GPU)


class Steps:
    """Runs the check's steps as subprocesses with time limits and keeps what each did."""

    def __init__(self, out: Path, deadline: float) -> None:
        self.out, self.deadline, self.rows = out, deadline, []

    def run(self, name: str, argv: list[str], limit_s: float, env: dict | None = None) -> bool:
        left = self.deadline - time.time()
        if left < 20:
            self.rows.append({"step": name, "status": "skipped (the check's time was up)"})
            return False
        started = time.time()
        log = self.out / f"{name}.log"
        with open(log, "w") as f:
            try:
                done = subprocess.run(argv, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, timeout=min(limit_s, left),
                                      env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
                status = "ok" if done.returncode == 0 else f"failed (exit {done.returncode}, see {log.name})"
            except subprocess.TimeoutExpired:
                status = f"timed out after {min(limit_s, left):.0f} s (see {log.name})"
        self.rows.append({"step": name, "status": status, "seconds": round(time.time() - started, 1)})
        return status == "ok"


def run_check(bundle_dir: Path, out: Path, smoke: bool, minutes: float) -> dict:
    """Every step of the check; returns (and writes) the summary."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    info = {"device": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__,
            "smoke": smoke, "cuda": torch.version.cuda if cuda else None}
    info["bf16_matmul_tflops"] = matmul_tflops(torch.bfloat16, n=8192, device=device) if cuda else None
    info["datasheet_bf16_tflops"] = next((v for k, v in DATASHEET_BF16_TFLOPS.items() if k in info["device"]), None)
    steps = Steps(out, time.time() + minutes * 60)
    data = ["--data_dir", str(bundle_dir / "data"), "--cache_dir", str(bundle_dir / "cache"),
            "--block_size", str(BLOCK)]
    tok = {kind: ["--tokenizer_dir", str(bundle_dir / f"tokenizer_{kind}")] for kind in ("clm", "mlm")}
    budget = "0.05" if smoke else "0.75"  # minutes of optimizer steps, compiling included
    blimp = ["--blimp_dir", str(bundle_dir / "blimp")]
    runs = out / "runs"
    py = [sys.executable, "run.py"]
    trained = {}
    models = [("gpt2_step2", "gpt2", "step2", "clm"), ("gpt2_step6", "gpt2", "step6", "clm"),
              ("bert_step4", "bert", "step2", "mlm")]
    for name, model_type, size, kind in models:
        size = "tiny" if smoke else size
        ok = steps.run(name, [*py, "train", "--torch_training", *data, *tok[kind], "--output_dir", str(runs / name),
                              "--overwrite_output_dir", "--model_type", model_type, *SIZES[size],
                              "--max_minutes", budget, "--batch_size", "32", "--eval_blocks", "200",
                              "--eval_steps", "100000", "--precision", "auto", "--compile", "auto",
                              "--device", device], limit_s=240)
        if ok:
            trained[name] = runs / name
            steps.run(f"{name}_test", [*py, "test", *data, "--model_dir", str(runs / name / "best_model"),
                                       "--output_dir", str(runs / f"{name}_test"), *blimp, "--precision", "auto",
                                       "--device", device], limit_s=120)
    few = ["--max_steps", "8" if smoke else "40", "--batch_size", "16", "--eval_steps", "100000",
           "--precision", "auto", "--compile", "off", "--device", device]
    steps.run("hybrid", [*py, "train", "--torch_training", *data, *tok["mlm"], "--output_dir", str(runs / "hybrid"),
                         "--overwrite_output_dir", "--model_type", "gpt_bert", "--hybrid_ratio", "1:1",
                         *SIZES["tiny" if smoke else "step2"], *few], limit_s=120)
    if "gpt2_step2" in trained:
        steps.run("distillation", [*py, "train", "--torch_training", *data, *tok["clm"], "--output_dir",
                                   str(runs / "distilled"), "--overwrite_output_dir", "--model_type", "gpt2",
                                   *SIZES["tiny" if smoke else "step2"], "--teacher_models",
                                   str(trained["gpt2_step2"] / "best_model"), *few], limit_s=120)
    steps.run("torchrun_1_process", [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                     "--nproc_per_node=1", "run.py", "train", "--torch_training", *data, *tok["clm"],
                                     "--output_dir", str(runs / "torchrun"), "--overwrite_output_dir",
                                     *SIZES["tiny" if smoke else "step2"], *few], limit_s=120)
    bench_out = bundle_dir / "bench"  # its tokenizers and cache come with the bundle
    steps.run("bench", [sys.executable, "-m", "tools.bench", "--data_dir", str(bundle_dir / "data"), "--blimp_dir",
                        str(bundle_dir / "blimp"), "--out_dir", str(bench_out), "--models", "gpt2", "--sizes",
                        *(["step2"] if smoke else ["step2", "8x512"]), "--loops", "auto", "trainer", "--skip",
                        "blimp", "packing", "curves", "zero_shot", "--warmup", "2" if smoke else "3", "--steps",
                        "2" if smoke else "10", "--repeats", "1"], limit_s=300)
    result = {"info": info, "steps": steps.rows, "runs": _runs_summary(runs, info), "bench": _read(bench_out /
                                                                                                     "bench.json")}
    (out / "gpu_check.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "gpu_check.md").write_text(markdown(result))
    return result


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _runs_summary(runs: Path, info: dict) -> list[dict]:
    """Per trained model: tokens/s over its optimizer steps, MFU, peak memory, test loss, BLiMP."""
    rows = []
    for name in ("gpt2_step2", "gpt2_step6", "bert_step4", "hybrid", "distilled", "torchrun"):
        train = _read(runs / name / "train_results.json")
        if train is None:
            continue
        tokens_s = train["tokens_seen"] / train["step_seconds"] if train.get("step_seconds") else None
        row = {"run": name, "steps": train["steps"], "tokens_per_second": tokens_s, "fast_path": train["fast_path"],
               "compile_seconds": train["compile_seconds"], "peak_memory_mb": train.get("peak_memory_mb"),
               "parameters": train.get("parameters"), "best_eval_loss": train["best_eval_loss"]}
        if tokens_s and row["parameters"]:
            flops = 6 * row["parameters"] * tokens_s
            for key, rate in (("mfu_measured", info["bf16_matmul_tflops"]), ("mfu_datasheet",
                                                                              info["datasheet_bf16_tflops"])):
                row[key] = flops / (rate * 1e12) if rate else None
        test = _read(runs / f"{name}_test" / "test_results.json")
        blimp = _read(runs / f"{name}_test" / "blimp_results.json")
        row["test_loss"] = test["test_loss"] if test else None
        row["blimp"] = blimp["overall"] if blimp else None
        rows.append(row)
    return rows


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def markdown(result: dict) -> str:
    """The summary: the device, every step's outcome, each run's numbers, the bench's loops."""
    i = result["info"]
    out = [f"# make gpu_check ({i['device']}, torch {i['torch']}, CUDA {i['cuda']}{', smoke' if i['smoke'] else ''})",
           "", f"bf16 matmul: {_fmt(i['bf16_matmul_tflops'], '.0f')} TFLOP/s measured (8192^3), "
           f"{_fmt(i['datasheet_bf16_tflops'], '.0f')} TFLOP/s datasheet", "",
           "| step | status | seconds |", "|---|---|---:|"]
    out += [f"| {r['step']} | {r['status']} | {_fmt(r.get('seconds'), '.1f')} |" for r in result["steps"]]
    out += ["", "| run | fast path | steps | tokens/s | MFU (measured / datasheet) | compile s | peak MB | "
            "best val loss | test loss | BLiMP |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["runs"]:
        mfu = f"{_fmt(r.get('mfu_measured'), '.1%')} / {_fmt(r.get('mfu_datasheet'), '.1%')}"
        out.append(f"| {r['run']} | {r['fast_path']} | {r['steps']} | {_fmt(r['tokens_per_second'], ',.0f')} | {mfu} "
                   f"| {r['compile_seconds']} | {_fmt(r['peak_memory_mb'], ',.0f')} | {r['best_eval_loss']:.3f} | "
                   f"{_fmt(r['test_loss'], '.3f')} | {_fmt(r['blimp'] and 100 * r['blimp'], '.1f')} |")
    bench = result.get("bench")
    if bench:
        out += ["", "Bench (custom loop `auto` against the HF Trainer at the same options):", "",
                "| size | loop | tokens/s | MFU | peak MB |", "|---|---|---:|---:|---:|"]
        out += [f"| {r['size']} | {r['loop']} | {r['tokens_per_second']:,.0f} | {r['mfu']:.1%} | "
                f"{r['peak_memory_mb']:,.0f} |" for r in bench.get("training", [])]
        for r in bench.get("ratios", {}).get("auto", []):
            out.append(f"\n{r['size']}: custom loop / Trainer = {r.get('auto_over_trainer', '-')}")
    return "\n".join(out) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bundle", help="on the CPU: corpus, BLiMP, tokenizers and cache into --out")
    b.add_argument("--data_dir", type=Path, default=ROOT.parent / "shared" / "data" / "babylm" / "2023")
    b.add_argument("--blimp_dir", type=Path, default=ROOT.parent / "shared" / "data" / "blimp_dev")
    b.add_argument("--out", type=Path, default=ROOT / "gpu_bundle")
    b.add_argument("--vocab_size", type=int, default=16000)
    r = sub.add_parser("run", help="on the GPU machine: every step, then the summary")
    r.add_argument("--bundle", type=Path, default=ROOT / "gpu_bundle")
    r.add_argument("--out", type=Path, default=ROOT / "save_dir" / "gpu_check")
    r.add_argument("--minutes", type=float, default=7.5, help="the whole check's time; later steps are skipped")
    r.add_argument("--smoke", action="store_true", help="tiny sizes and steps: the CPU-side check of this script")
    args = p.parse_args()
    if args.command == "bundle":
        bundle(args.data_dir, args.blimp_dir, args.out, args.vocab_size)
    else:
        print(markdown(run_check(args.bundle, args.out, args.smoke, args.minutes)))


if __name__ == "__main__":
    main()
