"""Every kind of bad input: exit code 1 (2 for usage errors), one line on stderr that says
what is wrong and how to fix it, and nothing written (no output folder, log file, cache
entry or tokenizer folder).

One table; each row builds its bad input under tmp_path and runs `run.py`. Rows marked
`proc` run it in a subprocess, so everything a real run prints on stderr (third-party
warnings and progress bars included) counts; the other rows call `run.main` in-process
to keep the file fast."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
from conftest import ROOT, SAMPLE, TINY_MODEL

import run
from argument_parser import parse_args
from custom_models import build_model
from tokenizer import load_tokenizer
from training.run_folder import save_model_folder

GLUE = ROOT / "data" / "sample_eval" / "glue"
BLIMP = ROOT / "data" / "sample_eval" / "blimp"
SPLITS = (("babylm_10M", "train"), ("babylm_dev", "dev"), ("babylm_test", "test"))


# --------------------------------------------------------------------------- building bad inputs


def corpus(tmp: Path, sources=("qed", "cbt"), edit: Callable[[Path], None] | None = None,
           folder_to_edit: str = "babylm_10M") -> Path:
    """A copy of a few sample files of every split under tmp/corpus; `edit` damages the files of one split."""
    root = tmp / "corpus"
    for folder, ext in SPLITS:
        (root / folder).mkdir(parents=True)
        for source in sources:
            shutil.copy(SAMPLE / folder / f"{source}.{ext}", root / folder / f"{source}.{ext}")
    if edit:
        for path in sorted((root / folder_to_edit).glob("*.*")):
            edit(path)
    return root


def insert_bad_byte(path: Path) -> None:
    """Line 3 of the first train file gets a byte that is not UTF-8 (Latin-1 'e acute')."""
    if path.name == "cbt.train":
        lines = path.read_bytes().split(b"\n")
        lines[2] = lines[2][:5] + b"caf\xe9" + lines[2][5:]
        path.write_bytes(b"\n".join(lines))


def empty(path: Path) -> None:
    path.write_text("\n  \n")  # blank lines only: no text


def tiny_model(tmp: Path, tok_dir: Path, model_type: str = "gpt2") -> Path:
    """A saved untrained tiny model (64 positions) with its tokenizer, as a training step saves it."""
    args = parse_args(["train", "--tokenizer_dir", str(tok_dir), "--output_dir", str(tmp / "unused"),
                       "--model_type", model_type, *TINY_MODEL])
    tok = load_tokenizer(tok_dir)
    torch.manual_seed(0)
    save_model_folder(build_model(args, tok), tok, args, tmp / "model")
    return tmp / "model"


def damaged_weights(model: Path) -> Path:
    """Cut the weights file in half (a crash while copying a model, say)."""
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return model


def copy_tokenizer(tmp: Path, tok_dir: Path, damage: Callable[[Path], None]) -> Path:
    folder = tmp / "tok_in"
    shutil.copytree(tok_dir, folder)
    damage(folder / "tokenizer.json")
    return folder


def truncate(path: Path) -> None:
    path.write_text(path.read_text()[:300])


def unknown_bpe_model(path: Path) -> None:
    data = json.loads(path.read_text())
    data["model"]["type"] = "NoSuchModel"  # valid JSON the tokenizers library cannot parse
    path.write_text(json.dumps(data))


def grown_tokenizer(model: Path) -> Path:
    """The model folder's tokenizer gets 10 tokens more than the model's vocabulary."""
    tok = load_tokenizer(model)
    tok.add_tokens([f"<extra{i}>" for i in range(10)])
    tok.save_pretrained(model)
    return model


def grown_tokenizer_file(path: Path) -> None:
    """tokenizer.json gets 10 tokens more (the folder of `path` holds a copied tokenizer)."""
    grown_tokenizer(path.parent)


def jsonl(tmp: Path, name: str, rows: list) -> Path:
    folder = tmp / "eval"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return folder


GOOD_PAIR = {"sentence_good": "the dog runs .", "sentence_bad": "the dog run ."}


def other_tokenizer_model(tmp: Path) -> Path:
    """A saved tiny GPT-2 whose tokenizer (vocabulary 400, qed only) is not the student's."""
    from corpus.editions import resolve_files
    from tokenizer import train_tokenizer

    train_tokenizer(resolve_files(SAMPLE, "train", ["qed"]), tmp / "tok_other", "clm", vocab_size=400)
    return tiny_model(tmp, tmp / "tok_other")


