"""Fine-tune a saved model on the (Super)GLUE tasks of BabyLM (the finetune action).

Data: `--glue_dir` holds BabyLM's jsonl files, `<task>.train.jsonl` and
`<task>.valid.jsonl` (the official `evaluation_data/full_eval/glue_filtered/`), one
JSON object per line with an integer `label` and one or two text fields. The texts
of a line are taken from the first layout whose fields are all present (non-empty
strings), in this fixed order:

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
`--max_seq_length` tokens, the longer text first.

Defaults are the official pipeline's (eval_finetuning.sh; evaluation/layout.py):
learning rate 3e-5, batch 32 (16 for boolq and multirc), 10 epochs (30 for wsc), seed
42, every epoch run, the best epoch chosen on the valid file by accuracy (F1 of label 1
for mrpc and qqp, MCC for cola) and its predictions on that file kept. An explicit
--finetune_learning_rate / --finetune_batch_size / --finetune_epochs applies to every task.

Model: for every task the model is loaded afresh from `--model_dir` with a new N-way
head (N = the labels of the train file), so tasks never see each other's updates.
GPT-2 and Llama classify from the LAST real token (`AutoModelForSequenceClassification`
finds it as the rightmost non-pad token; batches are padded on the right). The official
pipeline reads the first token of every model, which leaves a causal model at the
majority class, since its first token sees nothing else (official issue #38): we
deviate there on purpose. BERT and the hybrid (bidirectional, `hybrid_model.
GPTBertForSequenceClassification`) classify from the first token, as officially.

A task with a valid file but no train file (the obtainable BoolQ and MultiRC) is
refused, unless `--finetune_cross_fit K`: the valid file is split into K folds (a
seeded permutation) and each fold is predicted by a model trained on the other folds,
its best epoch chosen on that fold, so every item is predicted by a model that never
saw it. That is not the official protocol: the results say `cross_fit: K` and a
submission built from them must be `--partial`.

Training: AdamW (training.setup.make_optimizer), linear warm-up for `--warmup_ratio`
of the planned steps then cosine decay to 0, gradient clipping, --precision, data
order from a torch.Generator seeded with `--seed`. `--finetune_patience N` stops a task
after N epochs without a better score (default 0: never, as officially).

Output: `<output_dir>/finetune_results.json` (rewritten after every task), `log.txt`,
TensorBoard tags `finetune/<task>/{train_loss,eval_loss,eval_accuracy,eval_f1,
eval_mcc,lr}` per epoch and `finetune/<task>/best_<metric>`; and the official layout
under the model's run (evaluation/layout.py),
`<run>/results/<run name>/<revision>/finetune/<task>/results.txt` and `predictions.json`
(`{"<task>": {"predictions": [{"id": "<task>_<i>", "pred": <label>}, ...]}}`, the best
epoch's prediction for every valid item in file order). With the same seed on the same
device, two runs give the same losses, metrics and predictions."""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers import get_cosine_schedule_with_warmup as cosine_schedule
from transformers.utils import logging as hf_logging

from custom_models import check_tokenizer_fits, is_hybrid, saved_model_type
from evaluation.layout import (
    FINETUNE_DEFAULTS,
    FINETUNE_TASK_DEFAULTS,
    default_results_root,
    finetune_dir,
    model_name_and_revision,
)
from tokenizer import load_tokenizer as load_saved_tokenizer
from training.hardware import autocast, grad_scaler, log_choice
from training.model_card import refresh_model_card
from training.setup import make_optimizer, optimizer_step
from utils import (
    FINETUNE_RESULTS,
    TENSORBOARD_DIR,
    RunLogger,
    UserError,
    get_device,
    jsonl_objects,
    set_seed,
    write_json_atomic,
    write_text_atomic,
)

PAIR_LAYOUTS = (("sentence1", "sentence2"), ("question1", "question2"), ("premise", "hypothesis"),
                ("question", "passage"), ("question", "sentence"))
