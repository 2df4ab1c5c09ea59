"""The fast scores a submission reports per checkpoint, recomputed from what is on disk.

The official collate step (`collate_preds.py`, `get_revision_fast_eval_metrics`) does not
trust any summary: for every revision it reads each fast set's predictions.json and the
fast data files and scores them itself. So does `run.py submission`, with the same rules:
- BLiMP, supplement, EWoK: per subtask (a predictions.json key, the data file of that
  name), the share of predictions whose `pred`, stripped, equals sentence_good (EWoK:
  Target1), stripped, item by item in file order;
- entity tracking: regular.jsonl grouped by `numops` into regular_<n>_ops, against options[0];
- WUG adjective / past tense: per subtask, Spearman's rho of `prob` against the human `ratio`;
- reading: {"spr", "rt"}, the reading regressions (evaluation/reading.py) as fractions."""

from __future__ import annotations

import json
from pathlib import Path

from scipy.stats import spearmanr

from evaluation import reading
from evaluation.tasks import READING_FILE
from utils import UserError

# Each fast key: (the task folder and data folder of its predictions, how its subtasks are scored).
FAST_SETS = {"blimp": ("blimp", "blimp_fast"), "blimp_supplement": ("blimp", "supplement_fast"),
             "ewok": ("ewok", "ewok_fast"), "entity_tracking": ("entity_tracking", "entity_tracking_fast"),
             "wug_adj": ("wug_adj", "wug_adj_nominalization"), "wug_past": ("wug_past", "wug_past_tense"),
             "reading": ("reading", None)}


def _rows(path: Path) -> list[dict]:
    if not path.is_file():
        raise UserError(f"the fast data file {path} is missing: pass the fast_eval/ folder the checkpoints were "
                        "scored on")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _share_right(preds: list[dict], targets: list) -> float:
    """The collate step's accuracy: items compared in order (zip: the shorter list decides)."""
    pairs = list(zip(preds, targets, strict=False))  # the collate step zips: the shorter list decides
    if not pairs:
        raise UserError("a subtask of the predictions has no item in the fast data")
    right = sum(_stripped(p["pred"]) == _stripped(t) for p, t in pairs)
    return right / len(pairs)


def _stripped(value):
    return value.strip() if isinstance(value, str) else value


def target_scores(predictions: dict, data_dir: Path, target: str) -> dict[str, float]:
    """BLiMP, supplement, EWoK: {subtask: share right} against `target` of <data_dir>/<subtask>.jsonl."""
    return {subtask: _share_right(block["predictions"], [row[target] for row in _rows(data_dir / f"{subtask}.jsonl")])
            for subtask, block in predictions.items()}


def entity_tracking_scores(predictions: dict, data_dir: Path) -> dict[str, float]:
    """{regular_<n>_ops: share right}: regular.jsonl's items grouped by numops, against options[0]."""
    targets: dict[str, list] = {}
    for row in _rows(data_dir / "regular.jsonl"):
        targets.setdefault(f"regular_{row['numops']}_ops", []).append(row["options"][0])
    return {subtask: _share_right(block["predictions"], targets.get(subtask, []))
            for subtask, block in predictions.items()}


def wug_scores(predictions: dict, data_file: Path) -> dict[str, float]:
    """{subtask: Spearman's rho of each prediction's `prob` against the item's human `ratio`}."""
    ratios = [row["ratio"] for row in _rows(data_file)]
    scores = {}
    for subtask, block in predictions.items():
        pairs = list(zip(block["predictions"], ratios, strict=False))
        scores[subtask] = float(spearmanr([p["prob"] for p, _ in pairs], [r for _, r in pairs])[0])
    return scores


def reading_scores(predictions: dict, csv_path: Path) -> dict[str, float]:
    """{"spr", "rt"}: the reading regressions with the predictions' surprisals, as fractions."""
    frame = reading.read_csv(csv_path)
    rows = predictions["reading"]["predictions"]
    if len(rows) != len(frame):
        raise UserError(f"the reading predictions hold {len(rows)} rows, {csv_path} {len(frame)}: score the "
                        "checkpoint on this fast_eval/ folder again")
    frame["pred"] = [row["pred"] for row in rows]
    frame["prev_pred"] = [row["prev_pred"] for row in rows]
    fits = reading.fit_scores(frame)
    return {"spr": fits["self_paced_reading"] / 100, "rt": fits["eye_tracking"] / 100}


def prediction_path(zero_shot: Path, key: str) -> Path:
    """The predictions.json of fast set `key` under <revision>/zero_shot/<backend>."""
    task, data = FAST_SETS[key]
    return zero_shot / task / (data or "") / "predictions.json"


def revision_fast_scores(loaded: dict[str, dict], fast_eval_dir: Path) -> dict[str, dict[str, float]]:
    """{fast key: {subtask: score}} of one revision, from its predictions ({fast key: the
    predictions.json read at `prediction_path`}) and the data in `fast_eval_dir`."""
    scores = {}
    for key, (_, data) in FAST_SETS.items():
        predictions = loaded[key]
        if key == "reading":
            scores[key] = reading_scores(predictions, fast_eval_dir / READING_FILE)
        elif key == "entity_tracking":
            scores[key] = entity_tracking_scores(predictions, fast_eval_dir / data)
        elif key.startswith("wug"):
            scores[key] = wug_scores(predictions, fast_eval_dir / data / f"{data}.jsonl")
        else:
            scores[key] = target_scores(predictions, fast_eval_dir / data, "Target1" if key == "ewok" else
                                        "sentence_good")
    return scores
