"""The optimizer pieces of the GPT-BERT authors' recipe: LAMB (--optimizer lamb) against its rule
computed by hand, the warm-up + cosine + cool-down schedule (--min_lr_ratio, --cooldown_ratio)
at chosen points, and the EMA of the weights (--ema_decay): by hand, in the saved best model, and
through an interrupted and resumed run."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from conftest import run_loop
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from transformers import AutoModelForCausalLM, get_cosine_schedule_with_warmup

import pytorch_training_loop
from argument_parser import parse_args
from training.optim import Lamb, lr_factor, make_ema, make_optimizer, make_scheduler
from training.run_folder import list_checkpoints
from utils import UserError

BETAS, EPS, WD, LR = (0.9, 0.98), 1e-6, 0.1, 0.01
DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


class Tiny(torch.nn.Module):
    """Two matrices (decayed; one all zeros, whose trust ratio falls back to 1) and a bias (not decayed)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.weight = torch.nn.Parameter(torch.randn(3, 4, generator=g))
        self.zeros = torch.nn.Parameter(torch.zeros(2, 2))
        self.bias = torch.nn.Parameter(torch.randn(4, generator=g))


def gradients(step: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(100 + step)
    return {"weight": torch.randn(3, 4, generator=g), "zeros": torch.randn(2, 2, generator=g),
            "bias": torch.randn(4, generator=g)}


def set_gradients(model: torch.nn.Module, step: int) -> None:
    for name, p in model.named_parameters():
        p.grad = gradients(step)[name].to(p.device)


def lamb_by_hand(steps: int) -> dict[str, torch.Tensor]:
    """The rule written out in float64, tensor by tensor, step by step."""
    start = Tiny()
    params = {name: p.detach().double().clone() for name, p in start.named_parameters()}
    m = {name: torch.zeros_like(p) for name, p in params.items()}
    v = {name: torch.zeros_like(p) for name, p in params.items()}
    b1, b2 = BETAS
    for t in range(1, steps + 1):
        for name, p in params.items():
            g = gradients(t)[name].double()
            m[name] = b1 * m[name] + (1 - b1) * g
            v[name] = b2 * v[name] + (1 - b2) * g * g
            m_hat, v_hat = m[name] / (1 - b1 ** t), v[name] / (1 - b2 ** t)
            u = m_hat / (torch.sqrt(v_hat) + EPS)
            wd = WD if p.dim() >= 2 else 0.0  # make_optimizer's groups: matrices decayed, 1-D not
            ratio = 1.0
            if wd > 0:
                u = u + wd * p
                p_norm, u_norm = float(torch.linalg.norm(p)), float(torch.linalg.norm(u))
                ratio = p_norm / u_norm if p_norm > 0 and u_norm > 0 else 1.0
            params[name] = p - LR * ratio * u
    return params


@pytest.mark.parametrize("device", DEVICES)
def test_lamb_is_the_rule_by_hand_for_three_steps(device):
    model = Tiny().to(device)
    optimizer = make_optimizer(model, LR, WD, BETAS, EPS, kind="lamb")
    assert isinstance(optimizer, Lamb)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [WD, 0.0]
    assert [len(g["params"]) for g in optimizer.param_groups] == [2, 1]  # the two matrices, the bias
    for t in range(1, 4):
        set_gradients(model, t)
        optimizer.step()
    expected = lamb_by_hand(3)
    for name, p in model.named_parameters():
        assert torch.allclose(p.detach().cpu().double(), expected[name], rtol=1e-5, atol=1e-6), name
    # The all-zero matrix has ||p|| = 0 at its first step: a plain Adam step (ratio 1), then adapted.
    assert not torch.equal(model.zeros.detach().cpu(), torch.zeros(2, 2))


def test_lamb_without_weight_decay_is_adam():
    """With no decay anywhere LAMB takes plain Adam steps (eps after the bias-corrected root, as Adam's)."""
    model, reference = Tiny(), Tiny()
    lamb = make_optimizer(model, LR, 0.0, BETAS, EPS, kind="lamb")
    adam = torch.optim.Adam(reference.parameters(), lr=LR, betas=BETAS, eps=EPS)
    for t in range(1, 4):
        set_gradients(model, t)
        set_gradients(reference, t)
        lamb.step()
        adam.step()
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6)


