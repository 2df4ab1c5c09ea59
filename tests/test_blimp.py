"""BLiMP scoring checked against brute-force one-sentence-at-a-time computations."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import ROOT
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from transformers import AutoTokenizer

import evaluation.blimp as blimp
import run
from custom_models import build_model
from training.run_folder import save_model_folder

BLIMP_SAMPLE = ROOT / "data" / "sample_eval" / "blimp"
SENTENCES = ["The dog runs.", "These boys washed themselves near the old mill by the river.",
             "A xylophonequartz blorped.", "Mira saw this ball.", "Mira saw this ball."]


def tiny(make_args, model_type, tmp_path, seed=0):
    kind = "mlm" if model_type == "bert" else "clm"
    args = make_args("train", "--model_type", model_type, "--output_dir", tmp_path, kind=kind)
    tok = AutoTokenizer.from_pretrained(args.tokenizer_dir)
    torch.manual_seed(seed)
    return build_model(args, tok).eval(), tok


def brute_causal(model, tok, sentence):
    ids = torch.tensor([[tok.bos_token_id] + tok(sentence, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0].float(), -1)
    return sum(logp[t, ids[0, t + 1]].item() for t in range(ids.shape[1] - 1))


def brute_pll(model, tok, sentence, variant):
    enc = tok(sentence)
    ids, words = enc["input_ids"], enc.word_ids()
    total = 0.0
    for pos, word in enumerate(words):
        if word is None:
            continue
        masked = list(ids)
        for j in range(pos, len(ids)):
            if j == pos or (variant == "within_word_l2r" and words[j] == word):
                masked[j] = tok.mask_token_id
        with torch.no_grad():
            logits = model(torch.tensor([masked])).logits[0, pos].float()
        total += torch.log_softmax(logits, -1)[ids[pos]].item()
    return total


@pytest.mark.parametrize("model_type", ["gpt2", "llama"])
def test_causal_scores_match_brute_force(model_type, make_args, tmp_path):
    model, tok = tiny(make_args, model_type, tmp_path)
    batched = blimp.causal_scores(model, tok, SENTENCES, batch_size=3)
    for sentence, score in zip(SENTENCES, batched, strict=True):
        assert score == pytest.approx(brute_causal(model, tok, sentence), abs=1e-4)


def test_causal_first_token_is_scored(make_args, tmp_path):
    model, tok = tiny(make_args, "gpt2", tmp_path)
    one = tok("The", add_special_tokens=False)["input_ids"]
    assert len(one) == 1
    [score] = blimp.causal_scores(model, tok, ["The"])
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([[tok.bos_token_id]])).logits[0, 0], -1)
    assert score == pytest.approx(logp[one[0]].item(), abs=1e-5)


@pytest.mark.parametrize("variant", ["within_word_l2r", "token"])
def test_pll_scores_match_brute_force(variant, make_args, tmp_path):
    model, tok = tiny(make_args, "bert", tmp_path)
    batched = blimp.pll_scores(model, tok, SENTENCES, batch_size=7, variant=variant)
    for sentence, score in zip(SENTENCES, batched, strict=True):
        assert score == pytest.approx(brute_pll(model, tok, sentence, variant), abs=1e-4)


def test_within_word_variant_masks_later_subtokens(tok_dirs):
    tok = AutoTokenizer.from_pretrained(tok_dirs["mlm"])
    ids, copies = blimp.masked_copies(tok, "a xylophonequartz", "within_word_l2r")
    words = tok("a xylophonequartz").word_ids()
    pieces = [i for i, w in enumerate(words) if w == 1]
    assert len(pieces) > 2  # the invented word is split into several tokens
    first_piece_copy = next(m for m, pos in copies if pos == pieces[0])
    assert all(first_piece_copy[i] == tok.mask_token_id for i in pieces)
    _, token_copies = blimp.masked_copies(tok, "a xylophonequartz", "token")
    assert all(sum(t == tok.mask_token_id for t in m) == 1 for m, _ in token_copies)
    assert len(copies) == len(token_copies) == sum(w is not None for w in words)


@pytest.mark.parametrize("model_type", ["gpt2", "bert"])
def test_score_independent_of_batch_and_padding(model_type, make_args, tmp_path):
    model, tok = tiny(make_args, model_type, tmp_path)
    alone = blimp.score_sentences(model, tok, ["The dog runs."], 64, "cpu")[0]
    mixed = blimp.score_sentences(model, tok, SENTENCES * 3 + ["The dog runs."], 4, "cpu")
    assert mixed[0] == pytest.approx(alone, abs=1e-5)
    assert mixed[-1] == pytest.approx(alone, abs=1e-5)


def test_ties_are_wrong_and_a_constant_model_scores_zero(monkeypatch, make_args, tmp_path):
    assert blimp.pair_accuracy([1.0, 2.0, 0.5], [1.0, 1.0, 0.7]) == pytest.approx(1 / 3)
    model, tok = tiny(make_args, "gpt2", tmp_path)
    monkeypatch.setattr(blimp, "score_sentences", lambda m, t, sentences, *a, **k: [-3.0] * len(sentences))
    summary = blimp.evaluate_blimp(model, tok, blimp.load_paradigms(BLIMP_SAMPLE))
    assert summary["overall"] == 0.0


def test_fields_normalised_and_summary_unweighted(tmp_path):
    rows = {"a": ("syntax_semantics", "binding", 3), "b": ("syntax/semantics", "binding", 1),
            "c": ("morphology", "agreement", 2)}
    for uid, (field, term, n) in rows.items():
        lines = [json.dumps({"sentence_good": f"good {uid} {i}", "sentence_bad": f"bad {uid} {i}", "field": field,
                             "linguistics_term": term, "UID": uid}) for i in range(n)]
        (tmp_path / f"{uid}.jsonl").write_text("\n".join(lines) + "\n")
    paradigms = blimp.load_paradigms(tmp_path)
    assert {p.field for p in paradigms} == {"syntax_semantics", "morphology"}
    summary = blimp.summarize(paradigms, {"a": 1.0, "b": 0.0, "c": 0.5})
    assert summary["overall"] == pytest.approx(0.5)  # mean over paradigms, not pairs (4/6)
    assert summary["fields"] == {"morphology": 0.5, "syntax_semantics": 0.5}
    assert "| field | syntax_semantics | 4 | 50.0 |" in blimp.markdown_table(summary)


def test_bad_blimp_folder_is_a_user_error(tmp_path):
    with pytest.raises(blimp.UserError, match="no BLiMP jsonl files"):
        blimp.load_paradigms(tmp_path)
    (tmp_path / "x.jsonl").write_text('{"sentence": "no pair here"}\n')
    with pytest.raises(blimp.UserError, match="x.jsonl:1"):
        blimp.load_paradigms(tmp_path)


def test_blimp_action_and_test_step_write_reports(make_args, tmp_path):
    model, tok = tiny(make_args, "gpt2", tmp_path)
    args = make_args("train", "--output_dir", tmp_path)
    save_model_folder(model, tok, args, tmp_path / "model")
    out = tmp_path / "scored"
    assert run.main(["blimp", "--model_dir", str(tmp_path / "model"), "--blimp_dir", str(BLIMP_SAMPLE),
                     "--output_dir", str(out)]) == 0
    summary = json.loads((out / "blimp_results.json").read_text())
    assert set(summary["paradigms"]) == {p.stem for p in BLIMP_SAMPLE.glob("*.jsonl")}
    assert "syntax_semantics" in summary["fields"]
    assert summary["overall"] == pytest.approx(sum(summary["paradigms"].values()) / len(summary["paradigms"]))
    assert (out / "blimp_results.md").read_text().startswith("| group |")
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    assert acc.Scalars("blimp/overall")[0].value == pytest.approx(summary["overall"])
    # The test action scores BLiMP too when --blimp_dir is given.
    from conftest import SAMPLE

    test_out = tmp_path / "tested"
    assert run.main(["test", "--data_dir", str(SAMPLE), "--cache_dir", str(tmp_path / "c"), "--block_size", "32",
                     "--model_dir", str(tmp_path / "model"), "--blimp_dir", str(BLIMP_SAMPLE),
                     "--output_dir", str(test_out)]) == 0
    tested = json.loads((test_out / "blimp_results.json").read_text())
    assert tested["overall"] == pytest.approx(summary["overall"])
    assert (test_out / "test_results.json").is_file()


def test_prefix_space_option_scores_the_spaced_sentence(make_args, tmp_path, monkeypatch):
    model, tok = tiny(make_args, "gpt2", tmp_path)
    paradigms = blimp.load_paradigms(BLIMP_SAMPLE)[:1]
    good, bad = paradigms[0].pairs[0]
    spaced = blimp.causal_scores(model, tok, [" " + good, " " + bad])
    seen = []
    real = blimp.score_sentences
    monkeypatch.setattr(blimp, "score_sentences", lambda m, t, s, *a, **k: seen.extend(s) or real(m, t, s, *a, **k))
    blimp.evaluate_blimp(model, tok, paradigms, prefix_space=True)
    assert seen[:2] == [" " + good, " " + bad]
    assert spaced != blimp.causal_scores(model, tok, [good, bad])  # the space is a token of its own: scores differ
