"""Fine-tune a saved model on (Super)GLUE-style classification tasks (the finetune action).

Data: `--glue_dir` holds BabyLM's jsonl files, `<task>.train.jsonl` and
`<task>.valid.jsonl`, one JSON object per line with an integer `label` and one
or two text fields. The texts of a line are taken from the first layout whose
fields are all present (non-empty strings), in this fixed order:

    paragraph + question + answer   multirc: (paragraph, "question answer")
    text + span1_text + span2_text  wsc: (text, "span2_text refers to span1_text")
    sentence1 + sentence2           BabyLM's GLUE files (mrpc, rte, ...), data/sample_eval/glue
    question1 + question2           qqp
    premise + hypothesis            mnli, rte, cb
    question + passage              boolq
    question + sentence             qnli
    sentence1 | sentence | text     a single text (sst2, cola)

A pair is tokenized as `tokenizer(first, second)` (BERT: `<s> a </s> b </s>`;
the project's causal tokenizer simply concatenates the two) and truncated to
`--max_seq_length` tokens. Labels must be 0..N-1, where N is the number of
distinct labels in the train file.

Model: for every task the model is loaded afresh from `--model_dir` through
`AutoModelForSequenceClassification` with a new N-way head, so tasks never see
each other's updates. GPT-2 and Llama classify from the last real token: they
find it as the rightmost token that is not the pad token, so the config must
know the pad id (set from the tokenizer when missing) and batches are padded on
the right. BERT classifies from its first token, whatever the padding.

Training: AdamW (training.setup.make_optimizer, peak `--finetune_learning_rate`),
linear warm-up for `--warmup_ratio` of the planned steps then cosine decay to 0,
gradient clipping, --precision (bf16/fp16 autocast, fp16 with a gradient scaler), data order from a torch.Generator
seeded with `--seed`. After every epoch the valid split is scored; the best
epoch by the task's selection metric (MCC for cola, F1 of label 1 for mrpc and
qqp, accuracy otherwise; a tie keeps the earlier epoch) is kept, and a task
stops after `--finetune_patience` epochs without a better score (0: never).
As in BabyLM's own pipeline, the reported numbers are those of the best epoch
on the valid split.

Output: `<output_dir>/finetune_results.json` (rewritten after every task),
`log.txt`, and TensorBoard tags `finetune/<task>/{train_loss,eval_loss,
eval_accuracy,eval_f1,eval_mcc,lr}` per epoch and `finetune/<task>/best_<metric>`
at the best epoch. With the same seed on the same device, two runs give the
same losses and metrics."""

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
from tokenizer import load_tokenizer as load_saved_tokenizer
from training.hardware import autocast, grad_scaler, log_choice
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
)

PAIR_LAYOUTS = (("sentence1", "sentence2"), ("question1", "question2"), ("premise", "hypothesis"),
                ("question", "passage"), ("question", "sentence"))
SINGLE_FIELDS = ("sentence1", "sentence", "text")
# Metrics beyond accuracy, and the metric that picks the best epoch, per task (GLUE's headline metrics).
EXTRA_METRICS = {"mrpc": ("f1",), "qqp": ("f1",), "cola": ("mcc",)}
SELECTION_METRIC = {"mrpc": "f1", "qqp": "f1", "cola": "mcc"}
# The options that shape a fine-tuning run, recorded in the results file.
OPTION_NAMES = ("tasks", "finetune_epochs", "finetune_learning_rate", "finetune_batch_size", "finetune_patience",
                "max_seq_length", "seed", "device", "precision", "weight_decay", "warmup_ratio", "adam_beta1",
                "adam_beta2", "adam_epsilon", "grad_norm_clip", "attn_implementation")


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


