"""One front end per action (argument_parser.ACTIONS): each action's --help lists only the options
its code reads, an option of another action is a usage error naming both, --config reads a TOML
recipe through the same parser (the command line wins), and a run folder written before the
per-action command lines still resumes."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, SAMPLE, TINY_MODEL, run_loop

from argument_parser import ACTIONS, action_options, build_parser, parse_args

# The source a handler reaches that reads the namespace: run.py's own handlers are read from their
# function (and main, which reads --num_threads); the others from these modules.
HANDLER_SOURCES = {
    # hybrid_model.py: custom_models reads the body's switches by the names of its BODY_PIECES
    "train": ["training/*.py", "pytorch_training_loop.py", "huggingface_trainer_loop.py", "custom_models.py",
              "hybrid_model.py"],
    "test": ["evaluation/testset.py", "evaluation/blimp.py"],
    "blimp": ["evaluation/blimp.py"],
    "evaluate": ["evaluation/zero_shot.py"],
    "finetune": ["evaluation/finetune*.py"],
    "curve": ["evaluation/learning_curve.py"],
    "evaluate_checkpoints": ["evaluation/checkpoints.py", "evaluation/zero_shot.py"],
    "submission": ["evaluation/submission.py"],
    "export": ["evaluation/export.py"],
}
COMPUTE_SOURCES = ["training/hardware.py"]  # run.py resolves --precision/--compile there for these actions


def _function_source(path: Path, name: str) -> str:
    """The source of the function `name` in `path`."""
    tree = ast.parse(path.read_text())
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    return ast.get_source_segment(path.read_text(), node)


def action_source(action: str) -> str:
    """The source of the code path `action` runs (its handler, the modules it reaches, run.main)."""
    module, _, function = ACTIONS[action].handler.partition(":")
    texts = [_function_source(ROOT / "run.py", "main")]
    if module == "run":
        texts.append(_function_source(ROOT / "run.py", function))
    for pattern in HANDLER_SOURCES.get(action, []):
        texts += [p.read_text() for p in sorted(ROOT.glob(pattern))]
    if "precision" in action_options(action):
        texts += [(ROOT / p).read_text() for p in COMPUTE_SOURCES]
    return "\n".join(texts)


def reads(source: str, dest: str) -> bool:
    """Whether `source` reads the option `dest` of a namespace (args.dest, or its name as a string)."""
    return re.search(rf"\bargs\.{dest}\b|\"{dest}\"", source) is not None


def test_every_listed_option_is_read_by_its_action():
    """Static check: each option an action's --help lists appears as args.<dest> (or "<dest>") in the
    code that action runs; an option added to the wrong action's groups fails here."""
    assert not reads(action_source("export"), "hidden_size")  # the check can fail
    unread = {action: [d for d in action_options(action) if not reads(action_source(action), d)]
              for action in ACTIONS}
    assert {a: d for a, d in unread.items() if d} == {}


def test_help_lists_only_the_actions_options():
    proc = subprocess.run([sys.executable, "run.py", "train", "--help"], cwd=ROOT, capture_output=True, text=True)
    # train's own options only, one or two lines each (the hybrid body's 8 switches and GPT-BERT's
    # objective and optimizer pieces brought it from 120 to about 145)
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) <= 150
    assert "--hidden_size" in proc.stdout and "--glue_dir" not in proc.stdout and "--save_dir" not in proc.stdout
    parsers = build_parser().action_parsers
    for action in ACTIONS:
        text = parsers[action].format_help()
        listed = set(re.findall(r"^  (--[a-z_0-9]+)", text, re.MULTILINE)) - {"--help", "--config", "--debug"}
        assert listed == {o for o in parsers[action].options if o.startswith("--")} - {"--help", "--config",
                                                                                    "--debug"}, action


WRONG = {"tokenizer": "--hidden_size", "dataset": "--model_type", "stats": "--block_size", "train": "--glue_dir",
         "test": "--learning_rate", "blimp": "--data_dir", "evaluate": "--blimp_dir", "finetune": "--learning_rate",
         "report": "--model_dir", "curve": "--eval_dir", "evaluate_checkpoints": "--convention",
         "submission": "--export_dir", "export": "--partial"}


