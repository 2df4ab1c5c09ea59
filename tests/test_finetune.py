"""Fine-tuning (evaluation/finetune.py): metrics against hand-computed values, text layouts,
padding invariance of the classifiers, full runs on the sample GLUE tasks,
reproducibility, early stopping and one-line errors."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
import torch
from conftest import ROOT, TINY_MODEL
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from transformers import AutoTokenizer

import evaluation.finetune as finetune
import evaluation.finetune_data as finetune_data
import evaluation.finetune_protocol as finetune_protocol
import run
from argument_parser import parse_args
from custom_models import build_model
from evaluation.layout import FINETUNE_TASKS
from training.hardware import grad_scaler
from training.run_folder import save_model_folder
from utils import FINETUNE_RESULTS, UserError

GLUE = ROOT / "data" / "sample_eval" / "glue"
FAST = ["--finetune_epochs", "3", "--finetune_learning_rate", "3e-3", "--finetune_batch_size", "16",
        "--max_seq_length", "64", "--finetune_patience", "0"]


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory, tok_dirs):
    """Untrained tiny GPT-2, Llama and BERT folders, saved the way a training step saves best_model."""
    root = tmp_path_factory.mktemp("pretrained")
    dirs = {}
    for model_type in ("gpt2", "llama", "bert", "gpt_bert"):
        kind = "clm" if model_type in ("gpt2", "llama") else "mlm"
        args = parse_args(["train", "--tokenizer_dir", str(tok_dirs[kind]), "--output_dir", str(root),
                           "--model_type", model_type, *TINY_MODEL])
        tok = AutoTokenizer.from_pretrained(tok_dirs[kind])
        torch.manual_seed(0)
        dirs[model_type] = root / model_type
        save_model_folder(build_model(args, tok), tok, args, dirs[model_type])
    return dirs


def ft_args(model_dir, out, *extra, glue=GLUE, protocol="ours"):
    return parse_args(["finetune", "--model_dir", str(model_dir), "--glue_dir", str(glue), "--output_dir", str(out),
                       "--finetune_protocol", protocol, *FAST, *map(str, extra)])


def scalars(run_dir, tag):
    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    return [e.value for e in acc.Scalars(tag)]


def write_task(folder, task, train, valid):
    """Write <task>.train.jsonl / <task>.valid.jsonl from lists of dicts (None: no file)."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, records in (("train", train), ("valid", valid)):
        if records is not None:
            (folder / f"{task}.{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def without_timing(results):
    return {task: {k: v for k, v in r.items() if k != "seconds"} for task, r in results["tasks"].items()}


# --------------------------------------------------------------------------- metrics


def test_metrics_match_hand_computed_values():
    labels = np.array([1, 1, 0, 0, 1])
    preds = np.array([1, 0, 0, 1, 1])  # tp 2, fn 1, tn 1, fp 1
    assert finetune_data.accuracy(preds, labels) == pytest.approx(3 / 5)
    assert finetune_data.f1_score(preds, labels) == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    # (tp*tn - fp*fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)) = (2 - 1) / sqrt(3*3*2*2)
    assert finetune_data.matthews_corrcoef(preds, labels) == pytest.approx(1 / 6)
    assert finetune_data.matthews_corrcoef(labels, labels) == pytest.approx(1.0)
    assert finetune_data.matthews_corrcoef(1 - labels, labels) == pytest.approx(-1.0)
    # Three classes: true counts t=(2,1,1), predicted p=(2,0,2), correct c=3, n=4:
    # (c*n - p.t) / sqrt((n^2 - p.p)(n^2 - t.t)) = (12 - 6) / sqrt(8 * 10)
    assert finetune_data.matthews_corrcoef([0, 2, 2, 0], [0, 1, 2, 0]) == pytest.approx(6 / np.sqrt(80))
    # Two labels: the official accuracy, F1 and MCC; MNLI's three: accuracy alone.
    assert finetune_data.task_metrics("mrpc", preds, labels).keys() == {"accuracy", "f1", "mcc"}
    assert finetune_data.task_metrics("rte", preds, labels).keys() == {"accuracy", "f1", "mcc"}
    assert finetune_data.task_metrics("mnli", np.array([0, 2, 1]), np.array([0, 1, 1]), 3).keys() == {"accuracy"}


def test_metrics_degenerate_cases_give_zero_without_warnings():
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        ones, zeros = np.ones(6, dtype=int), np.zeros(6, dtype=int)
        assert finetune_data.matthews_corrcoef(ones, ones) == 0.0  # one class everywhere: 0/0
        assert finetune_data.matthews_corrcoef(zeros, np.array([0, 1, 0, 1, 1, 0])) == 0.0  # constant predictions
        assert finetune_data.f1_score(zeros, zeros) == 0.0  # positive class neither present nor predicted
        assert finetune_data.f1_score(zeros, ones) == 0.0  # never predicted
        assert finetune_data.f1_score(ones, zeros) == 0.0  # never present
        assert finetune_data.accuracy(ones, ones) == 1.0


# --------------------------------------------------------------------------- data


def test_text_layouts():
    layouts = [
        ({"sentence1": "a", "sentence2": "b", "label": 0}, ("a", "b")),
        ({"sentence1": "a", "label": 0}, ("a",)),
        ({"sentence1": "a", "sentence2": "", "label": 0}, ("a",)),  # empty counts as absent
        ({"question1": "a", "question2": "b"}, ("a", "b")),
        ({"premise": "a", "hypothesis": "b", "idx": 3}, ("a", "b")),
        ({"question": "a", "passage": "b"}, ("a", "b")),
        ({"question": "a", "sentence": "b"}, ("a", "b")),
        ({"sentence": "a"}, ("a",)),
        ({"paragraph": "p", "question": "q", "answer": "a"}, ("p", "Question: q Answer: a")),
        ({"text": "t", "span1_text": "x", "span2_text": "it"}, ("t", 'Does "it" refer to "x"?')),
    ]
    for record, texts in layouts:
        assert finetune_data.example_texts(record) == texts, record
    with pytest.raises(KeyError):
        finetune_data.example_texts({"label": 1, "idx": 0})


# --------------------------------------------------------------------------- model


@pytest.mark.parametrize("model_type", ["gpt2", "llama", "bert", "gpt_bert"])
def test_padding_does_not_change_the_logits(model_type, model_dirs, tmp_path):
    folder = tmp_path / model_type
    shutil.copytree(model_dirs[model_type], folder)
    if model_type in ("gpt2", "llama"):  # a causal config saved without a pad id: the loader must set it
        config = json.loads((folder / "config.json").read_text())
        config["pad_token_id"] = None
        (folder / "config.json").write_text(json.dumps(config))
    tok = finetune.load_tokenizer(folder)
    torch.manual_seed(0)
    model, new_weights = finetune.load_classifier(folder, 2, tok.pad_token_id)
    model.eval()
    assert model.config.pad_token_id == tok.pad_token_id and new_weights
    texts = [("Mira ate the apple.", "Someone ate it."),
             ("Tovan carried the heavy basket down to the river after the long rain.", "Tovan carried it.")]
    features = finetune_data.encode_texts(tok, texts, max_length=64)
    assert len(features[1]["input_ids"]) > len(features[0]["input_ids"]) + 5  # the short one gets padded
    with torch.no_grad():
        alone = finetune.batch_logits(model, features[:1], tok.pad_token_id, torch.device("cpu"))
        batched = finetune.batch_logits(model, features, tok.pad_token_id, torch.device("cpu"))
        reversed_order = finetune.batch_logits(model, features[::-1], tok.pad_token_id, torch.device("cpu"))
    assert torch.allclose(alone[0], batched[0], atol=1e-5), (alone, batched)
    assert torch.allclose(batched, reversed_order.flip(0), atol=1e-5)


# --------------------------------------------------------------------------- runs


@pytest.mark.parametrize("protocol", ["official", "ours"])
def test_run_finetune_writes_results_and_tensorboard(protocol, model_dirs, tmp_path):
    out = tmp_path / "ft"
    results = finetune.run_finetune(ft_args(model_dirs["gpt2"], out, protocol=protocol))
    assert json.loads((out / FINETUNE_RESULTS).read_text()) == results
    assert sorted(p.name for p in out.iterdir()) == [".lock", "finetune_results.json", "log.txt", "tensorboard"]
    assert results["model_dir"] == str(model_dirs["gpt2"]) and results["options"]["finetune_epochs"] == 3
    assert sorted(results["tasks"]) == ["mrpc", "rte"]
    for task, r in results["tasks"].items():
        assert 0.0 <= r["metrics"]["accuracy"] <= 1.0
        assert (r["train_size"], r["valid_size"], r["num_labels"], r["epochs_run"]) == (200, 60, 2, 3)
        # 200 examples in batches of 16: the official protocol drops the last 8.
        assert 1 <= r["best_epoch"] <= 3 and len(r["history"]) == 3
        assert r["steps"] == 3 * (12 if protocol == "official" else 13)
        best = r["history"][r["best_epoch"] - 1]
        assert r["metrics"][r["selection_metric"]] == max(h[r["selection_metric"]] for h in r["history"])
        assert r["metrics"]["accuracy"] == best["accuracy"]
        assert len(scalars(out, f"finetune/{task}/train_loss")) == 3
        assert len(scalars(out, f"finetune/{task}/eval_accuracy")) == 3
        assert scalars(out, f"finetune/{task}/best_accuracy") == [pytest.approx(r["metrics"]["accuracy"])]
    mrpc, rte = results["tasks"]["mrpc"], results["tasks"]["rte"]
    assert mrpc["selection_metric"] == "f1" and 0.0 <= mrpc["metrics"]["f1"] <= 1.0
    assert rte["selection_metric"] == "accuracy" and rte["metrics"].keys() == {"eval_loss", "accuracy", "f1", "mcc"}
    assert len(scalars(out, "finetune/mrpc/eval_f1")) == 3
    # The options as used: the official protocol's own optimizer values, the token read resolved.
    options = results["options"]
    assert (options["finetune_protocol"], options["finetune_pool"]) == (protocol, "last")
    assert (options["weight_decay"], options["adam_beta2"], options["warmup_ratio"], options["grad_norm_clip"]) == \
        ((0.01, 0.999, 0.06, 0.0) if protocol == "official" else (0.1, 0.98, 0.05, 1.0))


@pytest.mark.parametrize("protocol", ["official", "ours"])
def test_tiny_model_learns_the_sample_task(protocol, model_dirs, tmp_path):
    results = finetune.run_finetune(ft_args(model_dirs["gpt2"], tmp_path, "--tasks", "rte",
                                            "--finetune_epochs", "5", protocol=protocol))
    r = results["tasks"]["rte"]
    losses = [h["train_loss"] for h in r["history"]]
    assert losses[-1] < losses[0] - 0.2, losses
    assert r["metrics"]["accuracy"] > 0.65  # chance is about 0.5 (balanced labels)


@pytest.mark.parametrize("protocol", ["official", "ours"])
def test_bert_finetunes(protocol, model_dirs, tmp_path):
    results = finetune.run_finetune(ft_args(model_dirs["bert"], tmp_path, "--tasks", "mrpc",
                                            "--finetune_epochs", "2", protocol=protocol))
    r = results["tasks"]["mrpc"]
    assert r["epochs_run"] == 2 and 0.0 <= r["metrics"]["f1"] <= 1.0


@pytest.mark.parametrize("protocol", ["official", "ours"])
def test_same_seed_same_results(protocol, model_dirs, tmp_path):
    first = finetune.run_finetune(ft_args(model_dirs["gpt2"], tmp_path / "a", "--tasks", "rte", "mrpc",
                                          "--finetune_epochs", "2", protocol=protocol))
    second = finetune.run_finetune(ft_args(model_dirs["gpt2"], tmp_path / "b", "--tasks", "rte", "mrpc",
                                           "--finetune_epochs", "2", protocol=protocol))
    assert without_timing(first) == without_timing(second)  # exactly equal losses and metrics
    other = finetune.run_finetune(ft_args(model_dirs["gpt2"], tmp_path / "c", "--tasks", "rte",
                                          "--finetune_epochs", "2", "--seed", "7", protocol=protocol))
    assert other["tasks"]["rte"]["history"] != first["tasks"]["rte"]["history"]


def test_early_stopping_keeps_the_best_epoch(model_dirs, tmp_path):
    # Learning rate 1e-12 (0 is refused) moves no float32 weight: no epoch beats the first,
    # so patience 2 stops after epoch 3.
    results = finetune.run_finetune(ft_args(model_dirs["gpt2"], tmp_path, "--tasks", "rte", "--finetune_epochs", "6",
                                            "--finetune_learning_rate", "1e-12", "--finetune_patience", "2"))
    r = results["tasks"]["rte"]
    assert (r["epochs_run"], r["best_epoch"]) == (3, 1)
    assert len({h["accuracy"] for h in r["history"]}) == 1


def test_single_sentence_task_and_other_layouts(model_dirs, tmp_path):
    glue = tmp_path / "glue"
    words = ["the dog runs .", "dog the runs .", "a cat sleeps .", "cat a sleeps ."]
    cola = [{"sentence": w, "label": int(i % 2 == 0), "idx": i} for i, w in enumerate(words * 5)]
    write_task(glue, "cola", cola, cola[:8])
    # boolq-style question/passage with JSON booleans as labels
    boolq = [{"question": "is it red", "passage": f"the ball is {c} .", "label": c == "red"}
             for c in ("red", "blue") * 6]
    write_task(glue, "boolq", boolq, boolq[:4])
    results = finetune.run_finetune(ft_args(model_dirs["gpt2"], tmp_path / "out", "--finetune_epochs", "1", glue=glue))
    assert sorted(results["tasks"]) == ["boolq", "cola"]
    cola_r = results["tasks"]["cola"]
    assert cola_r["metrics"].keys() == {"eval_loss", "accuracy", "f1", "mcc"} and cola_r["selection_metric"] == "mcc"
    assert -1.0 <= cola_r["metrics"]["mcc"] <= 1.0
    assert results["tasks"]["boolq"]["train_size"] == 12


def test_the_seven_official_tasks_read_as_the_official_pairs():
    """Hand-made items in each official file's fields: our layout (--finetune_protocol ours) puts
    MultiRC's paragraph and WSC's text first; the official one (dataset.py) puts the question
    first and asks WSC's "in this passage"; the other five tasks read the same under both."""
    items = {
        "boolq": ({"question": "is it red", "passage": "The ball is red.", "idx": 1, "label": 1},
                  ("is it red", "The ball is red.")),
        "multirc": ({"paragraph": "Ana has a dog.", "question": "Who has a dog?", "answer": "Ana",
                     "idx": {"paragraph": 0, "question": 0, "answer": 0}, "label": 1},
                    ("Ana has a dog.", "Question: Who has a dog? Answer: Ana")),
        "wsc": ({"text": "Mark told Pete lies. He lied.", "span1_index": 0, "span2_index": 5, "span1_text": "Mark",
                 "span2_text": "He", "idx": 0, "label": 1},
                ("Mark told Pete lies. He lied.", 'Does "He" refer to "Mark"?')),
        "mnli": ({"premise": "A man sleeps.", "hypothesis": "A man is awake.", "label": 2, "idx": 7},
                 ("A man sleeps.", "A man is awake.")),
        "qqp": ({"question1": "How old are you?", "question2": "What is your age?", "label": 1, "idx": 3},
                ("How old are you?", "What is your age?")),
        "rte": ({"sentence1": "Ana ate.", "sentence2": "Someone ate.", "label": 0, "idx": 0},
                ("Ana ate.", "Someone ate.")),
        "mrpc": ({"sentence1": "Ana ate.", "sentence2": "Ana had eaten.", "label": 1, "idx": 0},
                 ("Ana ate.", "Ana had eaten.")),
    }
    assert sorted(items) == sorted(FINETUNE_TASKS)
    official = {"multirc": ("Question: Who has a dog? Answer: Ana", "Ana has a dog."),
                "wsc": ('Does "He" refer to "Mark" in this passage?', "Mark told Pete lies. He lied.")}
    for task, (record, texts) in items.items():
        assert finetune_data.example_texts(record) == texts, task
        assert finetune_data.record_texts(task, record, "ours") == texts, task
        assert finetune_data.record_texts(task, record, "official") == official.get(task, texts), task


def test_official_defaults_per_task_and_overrides():
    args = parse_args(["finetune", "--model_dir", "m", "--glue_dir", "g", "--output_dir", "o"])
    assert finetune.task_options(args, "rte") == {"learning_rate": 3e-5, "batch_size": 32, "epochs": 10}
    assert finetune.task_options(args, "boolq") == {"learning_rate": 3e-5, "batch_size": 16, "epochs": 10}
    assert finetune.task_options(args, "multirc")["batch_size"] == 16
    assert finetune.task_options(args, "wsc") == {"learning_rate": 3e-5, "batch_size": 32, "epochs": 30}
    assert args.seed == 42 and args.finetune_patience == 0
    given = parse_args(["finetune", "--model_dir", "m", "--glue_dir", "g", "--output_dir", "o",
                        "--finetune_epochs", "2", "--finetune_batch_size", "8"])
    assert finetune.task_options(given, "wsc") == {"learning_rate": 3e-5, "batch_size": 8, "epochs": 2}
    assert (args.finetune_protocol, args.finetune_pool) == ("official", None)  # the pool follows the model
    for bad in (["--finetune_protocol", "theirs"], ["--finetune_pool", "middle"]):
        with pytest.raises(SystemExit):
            parse_args(["finetune", "--model_dir", "m", "--glue_dir", "g", "--output_dir", "o", *bad])


@pytest.mark.parametrize("model_type", ["gpt2", "llama"])
def test_a_causal_classifier_reads_the_last_real_token(model_type, model_dirs):
    """The logits are the head applied to the hidden state at the last real token (not the
    first, which in a causal model sees nothing else), whatever the padding after it."""
    tok = finetune.load_tokenizer(model_dirs[model_type])
    torch.manual_seed(0)
    model, _ = finetune.load_classifier(model_dirs[model_type], 2, tok.pad_token_id)
    model.eval()
    texts = [("Mira ate the apple.",), ("Tovan carried the basket to the river.",)]
    features = finetune_data.encode_texts(tok, texts, 64)
    with torch.no_grad():
        logits = finetune.batch_logits(model, features, tok.pad_token_id, torch.device("cpu"))
        for row, f in enumerate(features):
            hidden = model.base_model(torch.tensor([f["input_ids"]])).last_hidden_state
            head = model.score(hidden[0, -1])
            assert torch.allclose(logits[row], head, atol=1e-5)
            assert not torch.allclose(logits[row], model.score(hidden[0, 0]), atol=1e-3)


@pytest.mark.parametrize("protocol", ["official", "ours"])
def test_official_layout_holds_the_best_epochs_predictions(protocol, model_dirs, tmp_path):
    official = tmp_path / "official"
    results = finetune.run_finetune(ft_args(model_dirs["gpt2"], tmp_path / "ft", "--tasks", "rte", "mrpc",
                                            "--results_dir", official, protocol=protocol))
    valid_labels = {t: [json.loads(line)["label"] for line in (GLUE / f"{t}.valid.jsonl").open()]
                    for t in ("rte", "mrpc")}
    for task, r in results["tasks"].items():
        folder = official / "gpt2" / "main" / "finetune" / task
        preds = json.loads((folder / "predictions.json").read_text())
        assert list(preds) == [task]
        items = preds[task]["predictions"]
        assert [p["id"] for p in items] == [f"{task}_{i}" for i in range(len(valid_labels[task]))]
        # The predictions are the best epoch's: its accuracy and F1 follow from them.
        chosen = np.array([p["pred"] for p in items])
        assert r["metrics"]["accuracy"] == pytest.approx(finetune_data.accuracy(chosen, valid_labels[task]))
        assert r["metrics"]["f1"] == pytest.approx(finetune_data.f1_score(chosen, valid_labels[task]))
        text = (folder / "results.txt").read_text()
        if protocol == "ours":
            assert f"BEST EPOCH: {r['best_epoch']}" in text and f"ACCURACY: {r['metrics']['accuracy']:.4f}" in text
            continue
        # The official trainer's files: `name: value` lines without a final newline, one-line JSON.
        m = r["metrics"]
        assert text == f"accuracy: {m['accuracy']}\nf1: {m['f1']}\nmcc: {m['mcc']}"
        assert (folder / "predictions.json").read_text() == json.dumps(preds)


@pytest.mark.parametrize("protocol", ["official", "ours"])
def test_a_task_without_train_file_needs_cross_fit_and_every_item_is_predicted_once(protocol, model_dirs, tmp_path):
    glue = tmp_path / "glue"
    valid = [json.loads(line) for line in (GLUE / "rte.valid.jsonl").open()]
    write_task(glue, "boolq", None, [{"question": r["sentence2"], "passage": r["sentence1"], "label": r["label"]}
                                     for r in valid])
    with pytest.raises(UserError, match=r"no boolq.train.jsonl .*--finetune_cross_fit K"):
        finetune.run_finetune(ft_args(model_dirs["gpt2"], tmp_path / "a", "--tasks", "boolq", glue=glue,
                                      protocol=protocol))
    official = tmp_path / "official"
    results = finetune.run_finetune(ft_args(model_dirs["gpt2"], tmp_path / "b", "--tasks", "boolq",
                                            "--finetune_cross_fit", "3", "--finetune_epochs", "2",
                                            "--results_dir", official, glue=glue, protocol=protocol))
    r = results["tasks"]["boolq"]
    assert r["cross_fit"] == 3 and [f["valid_size"] for f in r["folds"]] == [20, 20, 20]
    assert all(f["train_size"] == 40 for f in r["folds"])
    folds = finetune.cross_fit_folds(60, 3, 42)
    assert sorted(i for fold in folds for i in fold) == list(range(60))  # disjoint, covering
    items = json.loads((official / "gpt2" / "main" / "finetune" / "boolq" / "predictions.json").read_text())
    chosen = np.array([p["pred"] for p in items["boolq"]["predictions"]])
    assert len(chosen) == 60
    assert r["metrics"]["accuracy"] == pytest.approx(finetune_data.accuracy(chosen, [v["label"] for v in valid]))
    assert "CROSS-FIT: 3 folds" in (official / "gpt2" / "main" / "finetune" / "boolq" / "results.txt").read_text()


@pytest.mark.parametrize("protocol", ["official", "ours"])
def test_the_hybrid_finetunes_and_learns(protocol, model_dirs, tmp_path):
    results = finetune.run_finetune(ft_args(model_dirs["gpt_bert"], tmp_path, "--tasks", "rte",
                                            "--finetune_epochs", "4", protocol=protocol))
    assert results["options"]["finetune_pool"] == "first"  # bidirectional: read at token 0, as officially
    losses = [h["train_loss"] for h in results["tasks"]["rte"]["history"]]
    assert losses[-1] < losses[0] - 0.1, losses


# --------------------------------------------------------------------------- errors


def test_bad_input_gives_one_line_user_errors(model_dirs, tmp_path):
    out = tmp_path / "out"
    gpt2 = model_dirs["gpt2"]

    def fails(match, model_dir=gpt2, glue=GLUE, *extra):
        with pytest.raises(UserError, match=match) as e:
            finetune.run_finetune(ft_args(model_dir, out, *extra, glue=glue))
        assert "\n" not in str(e.value)

    fails("does not exist", glue=tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    fails("no task in", glue=tmp_path / "empty")
    fails(r"task 'qnli' has no qnli.train.jsonl or qnli.valid.jsonl .*--tasks", gpt2, GLUE, "--tasks", "qnli")
    half = tmp_path / "half"
    write_task(half, "rte", [{"sentence1": "a", "label": 0}], None)
    fails(r"task 'rte' has no rte.valid.jsonl", gpt2, half, "--tasks", "rte")
    fails(r"no task in", glue=half)  # a task without its valid file is not discovered either
    unlabelled = tmp_path / "unlabelled"
    write_task(unlabelled, "rte", [{"sentence1": "a", "label": 0}, {"sentence1": "b"}],
               [{"sentence1": "c", "label": 1}])
    fails(r"rte.train.jsonl:2 has no integer 'label'", glue=unlabelled)
    textless = tmp_path / "textless"
    write_task(textless, "rte", [{"idx": 1, "label": 0}], [{"sentence1": "c", "label": 1}])
    fails(r"rte.train.jsonl:1 has no text fields", glue=textless)
    shifted = tmp_path / "shifted"
    write_task(shifted, "rte", [{"sentence1": "a", "label": 1}, {"sentence1": "b", "label": 2}],
               [{"sentence1": "c", "label": 1}])
    fails(r"labels must be 0..N-1", glue=shifted)

    not_a_model = tmp_path / "not_a_model"
    not_a_model.mkdir()
    fails("not a saved model folder", not_a_model)
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    shutil.copy(gpt2 / "config.json", no_weights / "config.json")
    fails("no weights", no_weights)
    assert not out.exists()  # every check runs before anything is written


def test_cli_error_is_one_line(model_dirs, tmp_path, capsys):
    code = run.main(["finetune", "--model_dir", str(model_dirs["gpt2"]), "--glue_dir", str(tmp_path / "nowhere"),
                     "--output_dir", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.startswith("error: --glue_dir") and "\n" not in err


@pytest.mark.parametrize("model_type", ["gpt2", "bert"])
def test_finetune_dropout_sets_every_dropout_layer(model_type, model_dirs, tmp_path):
    tok = finetune.load_tokenizer(model_dirs[model_type])
    model, _ = finetune.load_classifier(model_dirs[model_type], 2, tok.pad_token_id)
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert layers and all(m.p == 0.0 for m in layers)  # pretrained with --dropout 0: none while fine-tuning
    assert finetune.set_dropout(model, 0.1) == len(layers) and all(m.p == 0.1 for m in layers)
    model.train()
    ids = torch.tensor([tok("Mira ate the apple.")["input_ids"]])
    torch.manual_seed(0)
    assert not torch.equal(model(input_ids=ids).logits, model(input_ids=ids).logits)  # dropout is active
    # Through the option: the run records it and trains differently from the model's own (no dropout).
    plain = finetune.run_finetune(ft_args(model_dirs[model_type], tmp_path / "a", "--tasks", "rte",
                                          "--finetune_epochs", "1"))
    dropped = finetune.run_finetune(ft_args(model_dirs[model_type], tmp_path / "b", "--tasks", "rte",
                                            "--finetune_epochs", "1", "--finetune_dropout", "0.3"))
    assert dropped["options"]["finetune_dropout"] == 0.3 and plain["options"]["finetune_dropout"] is None
    assert dropped["tasks"]["rte"]["history"] != plain["tasks"]["rte"]["history"]


# --------------------------------------------------------------------------- the official protocol


@pytest.mark.parametrize("model_type", ["gpt2", "llama"])
def test_the_official_head_reads_a_causal_model_at_its_last_real_token(model_type, model_dirs, tmp_path):
    """Default: the head applied to the hidden state at the last real token, whatever the padding
    after it; --finetune_pool first: at token 0, as the official code reads every model."""
    cpu = torch.device("cpu")
    for extra, pool in (((), "last"), (("--finetune_pool", "first"), "first")):
        _, _, tok, args = finetune.check_inputs(ft_args(model_dirs[model_type], tmp_path, *extra, protocol="official"))
        assert args.finetune_pool == pool
        torch.manual_seed(0)
        model, _ = finetune_protocol.load_official_classifier(model_dirs[model_type], 2, args.finetune_pool)
        model.eval()
        texts = [("Mira ate the apple.",), ("Tovan carried the heavy basket down to the river.",)]
        features = finetune_data.encode_texts(tok, texts, 64)
        assert len(features[1]["input_ids"]) > len(features[0]["input_ids"]) + 3  # the first one is padded
        with torch.no_grad():
            logits = finetune.batch_logits(model, features, tok.pad_token_id, cpu)
            for row, f in enumerate(features):
                hidden = model.transformer(input_ids=torch.tensor([f["input_ids"]])).last_hidden_state[0]
                read, other = (hidden[-1], hidden[0]) if pool == "last" else (hidden[0], hidden[-1])
                assert torch.allclose(logits[row], model.classifier(read), atol=1e-5)
                assert not torch.allclose(logits[row], model.classifier(other), atol=1e-3)


def test_official_gpt2_learns_at_its_last_token_and_not_at_its_first(model_dirs, tmp_path):
    """Why the departure: read at token 0 (the official reading) a causal model stays near chance
    on the sample RTE (balanced, majority 0.5); read at its last real token it learns."""
    best = {}
    for pool in ("last", "first"):
        results = finetune.run_finetune(ft_args(model_dirs["gpt2"], tmp_path / pool, "--tasks", "rte",
                                                "--finetune_epochs", "5", "--finetune_pool", pool,
                                                protocol="official"))
        assert results["options"]["finetune_pool"] == pool
        best[pool] = results["tasks"]["rte"]["metrics"]["accuracy"]
    assert best["last"] > 0.75 and best["first"] < 0.6, best


def test_ours_refuses_another_pool(model_dirs, tmp_path):
    with pytest.raises(UserError, match=r"--finetune_pool first needs --finetune_protocol official"):
        finetune.run_finetune(ft_args(model_dirs["gpt2"], tmp_path / "out", "--finetune_pool", "first"))
    assert not (tmp_path / "out").exists()


def test_the_official_recipe(model_dirs, tmp_path):
    """Decay 0.01 on every parameter in one group, betas (0.9, 0.999), no partial batch, and
    --finetune_dropout on the model's dropout layers while the head keeps its 0.1."""
    cpu = torch.device("cpu")
    _, _, tok, args = finetune.check_inputs(ft_args(model_dirs["bert"], tmp_path, "--finetune_dropout", "0.3",
                                                    protocol="official"))
    recipe = finetune.official_recipe(args, finetune.task_options(args, "rte"), 2, 200, tok.pad_token_id, cpu,
                                      grad_scaler(cpu, "fp32"))
    [group] = recipe.optimizer.param_groups
    assert len(group["params"]) == len(list(recipe.model.parameters()))
    assert (group["weight_decay"], group["betas"], group["lr"]) == (0.01, (0.9, 0.999), 0.0)  # warm-up starts at 0
    assert recipe.steps_per_epoch == 12 and [len(b) for b in recipe.train_batches()] == [16] * 12
    assert [len(b) for b in recipe.valid_batches(130)] == [64, 64, 2]
    body = [m.p for m in recipe.model.transformer.modules() if isinstance(m, torch.nn.Dropout)]
    assert body and set(body) == {0.3} and recipe.model.classifier.nonlinearity[4].p == 0.1


def test_the_official_layout_of_a_task_needs_its_fields(tmp_path, model_dirs):
    glue = tmp_path / "glue"
    wsc = [{"text": "Mark lied. He did.", "span1_text": "Mark", "span2_text": "He", "label": i % 2} for i in range(4)]
    write_task(glue, "wsc", wsc, [{k: v for k, v in wsc[0].items() if k != "span1_text"}])
    with pytest.raises(UserError, match=r"wsc.valid.jsonl:1 has no text field 'span1_text'.*official layout of wsc"):
        finetune.run_finetune(ft_args(model_dirs["gpt2"], tmp_path / "out", glue=glue, protocol="official"))
    texts, _ = finetune_data.read_task_file(glue / "wsc.train.jsonl", "official")
    assert texts[0] == ('Does "He" refer to "Mark" in this passage?', "Mark lied. He did.")
