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
    if result.get("zero_shot"):
        z = result["zero_shot"]
        out += ["## Zero-shot suite against the official loop", "",
                f"{z[0]['items']} items ({z[0]['tasks']} task folders of {result['info']['eval_dir']}, the first "
                f"{result['info']['zero_shot_items']} items of each), step2-size models, official convention, "
                "float32, sdpa attention; the plain loop scores like the official pipeline (64 items a batch in "
                "file order, each candidate in turn, the head at every position; causal: log-softmax over every "
                "position; masked: a batch's copies padded together, 64 a pass).", "",
                "| backend (model) | ours items/s | plain loop items/s | speedup | max score difference |",
                "|---|---:|---:|---:|---:|"]
        out += [f"| {r['backend']} ({r['model']}) | {r['items_per_second']} | {r['plain_items_per_second']} | "
                f"{r['speedup']}x | {r['max_score_difference']:.1e} |" for r in z]
        out.append("")
    if result["other"]:
        out += ["## Scoring and packing", "", "| measurement | amount | seconds | throughput |", "|---|---:|---:|---:|"]
        for r in result["other"]:
            amount = f"{r['pairs']} pairs" if "pairs" in r else f"{r['megabytes']} MB"
            rate = f"{r['pairs_per_second']} pairs/s" if "pairs" in r else f"{r['mb_per_second']} MB/s"
            out.append(f"| {r['what']} | {amount} | {r['seconds']} | {rate} |")
        out.append("")
    return "\n".join(out) + f"\n{result['info']}\n"