def task_metrics(task: str, preds: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy, plus F1 of label 1 for mrpc/qqp and Matthews correlation for cola."""
    metrics = {"accuracy": accuracy(preds, labels)}
    extra = EXTRA_METRICS.get(task, ())
    if "f1" in extra:
        metrics["f1"] = f1_score(preds, labels, positive=1)
    if "mcc" in extra:
        metrics["mcc"] = matthews_corrcoef(preds, labels)
    return metrics


# --------------------------------------------------------------------------- data


@dataclass
class TaskData:
    """One task's examples: texts (one or two strings each) and integer labels."""

    name: str
    train_texts: list[tuple[str, ...]]
    train_labels: list[int]
    valid_texts: list[tuple[str, ...]]
    valid_labels: list[int]
    num_labels: int


def example_texts(record: dict) -> tuple[str, ...]:
    """The text(s) of one jsonl record, from the first layout in the module docstring whose
    fields are all present. Raises KeyError when none is."""
    present = {key for key, value in record.items() if isinstance(value, str) and value.strip()}
    if {"paragraph", "question", "answer"} <= present:  # multirc: does this answer fit the question?
        return record["paragraph"], f"{record['question']} {record['answer']}"
    if {"text", "span1_text", "span2_text"} <= present:  # wsc: does the pronoun (span2) mean span1?
        return record["text"], f"{record['span2_text']} refers to {record['span1_text']}"
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


def find_tasks(glue_dir: Path, requested: list[str] | None) -> list[str]:
    """The requested tasks (each must have both files), or every task with both files present."""
    if not glue_dir.is_dir():
        raise UserError(f"--glue_dir '{glue_dir}' does not exist: pass the folder that holds "
                        "<task>.train.jsonl and <task>.valid.jsonl (e.g. data/sample_eval/glue)")
    complete = sorted(p.name.removesuffix(".train.jsonl") for p in glue_dir.glob("*.train.jsonl")
                      if (glue_dir / p.name.replace(".train.jsonl", ".valid.jsonl")).is_file())
    if requested is None:
        if not complete:
            raise UserError(f"no task in '{glue_dir}' has both <task>.train.jsonl and <task>.valid.jsonl: "
                            "check --glue_dir")
        return complete
    for task in requested:
        missing = [p.name for p in (glue_dir / f"{task}.train.jsonl", glue_dir / f"{task}.valid.jsonl")
                   if not p.is_file()]
        if missing:
            raise UserError(f"task '{task}' has no {' or '.join(missing)} in '{glue_dir}': "
                            f"pick --tasks from {complete or 'none found'} or fix --glue_dir")
    return list(dict.fromkeys(requested))  # drop repeats, keep the order given


def load_task(glue_dir: Path, task: str) -> TaskData:
    """Read a task's train and valid files and check the labels are 0..N-1."""
    train_texts, train_labels = read_task_file(glue_dir / f"{task}.train.jsonl")
    valid_texts, valid_labels = read_task_file(glue_dir / f"{task}.valid.jsonl")
    num_labels = len(set(train_labels))
    expected = set(range(num_labels))
    if num_labels < 2 or set(train_labels) != expected or not set(valid_labels) <= expected:
        raise UserError(f"task '{task}': labels must be 0..N-1 with at least two in train; found train "
                        f"{sorted(set(train_labels))}, valid {sorted(set(valid_labels))}: fix the label column")
    return TaskData(task, train_texts, train_labels, valid_texts, valid_labels, num_labels)


# --------------------------------------------------------------------------- model and batches


def first_line(error: Exception) -> str:
    """The first line of an exception's message (transformers' messages run over many lines)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def check_model_dir(model_dir: Path) -> PretrainedConfig:
    """The config of `model_dir`; UserError unless the folder holds a config, weights and a
    tokenizer (checked before anything is written)."""
    if is_hybrid(saved_model_type(model_dir)):  # UserError when there is no config.json
        raise UserError(f"'{model_dir}' is a hybrid gpt_bert model, which fine-tuning does not support yet (it has "
                        "no sequence-classification head): fine-tune a GPT-2, Llama or BERT step")
    if not any(model_dir.glob("*.safetensors")) and not any(model_dir.glob("pytorch_model*.bin")):
        raise UserError(f"'{model_dir}' has a config.json but no weights (*.safetensors): "
                        "pass a complete saved model folder, e.g. save_dir/step2_1/best_model")
    if not any((model_dir / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
        raise UserError(f"'{model_dir}' has no tokenizer: pass a model folder saved with its tokenizer "
                        "(a training step's best_model)")
    try:
        return AutoConfig.from_pretrained(model_dir)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read the config in '{model_dir}' ({first_line(e)}): "
                        "pass a saved GPT-2, Llama or BERT model folder") from None


def load_tokenizer(model_dir: Path):
    """The model folder's tokenizer, with a pad token (the eos token when it has none)."""
    tokenizer = load_saved_tokenizer(model_dir, "--model_dir")
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise UserError(f"the tokenizer in '{model_dir}' has neither a pad nor an eos token, "
                            "so batches cannot be padded: save it with a pad token")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_classifier(model_dir: str | Path, num_labels: int, pad_token_id: int,
                    attn_implementation: str = "eager") -> tuple[PreTrainedModel, list[str]]:
    """`model_dir` with a fresh `num_labels`-way classification head, in float32.

    Returns the model and the names of the freshly initialised weights. `pad_token_id`
    (the tokenizer's) is set when the config lacks one: GPT-2/Llama heads find the last
    real token as the rightmost token that is not `config.pad_token_id`, and refuse
    batches without it. Batches must then be padded with `config.pad_token_id`."""
    # transformers prints a table of the new/unused weights and a progress bar at every load;
    # the caller logs one line about the new weights instead.
    verbosity, bar_enabled = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            model_dir, num_labels=num_labels, dtype=torch.float32, attn_implementation=attn_implementation,
            output_loading_info=True)
    # Broad on purpose, as custom_models.load_model: a damaged folder raises many types.
    except Exception as e:
        raise UserError(f"cannot load '{model_dir}' as a sequence classifier ({first_line(e)}): "
                        "pass a saved GPT-2, Llama or BERT model folder") from None
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
             batch_size: int, pad_token_id: int, device: torch.device, precision: str = "fp32") -> dict[str, float]:
    """Mean loss and the task's metrics of `model` on the encoded examples."""
    was_training = model.training
    model.eval()
    preds, total_loss = [], 0.0
    for start in range(0, len(features), batch_size):
        logits = batch_logits(model, features[start:start + batch_size], pad_token_id, device, precision)
        gold = torch.tensor(labels[start:start + batch_size], device=device)
        total_loss += F.cross_entropy(logits, gold, reduction="sum").item()
        preds.append(logits.argmax(-1).cpu().numpy())
    model.train(was_training)
    metrics = task_metrics(task, np.concatenate(preds), np.asarray(labels))
    return {"loss": total_loss / len(features), **metrics}