SINGLE_FIELDS = ("sentence1", "sentence", "text")
# The metric that picks the best epoch (the official pipeline's --metric_for_valid; accuracy otherwise).
SELECTION_METRIC = {"mrpc": "f1", "qqp": "f1", "cola": "mcc"}
# The options that shape a fine-tuning run, recorded in the results file.
OPTION_NAMES = ("tasks", "finetune_epochs", "finetune_learning_rate", "finetune_batch_size", "finetune_patience",
                "finetune_cross_fit", "max_seq_length", "seed", "device", "precision", "weight_decay", "warmup_ratio",
                "adam_beta1", "adam_beta2", "adam_epsilon", "grad_norm_clip", "attn_implementation", "finetune_dropout")


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


def task_options(args: argparse.Namespace, task: str) -> dict[str, float | int]:
    """A task's learning rate, batch size and epochs: the option where given, else the official
    default for that task (evaluation/layout.py)."""
    official = {**FINETUNE_DEFAULTS, **FINETUNE_TASK_DEFAULTS.get(task, {})}
    given = {"learning_rate": args.finetune_learning_rate, "batch_size": args.finetune_batch_size,
             "epochs": args.finetune_epochs}
    return {name: official[name] if value is None else value for name, value in given.items()}


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


def read_task_file(path: Path) -> tuple[list[tuple[str, ...]], list[int]]:
    """Texts and labels of one `<task>.<split>.jsonl` file; UserError on a malformed line."""
    texts, labels = [], []
    for where, record in jsonl_objects(path):
        label = record.get("label")
        # JSON true/false are accepted as 1/0 (bool is an int subclass); anything else is not.
        if not isinstance(label, int):
            raise UserError(f"{where} has no integer 'label' (found {label!r}): every line needs one")
        try:
            texts.append(example_texts(record))
        except KeyError:
            raise UserError(f"{where} has no text fields (found {sorted(record)}): use sentence1[/sentence2], "
                            "premise/hypothesis, question/passage, ... (see evaluation/finetune.py)") from None
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


def load_task(glue_dir: Path, task: str) -> TaskData:
    """Read a task's files (train only when present) and check the labels are 0..N-1."""
    train_texts = train_labels = None
    if (glue_dir / f"{task}.train.jsonl").is_file():
        train_texts, train_labels = read_task_file(glue_dir / f"{task}.train.jsonl")
    valid_texts, valid_labels = read_task_file(glue_dir / f"{task}.valid.jsonl")
    seen = set(valid_labels if train_labels is None else train_labels)
    num_labels = len(seen)
    expected = set(range(num_labels))
    if num_labels < 2 or seen != expected or not set(valid_labels) <= expected:
        raise UserError(f"task '{task}': labels must be 0..N-1 with at least two in train; found train "
                        f"{sorted(set(train_labels or []))}, valid {sorted(set(valid_labels))}: fix the label column")
    return TaskData(task, train_texts, train_labels, valid_texts, valid_labels, num_labels)


# --------------------------------------------------------------------------- model and batches


def first_line(error: Exception) -> str:
    """The first line of an exception's message (transformers' messages run over many lines)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def check_model_dir(model_dir: Path) -> PretrainedConfig:
    """The config of `model_dir`; UserError unless the folder holds a config, weights and a
    tokenizer (checked before anything is written)."""
    hybrid = is_hybrid(saved_model_type(model_dir))  # UserError when there is no config.json
    if not any(model_dir.glob("*.safetensors")) and not any(model_dir.glob("pytorch_model*.bin")):
        raise UserError(f"'{model_dir}' has a config.json but no weights (*.safetensors): "
                        "pass a complete saved model folder, e.g. save_dir/step2_1/best_model")
    if not any((model_dir / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
        raise UserError(f"'{model_dir}' has no tokenizer: pass a model folder saved with its tokenizer "
                        "(a training step's best_model)")
    try:
        return AutoConfig.from_pretrained(model_dir, trust_remote_code=hybrid)  # the hybrid's own code
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read the config in '{model_dir}' ({first_line(e)}): "
                        "pass a saved GPT-2, Llama, BERT or GPT-BERT model folder") from None


def load_tokenizer(model_dir: Path):
    """The model folder's tokenizer, with a pad token (the eos token when it has none)."""
    tokenizer = load_saved_tokenizer(model_dir, "--model_dir")
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise UserError(f"the tokenizer in '{model_dir}' has neither a pad nor an eos token, "
                            "so batches cannot be padded: save it with a pad token")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def set_dropout(model: torch.nn.Module, p: float) -> int:
    """Set every dropout layer of `model` to `p` (--finetune_dropout): the pipeline pretrains
    without dropout, so its saved models fine-tune without any unless asked (the official
    script keeps the saved config's). Returns how many layers were set."""
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    for layer in layers:
        layer.p = p
    return len(layers)


