"""`make bench`'s zero-shot section: our scorer (`run.py evaluate`) against the official
pipeline itself (evaluation-pipeline-2025, `--official_pipeline` / $OFFICIAL_PIPELINE /
../shared/official_pipeline), each run in its own process, one thread each, one after the
other, on the same saved model, per backend and per data folder of the fast suite
(entity tracking and reading included).

Per data folder, each side's own work (loading the model and data, scoring, writing): the
official scorer's module run as __main__ once per folder, as its eval_zero_shot_fast.sh runs
it, inside one process (tools/official_timer.py) so that its interpreter start and imports
are left out; ours the per-task seconds `run.py evaluate --convention official` records in
its summary. Per backend, the whole suite both ways, and each side's process wall time
(start and imports included). Beside each speed, the agreement of the two predictions.json
files: the share of items whose chosen candidate is the same (reading: of rows whose
surprisals agree within 1e-4), so a speed is never bought with a different answer.

The models are saved fresh (seeded, untrained: speed does not depend on the weights) at
`--zero_shot_size` (tools/bench.py's ZERO_SHOT_SIZES): `tiny` is the size of ../shared's
reference models (2 layers x 64, a 1,000-token vocabulary), the hardest case for our scorer, whose largest saving is the
vocabulary head it skips; `step2` is the Makefile's SMALL size with the bench's tokenizers."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoConfig

from argument_parser import parse_args
from custom_models import build_model
from evaluation.tasks import READING_FILE, find_tasks, read_task
from tokenizer import load_tokenizer
from tools.work_bound import bound, model_size
from training.run_folder import save_model_folder

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = {"causal": ("gpt2", "clm"), "mlm": ("bert", "mlm"), "mntp": ("gpt_bert", "mlm")}
READING_TOLERANCE = 1e-4


def missing_official(official: Path) -> str | None:
    """Why the official zero-shot scorer cannot run here (None when it can)."""
    if not (official / "evaluation_pipeline" / "sentence_zero_shot" / "run.py").is_file():
        return f"no official pipeline at {official} (pass --official_pipeline or set OFFICIAL_PIPELINE)"
    probe = subprocess.run([sys.executable, "-c", "import evaluation_pipeline.sentence_zero_shot.read_files, "
                            "evaluation_pipeline.reading.run"], cwd=official, capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(official)})
    if probe.returncode != 0:
        return f"the official scorer does not import here: {probe.stderr.strip().splitlines()[-1]}"
    return None


def save_bench_model(backend: str, size: list[str], tokenizer_dir: Path, folder: Path) -> Path:
    """A seeded, untrained model of `backend`'s family of `size` (its size options), saved with its tokenizer."""
    model_type, _ = BACKENDS[backend]
    args = parse_args(["train", "--tokenizer_dir", str(tokenizer_dir), "--output_dir", "-", "--model_type", model_type,
                       *size])
    tokenizer = load_tokenizer(tokenizer_dir)
    torch.manual_seed(0)
    save_model_folder(build_model(args, tokenizer).eval(), tokenizer, args, folder)
    return folder


