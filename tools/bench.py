"""`make bench`: throughput measured side by side in one process, printed as a
markdown table and saved as JSON + markdown (default `save_dir/bench/`).

0. The hardware (CPU model, vector ISA, native bf16 or not, threads; the GPU when
   there is one) and what `--precision auto --compile auto` chooses on it.
1. This machine's matmul rate: a 2048x2048 product in bf16 and in float32.
2. Training tokens/s and peak memory of the real training code (`run.py train`
   with a step count) for GPT-2, BERT and Llama at the step2 size (4x256) and at
   8x512, each through the loops of `LOOPS` on the same model (dropout 0), data
   and batch: `auto` (the Makefile's default), the HF Trainer with the same
   options, the custom loop in plain float32 and compiled float32, and the old
   default `fast` (bf16 + torch.compile, whatever the hardware). Where bf16 is
   only emulated, the loops that force it are skipped (the matmul rates say why).
   Step time is the median over the measured steps after warm-up, of the
   fastest of --repeats runs (loops in alternating order); the first step
   (which pays the compile, with the compile caches off) is reported separately.
   The ratio of `auto` and of `fast` to every other loop is reported. MFU = 6 x
   parameters x tokens/s / the matmul rate of the loop's precision (bf16 or
   float32), with every parameter counted once (the
   tied input/output embedding is the LM head's matmul) and attention-score
   FLOPs not counted; for BERT in the custom loop, whose vocabulary head runs
   only at the masked positions, the head counts at --mlm_probability of them.
   Peak memory: the highest resident set size sampled during the run, above
   the process's size before it (CPU), or the CUDA allocator's peak.
3. Data loading: the custom loop's batch read (memory-mapped uint16 cache) as a
   share of its step with `auto`.
4. Loss curves: the first N steps of the plain float32 loop and the fast path on
   the same batches (GPT-2, step2 size); skipped where bf16 is emulated.
5. BLiMP scoring pairs/s (causal and pseudo-log-likelihood) and tokenization +
   packing MB/s.

Models are freshly initialised (speed does not depend on the weights), so the
bench needs no trained run. The machine is shared and noisy: compare ratios
measured in one run, not absolute numbers across runs."""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import shutil
import statistics
import threading
import time
from pathlib import Path

import torch
import torch._inductor.config as inductor_config
from transformers import AutoTokenizer

import evaluation.blimp as blimp
import training.hardware as hardware
from argument_parser import parse_args
from corpus.editions import resolve_files
from custom_models import build_model, count_parameters
from evaluation.official import official_pipeline_dir
from evaluation.report import event_scalars
from pretraining_dataset import read_lines, tokenize_and_pack
from tokenizer import train_tokenizer
from tools import bench_official
from tools.bench_report import RATIO_REFERENCES, markdown
from utils import get_device, write_json_atomic, write_text_atomic

ROOT = Path(__file__).resolve().parent.parent  # the repository
SHARED_BLIMP = ROOT.parent / "shared" / "data" / "blimp_dev"
SHARED_CORPUS = ROOT.parent / "shared" / "data" / "babylm" / "2023"
SHARED_FAST_EVAL = ROOT.parent / "shared" / "data" / "eval_fast"

SIZES = {"step2": ["--hidden_size", "256", "--num_layers", "4", "--num_heads", "4"],
         "8x512": ["--hidden_size", "512", "--num_layers", "8", "--num_heads", "8"]}
# The zero-shot section's models: tiny is ../shared's reference models' size (with TINY_VOCAB).
ZERO_SHOT_SIZES = {"tiny": ["--hidden_size", "64", "--num_layers", "2", "--num_heads", "2", "--intermediate_size",
                            "256"], "step2": SIZES["step2"]}
# The same model, batch and dropout (0, the default) in every loop; only the loop and its speed options differ.
# auto is the Makefile's default (FAST); trainer is the HF Trainer with the same options; fast is the
# fixed bf16 + compile that was the default before auto.
LOOPS = {
    "auto": ["--torch_training", "--precision", "auto", "--compile", "auto"],
    "trainer": ["--precision", "auto", "--compile", "auto"],
    "plain_fp32": ["--torch_training"],
    "fp32_compile": ["--torch_training", "--compile"],
    "bf16_eager": ["--torch_training", "--bf16"],
    "fast": ["--torch_training", "--bf16", "--compile"],
}
# Loops that force bf16: skipped where this machine only emulates it (a step of the step2 GPT-2 takes
# minutes; the matmul rates at the top of bench.md show by how much bf16 is slower there).
EMULATED_LOOPS = {"bf16_eager", "fast"}
KIND = {"gpt2": "clm", "llama": "clm", "bert": "mlm"}
TINY_VOCAB = 1000  # the vocabulary of ../shared's reference models: the zero-shot section's tiny size


