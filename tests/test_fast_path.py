"""The custom loop's fast path and the bench's measuring tools: the uint16 cache and
batch reads, torch.compile in both loops (same numbers as eager in float32, a
normal model folder saved), the per-step clock `make bench` reads, and its
memory sampler."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from conftest import SAMPLE, TINY_MODEL
from transformers import AutoModelForCausalLM

import tools.bench as bench
import tools.bench_report as bench_report
from corpus.editions import resolve_files
from evaluation.report import event_scalars
from pretraining_dataset import BlockDataset, load_blocks
from tokenizer import load_tokenizer


def test_cache_is_uint16_and_a_batch_read_equals_the_items(tok_dirs, tmp_path):
    tok = load_tokenizer(tok_dirs["clm"])
    blocks, _ = load_blocks(resolve_files(SAMPLE, "train", None), tok, 32, tmp_path / "cache", "train")
    assert blocks.dtype == np.uint16 and isinstance(blocks, np.memmap)  # read from disk by windows
    data = BlockDataset(blocks)
    idx = torch.tensor([5, 0, len(data) - 1, 5])
    batch = data.batch(idx)
    assert batch.dtype == torch.int64
    assert torch.equal(batch, torch.stack([data[int(i)]["input_ids"] for i in idx]))
    assert int(batch.max()) < len(tok)


def train_tiny(tok_dirs, tmp_path, name: str, *options: str, steps: int = 6):
    return bench.train_run([*TINY_MODEL, "--batch_size", "8", "--learning_rate", "3e-3", *options], steps, SAMPLE,
                           tmp_path / name, tok_dirs["clm"], logging_steps=1)


@pytest.mark.parametrize("loop", ["custom", "trainer"])
def test_compiled_training_matches_eager_in_float32(loop, tok_dirs, tmp_path):
    flag = ["--torch_training"] if loop == "custom" else []
    eager, _ = train_tiny(tok_dirs, tmp_path, "eager", *flag)
    compiled, _ = train_tiny(tok_dirs, tmp_path, "compiled", *flag, "--compile")
    eager_losses = event_scalars(tmp_path / "eager", "train/loss")[1]
    compiled_losses = event_scalars(tmp_path / "compiled", "train/loss")[1]
    assert len(compiled_losses) == 6
    assert compiled_losses[-1] < compiled_losses[0]  # it trains
    # Inductor may reorder float32 sums; anything beyond that would be a different computation.
    assert compiled_losses == pytest.approx(eager_losses, abs=2e-4)
    # The saved model is a plain transformers folder (no compile wrapper in its weights) ...
    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "compiled" / "best_model")
    assert not any("_orig_mod" in k for k in saved.state_dict())
    # ... holding the weights the compiled run trained.
    x = torch.randint(0, 600, (2, 16))
    with torch.no_grad():
        assert torch.allclose(saved(x).logits, compiled.model.eval()(x).logits, atol=1e-5)


@pytest.mark.parametrize("loop", ["custom", "trainer"])
def test_step_clock_marks_the_start_and_every_step(loop, tok_dirs, tmp_path):
    setup, peak_mb = train_tiny(tok_dirs, tmp_path, "run", *(["--torch_training"] if loop == "custom" else []),
                                steps=5)
    clock = setup.step_clock
    assert len(clock) == 6 and all(a < b for a, b in zip(clock, clock[1:], strict=False))
    assert peak_mb > 0


def test_peak_memory_sees_an_allocation():
    with bench.PeakMemory("cpu") as memory:
        block = torch.ones(64 * 2**20 // 4)  # 64 MB, touched
        time.sleep(0.1)  # the sampler looks every 2 ms
        del block
    assert 48 < memory.peak_mb < 1024


def test_ratios_compare_the_fast_path_with_each_loop():
    rows = [{"size": "s", "model": "gpt2", "loop": loop, "tokens_per_second": tps}
            for loop, tps in (("trainer", 100.0), ("plain_fp32", 50.0), ("fast", 300.0))]
    assert bench.ratios(rows) == [{"size": "s", "model": "gpt2", "fast_over_trainer": 3.0,
                                   "fast_over_plain_fp32": 6.0}]


def test_ratios_per_repeat_pair_the_loops_of_each_repeat():
    # Repeat by repeat (step seconds): the other loop over the fast path is 1.5, 0.9, 1.2;
    # the fastest repeats (0.8 against 0.7) give another ratio.
    rows = [{"size": "s", "model": "gpt2", "loop": "trainer", "tokens_per_second": 1 / 0.8,
             "step_seconds_per_repeat": [1.5, 0.9, 0.84]},
            {"size": "s", "model": "gpt2", "loop": "fast", "tokens_per_second": 1 / 0.7,
             "step_seconds_per_repeat": [1.0, 1.0, 0.7]}]
    (ratio,) = bench.ratios(rows)
    assert ratio["fast_over_trainer"] == pytest.approx(0.8 / 0.7, abs=0.005)
    assert ratio["fast_over_trainer_per_repeat"] == {"median": 1.2, "min": 0.9, "max": 1.5, "repeats": 3}
    assert "(median 1.2, 0.9-1.5 over 3)" in bench_report._ratio_cell(ratio, "trainer")


def assert_loss_fn_matches_the_model(batch: dict, model) -> None:
    """The custom loop's loss (losses.make_loss_fn) of `batch` and its gradients equal the
    model's own loss and gradients."""
    from training.losses import make_loss_fn

    ours = make_loss_fn(model)(batch)
    ours.backward()
    our_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    reference = model(**batch).loss
    reference.backward()
    assert ours.item() == pytest.approx(reference.item(), abs=1e-6)
    for mine, theirs in zip(our_grads, (p.grad for p in model.parameters()), strict=True):
        assert torch.allclose(mine, theirs, atol=1e-6)


