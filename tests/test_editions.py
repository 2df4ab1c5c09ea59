"""Any corpus layout (corpus/editions.py): detection, held-out splits, the editions' source lists,
`make step2_2` end to end on each shipped layout; the challenge's rules (--track); the dataset
download's conversion to text files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, SAMPLE, run_loop
from transformers import AutoModelForCausalLM, AutoTokenizer

import run
import tools.download as download
import training.plan as training_plan
from corpus.cleaning import rules_for
from corpus.editions import (
    EDITIONS,
    HELD_OUT_PERIOD,
    SPLITS,
    detect_corpus,
    held_out_split,
    resolve_files,
)
from evaluation.export import branches_of, checked_out
from utils import UserError

DATA = ROOT / "data"


@pytest.mark.parametrize("folder, layout, held_out, sources", [
    ("sample", "2023", (), EDITIONS["2023"].sources),
    ("sample_2024", "2024", (), EDITIONS["2024"].sources),
    ("sample_dataset", "dataset", ("test",), ("aochildes", "qed", "simple_wikipedia")),
    ("sample_plain", "plain", ("validation", "test"), ("dialogue", "facts", "stories")),
])
def test_each_shipped_layout_is_detected_with_its_splits(folder, layout, held_out, sources, tmp_path):
    corpus = detect_corpus(DATA / folder, cache_dir=tmp_path)
    assert (corpus.layout, corpus.held_out) == (layout, held_out)
    assert corpus.describe().startswith(f"corpus {DATA / folder}: ")
    for split in SPLITS:
        assert sorted(p.stem for p in resolve_files(DATA / folder, split, None, cache_dir=tmp_path)) == sorted(sources)


def test_held_out_lines_are_every_fiftieth_and_nothing_is_lost(tmp_path):
    originals = {p.stem: p.read_text().splitlines() for p in (DATA / "sample_plain").glob("*.txt")}
    corpus = detect_corpus(DATA / "sample_plain", cache_dir=tmp_path)
    for name, lines in originals.items():
        parts = {split: (corpus.folders[split] / f"{name}{ext}").read_text().splitlines()
                 for split, ext in (("train", ".train"), ("validation", ".dev"), ("test", ".test"))}
        expected = {split: [line for i, line in enumerate(lines) if held_out_split(i) == split] for split in SPLITS}
        assert parts == expected
        assert len(parts["validation"]) == len(lines) // HELD_OUT_PERIOD
        assert sorted(parts["train"] + parts["validation"] + parts["test"]) == sorted(lines)
    # The same lines every time: a second detection reuses the written folder, a changed file gets a new one.
    assert detect_corpus(DATA / "sample_plain", cache_dir=tmp_path).folders == corpus.folders
    copy = tmp_path / "mine"
    copy.mkdir()
    for path in (DATA / "sample_plain").glob("*.txt"):
        (copy / path.name).write_text(path.read_text())
    assert detect_corpus(copy, cache_dir=tmp_path).folders == corpus.folders  # same contents, same key
    (copy / "facts.txt").write_text("one more line\n" + (copy / "facts.txt").read_text())
    assert detect_corpus(copy, cache_dir=tmp_path).folders["train"] != corpus.folders["train"]


def test_a_2024_slice_with_only_train_10M_holds_out_dev_and_test(tmp_path):
    (tmp_path / "text_data" / "train_10M").mkdir(parents=True)  # the 2024 zip's own root folder
    (tmp_path / "text_data" / "train_10M" / "childes.train").write_text("".join(f"line {i}\n" for i in range(200)))
    corpus = detect_corpus(tmp_path, cache_dir=tmp_path / "cache")
    assert (corpus.layout, corpus.held_out) == ("2024", ("validation", "test"))
    dev = resolve_files(tmp_path, "validation", ["childes"], cache_dir=tmp_path / "cache")
    assert dev[0].read_text() == "line 49\nline 99\nline 149\nline 199\n"
    with pytest.raises(UserError, match="train_100M' not found: this 2024 corpus has train_10M; pass --train_split"):
        detect_corpus(tmp_path, "100M", tmp_path / "cache")


def test_easier_and_harder_name_each_editions_lists(tmp_path):
    assert [p.stem for p in resolve_files(SAMPLE, "train", ["@easier"])] == list(EDITIONS["2023"].easier)
    harder_2024 = resolve_files(DATA / "sample_2024", "train", ["@harder"])
    assert [p.stem for p in harder_2024] == ["bnc_spoken", "gutenberg"]
    with pytest.raises(UserError, match="@easier names the curriculum lists of a BabyLM release.*plain corpus"):
        resolve_files(DATA / "sample_plain", "train", ["@easier"], cache_dir=tmp_path)
    # The 2024 names of sources the cleaning rules know by their 2023 names get the same rules.
    assert rules_for("childes") == rules_for("aochildes") and rules_for("simple_wiki") == rules_for("simple_wikipedia")


def test_a_folder_with_no_corpus_and_a_dataset_without_text_are_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no corpus"):
        detect_corpus(tmp_path / "empty", cache_dir=tmp_path / "cache")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "train.jsonl").write_text(json.dumps({"sentence": "no text column"}) + "\n")
    with pytest.raises(UserError, match="split 'train' has no 'text' column \\(it has sentence\\)"):
        detect_corpus(tmp_path / "bad", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / "corpus").exists() or not any((tmp_path / "cache" / "corpus").iterdir())


def test_the_dataset_download_writes_text_files_once(tmp_path, capsys):
    dest = tmp_path / "corpus"
    assert download.main(["dataset", str(DATA / "sample_dataset"), "--data_dir", str(dest)]) == 0
    assert "held out from train" in capsys.readouterr().out
    assert sorted(p.name for p in dest.iterdir()) == ["dev", "meta.json", "test", "train"]
    # Written in the shape the pipeline reads in place (a plain corpus with its own splits).
    corpus = detect_corpus(dest, cache_dir=tmp_path / "cache")
    assert (corpus.layout, corpus.folders["train"]) == ("plain", dest / "train")
    rows = [json.loads(line) for line in (DATA / "sample_dataset" / "train.jsonl").read_text().splitlines()]
    qed = [line for row in rows if row["source"] == "qed" for line in row["text"].split("\n")]
    written = (dest / "train" / "qed.train").read_text().splitlines() + (dest / "test" / "qed.test").read_text(
        ).splitlines()
    assert sorted(written) == sorted(qed)
    assert download.main(["dataset", str(DATA / "sample_dataset"), "--data_dir", str(dest)]) == 0
    assert "nothing done" in capsys.readouterr().out
    assert download.main(["dataset", str(DATA / "sample_plain"), "--data_dir", str(dest)]) == 1  # not ours


# --------------------------------------------------------------------------- make step2_2 on each layout


def make(tmp_path, data: str, *variables: str) -> subprocess.CompletedProcess:
    """`make step2_2` on `data` with a tiny model (a few steps), in SAVE_DIR=tmp_path."""
    return subprocess.run(
        ["make", "--no-print-directory", "step2_2", f"DATA_DIR={data}", f"SAVE_DIR={tmp_path}", "VOCAB=400",
         "BLOCK=32", f"PY={sys.executable}", "SMALL=--hidden_size 32 --num_layers 1 --num_heads 2",
         "TRAIN_OPTS=--max_steps 4 --batch_size 8 --eval_steps 4 --logging_steps 2", "FAST=", "BLIMP_DIR=none",
         *variables],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.parametrize("folder, detected", [
    ("sample_2024", "the 2024 BabyLM release (training files in data/sample_2024/train_10M)"),
    ("sample_dataset", "a dataset corpus (2 data files, as text files in"),
    ("sample_plain", "a plain corpus (3 text files, as text files in"),
])
def test_make_step2_2_runs_on_each_layout(folder, detected, tmp_path):
    done = make(tmp_path, f"data/{folder}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert detected in (tmp_path / "step2_1" / "log.txt").read_text()
    results = json.loads((tmp_path / "step2_2" / "test_results.json").read_text())
    assert results["test_loss"] > 0
    trained = json.loads((tmp_path / "step2_1" / "train_results.json").read_text())
    assert trained["track"] == "none" and trained["train_words"] > 0


# --------------------------------------------------------------------------- the challenge's rules (--track)


def test_a_corpus_over_the_tracks_word_budget_is_refused_before_anything_is_written(make_args, tmp_path, monkeypatch):
    monkeypatch.setitem(training_plan.TRACK_WORD_BUDGET, "strict-small", 1_000)
    out = tmp_path / "run"
    args = make_args("train", "--output_dir", out, "--track", "strict-small", "--train_files", "qed", "cbt")
    with pytest.raises(UserError, match=r"the training data holds [\d,]+ words, over the strict-small track's "
                       r"budget of 1,000: train on fewer files \(--train_files\), or pass --track strict"):
        run_loop("pytorch", args)
    assert not out.exists() and not (tmp_path / "cache").exists()
    args = make_args("train", "--output_dir", out, "--track", "none", "--train_files", "qed", "--max_steps", 1)
    assert run_loop("pytorch", args)["track"] == "none"  # none checks nothing


@pytest.mark.parametrize("length", [["--num_train_epochs", "10.5"], ["--max_steps", "61"]])
def test_a_plan_of_more_than_ten_epochs_is_refused_before_anything_is_written(length, make_args, tmp_path):
    # qed alone, 64 blocks a step: 6 steps an epoch, so 61 steps is over 10 epochs.
    out = tmp_path / "run"
    args = make_args("train", "--output_dir", out, "--track", "strict-small", "--train_files", "qed",
                     "--batch_size", 64, *length)
    with pytest.raises(UserError, match=r"over the strict-small track's 10: pass --num_train_epochs 10 or less "
                       r"\(or --max_steps 60 or less\), or --track none"):
        run_loop("pytorch", args)
    assert not out.exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("loop", ["pytorch", "huggingface"])
def test_a_time_budget_run_stops_at_the_tenth_epoch(loop, make_args, tmp_path):
    out = tmp_path / "run"
    flag = ["--torch_training"] if loop == "pytorch" else []
    args = make_args("train", *flag, "--output_dir", out, "--track", "strict-small", "--train_files", "qed",
                     "--batch_size", 64, "--max_minutes", 10, "--eval_steps", 100, "--logging_steps", 10)
    results = run_loop(loop, args)
    assert results["steps"] == 60 and results["stopped_at_max_epochs"]  # 10 epochs of 6 steps, long before 10 min
    assert results["track"] == "strict-small" and results["train_words"] > 0
    assert "stopped at the end of epoch 10 (60 steps), before the time budget" in (out / "log.txt").read_text()
    card = (out / "best_model" / "README.md").read_text()
    assert "- **Track:** strict-small" in card
    assert f"- **Words read by training (after cleaning):** {results['train_words']:,}" in card


# --------------------------------------------------------------------------- make export


def test_export_writes_main_and_a_branch_per_checkpoint_that_load_to_the_runs_logits(make_args, tmp_path, capsys):
    out = tmp_path / "run"
    args = make_args("train", "--torch_training", "--output_dir", out, "--train_files", "qed", "--batch_size", 16,
                     "--num_train_epochs", 2, "--eval_steps", 100, "--checkpoint_words", "3K", "6K")
    run_loop("pytorch", args)
    assert run.main(["export", "--model_dir", str(out), "--push", "org/name"]) == 1  # no token: refused first
    assert "needs a Hugging Face token" in capsys.readouterr().err and not (out / "export").exists()
    assert run.main(["export", "--model_dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "exported 3 revisions (chck_3K, chck_6K, main)" in printed and "plain git objects" in printed
    repo = out / "export"
    assert sorted(branches_of(repo)) == ["chck_3K", "chck_6K", "main"]
    ids = torch.tensor([[5, 17, 42, 9, 3]])
    for branch, folder in (("main", "best_model"), ("chck_3K", "chck_3K"), ("chck_6K", "chck_6K")):
        with checked_out(repo, branch, tmp_path / f"co_{branch}") as checkout:
            assert (checkout / "README.md").read_text() == (out / "best_model" / "README.md").read_text()
            tokenizer = AutoTokenizer.from_pretrained(checkout)
            assert tokenizer.get_vocab() == AutoTokenizer.from_pretrained(out / folder).get_vocab()
            exported = AutoModelForCausalLM.from_pretrained(checkout).eval()
            own = AutoModelForCausalLM.from_pretrained(out / folder).eval()
            with torch.no_grad():
                assert torch.equal(exported(ids).logits, own(ids).logits)
    with torch.no_grad():  # the checkpoints differ from the final model: each branch holds its own weights
        first = AutoModelForCausalLM.from_pretrained(out / "chck_3K").eval()(ids).logits
        assert not torch.equal(first, AutoModelForCausalLM.from_pretrained(out / "best_model").eval()(ids).logits)
    assert run.main(["export", "--model_dir", str(out)]) == 1
    assert "exists already" in capsys.readouterr().err


def _detect_in_child(args: tuple) -> str:
    data, cache = args
    return str(resolve_files(data, "train", None, cache_dir=cache)[0])


def test_processes_writing_the_same_held_out_copy_at_once_all_succeed(tmp_path):
    # The ranks of a run (and make -j's tokenizer jobs) resolve the corpus at the same moment.
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(4) as pool:
        found = pool.map(_detect_in_child, [(DATA / "sample_plain", tmp_path)] * 8)
    assert len(set(found)) == 1 and Path(found[0]).is_file()
    assert [p.name for p in (tmp_path / "corpus").iterdir()] == [Path(found[0]).parent.parent.name]  # no leftovers


def test_a_2023_release_with_its_dev_files_is_read_as_it_is(tmp_path):
    # As before held-out splits existed (tools/bench.py builds such a corpus): no test is held out.
    for folder, ext in (("babylm_10M", "train"), ("babylm_dev", "dev")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / f"qed.{ext}").write_text("".join(f"line {i}\n" for i in range(100)))
    corpus = detect_corpus(tmp_path, cache_dir=tmp_path / "cache")
    assert corpus.held_out == () and corpus.folders["train"] == tmp_path / "babylm_10M"
    with pytest.raises(UserError, match="no \\*.test files in"):
        resolve_files(tmp_path, "test", None, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_a_file_moved_between_splits_gets_a_new_copy(tmp_path):
    root = tmp_path / "mine"
    for folder, text in (("train", "a b\n" * 60), ("dev", "dev line\n"), ("other", "other line\n")):
        (root / folder).mkdir(parents=True)
        (root / folder / "x.txt").write_text(text)
    first = detect_corpus(root, cache_dir=tmp_path / "cache")
    assert first.held_out == ("test",)
    (root / "other").rename(root / "test")  # now a test split: nothing is held out
    (root / "dev" / "x.txt").rename(root / "dev" / "y.txt")
    second = detect_corpus(root, cache_dir=tmp_path / "cache")
    assert second.held_out == () and second.folders["train"] != first.folders["train"]


@pytest.mark.parametrize("rows, error", [
    ({"text": []}, "has an empty train split"),
    ({"text": [1, 2]}, "column 'text' holds int64, not strings"),
])
def test_a_dataset_that_cannot_be_a_corpus_is_one_line(rows, error, tmp_path):
    import datasets

    from corpus.editions import write_text_corpus

    data = datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows)})
    with pytest.raises(UserError, match=error):
        write_text_corpus(data, tmp_path / "out", source="mine")
    assert not (tmp_path / "out").exists()
