"""`run.py curve`: BLiMP and validation loss of a run's words-seen checkpoints, checked
against scoring each folder on its own; the report's learning-curve plot and table."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import SAMPLE, run_loop

import run
from corpus.editions import resolve_files
from custom_models import load_model
from evaluation.blimp import evaluate_blimp, load_paradigms
from evaluation.report import write_report
from pretraining_dataset import load_blocks
from tokenizer import load_tokenizer
from training.validation import eval_collator, eval_dataset, evaluate_lm

BLIMP_SAMPLE = SAMPLE.parent / "sample_eval" / "blimp"


@pytest.fixture(scope="module")
def curved_run(tmp_path_factory, tok_dirs):
    """A tiny run with three word marks, then its learning curve through the CLI."""
    from conftest import TINY_MODEL

    from argument_parser import parse_args

    root = tmp_path_factory.mktemp("curve")
    out = root / "best_recipe"
    args = parse_args(["train", "--data_dir", str(SAMPLE), "--cache_dir", str(root / "cache"), "--tokenizer_dir",
                       str(tok_dirs["clm"]), *TINY_MODEL, "--output_dir", str(out), "--torch_training",
                       "--max_steps", "30", "--batch_size", "4", "--learning_rate", "3e-3", "--eval_steps", "10",
                       "--checkpoint_words", "500", "1500", "2500"])
    results = run_loop("pytorch", args)
    code = run.main(["curve", "--model_dir", str(out), "--blimp_dir", str(BLIMP_SAMPLE),
                     "--cache_dir", str(root / "cache")])
    assert code == 0
    return root, out, results


def test_curve_points_match_scoring_each_folder(curved_run):
    root, out, results = curved_run
    points = json.loads((out / "learning_curve.json").read_text())["points"]
    names = [p["name"] for p in points]
    assert set(names) == {*results["checkpoint_words"], "best_model"}
    assert [p["words"] for p in points] == sorted(p["words"] for p in points)
    best = next(p for p in points if p["name"] == "best_model")
    assert best["words"] == results["best_words_seen"] and best["step"] == results["best_step"]
    assert 0 < best["words"] <= results["words_seen"]
    for name, saved in results["checkpoint_words"].items():
        point = next(p for p in points if p["name"] == name)
        assert (point["words"], point["step"]) == (saved["words_seen"], saved["step"])

    # Each point's numbers are those of scoring that folder directly.
    tokenizer = load_tokenizer(out / "best_model", "--model_dir")
    blocks, _ = load_blocks(resolve_files(SAMPLE, "validation", None), tokenizer, 32, root / "cache", "validation")
    paradigms = load_paradigms(BLIMP_SAMPLE)
    for point in (points[0], best):
        model = load_model(out / point["name"])
        loss = evaluate_lm(model, eval_dataset(blocks, tokenizer, True, 0.15), eval_collator(tokenizer, True), 64,
                           "cpu", "fp32")["loss"]
        assert point["eval_loss"] == pytest.approx(loss, abs=1e-6)
        assert point["blimp"] == pytest.approx(evaluate_blimp(model, tokenizer, paradigms)["overall"], abs=1e-9)
    # The model learns: the best model's validation loss is below the first checkpoint's.
    assert best["eval_loss"] < points[0]["eval_loss"]


def test_report_plots_the_curve(curved_run):
    root, out, _ = curved_run
    report = write_report(root).read_text()
    assert "## Learning curves" in report and "![learning curves](learning_curves.png)" in report
    assert (root / "learning_curves.png").stat().st_size > 10_000
    assert "| best_recipe | best_model |" in report


def test_curve_of_a_run_without_marks_or_results(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    assert run.main(["curve", "--model_dir", str(tmp_path / "run"), "--blimp_dir", str(BLIMP_SAMPLE)]) == 1
    assert "no finished training run (no train_results.json)" in capsys.readouterr().err
    (tmp_path / "run" / "train_results.json").write_text(json.dumps({"best_step": 3}))
    assert run.main(["curve", "--model_dir", str(tmp_path / "run"), "--blimp_dir", str(BLIMP_SAMPLE)]) == 1
    assert "train it with --checkpoint_words" in capsys.readouterr().err
    assert not (tmp_path / "run" / "learning_curve.json").exists()


def test_curve_eval_blocks_scores_the_evenly_spaced_blocks(curved_run, tmp_path):
    """--eval_blocks 3: each point's validation loss is that of the first, middle and last dev blocks."""
    root, out, _ = curved_run
    run_dir = shutil.copytree(out, tmp_path / "run")  # a copy: the fixture's learning_curve.json stays
    assert run.main(["curve", "--model_dir", str(run_dir), "--blimp_dir", str(BLIMP_SAMPLE),
                     "--cache_dir", str(root / "cache"), "--eval_blocks", "3"]) == 0
    curve = json.loads((run_dir / "learning_curve.json").read_text())
    assert curve["eval_blocks"] == 3
    best = next(p for p in curve["points"] if p["name"] == "best_model")
    tokenizer = load_tokenizer(run_dir / "best_model", "--model_dir")
    blocks, _ = load_blocks(resolve_files(SAMPLE, "validation", None), tokenizer, 32, root / "cache", "validation")
    model = load_model(run_dir / "best_model")

    def loss_of(chosen):
        return evaluate_lm(model, eval_dataset(chosen, tokenizer, True, 0.15), eval_collator(tokenizer, True), 64,
                           "cpu", "fp32")["loss"]

    n = len(blocks)
    assert n > 3
    assert best["eval_loss"] == pytest.approx(loss_of(blocks[[0, round((n - 1) / 2), n - 1]]), abs=1e-6)
    assert best["eval_loss"] != pytest.approx(loss_of(blocks), abs=1e-4)


