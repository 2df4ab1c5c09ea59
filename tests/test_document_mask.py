"""--document_mask: packed blocks with block-diagonal attention. The segments (lines, each
ending with EOS) and the mask on hand-written ids; every batch kind carries the mask, row
for row; for every family (gpt2, llama, bert, gpt_bert, ltg_bert) the training loss of a
packed batch equals the loss of each line run ALONE through the model (at the positions it
has in the block, so absolute positions agree; the relative-position bodies also at 0, 1,
2, ...), and changing one line never changes another line's outputs; distillation passes
the mask to student and teachers; both loops train with it; the refusals."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from conftest import run_loop
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from custom_models import body_and_head, build_model, is_causal, is_hybrid
from tokenizer import load_tokenizer
from training import losses
from training.objective import StepObjective, check_document_mask, document_attention_mask, segment_ids
from utils import UserError

EOS = 2
# model type -> tokenizer kind
FAMILIES = {"gpt2": "clm", "llama": "clm", "bert": "mlm", "gpt_bert": "mlm", "ltg_bert": "mlm"}
# Where each row of the test batch has EOS: lines of several lengths, a line of EOS alone (15, 16),
# a block that starts with EOS, one that ends with it, one with no EOS (a single line).
EOS_AT = ([6, 15, 16, 27], [0, 31], [], [11, 20])


def scalars(run_dir, tag):
    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    return [e.value for e in acc.Scalars(tag)]


def packed_ids(tok, length: int = 32, seed: int = 0) -> torch.Tensor:
    """[4, length] ordinary tokens (no special token) with the tokenizer's EOS at EOS_AT."""
    g = torch.Generator().manual_seed(seed)
    ordinary = torch.tensor(sorted(set(range(len(tok))) - set(tok.all_special_ids)))
    ids = ordinary[torch.randint(len(ordinary), (len(EOS_AT), length), generator=g)]
    for row, places in enumerate(EOS_AT):
        ids[row, places] = tok.eos_token_id
    return ids


# --------------------------------------------------------------------------- the segments and the mask


def test_segment_ids_and_the_mask_on_hand_written_ids():
    ids = torch.tensor([[5, 6, EOS, 7, EOS, 8, 9, 10],
                        [EOS, 5, 6, 7, 8, 9, EOS, EOS],
                        [5, 6, 7, 8, 9, 10, 11, 12]])
    # An EOS belongs to the line it ends; the next token starts the next line.
    assert segment_ids(ids, EOS).tolist() == [[0, 0, 0, 1, 1, 2, 2, 2],
                                              [0, 1, 1, 1, 1, 1, 1, 2],
                                              [0, 0, 0, 0, 0, 0, 0, 0]]
    allowed = document_attention_mask(ids, EOS)
    assert allowed.shape == (3, 8, 8) and allowed.dtype == torch.bool
    blocks = [[(0, 3), (3, 5), (5, 8)], [(0, 1), (1, 7), (7, 8)], [(0, 8)]]
    for row, spans in enumerate(blocks):
        expected = torch.zeros(8, 8, dtype=torch.bool)
        for start, end in spans:
            expected[start:end, start:end] = True  # bidirectional within a line; the losses add the causal part
        assert torch.equal(allowed[row], expected), row
    assert torch.equal(allowed, allowed.transpose(1, 2)) and allowed.diagonal(dim1=1, dim2=2).all()


def test_the_additive_mask_adds_the_causal_part_only_when_asked():
    allowed = document_attention_mask(torch.tensor([[5, EOS, 6, 7]]), EOS)
    causal, both = losses.additive_mask(allowed, True, torch.float32), losses.additive_mask(allowed, False,
                                                                                           torch.float32)
    assert causal.shape == both.shape == (1, 1, 4, 4)
    lowest = torch.finfo(torch.float32).min
    assert torch.equal(both[0, 0] == 0, allowed[0])
    assert torch.equal(causal[0, 0] == 0, allowed[0] & torch.ones(4, 4, dtype=torch.bool).tril())
    assert set(causal.unique().tolist()) == {0.0, lowest}


