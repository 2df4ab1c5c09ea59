"""Data-parallel training under torchrun: 2 CPU processes (gloo) against 1 process with the
same global batch, resume with the same and with a different number of processes, a
failing rank, the HF Trainer under torchrun. Each torchrun launch is a subprocess with
OMP_NUM_THREADS=1 on the tiny conftest model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import ROOT, SAMPLE, TINY_MODEL, run_loop
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from transformers import AutoModelForCausalLM

from argument_parser import parse_args
from pytorch_training_loop import epoch_order
from training.run_folder import checkpoint_step, list_checkpoints

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
STEPS = 12
# Words seen by the tiny run: about 115 per step of 8 blocks. 600 and 601 fall into one step
# (two folders saved at that step); 10M is never reached.
MARKS = ["300", "600", "601", "1K", "1.3K", "10M"]


def torchrun(args: list[str], script: str = "run.py", timeout: float = 240) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node=2 script args` from the repository root."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", script, *args]
    return subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)


def train_argv(tok_dirs, cache, out, batch: int, accum: int, *extra: str, loop: str = "pytorch") -> list[str]:
    flag = ["--torch_training"] if loop == "pytorch" else []
    return ["train", *flag, "--data_dir", str(SAMPLE), "--cache_dir", str(cache), "--tokenizer_dir",
            str(tok_dirs["clm"]), *TINY_MODEL, "--device", "cpu", "--output_dir", str(out),
            "--batch_size", str(batch), "--gradient_accumulation_steps", str(accum), "--learning_rate", "3e-3",
            "--logging_steps", "1", "--eval_steps", "5", "--save_steps", "3", "--save_total_limit", "10",
            "--max_steps", str(STEPS), "--checkpoint_words", *MARKS, *extra]


def logged(run_dir, tag) -> dict[int, float]:
    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    return {e.step: e.value for e in acc.Scalars(tag)}


def weights(folder) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


def assert_close_weights(a, b, tol: float) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.allclose(wa[name], wb[name], atol=tol, rtol=0), name


def chck_folders(run_dir) -> list[str]:
    return sorted(p.name for p in run_dir.glob("chck_*"))


@pytest.fixture(scope="module")
def runs(tok_dirs, tmp_path_factory):
    """The same 12 steps with a global batch of 8: one process (4 x 2 accumulation, in this
    process) and two (2 x 2 accumulation each, under torchrun), float32, no dropout."""
    root = tmp_path_factory.mktemp("ddp")
    one = run_loop("pytorch", parse_args(train_argv(tok_dirs, root / "cache", root / "one", 4, 2)))
    started = time.time()
    done = torchrun(train_argv(tok_dirs, root / "cache", root / "two", 2, 2))
    assert done.returncode == 0, done.stderr[-3000:]
    return {"root": root, "one": one, "two": json.loads((root / "two" / "train_results.json").read_text()),
            "stderr": done.stderr, "seconds": time.time() - started}


def test_two_processes_reach_the_one_process_losses(runs):
    root = runs["root"]
    one, two = logged(root / "one", "train/loss"), logged(root / "two", "train/loss")
    assert len(one) == STEPS and one.keys() == two.keys()
    assert two == pytest.approx(one, abs=1e-4)
    assert logged(root / "two", "eval/loss") == pytest.approx(logged(root / "one", "eval/loss"), abs=1e-4)
    assert one[STEPS] < one[1] - 0.2  # it trained
    assert_close_weights(root / "one" / "best_model", root / "two" / "best_model", 1e-4)
    assert runs["two"]["processes"] == 2 and runs["two"]["steps"] == STEPS
    assert runs["two"]["tokens_seen"] == runs["one"]["tokens_seen"] == STEPS * 8 * 32


def test_only_rank_0_writes_one_run_folder_and_one_log(runs):
    root = runs["root"]
    assert sorted(p.name for p in root.iterdir()) == ["cache", "one", "two"]
    two = root / "two"
    assert sorted(p.name for p in two.iterdir() if not p.name.startswith("chck_")) == [
        ".lock", "best_model", "checkpoints", "log.txt", "tensorboard", "train_results.json"]
    assert len(list((two / "tensorboard").iterdir())) == 1  # one events file
    log = (two / "log.txt").read_text()
    assert log.count("done: best validation loss") == 1 and "2 processes of 2 x 2 blocks" in log
    assert runs["stderr"].count("done: best validation loss") == 1  # rank 1 is silent
    assert [p.name for p in list_checkpoints(two)] == [f"checkpoint-{s}" for s in (3, 6, 9, 12)]


def test_checkpoint_words_counted_over_all_processes(runs, tok_dirs):
    """Both runs save the folders of the marks their words crossed, at the steps the words
    of the global batches say (computed here from the cached words per block)."""
    root = runs["root"]
    cache = next((root / "cache").glob("train-*"))
    words = np.load(cache / "words.npy")
    order = epoch_order(len(words), 42, 0)
    seen = np.cumsum([words[order[k * 8:(k + 1) * 8].numpy()].sum() for k in range(STEPS)])
    names = {300: "chck_300", 600: "chck_600", 601: "chck_601", 1000: "chck_1K", 1300: "chck_1300",
             10_000_000: "chck_10M"}
    expected = {}
    for mark, name in names.items():
        reached = np.nonzero(seen >= mark)[0]
        if len(reached):
            expected[name] = {"words": mark, "step": int(reached[0]) + 1, "words_seen": int(seen[reached[0]])}
    assert sorted(expected) == ["chck_1300", "chck_1K", "chck_300", "chck_600", "chck_601"]  # 10M is not reached
    assert expected["chck_600"]["step"] == expected["chck_601"]["step"]
    for run in ("one", "two"):
        assert runs[run]["checkpoint_words"] == expected, run
        assert runs[run]["words_seen"] == int(seen[-1])
        assert chck_folders(root / run) == sorted(expected)
    model = AutoModelForCausalLM.from_pretrained(root / "two" / "chck_1K")  # loadable like the final model
    assert model.config.vocab_size == 600
    assert (root / "two" / "chck_1K" / "tokenizer.json").is_file()
    assert_close_weights(root / "one" / "chck_1K", root / "two" / "chck_1K", 1e-4)


def interrupted_copy(run_dir, dest, at_step: int):
    """The run folder as a run killed after checkpoint-`at_step` leaves it (checkpoints up to it),
    without the logs and chck_* folders, so everything compared below is written by the resumed run."""
    shutil.copytree(run_dir, dest)
    for path in list_checkpoints(dest):
        if checkpoint_step(path) > at_step:
            shutil.rmtree(path)
    for name in ("train_results.json", "log.txt"):
        (dest / name).unlink()
    shutil.rmtree(dest / "tensorboard")
    for path in dest.glob("chck_*"):
        shutil.rmtree(path)


def test_resume_with_the_same_or_another_number_of_processes(runs, tok_dirs):
    root = runs["root"]
    whole = logged(root / "two", "train/loss")
    # Two processes, resumed by two: the uninterrupted run's losses.
    interrupted_copy(root / "two", root / "again2", 6)
    done = torchrun([*train_argv(tok_dirs, root / "cache", root / "again2", 2, 2), "--resume"])
    assert done.returncode == 0, done.stderr[-3000:]
    # Two processes, resumed by one with the same global batch (8 x 1).
    interrupted_copy(root / "two", root / "again1", 6)
    results = run_loop("pytorch", parse_args([*train_argv(tok_dirs, root / "cache", root / "again1", 8, 1),
                                                      "--resume"]))
    for run, tol in (("again2", 1e-6), ("again1", 1e-4)):
        resumed = logged(root / run, "train/loss")
        assert sorted(resumed) == list(range(7, STEPS + 1)), run
        assert resumed == pytest.approx({s: whole[s] for s in resumed}, abs=tol), run
        # The word count continues: the marks after step 6 are saved, those before are kept in the results.
        final = json.loads((root / run / "train_results.json").read_text())
        assert final["checkpoint_words"] == runs["two"]["checkpoint_words"], run
        after = sorted(n for n, m in final["checkpoint_words"].items() if m["step"] > 6)
        assert after and chck_folders(root / run) == after, run
    assert results["steps"] == STEPS
    # Another global batch is refused, with the fix.
    interrupted_copy(root / "two", root / "again_other", 6)
    from utils import UserError

    with pytest.raises(UserError, match="global batch of 8 blocks .* this run's is 4"):
        run_loop("pytorch", parse_args([*train_argv(tok_dirs, root / "cache", root / "again_other", 4, 1),
                                                "--resume"]))


FAILING_RANK = """
import os, sys
sys.path.insert(0, os.getcwd())
from training.setup import TrainingSetup
from utils import UserError

