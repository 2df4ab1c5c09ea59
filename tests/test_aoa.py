"""The age-of-acquisition task (evaluation/aoa.py): the readers of the official data files,
the surprisal of a word against a brute-force forward pass, the sigmoid fits, the
correlation, and surprisal.json end to end over three saved checkpoints."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, GPT2Config, GPT2LMHeadModel

from evaluation import aoa
from tokenizer import load_tokenizer
from utils import BABYLM_WORD_MARKS, UserError

WORDS = np.array(BABYLM_WORD_MARKS, dtype=float)  # 1M ... 100M words: 19 checkpoints
OFFICIAL_KEYS = {"step", "word_count", "target_word", "context_id", "context", "surprisal"}


def learning_curve(midpoint: float, top: float = 12.0, drop: float = 8.0, slope: float = 5.0,
                   noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """Surprisal falling from `top` to `top - drop`, halfway at log10 words = `midpoint`."""
    x = np.log10(WORDS + 1)
    curve = top - drop / (1 + np.exp(-slope * (x - midpoint)))
    return curve + np.random.default_rng(seed).normal(0.0, noise, len(x))


# --------------------------------------------------------------------------- fits


@pytest.mark.parametrize("midpoint", [6.6, 7.0, 7.5])
def test_fit_sigmoid_recovers_a_known_midpoint(midpoint):
    fit = aoa.fit_sigmoid(WORDS, learning_curve(midpoint, noise=0.05))
    assert fit is not None
    assert abs(fit.midpoint - midpoint) < 0.05
    assert fit.aoa == fit.midpoint  # no chance level given: the AoA is the midpoint
    assert abs(fit.top - 12.0) < 0.3 and abs(fit.drop - 8.0) < 0.3
    assert np.allclose(fit.surprisal(WORDS), learning_curve(midpoint), atol=0.15)
    # The official AoA: halfway between chance and the lowest surprisal reached. With chance at
    # the curve's top, that is the midpoint again; with chance far above, the curve crosses the
    # threshold earlier (it is already below it) or never.
    official = aoa.fit_sigmoid(WORDS, learning_curve(midpoint, noise=0.05), chance_surprisal=12.0)
    assert official is not None and abs(official.aoa - midpoint) < 0.05
    higher = aoa.fit_sigmoid(WORDS, learning_curve(midpoint), chance_surprisal=14.0)
    assert higher is None or higher.aoa < official.aoa - 0.05


def test_fit_sigmoid_gives_none_when_nothing_is_learnt():
    assert aoa.fit_sigmoid(WORDS, np.full(len(WORDS), 6.4)) is None  # flat
    assert aoa.fit_sigmoid(WORDS, 16.0 - learning_curve(7.0)) is None  # rising: unlearnt
    assert aoa.fit_sigmoid(WORDS[:2], learning_curve(7.0)[:2]) is None  # two points
    # a midpoint far after the last checkpoint: no AoA inside the checkpoints
    assert aoa.fit_sigmoid(WORDS, learning_curve(9.5)) is None
    # NaN surprisals are dropped, the rest still fits
    curve = learning_curve(7.0)
    curve[[0, 5]] = np.nan
    fit = aoa.fit_sigmoid(WORDS, curve)
    assert fit is not None and abs(fit.midpoint - 7.0) < 0.05


def test_child_aoa_is_where_the_share_crosses_one_half():
    ages = np.arange(16, 31)
    assert abs(aoa.child_aoa(ages, 1 / (1 + np.exp(-0.6 * (ages - 23.0)))) - 23.0) < 0.05
    # from 0.2 to 0.9: half the children at 19.5 + logit(3/7) / 0.8, before the curve's midpoint
    crossing = 19.5 + math.log(3 / 4) / 0.8
    assert abs(aoa.child_aoa(ages, 0.2 + 0.7 / (1 + np.exp(-0.8 * (ages - 19.5)))) - crossing) < 0.05
    assert aoa.child_aoa(ages, np.full(len(ages), 0.2)) is None  # never produced by half the children
    assert aoa.child_aoa(ages[:2], [0.1, 0.9]) is None


def test_correlation_equals_numpy_over_the_shared_words():
    rng = np.random.default_rng(3)
    words = [f"w{i}" for i in range(40)]
    child = {w: float(a) for w, a in zip(words[:30], rng.uniform(16, 30, 30), strict=True)}
    model = {w: float(6 + 0.1 * child.get(w, 20) + rng.normal(0, 0.3)) for w in words[10:]}
    r, p, n = aoa.aoa_correlation(model, child)
    shared = words[10:30]
    expected = np.corrcoef([model[w] for w in shared], [child[w] for w in shared])[0, 1]
    assert n == 20
    assert r == pytest.approx(expected, abs=1e-12)
    assert 0 <= p < 0.01
    assert aoa.aoa_correlation({"a": 1.0, "b": 2.0}, {"a": 20.0, "b": 25.0}) == (None, None, 2)


def test_model_aoas_average_the_contexts_of_each_checkpoint():
    words = {"dog": ["c0", "c1"], "ball": ["c0", "c1"]}
    records = []
    for n, s in zip(WORDS, learning_curve(7.2), strict=True):
        # dog's two contexts straddle the curve; ball stays flat
        records += aoa.surprisal_records(f"chck_{int(n)}", int(n), words, [s - 1.0, s + 1.0, 5.0, 5.0])
    fits, failed = aoa.model_aoas(records)
    assert set(fits) == {"dog"} and failed == ["ball"]
    assert abs(fits["dog"].midpoint - 7.2) < 0.01
    assert abs(fits["dog"].top - 12.0) < 0.01  # the mean of the contexts, not either one


# --------------------------------------------------------------------------- data files


def test_reader_keeps_words_as_the_official_loader(tmp_path):
    path = tmp_path / "cdi_childes.json"
    path.write_text(json.dumps({
        "dog": [{"context": "I want to pet the", "count": 3}, {"context": "look at that"}],
        "a": [{"context": "this is"}, {"context": "what"}],  # one character: left out
        "cat": [{"context": "the"}],  # too few contexts
        "ice cream": [{"context": "can I have"}, {"context": "I like"}],
    }, indent=2), encoding="utf-8")
    assert aoa.read_aoa_words(path, min_contexts=2) == {"dog": ["I want to pet the", "look at that"],
                                                        "ice cream": ["can I have", "I like"]}
    assert list(aoa.read_aoa_words(path, min_contexts=1)) == ["dog", "cat", "ice cream"]
    with pytest.raises(UserError, match="no word of two or more characters with 3 or more contexts"):
        aoa.read_aoa_words(path, min_contexts=3)


GOOD = '{\n  "dog": [\n    {"context": "the"},\n    {"context": "a"}\n  ],\n'


@pytest.mark.parametrize("tail, line, words", [
    ('  "cat": [\n    {"context": "the"},\n    {"text": "a"}\n  ]\n}\n', 8, "context 1 of the word 'cat'"),
    ('  "cat": [\n    {"context": "the"}\n    {"context": "a"}\n  ]\n}\n', 8, "not valid JSON"),
    ('  "cat": "the"\n}\n', 6, "JSON str where a list"),
    ('  "dog": []\n}\n', 6, "listed a second time"),
    ('  "cat": [{"context": 3}]\n}\n', 6, "context 0 of the word 'cat'"),
])
def test_reader_errors_name_the_line(tmp_path, tail, line, words):
    path = tmp_path / "cdi_childes.json"
    path.write_text(GOOD + tail, encoding="utf-8")
    with pytest.raises(UserError) as error:
        aoa.read_aoa_words(path, min_contexts=1)
    message = str(error.value)
    assert f"{path}:{line}:" in message and words in message
    assert "\n" not in message


def test_child_table_reader(tmp_path):
    path = tmp_path / "cdi_human.csv"
    rows = ["word,category," + ",".join(map(str, aoa.CHILD_AGES)),
            "dog,animals," + ",".join(f"{a / 40:.3f}" for a in aoa.CHILD_AGES),
            "ball,toys,NA,," + ",".join("0.5" for _ in aoa.CHILD_AGES[2:]),
            "dog,food," + ",".join("0.9" for _ in aoa.CHILD_AGES)]  # listed again: the first row counts
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    table = aoa.read_child_table(path)
    assert table["dog"][16] == pytest.approx(0.4) and len(table["dog"]) == 15
    assert sorted(table["ball"]) == list(aoa.CHILD_AGES[2:])
    rows[2] = "ball,toys,0.2,1.7" + ",0.5" * 13
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(UserError, match=rf"{path}:3: age 17 of 'ball' holds '1.7'"):
        aoa.read_child_table(path)


def test_find_aoa_data(tmp_path):
    assert aoa.find_aoa_data(tmp_path) is None
    target = tmp_path / aoa.AOA_DATA
    target.parent.mkdir(parents=True)
    target.write_text("{}", encoding="utf-8")
    assert aoa.find_aoa_data(tmp_path) == target  # the evaluation_data/ folder
    assert aoa.find_aoa_data(tmp_path / "full_eval") == target  # or its full_eval/


# --------------------------------------------------------------------------- surprisal

PAIRS = [("I want to pet the", "dog"), ("look at the", "xylophone"), ("she", "runs"),
         ("the little girl put the ball on the", "windowsill"), ("", "dog")]


@pytest.fixture(scope="module")
def clm_tokenizer(tok_dirs):
    return load_tokenizer(tok_dirs["clm"])


def tiny_gpt2(tokenizer, seed: int = 0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    # a wide initialisation, so the next-token distributions are far from uniform
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=2, n_head=2,
                        initializer_range=0.3, bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return GPT2LMHeadModel(config).eval()


def brute_force(model, tokenizer, context: str, word: str) -> float:
    """-sum log p of the word's tokens from one full forward pass over the context and the word.
    As the official code, a token holding only the space before the word is not the word's."""
    context_ids = tokenizer(context)["input_ids"]
    tail = tokenizer(" " + word, add_special_tokens=False)["input_ids"]
    ids = tokenizer(context + " " + word)["input_ids"]
    assert ids == context_ids + tail  # the word's tokens are the tail of the text
    first = len(context_ids)
    if tokenizer.decode(tail[:1]) == " ":
        first, tail = first + 1, tail[1:]
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), dim=-1)
    return -sum(logp[first + j - 1, t].item() for j, t in enumerate(tail))


