"""--max_minutes: a run that lasts a wall-clock budget, with the LR schedule sized for it."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import run_loop
from transformers import get_cosine_schedule_with_warmup

from training.optim import lr_factor
from training.tracking import BestTracker, TrainingClock

BUDGET_MINUTES = 0.04  # 2.4 s of optimizer steps: dozens of tiny-model steps


def test_lr_factor_is_the_step_schedule_on_fractions():
    """The time schedule has the shape of get_cosine_schedule_with_warmup at fraction = step / total."""
    total, warmup = 200, 10
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1.0)
    sched = get_cosine_schedule_with_warmup(opt, warmup, total)
    for step in range(total + 1):
        assert lr_factor(step / total, warmup / total) == pytest.approx(sched.get_last_lr()[0], abs=1e-9), step
        opt.step()
        sched.step()
    assert lr_factor(1.0, 0.05) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(0.0, 0.0) == 1.0  # no warm-up: the peak from the first step


def test_clock_counts_only_step_time_and_expires():
    clock = TrainingClock(1 / 60)  # one second
    assert clock.fraction() == 0.0 and not clock.expired()
    clock.used = 0.5
    clock.start()
    clock.stop()
    assert 0.5 <= clock.used < 0.6 and 0.5 <= clock.fraction() < 0.6
    clock.used = 2.0  # past the budget: the share stays 1
    assert clock.fraction() == 1.0 and clock.expired()
    assert TrainingClock(None).fraction() == 0.0 and not TrainingClock(None).expired()


@pytest.mark.parametrize("loop", ["pytorch", "huggingface"])
def test_budget_run_ends_with_its_schedule(make_args, tmp_path, loop):
    """The run stops once the budget is used, the LR having decayed to (nearly) 0 at the
    end, and the loss drops; the results record the budget and the time it used."""
    out = tmp_path / loop
    extra = ["--torch_training"] if loop == "pytorch" else []
    args = make_args("train", "--output_dir", out, "--max_minutes", BUDGET_MINUTES, "--batch_size", 4,
                     "--logging_steps", 1, "--eval_steps", 10**6, "--save_steps", 10**6, "--warmup_ratio", 0.1,
                     "--learning_rate", 3e-3, *extra)
    results = run_loop(loop, args)
    budget = BUDGET_MINUTES * 60
    assert results["max_minutes"] == BUDGET_MINUTES and results["planned_steps"] is None
    # Stopped at the first step ending past the budget: over it by less than one (tiny) step.
    assert budget <= results["step_seconds"] < budget + 1.0
    assert results["steps"] >= 20
    assert (out / "best_model" / "config.json").is_file() and results["best_step"] == results["steps"]

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(out / "tensorboard")).Reload()
    lrs = [e.value for e in events.Scalars("train/lr")]
    losses = [e.value for e in events.Scalars("train/loss")]
    peak = 3e-3
    assert max(lrs) > 0.9 * peak  # warm-up reached the peak ...
    assert lrs[-1] < 0.05 * peak  # ... and the cosine ended near 0 with the budget, not cut off mid-way
    assert max(range(len(lrs)), key=lrs.__getitem__) < len(lrs) // 2  # the peak in the first half
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.3


def test_tracker_stores_the_clock(make_args, tmp_path):
    """A resumed run continues the budget where its checkpoint left it."""
    out = tmp_path / "run"
    args = make_args("train", "--output_dir", out, "--torch_training", "--max_minutes", BUDGET_MINUTES,
                     "--batch_size", 4, "--logging_steps", 1000, "--eval_steps", 10**6, "--save_steps", 5)
    run_loop("pytorch", args)
    last = sorted((out / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[-1]
    stored = json.loads((last / "pipeline_state.json").read_text())["tracker"]["step_seconds"]
    assert stored >= BUDGET_MINUTES * 60

    clock = TrainingClock(BUDGET_MINUTES)
    tracker = BestTracker(lambda *_: None, None, clock, patience=0)
    tracker.load_state_dict({"seconds": 1.0, "best_loss": 1.0, "best_step": 1, "bad_evals": 0,
                             "last_eval_step": 1, "step_seconds": stored})
    assert clock.used == stored and clock.expired()


@pytest.mark.parametrize("extra, message", [
    (["--max_minutes", "0"], "--max_minutes must be greater than 0"),
    (["--max_minutes", "nan"], "--max_minutes must be greater than 0"),
    (["--max_minutes", "5", "--max_steps", "10"], "--max_minutes sets the length of the run, so --max_steps"),
    (["--max_minutes", "5", "--num_train_epochs", "2"], "so --num_train_epochs cannot"),
])
def test_budget_option_errors(extra, message, capsys, make_args, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        make_args("train", "--output_dir", tmp_path / "run", *extra)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_budget_refuses_a_curriculum_without_pacing_steps(capsys, make_args, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        make_args("train", "--output_dir", tmp_path / "c", "--max_minutes", 1, "--difficulty", "length")
    assert exit_info.value.code == 2
    assert ("--difficulty paces the data over a known number of steps, which --max_minutes leaves open: "
            "give --pacing_steps N") in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("loop", ["pytorch", "huggingface"])
def test_budget_curriculum_paces_over_pacing_steps(make_args, tmp_path, loop):
    """With --pacing_steps the curriculum's share follows the pacing function over those
    steps (root pacing, compared with curriculum.pacing step by step) and stays 1 after them,
    while the clock ends the run."""
    from evaluation.report import event_scalars
    from training.curriculum import pacing

    out = tmp_path / loop
    extra = ["--torch_training"] if loop == "pytorch" else []
    args = make_args("train", "--output_dir", out, "--max_minutes", BUDGET_MINUTES, "--batch_size", 4,
                     "--logging_steps", 1, "--eval_steps", 10**6, "--save_steps", 10**6, "--difficulty", "length",
                     "--pacing", "root", "--pacing_steps", 12, *extra)
    results = run_loop(loop, args)
    assert results["steps"] > 12  # the run went on past the pacing
    steps, shares = event_scalars(out, "train/curriculum_share")
    assert steps == list(range(1, results["steps"] + 1))  # logged at every step: step t drew with share(t - 1)
    assert shares == pytest.approx([pacing("root", t, 12) for t in range(len(shares))])
    assert shares[0] == pytest.approx(0.1) and shares[10] < 1.0 and set(shares[11:]) == {1.0}