# --------------------------------------------------------------------------- training


def _log_epoch(logger: RunLogger, task: str, record: dict, scores: dict, lr: float) -> None:
    """One fine-tuning epoch's losses and scores, to TensorBoard (finetune/<task>/...) and the log."""
    tags = {"train_loss": record["train_loss"], "eval_loss": record["eval_loss"],
            **{f"eval_{name}": value for name, value in scores.items()}, "lr": lr}
    logger.metrics(record["epoch"], {f"finetune/{task}/{name}": value for name, value in tags.items()})
    shown = " ".join(f"{k}={v:.4f}" for k, v in record.items() if k != "epoch")
    logger.info(f"{task} epoch {record['epoch']}: {shown}")


def finetune_task(args: argparse.Namespace, data: TaskData, tokenizer, max_length: int, device: torch.device,
                  logger: RunLogger) -> dict:
    """Fine-tune a fresh copy of `--model_dir` on one task; returns its results entry."""
    started = time.time()
    task = data.name
    train_features = encode_texts(tokenizer, data.train_texts, max_length)
    valid_features = encode_texts(tokenizer, data.valid_texts, max_length)

    set_seed(args.seed)  # the new head's initial weights and dropout depend only on --seed
    model, new_weights = load_classifier(args.model_dir, data.num_labels, tokenizer.pad_token_id,
                                         args.attn_implementation)
    model.to(device).train()
    # Pad with the id the head skips; it is the tokenizer's unless the saved config says otherwise.
    pad_id = model.config.pad_token_id
    logger.info(f"{task}: {len(train_features)} train / {len(valid_features)} valid examples, "
                f"{data.num_labels} labels; {type(model).__name__} with new weights {', '.join(new_weights)}")

    optimizer = make_optimizer(model, args.finetune_learning_rate, args.weight_decay,
                               (args.adam_beta1, args.adam_beta2), args.adam_epsilon)
    batch_size = args.finetune_batch_size
    steps_per_epoch = math.ceil(len(train_features) / batch_size)
    total_steps = args.finetune_epochs * steps_per_epoch  # planned; early stopping may end sooner
    scheduler = cosine_schedule(optimizer, round(args.warmup_ratio * total_steps), total_steps)
    order = torch.Generator().manual_seed(args.seed)  # data order depends only on --seed
    scaler = grad_scaler(device, args.precision)
    selection = SELECTION_METRIC.get(task, "accuracy")

    history: list[dict] = []
    best: dict | None = None
    epochs_without_gain = 0
    bar = tqdm(total=total_steps, desc=f"finetune {task}", unit="step", dynamic_ncols=True)
    for epoch in range(1, args.finetune_epochs + 1):
        loss_sum = 0.0
        shuffled = torch.randperm(len(train_features), generator=order).tolist()
        for start in range(0, len(shuffled), batch_size):
            chosen = shuffled[start:start + batch_size]
            logits = batch_logits(model, [train_features[i] for i in chosen], pad_id, device, args.precision)
            loss = F.cross_entropy(logits, torch.tensor([data.train_labels[i] for i in chosen], device=device))
            scaler.scale(loss).backward()
            optimizer_step(model, optimizer, scheduler, scaler, args.grad_norm_clip)
            loss_sum += loss.item() * len(chosen)
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{loss.item():.3f}")

        scores = evaluate(model, valid_features, data.valid_labels, task, batch_size, pad_id, device, args.precision)
        record = {"epoch": epoch, "train_loss": loss_sum / len(train_features), "eval_loss": scores.pop("loss"),
                  **scores}
        history.append(record)
        _log_epoch(logger, task, record, scores, scheduler.get_last_lr()[0])

        if best is None or record[selection] > best[selection]:  # strict: a tie keeps the earlier epoch
            best, epochs_without_gain = record, 0
        else:
            epochs_without_gain += 1
            if args.finetune_patience > 0 and epochs_without_gain >= args.finetune_patience:
                logger.info(f"{task}: no better {selection} in {epochs_without_gain} epochs; stopping early")
                break
    bar.close()

    metrics = {k: v for k, v in best.items() if k not in ("epoch", "train_loss")}
    logger.metrics(best["epoch"], {f"finetune/{task}/best_{k}": v for k, v in metrics.items()})
    logger.info(f"{task}: best epoch {best['epoch']} by {selection}: "
                + " ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return {
        "best_epoch": best["epoch"],
        "selection_metric": selection,
        "metrics": metrics,
        "num_labels": data.num_labels,
        "train_size": len(train_features),
        "valid_size": len(valid_features),
        "epochs_run": len(history),
        "steps": len(history) * steps_per_epoch,
        "history": history,
        "seconds": round(time.time() - started, 2),
    }


