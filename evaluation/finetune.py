"""Fine-tune a saved model on the (Super)GLUE tasks of BabyLM (the finetune action).

The tasks' files, text layouts and metrics are in evaluation/finetune_data.py.

Defaults are the official pipeline's (eval_finetuning.sh; evaluation/layout.py):
learning rate 3e-5, batch 32 (16 for boolq and multirc), 10 epochs (30 for wsc), seed
42, every epoch run, the best epoch chosen on the valid file by accuracy (F1 of label 1
for mrpc and qqp, MCC for cola) and its predictions on that file kept. An explicit
--finetune_learning_rate / --finetune_batch_size / --finetune_epochs applies to every task.
For every task the model is loaded afresh from `--model_dir` with a new N-way head (N = the
labels of the train file), so tasks never see each other's updates.

Two protocols (`--finetune_protocol`):
- `official` (default; evaluation/finetune_protocol.py): the official head on AutoModel,
  AdamW with decay 0.01 on every parameter, betas (0.9, 0.999), 6% warm-up then cosine to
  0.1x, no clipping, the last partial train batch dropped, validation in batches of 64,
  the official text layouts, and results.txt / predictions.json as the official trainer
  writes them. The options it does not read (--weight_decay, --warmup_ratio, --adam_*,
  --grad_norm_clip, --attn_implementation) are recorded with the values it used. One
  departure: GPT-2 and Llama are read at their last real token (the official first token of
  a causal model has seen nothing else: official issue #38); `--finetune_pool first` gives
  the official reading. Same seed, same data, same CPU: the same predictions as the
  official code (tests/test_finetune_official.py).
- `ours`: `AutoModelForSequenceClassification` (GPT-2/Llama read the last real token, BERT
  and the hybrid's `GPTBertForSequenceClassification` a single Linear on the first), AdamW
  of training.optim.make_optimizer (--weight_decay on matrices only, --adam_beta2), linear
  warm-up for `--warmup_ratio` then cosine decay to 0, clipping at --grad_norm_clip, every
  batch of a permutation from a torch.Generator seeded with `--seed`.
Both: --precision, `--finetune_patience N` stops a task after N epochs without a better
score (default 0: never, as officially), `--finetune_dropout P` sets the model's dropout
layers (the official head keeps its 0.1).

A task with a valid file but no train file (the obtainable BoolQ and MultiRC) is
refused, unless `--finetune_cross_fit K`: the valid file is split into K folds (a
seeded permutation) and each fold is predicted by a model trained on the other folds,
its best epoch chosen on that fold, so every item is predicted by a model that never
saw it. That is not the official protocol: the results say `cross_fit: K`, results.txt
says CROSS-FIT and a submission built from them must be `--partial`.

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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm
from transformers import AutoConfig, AutoModelForSequenceClassification, PretrainedConfig, PreTrainedModel
from transformers import get_cosine_schedule_with_warmup as cosine_schedule

from custom_models import check_tokenizer_fits, is_hybrid, saved_model_type
from evaluation.finetune_data import (
    SELECTION_METRIC,
    TaskData,
    collate,
    encode_texts,
    find_tasks,
    load_task,
    task_metrics,
)
from evaluation.finetune_protocol import (
    OFFICIAL_RECIPE,
    default_pool,
    load_official_classifier,
    official_optimizer,
    official_predictions_text,
    official_results_text,
    official_scheduler,
    official_step,
    quiet_transformers,
)
from evaluation.finetune_protocol import steps_per_epoch as official_steps
from evaluation.finetune_protocol import train_batches as official_train_batches
from evaluation.finetune_protocol import valid_batches as official_valid_batches
from evaluation.layout import (
    FINETUNE_DEFAULTS,
    FINETUNE_TASK_DEFAULTS,
    default_results_root,
    finetune_dir,
    model_name_and_revision,
)
from tokenizer import load_tokenizer as load_saved_tokenizer
from training.hardware import autocast, grad_scaler, log_choice
from training.identity import (
    WeightsIdentity,
    check_unchanged,
    folder_identity,
    recorded,
    refuse_if_training,
    write_sidecar,
)
from training.model_card import refresh_model_card
from training.optim import make_optimizer, optimizer_step
from utils import (
    FINETUNE_RESULTS,
    TENSORBOARD_DIR,
    RunLogger,
    UserError,
    get_device,
    set_seed,
    write_json_atomic,
    write_text_atomic,
)

# The options that shape a fine-tuning run, recorded in the results file.
OPTION_NAMES = ("tasks", "finetune_epochs", "finetune_learning_rate", "finetune_batch_size", "finetune_patience",
                "finetune_cross_fit", "max_seq_length", "seed", "device", "precision", "weight_decay", "warmup_ratio",
                "adam_beta1", "adam_beta2", "adam_epsilon", "grad_norm_clip", "attn_implementation", "finetune_dropout",
                "finetune_protocol", "finetune_pool")


# --------------------------------------------------------------------------- options


def task_options(args: argparse.Namespace, task: str) -> dict[str, float | int]:
    """A task's learning rate, batch size and epochs: the option where given, else the official
    default for that task (evaluation/layout.py)."""
    official = {**FINETUNE_DEFAULTS, **FINETUNE_TASK_DEFAULTS.get(task, {})}
    given = {"learning_rate": args.finetune_learning_rate, "batch_size": args.finetune_batch_size,
             "epochs": args.finetune_epochs}
    return {name: official[name] if value is None else value for name, value in given.items()}


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
    try:
        with quiet_transformers():
            if is_hybrid(saved_model_type(model_dir)):
                from hybrid_model import CLASSES
                model, info = CLASSES[saved_model_type(model_dir)][4].from_pretrained(
                    model_dir, num_labels=num_labels, dtype=torch.float32, output_loading_info=True)
            else:
                model, info = AutoModelForSequenceClassification.from_pretrained(
                    model_dir, num_labels=num_labels, dtype=torch.float32, attn_implementation=attn_implementation,
                    output_loading_info=True)
    # Broad on purpose, as custom_models.load_model: a damaged folder raises many types.
    except Exception as e:
        raise UserError(f"cannot load '{model_dir}' as a sequence classifier ({first_line(e)}): "
                        "pass a saved GPT-2, Llama, BERT or GPT-BERT model folder") from None
    if model.config.pad_token_id is None:
        model.config.pad_token_id = pad_token_id
    return model, sorted(info["missing_keys"])


def batch_logits(model: torch.nn.Module, features: list[dict[str, list[int]]], pad_token_id: int,
                 device: torch.device, precision: str = "fp32") -> torch.Tensor:
    """Classification logits (float32) of one batch of encoded examples (either protocol's model)."""
    batch = {k: v.to(device) for k, v in collate(features, pad_token_id).items()}
    with autocast(device, precision):
        out = model(**batch)
    return (out if isinstance(out, torch.Tensor) else out.logits).float()


@torch.no_grad()
def evaluate(model: torch.nn.Module, features: list[dict[str, list[int]]], labels: list[int], task: str,
             batches: Iterable[list[int]], pad_token_id: int, device: torch.device, num_labels: int,
             precision: str = "fp32") -> tuple[dict[str, float], np.ndarray]:
    """Mean loss and the task's metrics of `model` on the encoded examples, taken in `batches`
    (lists of indices, in order), and its predictions."""
    was_training = model.training
    model.eval()
    preds, total_loss = [], 0.0
    for index in batches:
        logits = batch_logits(model, [features[i] for i in index], pad_token_id, device, precision)
        gold = torch.tensor([labels[i] for i in index], device=device)
        total_loss += F.cross_entropy(logits, gold, reduction="sum").item()
        preds.append(logits.argmax(-1).cpu().numpy())
    model.train(was_training)
    preds = np.concatenate(preds)
    return {"loss": total_loss / len(features), **task_metrics(task, preds, np.asarray(labels), num_labels)}, preds


# --------------------------------------------------------------------------- training


def _log_epoch(logger: RunLogger, task: str, record: dict, scores: dict, lr: float) -> None:
    """One fine-tuning epoch's losses and scores, to TensorBoard (finetune/<task>/...) and the log."""
    tags = {"train_loss": record["train_loss"], "eval_loss": record["eval_loss"],
            **{f"eval_{name}": value for name, value in scores.items()}, "lr": lr}
    logger.metrics(record["epoch"], {f"finetune/{task}/{name}": value for name, value in tags.items()})
    shown = " ".join(f"{k}={v:.4f}" for k, v in record.items() if k != "epoch")
    logger.info(f"{task} epoch {record['epoch']}: {shown}")


@dataclass
class Recipe:
    """What one protocol fine-tunes with: the model, its optimizer and schedule, the pad id of
    its batches, the index batches of a training epoch and of a validation pass, and the update."""

    model: torch.nn.Module
    new_weights: list[str]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    pad_id: int
    steps_per_epoch: int
    train_batches: Callable[[], Iterable[list[int]]]
    valid_batches: Callable[[int], Iterable[list[int]]]
    step: Callable[[], None]


def load_official(model_dir: str | Path, num_labels: int, pool: str) -> tuple[torch.nn.Module, list[str]]:
    """The official classifier of `model_dir` (finetune_protocol.load_official_classifier); UserError
    when the folder does not load."""
    try:
        return load_official_classifier(model_dir, num_labels, pool)
    except Exception as e:  # broad on purpose, as load_classifier
        raise UserError(f"cannot load '{model_dir}' as a sequence classifier (AutoModel: {first_line(e)}): "
                        "pass a saved GPT-2, Llama, BERT or GPT-BERT model folder") from None


def official_recipe(args: argparse.Namespace, options: dict, num_labels: int, train_size: int, pad_token_id: int,
                    device: torch.device, scaler: torch.amp.GradScaler) -> Recipe:
    """The official protocol (evaluation/finetune_protocol.py). Call right after seeding: the head,
    the data order and the dropout masks draw from torch's global generator as officially."""
    model, new_weights = load_official(args.model_dir, num_labels, args.finetune_pool)
    if args.finetune_dropout is not None:
        set_dropout(model.transformer, args.finetune_dropout)  # the head keeps the official 0.1
    model.to(device).train()
    batch_size = options["batch_size"]
    per_epoch = official_steps(train_size, batch_size)
    optimizer = official_optimizer(model, options["learning_rate"])
    scheduler = official_scheduler(optimizer, options["epochs"] * per_epoch)
    return Recipe(model, new_weights, optimizer, scheduler, pad_token_id, per_epoch,
                  lambda: official_train_batches(train_size, batch_size), official_valid_batches,
                  lambda: official_step(optimizer, scheduler, scaler))


def our_recipe(args: argparse.Namespace, options: dict, num_labels: int, train_size: int, pad_token_id: int,
               device: torch.device, scaler: torch.amp.GradScaler) -> Recipe:
    """Our protocol: the *ForSequenceClassification head, training.optim's AdamW (decay on matrices
    only), warm-up then cosine to 0, clipping, every batch of a seeded permutation."""
    model, new_weights = load_classifier(args.model_dir, num_labels, pad_token_id, args.attn_implementation)
    if args.finetune_dropout is not None:
        set_dropout(model, args.finetune_dropout)
    model.to(device).train()
    optimizer = make_optimizer(model, options["learning_rate"], args.weight_decay,
                               (args.adam_beta1, args.adam_beta2), args.adam_epsilon)
    batch_size = options["batch_size"]
    per_epoch = math.ceil(train_size / batch_size)
    total_steps = options["epochs"] * per_epoch  # planned; early stopping may end sooner
    scheduler = cosine_schedule(optimizer, round(args.warmup_ratio * total_steps), total_steps)
    order = torch.Generator().manual_seed(args.seed)  # data order depends only on --seed

    def epoch() -> list[list[int]]:
        shuffled = torch.randperm(train_size, generator=order).tolist()
        return [shuffled[start:start + batch_size] for start in range(0, train_size, batch_size)]

    def in_order(size: int) -> list[list[int]]:
        return [list(range(start, min(start + batch_size, size))) for start in range(0, size, batch_size)]

    # Pad with the id the head skips; it is the tokenizer's unless the saved config says otherwise.
    return Recipe(model, new_weights, optimizer, scheduler, model.config.pad_token_id, per_epoch, epoch, in_order,
                  lambda: optimizer_step(model, optimizer, scheduler, scaler, args.grad_norm_clip))


def train_epoch(recipe: Recipe, train: tuple[list[dict], list[int]], device: torch.device, precision: str,
                scaler: torch.amp.GradScaler, bar: tqdm, epoch: int) -> float:
    """One epoch of updates; returns the mean training loss over the examples trained on."""
    features, labels = train
    loss_sum, seen = 0.0, 0
    for chosen in recipe.train_batches():
        logits = batch_logits(recipe.model, [features[i] for i in chosen], recipe.pad_id, device, precision)
        loss = F.cross_entropy(logits, torch.tensor([labels[i] for i in chosen], device=device))
        scaler.scale(loss).backward()
        recipe.step()
        loss_sum, seen = loss_sum + loss.item() * len(chosen), seen + len(chosen)
        bar.update(1)
        bar.set_postfix(epoch=epoch, loss=f"{loss.item():.3f}")
    return loss_sum / seen if seen else float("nan")


def train_and_select(args: argparse.Namespace, task: str, options: dict, num_labels: int,
                     train: tuple[list[dict], list[int]], valid: tuple[list[dict], list[int]], pad_token_id: int,
                     device: torch.device, logger: RunLogger, desc: str) -> tuple[dict, np.ndarray, list[dict]]:
    """Fine-tune a fresh copy of `--model_dir` on `train` under `--finetune_protocol`, score
    `valid` after every epoch, and return the best epoch's record, its predictions on `valid`,
    and every epoch's record."""
    set_seed(args.seed)  # the new head's initial weights, the data order and dropout depend only on --seed
    scaler = grad_scaler(device, args.precision)
    make = official_recipe if args.finetune_protocol == "official" else our_recipe
    recipe = make(args, options, num_labels, len(train[1]), pad_token_id, device, scaler)
    logger.info(f"{desc}: {len(train[1])} train / {len(valid[1])} valid examples, {num_labels} labels; "
                f"{args.finetune_protocol} protocol, {type(recipe.model).__name__} with new weights "
                f"{', '.join(recipe.new_weights)}")
    if recipe.steps_per_epoch == 0:
        logger.warning(f"{desc}: fewer train examples than a batch ({options['batch_size']}): the official "
                       "protocol drops the last partial batch, so nothing is trained")
    selection = SELECTION_METRIC.get(task, "accuracy")
    history: list[dict] = []
    best: dict | None = None
    best_preds = np.zeros(0)
    epochs_without_gain = 0
    bar = tqdm(total=options["epochs"] * recipe.steps_per_epoch, desc=f"finetune {desc}", unit="step",
               dynamic_ncols=True)
    for epoch in range(1, options["epochs"] + 1):
        train_loss = train_epoch(recipe, train, device, args.precision, scaler, bar, epoch)
        scores, preds = evaluate(recipe.model, *valid, task, recipe.valid_batches(len(valid[1])), recipe.pad_id,
                                 device, num_labels, args.precision)
        record = {"epoch": epoch, "train_loss": train_loss, "eval_loss": scores.pop("loss"), **scores}
        history.append(record)
        _log_epoch(logger, desc, record, scores, recipe.scheduler.get_last_lr()[0])
        if best is None or record[selection] > best[selection]:  # strict: a tie keeps the earlier epoch
            best, best_preds, epochs_without_gain = record, preds, 0
        else:
            epochs_without_gain += 1
            if args.finetune_patience > 0 and epochs_without_gain >= args.finetune_patience:
                logger.info(f"{desc}: no better {selection} in {epochs_without_gain} epochs; stopping early")
                break
    bar.close()
    return best, best_preds, history


def epoch_steps(args: argparse.Namespace, size: int, batch_size: int) -> int:
    """Optimizer steps in one epoch of `size` examples: full batches only under the official
    protocol (its last partial batch is dropped), every batch under ours."""
    if args.finetune_protocol == "official":
        return official_steps(size, batch_size)
    return math.ceil(size / batch_size)


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
                 "steps": len(history) * epoch_steps(args, len(data.train_labels), options["batch_size"])}
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


