"""`make bench`'s tables: the measurements of tools/bench.py as markdown (bench.md), with the
ratio rows of every training loop against the references."""

from __future__ import annotations

RATIO_REFERENCES = ("auto", "fast")


def _ratio_cell(ratio: dict, loop: str, reference: str = "fast") -> str:
    if f"{reference}_over_{loop}" not in ratio:
        return "-"
    paired = ratio.get(f"{reference}_over_{loop}_per_repeat")
    extra = f" (median {paired['median']}, {paired['min']}-{paired['max']} over {paired['repeats']})" if paired else ""
    return f"{ratio[f'{reference}_over_{loop}']}{extra}"


def _ratio_table(result: dict, reference: str) -> list[str]:
    """Markdown rows: `reference`'s speed over every other loop measured, per model and size."""
    rows = result["ratios"].get(reference, [])
    if not rows:
        return []
    others = [loop for loop in dict.fromkeys(r["loop"] for r in result["training"]) if loop != reference]
    out = ["", "| size | model | " + " | ".join(f"{reference} / {loop}" for loop in others) + " |",
           "|---|---|" + "---:|" * len(others)]
    return out + [f"| {r['size']} | {r['model']} | " + " | ".join(_ratio_cell(r, loop, reference) for loop in others)
                  + " |" for r in rows]


def _times(value: float | None) -> str:
    """'2.36x', or a dash where there is none (reading; results saved before the column)."""
    return "-" if value is None else f"{value}x"


def _zero_shot(z: dict | None) -> list[str]:
    """The zero-shot section: ours against the official pipeline, per data folder and per suite."""
    if not z:
        return []
    if "skipped" in z:
        return ["## Zero-shot suite against the official pipeline", "", f"Skipped: {z['skipped']}.", ""]
    out = ["## Zero-shot suite against the official pipeline", "",
           f"`{z['official_pipeline']}` against `run.py evaluate --convention official`, one thread each, one "
           f"after the other, on the same saved {z['size']} models (untrained), float32, the data of "
           f"`{z['eval_dir']}`. Per folder: each side's own work (model and data loading, scoring, writing), "
           "without the interpreter start and imports; agreeing: items with the same chosen candidate "
           "(reading: surprisals within 1e-4); arithmetic bound: the official loop's FLOPs over the least an exact "
           "scorer needs (tools/work_bound.py), the most skipping work can gain.", "",
           "| backend (model) | data | items | official s | ours s | official items/s | ours items/s | speedup "
           "| arithmetic bound | agreeing |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    out += [f"| {r['backend']} ({r['model']}) | {r['data']} | {r['items']} | {r['official_seconds']} | "
            f"{r['our_seconds']} | {r['official_items_per_second']} | {r['our_items_per_second']} | "
            f"{r['speedup']}x | {_times(r.get('arithmetic_bound'))} | {r['agreeing']}/{r['items']} |"
            for r in z["rows"]]
    out += ["", "| backend (model) | items | official s (per folder, summed) | ours s | speedup | official "
            "process s | our process s | speedup, whole processes | agreeing |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    out += [f"| {s['backend']} ({s['model']}) | {s['items']} | {s['official_seconds']} | {s['our_seconds']} | "
            f"{s['speedup']}x | {s['official_wall_seconds']} | {s['our_wall_seconds']} | {s['wall_speedup']}x | "
            f"{s['agreeing']}/{s['items']} |" for s in z["suites"]]
    return out + [""]


def markdown(result: dict) -> str:
    m = result["matmul"]
    out = [f"# make bench ({result['info']['cpu']}, {result['info']['torch_threads']} torch threads)", "",
           f"Hardware: {result['info']['hardware']}; `--precision auto --compile auto` chooses "
           f"{result['info']['auto_choice']} here.", "",
           f"2048x2048 matmul (bf16: 512x512 where emulated): bf16 {m['bf16_tflops']:.4f} TFLOP/s, "
           f"float32 {m['fp32_tflops']:.3f} TFLOP/s ({m['bf16_tflops'] / m['fp32_tflops']:.3g}x)", ""]
    if result["training"]:
        out += ["## Training throughput (median step after warm-up)", "",
                "| size | model | loop | params | tokens/s | step s | first step s | peak MB | MFU |",
                "|---|---|---|---:|---:|---:|---:|---:|---:|"]
        out += [f"| {r['size']} | {r['model']} | {r['loop']} (`{r['options']}`: {r['chosen']}) | "
                f"{r['parameters'] / 1e6:.2f}M | "
                f"{r['tokens_per_second']:.0f} | {r['step_seconds']:.3f} | {r['first_step_seconds']:.1f} | "
                f"{r['peak_memory_mb']:.0f} | {100 * r['mfu']:.1f}% |" for r in result["training"]]
        if result.get("skipped_loops"):
            out += ["", f"Not measured: {', '.join(result['skipped_loops'])} (they force bf16, which this machine "
                    f"only emulates: its bf16 matmul runs at 1/{m['fp32_tflops'] / m['bf16_tflops']:.0f} of the "
                    "float32 rate)."]
        for reference in RATIO_REFERENCES:
            out += _ratio_table(result, reference)
        out += ["", "Ratios: fastest repeat over fastest repeat; in brackets the median (min-max) of the "
                "per-repeat ratios, each from loops run back to back.", ""]
    if result.get("data_loading"):
        d = result["data_loading"]
        share = f", {100 * d['share_of_auto_step']:.2f}% of an auto step" if "share_of_auto_step" in d else ""
        out += [f"Data loading: {1000 * d['seconds_per_batch']:.2f} ms per batch ({d['dtype']} cache){share}", ""]
    if result.get("loss_curves"):
        c = result["loss_curves"]
        out += [f"Loss curves, first {c['steps']} steps on the same batches: plain fp32 vs fast path mean |diff| "
                f"{c['mean_abs_diff']} (last half {c['mean_abs_diff_last_half']}, max {c['max_abs_diff']}); "
                f"mean loss of the last tenth {c['plain_last_mean']} vs {c['fast_last_mean']}; the plain curve's "
                f"own step-to-step change {c['plain_step_to_step']}", ""]
    out += _zero_shot(result.get("zero_shot"))
    if result["other"]:
        out += ["## Scoring and packing", "", "| measurement | amount | seconds | throughput |", "|---|---:|---:|---:|"]
        for r in result["other"]:
            amount = f"{r['pairs']} pairs" if "pairs" in r else f"{r['megabytes']} MB"
            rate = f"{r['pairs_per_second']} pairs/s" if "pairs" in r else f"{r['mb_per_second']} MB/s"
            out.append(f"| {r['what']} | {amount} | {r['seconds']} | {rate} |")
        out.append("")
    return "\n".join(out) + f"\n{result['info']}\n"
