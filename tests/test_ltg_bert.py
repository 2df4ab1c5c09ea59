"""ltg_bert, GPT-BERT's authors' body (hybrid_model.py), piece by piece against a hand-worked or
brute-force computation: the relative-position buckets, the three attention score terms, the
value gate and the norm before the output projection, GEGLU, the layer weights (the plain
residual at init), the init; each switch on its own in gpt_bert; the masked and causal modes on
relative positions; and the official scorer on a saved ltg_bert (both backends, every item as ours)."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from official_tree import OFFICIAL, SAMPLE_FAST, needs_official
from test_zero_shot import PAIRS, brute_force
from transformers import AutoTokenizer

from argument_parser import parse_args
from custom_models import build_model, load_model
from evaluation.scoring import make_plans, pad_id_of, score_plans
from hybrid_model import (
    BODY_PIECES,
    CLASSES,
    GPTBertConfig,
    LtgBertConfig,
    relative_buckets,
)
from tokenizer import load_tokenizer
from training.run_folder import save_model_folder
from utils import UserError


def tiny(model_type: str = "ltg_bert", seed: int = 0, vocab_size: int = 120, **pieces):
    """An untrained tiny model of `model_type` (pieces switched as given), in eval mode."""
    config = CLASSES[model_type][0](vocab_size=vocab_size, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                                    intermediate_size=48, max_position_embeddings=64, mask_token_id=4, **pieces)
    torch.manual_seed(seed)
    return CLASSES[model_type][2](config).eval()


def authors_bucket(relative: int, bucket_size: int = 32, max_position: int = 512) -> int:
    """LTG-BERT's make_log_bucket_position for one relative position, by hand in Python floats."""
    mid = bucket_size // 2
    distance = mid - 1 if -mid < relative < mid else min(abs(relative), max_position - 1)
    log_position = math.ceil(math.log(distance / mid) / math.log((max_position - 1) / mid) * (mid - 1)) + mid
    return relative if distance <= mid else int(math.copysign(log_position, relative))


def test_relative_buckets_are_exact_near_and_log_spaced_far():
    relative = torch.arange(-700, 701)
    ours = relative_buckets(relative, 32, 512)
    assert ours.tolist() == [authors_bucket(r) for r in relative.tolist()]
    # Worked by hand: exact to 17, then log buckets (17 holds 17-20, 18 starts at 21), the last from 406 on.
    assert [relative_buckets(torch.tensor(r), 32, 512).item() for r in (0, 5, -16, 17, 18, 20, 21, -21, 405, 406,
                                                                          511, 5000)] == \
        [0, 5, -16, 17, 17, 17, 18, -18, 30, 31, 31, 31]
    assert ours.abs().max().item() == 31 and len(set(ours.tolist())) == 63  # 63 rows of the table in use


def test_attention_is_the_three_terms_the_gate_and_the_norm_by_hand():
    model = tiny()
    body, attention = model.model, model.model.layers[0].attn
    torch.manual_seed(3)
    x = torch.randn(2, 7, 32)
    positions = torch.tensor([[0, 1, 2, 3, 4, 5, 6], [3, 4, 9, 30, 31, 60, 61]])
    _, (table, buckets) = body._embed(torch.zeros(2, 7, dtype=torch.long), positions)
    with torch.no_grad():
        for causal in (False, True):
            got = attention(x, None, causal, (table, buckets))
            # Brute force: every (query, key) pair's score by its three terms, one at a time.
            w, b = attention.qkv.weight, attention.qkv.bias
            heads, size, d = 4, 8, 32
            expected = torch.zeros(2, 7, d)
            for batch in range(2):
                proj = x[batch] @ w.T + b
                q, k, v, gate = proj[:, :d], proj[:, d:2 * d], proj[:, 2 * d:3 * d], proj[:, 3 * d:]
                context = torch.zeros(7, d)
                for h in range(heads):
                    cut = slice(h * size, (h + 1) * size)
                    scores = torch.full((7, 7), float("-inf"))
                    for i in range(7):
                        for j in range(7 if not causal else i + 1):
                            row = table[buckets[batch, i, j]]  # this pair's relative embedding
                            q_pos, k_pos = (row @ w[:d].T + b[:d])[cut], (row @ w[d:2 * d].T + b[d:2 * d])[cut]
                            scores[i, j] = (q[i, cut] @ k[j, cut] + q[i, cut] @ k_pos + k[j, cut] @ q_pos) \
                                / math.sqrt(3 * size)
                    context[:, cut] = torch.softmax(scores, -1) @ v[:, cut]
                gated = context * F.gelu(gate)
                normed = (gated - gated.mean(-1, keepdim=True)) / torch.sqrt(gated.var(-1, unbiased=False,
                                                                                     keepdim=True) + 1e-5)
                expected[batch] = normed @ attention.out.weight.T + attention.out.bias
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_geglu_feed_forward_by_hand():
    model = tiny()
    mlp = model.model.layers[1].mlp
    torch.manual_seed(4)
    x = torch.randn(5, 32)
    up = x @ mlp[0].weight.T  # no bias
    value, gate = up[:, :48], up[:, 48:]
    hidden = value * 0.5 * gate * (1 + torch.tanh(math.sqrt(2 / math.pi) * (gate + 0.044715 * gate ** 3)))
    hidden = (hidden - hidden.mean(-1, keepdim=True)) / torch.sqrt(hidden.var(-1, unbiased=False, keepdim=True) + 1e-5)
    with torch.no_grad():
        torch.testing.assert_close(mlp(x), hidden @ mlp[3].weight.T, rtol=1e-5, atol=1e-6)
    assert mlp[0].bias is None and mlp[3].bias is None and mlp[2].weight is None  # no biases, no affine norm