def write_official(root: Path, model_name: str, revision: str, task: str, entry: dict, preds: list[int],
                   protocol: str = "ours", identity: WeightsIdentity | None = None) -> Path:
    """<root>/<model name>/<revision>/finetune/<task>/{predictions.json, results.txt}: under the
    official protocol byte for byte as the official trainer writes them (a cross-fit adds a
    CROSS-FIT line), under ours indented JSON and a results.txt that names the best epoch; and
    model.json beside them, the identity of the weights fine-tuned (training/identity.py)."""
    out = finetune_dir(root, model_name, revision, task)
    if protocol == "official":
        scores = {name: value for name, value in entry["metrics"].items() if name != "eval_loss"}
        write_text_atomic(out / "predictions.json", official_predictions_text(task, preds))
        write_text_atomic(out / "results.txt", official_results_text(scores, entry.get("cross_fit", 0)))
    else:
        write_json_atomic(out / "predictions.json",
                          {task: {"predictions": [{"id": f"{task}_{i}", "pred": p} for i, p in enumerate(preds)]}})
        write_text_atomic(out / "results.txt", results_text(task, entry))
    write_sidecar(out, identity)  # last: it vouches for the files beside it
    return out


def recorded_options(args: argparse.Namespace) -> dict:
    """The options of OPTION_NAMES as the run used them: under the official protocol its own
    optimizer and schedule values replace the options it does not read (--weight_decay, ...)."""
    options = {name: getattr(args, name) for name in OPTION_NAMES}
    return {**options, **OFFICIAL_RECIPE} if args.finetune_protocol == "official" else options


