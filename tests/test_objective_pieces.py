"""Three objective pieces from GPT-BERT's recipe: span masking with a falling masking share
(--mask_span, --mlm_probability_end), the z-loss (--z_loss) and both hybrid modes in every
micro-batch (--hybrid_mix batch). The masking's statistics over many draws, the z-loss's value
and gradients against autograd, the mixed batch's split and loss against the model's own
losses, the options' refusals, and both loops training with each."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import run_loop
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from custom_models import build_model
from pretraining_dataset import draw_spans, mask_spans
from tokenizer import load_tokenizer
from training import losses
from training.objective import StepObjective, run_progress
from utils import UserError

ROWS, LENGTH = 200, 128


def scalars(run_dir, tag):
    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    return [e.value for e in acc.Scalars(tag)]


@pytest.fixture
def mlm_tok(tok_dirs):
    return load_tokenizer(tok_dirs["mlm"])


def sample_blocks(tok, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """ROWS x LENGTH ids of ordinary tokens with special tokens (</s>, <s>) sprinkled in, and where those are."""
    g = torch.Generator().manual_seed(seed)
    special_ids = torch.tensor(tok.all_special_ids)
    ordinary = torch.ones(len(tok), dtype=torch.bool)
    ordinary[special_ids] = False
    vocabulary = ordinary.nonzero()[:, 0]
    ids = vocabulary[torch.randint(len(vocabulary), (ROWS, LENGTH), generator=g)]
    spots = torch.rand(ROWS, LENGTH, generator=g) < 0.05
    ids[spots] = torch.tensor([tok.eos_token_id, tok.bos_token_id])[torch.randint(2, (int(spots.sum()),),
                                                                                 generator=g)]
    return ids, torch.isin(ids, special_ids)


def spans_of(span: torch.Tensor) -> list[tuple[int, int, int]]:
    """(row, start, end) of every span of `draw_spans`' numbering."""
    out = []
    for r in range(span.size(0)):
        ids = span[r].tolist()
        start = 0
        for j in range(1, len(ids) + 1):
            if j == len(ids) or ids[j] != ids[start]:
                out.append((r, start, j))
                start = j
    return out


# --------------------------------------------------------------------------- span masking


@pytest.mark.parametrize("max_span", [1, 3])
def test_span_masking_masks_the_share_and_never_special_tokens(mlm_tok, max_span):
    """About p of the non-special tokens are masked: k = floor(L p + U) has expectation L p
    exactly, and the span holding the k-th token is taken whole, adding 0..N-1 tokens a row.
    The mean share over 200 rows has a standard deviation under 0.001 (a row's count varies by
    about one token in ~120), so the bounds below leave 4 of them either side of that range."""
    ids, special = sample_blocks(mlm_tok)
    p = 0.15
    masked, labels = mask_spans(ids, mlm_tok, p, max_span, torch.Generator().manual_seed(1))
    chosen = labels != -100
    maskable = (~special).sum(1)
    share = (chosen.sum() / maskable.sum()).item()
    assert p - 0.004 <= share <= p + (max_span - 1) / maskable.float().mean().item() + 0.004, share
    # Per row: at least floor(L p) tokens, at most k + N - 1 with k <= floor(L p) + 1.
    counts, floor_k = chosen.sum(1), (maskable * p).floor().long()
    assert bool((counts >= floor_k).all()) and bool((counts <= floor_k + max_span).all())
    if max_span == 1:  # one token a span: exactly k, never the next span
        assert bool((counts <= floor_k + 1).all())
    assert not chosen[special].any() and torch.equal(masked[special], ids[special])
    assert torch.equal(labels[chosen], ids[chosen])  # the original ids, exactly where masked
    assert torch.equal(masked[~chosen], ids[~chosen])  # nothing else touched


