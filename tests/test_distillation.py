"""Ensemble distillation (BabyLlama): the loss against hand computations (alpha = 1 is
plain cross-entropy, a teacher identical to the student adds no KL, the KL of the
teachers' averaged distribution per token), a distilled student whose loss drops in
both loops with both parts logged, gradient accumulation, and the teacher checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import run_loop
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from custom_models import build_model
from pretraining_dataset import mask_tokens
from tokenizer import load_tokenizer
from training.losses import distill_kl, make_loss_fn, make_objective
from training.run_folder import save_model_folder
from utils import UserError


def scalars(run_dir, tag):
    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    return [e.value for e in acc.Scalars(tag)]


def tiny(make_args, tmp_path, model_type="gpt2", seed=0, kind="clm", *extra):
    args = make_args("train", "--model_type", model_type, "--output_dir", tmp_path / "unused", *extra, kind=kind)
    tok = load_tokenizer(args.tokenizer_dir)
    torch.manual_seed(seed)
    return build_model(args, tok).eval(), tok, args


def batch_for(tok, kind: str, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    ids = torch.randint(10, len(tok), (3, 32))
    if kind == "clm":
        return {"input_ids": ids, "labels": ids}
    masked, labels = mask_tokens(ids, tok, 0.3)
    return {"input_ids": masked, "labels": labels}


@pytest.mark.parametrize(("model_type", "kind"), [("gpt2", "clm"), ("llama", "clm"), ("bert", "mlm")])
def test_alpha_one_is_plain_cross_entropy(make_args, tmp_path, model_type, kind):
    student, tok, _ = tiny(make_args, tmp_path, model_type, 0, kind)
    teacher, _, _ = tiny(make_args, tmp_path, model_type, 1, kind)
    batch = batch_for(tok, kind)
    with torch.no_grad():
        loss, parts = make_objective(student, [teacher], alpha=1.0, temperature=2.0)(batch)
        plain = student(**batch).loss  # the model's own loss: mean CE over predicted tokens
    assert loss.item() == pytest.approx(plain.item(), abs=1e-5)
    assert parts["train/ce_loss"].item() == pytest.approx(plain.item(), abs=1e-5)
    assert parts["train/distill_kl"].item() > 1e-4  # a different teacher: the KL part exists, weighted 0


@pytest.mark.parametrize(("model_type", "kind"), [("gpt2", "clm"), ("bert", "mlm")])
def test_a_teacher_identical_to_the_student_adds_no_kl(make_args, tmp_path, model_type, kind):
    student, tok, _ = tiny(make_args, tmp_path, model_type, 0, kind)
    clone, _, _ = tiny(make_args, tmp_path, model_type, 0, kind)  # same seed: the same weights
    batch = batch_for(tok, kind)
    with torch.no_grad():
        loss, parts = make_objective(student, [clone, clone], alpha=0.3, temperature=2.0)(batch)
    assert parts["train/distill_kl"].item() == pytest.approx(0.0, abs=1e-6)
    assert loss.item() == pytest.approx(0.3 * parts["train/ce_loss"].item(), abs=1e-5)


def test_kl_of_the_averaged_teachers_against_a_hand_computation():
    torch.manual_seed(0)
    student, t1, t2 = (torch.randn(5, 7) for _ in range(3))
    temperature = 2.0
    got = distill_kl(student, [t1, t2], temperature)
    want = 0.0
    for row in range(5):  # per predicted token, then the mean (not the sum) over tokens
        p = [(torch.exp(t1[row] / 2) / torch.exp(t1[row] / 2).sum() + torch.exp(t2[row] / 2)
              / torch.exp(t2[row] / 2).sum())[v].item() / 2 for v in range(7)]
        q = torch.softmax(student[row] / 2, -1).tolist()
        want += sum(pv * (torch.log(torch.tensor(pv)) - torch.log(torch.tensor(qv))).item()
                    for pv, qv in zip(p, q, strict=True)) / 5
    assert got.item() == pytest.approx(want, abs=1e-6)


def test_distillation_loss_is_the_weighted_sum_of_its_parts(make_args, tmp_path):
    student, tok, _ = tiny(make_args, tmp_path, "gpt2", 0)
    teachers = [tiny(make_args, tmp_path, "gpt2", 1)[0], tiny(make_args, tmp_path, "llama", 2)[0]]
    batch = batch_for(tok, "clm")
    with torch.no_grad():
        loss, parts = make_objective(student, teachers, alpha=0.25, temperature=3.0)(batch)
        logits = student(input_ids=batch["input_ids"]).logits[:, :-1].reshape(-1, len(tok))
        teacher_logits = [t(input_ids=batch["input_ids"]).logits[:, :-1].reshape(-1, len(tok)) for t in teachers]
    ce = F.cross_entropy(logits, batch["labels"][:, 1:].reshape(-1))
    kl = distill_kl(logits, teacher_logits, 3.0)
    assert parts["train/ce_loss"].item() == pytest.approx(ce.item(), abs=1e-5)
    assert parts["train/distill_kl"].item() == pytest.approx(kl.item(), abs=1e-6)
    assert loss.item() == pytest.approx(0.25 * ce.item() + 0.75 * 9.0 * kl.item(), abs=1e-5)


def test_plain_models_keep_the_plain_loss(make_args, tmp_path):
    model, tok, _ = tiny(make_args, tmp_path, "bert", 0, "mlm")
    batch = batch_for(tok, "mlm")
    with torch.no_grad():
        loss, parts = make_objective(model)(batch)
        assert parts == {} and loss.item() == make_loss_fn(model)(batch).item()


@pytest.fixture
def teachers(make_args, tmp_path):
    """Two small trained teachers (GPT-2 and Llama), trained briefly with the custom loop."""
    folders = []
    for model_type in ("gpt2", "llama"):
        out = tmp_path / f"teacher_{model_type}"
        args = make_args("train", "--torch_training", "--model_type", model_type, "--output_dir", out,
                         "--hidden_size", "48", "--max_steps", "80", "--batch_size", "8", "--learning_rate", "3e-3",
                         "--eval_steps", "80", "--logging_steps", "80")
        run_loop("pytorch", args)
        folders.append(out / "best_model")
    return folders


@pytest.mark.parametrize("loop", ["pytorch", "huggingface"])
def test_distilled_student_learns_in_both_loops(loop, teachers, make_args, tmp_path):
    out = tmp_path / "student"
    flag = ["--torch_training"] if loop == "pytorch" else []
    args = make_args("train", *flag, "--model_type", "gpt2", "--output_dir", out, "--teacher_models", *teachers,
                     "--max_steps", "40", "--batch_size", "8", "--learning_rate", "3e-3", "--eval_steps", "40",
                     "--logging_steps", "10")
    results = run_loop(loop, args)
    losses, ce, kl = (scalars(out, t) for t in ("train/loss", "train/ce_loss", "train/distill_kl"))
    assert len(losses) == len(ce) == len(kl) == 4
    assert losses[-1] < losses[0] - 0.3 and ce[-1] < ce[0] - 0.3 and kl[-1] < kl[0], (losses, ce, kl)
    # The logged loss is the weighted sum of the logged parts (alpha 0.5, T 2), window by window.
    for total, c, k in zip(losses, ce, kl, strict=True):
        assert total == pytest.approx(0.5 * c + 0.5 * 4.0 * k, rel=1e-4)
    assert results["best_eval_loss"] < 6.0  # validation is plain cross-entropy (ln 600 = 6.4 untrained)


@pytest.mark.parametrize("loop", ["pytorch", "huggingface"])
def test_gradient_accumulation_averages_the_distillation_loss(loop, make_args, tmp_path):
    teacher, tok, targs = tiny(make_args, tmp_path, "gpt2", 1)
    save_model_folder(teacher, tok, targs, tmp_path / "teacher")
    flag = ["--torch_training"] if loop == "pytorch" else []
    common = [*flag, "--teacher_models", tmp_path / "teacher", "--max_steps", "4", "--logging_steps", "1",
              "--eval_steps", "100"]
    run_loop(loop, make_args("train", *common, "--batch_size", "8", "--output_dir", tmp_path / "big"))
    run_loop(loop, make_args("train", *common, "--batch_size", "4", "--gradient_accumulation_steps", "2",
                          "--output_dir", tmp_path / "acc"))
    for tag in ("train/loss", "train/ce_loss", "train/distill_kl", "train/grad_norm"):
        assert scalars(tmp_path / "acc", tag) == pytest.approx(scalars(tmp_path / "big", tag), rel=1e-3), tag


def test_teacher_of_another_kind_is_refused(make_args, tmp_path):
    bert, tok, args = tiny(make_args, tmp_path, "bert", 0, "mlm")
    save_model_folder(bert, tok, args, tmp_path / "bert")
    student = make_args("train", "--torch_training", "--output_dir", tmp_path / "out", "--teacher_models",
                        tmp_path / "bert", "--max_steps", "2")
    with pytest.raises(UserError, match="is a masked LM but the student"):
        run_loop("pytorch", student)
    assert not (tmp_path / "out").exists()
