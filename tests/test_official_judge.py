"""The official pipeline as the judge (evaluation/official.py, `run.py submission`): a results
tree written by our own code (a tiny model's zero-shot predictions on data at the official item
counts, `run.py evaluate`; AoA through evaluation/aoa.py's writer; fine-tuning through
evaluation/finetune.py's writer) is accepted by the official collate step, unmodified, for
strict-small and strict with every revision, and its file equals ours; a tree with one file
missing is refused by it; the organisers' scorer (calculate_results_from_pred.py) gives the
scores our summaries give, COMPS included. Skipped cleanly without ../shared/official_pipeline
(or OFFICIAL_PIPELINE) or the packages it imports."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT
from official_tree import OFFICIAL, needs_official, write_eval_set
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

from evaluation.aoa import surprisal_records, word_surprisals, write_surprisal_json
from evaluation.finetune import write_official
from evaluation.layout import FINETUNE_TASKS, FULL_SIZES, REVISIONS, zero_shot_dir
from evaluation.official import first_difference, official_collate
from training.identity import recorded
from training.run_folder import RunFolder
from utils import parse_word_mark

pytestmark = needs_official()
NAME = "judged"


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "run.py", *argv], cwd=ROOT, capture_output=True, text=True)


def write_aoa(run: Path, model, tokenizer, track: str) -> None:
    """AoA_word/surprisal.json for every checkpoint of `track`: 8,005 words (one context each) scored by
    the tiny model once, written through our writer for each step."""
    words = {f"word{i}": [f"The child saw the word{i}."] for i in range(8005)}
    pairs = [(context.removesuffix(f" {word}."), word) for word, contexts in words.items() for context in contexts]
    surprisals = word_surprisals(model, tokenizer, pairs, "causal")
    records = [r for step in REVISIONS[track]
               for r in surprisal_records(step, parse_word_mark(step), words, surprisals)]
    out = zero_shot_dir(run / "results", NAME, "main", "official", "causal") / "AoA_word" / "surprisal.json"
    write_surprisal_json(out, records, NAME, models={step: recorded(RunFolder(run).identity(step))
                                                     for step in REVISIONS[track]})


@pytest.fixture(scope="module")
def judged(tmp_path_factory, tok_dirs):
    """A run folder whose results/ hold every file of a submission for both tracks, written by our code."""
    root = tmp_path_factory.mktemp("judge")
    data = root / "evaluation_data"
    write_eval_set(data, full=True)
    write_eval_set(data, full=False)
    tokenizer = AutoTokenizer.from_pretrained(tok_dirs["clm"])
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=64,
                                       bos_token_id=tokenizer.bos_token_id,
                                       eos_token_id=tokenizer.eos_token_id)).eval()
    run = root / NAME
    # Every revision a folder of the run, written as training writes them (the same weights: the results
    # of chck_1M copied to each revision below name weights that revision's folder holds).
    for folder in ("best_model", *dict.fromkeys(REVISIONS["strict-small"] + REVISIONS["strict"])):
        RunFolder(run).save_model(folder, model, tokenizer, {"model_type": "gpt2"}, step=1, words_seen=1)
    for folder, fast in (("best_model", []), ("chck_1M", ["--fast"])):
        done = _run("evaluate", "--model_dir", str(run / folder), "--eval_dir", str(data), *fast,
                    "--convention", "official")
        assert done.returncode == 0, done.stderr
    results = run / "results" / NAME
    for revision in dict.fromkeys(REVISIONS["strict-small"] + REVISIONS["strict"]):
        if revision != "chck_1M":  # every checkpoint as the one scored: the same files, our writer's
            shutil.copytree(results / "chck_1M", results / revision)
    for task in FINETUNE_TASKS:
        entry = {"selection_metric": "accuracy", "best_epoch": 1, "metrics": {"accuracy": 0.5}}
        write_official(run / "results", NAME, "main", task, entry, [i % 2 for i in range(FULL_SIZES[task])],
                       identity=RunFolder(run).identity())
    return run, data, model, tokenizer


@pytest.mark.parametrize("track", ["strict-small", "strict"])
def test_the_official_collate_step_accepts_our_tree(judged, track):
    run, _, model, tokenizer = judged
    write_aoa(run, model, tokenizer, track)
    done = _run("submission", "--model_dir", str(run), "--track", track, "--official_pipeline", str(OFFICIAL))
    assert done.returncode == 0, done.stderr + done.stdout
    assert "ours: complete" in done.stdout
    assert "official collate step: accepted; its file equals ours" in done.stdout
    written = json.loads((run / "results" / NAME / "all_full_preds_and_fast_scores_causal.json").read_text())
    assert len(written["fast_eval_results"]["blimp"]) == len(REVISIONS[track]) == (19 if track == "strict-small"
                                                                                  else 28)
    assert REVISIONS[track][-1] == ("chck_100M" if track == "strict-small" else "chck_1000M")


def test_the_official_collate_step_refuses_a_tree_with_a_file_missing(judged, tmp_path):
    run, data, model, tokenizer = judged
    write_aoa(run, model, tokenizer, "strict-small")
    copy = tmp_path / NAME
    shutil.copytree(run, copy, symlinks=True)
    (zero_shot_dir(copy / "results", NAME, "chck_7M", "official", "causal") / "wug_past" / "wug_past_tense" /
     "predictions.json").unlink()
    verdict = official_collate(copy / "results", NAME, "causal", "strict-small", data / "fast_eval")
    assert verdict.ran and not verdict.accepted
    assert "wug past tense data is missing" in verdict.message and "chck_7M" in verdict.message
    done = _run("submission", "--model_dir", str(copy))  # ours refuses first, naming the same file
    assert done.returncode == 1 and "the fast evaluation of chck_7M lacks wug_past" in done.stderr


def test_a_difference_from_the_official_file_is_named():
    assert first_difference({"a": [{"pred": "x"}], "b": 0.5}, {"a": [{"pred": "x"}], "b": 0.5}) is None
    assert first_difference({"a": [{"pred": "x"}]}, {"a": [{"pred": "y"}]}) == "/a[0]/pred: 'x' in ours, 'y' in theirs"
    assert "theirs also has ['c']" in first_difference({"a": 1}, {"a": 1, "c": 2})
    assert first_difference({"r": 0.1 + 0.2}, {"r": 0.3}) is None  # float noise is no difference


SCORER = """
import json, sys
from pathlib import Path
sys.path.insert(0, "evaluation_pipeline")
import calculate_results_from_pred as c
main, fast, data = (Path(p) for p in sys.argv[1:4])
def load(path):
    return json.loads(path.read_text())