def test_span_masking_takes_whole_spans_of_uniform_lengths_each_replaced_as_one(mlm_tok):
    """The spans (`draw_spans`, the first draw of `mask_spans` from the same generator) have
    lengths 1..3 uniformly; a span is masked whole or not at all; the masked spans' lengths are
    uniform too (a span's score does not depend on its length), so masked runs of 3 appear;
    each masked span is all <mask>, all random tokens or all unchanged, 80/10/10. About 1,900
    spans are masked: the standard deviation of a 10% share is 0.007, of a third 0.011; the
    tolerances are 4 of them."""
    ids, special = sample_blocks(mlm_tok, seed=2)
    span = draw_spans(ids.shape, 3, torch.Generator().manual_seed(5))
    masked, labels = mask_spans(ids, mlm_tok, 0.15, 3, torch.Generator().manual_seed(5))
    chosen = labels != -100
    all_spans = spans_of(span)
    inner = [e - s for r, s, e in all_spans if e < LENGTH]  # a row's last span may be cut short
    for n in (1, 2, 3):
        assert inner.count(n) / len(inner) == pytest.approx(1 / 3, abs=0.02)
    kinds, lengths = {"mask": 0, "random": 0, "kept": 0}, []
    for r, s, e in all_spans:
        ordinary = ~special[r, s:e]
        picked = chosen[r, s:e][ordinary]
        if not picked.any():
            continue
        assert bool(picked.all()), "a span masked in part"
        lengths.append(e - s)
        new, old = masked[r, s:e][ordinary], ids[r, s:e][ordinary]
        if bool((new == mlm_tok.mask_token_id).all()):
            kinds["mask"] += 1
        elif bool((new == old).all()):
            kinds["kept"] += 1
        else:  # random tokens (one may equal the original by chance), never <mask> nor special
            assert not bool((new == mlm_tok.mask_token_id).any())
            assert not bool(torch.isin(new, torch.tensor(mlm_tok.all_special_ids)).any())
            kinds["random"] += 1
    total = sum(kinds.values())
    assert total > 1500
    assert kinds["mask"] / total == pytest.approx(0.8, abs=0.03)
    assert kinds["random"] / total == pytest.approx(0.1, abs=0.03)
    assert kinds["kept"] / total == pytest.approx(0.1, abs=0.03)
    full = [n for n in lengths if n < 4]
    for n in (1, 2, 3):
        assert full.count(n) / len(full) == pytest.approx(1 / 3, abs=0.045)


def test_masking_share_falls_linearly_over_the_run(make_args, tmp_path):
    args = make_args("train", "--model_type", "bert", "--output_dir", tmp_path, "--mlm_probability", "0.3",
                     "--mlm_probability_end", "0.15", "--mask_span", "3", kind="mlm")
    objective = StepObjective.from_args(args, progress=run_progress(200))
    for step, want in ((0, 0.3), (50, 0.3 - 0.15 * 50 / 200), (100, 0.225), (199, 0.3 - 0.15 * 199 / 200)):
        assert objective.mlm_probability_at(step) == pytest.approx(want, abs=1e-12)
    # --max_minutes: the time budget's share, as the LR schedule; capped: the larger of it and the steps'.
    budget = StepObjective.from_args(args, progress=run_progress(200, lambda: 0.4))
    assert budget.mlm_probability_at(150) == pytest.approx(0.3 - 0.15 * 0.4)
    capped = StepObjective.from_args(args, progress=run_progress(200, lambda: 0.4, capped=True))
    assert capped.mlm_probability_at(150) == pytest.approx(0.3 - 0.15 * 0.75)
    assert StepObjective.from_args(args, progress=run_progress(200, lambda: 1.0)).mlm_probability_at(5) == 0.15
    with pytest.raises(ValueError, match="progress"):
        StepObjective.from_args(args).mlm_probability_at(0)