def _run(command: list[str], cwd: Path, pythonpath: Path | None = None) -> tuple[float, str]:
    """(seconds, stdout) of `command`, one thread; RuntimeError with its last lines when it fails."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} ... failed: {done.stderr.strip()[-600:]}")
    return seconds, done.stdout


def official_entry(official_task: str, data: Path, model_dir: Path, backend: str, out: Path) -> list[str]:
    """The official scorer's module and arguments for one data folder (or the reading CSV), as its
    eval_zero_shot_fast.sh gives them."""
    if official_task == "reading":
        return ["evaluation_pipeline.reading.run", "--model_path_or_name", str(model_dir), "--backend", backend,
                "--data_path", str(data), "--output_dir", str(out)]
    return ["evaluation_pipeline.sentence_zero_shot.run", "--model_path_or_name", str(model_dir), "--backend",
            backend, "--task", official_task, "--data_path", str(data), "--save_predictions", "--output_dir", str(out)]


def our_command(eval_dir: Path, model_dir: Path, backend: str, out: Path) -> list[str]:
    """`run.py evaluate` under the official convention only, as the official scorer computes."""
    return [sys.executable, str(ROOT / "run.py"), "evaluate", "--model_dir", str(model_dir), "--eval_dir",
            str(eval_dir), "--backend", backend, "--convention", "official", "--num_threads", "1",
            "--precision", "fp32", "--output_dir", str(out)]


def _same(a: float | None, b: float | None) -> bool:
    """Two reading surprisals agree: both missing (NaN: no previous word) or within READING_TOLERANCE."""
    if a is None or b is None or math.isnan(a) or math.isnan(b):
        return (a is None or math.isnan(a)) and (b is None or math.isnan(b))
    return abs(a - b) <= READING_TOLERANCE


def agreement(ours: Path, official: Path) -> tuple[int, int]:
    """(items on which the two predictions.json files agree, items): the same chosen candidate,
    or for reading both surprisals the same (`_same`)."""
    mine, theirs = json.loads(ours.read_text()), json.loads(official.read_text())
    same = total = 0
    for key, block in theirs.items():
        chosen = {p["id"]: p for p in mine.get(key, {}).get("predictions", [])}
        for p in block["predictions"]:
            total += 1
            q = chosen.get(p["id"])
            if q is None:
                continue
            if isinstance(p["pred"], str):
                same += q["pred"] == p["pred"]
            else:
                same += _same(q["pred"], p["pred"]) and _same(q["prev_pred"], p["prev_pred"])
    return same, total


def suite_units(eval_dir: Path) -> list[tuple[str, str, Path, str]]:
    """(official task, data folder name, data to give the official scorer, our summary's key) for
    every data folder of the suite, reading last."""
    units = [(task, folder.name, folder, f"{task}/{folder.name}") for task, folder in find_tasks(eval_dir)]
    if (eval_dir / READING_FILE).is_file():
        units.append(("reading", "reading", eval_dir / READING_FILE, "reading/eye_tracking"))
    return units


def bench_against_official(eval_dir: Path, official: Path, tokenizer_dirs: dict[str, Path], size: str,
                           size_options: list[str], backends: tuple[str, ...], out_dir: Path) -> dict:
    """Per backend and data folder: seconds and items/s of the official scorer and of ours, their
    ratio and the agreement of their predictions; per backend the whole suite, each side as one
    process (wall time, start and imports included). Returns {"skipped": why} when the official
    scorer cannot run here."""
    why = missing_official(official)
    if why is not None:
        print(f"zero-shot against the official pipeline skipped: {why}", flush=True)
        return {"skipped": why}
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="zero_shot_", dir=out_dir)).resolve()  # both sides run elsewhere
    units = suite_units(eval_dir.resolve())
    rows, suites = [], []
    for backend in backends:
        model_dir = save_bench_model(backend, size_options, tokenizer_dirs[BACKENDS[backend][1]],
                                     work / f"{backend}_model")
        tokenizer = load_tokenizer(model_dir)
        layers_hidden_vocab = model_size(AutoConfig.from_pretrained(model_dir, trust_remote_code=True))
        theirs_out, ours_out = work / "official" / backend, work / "ours" / backend
        plan = work / f"{backend}_plan.json"
        plan.write_text(json.dumps([official_entry(task, data, model_dir, backend, theirs_out)
                                    for task, _, data, _ in units]))
        official_wall, printed = _run([sys.executable, str(ROOT / "tools" / "official_timer.py"), str(plan)], work,
                                      official)
        timed = json.loads(printed.strip().splitlines()[-1])
        our_wall, _ = _run(our_command(eval_dir.resolve(), model_dir, backend, ours_out), ROOT)
        ours_root = ours_out / model_dir.name / "main"
        summary = json.loads((ours_root / f"zero_shot_summary_{backend}.json").read_text())["results"]["official"]
        for (task, folder, data, key), theirs in zip(units, timed["seconds"], strict=True):
            predictions = Path("reading" if task == "reading" else f"{task}/{folder}") / "predictions.json"
            same, items = agreement(ours_root / "zero_shot" / backend / predictions,
                                    theirs_out / model_dir.name / "main" / "zero_shot" / backend / predictions)
            mine = summary[key]["seconds"]
            rows.append({"backend": backend, "model": BACKENDS[backend][0], "data": folder, "items": items,
                         "official_seconds": round(theirs, 2), "our_seconds": round(mine, 2),
                         "official_items_per_second": round(items / theirs, 1),
                         "our_items_per_second": round(items / mine, 1), "speedup": round(theirs / mine, 2),
                         "arithmetic_bound": None if task == "reading" else  # reading is not a candidate task
                         round(bound(tokenizer, read_task(task, data), backend, *layers_hidden_vocab), 2),
                         "agreeing": same})
            print(rows[-1], flush=True)
        mine = [r for r in rows if r["backend"] == backend]
        suites.append({"backend": backend, "model": BACKENDS[backend][0], "items": sum(r["items"] for r in mine),
                       "agreeing": sum(r["agreeing"] for r in mine),
                       "official_seconds": round(sum(timed["seconds"]), 2),
                       "our_seconds": round(sum(r["our_seconds"] for r in mine), 2),
                       "official_wall_seconds": round(official_wall, 2), "our_wall_seconds": round(our_wall, 2),
                       "speedup": round(sum(timed["seconds"]) / sum(r["our_seconds"] for r in mine), 2),
                       "wall_speedup": round(official_wall / our_wall, 2)})
        print(suites[-1], flush=True)
    return {"official_pipeline": str(official), "size": size, "eval_dir": str(eval_dir), "rows": rows,
            "suites": suites}
