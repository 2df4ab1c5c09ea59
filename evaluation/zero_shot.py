"""`run.py evaluate`: the official BabyLM zero-shot suite on one saved model.

Every task folder found in --eval_dir (evaluation/tasks.py: BLiMP, supplement, EWoK,
entity tracking, WUG adjective and past tense, COMPS) and the reading CSV
(evaluation/reading.py) is scored with one backend (evaluation/scoring.py) under one
or both conventions. Results are written in the official pipeline's layout,

    <output_dir>/<model name>/<revision>/zero_shot[_strict]/<backend>/<task>/<data dir>/
    (evaluation/layout.py: by default <run>/results/<run name>/main/... for best_model/)
        predictions.json            {subtask: {"predictions": [{"id": "<UID>_<i>", "pred": ...}]}}
        best_temperature_report.txt per-group, per-UID and average accuracy (or Spearman's rho)

(`zero_shot/` holds the official convention, the one the leaderboard takes, and
`zero_shot_strict/` the strict one; every report ends with a CONVENTION line), with one
summary of every task beside them (zero_shot_summary_<backend>.json and .md) and
TensorBoard scalars.

Scores, as the official pipeline computes them: accuracy = macro mean over UIDs
(entity tracking: over the operation counts of a split, then over splits); WUG =
Spearman's rho (scipy) between the first candidate's softmax share and the human ratio."""

from __future__ import annotations

import argparse
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

import torch
from scipy.stats import spearmanr
from tqdm import tqdm
from transformers import PreTrainedModel

from custom_models import load_model_and_tokenizer
from evaluation import reading
from evaluation.layout import default_results_root, model_name_and_revision, revision_dir, zero_shot_dir
from evaluation.scoring import CONVENTIONS, TOKENS_PER_BATCH, Plan, default_backend, make_plans, pad_id_of, score_plans
from evaluation.tasks import READING_FILE, Task, choose_eval_set, find_tasks, read_task
from training.hardware import autocast, log_choice
from training.identity import WeightsIdentity, loaded, recorded, refuse_if_training, write_sidecar
from training.model_card import refresh_model_card, zero_shot_rows
from utils import RunLogger, UserError, get_device, write_json_atomic, write_text_atomic

ENTITY_SPLITS = ("regular", "ambiref", "move_contents")
T = TypeVar("T")


def summary_paths(where: Path, backend: str) -> tuple[Path, Path]:
    """zero_shot_summary_<backend>.json/.md: one per backend, so that a hybrid scored both ways keeps both."""
    return where / f"zero_shot_summary_{backend}.json", where / f"zero_shot_summary_{backend}.md"


def choose(scores: list[float], convention: str) -> tuple[int, bool]:
    """(index of the chosen candidate, whether the first, correct one counts as right).
    Official: the first maximum wins, so a tie with the first candidate is right. Strict:
    right only if the first candidate beats every other."""
    best = max(range(len(scores)), key=lambda c: (scores[c], -c))
    if convention == "official":
        return best, best == 0
    right = all(scores[0] > s for s in scores[1:])
    if not right and best == 0:  # a tie counted wrong: the prediction names the incorrect candidate it tied
        best = max(range(1, len(scores)), key=lambda c: (scores[c], -c))
    return best, right