def load_classifier(model_dir: str | Path, num_labels: int, pad_token_id: int,
                    attn_implementation: str = "eager") -> tuple[PreTrainedModel, list[str]]:
    """`model_dir` with a fresh `num_labels`-way classification head, in float32.

    Returns the model and the names of the freshly initialised weights. `pad_token_id`
    (the tokenizer's) is set when the config lacks one: GPT-2/Llama heads find the last
    real token as the rightmost token that is not `config.pad_token_id`, and refuse
    batches without it. Batches must then be padded with `config.pad_token_id`. A hybrid
    folder loads into the repository's `GPTBertForSequenceClassification` (its own saved
    code may predate the class)."""
    # transformers prints a table of the new/unused weights and a progress bar at every load;
    # the caller logs one line about the new weights instead.
    verbosity, bar_enabled = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        if is_hybrid(saved_model_type(model_dir)):
            from hybrid_model import GPTBertForSequenceClassification
            model, info = GPTBertForSequenceClassification.from_pretrained(
                model_dir, num_labels=num_labels, dtype=torch.float32, output_loading_info=True)
        else:
            model, info = AutoModelForSequenceClassification.from_pretrained(
                model_dir, num_labels=num_labels, dtype=torch.float32, attn_implementation=attn_implementation,
                output_loading_info=True)
    # Broad on purpose, as custom_models.load_model: a damaged folder raises many types.
    except Exception as e:
        raise UserError(f"cannot load '{model_dir}' as a sequence classifier ({first_line(e)}): "
                        "pass a saved GPT-2, Llama, BERT or GPT-BERT model folder") from None
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar_enabled:
            hf_logging.enable_progress_bar()
    if model.config.pad_token_id is None:
        model.config.pad_token_id = pad_token_id
    return model, sorted(info["missing_keys"])


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


def batch_logits(model: PreTrainedModel, features: list[dict[str, list[int]]], pad_token_id: int,
                 device: torch.device, precision: str = "fp32") -> torch.Tensor:
    """Classification logits (float32) of one batch of encoded examples."""
    batch = {k: v.to(device) for k, v in collate(features, pad_token_id).items()}
    with autocast(device, precision):
        logits = model(**batch).logits
    return logits.float()


@torch.no_grad()
def evaluate(model: PreTrainedModel, features: list[dict[str, list[int]]], labels: list[int], task: str,
             batch_size: int, pad_token_id: int, device: torch.device,
             precision: str = "fp32") -> tuple[dict[str, float], np.ndarray]:
    """Mean loss and the task's metrics of `model` on the encoded examples, and its predictions."""
    was_training = model.training
    model.eval()
    preds, total_loss = [], 0.0
    for start in range(0, len(features), batch_size):
        logits = batch_logits(model, features[start:start + batch_size], pad_token_id, device, precision)
        gold = torch.tensor(labels[start:start + batch_size], device=device)
        total_loss += F.cross_entropy(logits, gold, reduction="sum").item()
        preds.append(logits.argmax(-1).cpu().numpy())
    model.train(was_training)
    preds = np.concatenate(preds)
    metrics = task_metrics(task, preds, np.asarray(labels), model.config.num_labels)
    return {"loss": total_loss / len(features), **metrics}, preds


# --------------------------------------------------------------------------- training