def test_evaluate_checkpoints_scores_each_revision_as_evaluate_does(curved_run, tmp_path, capsys):
    """`run.py evaluate_checkpoints`: every chck_* folder scored on the fast sets and filed as its
    revision; each revision's scores equal `run.py evaluate` on that folder alone; AoA is skipped
    with a note (no AoA data in the sample sets); the report draws a curve per task."""
    root, out, results = curved_run
    run_dir = shutil.copytree(out, tmp_path / "save" / "mystep")
    sample_fast = SAMPLE.parent / "sample_eval" / "fast_eval"
    tasks = ["--zero_shot_tasks", "blimp", "ewok", "wug_adj"]
    assert run.main(["evaluate_checkpoints", "--model_dir", str(run_dir), "--eval_dir", str(sample_fast),
                     *tasks]) == 0
    assert "AoA skipped: no AoA data" in capsys.readouterr().err + (run_dir / "results" / "log.txt").read_text()
    scores = json.loads((run_dir / "results" / "mystep" / "checkpoint_scores_causal.json").read_text())
    marks = sorted(results["checkpoint_words"].items(), key=lambda kv: kv[1]["words_seen"])
    assert [p["revision"] for p in scores["points"]] == [name for name, _ in marks]
    assert [p["words"] for p in scores["points"]] == [m["words_seen"] for _, m in marks]
    first = scores["points"][0]["revision"]
    assert (run_dir / "results" / "mystep" / first / "zero_shot" / "causal" / "blimp" / "blimp_fast" /
            "predictions.json").is_file()
    alone = tmp_path / "alone"
    assert run.main(["evaluate", "--model_dir", str(run_dir / first), "--eval_dir", str(sample_fast),
                     "--output_dir", str(alone), "--convention", "official", *tasks]) == 0
    direct = json.loads((alone / "mystep" / first / "zero_shot_summary_causal.json").read_text())
    assert scores["points"][0]["scores"] == {k: v["score"] for k, v in direct["results"]["official"].items()}
    assert len(scores["points"][0]["scores"]) == 4  # blimp and its supplement, ewok, wug_adj

    # evaluate on the run's best model rewrites its model card with the scores.
    card = run_dir / "best_model" / "README.md"
    assert "Not evaluated yet" in card.read_text()
    assert run.main(["evaluate", "--model_dir", str(run_dir / "best_model"), "--eval_dir", str(sample_fast),
                     "--convention", "official", "--zero_shot_tasks", "blimp"]) == 0
    assert "Not evaluated yet" not in card.read_text() and "| blimp/blimp_fast | accuracy |" in card.read_text()

    report = write_report(tmp_path / "save").read_text()
    assert "## Fast zero-shot suite over checkpoints" in report
    assert f"| mystep (causal) | {first} |" in report
    assert (tmp_path / "save" / "checkpoints_blimp_blimp_fast.png").stat().st_size > 5_000
    assert "![checkpoints_ewok_ewok_fast.png](checkpoints_ewok_ewok_fast.png)" in report