def model_args(model_type: str, vocab: int) -> argparse.Namespace:
    """The Makefile's SMALL size (steps 2 and 4) through the real parser."""
    return parse_args(["train", "--tokenizer_dir", "-", "--output_dir", "-", "--model_type", model_type,
                       *SIZES["step2"], "--vocab_size", str(vocab)])


# --------------------------------------------------------------------------- matmul rate


def matmul_tflops(dtype: torch.dtype, n: int = 2048, repeats: int = 20, device: str = "cpu") -> float:
    """Median TFLOP/s of an n x n x n product in `dtype` on `device` (the one training runs on)."""
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(min(3, repeats)):
        a @ b
    times = []
    for _ in range(repeats):
        sync()
        started = time.perf_counter()
        a @ b
        sync()
        times.append(time.perf_counter() - started)
    return 2 * n**3 / statistics.median(times) / 1e12


# --------------------------------------------------------------------------- memory


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Peak memory used inside the `with` block, in MB: the CUDA allocator's peak, or on
    CPU the highest resident set size sampled every 2 ms above the size at entry."""

    def __init__(self, device: str) -> None:
        self.cuda = device == "cuda"
        self.peak_mb = 0.0

    def __enter__(self) -> PeakMemory:
        gc.collect()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            return self
        try:  # hand freed memory back to the OS so the baseline is honest (glibc only)
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except OSError:
            pass
        self.base, self.peak, self.done = _rss_bytes(), 0, False
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while not self.done:
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(0.002)

    def __exit__(self, *exc) -> None:
        if self.cuda:
            self.peak_mb = torch.cuda.max_memory_allocated() / 2**20
            return
        self.done = True
        self.thread.join()
        self.peak_mb = max(self.peak - self.base, 0) / 2**20


# --------------------------------------------------------------------------- training throughput


def bench_data_dir(corpus: Path, out_dir: Path) -> Path:
    """The corpus's training files with a small validation file: the run's final
    validation is not what is measured, so it should cost seconds."""
    folder = out_dir / "data"
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "babylm_10M").mkdir(parents=True)
    (folder / "babylm_dev").mkdir()
    for path in resolve_files(corpus, "train", None):
        link = folder / "babylm_10M" / path.name
        # Relative, so that a bundle made on one machine (tools/gpu_check.py) works on another.
        link.symlink_to(os.path.relpath(path.resolve(), link.parent))
    dev = resolve_files(corpus, "validation", None)[0]
    lines = dev.read_text(encoding="utf-8").splitlines()[:400]
    (folder / "babylm_dev" / dev.name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def train_run(options: list[str], steps: int, data_dir: Path, out_dir: Path, tokenizer_dir: Path,
              logging_steps: int = 100_000) -> tuple[object, float]:
    """Run the real training code for `steps` optimizer steps; returns its TrainingSetup
    (with the step clock) and the peak memory in MB."""
    import training.setup as training_setup

    args = parse_args(["train", "--data_dir", str(data_dir), "--tokenizer_dir", str(tokenizer_dir),
                       "--output_dir", str(out_dir), "--overwrite_output_dir",
                       "--cache_dir", str(out_dir.parent / "cache"),
                       "--max_steps", str(steps), "--eval_steps", "100000", "--save_steps", "100000",
                       "--logging_steps", str(logging_steps), "--warmup_ratio", "0.05", *options])
    if args.torch_training:
        import pytorch_training_loop as loop
    else:
        import huggingface_trainer_loop as loop
    try:
        with PeakMemory(get_device(args.device).type) as memory:  # as run.py trains
            setup = training_setup.prepare_training(args)
            try:
                loop.train(setup)
            finally:
                setup.close()
    finally:
        torch._dynamo.reset()  # the next model compiles from scratch, as it would in its own process
    return setup, memory.peak_mb


def bench_training(models: list[str], sizes: list[str], loops: list[str], tokenizer_dirs: dict, data_dir: Path,
                   out_dir: Path, warmup: int, measured: int, matmul: dict, repeats: int) -> list[dict]:
    """One row per (size, model, loop). Each configuration is run `repeats` times, the loops
    in alternating order (A B C D, D C B A, ...) so a slow spell of the shared machine does
    not fall on one loop only; the row is the repeat with the fastest median step."""
    rows = []
    emulated = set() if hardware.detect(get_device()).native_bf16 else EMULATED_LOOPS
    for size in sizes:
        for model_type in models:
            best: dict[str, dict] = {}
            for repeat in range(repeats):
                for loop in loops if repeat % 2 == 0 else loops[::-1]:
                    if loop in emulated:
                        continue  # emulated bf16: see the matmul rates (hundreds of times slower here)
                    row = _measure(size, model_type, loop, tokenizer_dirs, data_dir, out_dir, warmup, measured,
                                   matmul)
                    print(row, flush=True)
                    medians = best.get(loop, {}).get("step_seconds_per_repeat", []) + [row["step_seconds"]]
                    if loop not in best or row["step_seconds"] < best[loop]["step_seconds"]:
                        best[loop] = row
                    best[loop]["step_seconds_per_repeat"] = medians
            rows += [best[loop] for loop in loops if loop in best]
    return rows


def _measure(size: str, model_type: str, loop: str, tokenizer_dirs: dict, data_dir: Path, out_dir: Path,
             warmup: int, measured: int, matmul: dict) -> dict:
    options = ["--model_type", model_type, *SIZES[size], *LOOPS[loop]]
    setup, peak_mb = train_run(options, warmup + measured + 1, data_dir, out_dir / "run",
                               tokenizer_dirs[KIND[model_type]])
    clock = setup.step_clock  # training start, then each step's end
    steps = [b - a for a, b in zip(clock, clock[1:], strict=False)]
    step_s = statistics.median(steps[warmup: warmup + measured])
    tokens_per_s = setup.tokens_per_step / step_s
    params = count_parameters(setup.model)
    flops_per_token = 6 * params
    if model_type == "bert" and setup.args.torch_training:
        # The custom loop runs BERT's vocabulary head only at the masked ~15% of positions
        # (training/losses.py): count the FLOPs it does, not those of the stock forward.
        head = sum(p.numel() for p in setup.model.cls.parameters())
        flops_per_token = 6 * (params - (1 - setup.args.mlm_probability) * head)
    return {
        "size": size, "model": model_type, "loop": loop, "options": " ".join(LOOPS[loop]),
        "chosen": f"precision {setup.args.precision}, compile {'on' if setup.args.compile else 'off'}",
        "measured_steps": measured,
        "parameters": params, "tokens_per_step": setup.tokens_per_step,
        "step_seconds": round(step_s, 4), "tokens_per_second": round(tokens_per_s, 1),
        "first_step_seconds": round(steps[0], 2), "peak_memory_mb": round(peak_mb, 1),
        "flops_per_token": round(flops_per_token),
        # Against the matmul rate of the precision the loop computed in (bf16 or float32).
        "mfu": round(flops_per_token * tokens_per_s / (matmul[f"{_matmul_dtype(setup.args.precision)}_tflops"] * 1e12),
                     4),
    }


def _matmul_dtype(precision: str) -> str:
    """The matmul rate an MFU is measured against: bf16's for bf16 (and fp16, not measured
    separately), float32's for float32."""
    return "fp32" if precision == "fp32" else "bf16"