@pytest.mark.parametrize(("model_type", "extra"), [("gpt2", ()), ("bert", ()), ("gpt_bert", ()),
                                                   ("gpt_bert", ("--hybrid_mix", "batch", "--hybrid_ratio", "1:1"))])
def test_every_batch_kind_carries_the_mask_row_for_row(model_type, extra, make_args, tmp_path):
    args = make_args("train", "--model_type", model_type, *extra, "--document_mask", "--output_dir", tmp_path,
                     "--mlm_probability", "0.5", kind=FAMILIES[model_type])
    tok = load_tokenizer(args.tokenizer_dir)
    ids = packed_ids(tok)
    expected = document_attention_mask(ids, tok.eos_token_id)
    objective = StepObjective.from_args(args, tok, is_causal(model_type), is_hybrid(model_type))
    plain = StepObjective.from_args(make_args("train", "--model_type", model_type, *extra, "--output_dir", tmp_path,
                                              kind=FAMILIES[model_type]), tok, is_causal(model_type),
                                    is_hybrid(model_type))
    for step in range(2):  # the hybrid's causal step, then its masked one
        batch = objective.batch({"input_ids": ids.clone()}, step)
        # From the blocks as read (masking replaces tokens, not lines), in the rows' order: a mixed
        # batch's masked rows are its first rows, so the mask's rows stay with them.
        assert torch.equal(batch["attention_mask"], expected)
        assert batch["input_ids"].shape == ids.shape
        assert "attention_mask" not in plain.batch({"input_ids": ids.clone()}, step)
    if model_type == "bert":
        assert not torch.equal(batch["input_ids"], ids)  # masked: the mask still comes from the originals


# --------------------------------------------------------------------------- packed equals each line alone


def build(make_args, tmp_path, model_type: str, seed: int = 0, *extra: str):
    args = make_args("train", "--model_type", model_type, "--document_mask", "--output_dir", tmp_path,
                     "--mlm_probability", "0.3", *extra, kind=FAMILIES[model_type])
    tok = load_tokenizer(args.tokenizer_dir)
    torch.manual_seed(seed)
    return build_model(args, tok).eval(), tok, args


def masked_hidden(model, ids: torch.Tensor, allowed: torch.Tensor, bidirectional: bool) -> torch.Tensor:
    """The body's hidden states of the packed rows under the document mask, as the losses pass it."""
    body, _ = body_and_head(model)
    if is_hybrid(model.config.model_type):
        return body(ids, allowed, bidirectional=bidirectional)
    keywords = losses.mask_keywords(model, causal=is_causal(model.config.model_type))(allowed)
    return body(input_ids=ids, **keywords).last_hidden_state


def alone_hidden(model, ids: torch.Tensor, eos: int, bidirectional: bool, own_positions: bool = True,
                 lines_of: torch.Tensor | None = None) -> torch.Tensor:
    """The body's hidden states with every line of every row run by itself, unpacked, no mask:
    at the positions it has in the block (`own_positions`), or from 0. The lines are those of
    `lines_of` (the blocks before masking) when given, else of `ids`."""
    body, _ = body_and_head(model)
    segments = segment_ids(ids if lines_of is None else lines_of, eos)
    out = torch.zeros(*ids.shape, model.config.hidden_size)
    for row in range(ids.size(0)):
        for s in segments[row].unique():
            where = (segments[row] == s).nonzero()[:, 0]
            piece = ids[row:row + 1, where]
            positions = where[None] if own_positions else torch.arange(len(where))[None]
            if is_hybrid(model.config.model_type):
                hidden = body(piece, bidirectional=bidirectional, position_ids=positions)
            else:
                hidden = body(input_ids=piece, position_ids=positions).last_hidden_state
            out[row, where] = hidden[0]
    return out