def test_masked_lm_loss_at_masked_positions_only_equals_the_models_loss(tok_dirs, make_args):
    from custom_models import build_model
    from pretraining_dataset import mask_tokens

    tok = load_tokenizer(tok_dirs["mlm"])
    torch.manual_seed(0)
    model = build_model(make_args("train", "--model_type", "bert", "--output_dir", "-", kind="mlm"), tok)
    ids, labels = mask_tokens(torch.randint(5, len(tok), (4, 32)), tok, 0.15, torch.Generator().manual_seed(0))
    assert_loss_fn_matches_the_model({"input_ids": ids, "labels": labels}, model)  # its head at every position


@pytest.mark.parametrize("model_type", ["gpt2", "llama"])
def test_causal_lm_loss_equals_the_models_loss(model_type, tok_dirs, make_args):
    """The custom loop's written-out causal loss (one compiled graph, no head at the last
    position) gives the model's own loss and gradients, ignored (-100) labels included."""
    from custom_models import build_model

    tok = load_tokenizer(tok_dirs["clm"])
    torch.manual_seed(0)
    model = build_model(make_args("train", "--model_type", model_type, "--output_dir", "-"), tok)
    ids = torch.randint(0, len(tok), (4, 32))
    labels = ids.clone()
    labels[1, 7:12] = -100
    assert_loss_fn_matches_the_model({"input_ids": ids, "labels": labels}, model)


@pytest.mark.parametrize("autocast_dtype", [None, torch.bfloat16])
def test_chunked_linear_cross_entropy_equals_the_plain_loss(monkeypatch, autocast_dtype):
    """losses.linear_cross_entropy (logits a chunk at a time, gradients in the forward pass) gives
    F.cross_entropy's value and gradients, across several chunks (the last one short), with -100
    targets left out and a loss that is scaled before backward; under bf16 autocast the products
    run in bf16 as the plain loss's do."""
    from training import losses

    monkeypatch.setattr(losses, "CHUNK_LOGITS", 7 * 300)  # 7 rows a chunk of a 300-word vocabulary
    torch.manual_seed(0)
    hidden = torch.randn(45, 16, requires_grad=True)
    weight = torch.randn(300, 16, requires_grad=True)
    targets = torch.randint(0, 300, (45,))
    targets[::5] = -100

    def value_and_grads(loss_fn):
        hidden.grad = weight.grad = None
        with torch.autocast("cpu", dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None):
            loss = loss_fn()
        (2.5 * loss).backward()
        return loss.item(), hidden.grad.clone(), weight.grad.clone()

    ours = value_and_grads(lambda: losses.linear_cross_entropy(hidden, weight, targets))
    plain = value_and_grads(lambda: torch.nn.functional.cross_entropy((hidden @ weight.T).float(), targets))
    tolerance = 1e-6 if autocast_dtype is None else 2e-2  # bf16 products: 8 bits of mantissa
    assert ours[0] == pytest.approx(plain[0], rel=tolerance)
    for mine, theirs in zip(ours[1:], plain[1:], strict=True):
        assert torch.allclose(mine, theirs, atol=tolerance * theirs.abs().max().item())
    assert ours[1][::5].abs().sum() == 0  # the rows left out (-100) get no gradient
