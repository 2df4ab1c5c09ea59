"""One BLiMP engine: the blimp action (evaluation/blimp.py) against the zero-shot scorer's
strict convention (evaluation/scoring.py), on the sample pairs, for every model family."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ROOT
from test_zero_shot import tiny_models

import evaluation.blimp as blimp
from evaluation.scoring import make_plans, pad_id_of, score_plans
from evaluation.zero_shot import choose

BLIMP_SAMPLE = ROOT / "data" / "sample_eval" / "blimp"
# family -> (tiny model, the blimp action's --hybrid_scoring, the zero-shot backend that reproduces it)
FAMILIES = {"causal": ("causal", "causal", "causal"), "masked": ("mlm", "causal", "mlm"),
            "hybrid": ("mntp", "causal", "causal"), "hybrid_masked": ("mntp", "masked", "mntp")}


@pytest.mark.parametrize("variant", ["within_word_l2r", "token"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_blimp_action_and_strict_zero_shot_agree_per_pair(tok_dirs, family, variant):
    if variant == "token" and family in ("causal", "hybrid"):
        pytest.skip("the PLL variant applies to masked scoring only")
    key, hybrid_scoring, backend = FAMILIES[family]
    model, tok = tiny_models(tok_dirs)[key]
    paradigms = blimp.load_paradigms(BLIMP_SAMPLE)
    sentences = [s for p in paradigms for pair in p.pairs for s in pair]
    old = blimp.score_sentences(model, tok, sentences, 64, "cpu", variant, hybrid_scoring=hybrid_scoring)
    plans = make_plans(tok, sentences, sentences, backend, "strict", variant)
    new = score_plans(model, plans, backend, pad_id_of(tok, backend), tok.mask_token_id)
    np.testing.assert_allclose(new, old, rtol=1e-4)
    old_right = [g > b for g, b in zip(old[::2], old[1::2], strict=True)]
    new_right = [choose([g, b], "strict")[1] for g, b in zip(new[::2], new[1::2], strict=True)]
    assert new_right == old_right
    print(f"{family} {variant}: {sum(old_right)}/{len(old_right)} pairs right under both engines")