def test_evaluate_checkpoints_runs_aoa_when_its_data_is_there(curved_run, tmp_path):
    """Given the official evaluation_data/ layout with AoA data, the three checkpoints' surprisals
    land in the final model's AoA_word/surprisal.json, one record per word and context per checkpoint."""
    from evaluation import aoa

    _, out, _ = curved_run
    run_dir = shutil.copytree(out, tmp_path / "save" / "mystep")
    # The tiny run crossed two marks; a third point (a copy of the first, filed earlier) makes the three a fit needs.
    train = json.loads((run_dir / "train_results.json").read_text())
    first = min(train["checkpoint_words"], key=lambda n: train["checkpoint_words"][n]["words_seen"])
    shutil.copytree(run_dir / first, run_dir / "chck_100")
    train["checkpoint_words"]["chck_100"] = {"mark": 100, "step": 1, "words_seen": 100}
    (run_dir / "train_results.json").write_text(json.dumps(train))
    results = train
    data = tmp_path / "evaluation_data"
    shutil.copytree(SAMPLE.parent / "sample_eval" / "fast_eval" / "blimp_fast", data / "fast_eval" / "blimp_fast")
    # 20 contexts a word: every word is kept (the official --min_context default, 0), 40 records a checkpoint.
    words = {w: [{"context": f"{name} saw the"} for name in ("Mira", "Teo", "Calla", "Tobin", "Nessa") * 4]
             for w in ("cup", "boat")}
    (data / "full_eval" / "aoa").mkdir(parents=True)
    (data / "full_eval" / "aoa" / "cdi_childes.json").write_text(json.dumps(words))
    (data / "full_eval" / "aoa" / aoa.CHILD_AOA_FILE).write_text(
        "word," + ",".join(map(str, aoa.CHILD_AGES)) + "\n"
        + "".join(f"{w}," + ",".join(f"{min(1.0, a / 30):.2f}" for a in aoa.CHILD_AGES) + "\n" for w in words))
    assert run.main(["evaluate_checkpoints", "--model_dir", str(run_dir), "--eval_dir", str(data),
                     "--zero_shot_tasks", "blimp"]) == 0
    scores = json.loads((run_dir / "results" / "mystep" / "checkpoint_scores_causal.json").read_text())
    assert scores["aoa"]["checkpoints"] == [p["revision"] for p in scores["points"]]
    surprisal = json.loads((run_dir / "results" / "mystep" / "main" / "zero_shot" / "causal" / "AoA_word" /
                            "surprisal.json").read_text())
    steps = sorted(results["checkpoint_words"])
    assert sorted({r["step"] for r in surprisal["results"]}) == steps
    assert len(surprisal["results"]) == len(steps) * 2 * 20
    # as the official writes it: the model as given (the run folder), each revision's nominal words
    assert surprisal["metadata"]["model_name"] == str(run_dir)
    assert {r["step"]: r["word_count"] for r in surprisal["results"]}["chck_100"] == 100