@pytest.mark.parametrize("loop", ["pytorch", "huggingface"])
def test_both_loops_mask_spans_at_the_steps_share(loop, make_args, tmp_path, monkeypatch):
    import training.objective as training_objective

    used = []
    real = training_objective.mask_spans
    monkeypatch.setattr(training_objective, "mask_spans",
                        lambda ids, tok, p, n, *a: used.append((p, n)) or real(ids, tok, p, n, *a))
    flag = ["--torch_training"] if loop == "pytorch" else []
    args = make_args("train", *flag, "--model_type", "bert", "--output_dir", tmp_path / "run", "--max_steps", "10",
                     "--batch_size", "4", "--gradient_accumulation_steps", "2", "--logging_steps", "1",
                     "--mask_span", "3", "--mlm_probability", "0.3", "--mlm_probability_end", "0.15", kind="mlm")
    run_loop(loop, args)
    want = [0.3 - 0.015 * t for t in range(10)]
    assert [p for p, _ in used[:20]] == pytest.approx([p for p in want for _ in range(2)])
    assert {n for _, n in used} == {3}
    assert scalars(tmp_path / "run", "train/mlm_probability") == pytest.approx(want)


def test_a_resumed_run_masks_as_the_uninterrupted_one(make_args, tmp_path, monkeypatch):
    """Falling span masking: a run stopped after its step-5 checkpoint and resumed logs the whole
    run's losses and shares (the share is a function of the step, the RNG is restored)."""
    from training.setup import TrainingSetup

    def args(out, *extra):
        return make_args("train", "--torch_training", "--model_type", "bert", "--output_dir", out, "--max_steps",
                         "10", "--batch_size", "4", "--logging_steps", "1", "--save_steps", "5", "--eval_steps",
                         "5", "--mask_span", "3", "--mlm_probability", "0.3", "--mlm_probability_end", "0.15",
                         *extra, kind="mlm")

    run_loop("pytorch", args(tmp_path / "whole"))
    real = TrainingSetup.training_batch

    def crash(self, batch, step):
        if step == 7:
            raise RuntimeError("stopped")
        return real(self, batch, step)

    with monkeypatch.context() as m:
        m.setattr(TrainingSetup, "training_batch", crash)
        with pytest.raises(RuntimeError, match="stopped"):
            run_loop("pytorch", args(tmp_path / "cut"))
    results = run_loop("pytorch", args(tmp_path / "cut", "--resume", "auto"))
    assert "resuming from" in (tmp_path / "cut" / "log.txt").read_text() and results["steps"] == 10
    for tag in ("train/loss", "train/mlm_probability"):
        assert scalars(tmp_path / "cut", tag)[-5:] == pytest.approx(scalars(tmp_path / "whole", tag)[-5:], abs=1e-6)


# --------------------------------------------------------------------------- z-loss


def reference_z(logits: torch.Tensor, targets: torch.Tensor, z: float) -> torch.Tensor:
    kept = targets != -100
    return F.cross_entropy(logits, targets) + z * torch.logsumexp(logits[kept], -1).square().mean()