def checkpoint_of_global_batch(tmp: Path, blocks: int) -> Path:
    """A run folder whose custom-loop checkpoint was written with a global batch of `blocks`."""
    folder = tmp / "prev" / "checkpoints" / "checkpoint-5"
    folder.mkdir(parents=True)
    (folder / "pipeline_state.json").write_text(json.dumps({"progress": {"step": 5, "global_batch": blocks}}))
    return tmp / "prev"


def glue_task(tmp: Path, train: list, valid: list) -> Path:
    jsonl(tmp, "rte.train.jsonl", train)
    return jsonl(tmp, "rte.valid.jsonl", valid)


# --------------------------------------------------------------------------- the table


class Case(NamedTuple):
    """One bad input: `argv(tmp, toks)` builds it and returns the run.py words."""

    argv: Callable[[Path, dict], list[str]]
    wrong: str  # fragment saying what is wrong
    fix: str  # fragment saying how to fix it
    proc: bool = False  # run in a subprocess
    usage: bool = False  # an argparse usage error (exit 2)


def tokenizer_argv(data: Path, *extra: str) -> list[str]:
    return ["tokenizer", "--data_dir", str(data), "--tokenizer_dir", str(data.parent / "tok"),
            "--vocab_size", "300", *extra]


def dataset_argv(data: Path, tok: Path, *extra: str) -> list[str]:
    return ["dataset", "--data_dir", str(data), "--tokenizer_dir", str(tok), "--block_size", "32",
            "--cache_dir", str(data.parent / "cache"), *extra]


def train_argv(tmp: Path, tok: Path, *extra: str, data: Path = SAMPLE) -> list[str]:
    return ["train", "--data_dir", str(data), "--tokenizer_dir", str(tok), "--output_dir", str(tmp / "out"),
            "--cache_dir", str(tmp / "cache"), *TINY_MODEL, *extra]


def lm_test_argv(tmp: Path, model: Path, *extra: str) -> list[str]:
    return ["test", "--data_dir", str(SAMPLE), "--model_dir", str(model), "--output_dir", str(tmp / "out"),
            "--cache_dir", str(tmp / "cache"), "--block_size", "32", *extra]


def eval_argv(action: str, tmp: Path, folder: Path) -> list[str]:
    option = "--blimp_dir" if action == "blimp" else "--glue_dir"
    return [action, option, str(folder), "--model_dir", str(tmp / "model"), "--output_dir", str(tmp / "out")]


def numeric(option: str, value: str, action: str = "train") -> Case:
    return Case(lambda t, k: train_argv(t, k["clm"], option, value) if action == "train"
                else eval_argv(action, t, GLUE) + [option, value], f"{option} must be", "--help", usage=True)


