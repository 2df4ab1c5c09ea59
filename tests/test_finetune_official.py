"""`--finetune_protocol official` against the official BabyLM pipeline itself
(evaluation-pipeline-2025, /work/shared/official_pipeline or $OFFICIAL_PIPELINE), run in a
process of its own from its folder: the same token ids for every task, the same classifier,
the same learning rates, and the same MRPC predictions and files after two epochs.
Skipped when the official pipeline or scikit-learn (which its trainer imports) is absent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import ROOT
from official_tree import OFFICIAL  # evaluation/official.py's rule: OFFICIAL_PIPELINE, else ../shared

import evaluation.finetune as finetune
import evaluation.finetune_data as finetune_data
import evaluation.finetune_protocol as protocol

BERT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "official_reference" / "models" / "bert"
GLUE = ROOT / "data" / "sample_eval" / "glue"

pytestmark = [
    pytest.mark.skipif(not (OFFICIAL / "evaluation_pipeline" / "finetune" / "trainer.py").is_file(),
                       reason=f"the official pipeline is not at {OFFICIAL} (set OFFICIAL_PIPELINE)"),
    pytest.mark.skipif(not (BERT / "config.json").is_file(), reason=f"no reference BERT at {BERT}"),
]
pytest.importorskip("sklearn", reason="the official fine-tuning trainer imports scikit-learn")

# The official trainer imports wandb at the top; a stub module (with a spec, which accelerate's
# availability check reads) stands in for it. wandb is never called with --wandb off.
PRELUDE = """
import importlib.machinery, json, sys, types
stub = types.ModuleType("wandb")
stub.__spec__ = importlib.machinery.ModuleSpec("wandb", None)
sys.modules["wandb"] = stub
"""


def run_official(script: str, *argv: str, timeout: int = 300) -> str:
    """Run `script` (after PRELUDE) with python in the official pipeline's folder; its stdout."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(script), *argv], cwd=OFFICIAL, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


# Items in each official file's fields (see ../shared/data/glue_dev/*.jsonl), a long one among them.
LONG = " ".join(["The little boat drifted past the old mill while the children counted the ducks."] * 6)
ITEMS = {
    "boolq": [{"question": "is the ball red", "passage": "The ball is red.", "idx": 1, "label": 1},
              {"question": "can u swim", "passage": LONG, "idx": 2, "label": 0}],
    "multirc": [{"paragraph": "Ana has a dog. It barks.", "question": "Who has a dog?", "answer": "Ana",
                 "idx": {"paragraph": 0, "question": 0, "answer": 0}, "label": 1},
                {"paragraph": LONG, "question": "What drifted?", "answer": "The mill",
                 "idx": {"paragraph": 1, "question": 2, "answer": 3}, "label": 0}],
    "wsc": [{"text": "Mark told Pete many lies about himself. He lied.", "span1_index": 0, "span2_index": 8,
             "span1_text": "Mark", "span2_text": "He", "idx": 0, "label": 1},
            {"text": LONG, "span1_index": 1, "span2_index": 5, "span1_text": "little boat", "span2_text": "the mill",
             "idx": 1, "label": 0}],
    "mnli": [{"premise": "A man sleeps.", "hypothesis": "A man is awake.", "label": 2, "idx": 7},
             {"premise": LONG, "hypothesis": "Children count.", "label": 0, "idx": 8},
             {"premise": "It rains.", "hypothesis": "The sun shines somewhere.", "label": 1, "idx": 9}],
    "qqp": [{"question1": "How old are you?", "question2": "What is your age?", "label": 1, "idx": 3},
            {"question1": LONG, "question2": "Why?", "label": 0, "idx": 4}],
    "rte": [{"sentence1": "Ana ate.", "sentence2": "Someone ate.", "label": 0, "idx": 0},
            {"sentence1": LONG, "sentence2": LONG[:40], "label": 1, "idx": 1}],
    "mrpc": [{"sentence1": "Ana ate.", "sentence2": "Ana had eaten.", "label": 1, "idx": 0},
             {"sentence1": "Tovan sang.", "sentence2": LONG, "label": 0, "idx": 1}],
}


def test_wsc_and_multirc_read_question_first_as_officially():
    wsc = protocol.official_texts("wsc", ITEMS["wsc"][0])
    assert wsc == ('Does "He" refer to "Mark" in this passage?', ITEMS["wsc"][0]["text"])
    multirc = finetune_data.record_texts("multirc", ITEMS["multirc"][0], "official")
    assert multirc == ("Question: Who has a dog? Answer: Ana", "Ana has a dog. It barks.")
    # Ours keeps the passage first.
    assert finetune_data.record_texts("multirc", ITEMS["multirc"][0], "ours")[0] == "Ana has a dog. It barks."