def test_chunked_z_loss_equals_autograd(monkeypatch):
    """linear_cross_entropy with a z-loss: the value and both gradients of autograd through
    F.cross_entropy + X * logsumexp^2, float32, over several chunks (the last one short), with
    -100 targets left out; its z term is X * mean logsumexp^2. X 0 is the plain loss, bit for bit."""
    monkeypatch.setattr(losses, "CHUNK_LOGITS", 7 * 300)  # 7 rows a chunk of a 300-word vocabulary
    torch.manual_seed(0)
    hidden = torch.randn(45, 16, requires_grad=True)
    weight = (3 * torch.randn(300, 16)).requires_grad_()  # large logits: a z term that matters
    targets = torch.randint(0, 300, (45,))
    targets[::4] = -100
    z = 1e-2

    def value_and_grads(loss_fn):
        hidden.grad = weight.grad = None
        loss = loss_fn()
        (2.5 * loss).backward()
        return loss.item(), hidden.grad.clone(), weight.grad.clone()

    ours = value_and_grads(lambda: losses.linear_cross_entropy(hidden, weight, targets, z))
    reference = value_and_grads(lambda: reference_z(hidden @ weight.T, targets, z))
    plain = value_and_grads(lambda: F.cross_entropy(hidden @ weight.T, targets))
    assert ours[0] == pytest.approx(reference[0], rel=1e-6) and abs(ours[0] - plain[0]) > 0.1
    for mine, theirs in zip(ours[1:], reference[1:], strict=True):
        assert torch.allclose(mine, theirs, atol=1e-5 * theirs.abs().max().item())
    loss, z_term = losses.linear_cross_entropy(hidden, weight, targets, z, return_z=True)
    kept = targets != -100
    lse = torch.logsumexp((hidden @ weight.T)[kept], -1)
    assert z_term.item() == pytest.approx(z * lse.square().mean().item(), rel=1e-6)
    assert not z_term.requires_grad
    zero = losses.linear_cross_entropy(hidden, weight, targets, 0.0, return_z=True)
    assert zero[1] is None and torch.equal(zero[0], losses.linear_cross_entropy(hidden, weight, targets))
    written = losses.cross_entropy_z(hidden @ weight.T, targets, z)
    assert written[0].item() == pytest.approx(reference[0], rel=1e-6)
    assert written[1].item() == pytest.approx(z_term.item(), rel=1e-6)


@pytest.mark.parametrize(("model_type", "fused"), [("gpt2", True), ("gpt2", False), ("bert", False),
                                                   ("gpt_bert", True), ("gpt_bert", False)])
def test_every_loss_adds_the_z_term_of_the_models_logits(model_type, fused, make_args, tmp_path, monkeypatch):
    """make_objective's loss with --z_loss equals CE + X * mean logsumexp^2 of the model's own logits at the
    predicted tokens (the chunked and the written-out paths), with the same gradients; the part is logged."""
    kind = "clm" if model_type == "gpt2" else "mlm"
    args = make_args("train", "--model_type", model_type, "--output_dir", tmp_path, kind=kind)
    tok = load_tokenizer(args.tokenizer_dir)
    torch.manual_seed(0)
    model = build_model(args, tok)
    if not fused:  # the written-out path the compiled loss takes, here eager
        monkeypatch.setattr(losses, "_plain_head", lambda head: None)
    ids = torch.randint(5, len(tok), (3, 20))
    labels = ids.clone()
    batch = {"input_ids": ids, "labels": labels}
    if model_type == "bert":
        labels[:, ::2] = -100
    if model_type == "gpt_bert":
        labels[:, ::3] = -100
        batch["bidirectional"] = True
    z = 0.05
    loss, parts = losses.make_objective(model, z_loss=z)(batch)
    loss.backward()
    ours = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    extra = {"bidirectional": True} if model_type == "gpt_bert" else {}
    logits = model(input_ids=ids, **extra).logits.float()
    if model_type == "bert":
        logits, targets = logits.flatten(0, 1), labels.flatten()
    else:
        logits, targets = logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten()
    reference = reference_z(logits, targets, z)
    reference.backward()
    assert loss.item() == pytest.approx(reference.item(), abs=1e-5)
    kept = targets != -100
    assert parts["train/z_loss"].item() == pytest.approx(
        z * torch.logsumexp(logits[kept], -1).square().mean().item(), rel=1e-5)
    for mine, theirs in zip(ours, (p.grad for p in model.parameters()), strict=True):
        assert torch.allclose(mine, theirs, atol=1e-5)