CASES = {
    # 1. the corpus folder does not exist
    "missing_data_dir": Case(lambda t, k: tokenizer_argv(t / "nowhere"), "nowhere' not found",
                             "--data_dir data/sample", proc=True),
    "missing_data_dir_test": Case(lambda t, k: lm_test_argv(t, tiny_model(t, k["clm"]), "--data_dir", str(t / "no")),
                                  "no' not found", "--data_dir data/sample"),
    # 2. a named corpus file that does not exist: a typo, or only absent BabyLM sources
    "source_typo": Case(lambda t, k: tokenizer_argv(corpus(t), "--train_files", "qed", "cbtt"),
                        "'cbtt' has no file", "pick from the sources in", proc=True),
    "sources_absent": Case(lambda t, k: dataset_argv(corpus(t), k["clm"], "--test_files", "wikipedia", "gutenberg"),
                           "none of the test sources wikipedia gutenberg", "pick from cbt qed"),
    # 3. files that are all empty
    "empty_files_tokenizer": Case(lambda t, k: tokenizer_argv(corpus(t, edit=empty)), "contain no text",
                                  "pick files that hold text", proc=True),
    "empty_files_dataset": Case(lambda t, k: dataset_argv(corpus(t, edit=empty), k["clm"]), "contain no text",
                                "pick files that hold text"),
    # 4. bytes that are not UTF-8
    "not_utf8_tokenizer": Case(lambda t, k: tokenizer_argv(corpus(t, edit=insert_bad_byte)),
                               "cbt.train line 3 (byte 0xe9) is not valid UTF-8", "re-encode the file", proc=True),
    "not_utf8_dataset": Case(lambda t, k: dataset_argv(corpus(t, edit=insert_bad_byte), k["clm"]),
                             "cbt.train line 3 (byte 0xe9) is not valid UTF-8", "re-encode the file"),
    "not_utf8_train": Case(lambda t, k: train_argv(t, k["clm"], data=corpus(t, edit=insert_bad_byte)),
                           "cbt.train line 3 (byte 0xe9) is not valid UTF-8", "re-encode the file"),
    # 5. a tokenizer folder that is missing or unreadable
    "empty_dev_split": Case(lambda t, k: train_argv(t, k["clm"],
                                                    data=corpus(t, edit=empty, folder_to_edit="babylm_dev")),
                            "validation files", "contain no text"),
    "device_unknown": Case(lambda t, k: train_argv(t, k["clm"], "--device", "gpu"), "--device gpu is not one of",
                           "--help", usage=True),
    "batch_size_zero": numeric("--batch_size", "0"),
    "objective_schedule_format": Case(lambda t, k: train_argv(t, k["clm"], "--objective_schedule", "0=0.3"),
                                      "is not STEP:KEY=VALUE", "--help", usage=True),
    "objective_schedule_causal": Case(lambda t, k: train_argv(t, k["clm"], "--objective_schedule",
                                                              "0:mlm_probability=0.3"),
                                      "is a causal LM", "drop the option"),
    "damaged_weights_test": Case(lambda t, k: lm_test_argv(t, damaged_weights(tiny_model(t, k["clm"]))),
                                 "cannot load the model", "best_model folder", proc=True),
    "damaged_weights_finetune": Case(lambda t, k: (damaged_weights(tiny_model(t, k["clm"])),
                                                   eval_argv("finetune", t, GLUE))[1],
                                     "as a sequence classifier", "saved GPT-2"),
    "no_tokenizer": Case(lambda t, k: train_argv(t, t / "no_tok"), "no tokenizer in", "make step1"),
    "truncated_tokenizer": Case(lambda t, k: dataset_argv(corpus(t), copy_tokenizer(t, k["clm"], truncate)),
                                "cannot load the tokenizer", "make step1", proc=True),
    "unparsable_tokenizer": Case(lambda t, k: train_argv(t, copy_tokenizer(t, k["clm"], unknown_bpe_model)),
                                 "cannot load the tokenizer", "make step1"),
    # 6. the model's vocabulary does not match its tokenizer
    "vocab_mismatch": Case(lambda t, k: lm_test_argv(t, grown_tokenizer(tiny_model(t, k["clm"]))),
                           "has 610 tokens but the model's vocabulary has 600", "tokenizer it was trained with",
                           proc=True),
    "vocab_mismatch_init_model": Case(lambda t, k: train_argv(t, copy_tokenizer(t, k["clm"], grown_tokenizer_file),
                                                              "--init_model", str(tiny_model(t, k["clm"]))),
                                      "has a vocabulary of 600", "continue with the tokenizer"),
    # 7. --block_size beyond the model's positions: a fresh model, a saved one
    "block_size_fresh": Case(lambda t, k: train_argv(t, k["clm"], "--block_size", "128"),
                             "--block_size 128 exceeds --max_position_embeddings 64", "raise the latter", usage=True),
    "block_size_saved": Case(lambda t, k: lm_test_argv(t, tiny_model(t, k["clm"]), "--block_size", "65"),
                             "--block_size 65 exceeds the 64 positions", "pass --block_size 64 or less"),
    # 8. a masked LM with a tokenizer without a mask token
    "mlm_without_mask": Case(lambda t, k: train_argv(t, k["clm"], "--model_type", "bert"),
                             "needs a tokenizer with a mask token", "--tokenizer_type mlm"),
    # 9. numbers out of range (argparse, exit 2)
    "learning_rate_0": Case(lambda t, k: train_argv(t, k["clm"], "--learning_rate", "0"),
                            "--learning_rate must be greater than 0", "--help", proc=True, usage=True),
    "epochs_negative": numeric("--num_train_epochs", "-1"),
    "max_steps_0": numeric("--max_steps", "0"),
    "num_threads_0": numeric("--num_threads", "0"),
    "eval_blocks_0": numeric("--eval_blocks", "0"),
    "max_minutes_negative": numeric("--max_minutes", "-1"),
    "pacing_steps_0": Case(lambda t, k: train_argv(t, k["clm"], "--difficulty", "length", "--pacing_steps", "0"),
                           "--pacing_steps must be at least 1", "--help", usage=True),
    "pacing_steps_alone": Case(lambda t, k: train_argv(t, k["clm"], "--pacing_steps", "10"),
                               "--pacing_steps paces a curriculum: give --difficulty too", "--help", usage=True),
    "warmup_ratio_1": numeric("--warmup_ratio", "1"),
    "num_heads_0": numeric("--num_heads", "0"),
    "patience_negative": numeric("--early_stopping_patience", "-1"),
    "finetune_lr_nan": numeric("--finetune_learning_rate", "nan", action="finetune"),
    # 10. evaluation jsonl: a line without a required field, a line that is not JSON
    "blimp_missing_field": Case(lambda t, k: eval_argv("blimp", t, jsonl(t, "p.jsonl", [GOOD_PAIR, {"x": 1}])),
                                "p.jsonl:2 has no sentence_good/sentence_bad", "fix that line"),
    "blimp_invalid_json": Case(lambda t, k: eval_argv("blimp", t, jsonl(t, "p.jsonl", [GOOD_PAIR, '{"sentence_'])),
                               "p.jsonl:2 is not valid JSON", "fix or remove that line", proc=True),
    "glue_invalid_json": Case(lambda t, k: eval_argv("finetune", t, glue_task(t, ["{oops"], [])),
                              "rte.train.jsonl:1 is not valid JSON", "fix or remove that line"),
    # 11. a fine-tuning label outside the label set
    "glue_label_outside": Case(lambda t, k: eval_argv("finetune", t, glue_task(
        t, [{"sentence1": "a", "sentence2": "x", "label": 0}, {"sentence1": "b", "sentence2": "y", "label": 1}],
        [{"sentence1": "c", "sentence2": "z", "label": 2}])),
                               "labels must be 0..N-1", "fix the label column"),
    # 12. an unknown model type or option value (argparse, exit 2)
    "unknown_model_type": Case(lambda t, k: train_argv(t, k["clm"], "--model_type", "gpt3"),
                               "invalid choice: 'gpt3'", "--help", proc=True, usage=True),
    "unknown_action": Case(lambda t, k: ["trian"], "invalid choice: 'trian'", "--help", usage=True),
    # 13. distillation: a teacher with another tokenizer, of another kind, not a model; option ranges
    "teacher_other_tokenizer": Case(lambda t, k: train_argv(t, k["clm"], "--teacher_models",
                                                            str(other_tokenizer_model(t))),
                                    "was trained with another tokenizer than --tokenizer_dir",
                                    "train the teachers with it", proc=True),
    "teacher_masked_for_causal": Case(lambda t, k: train_argv(t, k["clm"], "--teacher_models",
                                                              str(tiny_model(t, k["mlm"], "bert"))),
                                      "is a masked LM but the student (gpt2)", "distil from teachers that predict"),
    "teacher_not_a_model": Case(lambda t, k: train_argv(t, k["clm"], "--teacher_models", str(t / "nothing")),
                                "is not a saved model folder", "best_model folder"),
    "distill_alpha_above_1": numeric("--distill_alpha", "1.5"),
    "distill_temperature_0": numeric("--distill_temperature", "0"),
    # 14. the hybrid model: no mask token, a bad ratio, masked_share for another model
    "hybrid_without_mask": Case(lambda t, k: train_argv(t, k["clm"], "--model_type", "gpt_bert"),
                                "needs a tokenizer with a mask token", "--tokenizer_type mlm"),
    "hybrid_ratio_format": Case(lambda t, k: train_argv(t, k["mlm"], "--model_type", "gpt_bert", "--hybrid_ratio",
                                                        "15-1"), "--hybrid_ratio 15-1 is not MASKED:CAUSAL", "--help",
                                usage=True),
    "hybrid_ratio_zero": Case(lambda t, k: train_argv(t, k["mlm"], "--hybrid_ratio", "0:0"), "not both 0", "--help",
                              usage=True),
    "finetune_cross_fit_one": Case(lambda t, k: eval_argv("finetune", t, GLUE) + ["--finetune_cross_fit", "1"],
                                   "--finetune_cross_fit 1 leaves no fold", "pass 0 (off) or K >= 2", usage=True),
    "masked_share_for_bert": Case(lambda t, k: train_argv(t, k["mlm"], "--model_type", "bert",
                                                          "--objective_schedule", "0:masked_share=0.5"),
                                  "masked_share needs --model_type gpt_bert", "drop that key"),
    # 15. --checkpoint_words marks; resuming with another global batch (batch x accumulation x processes)
    "checkpoint_words_descending": Case(lambda t, k: train_argv(t, k["clm"], "--checkpoint_words", "2M", "1M"),
                                        "the marks must be distinct and ascending", "--help", usage=True),
    "checkpoint_words_format": Case(lambda t, k: train_argv(t, k["clm"], "--checkpoint_words", "1X"),
                                    "--checkpoint_words 1X is not a positive whole number", "e.g. 500K", proc=True,
                                    usage=True),
    "checkpoint_words_zero": Case(lambda t, k: train_argv(t, k["clm"], "--checkpoint_words", "0"),
                                  "--checkpoint_words 0 is not a positive", "--help", usage=True),
    "resume_other_global_batch": Case(lambda t, k: train_argv(t, k["clm"], "--torch_training", "--resume",
                                                              "--output_dir", str(checkpoint_of_global_batch(t, 64))),
                                      "written with a global batch of 64 blocks", "resume with the same global batch"),
    # 16. (reliability probe) option values that reached a library error or were saved unchecked
    "dropout_nan": numeric("--dropout", "nan"),
    "dropout_1_5": numeric("--dropout", "1.5"),
    "dropout_negative": numeric("--dropout", "-0.5"),
    "seed_negative": numeric("--seed", "-1"),
    "model_max_length_negative": Case(lambda t, k: tokenizer_argv(corpus(t), "--model_max_length", "-5"),
                                      "--model_max_length must be", "--help", usage=True),
    "block_size_1": numeric("--block_size", "1"),
    # 17. BLiMP folders: only an empty file; an empty file beside a real one
    "blimp_only_empty_file": Case(lambda t, k: eval_argv("blimp", t, jsonl(t, "p.jsonl", ["", "  "])),
                                  "p.jsonl holds no minimal pairs", "remove it from --blimp_dir"),
    "blimp_empty_beside_real": Case(lambda t, k: eval_argv("blimp", t, jsonl(jsonl(t, "a.jsonl", [GOOD_PAIR]).parent,
                                                                               "b.jsonl", [])),
                                    "b.jsonl holds no minimal pairs", "restore its lines"),
    # 18. --init_model of another family than --model_type says
    "init_model_other_type": Case(lambda t, k: train_argv(t, k["mlm"], "--init_model",
                                                          str(tiny_model(t, k["mlm"], "bert")), "--model_type", "gpt2"),
                                  "is a bert model but --model_type says gpt2", "drop --model_type"),
    # 19. the run folder's states: each names the command that works
    "run_incomplete_plain": Case(lambda t, k: train_argv(t, k["clm"], "--torch_training", "--output_dir",
                                                         str(killed_in_first_save(t))),
                                 "interrupted run without a complete checkpoint", "--resume auto to start it over"),
    "run_incomplete_resume": Case(lambda t, k: train_argv(t, k["clm"], "--torch_training", "--resume", "--output_dir",
                                                          str(killed_in_first_save(t))),
                                  "so there is nothing to resume", "pass --overwrite_output_dir or --resume auto"),
    "run_resumable_plain": Case(lambda t, k: train_argv(t, k["clm"], "--torch_training", "--output_dir",
                                                        str(checkpoint_of_global_batch(t, 8))),
                                "interrupted run with a complete checkpoint (checkpoint-5)", "pass --resume"),
    "run_finished_resume_auto": Case(lambda t, k: train_argv(t, k["clm"], "--resume", "auto", "--output_dir",
                                                             str(finished_run(t))),
                                     "already holds a finished run", "pass --overwrite_output_dir"),
    "run_other_loop": Case(lambda t, k: train_argv(t, k["clm"], "--resume", "--output_dir",
                                                   str(checkpoint_of_global_batch(t, 8))),
                           "was written by the custom loop", "resume with --torch_training"),
    "run_new_resume": Case(lambda t, k: train_argv(t, k["clm"], "--resume", "--output_dir", str(t / "nothing")),
                           "there is no run to resume", "start it without --resume"),
}