def ratios(rows: list[dict], reference: str = "fast") -> list[dict]:
    """The `reference` loop's speed over each other loop, per model and size (same run): the ratio
    of the loops' fastest repeats, and the median, min and max of the per-repeat ratios.
    A repeat runs the loops back to back (minutes apart), so its ratio compares like with
    like on a shared machine; the fastest repeats of two loops may come from different
    quiet spells. Both loops train the same batch, so step times give the speed ratio."""
    out = []
    for size in dict.fromkeys(r["size"] for r in rows):
        for model in dict.fromkeys(r["model"] for r in rows):
            by_loop = {r["loop"]: r for r in rows if r["size"] == size and r["model"] == model}
            if reference not in by_loop:
                continue
            ref, entry = by_loop.pop(reference), {"size": size, "model": model}
            for loop, row in by_loop.items():
                entry[f"{reference}_over_{loop}"] = round(ref["tokens_per_second"] / row["tokens_per_second"], 2)
                paired = [other / mine for other, mine in zip(row.get("step_seconds_per_repeat", []),
                                                               ref.get("step_seconds_per_repeat", []), strict=False)]
                if len(paired) > 1:
                    entry[f"{reference}_over_{loop}_per_repeat"] = {
                        "median": round(statistics.median(paired), 2), "min": round(min(paired), 2),
                        "max": round(max(paired), 2), "repeats": len(paired)}
            out.append(entry)
    return out


