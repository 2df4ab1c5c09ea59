"""The age-of-acquisition task (evaluation/aoa.py): the readers of the official data files,
the surprisal of a word against a brute-force forward pass, the sigmoid fits, the
correlation, and surprisal.json end to end over three saved checkpoints; against the official
pipeline (when /work/shared/official_pipeline, or $OFFICIAL_PIPELINE, is there), run in its
own process: its AoA run.py writes the same file for the same model and data, its collate
check (`_check_size_aoa`) takes ours with 8005 records a checkpoint, and its reader
(`calculate_results_from_pred._calculate_aoa_results`) scores ours."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from official_tree import OFFICIAL  # evaluation/official.py's rule: OFFICIAL_PIPELINE, else ../shared
from transformers import BertConfig, BertForMaskedLM, GPT2Config, GPT2LMHeadModel

from evaluation import aoa
from evaluation.layout import REVISIONS
from tokenizer import load_tokenizer
from utils import BABYLM_WORD_MARKS, UserError, parse_word_mark

WORDS = np.array(BABYLM_WORD_MARKS, dtype=float)  # 1M ... 100M words: 19 checkpoints
# the official record, keys in the order analyze_steps writes them (AoA_word/evaluation_functions.py)
OFFICIAL_KEYS = ["step", "word_count", "target_word", "context_id", "context", "surprisal"]


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
        "none": [],  # no context: kept (officially too), gives no record
    }, indent=2), encoding="utf-8")
    assert aoa.read_aoa_words(path, min_contexts=2) == {"dog": ["I want to pet the", "look at that"],
                                                        "ice cream": ["can I have", "I like"]}
    # by default every word of two or more characters, as the official run.py (--min_context 0)
    assert aoa.MIN_CONTEXTS == 0
    assert aoa.read_aoa_words(path) == {"dog": ["I want to pet the", "look at that"], "cat": ["the"],
                                        "ice cream": ["can I have", "I like"], "none": []}
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


def test_evaluate_aoa_writes_the_official_surprisal_json(tmp_path, clm_tokenizer, monkeypatch):
    data = tmp_path / "evaluation_data" / aoa.AOA_DATA
    data.parent.mkdir(parents=True)
    # "dog" after an empty context is one token: unscorable; "none" has no context; "x" one letter
    words = {"dog": ["I want to pet the", "look at the", ""], "ball": ["throw me the"],
             "xylophone": ["he played the", "a", "the loud"], "x": ["one letter", "left out"], "none": []}
    data.write_text(json.dumps({w: [{"context": c} for c in cs] for w, cs in words.items()}), encoding="utf-8")
    ages = ",".join(map(str, aoa.CHILD_AGES))
    (data.parent / aoa.CHILD_AOA_FILE).write_text(
        f"word,{ages}\n" + "".join(f"{w},{','.join(f'{min(1, a / m):.2f}' for a in aoa.CHILD_AGES)}\n"
                                   for w, m in (("dog", 40), ("ball", 45), ("xylophone", 90))), encoding="utf-8")
    checkpoints = []
    seen = {"chck_1M": 1_048_576, "chck_2M": 2_001_234, "chck_10M": 10_000_017}  # words actually seen
    for seed, name in enumerate(("chck_10M", "chck_1M", "chck_2M")):
        folder = tmp_path / "run" / name
        tiny_gpt2(clm_tokenizer, seed).save_pretrained(folder)
        clm_tokenizer.save_pretrained(folder)
        checkpoints.append((name, seen[name], folder))
    assert aoa.find_aoa_data(tmp_path / "evaluation_data") == data
    fitted, fit = [], aoa.model_aoas
    monkeypatch.setattr(aoa, "model_aoas", lambda records, chance: fitted.extend(records) or fit(records, chance))

    out = tmp_path / "results" / "run" / "main" / "zero_shot" / "causal" / aoa.AOA_TASK_DIR
    result = aoa.evaluate_aoa(checkpoints, data, out, "cpu")
    text = (out / aoa.SURPRISAL_FILE).read_text(encoding="utf-8")
    saved = json.loads(text)
    assert text == json.dumps(saved, indent=2)  # the official json.dump(indent=2): keys in order, no newline
    assert list(saved) == ["metadata", "results"]
    assert list(saved["metadata"].items()) == [("model_name", str(tmp_path / "run")), ("use_bos_only", False),
                                               ("total_steps", 3), ("completed_steps", 3)]
    records = saved["results"]
    kept = [(w, k, c) for w in ("dog", "ball", "xylophone") for k, c in enumerate(words[w])]
    assert len(records) == 3 * len(kept) == 21  # one per (checkpoint, word, context); none for "none"
    assert [r["step"] for r in records] == [n for n in ("chck_1M", "chck_2M", "chck_10M") for _ in kept]
    nominal = {"chck_1M": 1_000_000, "chck_2M": 2_000_000, "chck_10M": 10_000_000}
    for record, (word, k, context) in zip(records, kept * 3, strict=True):
        assert list(record) == OFFICIAL_KEYS
        assert (record["target_word"], record["context_id"], record["context"]) == (word, k, context)
        # the revision's nominal mark, an int, as the official StepConfig writes it
        assert record["word_count"] == nominal[record["step"]] and type(record["word_count"]) is int
        if context:
            assert isinstance(record["surprisal"], float) and record["surprisal"] > 0
        else:  # unscorable: NaN, as the official code writes it (its forward pass over no token fails)
            assert math.isnan(record["surprisal"])
    assert text.count('"surprisal": NaN') == 3
    # the file's numbers are each checkpoint's surprisals
    model = GPT2LMHeadModel.from_pretrained(tmp_path / "run" / "chck_2M").eval()
    assert [r["surprisal"] for r in records[7:14]] == pytest.approx(
        aoa.word_surprisals(model, clm_tokenizer, [(c, w) for w, _, c in kept]), abs=1e-5, nan_ok=True)
    # our own fit reads the words actually seen
    assert [r["word_count"] for r in fitted] == [seen[r["step"]] for r in records]
    assert result["checkpoints"] == ["chck_1M", "chck_2M", "chck_10M"]
    assert result["words_fitted"] + result["words_failed"] == 3
    assert result["words_correlated"] <= result["words_fitted"]
    assert (result["pearson_r"] is None) == (result["words_correlated"] < 3)

    with pytest.raises(UserError, match="at least 3 checkpoints"):
        aoa.evaluate_aoa(checkpoints[:2], data, tmp_path / "two", "cpu")
    assert not (tmp_path / "two").exists()


# --------------------------------------------------------------------------- the official pipeline


def need_official(*modules: str) -> None:
    """Skip unless the official pipeline is there, and `modules` (its imports) are installed."""
    if not (OFFICIAL / "evaluation_pipeline" / "AoA_word" / "run.py").is_file():
        pytest.skip(f"no official pipeline at {OFFICIAL} (set OFFICIAL_PIPELINE)")
    for module in modules:
        pytest.importorskip(module)


def official(code: str, cwd: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run `code` with the official pipeline's own modules (cwd: its folder or evaluation_pipeline/)
    in a process of its own; skip when the pipeline or a module it imports is missing."""
    need_official()
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    missing = re.search(r"ModuleNotFoundError: No module named '([^']+)'", done.stderr)
    if missing:
        pytest.skip(f"the official code needs {missing.group(1)}, not installed here")
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_the_official_run_writes_the_same_file(tmp_path, clm_tokenizer):
    """The official AoA run.py (a local model folder: every revision loads the same model) and
    evaluate_aoa over the 19 strict-small revisions of that folder write the same surprisal.json,
    record for record, surprisals within float32 rounding."""
    need_official("tqdm")
    model_dir = tmp_path / "model"
    tiny_gpt2(clm_tokenizer, 1).save_pretrained(model_dir)
    clm_tokenizer.save_pretrained(model_dir)
    data = tmp_path / "cdi_childes.json"
    data.write_text(json.dumps({
        "dog": [{"context": "I want to pet the"}, {"context": ""}, {"context": "  look at "}],
        "x": [{"context": "one letter"}], "none": [],
        "xylophone": [{"context": ""}, {"context": "he played the"}],  # several tokens: the first unscored
        "ice cream": [{"context": "un café et"}, {"context": "can I have"}]}), encoding="utf-8")
    official("import sys, runpy; sys.argv = ['run.py', *sys.argv[1:]]; "
             "runpy.run_module('evaluation_pipeline.AoA_word.run', run_name='__main__')", OFFICIAL,
             "--model_name", str(model_dir), "--backend", "causal", "--track_name", "strict-small",
             "--word_path", str(data), "--output_dir", str(tmp_path / "official"))
    theirs = (tmp_path / "official" / "model" / "main" / "zero_shot" / "causal" / "AoA_word" / aoa.SURPRISAL_FILE)
    checkpoints = [(name, parse_word_mark(name) + 1, model_dir) for name in REVISIONS["strict-small"]]
    aoa.evaluate_aoa(checkpoints, data, tmp_path / "ours", "cpu", model_name=str(model_dir))
    ours = (tmp_path / "ours" / aoa.SURPRISAL_FILE).read_text(encoding="utf-8")
    theirs = theirs.read_text(encoding="utf-8")
    number = re.compile(r'("surprisal": )(\S+)')
    assert number.sub(r"\1S", ours) == number.sub(r"\1S", theirs)  # all but the surprisals, byte for byte
    ours_s = [float(m.group(2)) for m in number.finditer(ours)]
    theirs_s = [float(m.group(2)) for m in number.finditer(theirs)]
    assert len(ours_s) == 19 * 7 and sum(map(math.isnan, theirs_s)) == 19  # "dog" after "" each time
    assert ours_s == pytest.approx(theirs_s, abs=1e-4, nan_ok=True)