full, quick = data / "full_eval", data / "fast_eval"
out = {
    "blimp/blimp_filtered": c._calculate_blimp_results(load(main / "blimp/blimp_filtered/predictions.json"),
                                                        full / "blimp_filtered"),
    "blimp/supplement_filtered": c._calculate_blimp_results(
        load(main / "blimp/supplement_filtered/predictions.json"), full / "supplement_filtered"),
    "ewok/ewok_filtered": c._calculate_ewok_results(load(main / "ewok/ewok_filtered/predictions.json"),
                                                     full / "ewok_filtered"),
    "entity_tracking/entity_tracking": c._calculate_entity_tracking_results(
        load(main / "entity_tracking/entity_tracking/predictions.json"), full / "entity_tracking"),
    "wug_adj/wug_adj_nominalization": c._calculate_wug_results(
        load(main / "wug_adj/wug_adj_nominalization/predictions.json"), full / "wug_adj_nominalization"),
    "wug_past/wug_past_tense": c._calculate_wug_results(
        load(main / "wug_past/wug_past_tense/predictions.json"), full / "wug_past_tense"),
    "comps/comps": c._calculate_comps_results(load(main / "comps/comps/predictions.json"), full / "comps"),
    "fast entity_tracking": c._calculate_entity_tracking_results(
        load(fast / "entity_tracking/entity_tracking_fast/predictions.json"), quick / "entity_tracking_fast"),
}
spr, rt = c._calculate_reading_results(load(main / "reading/predictions.json"), full / "reading/reading_data.csv")
out["reading/self_paced_reading"], out["reading/eye_tracking"] = spr, rt
print(json.dumps(out))
"""


def test_the_organisers_scorer_gives_our_scores(judged):
    run, data, _, _ = judged
    main = zero_shot_dir(run / "results", NAME, "main", "official", "causal")
    fast = zero_shot_dir(run / "results", NAME, "chck_1M", "official", "causal")
    done = subprocess.run([sys.executable, "-c", SCORER, str(main), str(fast), str(data)], cwd=OFFICIAL,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    theirs = json.loads(done.stdout)
    ours = json.loads((run / "results" / NAME / "main" / "zero_shot_summary_causal.json").read_text())
    ours = ours["results"]["official"]
    fast_ours = json.loads((run / "results" / NAME / "chck_1M" / "zero_shot_summary_causal.json").read_text())
    ours["fast entity_tracking"] = fast_ours["results"]["official"]["entity_tracking/entity_tracking_fast"]
    for key, score in theirs.items():
        expected = ours[key]["score"] * (100 if key.startswith("wug") else 1)  # the scorer reports rho x 100
        assert score == pytest.approx(expected, abs=1e-6), key
    assert 0 < theirs["comps/comps"] < 100 and len(theirs) == 10
