"""The fine-tuning tasks' files and scores (evaluation/finetune.py runs them).

Data: `--glue_dir` holds BabyLM's jsonl files, `<task>.train.jsonl` and
`<task>.valid.jsonl` (the official `evaluation_data/full_eval/glue_filtered/`), one
JSON object per line with an integer `label` and one or two text fields.

Under the official protocol (the default) a task the official code knows is read in its
layout (evaluation/finetune_protocol.py: BoolQ (question, passage), MultiRC ("Question: q
Answer: a", paragraph), WSC ('Does "span2" refer to "span1" in this passage?', text), RTE
and MRPC (sentence1, sentence2), QQP (question1, question2), MNLI (premise, hypothesis),
...). Under ours, and for any other task, the texts of a line are taken from the first
layout whose fields are all present (non-empty strings), in this fixed order:

    paragraph + question + answer   multirc: (paragraph, "Question: q Answer: a")
    text + span1_text + span2_text  wsc: (text, 'Does "span2" refer to "span1"?')
    sentence1 + sentence2           mrpc, rte, data/sample_eval/glue
    question1 + question2           qqp
    premise + hypothesis            mnli (3 labels), cb
    question + passage              boolq
    question + sentence             qnli
    sentence1 | sentence | text     a single text (sst2, cola)

A pair is tokenized as `tokenizer(first, second)` (BERT: `<s> a </s> b </s>`; the
project's causal tokenizer simply concatenates the two) and truncated to
`--max_seq_length` tokens, the longer text first (what the official
`tokenizer(pairs, truncation=True)` does); batches are padded on the right.

Scores: accuracy; for two labels also F1 of label 1 and Matthews correlation (the
official `--metrics accuracy f1 mcc`; MNLI accuracy alone)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from evaluation.finetune_protocol import OFFICIAL_LAYOUTS, official_texts
from utils import UserError, jsonl_objects

PAIR_LAYOUTS = (("sentence1", "sentence2"), ("question1", "question2"), ("premise", "hypothesis"),
                ("question", "passage"), ("question", "sentence"))
SINGLE_FIELDS = ("sentence1", "sentence", "text")
# The metric that picks the best epoch (the official pipeline's --metric_for_valid; accuracy otherwise).
SELECTION_METRIC = {"mrpc": "f1", "qqp": "f1", "cola": "mcc"}


# --------------------------------------------------------------------------- metrics


def accuracy(preds: np.ndarray, labels: np.ndarray) -> float:
    """Share of predictions equal to the label."""
    preds, labels = np.asarray(preds), np.asarray(labels)
    return float((preds == labels).mean()) if labels.size else 0.0


def f1_score(preds: np.ndarray, labels: np.ndarray, positive: int = 1) -> float:
    """F1 of the `positive` class; 0.0 when it is neither predicted nor present (no division by zero)."""
    preds, labels = np.asarray(preds), np.asarray(labels)
    tp = int(((preds == positive) & (labels == positive)).sum())
    fp = int(((preds == positive) & (labels != positive)).sum())
    fn = int(((preds != positive) & (labels == positive)).sum())
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def matthews_corrcoef(preds: np.ndarray, labels: np.ndarray) -> float:
    """Matthews correlation for any number of classes (Gorodkin's R_K); 0.0 when
    the labels or the predictions hold a single class (the formula's 0/0)."""
    preds, labels = np.asarray(preds), np.asarray(labels)
    classes = np.union1d(preds, labels)
    # Float64 counts: the denominator grows like n**4 and would overflow int64 from n of about 55,000.
    confusion = np.zeros((classes.size, classes.size))
    np.add.at(confusion, (np.searchsorted(classes, labels), np.searchsorted(classes, preds)), 1)
    n, correct = confusion.sum(), np.trace(confusion)
    true_counts, pred_counts = confusion.sum(axis=1), confusion.sum(axis=0)
    numerator = correct * n - pred_counts @ true_counts
    denominator = math.sqrt((n * n - pred_counts @ pred_counts) * (n * n - true_counts @ true_counts))
    return float(numerator / denominator) if denominator else 0.0


def task_metrics(task: str, preds: np.ndarray, labels: np.ndarray, num_labels: int = 2) -> dict[str, float]:
    """Accuracy; for a two-label task also F1 of label 1 and Matthews correlation (the official
    pipeline's `--metrics accuracy f1 mcc`; MNLI reports accuracy alone), and MCC for cola."""
    metrics = {"accuracy": accuracy(preds, labels)}
    if num_labels == 2:
        metrics["f1"] = f1_score(preds, labels, positive=1)
    if num_labels == 2 or task == "cola":
        metrics["mcc"] = matthews_corrcoef(preds, labels)
    return metrics


# --------------------------------------------------------------------------- data


@dataclass
class TaskData:
    """One task's examples: texts (one or two strings each) and integer labels; no train
    examples (None) for a task fine-tuned by cross-fitting its valid file."""

    name: str
    train_texts: list[tuple[str, ...]] | None
    train_labels: list[int] | None
    valid_texts: list[tuple[str, ...]]
    valid_labels: list[int]
    num_labels: int


def example_texts(record: dict) -> tuple[str, ...]:
    """The text(s) of one jsonl record, from the first layout in the module docstring whose
    fields are all present. Raises KeyError when none is."""
    present = {key for key, value in record.items() if isinstance(value, str) and value.strip()}
    if {"paragraph", "question", "answer"} <= present:  # multirc: does this answer fit the question?
        return record["paragraph"], f"Question: {record['question']} Answer: {record['answer']}"
    if {"text", "span1_text", "span2_text"} <= present:  # wsc: does the pronoun (span2) mean span1?
        return record["text"], f'Does "{record["span2_text"]}" refer to "{record["span1_text"]}"?'
    for first, second in PAIR_LAYOUTS:
        if first in present and second in present:
            return record[first], record[second]
    for field in SINGLE_FIELDS:
        if field in present:
            return (record[field],)
    raise KeyError(f"no text fields among {sorted(record)}")


def record_texts(task: str, record: dict, protocol: str = "ours") -> tuple[str, ...]:
    """A record's text(s): the official layout of `task` under the official protocol (when the
    task has one, evaluation/finetune_protocol.py), else ours (`example_texts`). KeyError when
    a field is missing."""
    texts = official_texts(task, record) if protocol == "official" else None
    return example_texts(record) if texts is None else texts


def read_task_file(path: Path, protocol: str = "ours") -> tuple[list[tuple[str, ...]], list[int]]:
    """Texts and labels of one `<task>.<split>.jsonl` file; UserError on a malformed line."""
    texts, labels = [], []
    task = path.name.split(".")[0]
    for where, record in jsonl_objects(path):
        label = record.get("label")
        # JSON true/false are accepted as 1/0 (bool is an int subclass); anything else is not.
        if not isinstance(label, int):
            raise UserError(f"{where} has no integer 'label' (found {label!r}): every line needs one")
        try:
            texts.append(record_texts(task, record, protocol))
        except KeyError as e:
            if protocol == "official" and task in OFFICIAL_LAYOUTS:
                raise UserError(f"{where} has no text field {e} (found {sorted(record)}): the official layout of "
                                f"{task} needs it (see evaluation/finetune_protocol.py)") from None
            raise UserError(f"{where} has no text fields (found {sorted(record)}): use sentence1[/sentence2], "
                            "premise/hypothesis, question/passage, ... (see evaluation/finetune_data.py)") from None
        labels.append(int(label))
    if not labels:
        raise UserError(f"{path} holds no examples: regenerate it or leave the task out of --tasks")
    return texts, labels


def find_tasks(glue_dir: Path, requested: list[str] | None, cross_fit: int = 0) -> list[str]:
    """The requested tasks, or every task found: each needs <task>.valid.jsonl and, unless
    `cross_fit` (K folds of the valid file), <task>.train.jsonl."""
    if not glue_dir.is_dir():
        raise UserError(f"--glue_dir '{glue_dir}' does not exist: pass the folder that holds "
                        "<task>.train.jsonl and <task>.valid.jsonl (e.g. data/sample_eval/glue)")
    valid = sorted(p.name.removesuffix(".valid.jsonl") for p in glue_dir.glob("*.valid.jsonl"))
    complete = [t for t in valid if (glue_dir / f"{t}.train.jsonl").is_file()]
    usable = valid if cross_fit else complete
    if requested is None:
        if not usable:
            raise UserError(f"no task in '{glue_dir}' has both <task>.train.jsonl and <task>.valid.jsonl: "
                            "check --glue_dir")
        return usable
    for task in requested:
        missing = [p.name for p in (glue_dir / f"{task}.train.jsonl", glue_dir / f"{task}.valid.jsonl")
                   if not p.is_file() and not (cross_fit and p.name.endswith(".train.jsonl"))]
        if missing == [f"{task}.train.jsonl"] and task in valid:
            raise UserError(f"task '{task}' has no {task}.train.jsonl in '{glue_dir}' (only its valid file): add "
                            "the train file, or pass --finetune_cross_fit K to train on K-1 folds of the valid file "
                            "and predict the K-th (not the official protocol)")
        if missing:
            raise UserError(f"task '{task}' has no {' or '.join(missing)} in '{glue_dir}': "
                            f"pick --tasks from {usable or 'none found'} or fix --glue_dir")
    return list(dict.fromkeys(requested))  # drop repeats, keep the order given


def load_task(glue_dir: Path, task: str, protocol: str = "ours") -> TaskData:
    """Read a task's files (train only when present) in the protocol's text layout and check
    the labels are 0..N-1."""
    train_texts = train_labels = None
    if (glue_dir / f"{task}.train.jsonl").is_file():
        train_texts, train_labels = read_task_file(glue_dir / f"{task}.train.jsonl", protocol)
    valid_texts, valid_labels = read_task_file(glue_dir / f"{task}.valid.jsonl", protocol)
    seen = set(valid_labels if train_labels is None else train_labels)
    num_labels = len(seen)
    expected = set(range(num_labels))
    if num_labels < 2 or seen != expected or not set(valid_labels) <= expected:
        raise UserError(f"task '{task}': labels must be 0..N-1 with at least two in train; found train "
                        f"{sorted(set(train_labels or []))}, valid {sorted(set(valid_labels))}: fix the label column")
    return TaskData(task, train_texts, train_labels, valid_texts, valid_labels, num_labels)


# --------------------------------------------------------------------------- tokens


def encode_texts(tokenizer, texts: list[tuple[str, ...]], max_length: int) -> list[dict[str, list[int]]]:
    """Tokenize single texts as tokenizer(a) and pairs as tokenizer(a, b), truncated to `max_length`."""
    encoded: list[dict[str, list[int]] | None] = [None] * len(texts)
    for arity in (1, 2):  # one batched call per kind (a file rarely mixes them)
        index = [i for i, t in enumerate(texts) if len(t) == arity]
        if not index:
            continue
        columns = [[texts[i][k] for i in index] for k in range(arity)]
        batch = tokenizer(*columns, truncation=True, max_length=max_length)
        for j, i in enumerate(index):
            encoded[i] = {key: batch[key][j] for key in batch.keys()}
    return encoded


def collate(features: list[dict[str, list[int]]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Pad a batch on the right: input ids with the pad id, attention mask and token types with 0.

    Right padding keeps every real token at the position it has alone, so a causal
    model's hidden state at the last real token does not depend on the batch."""
    width = max(len(f["input_ids"]) for f in features)
    batch = {}
    for key in features[0]:
        fill = pad_token_id if key == "input_ids" else 0
        batch[key] = torch.tensor([f[key] + [fill] * (width - len(f[key])) for f in features], dtype=torch.long)
    return batch