def test_layer_weights_start_as_the_plain_residual():
    weighted, plain = tiny(), tiny(layer_weights=False)
    assert len(weighted.model.mixes) == 6 and [m.alphas.tolist() for m in weighted.model.mixes[:2]] == [
        [0.0, 1.0], [0.0, 0.0, 1.0]]
    missing, unexpected = plain.load_state_dict(weighted.state_dict(), strict=False)
    assert not missing and all(k.startswith("model.mixes.") for k in unexpected)
    ids = torch.randint(5, 120, (2, 11))
    with torch.no_grad():
        for bidirectional in (False, True):
            torch.testing.assert_close(weighted(ids, bidirectional=bidirectional).logits,
                                       plain(ids, bidirectional=bidirectional).logits)
        weighted.model.mixes[3].alphas[0] = 0.5  # a learned weight on the embedding changes the output
        assert not torch.allclose(weighted(ids).logits, plain(ids).logits)


def test_init_is_truncated_normal_and_the_feed_forward_is_scaled_by_depth():
    config = LtgBertConfig(vocab_size=4000, hidden_size=128, num_hidden_layers=3, num_attention_heads=4,
                           intermediate_size=512)
    torch.manual_seed(0)
    model = CLASSES["ltg_bert"][2](config)
    std = math.sqrt(2 / (5 * 128))
    truncated = std * 0.8796  # a normal's std after cutting it at 2 std
    for name, weight, scale in [("embeddings", model.model.embed_tokens.weight, 1.0),
                                ("attention", model.model.layers[2].attn.qkv.weight, 1.0),
                                ("first feed-forward", model.model.layers[0].mlp[0].weight, math.sqrt(1 / 2)),
                                ("third feed-forward", model.model.layers[2].mlp[3].weight, math.sqrt(1 / 6))]:
        assert weight.abs().max() <= 2 * std * scale + 1e-6, name
        assert weight.std().item() == pytest.approx(truncated * scale, rel=0.03), name
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tied
    assert not model.lm_head.bias.any() and not model.model.layers[0].attn.qkv.bias.any()


