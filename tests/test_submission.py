"""The submission file (evaluation/submission.py): a complete results tree with the official
item counts collates to the official layout; a missing task or a wrong count is refused in one
line that names it; --partial writes what there is under a name that says so. The tree's model
folders are tiny models saved by the run folder's writer, and every result records the identity
of the folder it came from through our writers (model.json), as real evaluations write it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT
from official_tree import save_run_models, write_eval_set
from scipy.stats import spearmanr
from transformers import AutoTokenizer

from evaluation.aoa import write_surprisal_json
from evaluation.fast_scores import FAST_SETS
from evaluation.finetune import write_official
from evaluation.layout import (
    AOA_WORDS,
    FINETUNE_TASKS,
    FULL_SIZES,
    REVISIONS,
    ZERO_SHOT_ENTRIES,
    finetune_dir,
    revision_dir,
    zero_shot_dir,
)
from evaluation.submission import FAST_KEYS, build_submission
from evaluation.zero_shot import summary_paths
from training.identity import recorded, write_sidecar
from utils import UserError


def preds(name: str, sizes: int | dict[str, int]) -> dict:
    """A predictions.json with the given item counts ({subtask: count}, or one subtask of `sizes`)."""
    sizes = sizes if isinstance(sizes, dict) else {name: sizes}
    return {key: {"predictions": [{"id": f"{key}_{i}", "pred": 0} for i in range(n)]} for key, n in sizes.items()}


def write(path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def fast_predictions(data: Path, right: int) -> dict[str, dict]:
    """{task/data dir: predictions.json} of the fast sets in `data` (official_tree.write_eval_set), the
    first `right` items of every subtask answered right and the rest wrong (WUG: `prob` = item index)."""
    def rows(path):
        return [json.loads(line) for line in path.read_text().splitlines()]

    out = {}
    for key, (task, folder) in FAST_SETS.items():
        if key == "reading":
            out["reading"] = {"reading": {"predictions": [{"id": i, "pred": float((i * (right + 3)) % 11),
                                                           "prev_pred": float(i % 5)} for i in range(1726)]}}
            continue
        if key == "entity_tracking":
            groups: dict[str, list] = {}
            for row in rows(data / folder / "regular.jsonl"):
                groups.setdefault(f"regular_{row['numops']}_ops", []).append(row["options"][0])
        elif key.startswith("wug"):
            groups = {key: [None] * len(rows(data / folder / f"{folder}.jsonl"))}
        else:
            target = "Target1" if key == "ewok" else "sentence_good"
            groups = {p.stem: [r[target] for r in rows(p)] for p in sorted((data / folder).glob("*.jsonl"))}
        out[f"{task}/{folder}"] = {uid: {"predictions": [
            {"id": f"{uid}_{i}", "pred": t if i < right else "wrong", **({"prob": i} if t is None else {})}
            for i, t in enumerate(targets)]} for uid, targets in groups.items()}
    return out


def write_scored(folder: Path, data: dict, identity) -> None:
    """A task's predictions.json and, as evaluation/zero_shot.py writes it, the model.json naming its model."""
    write(folder / "predictions.json", data)
    write_sidecar(folder, identity)


@pytest.fixture
def run_dir(tmp_path, tok_dirs):
    """A run folder whose results/ hold everything a strict-small submission needs, at the official counts,
    its checkpoints scored on a fast_eval/ folder at the official counts (n-th checkpoint: n items right);
    best_model/ and every chck_* hold a tiny model, and each result names the folder's identity."""
    run = tmp_path / "mymodel"
    ids = save_run_models(run, AutoTokenizer.from_pretrained(tok_dirs["clm"]),
                          ["best_model", *REVISIONS["strict-small"]])
    root, name, main = run / "results", "mymodel", ids["best_model"]
    zero_shot = zero_shot_dir(root, name, "main", "official", "causal")
    for key, task, full_dir, _ in ZERO_SHOT_ENTRIES:
        write_scored(zero_shot / task / full_dir, preds(full_dir, FULL_SIZES[key]), main)
    write_scored(zero_shot / "reading", preds("reading", FULL_SIZES["reading"]), main)
    write_surprisal_json(zero_shot / "AoA_word" / "surprisal.json",
                         [{"step": rev, "word": f"w{i}", "surprisal": 1.0}
                          for rev in REVISIONS["strict-small"] for i in range(AOA_WORDS)], name,
                         models={rev: recorded(ids[rev]) for rev in REVISIONS["strict-small"]})
    entry = {"selection_metric": "accuracy", "best_epoch": 1, "metrics": {"accuracy": 0.5}}
    for task in FINETUNE_TASKS:
        write_official(root, name, "main", task, entry, [0] * FULL_SIZES[task], identity=main)
    fast = write_eval_set(tmp_path / "evaluation_data", full=False)
    for n, rev in enumerate(REVISIONS["strict-small"]):
        for key, data in fast_predictions(fast, right=n).items():
            write_scored(zero_shot_dir(root, name, rev, "official", "causal") / key, data, ids[rev])
        write(summary_paths(revision_dir(root, name, rev), "causal")[0], {"eval_dir": str(fast), "results": {}})
    return run


