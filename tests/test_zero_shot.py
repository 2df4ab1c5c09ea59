"""The official zero-shot suite (evaluation/tasks.py, scoring.py, zero_shot.py, reading.py):
each task's candidates against hand-worked items, each backend against a brute-force scorer
on a tiny model, ties under both conventions, the reading regressions, the CLI, and, when
../shared is there, exact parity with the official pipeline's own outputs."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import ROOT
from scipy.stats import spearmanr
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
)

from evaluation import reading
from evaluation.scoring import (
    final_hidden_at,
    hidden_states,
    make_plans,
    pad_batch,
    pad_id_of,
    plain_scores,
    prefix_tree_rows,
    score_plans,
)
from evaluation.tasks import find_tasks, read_task
from evaluation.zero_shot import choose, count_ties, evaluate_model, summary_table, task_scores
from utils import UserError

SHARED = ROOT.parent / "shared" / "data"
REFERENCE = SHARED / "official_reference"
SAMPLE_FAST = ROOT / "data" / "sample_eval" / "fast_eval"


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# --------------------------------------------------------------------------- candidates


def test_each_task_builds_the_official_candidates(tmp_path):
    write_jsonl(tmp_path / "blimp_fast" / "a.jsonl", [
        {"sentence_good": "Cats run.", "sentence_bad": "Cats runs.", "field": "syntax_semantics",
         "linguistics_term": "agr", "UID": "agr_1"}])
    write_jsonl(tmp_path / "supplement_fast" / "turn_taking.jsonl", [
        {"sentence_good": "A: Hi?\nB: Hi.", "sentence_bad": "A: Hi?\nB: Bye."}])
    write_jsonl(tmp_path / "ewok_fast" / "social.jsonl", [
        {"Domain": "social", "ContextType": "direct", "ContextDiff": "antonym", "TargetDiff": "concept swap",
         "Context1": "Ann is kind.", "Context2": "Ann is mean.", "Target1": "Ann helps.", "Target2": "Ann hurts."}])
    write_jsonl(tmp_path / "entity_tracking_fast" / "regular.jsonl", [
        {"numops": 2, "input_prefix": "Box 1 contains ", "options": ["the hat.", "nothing.", "the cup."]}])
    write_jsonl(tmp_path / "wug_adj_nominalization" / "w.jsonl", [{"sentences": "x blickity\tx blickness",
                                                                    "ratio": 0.25}])
    write_jsonl(tmp_path / "comps" / "comps_base.jsonl", [
        {"prefix_acceptable": "A dog", "prefix_unacceptable": "A box", "property_phrase": "can bark."}])
    found = {(name, folder.name) for name, folder in find_tasks(tmp_path)}
    assert found == {("blimp", "blimp_fast"), ("blimp", "supplement_fast"), ("ewok", "ewok_fast"),
                     ("entity_tracking", "entity_tracking_fast"), ("wug_adj", "wug_adj_nominalization"),
                     ("comps", "comps")}
    blimp = read_task("blimp", tmp_path / "blimp_fast").items[0]
    assert (blimp.candidates, blimp.completions) == (["Cats run.", "Cats runs."], ["Cats run.", "Cats runs."])
    assert blimp.groups == {"field": "syntax/semantics", "UID": "agr_1", "linguistics_term": "agr"}
    supplement = read_task("blimp", tmp_path / "supplement_fast").items[0]
    assert supplement.groups == {"field": "supplement", "UID": "turn_taking", "linguistics_term": "supplement"}
    ewok = read_task("ewok", tmp_path / "ewok_fast").items[0]
    assert ewok.candidates == ["Ann is kind. Ann helps.", "Ann is kind. Ann hurts."]  # Context1 for both
    assert ewok.completions == [" Ann helps.", " Ann hurts."]
    assert ewok.groups == {"UID": "social", "context_type": "direct", "context_contrast": "antonym",
                           "target_contrast": "concept swap"}
    entity = read_task("entity_tracking", tmp_path / "entity_tracking_fast").items[0]
    assert entity.candidates == ["Box 1 contains the hat.", "Box 1 contains nothing.", "Box 1 contains the cup."]
    assert entity.completions == ["the hat.", "nothing.", "the cup."] and entity.uid == "regular_2_ops"
    wug = read_task("wug_adj", tmp_path / "wug_adj_nominalization").items[0]
    assert (wug.candidates, wug.ratio, wug.uid) == (["x blickity", "x blickness"], 0.25, "wug_adj")
    comps = read_task("comps", tmp_path / "comps").items[0]  # decode_comps: joined with one space, UID from the file
    assert comps.candidates == ["A dog can bark.", "A box can bark."] and comps.completions == ["can bark."] * 2
    assert comps.uid == "base"
    write_jsonl(tmp_path / "comps" / "comps_extra.jsonl", [
        {"prefix_acceptable": "A cat", "prefix_unacceptable": "A pen", "property_phrase": "can purr."}])
    with pytest.raises(UserError, match=r"comps_extra.jsonl:1: a COMPS file must be named comps_base.jsonl"):
        read_task("comps", tmp_path / "comps")


@pytest.mark.parametrize("line, message", [
    ("{not json", "is not valid JSON"),
    ('{"sentence_good": "a"}', "sentence_bad"),
    ('{"sentences": "only one", "ratio": 0.5}', "two or more tab-separated"),
])
def test_a_bad_line_is_named(tmp_path, line, message):
    task = "wug_adj" if "sentences" in line else "blimp"
    path = tmp_path / "set" / "x.jsonl"
    path.parent.mkdir()
    path.write_text('{"sentence_good": "a.", "sentence_bad": "b.", "sentences": "a\\tb", "ratio": 1}\n' + line + "\n")
    with pytest.raises(UserError, match=rf"x.jsonl:2 .*{message}"):
        read_task(task, tmp_path / "set")


# --------------------------------------------------------------------------- scoring against brute force


def tiny_models(tok_dirs) -> dict:
    torch.manual_seed(0)
    clm = AutoTokenizer.from_pretrained(tok_dirs["clm"])
    mlm = AutoTokenizer.from_pretrained(tok_dirs["mlm"])
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=len(clm), n_embd=32, n_layer=2, n_head=2, n_positions=64,
                                      bos_token_id=clm.bos_token_id, eos_token_id=clm.eos_token_id)).eval()
    bert = BertForMaskedLM(BertConfig(vocab_size=len(mlm), hidden_size=32, num_hidden_layers=2,
                                      num_attention_heads=2, intermediate_size=64,
                                      max_position_embeddings=64)).eval()
    from hybrid_model import GPTBertConfig, GPTBertForCausalLM

    hybrid = GPTBertForCausalLM(GPTBertConfig(vocab_size=len(mlm), hidden_size=32, num_hidden_layers=2,
                                              num_attention_heads=2, max_position_embeddings=64,
                                              mask_token_id=mlm.mask_token_id)).eval()
    return {"causal": (gpt2, clm), "mlm": (bert, mlm), "mntp": (hybrid, mlm)}


# Some share a prefix (computed once by the causal scorer's prefix tree), one is repeated.
PAIRS = [("The dog ran home.", "The dog ran home."), ("The cat sat. The cat slept.", " The cat slept."),
         ("Box 1 contains the hat.", "the hat."), ("Look at these badgers.", "Look at these badgers."),
         ("Box 1 contains the cup.", "the cup."), ("The dog ran away.", "The dog ran away."),
         ("Box 1 contains the hat.", "hat.")]


@torch.no_grad()
def brute_force(model, tokenizer, sentence: str, completion: str, backend: str, convention: str,
                variant: str) -> float:
    """One token at a time, one unpadded forward pass each, the whole output through the head."""
    strict_causal = backend == "causal" and convention == "strict"
    enc = tokenizer(sentence, add_special_tokens=not strict_causal, return_offsets_mapping=True)
    ids, words = enc["input_ids"], enc.word_ids()
    start = len(sentence) - len(completion)
    scored = [i for i, (a, b) in enumerate(enc["offset_mapping"]) if b > start and words[i] is not None]
    if strict_causal:
        ids, scored = [tokenizer.eos_token_id] + ids, [i + 1 for i in scored]
        words = [None] + words
    total = 0.0
    for i in scored:
        if backend == "causal":
            if i == 0:
                continue
            logits = model(torch.tensor([ids[:i]])).logits[0, -1]
        else:
            masked = list(ids)
            masked[i] = tokenizer.mask_token_id
            if convention == "strict" and variant == "within_word_l2r":
                masked = [tokenizer.mask_token_id if j > i and j in scored and words[j] == words[i] else t
                          for j, t in enumerate(masked)]
            if backend == "mlm":
                logits = model(torch.tensor([masked])).logits[0, i]
            else:
                logits = model(torch.tensor([masked]), bidirectional=True).logits[0, i - 1]
        total += torch.log_softmax(logits.double(), -1)[ids[i]].item()
    return total


@pytest.mark.parametrize("backend", ["causal", "mlm", "mntp"])
@pytest.mark.parametrize("convention", ["official", "strict"])
def test_backends_match_a_brute_force_scorer(tok_dirs, backend, convention):
    model, tokenizer = tiny_models(tok_dirs)[backend]
    sentences, completions = [s for s, _ in PAIRS], [c for _, c in PAIRS]
    plans = make_plans(tokenizer, sentences, completions, backend, convention)
    pad, mask = pad_id_of(tokenizer, backend), tokenizer.mask_token_id
    # A small token budget and short tree rows, so that batches, rows and padding all come into play.
    fast = score_plans(model, plans, backend, pad, mask, tokens_per_batch=40, row_tokens=12)
    flat = score_plans(model, plans, backend, pad, mask, tokens_per_batch=40, share_prefixes=False)
    plain = plain_scores(model, [plans], backend, pad, mask, batch_size=3)[0]
    slow = [brute_force(model, tokenizer, s, c, backend, convention, "within_word_l2r") for s, c in PAIRS]
    assert all(v < 0 for v in slow)
    for scores in (fast, flat, plain):
        np.testing.assert_allclose(scores, slow, rtol=1e-4)


def test_prefix_tree_rows_share_prefixes_and_split_rows():
    seqs = [(1, 2, 3), (1, 2, 4), (1, 5), (1, 2, 3), (6,)]
    rows, where = prefix_tree_rows(seqs, row_tokens=100)
    # Worked by hand: the distinct sequences in order (1,2,3) (1,2,4) (1,5) (6,) make one tree of 6 nodes.
    assert [(r.tokens, r.parents, r.depths) for r in rows] == [([1, 2, 3, 4, 5, 6], [-1, 0, 1, 1, 0, -1],
                                                                 [0, 1, 2, 2, 1, 0])]
    assert where[(1, 2, 4)] == (0, [0, 1, 3]) and where[(6,)] == (0, [5])
    allowed = rows[0].allowed(7)
    assert allowed[3].tolist() == [True, True, False, True, False, False, False]  # itself and its ancestors
    assert allowed[6].tolist() == [False] * 6 + [True]  # padding sees only itself
    rows, where = prefix_tree_rows(seqs, row_tokens=4)
    # (1,5) would make 5 nodes: a new row repeats its prefix; (6,) still fits there.
    assert [r.tokens for r in rows] == [[1, 2, 3, 4], [1, 5, 6]] and where[(1, 5)] == (1, [0, 1])


@pytest.mark.parametrize("family, kernel", [("gpt2", "eager"), ("gpt2", "sdpa"), ("llama", "eager"),
                                            ("llama", "sdpa"), ("gpt_bert", "sdpa")])
def test_the_prefix_tree_scores_every_causal_family_like_a_brute_force_scorer(tok_dirs, family, kernel):
    _, clm = tiny_models(tok_dirs)["causal"]
    torch.manual_seed(1)
    if family == "gpt2":
        model = tiny_models(tok_dirs)["causal"][0]
    elif family == "llama":
        model = LlamaForCausalLM(LlamaConfig(vocab_size=len(clm), hidden_size=32, intermediate_size=64,
                                             num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                                             max_position_embeddings=64)).eval()
    else:  # the hybrid under the causal backend
        from hybrid_model import GPTBertConfig, GPTBertForCausalLM

        model = GPTBertForCausalLM(GPTBertConfig(vocab_size=len(clm), hidden_size=32, num_hidden_layers=2,
                                                 num_attention_heads=2, max_position_embeddings=64)).eval()
    if family != "gpt_bert":  # the kernels the CLI offers (--attn_implementation); the hybrid has its own
        model.set_attn_implementation(kernel)
    sentences, completions = [s for s, _ in PAIRS], [c for _, c in PAIRS]
    plans = make_plans(clm, sentences, completions, "causal", "strict")
    distinct = {p.ids for p in plans}
    one_row, _ = prefix_tree_rows(list(distinct), 100)
    assert len(one_row) == 1 and len(one_row[0].tokens) < sum(map(len, distinct))  # prefixes are shared
    assert len(prefix_tree_rows(list(distinct), 12)[0]) > 1  # rows of 12 nodes split them
    fast = score_plans(model, plans, "causal", pad_id_of(clm, "causal"), tokens_per_batch=30, row_tokens=12)
    slow = [brute_force(model, clm, s, c, "causal", "strict", "token") for s, c in PAIRS]
    np.testing.assert_allclose(fast, slow, rtol=1e-4)
    assert fast[2] != fast[6] and fast[0] != fast[5]  # a shared prefix, different scores


@pytest.mark.parametrize("backend", ["mlm", "mntp"])
def test_the_last_layer_run_at_the_reads_alone_equals_the_whole_pass(tok_dirs, backend):
    model, tokenizer = tiny_models(tok_dirs)[backend]
    ids, mask = pad_batch([tokenizer(s)["input_ids"] for s, _ in PAIRS], pad_id_of(tokenizer, backend))
    assert not bool(mask.all())  # padding in play
    rows, positions = torch.tensor([0, 0, 3, 6, 2, 1]), torch.tensor([1, 4, 2, 0, 3, 9])
    single = mask[1].sum()  # and one row alone, with no padding (no mask at all)
    # and masked copies of one sentence, one read each (BERT: the first layer shared across them)
    copies = ids[:1].repeat(3, 1)
    copies[torch.arange(3), torch.tensor([1, 2, 4])] = tokenizer.mask_token_id
    for bidirectional in ((True, False) if backend == "mntp" else (True,)):
        for batch, batch_mask, r, at in ((ids, mask, rows, positions),
                                         (ids[1:2, :single], mask[1:2, :single], torch.tensor([0, 0]),
                                          torch.tensor([2, 9])),
                                         (copies, mask[:1].repeat(3, 1), torch.arange(3), torch.tensor([1, 2, 4]))):
            whole = hidden_states(model, batch, batch_mask, bidirectional)[r, at]
            torch.testing.assert_close(final_hidden_at(model, batch, batch_mask, bidirectional, r, at), whole,
                                       rtol=1e-5, atol=1e-5)


def test_official_causal_never_scores_token_0_and_strict_scores_it(tok_dirs):
    _, tokenizer = tiny_models(tok_dirs)["causal"]
    ids = tokenizer("The dog ran home.", add_special_tokens=False)["input_ids"]
    official, strict = (make_plans(tokenizer, ["The dog ran home."], ["The dog ran home."], "causal", c)[0]
                        for c in ("official", "strict"))
    assert [target for _, _, target in official.reads] == ids[1:]  # nothing predicts the first token
    assert [target for _, _, target in strict.reads] == ids  # conditioned on BOS, the first word counts
    assert strict.ids[0] == tokenizer.eos_token_id  # this tokenizer's BOS is its EOS


def test_ewok_scores_only_the_target(tok_dirs):
    _, tokenizer = tiny_models(tok_dirs)["mlm"]
    sentence, completion = "The cat sat. The cat slept.", " The cat slept."
    # Worked by hand: <s> The Ġcat Ġs at . ĠThe Ġcat Ġsle pt . </s>; the completion starts at character 12,
    # where 'ĠThe' (12, 16) begins, so positions 6-10 are scored and neither special token is.
    ids = tokenizer(sentence)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids)[6] == "ĠThe" and len(ids) == 12
    plan = make_plans(tokenizer, [sentence], [completion], "mlm", "official")[0]
    assert [pos for _, pos, _ in plan.reads] == [6, 7, 8, 9, 10]
    for seq, (_, pos, token) in zip(plan.inputs(tokenizer.mask_token_id), plan.reads, strict=True):
        assert [i for i, t in enumerate(seq) if t == tokenizer.mask_token_id] == [pos]  # one mask, at the token
        assert token == ids[pos]
    strict = make_plans(tokenizer, [sentence], [completion], "mlm", "strict")[0]
    masks = [list(masked) for masked, _, _ in strict.reads]
    assert masks[2] == [8, 9]  # 'Ġsle' masked with the rest of its word 'pt' (within_word_l2r)
    mntp = make_plans(tokenizer, [sentence], [completion], "mntp", "official")[0]
    assert [pos for _, pos, _ in mntp.reads] == [5, 6, 7, 8, 9]  # token i read at i-1


# --------------------------------------------------------------------------- ties and task scores


def test_ties_go_to_the_first_candidate_only_under_official():
    assert choose([-3.0, -3.0], "official") == (0, True)
    assert choose([-3.0, -3.0], "strict") == (1, False)  # wrong, and its prediction says which candidate won
    assert choose([-4.0, -3.0, -3.0], "official") == (1, False)
    assert choose([-2.0, -3.0, -5.0], "strict") == (0, True)


def test_identical_candidates_tie_under_both_conventions(tmp_path, tok_dirs):
    model, tokenizer = tiny_models(tok_dirs)["causal"]
    write_jsonl(tmp_path / "blimp_fast" / "same.jsonl", [
        {"sentence_good": "The dog ran.", "sentence_bad": "The dog ran.", "field": "syntax",
         "linguistics_term": "t", "UID": "same"}] * 3)
    summary = evaluate_model(model, tokenizer, tmp_path, tmp_path / "out", "m", "causal",
                             ["official", "strict"])
    assert summary["official"]["blimp/blimp_fast"]["score"] == 100.0
    assert summary["strict"]["blimp/blimp_fast"]["score"] == 0.0
    # The collate step's fast scores: the share right per subtask.
    assert summary["official"]["blimp/blimp_fast"]["subtasks"] == {"same": 1.0}
    assert summary["strict"]["blimp/blimp_fast"]["subtasks"] == {"same": 0.0}
    report = (tmp_path / "out/m/main/zero_shot_strict/causal/blimp/blimp_fast/best_temperature_report.txt").read_text()
    assert "### UID ACCURACY\nsame: 0.00" in report and report.rstrip().endswith("CONVENTION: strict")
    preds = json.loads((tmp_path / "out/m/main/zero_shot/causal/blimp/blimp_fast/predictions.json").read_text())
    assert [p["id"] for p in preds["same"]["predictions"]] == ["same_0", "same_1", "same_2"]
    # Every tie is counted, under both conventions, in the summary and its table.
    assert summary["official"]["blimp/blimp_fast"]["ties"] == summary["strict"]["blimp/blimp_fast"]["ties"] == 3
    row = summary_table(summary, "causal").splitlines()[2]
    assert row == "| blimp/blimp_fast | accuracy | 3 | 100.00 | 0.00 | 3 | 3 |"


def test_ties_are_counted_against_the_best_other_candidate():
    from evaluation.tasks import Item, Task

    items = [Item(["a", "b", "c"], ["a", "b", "c"], {"UID": "u"})] * 4
    scores = [[-1.0, -1.0, -2.0], [-1.0, -2.0, -1.0], [-1.0, -0.5, -1.0], [-1.0, -2.0, -3.0]]
    assert count_ties(scores) == 2  # a tie with a lower candidate is no tie; one beaten outright neither
    assert task_scores(Task("blimp", Path("x"), items), scores, "strict")["ties"] == 2


def test_entity_tracking_averages_operation_counts_then_splits():
    from evaluation.tasks import Item, Task

    items = [Item(["a", "b"], ["a", "b"], {"UID": uid}) for uid in
             ["regular_0_ops", "regular_0_ops", "regular_1_ops", "ambiref_0_ops"]]
    scores = [[0.0, -1.0], [-1.0, 0.0], [0.0, -1.0], [-1.0, 0.0]]
    result = task_scores(Task("entity_tracking", Path("x"), items), scores, "official")
    assert result["groups"]["UID"]["regular"] == 75.0  # mean of 50 (0 ops) and 100 (1 op), not 2/3
    assert result["average"] == (75.0 + 0.0) / 2


def test_wug_is_spearman_of_the_first_candidates_share(tok_dirs):
    from scipy.stats import spearmanr

    from evaluation.tasks import Item, Task

    items = [Item(["a", "b"], ["a", "b"], {"UID": "wug_adj"}, ratio) for ratio in (0.1, 0.5, 0.9, 0.3)]
    scores = [[-1.0, -2.0], [-3.0, -1.0], [-1.0, -1.5], [-2.0, -2.0]]
    result = task_scores(Task("wug_adj", Path("x"), items), scores, "official")
    shares = [1 / (1 + math.exp(b - a)) for a, b in scores]
    assert result["average"] == pytest.approx(spearmanr(shares, [0.1, 0.5, 0.9, 0.3])[0])
    assert result["predictions"]["wug_adj"]["predictions"][1]["pred"] == "b"


# --------------------------------------------------------------------------- reading


def test_reading_regression_gain(tmp_path):
    rng = np.random.default_rng(0)
    n = 300
    df = pd.DataFrame({c: rng.normal(size=n) for c in ("Subtlex_log10", "length", "context_length", "prev_length")})
    df["pred"], df["prev_pred"] = rng.normal(size=n), rng.normal(size=n)
    base = df["Subtlex_log10"] + 0.5 * df["length"] + rng.normal(scale=0.5, size=n)
    df["useful"] = base + 2 * df["pred"]
    df["useless"] = base
    gain = reading._ols(df, "useful", reading.BASELINE, True)["R2"]
    without = reading._ols(df, "useful", reading.BASELINE, False)["R2"]
    assert gain > 0.9 and without < 0.5  # surprisal explains what the baseline cannot
    # R2 of the full fit equals the squared correlation of y with its least-squares fit
    x = np.column_stack([np.ones(n), df["Subtlex_log10"], df["length"], df["context_length"],
                         df["Subtlex_log10"] * df["length"], df["Subtlex_log10"] * df["context_length"],
                         df["length"] * df["context_length"], df["pred"]])
    fitted = x @ np.linalg.lstsq(x, df["useful"], rcond=None)[0]
    assert gain == pytest.approx(np.corrcoef(fitted, df["useful"])[0, 1] ** 2)
    noise = reading._ols(df, "useless", reading.BASELINE, True)
    assert abs(noise["t"]) < 3 and noise["p"] > 0.001


def test_reading_surprisal_is_minus_log_p_of_the_next_token(tok_dirs):
    model, tokenizer = tiny_models(tok_dirs)["causal"]
    word = "dog"
    target = tokenizer(word, add_special_tokens=False)["input_ids"]
    [value] = reading.surprisals(model, tokenizer, [("The big", word)], "causal")
    expected = 0.0
    context = "The big"
    for token in target:  # the official way: each later piece after the decoded pieces before it
        ids = tokenizer(context)["input_ids"]
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0, -1].double(), -1)
        expected -= logp[tokenizer(tokenizer.decode(token), add_special_tokens=False)["input_ids"][0]].item()
        context += tokenizer.decode(token)
    assert value == pytest.approx(expected, rel=1e-5)


# --------------------------------------------------------------------------- the CLI


@pytest.mark.skipif(not SAMPLE_FAST.is_dir(), reason="data/sample_eval/fast_eval not generated")
def test_evaluate_action_writes_the_official_layout(tmp_path, make_args):
    from conftest import run_loop

    args = make_args("train", "--output_dir", tmp_path / "run", "--torch_training", "--max_steps", "2",
                     "--model_type", "gpt2", "--max_position_embeddings", "256")  # entity tracking is long
    run_loop("pytorch", args)
    model_dir = tmp_path / "run" / "best_model"
    # The folder that holds fast_eval/ (as the official evaluation_data/ does), with --fast.
    out = subprocess.run([sys.executable, "run.py", "evaluate", "--model_dir", str(model_dir), "--eval_dir",
                          str(SAMPLE_FAST.parent), "--fast"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    results = tmp_path / "run" / "results" / "run" / "main"  # <run>/results/<run name>/main
    summary = json.loads((results / "zero_shot_summary_causal.json").read_text())
    assert summary["backend"] == "causal" and summary["eval_dir"] == str(SAMPLE_FAST)
    for convention, top in (("official", "zero_shot"), ("strict", "zero_shot_strict")):
        keys = set(summary["results"][convention])
        assert {"blimp/blimp_fast", "ewok/ewok_fast", "reading/eye_tracking"} <= keys
        assert (results / top / "causal" / "blimp" / "blimp_fast" / "predictions.json").is_file()
        assert (results / top / "causal" / "reading" / "report.txt").read_text().startswith("EYE TRACKING SCORE")
    assert "| blimp/blimp_fast |" in (results / "zero_shot_summary_causal.md").read_text()


def test_a_candidate_longer_than_the_model_is_a_clear_error(tmp_path, tok_dirs):
    model, tokenizer = tiny_models(tok_dirs)["causal"]  # 64 positions
    write_jsonl(tmp_path / "entity_tracking_fast" / "regular.jsonl", [
        {"numops": 0, "input_prefix": "Box 1 contains the hat. " * 30, "options": ["the hat.", "nothing."]}])
    with pytest.raises(UserError, match="tokens but the model has 64 positions"):
        evaluate_model(model, tokenizer, tmp_path, tmp_path / "out", "m", "causal", ["official"])


def test_evaluate_action_errors_in_one_line(tmp_path):
    out = subprocess.run([sys.executable, "run.py", "evaluate", "--model_dir", str(tmp_path), "--eval_dir",
                          str(tmp_path / "nowhere")], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1
    assert "--eval_dir" in out.stderr and "is not a folder" in out.stderr  # checked before the model loads
    out = subprocess.run([sys.executable, "run.py", "evaluate", "--model_dir", str(tmp_path), "--eval_dir",
                          str(SAMPLE_FAST.parent)], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1
    assert "has no full_eval/: pass --fast" in out.stderr
    out = subprocess.run([sys.executable, "run.py", "evaluate", "--model_dir", str(tmp_path), "--eval_dir",
                          str(tmp_path), "--fast"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 1 and "holds neither full_eval/ nor fast_eval/" in out.stderr  # not silently ignored
    out = subprocess.run([sys.executable, "run.py", "evaluate", "--model_dir", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 2 and "needs --eval_dir" in out.stderr


# --------------------------------------------------------------------------- parity with the official pipeline


@pytest.mark.skipif(not REFERENCE.is_dir(), reason="../shared/data/official_reference is absent")
@pytest.mark.parametrize("name, backend", [("gpt2", "causal"), ("bert", "mlm")])
def test_parity_with_the_official_pipeline(tmp_path, name, backend):
    """Every fast-set item's choice and every score as the official pipeline's own outputs."""
    from custom_models import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(REFERENCE / "models" / name)
    # BERT's entity tracking is 126k masked copies of ~120 tokens (15-20 minutes on 2 shared cores):
    # only with BABYLM_FULL_PARITY=1 (the same comparison by a script, not this test, matched 3152 of 3152).
    full = name != "bert" or os.environ.get("BABYLM_FULL_PARITY") == "1"
    tasks = None if full else ["blimp", "ewok", "wug_adj", "reading"]
    evaluate_model(model, tokenizer, SHARED / "eval_fast", tmp_path, name, backend,
                   ["official"], tasks=tasks)
    ours = tmp_path / name / "main" / "zero_shot" / backend
    theirs = REFERENCE / "official_outputs" / name / "main" / "zero_shot" / backend
    compared = 0
    for ref in sorted(theirs.glob("*/*/predictions.json")):
        if tasks is not None and ref.parts[-3] not in tasks:
            continue
        mine = json.loads((ours / ref.relative_to(theirs)).read_text())
        for uid, block in json.loads(ref.read_text()).items():
            chosen = {p["id"]: p["pred"] for p in mine[uid]["predictions"]}
            for p in block["predictions"]:
                assert chosen[p["id"]] == p["pred"], (ref, p["id"])
                compared += 1
        report = "best_temperature_report.txt"
        mine_report = parse_report((ours / ref.relative_to(theirs)).parent / report)
        assert mine_report == pytest.approx(parse_report(ref.parent / report), abs=0.01)
    assert compared == (18102 if full else 18102 - 3152)
    for fits in ("predictive_power.jsonl", "predictive_power_spillover.jsonl"):
        for a, b in zip((theirs / "reading" / fits).read_text().splitlines(),
                        (ours / "reading" / fits).read_text().splitlines(), strict=True):
            a, b = json.loads(a), json.loads(b)
            assert b["Change in R2 from baseline"] == pytest.approx(a["Change in R2 from baseline"], rel=1e-3)
    assert (ours / "reading" / "report.txt").read_text() == (theirs / "reading" / "report.txt").read_text()


def parse_report(path: Path) -> dict[str, float]:
    """The numbers of a best_temperature_report.txt, keyed by section and name."""
    values, section = {}, ""
    for line in path.read_text().splitlines():
        if line.startswith(("TEMPERATURE", "CONVENTION")):
            continue
        if line.startswith("###"):
            section = line
        elif ": " in line:
            key, value = line.rsplit(": ", 1)
            values[f"{section}/{key}"] = float(value)
        elif line.strip() and section.startswith("### AVERAGE"):
            values[section] = float(line)
    return values


def test_per_subtask_fast_scores_are_what_the_collate_step_computes(tmp_path, tok_dirs):
    """The summary's `subtasks` (what a submission reports per checkpoint) recomputed the way
    evaluation-pipeline-2025's collate_preds.py does: from predictions.json and the data files
    (a prediction right when it equals sentence_good / Target1 / options[0], stripped; entity
    tracking grouped by numops; WUG's Spearman rho of `prob` against `ratio`)."""
    model, tokenizer = tiny_models(tok_dirs)["causal"]  # 64 positions: entity tracking written short here
    data_root = tmp_path / "fast_eval"
    for name in ("blimp_fast", "supplement_fast", "ewok_fast", "wug_adj_nominalization"):
        shutil.copytree(SAMPLE_FAST / name, data_root / name)
    write_jsonl(data_root / "entity_tracking_fast" / "regular.jsonl", [
        {"numops": n % 3, "input_prefix": f"Box {n} has the {thing}. Box {n} has", "options": [
            f" the {thing}.", " the cup.", " nothing."]} for n, thing in enumerate(["hat", "key", "map", "bell"] * 3)])
    summary = evaluate_model(model, tokenizer, data_root, tmp_path, "m", "causal", ["official"],
                             tasks=["blimp", "ewok", "entity_tracking", "wug_adj"])["official"]
    out = tmp_path / "m" / "main" / "zero_shot" / "causal"

    def rows(path):
        return [json.loads(line) for line in path.open()]

    def share_right(preds, data, target):
        return sum(p["pred"].strip() == d[target].strip() for p, d in zip(preds, data, strict=True)) / len(data)

    checked = 0
    for task, data_dir, target in (("blimp", "blimp_fast", "sentence_good"), ("blimp", "supplement_fast",
                                                                                 "sentence_good"),
                                   ("ewok", "ewok_fast", "Target1")):
        preds = json.loads((out / task / data_dir / "predictions.json").read_text())
        for subtask, block in preds.items():
            expected = share_right(block["predictions"], rows(data_root / data_dir / f"{subtask}.jsonl"), target)
            assert summary[f"{task}/{data_dir}"]["subtasks"][subtask] == pytest.approx(expected)
            checked += 1
    preds = json.loads((out / "entity_tracking" / "entity_tracking_fast" / "predictions.json").read_text())
    by_ops = {}
    for d in rows(data_root / "entity_tracking_fast" / "regular.jsonl"):
        by_ops.setdefault(f"regular_{d['numops']}_ops", []).append({"target": d["options"][0]})
    for subtask, block in preds.items():
        expected = share_right(block["predictions"], by_ops[subtask], "target")
        assert summary["entity_tracking/entity_tracking_fast"]["subtasks"][subtask] == pytest.approx(expected)
        checked += 1
    preds = json.loads((out / "wug_adj" / "wug_adj_nominalization" / "predictions.json").read_text())
    data = rows(data_root / "wug_adj_nominalization" / "wug_adj_nominalization.jsonl")
    for subtask, block in preds.items():
        rho = spearmanr([p["prob"] for p in block["predictions"]], [d["ratio"] for d in data])[0]
        assert summary["wug_adj/wug_adj_nominalization"]["subtasks"][subtask] == pytest.approx(rho)
        checked += 1
    assert checked >= 13  # 7 BLiMP + 2 supplement + 2 EWoK files, entity tracking's operation counts, WUG