def bench_data_loading(tokenizer_dir: Path, data_dir: Path, out_dir: Path, auto_step_seconds: float | None,
                       repeats: int = 50) -> dict:
    """Median time of the custom loop's batch read + preparation, alone."""
    import training.setup as training_setup
    from pytorch_training_loop import epoch_order

    args = parse_args(["train", "--torch_training", "--data_dir", str(data_dir), "--tokenizer_dir", str(tokenizer_dir),
                       "--output_dir", str(out_dir / "run"), "--overwrite_output_dir",
                       "--cache_dir", str(out_dir / "cache"), *SIZES["step2"]])
    setup = training_setup.prepare_training(args)
    setup.logger.close()
    batches = epoch_order(len(setup.train_dataset), args.seed, 0).split(args.batch_size)
    times = []
    for i in range(min(repeats, len(batches))):  # a small corpus (data/sample) has fewer batches
        started = time.perf_counter()
        batch = setup.training_batch({"input_ids": setup.train_dataset.batch(batches[i])}, i)
        batch = {k: v.to(setup.device) for k, v in batch.items()}
        times.append(time.perf_counter() - started)
    seconds = statistics.median(times)
    row = {"what": "custom loop batch read (uint16 memmap) + labels", "seconds_per_batch": round(seconds, 6),
           "dtype": str(setup.train_dataset.blocks.dtype)}
    if auto_step_seconds:
        row["share_of_auto_step"] = round(seconds / auto_step_seconds, 4)
    return row