def test_token_ids_are_the_official_datasets(tmp_path, tok_dirs):
    """For all seven tasks, the reference BERT tokenizer and our causal one, whole and truncated:
    the official Dataset + collate_function and our reading + encoding + padding give the same
    input ids and attention masks."""
    for task, records in ITEMS.items():
        (tmp_path / f"{task}.train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    tokenizers = {"bert": BERT, "clm": tok_dirs["clm"]}
    official = json.loads(run_official("""
        import pathlib
        from transformers import AutoProcessor
        from evaluation_pipeline.finetune.dataset import Dataset
        folder, tokenizers, tasks = pathlib.Path(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3])
        out = {}
        for name, path in tokenizers.items():
            tok = AutoProcessor.from_pretrained(path, trust_remote_code=True, padding_side="right")
            for length in (512, 16):
                for task in tasks:
                    data = Dataset(folder / f"{task}.train.jsonl", task)
                    items = [data[i] for i in range(len(data))]
                    ids, mask, labels = Dataset.collate_function(tok, False, length, items)
                    out[f"{name} {length} {task}"] = [ids.tolist(), mask.tolist(), labels.tolist()]
        print(json.dumps(out))
    """, str(tmp_path), json.dumps({k: str(v) for k, v in tokenizers.items()}), json.dumps(list(ITEMS))))
    assert len(official) == 2 * 2 * 7
    for name, path in tokenizers.items():
        tok = finetune.load_tokenizer(path)
        for length in (512, 16):
            for task in ITEMS:
                texts, labels = finetune_data.read_task_file(tmp_path / f"{task}.train.jsonl", "official")
                batch = finetune_data.collate(finetune_data.encode_texts(tok, texts, length), tok.pad_token_id)
                ids, mask, gold = official[f"{name} {length} {task}"]
                assert batch["input_ids"].tolist() == ids, (name, length, task)
                assert batch["attention_mask"].tolist() == mask, (name, length, task)
                assert labels == gold
                if length == 16:
                    assert len(ids[0]) == 16  # the long item was truncated
    # Ours and the official order differ where they should: MultiRC's first token ids are not ours.
    tok = finetune.load_tokenizer(BERT)
    ours_texts, _ = finetune_data.read_task_file(tmp_path / "multirc.train.jsonl", "ours")
    ours = finetune_data.collate(finetune_data.encode_texts(tok, ours_texts, 512), tok.pad_token_id)
    assert ours["input_ids"].tolist() != official["bert 512 multirc"][0]


def test_the_classifier_is_the_officials():
    """Same parameter names and shapes, the same head (eps, dropout, order), the same initial
    weights from the same seed, and the same logits (eval mode) on a padded batch."""
    ids = [[0, 15, 27, 33, 1, 2, 2], [0, 44, 45, 46, 47, 48, 1]]
    mask = [[1, 1, 1, 1, 1, 0, 0], [1] * 7]
    official = json.loads(run_official("""
        import argparse, torch
        from evaluation_pipeline.finetune.classifier_model import ModelForSequenceClassification
        args = argparse.Namespace(model_name_or_path=sys.argv[1], revision_name=None, enc_dec=False, causal=False,
                                  take_final=False, classifier_layer_norm_eps=1.0e-5, classifier_dropout=0.1,
                                  num_labels=2)
        torch.manual_seed(42)
        model = ModelForSequenceClassification(args).eval()
        ids, mask = json.loads(sys.argv[2]), json.loads(sys.argv[3])
        with torch.no_grad():
            logits = model(torch.tensor(ids), torch.tensor(mask))
        print(json.dumps({"params": [[n, list(p.shape)] for n, p in model.named_parameters()],
                          "head": repr(model.classifier),
                          "weights": {n: p.flatten().tolist() for n, p in model.classifier.named_parameters()},
                          "logits": logits.tolist()}))
    """, str(BERT), json.dumps(ids), json.dumps(mask)))
    torch.manual_seed(42)
    model, new_weights = protocol.load_official_classifier(BERT, 2, "first")
    model.eval()
    assert [[n, list(p.shape)] for n, p in model.named_parameters()] == official["params"]
    assert repr(model.classifier) == official["head"]
    assert {n: p.flatten().tolist() for n, p in model.classifier.named_parameters()} == official["weights"]
    assert "classifier.nonlinearity.5.weight" in new_weights
    with torch.no_grad():
        assert model(torch.tensor(ids), torch.tensor(mask)).tolist() == official["logits"]


def test_learning_rates_and_optimizer_are_the_officials():
    """The LR at each of 50 steps (and after) equals the official scheduler's, and the
    optimizer, schedule and batch constants equal the official trainer's defaults."""
    official = json.loads(run_official("""
        import torch
        from evaluation_pipeline.finetune.run import _parse_arguments
        from evaluation_pipeline.finetune.utils import cosine_schedule_with_warmup
        param = torch.nn.Parameter(torch.zeros(1))
        optimizer = torch.optim.AdamW([param], lr=3e-5)
        scheduler = cosine_schedule_with_warmup(optimizer, int(0.06 * 50), 50, 0.1)
        rates = []
        for _ in range(55):
            rates.append(scheduler.get_last_lr()[0])
            optimizer.step()
            scheduler.step()
        sys.argv = ["run", "--train_data", "x", "--model_name_or_path", "m", "--num_labels", "2", "--task", "rte"]
        a = vars(_parse_arguments())
        print(json.dumps({"rates": rates, "defaults": {k: a[k] for k in (
            "weight_decay", "beta1", "beta2", "optimizer_eps", "warmup_proportion", "valid_batch_size",
            "classifier_dropout", "classifier_layer_norm_eps", "amsgrad", "padding_side", "take_final")}}))
    """))
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = protocol.official_optimizer(torch.nn.ParameterList([param]), 3e-5)
    scheduler = protocol.official_scheduler(optimizer, 50)
    rates = []
    for _ in range(55):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert rates == official["rates"]
    assert rates[0] == 0.0 and rates[3] == 3e-5 and rates[50] == pytest.approx(3e-6)  # warm-up 3, floor 0.1x
    d = official["defaults"]
    group = optimizer.param_groups[0]
    assert (group["weight_decay"], group["betas"], group["eps"], group["amsgrad"]) == \
        (d["weight_decay"], (d["beta1"], d["beta2"]), d["optimizer_eps"], d["amsgrad"])
    assert (protocol.WARMUP_PROPORTION, protocol.VALID_BATCH_SIZE, protocol.HEAD_DROPOUT,
            protocol.HEAD_LAYER_NORM_EPS) == (d["warmup_proportion"], d["valid_batch_size"], d["classifier_dropout"],
                                              d["classifier_layer_norm_eps"])
    assert d["padding_side"] == "right" and d["take_final"] is False


def test_mrpc_two_epochs_gives_the_official_predictions_and_files(tmp_path):
    """The official run (eval_finetuning.sh's flags for MRPC, 2 epochs, its LR and batch
    arguments set to 1e-3 and 8 so that two epochs move the tiny model off one class) and
    ours write byte-identical results.txt and predictions.json."""
    task_flags = ["--train_data", str(GLUE / "mrpc.train.jsonl"), "--valid_data", str(GLUE / "mrpc.valid.jsonl"),
                  "--predict_data", str(GLUE / "mrpc.valid.jsonl"), "--task", "mrpc", "--num_labels", "2",
                  "--batch_size", "8", "--learning_rate", "1e-3", "--num_epochs", "2", "--sequence_length", "512",
                  "--results_dir", str(tmp_path / "official"), "--save", "--save_dir", str(tmp_path / "models"),
                  "--metrics", "accuracy", "f1", "mcc", "--metric_for_valid", "f1", "--seed", "42", "--verbose"]
    run_official("""
        import runpy
        sys.argv = ["run", "--model_name_or_path", *sys.argv[1:]]
        runpy.run_module("evaluation_pipeline.finetune.run", run_name="__main__")
    """, str(BERT), *task_flags)
    from argument_parser import parse_args
    args = parse_args(["finetune", "--model_dir", str(BERT), "--glue_dir", str(GLUE), "--tasks", "mrpc",
                       "--output_dir", str(tmp_path / "ours_run"), "--results_dir", str(tmp_path / "ours"),
                       "--finetune_epochs", "2", "--finetune_learning_rate", "1e-3", "--finetune_batch_size", "8"])
    results = finetune.run_finetune(args)
    assert results["options"]["finetune_protocol"] == "official" and results["options"]["finetune_pool"] == "first"
    ours, theirs = tmp_path / "ours" / "bert" / "main" / "finetune" / "mrpc", \
        tmp_path / "official" / "bert" / "main" / "finetune" / "mrpc"
    preds = [p["pred"] for p in json.loads((theirs / "predictions.json").read_text())["mrpc"]["predictions"]]
    assert len(preds) == 60 and len(set(preds)) == 2  # not a single class: the comparison has teeth
    assert (ours / "predictions.json").read_bytes() == (theirs / "predictions.json").read_bytes()
    assert (ours / "results.txt").read_bytes() == (theirs / "results.txt").read_bytes()