def _log_epoch(logger: RunLogger, task: str, record: dict, scores: dict, lr: float) -> None:
    """One fine-tuning epoch's losses and scores, to TensorBoard (finetune/<task>/...) and the log."""
    tags = {"train_loss": record["train_loss"], "eval_loss": record["eval_loss"],
            **{f"eval_{name}": value for name, value in scores.items()}, "lr": lr}
    logger.metrics(record["epoch"], {f"finetune/{task}/{name}": value for name, value in tags.items()})
    shown = " ".join(f"{k}={v:.4f}" for k, v in record.items() if k != "epoch")
    logger.info(f"{task} epoch {record['epoch']}: {shown}")


def train_and_select(args: argparse.Namespace, task: str, options: dict, num_labels: int,
                     train: tuple[list[dict], list[int]], valid: tuple[list[dict], list[int]], pad_token_id: int,
                     device: torch.device, logger: RunLogger, desc: str) -> tuple[dict, np.ndarray, list[dict]]:
    """Fine-tune a fresh copy of `--model_dir` on `train`, score `valid` after every epoch, and
    return the best epoch's record, its predictions on `valid`, and every epoch's record."""
    (train_features, train_labels), (valid_features, valid_labels) = train, valid
    set_seed(args.seed)  # the new head's initial weights and dropout depend only on --seed
    model, new_weights = load_classifier(args.model_dir, num_labels, pad_token_id, args.attn_implementation)
    if args.finetune_dropout is not None:
        set_dropout(model, args.finetune_dropout)
    model.to(device).train()
    # Pad with the id the head skips; it is the tokenizer's unless the saved config says otherwise.
    pad_id = model.config.pad_token_id
    logger.info(f"{desc}: {len(train_features)} train / {len(valid_features)} valid examples, {num_labels} labels; "
                f"{type(model).__name__} with new weights {', '.join(new_weights)}")
    optimizer = make_optimizer(model, options["learning_rate"], args.weight_decay,
                               (args.adam_beta1, args.adam_beta2), args.adam_epsilon)
    batch_size = options["batch_size"]
    steps_per_epoch = math.ceil(len(train_features) / batch_size)
    total_steps = options["epochs"] * steps_per_epoch  # planned; early stopping may end sooner
    scheduler = cosine_schedule(optimizer, round(args.warmup_ratio * total_steps), total_steps)
    order = torch.Generator().manual_seed(args.seed)  # data order depends only on --seed
    scaler = grad_scaler(device, args.precision)
    selection = SELECTION_METRIC.get(task, "accuracy")

    history: list[dict] = []
    best: dict | None = None
    best_preds = np.zeros(0)
    epochs_without_gain = 0
    bar = tqdm(total=total_steps, desc=f"finetune {desc}", unit="step", dynamic_ncols=True)
    for epoch in range(1, options["epochs"] + 1):
        loss_sum = 0.0
        shuffled = torch.randperm(len(train_features), generator=order).tolist()
        for start in range(0, len(shuffled), batch_size):
            chosen = shuffled[start:start + batch_size]
            logits = batch_logits(model, [train_features[i] for i in chosen], pad_id, device, args.precision)
            loss = F.cross_entropy(logits, torch.tensor([train_labels[i] for i in chosen], device=device))
            scaler.scale(loss).backward()
            optimizer_step(model, optimizer, scheduler, scaler, args.grad_norm_clip)
            loss_sum += loss.item() * len(chosen)
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{loss.item():.3f}")

        scores, preds = evaluate(model, valid_features, valid_labels, task, batch_size, pad_id, device,
                                 args.precision)
        record = {"epoch": epoch, "train_loss": loss_sum / len(train_features), "eval_loss": scores.pop("loss"),
                  **scores}
        history.append(record)
        _log_epoch(logger, desc, record, scores, scheduler.get_last_lr()[0])

        if best is None or record[selection] > best[selection]:  # strict: a tie keeps the earlier epoch
            best, best_preds, epochs_without_gain = record, preds, 0
        else:
            epochs_without_gain += 1
            if args.finetune_patience > 0 and epochs_without_gain >= args.finetune_patience:
                logger.info(f"{desc}: no better {selection} in {epochs_without_gain} epochs; stopping early")
                break
    bar.close()
    return best, best_preds, history


