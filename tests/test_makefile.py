"""The Makefile's budget runs (`make -n`, nothing is run): every model gets the tokenizer it needs."""

from __future__ import annotations

import shlex
import subprocess

from conftest import ROOT


def train_commands(tmp_path, *targets: str) -> dict[str, list[str]]:
    """The `run.py train` commands `make -n targets` would run (SAVE_DIR=tmp_path), keyed by --output_dir."""
    out = subprocess.run(["make", "-n", "--no-print-directory", *targets, f"SAVE_DIR={tmp_path}"], cwd=ROOT,
                         check=True, capture_output=True, text=True).stdout
    commands = {}
    for line in out.splitlines():
        words = shlex.split(line)
        if "run.py" in line and "train" in words:
            commands[words[words.index("--output_dir") + 1]] = words
    return commands


def last(words: list[str], option: str) -> str:
    """The value of the last `option` in the command (options given later win, as argparse does)."""
    return [words[i + 1] for i, w in enumerate(words) if w == option][-1]


def test_every_budget_run_gets_the_tokenizer_its_model_needs(tmp_path):
    """Masked models (bert, gpt_bert) need the mlm tokenizer (it has <mask>), causal ones the clm
    tokenizer; a candidate's CAND_VOCAB_<name> picks the tokenizer's size."""
    commands = train_commands(tmp_path, "candidates", "sweep")
    assert len(commands) >= 19  # the 10 candidates and 9 sweep entries
    for out, words in commands.items():
        kind = "mlm" if last(words, "--model_type") in ("bert", "gpt_bert") else "clm"
        assert last(words, "--tokenizer_dir").rstrip("/").endswith(f"tokenizer_{kind}"), out
        assert "--max_minutes" in words, out
    run = {name: commands[str(tmp_path / name)] for name in ("best_bert", "best_seed43", "best_vocab8k")}
    assert last(run["best_bert"], "--model_type") == "bert"
    assert "/tok8000/" in last(run["best_vocab8k"], "--tokenizer_dir")
    assert "/step1/" in last(run["best_seed43"], "--tokenizer_dir") and last(run["best_seed43"], "--seed") == "43"