def task_scores(task: Task, scores: list[list[float]], convention: str) -> dict:
    """Per-group accuracies, the average, and the predictions, from each item's candidate scores."""
    predictions: dict[str, list[dict]] = defaultdict(list)
    if task.metric == "spearman":
        shares, ratios = [], []
        for item, s in zip(task.items, scores, strict=True):
            chosen, _ = choose(s, convention)
            share = torch.softmax(torch.tensor(s, dtype=torch.float64), 0)[0].item()
            shares.append(share)
            ratios.append(item.ratio)
            uid_preds = predictions[item.uid]
            uid_preds.append({"id": f"{item.uid}_{len(uid_preds)}", "pred": item.completions[chosen], "prob": share})
        rho = float(spearmanr(shares, ratios)[0])
        return {"groups": {"UID": {"avg": rho}}, "average": rho, "predictions": _official(predictions),
                "subtasks": {uid: rho for uid in predictions}}
    total: dict[str, Counter] = defaultdict(Counter)
    correct: dict[str, Counter] = defaultdict(Counter)
    for item, s in zip(task.items, scores, strict=True):
        chosen, right = choose(s, convention)
        for group, value in item.groups.items():
            total[group][value] += 1
            correct[group][value] += right
        uid_preds = predictions[item.uid]
        chosen_text = (item.candidates if task.predicts_sentence else item.completions)[chosen]
        uid_preds.append({"id": f"{item.uid}_{len(uid_preds)}", "pred": chosen_text})
    groups = {g: {v: 100.0 * correct[g][v] / n for v, n in counts.items()} for g, counts in total.items()}
    # The collate step's fast scores: the share right in each subtask (a predictions.json key).
    subtasks = {uid: correct["UID"][uid] / n for uid, n in total["UID"].items()}
    uids = groups["UID"]
    if task.name == "entity_tracking":  # mean over operation counts within a split, then over splits
        split_means = []
        for split in ENTITY_SPLITS:
            keys = [k for k in uids if k.startswith(split)]
            if keys:
                uids[split] = sum(uids[k] for k in keys) / len(keys)
                split_means.append(uids[split])
        average = sum(split_means) / len(split_means)
    else:
        average = sum(uids.values()) / len(uids)
    return {"groups": groups, "average": average, "predictions": _official(predictions), "subtasks": subtasks,
            "ties": count_ties(scores)}


def count_ties(scores: list[list[float]]) -> int:
    """Items whose correct (first) candidate scores exactly as the best of the others: right under the
    official convention (its first maximum wins: official issue #34), wrong under the strict one."""
    return sum(s[0] == max(s[1:]) for s in scores)


def _official(predictions: dict[str, list[dict]]) -> dict:
    """{subtask: {"predictions": [...]}}, the official predictions.json."""
    return {uid: {"predictions": preds} for uid, preds in predictions.items()}


def report_text(result: dict, metric: str, convention: str) -> str:
    """best_temperature_report.txt as the official pipeline writes it (temperature 1), plus the convention."""
    name = "ACCURACY" if metric == "accuracy" else "SPEARMAN'S RHO"
    lines = ["TEMPERATURE: 1.00", ""]
    for group, values in result["groups"].items():
        lines.append(f"### {group.upper()} {name}")
        lines.extend(f"{k}: {v:.2f}" for k, v in values.items())
        lines.append("")
    lines += [f"### AVERAGE {name}", f"{result['average']:.2f}", "",
              f"CONVENTION: {convention}", ""]
    return "\n".join(lines)


def task_plans(tokenizer, task: Task, backend: str, convention: str, variant: str = "within_word_l2r") -> list[Plan]:
    """The plan of every candidate of `task`, flat: item by item, each item's candidates in order (`by_item`
    regroups anything in that order)."""
    sentences = [c for item in task.items for c in item.candidates]
    completions = [c for item in task.items for c in item.completions]
    return make_plans(tokenizer, sentences, completions, backend, convention, variant)


def by_item(task: Task, flat: Iterable[T]) -> list[list[T]]:
    """A flat per-candidate sequence, in `task_plans`' order, regrouped into the task's items."""
    flat = iter(flat)
    return [[next(flat) for _ in item.candidates] for item in task.items]