def test_lamb_state_dict_round_trips_exactly():
    """A fresh optimizer loaded from the state (through torch.save, as a checkpoint) continues identically."""
    model = Tiny()
    optimizer = make_optimizer(model, LR, WD, BETAS, EPS, kind="lamb")
    for t in range(1, 3):
        set_gradients(model, t)
        optimizer.step()
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=False)
    resumed = Tiny()
    resumed.load_state_dict(saved["model"])
    resumed_optimizer = make_optimizer(resumed, LR, WD, BETAS, EPS, kind="lamb")
    resumed_optimizer.load_state_dict(saved["optimizer"])
    for t in range(3, 6):
        for m, opt in ((model, optimizer), (resumed, resumed_optimizer)):
            set_gradients(m, t)
            opt.step()
    for p, q in zip(model.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(p, q)


# ------------------------------------------------------------------------------------------ schedule


def test_lr_factor_at_the_points_of_the_shape():
    """Warm-up 10%, cosine from 1 to 0.1 until 80%, then linear from 0.1 to 0 over the last 20%."""
    def f(x):
        return lr_factor(x, 0.1, min_lr_ratio=0.1, cooldown_ratio=0.2)

    assert f(0.0) == 0.0  # start
    assert f(0.05) == pytest.approx(0.5)  # half the warm-up
    assert f(0.1) == pytest.approx(1.0)  # end of the warm-up: the peak
    assert f(0.45) == pytest.approx(0.1 + 0.9 * 0.5)  # middle of the cosine (0.1 to 0.8)
    assert f(0.1 + 0.7 / 4) == pytest.approx(0.1 + 0.9 * (1 + math.cos(math.pi / 4)) / 2)
    assert f(0.8) == pytest.approx(0.1)  # start of the cool-down: the floor
    assert f(0.9) == pytest.approx(0.05)  # middle of the cool-down
    assert f(1.0) == pytest.approx(0.0, abs=1e-15)  # end
    # The authors' values: warm-up 1.6%, cosine to 0.1, cool-down over the last 1.6%.
    assert lr_factor(0.016, 0.016, 0.1, 0.016) == pytest.approx(1.0)
    assert lr_factor(0.984, 0.016, 0.1, 0.016) == pytest.approx(0.1)
    assert lr_factor(0.992, 0.016, 0.1, 0.016) == pytest.approx(0.05)
    # No cool-down: the cosine ends at the floor at the end of the run.
    assert lr_factor(1.0, 0.1, 0.1) == pytest.approx(0.1)


def factors(scheduler: torch.optim.lr_scheduler.LRScheduler, steps: int) -> list[float]:
    """The scheduler's factor (peak LR 1) before step 0, 1, ..., `steps`."""
    optimizer = scheduler.optimizer
    out = []
    for _ in range(steps + 1):
        out.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    return out


def sgd() -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)


def test_without_floor_and_cool_down_the_step_schedule_is_the_one_before():
    """Both new options 0: the same floats as get_cosine_schedule_with_warmup, to the last bit."""
    for total, warmup_ratio in ((1, 0.0), (7, 0.3), (120, 0.05), (1000, 0.016)):
        warmup = round(warmup_ratio * total)
        before = factors(get_cosine_schedule_with_warmup(sgd(), warmup, total), total)
        assert factors(make_scheduler(sgd(), warmup, total, warmup_ratio), total) == before, total


def test_step_and_budget_schedules_follow_lr_factor():
    total, warmup_ratio, min_lr, cooldown = 1000, 0.1, 0.1, 0.2
    steps = factors(make_scheduler(sgd(), round(warmup_ratio * total), total, warmup_ratio, min_lr_ratio=min_lr,
                                   cooldown_ratio=cooldown), total)
    for step in (0, 50, 100, 450, 800, 900, 1000):
        assert steps[step] == pytest.approx(lr_factor(step / total, warmup_ratio, min_lr, cooldown), abs=1e-12)
    # A time budget: the same shape over the share of the budget used.
    used = {"share": 0.0}
    budget = make_scheduler(sgd(), 0, total, warmup_ratio, lambda: used["share"], min_lr_ratio=min_lr,
                            cooldown_ratio=cooldown)
    for share in (0.05, 0.45, 0.9, 1.0):
        used["share"] = share
        budget.optimizer.step()
        budget.step()
        assert budget.get_last_lr()[0] == pytest.approx(lr_factor(share, warmup_ratio, min_lr, cooldown), abs=1e-12)


TRAIN = ["train", "--tokenizer_dir", "t", "--output_dir", "o"]