@pytest.mark.parametrize(("loop", "model_type"), [("pytorch", "gpt2"), ("huggingface", "bert")])
def test_both_loops_train_with_the_z_loss_and_log_it(loop, model_type, make_args, tmp_path):
    flag = ["--torch_training"] if loop == "pytorch" else []
    out = tmp_path / "run"
    args = make_args("train", *flag, "--model_type", model_type, "--output_dir", out, "--max_steps", "20",
                     "--batch_size", "4", "--gradient_accumulation_steps", "2", "--learning_rate", "3e-3",
                     "--logging_steps", "5", "--eval_steps", "20", "--z_loss", "1e-3",
                     kind="clm" if model_type == "gpt2" else "mlm")
    results = run_loop(loop, args)
    z_terms, total = scalars(out, "train/z_loss"), scalars(out, "train/loss")
    assert len(z_terms) == 4 and all(0 < v < 1 for v in z_terms)
    assert all(math.isfinite(v) for v in total) and total[-1] < total[0]
    assert math.isfinite(results["best_eval_loss"])


# --------------------------------------------------------------------------- both modes in every micro-batch


@pytest.mark.parametrize(("ratio", "rows", "masked"), [("15:1", 32, 30), ("15:1", 16, 15), ("15:1", 4, 3),
                                                       ("15:1", 2, 1), ("1:1", 8, 4), ("1:1", 5, 3),
                                                       ("1:0", 4, 4), ("0:1", 4, 0)])
def test_every_micro_batch_splits_by_the_ratio(ratio, rows, masked, make_args, tmp_path, mlm_tok):
    args = make_args("train", "--model_type", "gpt_bert", "--hybrid_ratio", ratio, "--hybrid_mix", "batch",
                     "--output_dir", tmp_path, kind="mlm")
    objective = StepObjective.from_args(args, mlm_tok, causal=True, hybrid=True)
    ids = torch.randint(10, len(mlm_tok), (rows, 32))
    for step in range(3):  # the same split every step: no step is wholly one mode
        batch = objective.batch({"input_ids": ids}, step)
        assert batch["masked_rows"] == masked and batch["masked_share"] == args.hybrid_masked_share
        assert batch["input_ids"].shape == ids.shape  # all the sequences: the loop counts their tokens
        assert torch.equal(batch["input_ids"][masked:], ids[masked:])  # causal: as they are
        assert torch.equal(batch["labels"][masked:], ids[masked:])
        targets = batch["labels"][:masked] != -100
        assert not targets[:, 0].any() and (masked == 0 or targets.any())
        assert torch.equal(batch["labels"][:masked][targets], ids[:masked][targets])


def test_the_objective_schedule_sets_the_share_of_every_micro_batch(make_args, tmp_path, mlm_tok):
    args = make_args("train", "--model_type", "gpt_bert", "--hybrid_mix", "batch", "--output_dir", tmp_path,
                     "--objective_schedule", "0:masked_share=1,5:masked_share=0.5", kind="mlm")
    objective = StepObjective.from_args(args, mlm_tok, causal=True, hybrid=True)
    ids = torch.randint(10, len(mlm_tok), (8, 32))
    assert [objective.batch({"input_ids": ids}, t)["masked_rows"] for t in (0, 4, 5, 9)] == [8, 8, 4, 4]


