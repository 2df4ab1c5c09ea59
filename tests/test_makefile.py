"""The Makefile's commands (`make -n`, nothing is run): every budget run's model gets the tokenizer it
needs; make eval_data fetches both evaluation data sets."""

from __future__ import annotations

import shlex
import subprocess

from conftest import ROOT

from argument_parser import parse_args


def run_commands(tmp_path, action: str, *targets: str) -> dict[str, list[str]]:
    """The `run.py <action>` commands `make -n targets` would run (SAVE_DIR=tmp_path), keyed by their
    output folder (--output_dir; --tokenizer_dir for the tokenizer action)."""
    out = subprocess.run(["make", "-n", "--no-print-directory", *targets, f"SAVE_DIR={tmp_path}"], cwd=ROOT,
                         check=True, capture_output=True, text=True).stdout
    key = "--tokenizer_dir" if action == "tokenizer" else "--output_dir"
    commands = {}
    for line in out.splitlines():
        words = shlex.split(line)
        if "run.py" in line and action in words:
            commands[words[words.index(key) + 1]] = words
    return commands


def last(words: list[str], option: str) -> str:
    """The value of the last `option` in the command (options given later win, as argparse does)."""
    return [words[i + 1] for i, w in enumerate(words) if w == option][-1]


def test_every_budget_run_gets_the_tokenizer_its_model_needs(tmp_path, monkeypatch):
    """Masked models (bert, gpt_bert, ltg_bert) need the mlm tokenizer (it has <mask>), causal ones the clm
    tokenizer; a candidate's CAND_VOCAB_<name> picks the tokenizer's size. The options are read as
    run.py reads them: the --config recipes (configs/) first, the command line winning."""
    monkeypatch.chdir(ROOT)  # the recipes' paths are relative to the repository
    commands = run_commands(tmp_path, "train", "candidates", "sweep")
    assert len(commands) >= 22  # the 13 candidates and 9 sweep entries
    parsed = {out: parse_args(words[words.index("run.py") + 1:]) for out, words in commands.items()}
    for out, args in parsed.items():
        kind = "mlm" if args.model_type in ("bert", "gpt_bert", "ltg_bert") else "clm"
        assert args.tokenizer_dir.rstrip("/").endswith(f"tokenizer_{kind}"), out
        assert args.max_minutes is not None, out
    run = {name: parsed[str(tmp_path / name)]
           for name in ("best_bert", "best_seed43", "best_vocab8k", "best_norm", "best_deep", "best_block256_dropout",
                        "best_hybrid_wide_batch16", "best_ltg_bert")}
    assert run["best_bert"].model_type == "bert"
    assert "/tok8000/" in run["best_vocab8k"].tokenizer_dir
    assert "/step1/" in run["best_seed43"].tokenizer_dir and run["best_seed43"].seed == 43
    assert "/toknorm/" in run["best_norm"].tokenizer_dir
    assert (run["best_deep"].hidden_size, run["best_deep"].num_layers) == (192, 8)
    assert (run["best_block256_dropout"].block_size, run["best_block256_dropout"].dropout) == (256, 0.1)
    assert run["best_hybrid_wide_batch16"].hybrid_ratio == "1:1" and run["best_hybrid_wide_batch16"].batch_size == 16
    ltg = run["best_ltg_bert"]  # the authors' recipe at the baseline's size
    assert (ltg.model_type, ltg.optimizer, ltg.learning_rate, ltg.hidden_size) == ("ltg_bert", "lamb", 1.41e-2, 256)


def test_step12_trains_the_authors_recipe_at_two_sizes(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    commands = run_commands(tmp_path, "train", "step12")
    small, strict = (parse_args(commands[str(tmp_path / name)][commands[str(tmp_path / name)].index("run.py") + 1:])
                     for name in ("step12_ltg_bert_small", "step12_ltg_bert_strict_small"))
    for args in (small, strict):
        assert (args.model_type, args.optimizer, args.learning_rate, args.ema_decay, args.hybrid_mix) == (
            "ltg_bert", "lamb", 1.41e-2, 0.999, "batch")
        assert args.tokenizer_dir.rstrip("/").endswith("tokenizer_mlm")
    assert (small.hidden_size, small.num_layers) == (256, 4)
    assert (strict.hidden_size, strict.num_layers, strict.num_heads, strict.intermediate_size) == (384, 12, 6, 1280)
    assert "/tok8192/" in strict.tokenizer_dir


def test_tokenizer_variants_get_their_options(tmp_path):
    """A tokenizer variant is a vocabulary size (tok8000: --vocab_size 8000) or a TOK_<name> (toknorm: the
    default size, lowercased, punctuation joined)."""
    commands = run_commands(tmp_path, "tokenizer", "candidates")
    norm, small = commands[str(tmp_path / "toknorm/tokenizer_clm")], commands[str(tmp_path / "tok8000/tokenizer_clm")]
    assert "--lowercase" in norm and "--join_punctuation" in norm and last(norm, "--vocab_size") == "16000"
    assert "--lowercase" not in small and last(small, "--vocab_size") == "8000"


def test_eval_data_fetches_blimp_and_the_official_data(tmp_path):
    out = subprocess.run(["make", "-n", "--no-print-directory", "eval_data", f"BLIMP_DIR={tmp_path}/blimp",
                          f"EVAL_DIR={tmp_path}/official", "EVAL_OPTS=--from /somewhere"], cwd=ROOT,
                         check=True, capture_output=True, text=True).stdout
    commands = [shlex.split(line) for line in out.splitlines() if "tools.download" in line]
    assert [words[words.index("tools.download") + 1:] for words in commands] == [
        ["blimp", "--blimp_dir", f"{tmp_path}/blimp"],
        ["official_eval", "--eval_dir", f"{tmp_path}/official", "--from", "/somewhere"]]


def test_every_target_passes_each_action_only_its_own_options(tmp_path):
    """Each `run.py <action>` line that `make -n -B` prints for every .PHONY target (and the variable
    sets tools/make_dry_run.py knows, EXTRA included) is accepted by that action's parser: the
    per-action command lines refuse an option of another action, so a chain that handed the tokenizer
    a training option would stop there."""
    from tools.make_dry_run import EXTRA_RUNS, phony_targets

    runs = [[t, "STEP=step2_1"] for t in phony_targets()] + list(EXTRA_RUNS.values())
    runs.append(["step2_2", "EXTRA=--checkpoint_words babylm", "TRACK=strict-small"])
    checked = set()
    for args in runs:
        out = subprocess.run(["make", "-n", "-B", "--no-print-directory", *args, f"SAVE_DIR={tmp_path}"], cwd=ROOT,
                             capture_output=True, text=True).stdout
        for line in out.replace("\\\n", " ").splitlines():  # a recipe's continued lines as one command
            command = line.split("&&")[-1].strip()
            first = command.split(" ", 1)[0]
            if " run.py " not in command or not first.endswith(("python", "python3", "torchrun")):
                continue  # an echo or a shell loop that mentions run.py, not a call of it
            words = shlex.split(command)
            argv = words[words.index("run.py") + 1:]
            try:
                parse_args(argv)
            except SystemExit as e:
                raise AssertionError(f"make {' '.join(args)}: run.py {' '.join(argv)} is refused") from e
            checked.add(argv[0])
    assert {"tokenizer", "train", "test", "evaluate", "finetune", "submission", "blimp", "curve"} <= checked