def fake_scoring(monkeypatch, surprisal) -> None:
    """evaluate_aoa without models: a checkpoint folder's name is its words seen, and every
    context's surprisal there is `surprisal(words seen)`."""
    current = {}
    model = SimpleNamespace(config=SimpleNamespace(vocab_size=600))
    model.to = lambda device: SimpleNamespace(eval=lambda: model)

    def load(folder, option):
        current["words"] = int(Path(folder).name)
        return model, None

    def score(model, tokenizer, pairs, backend, device, tokens_per_batch, share, desc):
        values = [surprisal(current["words"])] * len(pairs)
        return values, [1] * len(pairs), values

    monkeypatch.setattr(aoa, "load_model_and_tokenizer", load)
    monkeypatch.setattr(aoa, "_score", score)


def test_every_word_at_every_checkpoint_passes_the_official_collate_check(tmp_path, monkeypatch):
    """8005 words, one context each: 8005 records at each of the 19 strict-small revisions, which
    the official `_check_size_aoa` (collate_preds.py, AOA_SIZE 8005) takes, and so does ours."""
    from evaluation.submission import aoa_problems

    need_official("pandas", "scipy", "statsmodels")  # what collate_preds.py imports
    data = tmp_path / "cdi_childes.json"
    data.write_text(json.dumps({f"word{i}": [{"context": "look at the"}] for i in range(aoa.AOA_WORDS)}),
                    encoding="utf-8")
    assert aoa.AOA_WORDS == 8005
    fake_scoring(monkeypatch, lambda words: 5.0)  # flat: no fit to try for 8005 words
    checkpoints = [(name, parse_word_mark(name) + 3, tmp_path / str(parse_word_mark(name) + 3))
                   for name in REVISIONS["strict-small"]]
    aoa.evaluate_aoa(checkpoints, data, tmp_path / "out", "cpu", model_name="m")
    path = tmp_path / "out" / aoa.SURPRISAL_FILE
    saved = json.loads(path.read_text(encoding="utf-8"))
    steps = [r["step"] for r in saved["results"]]
    assert {name: steps.count(name) for name in REVISIONS["strict-small"]} == dict.fromkeys(
        REVISIONS["strict-small"], 8005)
    assert aoa_problems(saved, "strict-small") == []
    drop = steps.index("chck_5M")
    short = tmp_path / "short.json"  # one record less at chck_5M: refused by both
    short.write_text(json.dumps({**saved, "results": saved["results"][:drop] + saved["results"][drop + 1:]}))
    assert aoa_problems(json.loads(short.read_text()), "strict-small")
    check = ("import json, sys; from types import SimpleNamespace; from collate_preds import _check_size_aoa; "
             "print([_check_size_aoa(SimpleNamespace(track='strict-small'), json.load(open(p))) "
             "for p in sys.argv[1:]])")
    done = official(check, OFFICIAL / "evaluation_pipeline", str(path), str(short))
    assert done.stdout.strip().splitlines()[-1] == "[True, False]"