def test_surprisal_equals_a_brute_force_forward_pass(clm_tokenizer):
    model = tiny_gpt2(clm_tokenizer)
    tails = [clm_tokenizer.convert_ids_to_tokens(clm_tokenizer(" " + w, add_special_tokens=False)["input_ids"])
             for _, w in PAIRS]
    assert max(map(len, tails)) >= 3  # words of several tokens, summed
    assert any(t[0] == "Ġ" for t in tails)  # and one after a lone space token, which is not scored
    expected = [brute_force(model, clm_tokenizer, c, w) for c, w in PAIRS[:-1]]
    alone = [aoa.word_surprisals(model, clm_tokenizer, [pair])[0] for pair in PAIRS[:-1]]
    assert alone == pytest.approx(expected, abs=1e-4)
    assert len(set(np.round(expected, 3))) == len(expected)  # distinct values: a mix-up would show
    # batched: padded batches of a few sequences, with and without shared prefixes
    for share in (True, False):
        batched = aoa.word_surprisals(model, clm_tokenizer, PAIRS, tokens_per_batch=24, share_prefixes=share)
        assert batched[:-1] == pytest.approx(alone, abs=1e-5)
        # nothing predicts the first token of a text: a word with no context has no surprisal
        assert math.isnan(batched[-1])


