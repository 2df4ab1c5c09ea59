"""Crash-exact resume (a real SIGKILL), atomic checkpoints, checkpoint rotation,
determinism, and non-finite losses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, SAMPLE, TINY_MODEL, run_loop
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import training.setup as training_setup
from training.run_folder import checkpoint_step, list_checkpoints
from training.tracking import NonFiniteLoss

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def argv(tok_dirs, tmp_path, out, loop="pytorch", model_type="gpt2", *extra):
    kind = "mlm" if model_type in ("bert", "gpt_bert") else "clm"
    flag = ["--torch_training"] if loop == "pytorch" else []
    return ["train", *flag, "--data_dir", str(SAMPLE), "--cache_dir", str(tmp_path / "cache"),
            "--tokenizer_dir", str(tok_dirs[kind]), *TINY_MODEL, "--model_type", model_type,
            "--dropout", "0.1",  # dropout and MLM masking draw random numbers: the RNG must be restored
            "--output_dir", str(out), "--batch_size", "4", "--learning_rate", "3e-3", "--logging_steps", "1",
            "--eval_steps", "20", "--save_steps", "5", "--max_steps", "120", *extra]


def logged(run_dir, tag):
    """{step: value} as TensorBoard shows it (a resumed run's purge hides the killed run's tail)."""
    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    return {e.step: e.value for e in acc.Scalars(tag)}


def start(args, wrapper: str | None = None) -> subprocess.Popen:
    code = wrapper or "import sys, run; sys.exit(run.main(sys.argv[1:]))"
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)


def wait_for(condition, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.parametrize(("loop", "model_type", "extra"), [
    ("pytorch", "gpt2", ()), ("pytorch", "bert", ()), ("huggingface", "gpt2", ()),
    ("pytorch", "gpt2", ("--difficulty", "unigram")),  # the curriculum's order is rebuilt on resume too
    ("pytorch", "gpt_bert", ("--hybrid_ratio", "1:1")),  # the hybrid's masked/causal steps continue in step
])
def test_sigkill_then_resume_gives_the_uninterrupted_losses(loop, model_type, extra, tok_dirs, tmp_path):
    from argument_parser import parse_args

    whole = tmp_path / "whole"
    run_loop(loop, parse_args(argv(tok_dirs, tmp_path, whole, loop, model_type, *extra)))

    killed = tmp_path / "killed"
    args = argv(tok_dirs, tmp_path, killed, loop, model_type, *extra)
    proc = start(args)
    wait_for(lambda: any(checkpoint_step(p) >= 10 for p in list_checkpoints(killed)), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "train_results.json").exists()
    resumed_from = list_checkpoints(killed)[-1]

    results = run_loop(loop, parse_args([*args, "--resume"]))
    reference = logged(whole, "train/loss")
    assert len(reference) == 120 and checkpoint_step(resumed_from) < 120
    assert logged(killed, "train/loss") == pytest.approx(reference, abs=1e-6)
    if model_type == "gpt_bert":  # the resumed steps are masked and causal exactly as in the whole run
        for tag in ("train/masked_loss", "train/causal_loss"):
            assert logged(killed, tag) == pytest.approx(logged(whole, tag), abs=1e-6)
    assert logged(killed, "eval/loss") == pytest.approx(logged(whole, "eval/loss"), abs=1e-6)
    assert results["steps"] == 120


def test_kill_during_a_save_leaves_the_previous_checkpoint_valid(tok_dirs, tmp_path):
    from argument_parser import parse_args

    out = tmp_path / "run"
    args = argv(tok_dirs, tmp_path, out)
    # The child process makes its step-10 checkpoint save hang after the model is written.
    wrapper = (
        "import sys, time, pytorch_training_loop as L\n"
        "orig = L.write_json_atomic\n"
        "def slow(path, data):\n"
        "    if path.name == L.STATE_FILE and data['progress']['step'] == 10:\n"
        "        print('saving', flush=True); time.sleep(60)\n"
        "    orig(path, data)\n"
        "L.write_json_atomic = slow\n"
        "import run; sys.exit(run.main(sys.argv[1:]))\n"
    )
    proc = start(args, wrapper)
    assert proc.stdout.readline().strip() == "saving"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert [p.name for p in list_checkpoints(out)] == ["checkpoint-5"]  # the half-written one is ignored
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(out / "checkpoints" / "checkpoint-5")  # the previous one loads
    results = run_loop("pytorch", parse_args([*args, "--resume"]))
    assert results["steps"] == 120
    assert not list((out / "checkpoints").glob(".*"))  # the stale temporary folder was removed


@pytest.mark.parametrize("loop", ["pytorch", "huggingface"])
def test_keeps_only_the_newest_checkpoints_and_same_seed_same_losses(loop, tok_dirs, tmp_path):
    from argument_parser import parse_args

    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        run_loop(loop, parse_args(argv(tok_dirs, tmp_path, out, loop, "gpt2", "--max_steps", "23",
                                    "--save_total_limit", "2")))
        runs.append(logged(out, "train/loss"))
    assert [p.name for p in list_checkpoints(tmp_path / "a")] == ["checkpoint-20", "checkpoint-23"]
    assert runs[0] == runs[1] and len(runs[0]) == 23  # determinism: identical, not just close


def test_nonfinite_loss_stops_or_is_skipped(tok_dirs, tmp_path, monkeypatch):
    from argument_parser import parse_args

    real_build = training_setup.build_model
    calls = {"n": 0}

    def poisoned_build(args, tokenizer):
        model = real_build(args, tokenizer)

        # On the body's output, which both loops' losses run through (the custom loop calls
        # neither model.forward nor the head module: losses.linear_cross_entropy).
        def poison(module, inputs, out):
            if not model.training:
                return None
            calls["n"] += 1
            if calls["n"] != 12:  # the 12th training micro-batch
                return None
            out.last_hidden_state = out.last_hidden_state * float("nan")
            return out

        model.base_model.register_forward_hook(poison)
        return model

    monkeypatch.setattr(training_setup, "build_model", poisoned_build)
    for loop in ("pytorch", "huggingface"):
        calls["n"] = 0
        out = tmp_path / f"nan_{loop}"
        with pytest.raises(NonFiniteLoss, match="optimizer step 12"):
            run_loop(loop, parse_args(argv(tok_dirs, tmp_path, out, loop)))
        assert [p.name for p in list_checkpoints(out)] == ["checkpoint-5", "checkpoint-10"]  # last good ones kept

    calls["n"] = 0
    skip = tmp_path / "skip"
    results = run_loop("pytorch", parse_args([*argv(tok_dirs, tmp_path, skip, "pytorch", "gpt2",
                                                            "--max_steps", "20"), "--skip_nonfinite"]))
    assert results["steps"] == 20 and logged(skip, "train/skipped_batches")[20] == 1