def score_task(model: PreTrainedModel, tokenizer, task: Task, backend: str, convention: str, tokens_per_batch: int,
               device: torch.device, variant: str, progress: bool = False) -> list[list[float]]:
    """Each item's candidate scores."""
    plans = task_plans(tokenizer, task, backend, convention, variant)
    positions = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
    longest = max(len(p.ids) for p in plans)
    if positions is not None and longest > positions:
        raise UserError(f"{task.data_dir} has a candidate of {longest} tokens but the model has {positions} "
                        f"positions: leave this task out (--zero_shot_tasks) or train with more positions")
    scores = score_plans(model, plans, backend, pad_id_of(tokenizer, backend), tokenizer.mask_token_id,
                         tokens_per_batch, device,
                         desc=f"{task.name}/{task.data_dir.name} ({backend}, {convention})" if progress else None)
    return by_item(task, scores)


def evaluate_model(model: PreTrainedModel, tokenizer, eval_dir: str | Path, out_root: str | Path,
                   model_name: str, backend: str, conventions: list[str],
                   tokens_per_batch: int = TOKENS_PER_BATCH,
                   device: torch.device | str = "cpu", variant: str = "within_word_l2r", precision: str = "fp32",
                   revision: str = "main", tasks: list[str] | None = None, logger: RunLogger | None = None,
                   identity: WeightsIdentity | None = None) -> dict:
    """Score every task found in `eval_dir` under each convention; write the official layout
    under `out_root`/`model_name`/`revision` and return {convention: {"<task>/<data dir>":
    {"metric", "score", "items", "subtasks", "seconds"}}} (reading under "reading"); `subtasks` holds
    the collate step's fast scores (the share right per subtask, WUG's rho, reading's spr/rt).
    `identity`: the weights scored, written beside each task's official files (model.json)."""
    device = torch.device(device)
    found = find_tasks(eval_dir, tasks)
    reading_csv = Path(eval_dir) / READING_FILE
    has_reading = reading_csv.is_file() and (tasks is None or "reading" in tasks)
    if not found and not has_reading:
        raise UserError(f"no official task folder in '{eval_dir}' (blimp_fast, ewok_fast, ..., reading/): pass the "
                        "official full_eval/ or fast_eval/ folder (make eval_data fetches them)")
    loaded = [read_task(name, folder) for name, folder in found]  # every file checked before any scoring
    summary: dict = {c: {} for c in conventions}
    with autocast(device, precision):
        for task in tqdm(loaded, desc="zero-shot tasks", disable=logger is None):
            for convention in conventions:
                started = time.perf_counter()
                scores = score_task(model, tokenizer, task, backend, convention, tokens_per_batch, device, variant,
                                    progress=logger is not None)
                result = task_scores(task, scores, convention)
                seconds = round(time.perf_counter() - started, 3)
                out = (zero_shot_dir(out_root, model_name, revision, convention, backend)
                       / task.name / task.data_dir.name)
                write_json_atomic(out / "predictions.json", result["predictions"])
                write_text_atomic(out / "best_temperature_report.txt", report_text(result, task.metric, convention))
                write_sidecar(out, identity)
                key = f"{task.name}/{task.data_dir.name}"
                summary[convention][key] = {"metric": task.metric, "score": result["average"],
                                            "items": len(task.items), "subtasks": result["subtasks"],
                                            "seconds": seconds}  # scoring (tokenizing included), for make bench
                if "ties" in result:
                    summary[convention][key]["ties"] = result["ties"]
                if logger:
                    unit = "rho" if task.metric == "spearman" else "%"
                    ties = f", {result['ties']} tied" if result.get("ties") else ""
                    logger.info(f"{key} ({convention}): {result['average']:.2f} {unit} over {len(task.items)} items"
                                f"{ties}")
        if has_reading:  # the same computation under both conventions: run once, written for each
            started = time.perf_counter()
            scores = reading.evaluate_reading(model, tokenizer, reading_csv, backend, device, progress=logger)
            seconds = round(time.perf_counter() - started, 3)
            for convention in conventions:
                out = zero_shot_dir(out_root, model_name, revision, convention, backend) / "reading"
                reading.write_outputs(out, scores)
                write_sidecar(out, identity)
                # The collate step reports both as fractions, {"spr": ..., "rt": ...}.
                fractions = {"spr": scores["self_paced_reading"] / 100, "rt": scores["eye_tracking"] / 100}
                summary[convention]["reading/eye_tracking"] = {"metric": "delta R2 %",
                                                               "score": scores["eye_tracking"],
                                                               "items": scores["rows"], "subtasks": fractions,
                                                               "seconds": seconds}
                summary[convention]["reading/self_paced_reading"] = {"metric": "delta R2 %",
                                                                     "score": scores["self_paced_reading"],
                                                                     "items": scores["rows"], "subtasks": fractions,
                                                                     "seconds": seconds}
    return summary