def cross_fit_folds(size: int, folds: int, seed: int) -> list[list[int]]:
    """`folds` disjoint lists of indices covering range(size), from a permutation seeded by `seed`."""
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed)).tolist()
    return [sorted(order[k::folds]) for k in range(folds)]


def _subset(examples: tuple[list[dict], list[int]], index: list[int]) -> tuple[list[dict], list[int]]:
    """The encoded examples and labels at `index`."""
    return [examples[0][i] for i in index], [examples[1][i] for i in index]


def finetune_task(args: argparse.Namespace, data: TaskData, tokenizer, max_length: int, device: torch.device,
                  logger: RunLogger) -> tuple[dict, list[int]]:
    """Fine-tune on one task (on its train file, or by cross-fitting its valid file); returns its
    results entry and the best epoch's prediction for every valid item, in file order."""
    started = time.time()
    task, options = data.name, task_options(args, data.name)
    selection = SELECTION_METRIC.get(task, "accuracy")
    valid = (encode_texts(tokenizer, data.valid_texts, max_length), data.valid_labels)
    if data.train_texts is not None:
        train = (encode_texts(tokenizer, data.train_texts, max_length), data.train_labels)
        best, preds, history = train_and_select(args, task, options, data.num_labels, train, valid,
                                                tokenizer.pad_token_id, device, logger, task)
        metrics = {k: v for k, v in best.items() if k not in ("epoch", "train_loss")}
        entry = {"best_epoch": best["epoch"], "epochs_run": len(history), "history": history,
                 "train_size": len(data.train_labels),
                 "steps": len(history) * math.ceil(len(data.train_labels) / options["batch_size"])}
    else:
        if len(data.valid_labels) < 2 * args.finetune_cross_fit:
            raise UserError(f"task '{task}': {len(data.valid_labels)} valid items are too few for "
                            f"--finetune_cross_fit {args.finetune_cross_fit}: lower K")
        preds = np.zeros(len(data.valid_labels), dtype=np.int64)
        folds = []
        for k, held_out in enumerate(cross_fit_folds(len(data.valid_labels), args.finetune_cross_fit, args.seed)):
            kept = sorted(set(range(len(data.valid_labels))) - set(held_out))
            best, fold_preds, history = train_and_select(args, task, options, data.num_labels,
                                                         _subset(valid, kept), _subset(valid, held_out),
                                                         tokenizer.pad_token_id, device, logger, f"{task}_fold{k + 1}")
            preds[held_out] = fold_preds
            folds.append({"best_epoch": best["epoch"], "epochs_run": len(history), "history": history,
                          "train_size": len(kept), "valid_size": len(held_out)})
        # One score over every item, each predicted by the model that never saw it.
        metrics = task_metrics(task, preds, np.asarray(data.valid_labels), data.num_labels)
        entry = {"cross_fit": args.finetune_cross_fit, "folds": folds,
                 "epochs_run": max(f["epochs_run"] for f in folds)}
    logger.metrics(entry.get("best_epoch", 0), {f"finetune/{task}/best_{k}": v for k, v in metrics.items()})
    logger.info(f"{task}: " + (f"best epoch {entry['best_epoch']}" if "best_epoch" in entry
                               else f"{args.finetune_cross_fit}-fold cross-fit") + f" by {selection}: "
                + " ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return {"selection_metric": selection, "metrics": metrics, "num_labels": data.num_labels,
            "valid_size": len(data.valid_labels), "options": options, **entry,
            "seconds": round(time.time() - started, 2)}, [int(p) for p in preds]


def results_text(task: str, entry: dict) -> str:
    """results.txt of the official layout: the best epoch's validation scores, one per line."""
    lines = [f"TASK: {task}", f"SELECTED BY: {entry['selection_metric']}"]
    if "cross_fit" in entry:
        lines.append(f"CROSS-FIT: {entry['cross_fit']} folds of the valid file (not the official protocol)")
    else:
        lines.append(f"BEST EPOCH: {entry['best_epoch']}")
    lines += [f"{name.upper()}: {value:.4f}" for name, value in entry["metrics"].items()]
    return "\n".join(lines) + "\n"


