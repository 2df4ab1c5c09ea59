"""One BLiMP engine: the blimp action and the test step's BLiMP (evaluation/blimp.py) are a view
of the zero-shot scorer's strict convention (evaluation/scoring.py). Before they were, the two
engines were compared here on the sample pairs (every family agreed pair by pair, scores within
1.5e-5); now the view is checked against a brute-force scorer that spells out the old engine's
definition, one sentence and one forward pass at a time, for every model family."""

from __future__ import annotations

import pytest
import torch
from conftest import ROOT
from test_zero_shot import tiny_models

import evaluation.blimp as blimp

BLIMP_SAMPLE = ROOT / "data" / "sample_eval" / "blimp"
# family -> (tiny model of test_zero_shot.tiny_models, --hybrid_scoring, the zero-shot backend that scores it)
FAMILIES = {"causal": ("causal", "causal", "causal"), "masked": ("mlm", "causal", "mlm"),
            "hybrid": ("mntp", "causal", "causal"), "hybrid_masked": ("mntp", "masked", "mntp")}


@torch.no_grad()
def brute_force(model, tok, sentence: str, backend: str, variant: str) -> float:
    """The old engine's score. causal: sum of log p(token | BOS, previous tokens), the sentence
    without special tokens. mlm: each non-special token masked in turn (within_word_l2r: the
    later sub-tokens of its word too), read at its position. mntp: the same copies, bidirectional,
    read at the position before."""
    if backend == "causal":
        ids = [tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id]
        ids += tok(sentence, add_special_tokens=False)["input_ids"]
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)
        return sum(logp[t, ids[t + 1]].item() for t in range(len(ids) - 1))
    enc = tok(sentence)
    ids, words = enc["input_ids"], enc.word_ids()
    total = 0.0
    for pos, word in enumerate(words):
        if word is None:
            continue
        masked = [tok.mask_token_id if j == pos or (j > pos and variant == "within_word_l2r" and words[j] == word)
                  else t for j, t in enumerate(ids)]
        if backend == "mlm":
            logits = model(torch.tensor([masked])).logits[0, pos]
        else:
            logits = model(torch.tensor([masked]), bidirectional=True).logits[0, pos - 1]
        total += torch.log_softmax(logits.double(), -1)[ids[pos]].item()
    return total


@pytest.mark.parametrize("variant", ["within_word_l2r", "token"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_blimp_action_scores_every_pair_as_the_old_engine_did(tok_dirs, family, variant):
    key, hybrid_scoring, backend = FAMILIES[family]
    if variant == "token" and backend == "causal":
        pytest.skip("the PLL variant applies to masked scoring only")
    model, tok = tiny_models(tok_dirs)[key]
    assert blimp.blimp_backend(model.config.model_type, hybrid_scoring) == backend
    paradigms = blimp.load_paradigms(BLIMP_SAMPLE)
    sentences = [s for p in paradigms for pair in p.pairs for s in pair]
    engine = blimp.score_sentences(model, tok, sentences, 16, "cpu", variant, hybrid_scoring=hybrid_scoring)
    table = {s: brute_force(model, tok, s, backend, variant) for s in dict.fromkeys(sentences)}
    assert engine == pytest.approx([table[s] for s in sentences], rel=0, abs=5e-5)  # the variants differ by ~3e-4
    # The same pair decisions, hence the same accuracies, as the brute force (a tie is wrong).
    summary = blimp.evaluate_blimp(model, tok, paradigms, 16, "cpu", variant, hybrid_scoring=hybrid_scoring)
    expected = {p.name: sum(table[g] > table[b] for g, b in p.pairs) / len(p.pairs) for p in paradigms}
    assert summary["paradigms"] == expected
    assert 0.3 < summary["overall"] < 0.7  # an untrained model: near chance, not 0 or 1