def summary_table(summary: dict, backend: str) -> str:
    """One markdown row per task, a score and a tied-items column per convention (the model card's table)."""
    return "\n".join(zero_shot_rows(summary, f"task ({backend})")) + "\n"


def evaluate_folder(model_dir: Path, eval_dir: Path, out_root: Path, args: argparse.Namespace,
                    conventions: list[str], logger: RunLogger, revision: str | None = None,
                    tensorboard_step: int = 0) -> dict:
    """Load one saved model, score it on `eval_dir`, write its results and its summary
    (zero_shot_summary_<backend>.json/.md under <out_root>/<model name>/<revision>); returns
    the summary record, with the identity of the weights it scored ("model"; a folder replaced while
    it was loaded is refused). TensorBoard gets the scores at `tensorboard_step` (a checkpoint's words)."""
    (model, tokenizer), identity = loaded(model_dir, lambda: load_model_and_tokenizer(model_dir,
                                                                                      args.attn_implementation))
    backend = args.backend or default_backend(model.config.model_type)
    model_name, default_revision = model_name_and_revision(model_dir)
    revision = revision or default_revision
    device = get_device(args.device)
    model.to(device)
    logger.info(f"zero-shot suite: {model_dir} ({model.config.model_type}, backend {backend}), revision {revision}, "
                f"conventions {', '.join(conventions)}, data {eval_dir}")
    summary = evaluate_model(model, tokenizer, eval_dir, out_root, model_name, backend, conventions,
                             args.zero_shot_tokens_per_batch or TOKENS_PER_BATCH, device, args.pll_variant,
                             args.precision, revision, args.zero_shot_tasks, logger, identity)
    record = {"model_dir": str(model_dir), "model": recorded(identity), "eval_dir": str(Path(eval_dir).resolve()),
              "backend": backend,
              "model_type": model.config.model_type, "precision": args.precision,
              "pll_variant": args.pll_variant, "model_name": model_name, "revision": revision,
              "results": summary}
    json_path, table_path = summary_paths(revision_dir(out_root, model_name, revision), backend)
    write_json_atomic(json_path, record)
    table = summary_table(summary, backend)
    write_text_atomic(table_path, table)
    for convention, tasks in summary.items():
        logger.metrics(tensorboard_step, {f"zero_shot/{convention}/{k}": v["score"] for k, v in tasks.items()})
    logger.info("\n" + table + f"-> {json_path}")
    return record


def run_evaluate(args: argparse.Namespace) -> dict:
    """The `evaluate` action: load --model_dir, score --eval_dir, write results and the summary."""
    model_dir = Path(args.model_dir)
    refuse_if_training(model_dir, "evaluate")
    eval_dir = choose_eval_set(args.eval_dir, args.fast)
    find_tasks(eval_dir)  # a wrong --eval_dir fails before the model is loaded
    conventions = list(CONVENTIONS) if args.convention == "both" else [args.convention]
    out_root = Path(args.results_dir or args.output_dir or default_results_root(model_dir))
    logger = RunLogger(out_root)
    try:
        log_choice(logger, args, compiles=False)
        record = evaluate_folder(model_dir, eval_dir, out_root, args, conventions, logger, args.revision)
        refresh_model_card(model_dir)  # the card's evaluation table
        return record
    finally:
        logger.close()