def write_official(root: Path, model_name: str, revision: str, task: str, entry: dict, preds: list[int]) -> Path:
    """<root>/<model name>/<revision>/finetune/<task>/{predictions.json, results.txt}."""
    out = finetune_dir(root, model_name, revision, task)
    write_json_atomic(out / "predictions.json",
                      {task: {"predictions": [{"id": f"{task}_{i}", "pred": p} for i, p in enumerate(preds)]}})
    write_text_atomic(out / "results.txt", results_text(task, entry))
    return out


def run_finetune(args: argparse.Namespace) -> dict:
    """The finetune action: fine-tune `--model_dir` on every task of `--glue_dir` (or `--tasks`).

    Writes `<output_dir>/finetune_results.json` (after each task, so finished tasks are
    kept if a later one fails) and each task's official results.txt and predictions.json
    (module docstring), and returns the results: `{"model_dir", "glue_dir", "device",
    "max_tokens", "options", "official_dir", "tasks": {task: {"selection_metric", "metrics",
    "num_labels", "valid_size", "options", "epochs_run", "seconds", and "best_epoch",
    "train_size", "steps", "history", or "cross_fit", "folds"}}}`. Every input check runs
    before anything is written."""
    for name in ("finetune_epochs", "finetune_batch_size", "max_seq_length"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise UserError(f"--{name} must be at least 1, got {getattr(args, name)}")
    glue_dir, model_dir, out = Path(args.glue_dir), Path(args.model_dir), Path(args.output_dir)
    tasks = find_tasks(glue_dir, args.tasks, args.finetune_cross_fit)
    data = [load_task(glue_dir, task) for task in tasks]  # a bad line in any task fails now, not hours later
    config = check_model_dir(model_dir)
    tokenizer = load_tokenizer(model_dir)
    check_tokenizer_fits(config, tokenizer, model_dir, needs_mask=False)
    device = get_device(args.device)
    # Load the weights once before the run folder exists: a damaged model must leave nothing behind.
    load_classifier(model_dir, 2, tokenizer.pad_token_id, args.attn_implementation)

    logger = RunLogger(out)
    try:
        max_length = args.max_seq_length
        positions = getattr(config, "max_position_embeddings", None)
        if positions is not None and max_length > positions:
            logger.info(f"--max_seq_length {max_length} exceeds the model's {positions} positions; "
                        f"truncating inputs to {positions} tokens")
            max_length = positions
        logger.info(f"fine-tuning {model_dir} on {', '.join(tasks)} on {device}")
        if args.tasks is None and not args.finetune_cross_fit:
            for p in sorted(glue_dir.glob("*.valid.jsonl")):
                task = p.name.removesuffix(".valid.jsonl")
                if task not in tasks:
                    logger.warning(f"{task} left out: it has a valid file but no {task}.train.jsonl (add it, or pass "
                                   "--finetune_cross_fit K; a submission needs all seven tasks)")
        log_choice(logger, args)
        logger.hparams(vars(args))
        root = Path(args.results_dir) if args.results_dir else default_results_root(model_dir)
        model_name, revision = model_name_and_revision(model_dir)
        results = {"model_dir": str(model_dir), "glue_dir": str(glue_dir), "device": str(device),
                   "max_tokens": max_length, "options": {name: getattr(args, name) for name in OPTION_NAMES},
                   "official_dir": str(finetune_dir(root, model_name, revision, "").parent), "tasks": {}}
        for task_data in data:
            entry, preds = finetune_task(args, task_data, tokenizer, max_length, device, logger)
            results["tasks"][task_data.name] = entry
            write_official(root, model_name, revision, task_data.name, entry, preds)
            write_json_atomic(out / FINETUNE_RESULTS, results)
        refresh_model_card(model_dir)  # the card's evaluation table
        logger.info(f"done: results in {out / FINETUNE_RESULTS}; TensorBoard: {out / TENSORBOARD_DIR}")
        return results
    finally:
        logger.close()