def test_an_option_of_another_action_is_refused(capsys):
    assert set(WRONG) == set(ACTIONS)
    for action, option in WRONG.items():
        assert option not in build_parser().action_parsers[action].options
        with pytest.raises(SystemExit) as stopped:
            parse_args([action, option, "1"])
        err = capsys.readouterr().err
        assert stopped.value.code == 2 and err.count("\n") == 1, err
        assert err.startswith(f"run.py: error: {option} is not an option of the {action} action"), err
    proc = subprocess.run([sys.executable, "run.py", "train", "--tokenizer_dir", "t", "--output_dir", "o",
                           "--glue_dir", "foo", "--zero_shot_tasks", "blimp"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--glue_dir" in proc.stderr, proc.stderr


TRAIN = ["train", "--tokenizer_dir", "t", "--output_dir", "o"]


def recipe(tmp_path: Path, text: str) -> str:
    path = tmp_path / "recipe.toml"
    path.write_text(text)
    return str(path)


def test_config_values_and_the_command_line_wins(tmp_path):
    path = recipe(tmp_path, '# a recipe\nmodel_type = "llama"\nhidden_size = 64\nnum_heads = 2\nlearning_rate = 2e-3\n'
                  'torch_training = true\nskip_nonfinite = false\ntrain_files = ["qed", "cbt"]\n'
                  'checkpoint_words = ["1M", "2M"]\ncompile = "auto"\n')
    args = parse_args([*TRAIN, "--config", path])
    assert (args.model_type, args.hidden_size, args.num_heads, args.learning_rate) == ("llama", 64, 2, 2e-3)
    assert args.torch_training and not args.skip_nonfinite and args.train_files == ["qed", "cbt"]
    assert args.checkpoint_words == [1_000_000, 2_000_000] and args.compile == "auto"
    assert "config" not in vars(args)  # run_args.json records the options, not the file
    won = parse_args([*TRAIN, "--hidden_size", "32", "--config", path, "--train_files", "aochildes"])
    assert won.hidden_size == 32 and won.train_files == ["aochildes"] and won.model_type == "llama"
    later = recipe(tmp_path / "..", "hidden_size = 128\n")
    assert parse_args([*TRAIN, "--config", path, "--config", later]).hidden_size == 128
    assert vars(parse_args([*TRAIN, "--config", recipe(tmp_path, "")])) == vars(parse_args(TRAIN))


@pytest.mark.parametrize("text, command_line", [
    ("hidden_size = 0\n", ["--hidden_size", "0"]),
    ("learning_rate = nan\n", ["--learning_rate", "nan"]),
    ('model_type = "gpt3"\n', ["--model_type", "gpt3"]),
    ('hybrid_ratio = "0:0"\n', ["--hybrid_ratio", "0:0"]),
])
def test_config_bad_value_is_refused_as_on_the_command_line(tmp_path, capsys, text, command_line):
    messages = []
    for argv in ([*TRAIN, "--config", recipe(tmp_path, text)], [*TRAIN, *command_line]):
        with pytest.raises(SystemExit) as stopped:
            parse_args(argv)
        assert stopped.value.code == 2
        messages.append(capsys.readouterr().err)
    assert messages[0] == messages[1] and messages[0].count("\n") == 1, messages


@pytest.mark.parametrize("text, named", [
    ("hiden_size = 64\n", "unknown key 'hiden_size'"),
    ('glue_dir = "g"\n', "unknown key 'glue_dir': not an option of the train action (an option of finetune)"),
    ("torch_training = 1\n", "torch_training = 1: --torch_training is a flag"),
    ("hidden_size = [1, 2]\n", "--hidden_size takes one value"),
    ("hidden_size = \n", "is not a readable TOML file"),
])
def test_config_unknown_key_or_bad_entry_is_named(tmp_path, capsys, text, named):
    path = recipe(tmp_path, text)
    with pytest.raises(SystemExit) as stopped:
        parse_args([*TRAIN, "--config", path])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and err.count("\n") == 1 and named in err and path in err, err


def test_the_recipes_in_configs_parse():
    for path in sorted((ROOT / "configs").rglob("*.toml")):
        assert path.read_text().startswith("# "), path  # says what it is
        parse_args([*TRAIN, "--config", str(ROOT / "configs" / "baseline.toml"), "--config", str(path)])


OLD_RUN_ARGS = ROOT / "tests" / "data" / "run_args_before_cli_split.json"
# Options the one parser recorded in every run_args.json that the train action no longer has (no
# training code reads them): other actions' options, and test_files/model_dir of the old groups.
DERIVED = {"action", "debug", "training_options", "hybrid_masked_share", "fast_path"}
# Train options added since that record (GPT-BERT's body switches, objective and optimizer pieces):
# an old run folder resumes without them, each at its default.
ADDED_SINCE = {"relative_positions", "value_gate", "attention_output_norm", "geglu", "affine_norms", "layer_weights",
               "mlp_head", "ltg_init", "mask_span", "mlm_probability_end", "z_loss", "hybrid_mix", "optimizer",
               "min_lr_ratio", "cooldown_ratio", "ema_decay", "length_schedule",
               "document_mask"}


def test_run_args_written_before_the_change_still_resumes(tok_dirs, tmp_path):
    old = json.loads(OLD_RUN_ARGS.read_text())
    train = set(action_options("train"))
    assert set(old["training_options"]) - train == {"model_dir", "test_files"}
    assert train - ADDED_SINCE <= set(old) | {"config"}  # every other option of today's train action is in it
    assert not ADDED_SINCE & set(old)
    out = tmp_path / "run"
    argv = ["train", "--data_dir", str(SAMPLE), "--cache_dir", str(tmp_path / "cache"), "--tokenizer_dir",
            str(tok_dirs["clm"]), "--output_dir", str(out), "--torch_training", *TINY_MODEL, "--batch_size", "4",
            "--max_steps", "4", "--save_steps", "2", "--eval_steps", "2"]
    run_loop("pytorch", parse_args(argv))
    # Interrupted after step 2, with the files the code before the change wrote.
    (out / "train_results.json").unlink()
    shutil.rmtree(out / "checkpoints" / "checkpoint-4")
    for folder in (out / "best_model", out / "checkpoints" / "checkpoint-2"):
        shutil.copy(OLD_RUN_ARGS, folder / "run_args.json")
    results = run_loop("pytorch", parse_args([*argv, "--resume"]))
    assert results["steps"] == 4  # resumed from step 2 to the end
    written = json.loads((out / "best_model" / "run_args.json").read_text())
    assert set(written) - DERIVED == train and written["training_options"] == list(action_options("train"))


@pytest.mark.parametrize("option", ["--weight_decay 0.2", "--warmup_ratio 0.1", "--grad_norm_clip 2",
                                    "--adam_beta2 0.95", "--attn_implementation eager"])
def test_official_finetuning_refuses_the_options_it_would_ignore(option, capsys):
    base = ["finetune", "--model_dir", "m", "--glue_dir", "g", "--output_dir", "o", *option.split()]
    with pytest.raises(SystemExit) as e:
        parse_args(base)
    assert e.value.code == 2
    assert f"{option.split()[0]} is not read by --finetune_protocol official" in capsys.readouterr().err
    assert parse_args([*base, "--finetune_protocol", "ours"]).finetune_protocol == "ours"  # ours reads it
    assert parse_args(base[:7]).weight_decay is not None  # the default is no refusal


def test_attention_kernel_defaults_to_eager_for_training_and_sdpa_for_scoring():
    """One rule (parse_args): eager compiled faster in training here, sdpa scored entity tracking 1.6x as fast."""
    from argument_parser import parse_args

    train = parse_args(["train", "--tokenizer_dir", "t", "--output_dir", "o"])
    score = parse_args(["evaluate", "--model_dir", "m", "--eval_dir", "e"])
    assert (train.attn_implementation, score.attn_implementation) == ("eager", "sdpa")
    assert parse_args(["evaluate", "--model_dir", "m", "--eval_dir", "e", "--attn_implementation", "eager"]
                      ).attn_implementation == "eager"  # a choice given wins
