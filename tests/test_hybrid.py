"""The GPT-BERT hybrid model: causal mode never looks ahead, masked mode does; the
saved folder reloads through AutoModelForCausalLM (trust_remote_code) to the same
logits, and in a fresh process outside the repository through AutoModelForCausalLM,
AutoModelForMaskedLM (masked next-token mode) and AutoModel (the body); the step
schedule of masked and causal batches; both loops train it and log both losses;
BLiMP's masked next-token PLL against a one-sentence brute force."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, run_loop
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from transformers import AutoModelForCausalLM, AutoTokenizer

from argument_parser import parse_args
from custom_models import body_and_head, build_model, load_model, load_model_and_tokenizer
from evaluation.blimp import load_paradigms, masked_copies, run_blimp, score_sentences
from tokenizer import load_tokenizer
from training.objective import StepObjective
from training.run_folder import save_model_folder

SENTENCES = ["the dog sees the ball .", "a cat runs", "the children were playing outside ."]


def scalars(run_dir, tag):
    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    return [e.value for e in acc.Scalars(tag)]


# model type -> the prefix of its classes' names (hybrid_model.CLASSES)
PREFIX = {"gpt_bert": "GPTBert", "ltg_bert": "LtgBert"}


@pytest.fixture(params=sorted(PREFIX))
def hybrid(make_args, tmp_path, request):
    """An untrained tiny gpt_bert or ltg_bert model (random weights), its tokenizer and its args."""
    args = make_args("train", "--model_type", request.param, "--output_dir", tmp_path / "unused", kind="mlm")
    tok = load_tokenizer(args.tokenizer_dir)
    torch.manual_seed(0)
    return build_model(args, tok).eval(), tok, args


def test_causal_mode_never_attends_ahead_and_masked_mode_does(hybrid):
    model, tok, _ = hybrid
    ids = tok(["the dog sees the ball and the cat ."], return_tensors="pt")["input_ids"]
    later = ids.clone()
    later[0, 5:] = tok.convert_tokens_to_ids("a") if "a" in tok.get_vocab() else 100  # change the later tokens
    assert not torch.equal(ids, later)
    with torch.no_grad():
        causal, causal_changed = model(ids).logits, model(later).logits
        masked, masked_changed = model(ids, bidirectional=True).logits, model(later, bidirectional=True).logits
    # Causal: every position before the change is exactly unaffected (the default mode).
    assert torch.allclose(causal[0, :5], causal_changed[0, :5], atol=1e-6)
    assert not torch.allclose(causal[0, 5:], causal_changed[0, 5:], atol=1e-3)
    # Masked (bidirectional): the earlier positions see the change.
    assert (masked[0, :5] - masked_changed[0, :5]).abs().amax(dim=-1).min() > 1e-4
    assert not torch.allclose(causal[0], masked[0], atol=1e-3)  # same weights, two modes


def test_padding_does_not_change_the_real_positions(hybrid):
    model, tok, _ = hybrid
    enc = tok(["the dog sees the ball .", "a cat"], padding=True, return_tensors="pt")
    short = tok(["a cat"], return_tensors="pt")["input_ids"]
    n = short.size(1)
    with torch.no_grad():
        for bidirectional in (False, True):
            batched = model(enc["input_ids"], attention_mask=enc["attention_mask"], bidirectional=bidirectional)
            alone = model(short, bidirectional=bidirectional)
            assert torch.allclose(batched.logits[1, :n], alone.logits[0], atol=1e-5)


def test_save_and_reload_through_auto_classes_gives_the_same_logits(hybrid, tmp_path):
    model, tok, args = hybrid
    folder = tmp_path / "saved"
    save_model_folder(model, tok, args, folder)
    config = json.loads((folder / "config.json").read_text())
    prefix = PREFIX[args.model_type]
    assert config["model_type"] == args.model_type and (folder / "hybrid_model.py").is_file()
    assert config["auto_map"]["AutoModelForCausalLM"] == f"hybrid_model.{prefix}ForCausalLM"
    assert config["mask_token_id"] == tok.mask_token_id
    ids = tok(SENTENCES[:1], return_tensors="pt")["input_ids"]
    # An external harness: the Auto class with the folder's own code, and its tokenizer.
    external = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
    assert AutoTokenizer.from_pretrained(folder).mask_token_id == tok.mask_token_id
    ours = load_model(folder)  # the pipeline's loader passes trust_remote_code for gpt_bert only
    with torch.no_grad():
        for reloaded in (external, ours):
            for bidirectional in (False, True):
                assert torch.allclose(model(ids, bidirectional=bidirectional).logits,
                                      reloaded(ids, bidirectional=bidirectional).logits, atol=1e-6)
    assert external.lm_head.weight.data_ptr() == external.model.embed_tokens.weight.data_ptr()  # still tied


# Run by a fresh interpreter outside the repository: what the BabyLM evaluation pipeline does
# (each Auto class with trust_remote_code; `[0]` / ["logits"] as its backends read them).
EXTERNAL_LOADER = """
import importlib.util, sys, torch
from transformers import AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM
assert importlib.util.find_spec("custom_models") is None, "the repository is importable"
folder, inputs, out = sys.argv[1:]
batch = torch.load(inputs)
ids, mask, labels = batch["ids"], batch["mask"], batch["labels"]
result = {}
with torch.no_grad():
    for auto in (AutoModelForCausalLM, AutoModelForMaskedLM, AutoModel):
        model, info = auto.from_pretrained(folder, trust_remote_code=True, output_loading_info=True)
        result[auto.__name__ + " class"] = type(model).__name__
        result[auto.__name__ + " keys"] = sorted(info["missing_keys"]) + sorted(info["unexpected_keys"])
        model.eval()
        if auto is AutoModel:
            result["hidden"] = model(ids, mask).last_hidden_state
            result["hidden_causal_3d"] = model(ids, batch["causal_mask_3d"])[0]
        elif auto is AutoModelForMaskedLM:
            output = model(input_ids=ids, attention_mask=mask, labels=labels)
            result["masked"], result["masked_loss"] = output["logits"], output.loss
        else:
            result["causal"] = model(input_ids=ids, attention_mask=mask)[0]
