"""`make bench`: throughput measurements, printed as a markdown table and saved
as JSON + markdown (default `save_dir/bench/`).

Measured now: BLiMP scoring pairs/s for a step2_1-size GPT-2 (causal) and a
step4_1-size BERT (pseudo-log-likelihood, both variants), and tokenization +
packing throughput in MB of text per second. Models are freshly initialised at
the step sizes (speed does not depend on the weights), so the bench needs no
trained run. The machine is shared and noisy: compare ratios measured in one
run, not absolute numbers across runs."""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer

import blimp
from argument_parser import parse_args
from custom_models import build_model
from pretraining_dataset import read_lines, resolve_files, tokenize_and_pack
from tokenizer import train_tokenizer
from utils import write_json_atomic, write_text_atomic

ROOT = Path(__file__).resolve().parent
SHARED_BLIMP = ROOT.parent / "shared" / "data" / "blimp_dev"
SHARED_CORPUS = ROOT.parent / "shared" / "data" / "babylm" / "2023"


def model_args(model_type: str, vocab: int) -> argparse.Namespace:
    """The Makefile's SMALL size (steps 2 and 4) through the real parser."""
    return parse_args(["train", "--tokenizer_dir", "-", "--output_dir", "-", "--model_type", model_type,
                       "--hidden_size", "256", "--num_layers", "4", "--num_heads", "4", "--vocab_size", str(vocab)])


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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # The real dev data when this checkout sits beside ../shared, else the shipped samples.
    blimp_dir = SHARED_BLIMP if SHARED_BLIMP.is_dir() else ROOT / "data" / "sample_eval" / "blimp"
    data_dir = SHARED_CORPUS if SHARED_CORPUS.is_dir() else ROOT / "data" / "sample"
    p.add_argument("--blimp_dir", type=Path, default=blimp_dir, help="BLiMP folder")
    p.add_argument("--data_dir", type=Path, default=data_dir, help="corpus for the tokenizers and packing")
    p.add_argument("--vocab_size", type=int, default=16000)
    p.add_argument("--batch_size", type=int, default=64, help="BLiMP batch size")
    p.add_argument("--out_dir", type=Path, default=ROOT / "save_dir" / "bench")
    args = p.parse_args()

    files = resolve_files(args.data_dir, "train", None)
    tokenizers = {}
    for kind in ("clm", "mlm"):
        folder = args.out_dir / f"tokenizer_{kind}"
        if not (folder / "tokenizer.json").is_file():
            train_tokenizer(files, folder, kind, args.vocab_size)
        tokenizers[kind] = AutoTokenizer.from_pretrained(folder)

    rows = bench_blimp(tokenizers, args.blimp_dir, args.batch_size)
    rows.append(bench_packing(tokenizers["clm"], files))
    info = {"torch_threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
            "blimp_dir": str(args.blimp_dir), "data_dir": str(args.data_dir)}
    table = ["| measurement | amount | seconds | throughput |", "|---|---:|---:|---:|"]
    for r in rows:
        amount = f"{r['pairs']} pairs" if "pairs" in r else f"{r['megabytes']} MB"
        rate = f"{r['pairs_per_second']} pairs/s" if "pairs" in r else f"{r['mb_per_second']} MB/s"
        table.append(f"| {r['what']} | {amount} | {r['seconds']} | {rate} |")
    text = "\n".join(table) + f"\n\n{info}\n"
    write_json_atomic(args.out_dir / "bench.json", {"rows": rows, "info": info})
    write_text_atomic(args.out_dir / "bench.md", text)
    print(text)


if __name__ == "__main__":
    main()