if os.environ["RANK"] == "1":  # rank 1 fails at its fourth optimizer step; rank 0 is then inside DDP's all-reduce
    real = TrainingSetup.training_batch

    def failing(setup, batch, step):
        if step == 3:
            raise UserError("injected failure on rank 1")
        return real(setup, batch, step)

    TrainingSetup.training_batch = failing
import run

sys.exit(run.main(sys.argv[1:]))
"""


def test_a_failing_rank_stops_the_run_with_its_error(runs, tok_dirs, tmp_path):
    script = tmp_path / "failing_rank.py"
    script.write_text(FAILING_RANK)
    started = time.time()
    done = torchrun(train_argv(tok_dirs, runs["root"] / "cache", tmp_path / "out", 2, 2), script=str(script),
                    timeout=120)
    assert done.returncode != 0
    assert "error (rank 1): injected failure on rank 1" in done.stderr
    assert time.time() - started < 90  # no hang: torchrun stops rank 0
    assert not (tmp_path / "out" / "train_results.json").exists()


def test_hf_trainer_under_torchrun(runs, tok_dirs):
    """The HF Trainer's own DDP: 2 processes x 4 blocks against 1 x 8 (accelerate hands
    process r the r-th of every 2 consecutive batches, the blocks of one batch of 8)."""
    root = runs["root"]
    one = run_loop("huggingface", parse_args(train_argv(tok_dirs, root / "cache", root / "hf1", 8, 1,
                                                               loop="huggingface")))
    done = torchrun(train_argv(tok_dirs, root / "cache", root / "hf2", 4, 1, loop="huggingface"))
    assert done.returncode == 0, done.stderr[-3000:]
    two = json.loads((root / "hf2" / "train_results.json").read_text())
    assert two["steps"] == one["steps"] == STEPS and two["processes"] == 2
    assert logged(root / "hf2", "train/loss") == pytest.approx(logged(root / "hf1", "train/loss"), abs=1e-4)
    assert len(list((root / "hf2" / "tensorboard").iterdir())) == 1
    assert two["checkpoint_words"] == one["checkpoint_words"] and chck_folders(root / "hf2") == chck_folders(
        root / "hf1")
    # Resumed by two processes from its checkpoint-6 (the Trainer's own resume): the same losses.
    interrupted_copy(root / "hf2", root / "hf2_again", 6)
    done = torchrun([*train_argv(tok_dirs, root / "cache", root / "hf2_again", 4, 1, loop="huggingface"), "--resume"])
    assert done.returncode == 0, done.stderr[-3000:]
    resumed, whole = logged(root / "hf2_again", "train/loss"), logged(root / "hf2", "train/loss")
    assert sorted(resumed) == list(range(7, STEPS + 1))
    assert resumed == pytest.approx({s: whole[s] for s in resumed}, abs=1e-4)


@pytest.mark.parametrize("loop", ["pytorch", "huggingface"])
def test_time_budget_under_torchrun(runs, tok_dirs, loop):
    """--max_minutes in 2 processes: every rank follows rank 0's clock, so all stop at the same
    step (no hang) with the schedule run out."""
    root = runs["root"]
    argv = train_argv(tok_dirs, root / "cache", root / f"budget_{loop}", 2, 2, loop=loop)
    at = argv.index("--max_steps")
    done = torchrun([*argv[:at], *argv[at + 2:], "--max_minutes", "0.05"], timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((root / f"budget_{loop}" / "train_results.json").read_text())
    assert results["processes"] == 2 and results["steps"] >= 3
    assert 3.0 <= results["step_seconds"] < 3.0 + 2.0
    lrs = logged(root / f"budget_{loop}", "train/lr")
    # The last step's LR is the schedule's at the end of the step before it: near 0 (the
    # single-process test checks the shape closely).
    assert lrs[max(lrs)] < 0.25 * 3e-3 < max(lrs.values())