def run_finetune(args: argparse.Namespace) -> dict:
    """The finetune action: fine-tune `--model_dir` on every task of `--glue_dir` (or `--tasks`).

    Writes `<output_dir>/finetune_results.json` (after each task, so finished tasks are
    kept if a later one fails) and returns its contents:
    `{"model_dir", "glue_dir", "device", "max_tokens", "options", "tasks": {task: {"best_epoch", "selection_metric",
    "metrics", "num_labels", "train_size", "valid_size", "epochs_run", "steps", "history",
    "seconds"}}}`. Every input check runs before anything is written."""
    for name in ("finetune_epochs", "finetune_batch_size", "max_seq_length"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name} must be at least 1, got {getattr(args, name)}")
    glue_dir, model_dir, out = Path(args.glue_dir), Path(args.model_dir), Path(args.output_dir)
    tasks = find_tasks(glue_dir, args.tasks)
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
            logger.warning(f"--max_seq_length {max_length} exceeds the model's {positions} positions; "
                           f"truncating inputs to {positions} tokens")
            max_length = positions
        logger.info(f"fine-tuning {model_dir} on {', '.join(tasks)} on {device}")
        log_choice(logger, args)
        logger.hparams(vars(args))
        results = {"model_dir": str(model_dir), "glue_dir": str(glue_dir), "device": str(device),
                   "max_tokens": max_length, "options": {name: getattr(args, name) for name in OPTION_NAMES},
                   "tasks": {}}
        for task_data in data:
            results["tasks"][task_data.name] = finetune_task(args, task_data, tokenizer, max_length, device, logger)
            write_json_atomic(out / FINETUNE_RESULTS, results)
        logger.info(f"done: results in {out / FINETUNE_RESULTS}; TensorBoard: {out / TENSORBOARD_DIR}")
        return results
    finally:
        logger.close()