def test_masked_models(tok_dirs):
    tokenizer = load_tokenizer(tok_dirs["mlm"])
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                                       num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                                       initializer_range=0.3, pad_token_id=tokenizer.pad_token_id)).eval()
    with pytest.raises(UserError, match="masked LM, not causal"):
        aoa.word_surprisals(model, tokenizer, PAIRS[:1], backend="causal")
    context, word = PAIRS[3]
    ids = tokenizer(context + " " + word)["input_ids"]  # <s> context word </s>
    tail = tokenizer(" " + word, add_special_tokens=False)["input_ids"]
    n = len(tail) - (tokenizer.decode(tail[:1]) == " ")  # a lone space token is not the word's
    assert n >= 3
    expected = 0.0
    for i in range(len(ids) - 1 - n, len(ids) - 1):  # each token of the word masked alone, read in place
        masked = list(ids)
        masked[i] = tokenizer.mask_token_id
        with torch.no_grad():
            expected -= torch.log_softmax(model(torch.tensor([masked])).logits[0, i], dim=-1)[ids[i]].item()
    assert aoa.word_surprisals(model, tokenizer, [(context, word)])[0] == pytest.approx(expected, abs=1e-4)


# --------------------------------------------------------------------------- end to end


def test_evaluate_aoa_writes_the_official_surprisal_json(tmp_path, clm_tokenizer):
    data = tmp_path / "evaluation_data" / aoa.AOA_DATA
    data.parent.mkdir(parents=True)
    words = {"dog": ["I want to pet the", "look at the"], "ball": ["throw me the", "she kicked the"],
             "xylophone": ["he played the", "a", "the loud"], "x": ["one letter", "left out"]}
    data.write_text(json.dumps({w: [{"context": c} for c in cs] for w, cs in words.items()}), encoding="utf-8")
    ages = ",".join(map(str, aoa.CHILD_AGES))
    (data.parent / aoa.CHILD_AOA_FILE).write_text(
        f"word,{ages}\n" + "".join(f"{w},{','.join(f'{min(1, a / m):.2f}' for a in aoa.CHILD_AGES)}\n"
                                   for w, m in (("dog", 40), ("ball", 45), ("xylophone", 90))), encoding="utf-8")
    checkpoints = []
    for seed, (name, seen) in enumerate((("chck_10M", 10_000_000), ("chck_1M", 1_000_000), ("chck_2M", 2_000_000))):
        folder = tmp_path / "run" / name
        tiny_gpt2(clm_tokenizer, seed).save_pretrained(folder)
        clm_tokenizer.save_pretrained(folder)
        checkpoints.append((name, seen, folder))
    assert aoa.find_aoa_data(tmp_path / "evaluation_data") == data

    out = tmp_path / "results" / "run" / "main" / "zero_shot" / "causal" / aoa.AOA_TASK_DIR
    result = aoa.evaluate_aoa(checkpoints, data, out, "cpu", min_contexts=2)
    saved = json.loads((out / aoa.SURPRISAL_FILE).read_text(encoding="utf-8"))
    assert saved["metadata"] == {"model_name": "run", "use_bos_only": False, "total_steps": 3, "completed_steps": 3}
    records = saved["results"]
    kept = [(w, k, c) for w in ("dog", "ball", "xylophone") for k, c in enumerate(words[w])]
    assert len(records) == 3 * len(kept) == 21  # one per (checkpoint, word, context)
    assert [r["step"] for r in records] == [n for n in ("chck_1M", "chck_2M", "chck_10M") for _ in kept]
    for record, (word, k, context) in zip(records, kept * 3, strict=True):
        assert set(record) == OFFICIAL_KEYS
        assert (record["target_word"], record["context_id"], record["context"]) == (word, k, context)
        assert record["word_count"] == {"chck_1M": 1_000_000, "chck_2M": 2_000_000, "chck_10M": 10_000_000}[
            record["step"]]
        assert isinstance(record["surprisal"], float) and record["surprisal"] > 0
    # the file's numbers are each checkpoint's surprisals
    model = GPT2LMHeadModel.from_pretrained(tmp_path / "run" / "chck_2M").eval()
    pairs = [(c, w) for w, _, c in kept]
    assert [r["surprisal"] for r in records[7:14]] == pytest.approx(
        aoa.word_surprisals(model, clm_tokenizer, pairs), abs=1e-5)
    assert result["checkpoints"] == ["chck_1M", "chck_2M", "chck_10M"]
    assert result["words_fitted"] + result["words_failed"] == 3
    assert result["words_correlated"] <= result["words_fitted"]
    assert (result["pearson_r"] is None) == (result["words_correlated"] < 3)

    with pytest.raises(UserError, match="at least 3 checkpoints"):
        aoa.evaluate_aoa(checkpoints[:2], data, tmp_path / "two", "cpu", min_contexts=2)
    assert not (tmp_path / "two").exists()