def killed_in_first_save(tmp: Path) -> Path:
    """A run folder killed while writing its first checkpoint: a best model, the HF Trainer's
    partly written checkpoint-5 (no trainer_state.json) and the custom loop's temporary one."""
    run_dir = tmp / "prev"
    (run_dir / "checkpoints" / "checkpoint-5").mkdir(parents=True)
    (run_dir / "checkpoints" / "checkpoint-5" / "model.safetensors").write_bytes(b"partial")
    (run_dir / "checkpoints" / ".checkpoint-5.abc.tmp").mkdir()
    (run_dir / "best_model").mkdir()
    return run_dir


def finished_run(tmp: Path) -> Path:
    (tmp / "prev").mkdir()
    (tmp / "prev" / "train_results.json").write_text("{}")
    return tmp / "prev"


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under root with its size and modification time (a rewrite changes it)."""
    return {str(p.relative_to(root)): (p.is_dir(), p.stat().st_size if p.is_file() else 0, p.stat().st_mtime_ns)
            for p in root.rglob("*")}


def run_cli(argv: list[str], proc: bool, capsys) -> tuple[int, str]:
    if proc:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        done = subprocess.run([sys.executable, "run.py", *argv], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120)
        return done.returncode, done.stderr
    capsys.readouterr()
    try:
        code = run.main(argv)
    except SystemExit as e:  # argparse
        code = e.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_and_writes_nothing(name, tmp_path, tok_dirs, capsys):
    case = CASES[name]
    argv = case.argv(tmp_path, tok_dirs)
    before = snapshot(tmp_path)
    code, err = run_cli(argv, case.proc, capsys)

    assert code == (2 if case.usage else 1), err
    assert err.count("\n") == 1 and err.endswith("\n") and err.strip(), repr(err)  # exactly one line
    line = err.strip()
    assert line.startswith("run.py: error: " if case.usage else "error: "), line
    assert case.wrong in line and case.fix in line, line
    assert snapshot(tmp_path) == before  # nothing written or rewritten
    for output in ("out", "tok", "cache"):
        assert not (tmp_path / output).exists(), output


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(Exception, match="not found"):
        run.main(["tokenizer", "--data_dir", str(tmp_path / "nowhere"), "--tokenizer_dir", str(tmp_path / "t"),
                  "--debug"])