def predicted_alone(model, batch: dict, eos: int, originals: torch.Tensor,
                    bidirectional: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, targets) of the batch's targets, each predicted from its own line alone. Causal
    LMs and hybrids: position t predicts labels[t + 1] (an EOS position predicts the next line's
    first token from its own line); BERT: each masked position its token."""
    ids, labels = batch["input_ids"], batch["labels"]
    hidden = alone_hidden(model, ids, eos, bidirectional, lines_of=originals)  # a masked-out token stays in its line
    _, head = body_and_head(model)
    if not is_causal(model.config.model_type):
        chosen = labels != -100
        return head(hidden[chosen]), labels[chosen]
    targets = labels[:, 1:]
    chosen = targets != -100
    return head(hidden[:, :-1][chosen]), targets[chosen]


def reference_loss(model, batch: dict, eos: int, originals: torch.Tensor, bidirectional: bool) -> torch.Tensor:
    """The mean cross-entropy over the batch's targets, each predicted from its own line alone."""
    logits, targets = predicted_alone(model, batch, eos, originals, bidirectional)
    return F.cross_entropy(logits.float(), targets)


def modes(model_type: str) -> list[bool]:
    """The attention modes of a family: causal LMs causal, BERT bidirectional, hybrids both."""
    if is_hybrid(model_type):
        return [False, True]
    return [not is_causal(model_type)]


@pytest.mark.parametrize("model_type", sorted(FAMILIES))
def test_a_packed_line_gives_what_it_gives_alone(model_type, make_args, tmp_path):
    model, tok, _ = build(make_args, tmp_path, model_type)
    ids, eos = packed_ids(tok), tok.eos_token_id
    allowed = document_attention_mask(ids, eos)
    relative = model_type in ("llama", "ltg_bert")  # RoPE and relative buckets see only position differences
    with torch.no_grad():
        for bidirectional in modes(model_type):
            packed = masked_hidden(model, ids, allowed, bidirectional)
            assert torch.allclose(packed, alone_hidden(model, ids, eos, bidirectional), atol=1e-5), bidirectional
            if relative:  # the same outputs as the line at the start of a block
                assert torch.allclose(packed, alone_hidden(model, ids, eos, bidirectional, own_positions=False),
                                      atol=1e-4)
            # The first line of a block starts at position 0 either way: the same outputs with no mask
            # at all once the rest of the row is cut off (the plain model, alone).
            body, _ = body_and_head(model)
            first = ids[0:1, :7]
            plain = body(first, bidirectional=bidirectional) if is_hybrid(model_type) else \
                body(input_ids=first).last_hidden_state
            assert torch.allclose(packed[0, :7], plain[0], atol=1e-5)


@pytest.mark.parametrize("model_type", sorted(FAMILIES))
def test_changing_one_line_never_changes_another(model_type, make_args, tmp_path):
    model, tok, _ = build(make_args, tmp_path, model_type)
    ids, eos = packed_ids(tok), tok.eos_token_id
    allowed = document_attention_mask(ids, eos)
    changed = ids.clone()
    changed[0, 7:15] = packed_ids(tok, seed=1)[0, 7:15]  # row 0's second line (positions 7..15, EOS at 15 kept)
    assert not torch.equal(changed, ids) and torch.equal(document_attention_mask(changed, eos), allowed)
    others = torch.ones(ids.shape, dtype=torch.bool)
    others[0, 7:16] = False
    with torch.no_grad():
        for bidirectional in modes(model_type):
            before = masked_hidden(model, ids, allowed, bidirectional)
            after = masked_hidden(model, changed, allowed, bidirectional)
            assert torch.allclose(before[others], after[others], atol=1e-6), bidirectional
            assert not torch.allclose(before[0, 7:16], after[0, 7:16], atol=1e-4)  # the line itself does change
            # The check can fail: without the mask the later lines (and, bidirectional, the earlier) see it.
            body, _ = body_and_head(model)
            if is_hybrid(model_type):
                unmasked = [body(x, bidirectional=bidirectional) for x in (ids, changed)]
            else:
                unmasked = [body(input_ids=x).last_hidden_state for x in (ids, changed)]
            assert not torch.allclose(unmasked[0][0, 16:], unmasked[1][0, 16:], atol=1e-4)