def check_inputs(args: argparse.Namespace) -> tuple[list[TaskData], PretrainedConfig, object, argparse.Namespace]:
    """Every input check of the finetune action, before anything is written: the tasks' files, the
    model folder, its tokenizer and weights. Returns the tasks, the config, the tokenizer, and the
    arguments with --finetune_pool resolved for this model."""
    for name in ("finetune_epochs", "finetune_batch_size", "max_seq_length"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise UserError(f"--{name} must be at least 1, got {getattr(args, name)}")
    glue_dir, model_dir = Path(args.glue_dir), Path(args.model_dir)
    tasks = find_tasks(glue_dir, args.tasks, args.finetune_cross_fit)
    # A bad line in any task fails now, not hours later.
    data = [load_task(glue_dir, task, args.finetune_protocol) for task in tasks]
    config = check_model_dir(model_dir)
    pool = default_pool(config.model_type)
    if args.finetune_protocol == "ours" and args.finetune_pool not in (None, pool):
        raise UserError(f"--finetune_pool {args.finetune_pool} needs --finetune_protocol official: ours reads a "
                        f"{config.model_type} model at its {pool} token (its *ForSequenceClassification head)")
    args = argparse.Namespace(**{**vars(args), "finetune_pool": args.finetune_pool or pool})
    tokenizer = load_tokenizer(model_dir)
    check_tokenizer_fits(config, tokenizer, model_dir, needs_mask=False)
    # Load the weights once before the run folder exists: a damaged model must leave nothing behind.
    if args.finetune_protocol == "official":
        load_official(model_dir, 2, args.finetune_pool)
    else:
        load_classifier(model_dir, 2, tokenizer.pad_token_id, args.attn_implementation)
    return data, config, tokenizer, args


def run_finetune(args: argparse.Namespace) -> dict:
    """The finetune action: fine-tune `--model_dir` on every task of `--glue_dir` (or `--tasks`).

    Writes `<output_dir>/finetune_results.json` (after each task, so finished tasks are
    kept if a later one fails) and each task's official results.txt and predictions.json
    (module docstring), and returns the results: `{"model_dir", "model" (the identity of the
    weights fine-tuned, checked after every task), "glue_dir", "device",
    "max_tokens", "options", "official_dir", "tasks": {task: {"selection_metric", "metrics",
    "num_labels", "valid_size", "options", "epochs_run", "seconds", and "best_epoch",
    "train_size", "steps", "history", or "cross_fit", "folds"}}}`. Every input check runs
    before anything is written."""
    refuse_if_training(args.model_dir, "finetune")
    data, config, tokenizer, args = check_inputs(args)
    glue_dir, model_dir, out = Path(args.glue_dir), Path(args.model_dir), Path(args.output_dir)
    identity = folder_identity(model_dir)  # every task must fine-tune these weights
    tasks = [task_data.name for task_data in data]
    device = get_device(args.device)

    logger = RunLogger(out)
    try:
        max_length = args.max_seq_length
        positions = getattr(config, "max_position_embeddings", None)
        if positions is not None and max_length > positions:
            logger.info(f"--max_seq_length {max_length} exceeds the model's {positions} positions; "
                        f"truncating inputs to {positions} tokens")
            max_length = positions
        logger.info(f"fine-tuning {model_dir} on {', '.join(tasks)} on {device}, {args.finetune_protocol} protocol, "
                    f"read at the {args.finetune_pool} token")
        if args.tasks is None and not args.finetune_cross_fit:
            for p in sorted(glue_dir.glob("*.valid.jsonl")):
                task = p.name.removesuffix(".valid.jsonl")
                if task not in tasks:
                    logger.warning(f"{task} left out: it has a valid file but no {task}.train.jsonl (add it, or pass "
                                   "--finetune_cross_fit K; a submission needs all seven tasks)")
        log_choice(logger, args, compiles=False)
        logger.hparams(vars(args))
        root = Path(args.results_dir) if args.results_dir else default_results_root(model_dir)
        model_name, revision = model_name_and_revision(model_dir)
        results = {"model_dir": str(model_dir), "model": recorded(identity), "glue_dir": str(glue_dir),
                   "device": str(device),
                   "max_tokens": max_length, "options": recorded_options(args),
                   "official_dir": str(finetune_dir(root, model_name, revision, "").parent), "tasks": {}}
        for task_data in data:
            entry, preds = finetune_task(args, task_data, tokenizer, max_length, device, logger)
            if identity is not None:
                check_unchanged(model_dir, identity)  # a folder replaced mid-run: its results are not written
            results["tasks"][task_data.name] = entry
            write_official(root, model_name, revision, task_data.name, entry, preds, args.finetune_protocol,
                           identity)
            write_json_atomic(out / FINETUNE_RESULTS, results)
        refresh_model_card(model_dir)  # the card's evaluation table
        logger.info(f"done: results in {out / FINETUNE_RESULTS}; TensorBoard: {out / TENSORBOARD_DIR}")
        return results
    finally:
        logger.close()