torch.save(result, out)
"""


def test_fresh_process_loads_the_folder_through_all_three_auto_classes(hybrid, tmp_path):
    model, tok, args = hybrid
    save_model_folder(model, tok, args, tmp_path / "saved")  # the training's own code path
    auto_map = json.loads((tmp_path / "saved" / "config.json").read_text())["auto_map"]
    prefix = PREFIX[args.model_type]
    assert {auto_map[name] for name in ("AutoModelForCausalLM", "AutoModelForMaskedLM", "AutoModel")} == {
        f"hybrid_model.{prefix}ForCausalLM", f"hybrid_model.{prefix}ForMaskedLM", f"hybrid_model.{prefix}Model"}
    # A copy elsewhere, loaded by a process whose cwd and PYTHONPATH are not the repository:
    # the folder must carry all the code it needs.
    folder = shutil.copytree(tmp_path / "saved", tmp_path / "elsewhere" / "model")
    enc = tok(SENTENCES, padding=True, return_tensors="pt")
    ids, mask = enc["input_ids"].clone(), enc["attention_mask"]
    ids[:, 2] = tok.mask_token_id  # masked next-token input: token 2 is predicted at position 1
    labels = torch.full_like(ids, -100)
    labels[:, 2] = enc["input_ids"][:, 2]
    # The pipeline's causal fine-tuning mask: [batch, query, key], padding and later keys masked.
    causal_mask_3d = mask[:, None, :].repeat(1, ids.size(1), 1).tril()
    torch.save({"ids": ids, "mask": mask, "labels": labels, "causal_mask_3d": causal_mask_3d}, tmp_path / "in.pt")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))  # no writes to ~/.cache
    proc = subprocess.run([sys.executable, "-c", EXTERNAL_LOADER, str(folder), str(tmp_path / "in.pt"),
                           str(tmp_path / "out.pt")], cwd=tmp_path / "elsewhere", env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    external = torch.load(tmp_path / "out.pt")
    assert [external[f"{name} class"] for name in ("AutoModelForCausalLM", "AutoModelForMaskedLM", "AutoModel")] == [
        f"{prefix}ForCausalLM", f"{prefix}ForMaskedLM", f"{prefix}Model"]
    for name in ("AutoModelForCausalLM", "AutoModelForMaskedLM", "AutoModel"):
        assert external[f"{name} keys"] == [], name  # no missing or unexpected weights

    ours, _ = load_model_and_tokenizer(tmp_path / "saved")
    body, head = body_and_head(ours)
    with torch.no_grad():
        causal = ours(ids, attention_mask=mask).logits
        hidden = body(ids, mask, bidirectional=True)  # as BLiMP's masked next-token scoring runs it
        masked = head(hidden)
        masked_loss = ours(ids, attention_mask=mask, labels=labels, bidirectional=True).loss
        hidden_causal = body(ids, mask)
    torch.testing.assert_close(external["causal"], causal)
    torch.testing.assert_close(external["masked"], masked)
    torch.testing.assert_close(external["masked_loss"], masked_loss)
    torch.testing.assert_close(external["hidden"], hidden)
    torch.testing.assert_close(external["hidden_causal_3d"], hidden_causal)
    assert not torch.allclose(external["masked"], external["causal"], atol=1e-3)  # the two modes differ


def test_hybrid_needs_a_mask_token(make_args, tmp_path):
    from utils import UserError

    args = make_args("train", "--model_type", "gpt_bert", "--output_dir", tmp_path / "unused")
    with pytest.raises(UserError, match="needs a tokenizer with a mask token"):
        build_model(args, load_tokenizer(args.tokenizer_dir))


@pytest.mark.parametrize(("ratio", "pattern"), [("15:1", [False] + [True] * 15), ("1:1", [False, True]),
                                                 ("1:0", [True]), ("0:1", [False]), ("1:2", [False, False, True])])
def test_masked_steps_are_evenly_interleaved(make_args, tmp_path, ratio, pattern):
    args = make_args("train", "--model_type", "gpt_bert", "--hybrid_ratio", ratio, "--output_dir", tmp_path,
                     kind="mlm")
    steps = [StepObjective.from_args(args).step_is_masked(t) for t in range(4 * len(pattern))]
    assert steps == pattern * 4


def test_objective_schedule_switches_the_masked_share(make_args, tmp_path):
    args = make_args("train", "--model_type", "gpt_bert", "--output_dir", tmp_path, "--objective_schedule",
                     "0:masked_share=1,6:masked_share=0,10:mlm_probability=0.3", kind="mlm")
    objective = StepObjective.from_args(args)
    assert [objective.masked_share_at(t) for t in (0, 5, 6, 12)] == [1.0, 1.0, 0.0, 0.0]
    assert [objective.step_is_masked(t) for t in range(12)] == [True] * 6 + [False] * 6


def test_training_batch_masks_for_next_token_prediction(make_args, tmp_path):
    args = make_args("train", "--model_type", "gpt_bert", "--hybrid_ratio", "1:1", "--mlm_probability", "0.5",
                     "--output_dir", tmp_path, kind="mlm")
    tok = load_tokenizer(args.tokenizer_dir)
    objective = StepObjective.from_args(args, tok, causal=True, hybrid=True)
    ids = torch.randint(10, len(tok), (4, 32))
    causal = objective.batch({"input_ids": ids}, 0)
    assert causal["bidirectional"] is False and torch.equal(causal["labels"], ids)
    torch.manual_seed(0)
    masked = objective.batch({"input_ids": ids}, 1)
    assert masked["bidirectional"] is True
    targets = masked["labels"] != -100
    assert not targets[:, 0].any() and torch.equal(masked["input_ids"][:, 0], ids[:, 0])  # j-1 must exist
    assert torch.equal(masked["labels"][targets], ids[targets])
    assert (masked["input_ids"][targets] == tok.mask_token_id).float().mean() > 0.6  # 80% <mask>
    assert torch.equal(masked["input_ids"][~targets], ids[~targets])


@pytest.mark.parametrize(("loop", "model_type"), [("pytorch", "gpt_bert"), ("huggingface", "gpt_bert"),
                                                   ("pytorch", "ltg_bert")])
def test_both_loops_train_the_hybrid_and_log_both_losses(loop, model_type, make_args, tmp_path):
    out = tmp_path / "run"
    flag = ["--torch_training"] if loop == "pytorch" else []
    args = make_args("train", *flag, "--model_type", model_type, "--hybrid_ratio", "1:1", "--output_dir", out,
                     "--max_steps", "60", "--batch_size", "8", "--learning_rate", "3e-3", "--eval_steps", "30",
                     "--logging_steps", "10", "--objective_schedule", "0:mlm_probability=0.3,30:masked_share=0.75",
                     kind="mlm")
    run_loop(loop, args)
    for tag in ("train/masked_loss", "train/causal_loss"):
        values = scalars(out, tag)
        assert len(values) == 6 and values[-1] < values[0] - 0.5, (tag, values)
    assert scalars(out, "train/masked_share") == [0.5, 0.5, 0.5, 0.75, 0.75, 0.75]
    assert json.loads((out / "best_model" / "config.json").read_text())["model_type"] == model_type
    assert (out / "best_model" / "hybrid_model.py").is_file()
    AutoModelForCausalLM.from_pretrained(out / "best_model", trust_remote_code=True)


def brute_force_scores(model, tok, sentence: str, variant: str) -> tuple[float, float]:
    """One sentence, no batching or padding: causal LL and masked next-token PLL."""
    ids = tok(sentence)["input_ids"]  # <s> ... </s>
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()  # causal mode
        words = ids[1:-1]
        causal = sum(torch.log_softmax(logits[j - 1], -1)[ids[j]].item() for j in range(1, len(ids) - 1))
        assert len(words) > 0
        _, copies = masked_copies(tok, sentence, variant)
        pll = 0.0
        for masked, j in copies:
            out = model(torch.tensor([masked]), bidirectional=True).logits[0].float()
            pll += torch.log_softmax(out[j - 1], -1)[ids[j]].item()
    return causal, pll


@pytest.mark.parametrize("variant", ["within_word_l2r", "token"])
def test_blimp_scores_match_a_brute_force_computation(hybrid, variant):
    model, tok, _ = hybrid
    causal = score_sentences(model, tok, SENTENCES, batch_size=4, device="cpu", variant=variant)
    masked = score_sentences(model, tok, SENTENCES, batch_size=4, device="cpu", variant=variant,
                             hybrid_scoring="masked")
    for sentence, c, m in zip(SENTENCES, causal, masked, strict=True):
        # The pipeline's causal score conditions on <s>: the same as the brute force over <s> words.
        want_c, want_m = brute_force_scores(model, tok, sentence, variant)
        assert c == pytest.approx(want_c, abs=1e-4) and m == pytest.approx(want_m, abs=1e-4)
        assert c != pytest.approx(m, abs=1e-3)


def test_blimp_action_scores_the_hybrid_both_ways(hybrid, make_args, tmp_path, monkeypatch):
    model, tok, args = hybrid
    # Loading the folder's tokenizer must not stop to ask about its model code (auto_map) on stdin.
    monkeypatch.setattr("builtins.input", lambda *a: pytest.fail("asked for trust_remote_code on stdin"))
    save_model_folder(model, tok, args, tmp_path / "model")
    blimp_dir = ROOT / "data" / "sample_eval" / "blimp"
    results = {}
    for scoring in ("causal", "masked"):
        run_args = parse_args(["blimp", "--model_dir", str(tmp_path / "model"), "--blimp_dir", str(blimp_dir),
                               "--output_dir", str(tmp_path / scoring), "--hybrid_scoring", scoring])
        results[scoring] = run_blimp(run_args)
        saved = json.loads((tmp_path / scoring / "blimp_results.json").read_text())
        assert saved["hybrid_scoring"] == scoring
    assert results["causal"]["method"].startswith("causal")
    assert results["masked"]["method"].startswith("masked next-token")
    assert len(load_paradigms(blimp_dir)) == len(results["masked"]["paradigms"])


@pytest.mark.parametrize("bidirectional", [False, True])
def test_training_objective_equals_the_models_own_loss(hybrid, bidirectional):
    """The custom loop's hybrid objective (the chunked head and loss, training/losses.py) gives
    the model's own loss (its full logits' cross-entropy) and the same gradients, in both modes,
    with positions left out (-100) as masked batches have them."""
    from training.losses import make_objective

    model, tok, _ = hybrid
    model.train()
    torch.manual_seed(1)
    ids = torch.randint(5, len(tok), (3, 20))
    labels = ids.clone()
    labels[:, ::3] = -100
    loss, parts = make_objective(model)({"input_ids": ids, "labels": labels, "bidirectional": bidirectional})
    loss.backward()
    ours = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    reference = model(input_ids=ids, labels=labels, bidirectional=bidirectional).loss
    reference.backward()
    assert loss.item() == pytest.approx(reference.item(), abs=1e-6)
    assert list(parts) == ["train/masked_loss" if bidirectional else "train/causal_loss"]
    for mine, theirs in zip(ours, (p.grad for p in model.parameters()), strict=True):
        assert torch.allclose(mine, theirs, atol=1e-6)