@pytest.mark.parametrize("piece", sorted(BODY_PIECES))
def test_each_piece_switches_alone_and_reloads_to_the_same_logits(piece, tmp_path, make_args):
    args = make_args("train", "--model_type", "gpt_bert", f"--{piece}" if not BODY_PIECES[piece] else f"--no-{piece}",
                     "--output_dir", tmp_path / "unused", kind="mlm")
    tok = load_tokenizer(args.tokenizer_dir)
    torch.manual_seed(0)
    model = build_model(args, tok).eval()
    config = model.config
    assert [name for name in BODY_PIECES if getattr(config, name) != BODY_PIECES[name]] == [piece]
    save_model_folder(model, tok, args, tmp_path / "saved")
    reloaded = load_model(tmp_path / "saved")
    assert getattr(reloaded.config, piece) == (not BODY_PIECES[piece])
    ids = tok(["the dog sees the ball ."], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        for bidirectional in (False, True):
            torch.testing.assert_close(reloaded(ids, bidirectional=bidirectional).logits,
                                       model(ids, bidirectional=bidirectional).logits)


def test_ltg_bert_defaults_are_the_authors_and_each_can_be_turned_off(make_args, tmp_path):
    args = make_args("train", "--model_type", "ltg_bert", "--no-layer_weights", "--output_dir", tmp_path, kind="mlm")
    config = build_model(args, load_tokenizer(args.tokenizer_dir)).config
    assert config.model_type == "ltg_bert" and isinstance(config, LtgBertConfig)
    assert {name: getattr(config, name) for name in BODY_PIECES} == {
        **{name: True for name in BODY_PIECES}, "affine_norms": False, "layer_weights": False}
    assert not any(getattr(GPTBertConfig(), name) != value for name, value in BODY_PIECES.items())


def test_a_body_switch_on_another_model_type_is_refused(make_args, tmp_path):
    args = make_args("train", "--model_type", "gpt2", "--value_gate", "--output_dir", tmp_path)
    with pytest.raises(UserError, match="--value_gate switches a piece of the gpt_bert/ltg_bert body, not of gpt2"):
        build_model(args, load_tokenizer(args.tokenizer_dir))


def test_a_recipe_turns_a_switch_off(tmp_path, make_args):
    recipe = tmp_path / "ablation.toml"
    recipe.write_text('model_type = "ltg_bert"\nvalue_gate = false\ngeglu = true\n')
    base = make_args("train", "--output_dir", tmp_path, kind="mlm")
    args = parse_args(["train", "--config", str(recipe), "--tokenizer_dir", base.tokenizer_dir, "--output_dir",
                       str(tmp_path)])
    assert (args.model_type, args.value_gate, args.geglu, args.mlp_head) == ("ltg_bert", False, True, None)


def test_causal_mode_never_looks_ahead_with_relative_positions():
    model = tiny()
    ids = torch.randint(5, 120, (1, 12))
    later = ids.clone()
    later[0, 6:] = 7
    with torch.no_grad():
        causal, changed = model(ids).logits, model(later).logits
        masked, masked_changed = model(ids, bidirectional=True).logits, model(later, bidirectional=True).logits
    torch.testing.assert_close(causal[0, :6], changed[0, :6])
    assert not torch.allclose(masked[0, :6], masked_changed[0, :6], atol=1e-4)
    # Relative positions: the same tokens at shifted position ids give the same output.
    with torch.no_grad():
        shifted = model.model(ids, position_ids=torch.arange(12)[None] + 9)
        torch.testing.assert_close(shifted, model.model(ids))


@pytest.mark.parametrize(("backend", "convention"), [("mntp", "official"), ("mntp", "strict"), ("causal", "official")])
def test_the_zero_shot_scorer_matches_a_brute_force_scorer(tok_dirs, backend, convention):
    """Prefix-tree rows (shared prefixes at their own position ids), masked copies and the last
    layer run at the reads alone, all on relative positions and layer weights."""
    tokenizer = AutoTokenizer.from_pretrained(tok_dirs["mlm"])
    model = tiny(vocab_size=len(tokenizer))
    sentences, completions = [s for s, _ in PAIRS], [c for _, c in PAIRS]
    plans = make_plans(tokenizer, sentences, completions, backend, convention)
    pad, mask = pad_id_of(tokenizer, backend), tokenizer.mask_token_id
    fast = score_plans(model, plans, backend, pad, mask, tokens_per_batch=40, row_tokens=12)
    flat = score_plans(model, plans, backend, pad, mask, tokens_per_batch=40, share_prefixes=False)
    slow = [brute_force(model, tokenizer, s, c, backend, convention, "within_word_l2r") for s, c in PAIRS]
    for scores in (fast, flat):
        np.testing.assert_allclose(scores, slow, rtol=1e-4)


@needs_official("aiohttp", "PIL")
def test_the_official_scorer_loads_ltg_bert_and_agrees_on_every_item(tmp_path, tok_dirs, monkeypatch):
    """The official scorer (in its own process) on a saved ltg_bert: AutoModelForMaskedLM (mntp) and
    AutoModelForCausalLM (causal) with trust_remote_code, every prediction the same as ours."""
    from tools import bench_official
    from tools.bench import ZERO_SHOT_SIZES

    monkeypatch.setitem(bench_official.BACKENDS, "mntp", ("ltg_bert", "mlm"))
    monkeypatch.setitem(bench_official.BACKENDS, "causal", ("ltg_bert", "mlm"))
    eval_dir = tmp_path / "fast_eval"
    for folder in ("blimp_fast", "ewok_fast"):
        shutil.copytree(SAMPLE_FAST / folder, eval_dir / folder)
    result = bench_official.bench_against_official(eval_dir, OFFICIAL, tok_dirs, "tiny", ZERO_SHOT_SIZES["tiny"],
                                                   ("mntp", "causal"), tmp_path / "out")
    assert len(result["rows"]) == 4
    for row in result["rows"]:
        assert row["items"] > 0 and row["agreeing"] == row["items"], row
    saved = sorted((tmp_path / "out").glob("*/*_model/config.json"))
    assert len(saved) == 2 and all('"model_type": "ltg_bert"' in path.read_text() for path in saved)