def test_a_complete_tree_collates_to_the_official_layout(run_dir):
    path = build_submission(run_dir).path
    assert path == run_dir / "results" / "mymodel" / "all_full_preds_and_fast_scores_causal.json"
    sub = json.loads(path.read_text())
    assert set(sub) == {"blimp", "blimp_supplement", "ewok", "entity_tracking", "wug_adj", "wug_past", "comps",
                        "reading", "aoa", "glue", "fast_eval_results"}
    assert sorted(sub["glue"]) == sorted(FINETUNE_TASKS)
    assert len(sub["glue"]["qqp"]["predictions"]) == 20215 and sub["glue"]["wsc"]["predictions"][0]["id"] == "wsc_0"
    assert len(sub["entity_tracking"]) == 18 and len(sub["blimp"]) == 67
    assert set(sub["fast_eval_results"]) == set(FAST_KEYS)
    # Recomputed from each checkpoint's predictions and the fast data, as the collate step does.
    blimp = sub["fast_eval_results"]["blimp"]
    assert len(blimp) == 19 and len(blimp[0]) == 67 and set(blimp[0].values()) == {0.0}  # chck_1M first: 0 right
    assert set(blimp[-1].values()) == {18 / 200}  # chck_100M: 18 of 200 right
    assert sub["fast_eval_results"]["entity_tracking"][2]["regular_5_ops"] == pytest.approx(2 / 159)
    assert sub["fast_eval_results"]["wug_adj"][0] == {"wug_adj": pytest.approx(spearmanr(
        range(200), [json.loads(r)["ratio"] for r in (run_dir.parent / "evaluation_data" / "fast_eval" /
                                                      "wug_adj_nominalization" / "wug_adj_nominalization.jsonl")
                     .read_text().splitlines()])[0])}
    reading = sub["fast_eval_results"]["reading"]
    assert set(reading[0]) == {"spr", "rt"} and reading[0] != reading[1]  # each checkpoint's own surprisals


def test_a_missing_task_is_named_and_nothing_is_written(run_dir):
    (finetune_dir(run_dir / "results", "mymodel", "main", "wsc") / "predictions.json").unlink()
    with pytest.raises(UserError, match=r"incomplete: finetune/wsc is missing .*--partial") as e:
        build_submission(run_dir)
    assert "\n" not in str(e.value)
    assert not list((run_dir / "results" / "mymodel").glob("all_full_preds*"))


@pytest.mark.parametrize("what, expected", [
    ("rte", r"finetune/rte/rte has 138 items, the official set 139"),
    ("checkpoint", r"the fast evaluation of chck_7M is missing"),
    ("subtask", r"blimp/blimp_filtered has no subtask wh_island"),
    ("aoa", r"AoA has records for chck_500K, which is not a strict-small checkpoint"),
])
def test_a_wrong_count_or_a_missing_checkpoint_is_named(run_dir, what, expected):
    root = run_dir / "results"
    if what == "rte":
        path = finetune_dir(root, "mymodel", "main", "rte") / "predictions.json"
        data = json.loads(path.read_text())
        data["rte"]["predictions"].pop()
        write(path, data)
    elif what == "aoa":  # the collate step counts distinct steps: one outside the track fails it
        path = zero_shot_dir(root, "mymodel", "main", "official", "causal") / "AoA_word" / "surprisal.json"
        data = json.loads(path.read_text())
        data["results"].append({"step": "chck_500K", "word": "w0", "surprisal": 1.0})
        write(path, data)
    elif what == "checkpoint":
        summary_paths(revision_dir(root, "mymodel", "chck_7M"), "causal")[0].unlink()
    else:
        path = zero_shot_dir(root, "mymodel", "main", "official", "causal") / "blimp" / "blimp_filtered" / \
            "predictions.json"
        data = json.loads(path.read_text())
        del data["wh_island"]
        write(path, data)
    with pytest.raises(UserError, match=expected):
        build_submission(run_dir)