@pytest.mark.parametrize("model_type", sorted(FAMILIES))
def test_the_training_loss_is_that_of_each_line_alone(model_type, make_args, tmp_path):
    """make_objective on StepObjective's batch (both modes for the hybrids, and their mixed batch)
    against the cross-entropy of the same targets with each line run alone."""
    model, tok, args = build(make_args, tmp_path, model_type)
    ids, eos = packed_ids(tok), tok.eos_token_id
    objective = StepObjective.from_args(args, tok, is_causal(model_type), is_hybrid(model_type))
    loss_fn = losses.make_objective(model)
    torch.manual_seed(1)
    with torch.no_grad():
        for step in range(2 if is_hybrid(model_type) else 1):  # the hybrid: a causal step, then a masked one
            batch = objective.batch({"input_ids": ids.clone()}, step)
            bidirectional = bool(batch.get("bidirectional", not is_causal(model_type)))
            loss, _ = loss_fn(batch)
            reference = reference_loss(model, batch, eos, ids, bidirectional)
            assert loss.item() == pytest.approx(reference.item(), abs=2e-6), step  # float32 rounding: 5e-7
            # The check can fail: without the mask the loss is another (by 4e-5 for the tiny BERT, more elsewhere).
            unmasked, _ = loss_fn({k: v for k, v in batch.items() if k != "attention_mask"})
            assert abs(unmasked.item() - loss.item()) > 2e-5
        if is_hybrid(model_type):  # --hybrid_mix batch: masked rows first, then causal ones, each with its mask rows
            mixed_args = make_args("train", "--model_type", model_type, "--document_mask", "--hybrid_mix", "batch",
                                   "--hybrid_ratio", "1:1", "--output_dir", tmp_path, kind="mlm")
            batch = StepObjective.from_args(mixed_args, tok, True, True).batch({"input_ids": ids.clone()}, 0)
            n = batch["masked_rows"]
            assert n == 2
            loss, parts = loss_fn(batch)
            masked = reference_loss(model, {k: batch[k][:n] for k in ("input_ids", "labels")}, eos, ids[:n], True)
            causal = reference_loss(model, {k: batch[k][n:] for k in ("input_ids", "labels")}, eos, ids[n:], False)
            assert parts["train/masked_loss"].item() == pytest.approx(masked.item(), abs=1e-5)
            assert parts["train/causal_loss"].item() == pytest.approx(causal.item(), abs=1e-5)
            assert loss.item() == pytest.approx(0.5 * masked.item() + 0.5 * causal.item(), abs=1e-5)


@pytest.mark.parametrize("model_type", ["gpt2", "llama"])
def test_the_chunked_and_compiled_style_losses_agree_with_the_mask(model_type, make_args, tmp_path, monkeypatch):
    """The written-out loss (what --compile runs, uncompiled here) equals the chunked one with the mask."""
    model, tok, args = build(make_args, tmp_path, model_type)
    batch = StepObjective.from_args(args, tok, is_causal(model_type)).batch({"input_ids": packed_ids(tok)}, 0)
    with torch.no_grad():
        fused = losses.make_loss_fn(model)(batch)
        monkeypatch.setattr(losses, "_plain_head", lambda head: None)
        written = losses.make_loss_fn(model)(batch)
    assert fused.item() == pytest.approx(written.item(), abs=1e-5)