def test_the_official_reader_scores_our_file(tmp_path):
    """calculate_results_from_pred's `_calculate_aoa_results` (the official AoAEvaluator) reads our
    surprisal.json, NaN surprisals included, and correlates the words' AoA with the children's."""
    need_official("pandas", "scipy", "statsmodels")
    words = {f"word{i}": ["the", "a"] for i in range(8)}
    records = []
    for name, n in zip(REVISIONS["strict-small"], WORDS, strict=True):
        curves = [learning_curve(6.4 + 0.1 * i, top=20.0, drop=16.0)[list(WORDS).index(n)] for i in range(8)]
        records += aoa.surprisal_records(name, int(n), words, [s for c in curves for s in (c, math.nan)])
    path = tmp_path / aoa.SURPRISAL_FILE
    aoa.write_surprisal_json(path, records, "m")
    cdi = tmp_path / "cdi_human.csv"
    cdi.write_text("word," + ",".join(map(str, aoa.CHILD_AGES)) + "\n" + "".join(
        f"word{i}," + ",".join(f"{1 / (1 + math.exp(-0.8 * (a - 18 - i))):.3f}" for a in aoa.CHILD_AGES) + "\n"
        for i in range(8)), encoding="utf-8")
    code = ("import json, sys; from pathlib import Path; from utils import AoAEvaluator; "
            "from calculate_results_from_pred import _calculate_aoa_results; "
            "data, cdi = json.load(open(sys.argv[1])), Path(sys.argv[2]); "
            "print(json.dumps([_calculate_aoa_results(data, cdi), "
            "AoAEvaluator(cdi).compute_curve_fitness(data)['n_words']]))")
    done = official(code, OFFICIAL / "evaluation_pipeline", str(path), str(cdi))
    assert "Skipping invalid data" not in done.stderr  # what it logs for a null surprisal
    fitness, n = json.loads(done.stdout.strip().splitlines()[-1])
    assert n == 8 and fitness > 0.9  # model AoA rises with child AoA, word by word