@pytest.mark.parametrize("fused", [True, False])
def test_mixed_loss_is_the_share_weighted_mean_of_the_two_modes(fused, make_args, tmp_path, monkeypatch):
    """loss = p * (the model's own masked loss on the masked part) + (1 - p) * (its causal loss on the
    rest), both parts logged; the gradients are those of that sum."""
    args = make_args("train", "--model_type", "gpt_bert", "--hybrid_mix", "batch", "--hybrid_ratio", "3:1",
                     "--mlm_probability", "0.3", "--output_dir", tmp_path, kind="mlm")
    tok = load_tokenizer(args.tokenizer_dir)
    torch.manual_seed(0)
    model = build_model(args, tok)
    if not fused:
        monkeypatch.setattr(losses, "_plain_head", lambda head: None)
    batch = StepObjective.from_args(args, tok, causal=True, hybrid=True).batch(
        {"input_ids": torch.randint(10, len(tok), (8, 32))}, 0)
    assert batch["masked_rows"] == 6
    loss, parts = losses.make_objective(model)(batch)
    loss.backward()
    ours = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    ids, labels = batch["input_ids"], batch["labels"]
    masked = model(input_ids=ids[:6], labels=labels[:6], bidirectional=True).loss
    causal = model(input_ids=ids[6:], labels=labels[6:]).loss
    reference = 0.75 * masked + 0.25 * causal
    reference.backward()
    assert loss.item() == pytest.approx(reference.item(), abs=1e-6)
    assert parts["train/masked_loss"].item() == pytest.approx(masked.item(), abs=1e-6)
    assert parts["train/causal_loss"].item() == pytest.approx(causal.item(), abs=1e-6)
    for mine, theirs in zip(ours, (p.grad for p in model.parameters()), strict=True):
        assert torch.allclose(mine, theirs, atol=1e-6)
    # With the z-loss: each part's z term with the part's weight, the logged parts still the cross-entropies.
    z_loss, z_parts = losses.make_objective(model, z_loss=0.01)(batch)
    assert z_parts["train/masked_loss"].item() == pytest.approx(masked.item(), abs=1e-5)
    assert z_loss.item() == pytest.approx(reference.item() + z_parts["train/z_loss"].item(), abs=1e-5)


@pytest.mark.parametrize("loop", ["pytorch", "huggingface"])
def test_both_loops_train_both_modes_every_step(loop, make_args, tmp_path):
    out = tmp_path / "run"
    flag = ["--torch_training"] if loop == "pytorch" else []
    args = make_args("train", *flag, "--model_type", "gpt_bert", "--hybrid_mix", "batch", "--hybrid_ratio", "3:1",
                     "--output_dir", out, "--max_steps", "12", "--batch_size", "8", "--learning_rate", "3e-3",
                     "--eval_steps", "12", "--logging_steps", "1", "--mask_span", "2", kind="mlm")
    run_loop(loop, args)
    for tag in ("train/masked_loss", "train/causal_loss"):  # every step holds both
        values = scalars(out, tag)
        assert len(values) == 12 and all(math.isfinite(v) for v in values) and values[-1] < values[0], (tag, values)


# --------------------------------------------------------------------------- refusals


def test_the_options_refuse_what_they_cannot_do(make_args, tmp_path, capsys):
    from training.setup import _check_model_type

    for extra, kind, message in (
            (("--model_type", "gpt2", "--mask_span", "3"), "clm", "--mask_span sets masking, but gpt2 is a causal LM"),
            (("--model_type", "llama", "--mlm_probability_end", "0.1"), "clm", "but llama is a causal LM"),
            (("--model_type", "bert", "--hybrid_mix", "batch"), "mlm", "bert is not a hybrid model")):
        args = make_args("train", *extra, "--output_dir", tmp_path, kind=kind)
        with pytest.raises(UserError, match=message):
            _check_model_type(args, load_tokenizer(args.tokenizer_dir))
    for model_type, kind in (("bert", "mlm"), ("gpt_bert", "mlm"), ("gpt2", "clm")):  # --z_loss: every type
        args = make_args("train", "--model_type", model_type, "--z_loss", "1e-4", "--output_dir", tmp_path, kind=kind)
        assert _check_model_type(args, load_tokenizer(args.tokenizer_dir)) == model_type
    for extra, message in ((("--mlm_probability_end", "0.1", "--objective_schedule", "0:mlm_probability=0.3"),
                            "both set the masking share"),
                           (("--model_type", "gpt_bert", "--hybrid_mix", "batch", "--batch_size", "1"),
                            "raise --batch_size to 2"),
                           (("--mask_span", "0",), "--mask_span must be at least 1"),
                           (("--z_loss", "-1",), "--z_loss must be 0 or more")):
        with pytest.raises(SystemExit):
            make_args("train", *extra, "--output_dir", tmp_path, kind="mlm")
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