@pytest.mark.parametrize("model_type", ["gpt2", "bert", "gpt_bert"])
def test_distillation_passes_the_mask_to_student_and_teachers(model_type, make_args, tmp_path):
    student, tok, args = build(make_args, tmp_path, model_type, 0)
    teacher, _, _ = build(make_args, tmp_path, model_type, 1)
    ids, eos = packed_ids(tok), tok.eos_token_id
    batch = StepObjective.from_args(args, tok, is_causal(model_type)).batch({"input_ids": ids.clone()}, 0)
    batch.pop("bidirectional", None)  # distillation trains the hybrid causally
    alpha, temperature = 0.3, 2.0
    causal = is_causal(model_type)
    with torch.no_grad():
        loss, parts = losses.make_objective(student, [teacher], alpha, temperature)(batch)
        mine, targets = predicted_alone(student, batch, eos, ids, not causal)
        theirs, _ = predicted_alone(teacher, batch, eos, ids, not causal)
        ce = F.cross_entropy(mine.float(), targets)
        kl = losses.distill_kl(mine, [theirs], temperature)
    assert parts["train/ce_loss"].item() == pytest.approx(ce.item(), abs=1e-5)
    assert parts["train/distill_kl"].item() == pytest.approx(kl.item(), abs=1e-6)
    assert loss.item() == pytest.approx(alpha * ce.item() + (1 - alpha) * temperature ** 2 * kl.item(), abs=1e-5)


# --------------------------------------------------------------------------- training and refusals


@pytest.mark.parametrize(("loop", "model_type"), [("pytorch", "llama"), ("pytorch", "gpt_bert"),
                                                  ("huggingface", "gpt2")])
def test_training_with_the_mask_runs_and_learns(loop, model_type, make_args, tmp_path):
    out = tmp_path / "run"
    flag = ["--torch_training"] if loop == "pytorch" else []
    extra = ["--hybrid_mix", "batch", "--hybrid_ratio", "1:1"] if is_hybrid(model_type) else []
    args = make_args("train", *flag, "--model_type", model_type, *extra, "--document_mask", "--output_dir", out,
                     "--max_steps", "12", "--batch_size", "8", "--learning_rate", "3e-3", "--eval_steps", "12",
                     "--logging_steps", "1", kind=FAMILIES[model_type])
    results = run_loop(loop, args)
    values = scalars(out, "train/loss")
    assert len(values) == 12 and all(math.isfinite(v) for v in values) and values[-1] < values[0], values
    assert math.isfinite(results["best_eval_loss"])  # validation: unmasked blocks, as without the option


def test_the_refusals_are_one_line(make_args, tmp_path):
    from training.setup import prepare_training

    args = make_args("train", "--document_mask", "--output_dir", tmp_path / "run")
    args.attn_implementation = "flash_attention_2"  # not a CLI choice today; a kernel without custom masks
    with pytest.raises(UserError, match="--document_mask needs an attention kernel") as refused:
        prepare_training(args)
    assert "\n" not in str(refused.value) and "--attn_implementation eager or sdpa" in str(refused.value)
    assert not (tmp_path / "run").exists()  # refused before anything is written
    args.attn_implementation = "sdpa"
    with pytest.raises(UserError, match="--document_mask trains with the HF Trainer in one process only") as refused:
        check_document_mask(args, world=2)  # torchrun: the Trainer path's own loss runs outside its DDP
    assert "\n" not in str(refused.value)
    args.torch_training = True
    check_document_mask(args, world=2)
    args.document_mask, args.attn_implementation = False, "flash_attention_2"  # without the option any kernel goes
    StepObjective.from_args(args, None)
    # The loss checks the kernel the model really runs (a saved model, a teacher).
    flash = SimpleNamespace(config=SimpleNamespace(model_type="gpt2", _attn_implementation="flash_attention_2"),
                            dtype=torch.float32)
    keywords = losses.mask_keywords(flash, causal=True)
    assert keywords(None) == {}
    with pytest.raises(UserError, match="needs eager or sdpa attention, but the model runs flash_attention_2") as e:
        keywords(torch.ones(1, 4, 4, dtype=torch.bool))
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="needs the tokenizer's EOS token"):
        StepObjective(tokenizer=None, causal=True, hybrid=False, mlm_probability=0.15, masked_share=0.5,
                      document_mask=True).batch({"input_ids": torch.zeros(1, 4, dtype=torch.long)}, 0)