def bench_loss_curves(tokenizer_dir: Path, data_dir: Path, out_dir: Path, steps: int) -> dict:
    """Per-step training loss of the plain float32 loop and the fast path over the same batches."""
    curves = {}
    for loop in ("plain_fp32", "fast"):
        run = out_dir / f"curve_{loop}"
        train_run(["--model_type", "gpt2", *SIZES["step2"], *LOOPS[loop]], steps, data_dir, run, tokenizer_dir,
                  logging_steps=1)
        curves[loop] = event_scalars(run, "train/loss")[1]
    plain, fast = curves["plain_fp32"], curves["fast"]
    diffs = [abs(a - b) for a, b in zip(plain, fast, strict=True)]
    tail = max(len(plain) // 10, 1)
    return {"steps": len(plain), "plain_fp32": plain, "fast": fast,
            "max_abs_diff": round(max(diffs), 4), "mean_abs_diff": round(statistics.fmean(diffs), 4),
            "mean_abs_diff_last_half": round(statistics.fmean(diffs[len(diffs) // 2:]), 4),
            "plain_last_mean": round(statistics.fmean(plain[-tail:]), 4),
            "fast_last_mean": round(statistics.fmean(fast[-tail:]), 4),
            # step-to-step noise of the plain curve itself: the scale the differences compare to
            "plain_step_to_step": round(statistics.fmean(abs(a - b) for a, b in zip(plain[len(plain) // 2:],
                                                                                   plain[len(plain) // 2 + 1:],
                                                                                   strict=False)), 4)}


# --------------------------------------------------------------------------- BLiMP and packing


def bench_blimp(tokenizers: dict, blimp_dir: Path, batch_size: int) -> list[dict]:
    paradigms = blimp.load_paradigms(blimp_dir)
    pairs = sum(len(p.pairs) for p in paradigms)
    rows = []
    for model_type, kind, variant in (("gpt2", "clm", None), ("bert", "mlm", "within_word_l2r"),
                                      ("bert", "mlm", "token")):
        tok = tokenizers[kind]
        torch.manual_seed(0)
        model = build_model(model_args(model_type, len(tok)), tok).eval()
        started = time.perf_counter()
        blimp.evaluate_blimp(model, tok, paradigms, batch_size, "cpu", variant or "within_word_l2r")
        seconds = time.perf_counter() - started
        rows.append({"what": f"BLiMP {model_type} ({'PLL ' + variant if variant else 'causal'})",
                     "pairs": pairs, "seconds": round(seconds, 2), "pairs_per_second": round(pairs / seconds, 1)})
        print(rows[-1], flush=True)
    return rows


def bench_packing(tok, files: list[Path]) -> dict:
    lines = read_lines(files)
    megabytes = sum(len(line.encode()) + 1 for line in lines) / 1e6
    started = time.perf_counter()
    tokenize_and_pack(lines, tok, 128)
    seconds = time.perf_counter() - started
    return {"what": "tokenize + pack (1 process)", "megabytes": round(megabytes, 2), "seconds": round(seconds, 2),
            "mb_per_second": round(megabytes / seconds, 2)}


# --------------------------------------------------------------------------- report


# The loops whose speed over every other loop the bench reports: the default (auto) and the old one (fast).
def parse_options() -> argparse.Namespace:
    """The bench's options (defaults: ../shared's data when this checkout sits beside it, else the samples)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    blimp_dir = SHARED_BLIMP if SHARED_BLIMP.is_dir() else ROOT / "data" / "sample_eval" / "blimp"
    eval_dir = SHARED_FAST_EVAL if SHARED_FAST_EVAL.is_dir() else ROOT / "data" / "sample_eval" / "fast_eval"
    data_dir = SHARED_CORPUS if SHARED_CORPUS.is_dir() else ROOT / "data" / "sample"
    p.add_argument("--blimp_dir", type=Path, default=blimp_dir, help="BLiMP folder")
    p.add_argument("--data_dir", type=Path, default=data_dir, help="corpus for the tokenizers, packing and training")
    p.add_argument("--eval_dir", type=Path, default=eval_dir, help="official fast_eval folder for the zero-shot bench")
    p.add_argument("--official_pipeline", default=None,
                   help="the official evaluation pipeline the zero-shot section is timed against (default: "
                   "$OFFICIAL_PIPELINE, else ../shared/official_pipeline); the section is skipped with a note "
                   "when it is absent")
    p.add_argument("--zero_shot_size", choices=list(ZERO_SHOT_SIZES), default="tiny",
                   help="model size of the zero-shot section: tiny (2 x 64, a 1,000-token vocabulary: the "
                   "reference models' size, the hardest case for our scorer) or step2")
    p.add_argument("--zero_shot_backends", nargs="+", default=["causal", "mlm", "mntp"],
                   choices=["causal", "mlm", "mntp"], help="backends the zero-shot bench measures")
    p.add_argument("--vocab_size", type=int, default=16000)
    p.add_argument("--batch_size", type=int, default=64, help="BLiMP batch size")
    p.add_argument("--models", nargs="+", default=["gpt2", "bert", "llama"], choices=list(KIND))
    p.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    p.add_argument("--loops", nargs="+", default=["auto", "trainer", "plain_fp32", "fp32_compile", "fast"],
                   choices=list(LOOPS), help="bf16_eager (custom loop, bf16, no compile) separates compile's share; "
                   "the loops that force bf16 are skipped where bf16 is emulated")
    p.add_argument("--warmup", type=int, default=3, help="training steps before measuring")
    p.add_argument("--steps", type=int, default=8, help="measured training steps (median)")
    p.add_argument("--repeats", type=int, default=2,
                   help="runs of each training configuration, loops in alternating order; the fastest counts")
    p.add_argument("--curve_steps", type=int, default=200, help="steps of the loss-curve comparison (0: skip)")
    p.add_argument("--skip", nargs="*", default=[], choices=["training", "curves", "blimp", "zero_shot", "packing"],
                   help="sections to skip")
    p.add_argument("--out_dir", type=Path, default=ROOT / "save_dir" / "bench")
    return p.parse_args()


def bench_tokenizers(files: list[Path], out_dir: Path, vocab_size: int, name: str = "tokenizer") -> tuple[dict, dict]:
    """(folder, loaded tokenizer) of each kind, trained once under `out_dir` as <name>_<kind>
    (tools/gpu_check.py ships them in its bundle under the default name)."""
    tokenizer_dirs, tokenizers = {}, {}
    for kind in ("clm", "mlm"):
        folder = tokenizer_dirs[kind] = out_dir / f"{name}_{kind}"
        if not (folder / "tokenizer.json").is_file():
            train_tokenizer(files, folder, kind, vocab_size)
        tokenizers[kind] = AutoTokenizer.from_pretrained(folder)
    return tokenizer_dirs, tokenizers


def bench_info(args: argparse.Namespace, hw) -> dict:
    """What every number of the bench was measured on and with."""
    return {"torch_threads": torch.get_num_threads(), "cpu": hardware.cpu_name(), "torch": torch.__version__,
            "hardware": hw.describe() + (f"; GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""),
            "auto_choice": f"precision {hardware.choose_precision('auto', hw)[0]}, compile "
                           f"{'on' if hardware.choose_compile('auto', hw) else 'off'}",
            "blimp_dir": str(args.blimp_dir), "data_dir": str(args.data_dir), "eval_dir": str(args.eval_dir),
            "zero_shot_size": args.zero_shot_size, "batch": "32 x 128 tokens",
            "warmup_steps": args.warmup, "measured_steps": args.steps, "repeats": args.repeats}


def main() -> None:
    args = parse_options()
    # Every compile from scratch, so the first step shows the real compile time (not the on-disk cache's).
    inductor_config.force_disable_caches = True
    files = resolve_files(args.data_dir, "train", None)
    tokenizer_dirs, tokenizers = bench_tokenizers(files, args.out_dir, args.vocab_size)
    hw = hardware.detect(get_device())
    # Emulated bf16 (no native support) runs the product hundreds of times slower: a smaller one, twice.
    bf16_size = {"n": 2048, "repeats": 20} if hw.native_bf16 else {"n": 512, "repeats": 2}
    device = get_device().type
    result = {"info": bench_info(args, hw),
              "matmul": {"bf16_tflops": matmul_tflops(torch.bfloat16, **bf16_size, device=device),
                         "fp32_tflops": matmul_tflops(torch.float32, device=device)},
              "training": [], "ratios": [], "other": []}
    print(result["matmul"], flush=True)
    if "training" not in args.skip:
        data = bench_data_dir(args.data_dir, args.out_dir)
        result["training"] = bench_training(args.models, args.sizes, args.loops, tokenizer_dirs, data, args.out_dir,
                                            args.warmup, args.steps, result["matmul"], args.repeats)
        result["ratios"] = {reference: ratios(result["training"], reference) for reference in RATIO_REFERENCES}
        result["skipped_loops"] = [] if hw.native_bf16 else [loop for loop in args.loops if loop in EMULATED_LOOPS]
        auto = [r["step_seconds"] for r in result["training"]
                if r["loop"] == "auto" and r["model"] == "gpt2" and r["size"] == "step2"]
        result["data_loading"] = bench_data_loading(tokenizer_dirs["clm"], data, args.out_dir,
                                                    auto[0] if auto else None)
    if "curves" not in args.skip and args.curve_steps and not hw.native_bf16:
        print("loss curves skipped: they compare float32 with bf16, which this machine only emulates", flush=True)
    elif "curves" not in args.skip and args.curve_steps:
        data = bench_data_dir(args.data_dir, args.out_dir)
        result["loss_curves"] = bench_loss_curves(tokenizer_dirs["clm"], data, args.out_dir, args.curve_steps)
    if "blimp" not in args.skip:
        result["other"] += bench_blimp(tokenizers, args.blimp_dir, args.batch_size)
    if "zero_shot" not in args.skip:
        dirs = (tokenizer_dirs if args.zero_shot_size == "step2"
                else bench_tokenizers(files, args.out_dir, TINY_VOCAB, "tokenizer_tiny")[0])
        result["zero_shot"] = bench_official.bench_against_official(
            args.eval_dir, official_pipeline_dir(args.official_pipeline), dirs, args.zero_shot_size,
            ZERO_SHOT_SIZES[args.zero_shot_size], tuple(args.zero_shot_backends), args.out_dir)
    if "packing" not in args.skip:
        result["other"].append(bench_packing(tokenizers["clm"], files))
    text = markdown(result)
    write_json_atomic(args.out_dir / "bench.json", result)
    write_text_atomic(args.out_dir / "bench.md", text)
    print(text)


if __name__ == "__main__":
    main()