@pytest.mark.parametrize(("extra", "message"), [
    (["--warmup_ratio", "0.5", "--cooldown_ratio", "0.5", "--min_lr_ratio", "0.1"],
     "--warmup_ratio 0.5 and --cooldown_ratio 0.5 add up to 1 or more"),
    (["--cooldown_ratio", "0.1"], "--cooldown_ratio falls from --min_lr_ratio to 0"),
    (["--min_lr_ratio", "1"], "--min_lr_ratio must be 0 or more and below 1"),
    (["--ema_decay", "1"], "--ema_decay must be 0 or more and below 1"),
    (["--optimizer", "sgd"], "argument --optimizer: invalid choice"),
])
def test_bad_schedule_and_ema_options_are_one_line_errors(extra, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        parse_args([*TRAIN, *extra])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and err.count("\n") == 1 and message in err, err


def test_fine_tuning_has_none_of_the_pretraining_pieces(capsys):
    for option in ("--optimizer", "--min_lr_ratio", "--cooldown_ratio", "--ema_decay"):
        with pytest.raises(SystemExit):
            parse_args(["finetune", "--model_dir", "m", "--glue_dir", "g", "--output_dir", "o", option, "0.5"])
        assert f"{option} is not an option of the finetune action" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ EMA


def test_ema_is_a_copy_then_the_decayed_average():
    decay = 0.8
    model = Tiny()
    ema = make_ema(model, decay)
    expected = None
    for k in range(1, 5):
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(gradients(k)[name])  # new "trained" weights
        ema.update_parameters(model)
        live = {name: p.detach().clone() for name, p in model.named_parameters()}
        expected = live if expected is None else {n: decay * expected[n] + (1 - decay) * live[n] for n in live}
        for name, p in ema.module.named_parameters():
            assert torch.allclose(p, expected[name], atol=1e-6), (k, name)
    assert int(ema.n_averaged) == 4


def scalars(run_dir, tag: str) -> dict[int, float]:
    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    return {e.step: e.value for e in acc.Scalars(tag)}


def test_best_model_holds_the_ema_of_the_weights(make_args, tmp_path, monkeypatch):
    """The live weights after every optimizer step, recorded; their EMA recomputed by hand is what
    best_model/ holds (and what was validated), not the live weights."""
    decay, live = 0.7, []
    real_step = pytorch_training_loop.optimizer_step

    def recording_step(model, *args):
        norm = real_step(model, *args)
        live.append({name: p.detach().clone() for name, p in model.named_parameters()})
        return norm

    monkeypatch.setattr(pytorch_training_loop, "optimizer_step", recording_step)
    out = tmp_path / "run"
    args = make_args("train", "--torch_training", "--output_dir", out, "--max_steps", 6, "--eval_steps", 6,
                     "--batch_size", 4, "--learning_rate", "3e-3", "--ema_decay", decay)
    results = run_loop("pytorch", args)
    assert len(live) == 6 and results["best_step"] == 6
    expected = live[0]
    for weights in live[1:]:
        expected = {n: decay * expected[n] + (1 - decay) * weights[n] for n in weights}
    best = AutoModelForCausalLM.from_pretrained(out / "best_model")
    for name, p in best.named_parameters():
        assert torch.allclose(p, expected[name], atol=1e-6), name
    assert any(not torch.allclose(p, live[-1][name], atol=1e-4) for name, p in best.named_parameters())

    # The validation loss reported is the EMA's: that of the saved model.
    from training.validation import evaluate_lm

    setup_args = make_args("train", "--torch_training", "--output_dir", tmp_path / "unused")
    from training.setup import prepare_training

    setup = prepare_training(setup_args)
    try:
        loss = evaluate_lm(best, setup.eval_dataset, setup.eval_collator, 64, "cpu", "fp32")["loss"]
    finally:
        setup.close()
    assert results["best_eval_loss"] == pytest.approx(loss, abs=1e-6)


def test_ema_needs_the_custom_loop(make_args, tmp_path):
    out = tmp_path / "run"
    args = make_args("train", "--output_dir", out, "--max_steps", 2, "--ema_decay", "0.9")
    with pytest.raises(UserError, match="--ema_decay 0.9 works in the custom loop only: add --torch_training"):
        run_loop("huggingface", args)
    assert not out.exists() or not any(out.iterdir())  # refused before anything was written


class Interrupted(Exception):
    pass


def test_lamb_and_ema_resume_exactly(make_args, tmp_path, monkeypatch):
    """A run interrupted right after its step-10 checkpoint and resumed logs the uninterrupted run's
    losses and saves its best model, to the bit (CPU, float32), EMA included."""
    common = ["--torch_training", "--batch_size", 4, "--learning_rate", "3e-3", "--logging_steps", 1,
              "--eval_steps", 5, "--save_steps", 5, "--max_steps", 20, "--dropout", "0.1",
              "--optimizer", "lamb", "--ema_decay", "0.9", "--min_lr_ratio", "0.1", "--cooldown_ratio", "0.2"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    run_loop("pytorch", make_args("train", *common, "--output_dir", whole))

    real_save = pytorch_training_loop._save_checkpoint

    def save_then_stop(setup, optimizer, scheduler, scaler, tracker, progress, marks):
        real_save(setup, optimizer, scheduler, scaler, tracker, progress, marks)
        if progress.step == 10:
            raise Interrupted

    monkeypatch.setattr(pytorch_training_loop, "_save_checkpoint", save_then_stop)
    with pytest.raises(Interrupted):
        run_loop("pytorch", make_args("train", *common, "--output_dir", cut))
    monkeypatch.undo()
    assert list_checkpoints(cut)[-1].name == "checkpoint-10" and not (cut / "train_results.json").exists()

    # The checkpoint's optimizer state and EMA need the options that wrote them.
    for option, value in (("--ema_decay", "0.99"), ("--optimizer", "adamw")):
        with pytest.raises(UserError, match=f"written with {option} .*resume with {option}"):
            run_loop("pytorch", make_args("train", *common, option, value, "--output_dir", cut, "--resume"))

    results = run_loop("pytorch", make_args("train", *common, "--output_dir", cut, "--resume"))
    assert results["steps"] == 20
    reference = scalars(whole, "train/loss")
    assert len(reference) == 20 and scalars(cut, "train/loss") == reference  # identical, not just close
    assert scalars(cut, "eval/loss") == scalars(whole, "eval/loss")
    assert scalars(cut, "train/lr") == scalars(whole, "train/lr")
    saved = [AutoModelForCausalLM.from_pretrained(run / "best_model").state_dict() for run in (whole, cut)]
    assert saved[0].keys() == saved[1].keys()
    assert all(torch.equal(saved[0][k], saved[1][k]) for k in saved[0])
    # And the EMA itself, as the last checkpoint holds it.
    emas = [torch.load(list_checkpoints(run)[-1] / pytorch_training_loop.TENSORS_FILE, weights_only=False)["ema"]
            for run in (whole, cut)]
    assert int(emas[0]["n_averaged"]) == 20
    assert all(torch.equal(emas[0][k], emas[1][k]) for k in emas[0])


@pytest.mark.parametrize("model_type", ["llama", "bert", "gpt_bert"])
def test_every_model_type_trains_with_the_pieces(model_type, make_args, tmp_path):
    kind = "clm" if model_type == "llama" else "mlm"
    args = make_args("train", "--torch_training", "--model_type", model_type, "--output_dir", tmp_path / "run",
                     "--max_steps", 6, "--eval_steps", 3, "--batch_size", 4, "--optimizer", "lamb", "--ema_decay",
                     "0.9", "--min_lr_ratio", "0.1", "--cooldown_ratio", "0.2", kind=kind)
    results = run_loop("pytorch", args)
    assert results["steps"] == 6 and math.isfinite(results["best_eval_loss"])


def test_the_trainer_loop_steps_lamb_on_the_cool_down_schedule(make_args, tmp_path):
    out = tmp_path / "run"
    lr, total = 3e-3, 20
    args = make_args("train", "--output_dir", out, "--max_steps", total, "--eval_steps", total, "--batch_size", 4,
                     "--logging_steps", 1, "--learning_rate", lr, "--warmup_ratio", "0.1", "--optimizer", "lamb",
                     "--min_lr_ratio", "0.1", "--cooldown_ratio", "0.2")
    results = run_loop("huggingface", args)
    assert results["steps"] == total
    logged = scalars(out, "train/lr")
    # The Trainer logs the LR step s trained with: the factor at s - 1 steps done.
    for step in (1, 2, 9, 16, 17, 19, 20):
        expected = lr * lr_factor((step - 1) / total, 0.1, 0.1, 0.2)
        assert logged[step] == pytest.approx(expected, rel=1e-6, abs=1e-12), step


def test_start_log_names_lamb_and_the_ema(make_args, tmp_path):
    out = tmp_path / "run"
    run_loop("pytorch", make_args("train", "--torch_training", "--output_dir", out, "--max_steps", 2,
                                  "--optimizer", "lamb", "--ema_decay", "0.999", "--min_lr_ratio", "0.1",
                                  "--cooldown_ratio", "0.016"))
    log = (out / "log.txt").read_text()
    assert "optimizer: LAMB" in log and "cosine to 0.1 x the peak, then linear to 0 over the last 1.6%" in log
    assert "EMA of the weights (decay 0.999)" in log


def test_ema_copy_is_independent_of_the_model():
    """The EMA's module is a copy: training the model does not move it until the next update."""
    model = Tiny()
    ema = make_ema(model, 0.5)
    ema.update_parameters(model)
    before = copy.deepcopy(ema.module.state_dict())
    with torch.no_grad():
        model.weight.add_(1.0)
    assert all(torch.equal(before[k], v) for k, v in ema.module.state_dict().items())
