"""make report: every finished step in one table (steps that have not run left out), plots."""

from __future__ import annotations

import json

from conftest import ROOT, SAMPLE, TINY_MODEL

import evaluation.report as report
import run


def test_report_gathers_finished_steps(tok_dirs, tmp_path):
    save = tmp_path / "save"
    common = ["--data_dir", str(SAMPLE), "--cache_dir", str(tmp_path / "cache"), *TINY_MODEL]
    assert run.main(["train", "--torch_training", *common, "--tokenizer_dir", str(tok_dirs["clm"]),
                     "--output_dir", str(save / "step2_1"), "--max_steps", "6", "--eval_steps", "3",
                     "--logging_steps", "1"]) == 0
    assert run.main(["test", *common[:4], "--block_size", "32", "--model_dir", str(save / "step2_1" / "best_model"),
                     "--blimp_dir", str(ROOT / "data" / "sample_eval" / "blimp"),
                     "--output_dir", str(save / "step2_2")]) == 0
    path = report.write_report(save)
    text = path.read_text()
    test = json.loads((save / "step2_2" / "test_results.json").read_text())
    blimp = json.loads((save / "step2_2" / "blimp_results.json").read_text())
    row = next(line for line in text.splitlines() if line.startswith("| step2_1 |"))
    assert f"{test['test_perplexity']:.2f}" in row and f"{100 * blimp['overall']:.1f}" in row
    assert "gpt2 2x32" in row and "causal LM" in row
    assert row.count("|") == next(line for line in text.splitlines() if line.startswith("| step |")).count("|")
    params = report.count_parameters(save / "step2_1" / "best_model")
    assert f"{params:,}" in row
    # Steps that have not run have no row (the demo runs four of the eleven), and do not crash it.
    steps = [line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| step")][1:]
    assert steps == ["step2_1"]
    for png in ("loss_curves.png", "blimp_fields.png"):
        assert (save / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_on_an_empty_folder(tmp_path):
    text = report.write_report(tmp_path).read_text()
    assert "| step2_1 |" not in text and "has finished training yet" in text
    assert not (tmp_path / "loss_curves.png").exists()


def test_report_lists_distillation_and_hybrid_steps_in_step_order(tok_dirs, tmp_path):
    save = tmp_path / "save"
    blimp = str(ROOT / "data" / "sample_eval" / "blimp")
    common = ["--data_dir", str(SAMPLE), "--cache_dir", str(tmp_path / "cache"), *TINY_MODEL, "--max_steps", "4",
              "--eval_steps", "4", "--logging_steps", "2", "--torch_training"]
    clm, mlm = ["--tokenizer_dir", str(tok_dirs["clm"])], ["--tokenizer_dir", str(tok_dirs["mlm"])]
    assert run.main(["train", *common, *clm, "--output_dir", str(save / "step9_gpt2_none")]) == 0
    assert run.main(["train", *common, *clm, "--output_dir", str(save / "step10_student"), "--teacher_models",
                     str(save / "step9_gpt2_none" / "best_model")]) == 0
    assert run.main(["train", *common, *mlm, "--output_dir", str(save / "step11_hybrid_1to1"), "--model_type",
                     "gpt_bert", "--hybrid_ratio", "1:1"]) == 0
    model = str(save / "step11_hybrid_1to1" / "best_model")
    for scoring, out in (("causal", "step11_hybrid_1to1_test"), ("masked", "step11_hybrid_1to1_test_masked")):
        assert run.main(["blimp", "--model_dir", model, "--blimp_dir", blimp, "--output_dir", str(save / out),
                         "--hybrid_scoring", scoring]) == 0
    text = report.write_report(save).read_text()
    lines = text.splitlines()
    steps = [line.split("|")[1].strip() for line in lines if line.startswith("| step")][1:]
    assert steps[-3:] == ["step9_gpt2_none", "step10_student", "step11_hybrid_1to1"]  # numeric step order
    student = next(line for line in lines if line.startswith("| step10_student |"))
    assert "causal LM, distilled from step9_gpt2_none (alpha 0.5, T 2.0)" in student
    hybrid = next(line for line in lines if line.startswith("| step11_hybrid_1to1 |"))
    assert "gpt_bert 2x32" in hybrid and "hybrid masked:causal 1:1" in hybrid
    causal = json.loads((save / "step11_hybrid_1to1_test" / "blimp_results.json").read_text())
    masked = json.loads((save / "step11_hybrid_1to1_test_masked" / "blimp_results.json").read_text())
    cells = [c.strip() for c in hybrid.split("|")]
    head = [c.strip() for c in next(line for line in lines if line.startswith("| step |")).split("|")]
    assert cells[head.index("BLiMP overall")] == f"{100 * causal['overall']:.1f}"
    assert cells[head.index("BLiMP overall, masked next-token PLL (hybrid)")] == f"{100 * masked['overall']:.1f}"
    assert hybrid.count("|") == len(head) - 1


def test_option_changes_lists_what_differs():
    from evaluation.report import option_changes

    base = {"learning_rate": 5e-4, "output_dir": "a", "tokenizer_dir": "runs/step1/tokenizer_clm",
            "train_files": None, "hybrid_masked_share": 0.0}
    args = {"learning_rate": 2e-3, "output_dir": "b", "tokenizer_dir": "runs/tok8000/tokenizer_clm",
            "train_files": ["cbt", "qed"], "hybrid_masked_share": 0.5}
    assert option_changes(args, base) == ("--learning_rate 0.002, --tokenizer_dir tok8000/tokenizer_clm, "
                                          "--train_files cbt qed")
    assert option_changes(base, base) == "(none)"


def test_tokens_seen_adds_the_run_continued_from(tmp_path):
    from evaluation.report import tokens_seen

    def fake_run(name: str, tokens: int, init: str | None) -> None:
        (tmp_path / name / "best_model").mkdir(parents=True)
        (tmp_path / name / "train_results.json").write_text(json.dumps({"tokens_seen": tokens}))
        args = {"init_model": str(tmp_path / init / "best_model") if init else None}
        (tmp_path / name / "best_model" / "run_args.json").write_text(json.dumps(args))

    fake_run("a", 100, None)
    fake_run("b", 20, "a")
    fake_run("c", 3, "b")
    fake_run("d", 7, None)
    assert [tokens_seen(tmp_path, s) for s in "abcd"] == [100, 120, 123, 7]


def test_ablation_table_lists_each_undone_choice_against_the_recipe(tmp_path):
    """make ablation's runs (hand-made result files): options changed from ablate_recipe and the BLiMP change."""
    runs = (("ablate_recipe", 2e-3, 0.65, 100, 5.25), ("ablate_lr", 5e-4, 0.62, 120, 5.5))
    for name, lr, blimp, tokens, loss in runs:
        run_dir = tmp_path / name
        (run_dir / "best_model").mkdir(parents=True)
        (run_dir / "best_model" / "run_args.json").write_text(json.dumps({"learning_rate": lr, "output_dir": name}))
        (run_dir / "best_model" / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_layer": 2,
                                                                          "n_embd": 32}))
        (run_dir / "train_results.json").write_text(json.dumps({
            "train_files": ["a.train"], "train_seconds": 1.0, "loop": "pytorch", "best_eval_loss": loss,
            "tokens_seen": tokens}))
        (tmp_path / f"blimp_{name}").mkdir()
        (tmp_path / f"blimp_{name}" / "blimp_results.json").write_text(json.dumps({
            "model_dir": str(run_dir / "best_model"), "overall": blimp, "fields": {}}))
    # A tested run shows its test loss per word (a masked LM's test has none: blank).
    (tmp_path / "ablate_lr_test").mkdir()
    (tmp_path / "ablate_lr_test" / "test_results.json").write_text(json.dumps({
        "model_dir": str(tmp_path / "ablate_lr" / "best_model"), "test_loss": 5.0, "test_nats_per_word": 6.4321}))
    text = report.write_report(tmp_path).read_text()
    section = text.split("## Ablation: the recipe with each choice undone (make ablation)")[1]
    assert "| ablate_lr | --learning_rate 0.0005 | 120 | 62.0 | -3.0 | 5.500 | 6.432 |" in section
    assert "| ablate_recipe |  | 100 | 65.0 | +0.0 | 5.250 |  |" in section


def test_plots_tell_up_to_30_runs_apart():
    """Eleven runs went into one learning-curve plot: no two of the first 30 runs may share a style
    (matplotlib's default cycle repeats its ten colours, which drew best_baseline like best_wide_batch16)."""
    styles = [tuple(sorted(report.line_style(i).items())) for i in range(30)]
    assert len(set(styles)) == 30
    assert report.line_style(0) == {"color": "C0", "marker": "o", "linestyle": "-"}