def test_partial_writes_what_there_is_under_a_partial_name(run_dir):
    summary_paths(revision_dir(run_dir / "results", "mymodel", "chck_7M"), "causal")[0].unlink()
    out = subprocess.run([sys.executable, "run.py", "submission", "--model_dir", str(run_dir), "--partial"],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "missing: the fast evaluation of chck_7M" in out.stdout and "PARTIAL" in out.stdout
    sub = json.loads((run_dir / "results" / "mymodel" / "all_full_preds_and_fast_scores_causal_partial.json")
                     .read_text())
    assert len(sub["fast_eval_results"]["ewok"]) == 18 and "chck_7M" not in sub["fast_eval_revisions"]
    assert sub["missing"] == [m for m in sub["missing"] if "chck_7M" in m] and len(sub["missing"]) == 1
    refused = subprocess.run([sys.executable, "run.py", "submission", "--model_dir", str(run_dir)],
                             cwd=ROOT, capture_output=True, text=True)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1 and "chck_7M" in refused.stderr


def test_the_track_defaults_to_the_runs_own(run_dir):
    write(run_dir / "train_results.json", {"track": "strict"})  # trained under strict: its checkpoints go to 1000M
    with pytest.raises(UserError, match=r"AoA has no records for chck_200M"):
        build_submission(run_dir)
    assert build_submission(run_dir, track="strict-small").path.name == "all_full_preds_and_fast_scores_causal.json"
    write(run_dir / "train_results.json", {"track": "none"})  # checked nothing: strict-small's checkpoints
    assert build_submission(run_dir).path.is_file()
    with pytest.raises(UserError, match="a submission is for the strict-small or strict track, not 'none'"):
        build_submission(run_dir, track="none")


def test_a_rewritten_checkpoint_is_stale(run_dir, tok_dirs):
    """A rerun rewrote chck_7M/ after its fast evaluation and AoA: both are refused, naming the command."""
    save_run_models(run_dir, AutoTokenizer.from_pretrained(tok_dirs["clm"]), ["chck_7M"], seed=1)
    with pytest.raises(UserError, match=r"chck_7M is stale: scored step 8, 8,000 words \(digest \w{8}\), chck_7M/ is "
                                        r"now step 1, 1,000 words .*; redo it with `make evaluate_checkpoints "
                                        rf"STEP=mymodel SAVE_DIR={run_dir.parent}`") as refused:
        build_submission(run_dir)
    assert "\n" not in str(refused.value)
    sub = json.loads(build_submission(run_dir, partial=True).path.read_text())
    stale = [m for m in sub["missing"] if "chck_7M" in m]
    assert len(stale) == 2 and stale[0].startswith("AoA_word/surprisal.json's chck_7M is stale")
    assert stale[1].startswith("the fast evaluation of chck_7M is stale")
    assert "aoa" not in sub and "chck_7M" not in sub["fast_eval_revisions"] and len(sub["fast_eval_revisions"]) == 18


def test_a_tampered_weight_file_makes_the_final_models_results_stale(run_dir):
    weights = run_dir / "best_model" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size, another model
    weights.write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"incomplete: blimp/blimp_filtered \(full set\) is stale: scored step 1, "
                                        r"1,000 words \(digest \w{8}\), best_model/ is now step \? .*`make evaluate "
                                        r"STEP=mymodel SAVE_DIR=.* EVAL_SET=full_eval`"):
        build_submission(run_dir)
    sub = json.loads(build_submission(run_dir, partial=True).path.read_text())
    assert sum("is stale" in m for m in sub["missing"]) == len(ZERO_SHOT_ENTRIES) + 1 + len(FINETUNE_TASKS)
    assert any(m.startswith("finetune/wsc is stale") and "`make finetune STEP=mymodel" in m for m in sub["missing"])
    assert set(sub) >= {"aoa", "fast_eval_results"} and "blimp" not in sub and sub["glue"] == {}
