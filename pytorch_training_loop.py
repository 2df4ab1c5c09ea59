"""The custom PyTorch training loop (`--torch_training`).

AdamW + warm-up/cosine schedule (shared with the HF path in training_setup.py),
gradient accumulation, gradient clipping with the norm logged, optional bf16
autocast, validation every --eval_steps and at each epoch end, the best model
by validation loss saved in HF format, early stopping, and a tqdm bar with the
loss and tokens/s."""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from evaluation import autocast, evaluate_lm
from training_setup import (
    BestTracker,
    TrainingSetup,
    finish_run,
    log_eval,
    make_optimizer,
    make_scheduler,
    prepare_training,
)


def train(args: argparse.Namespace) -> dict:
    """Train with the custom loop; returns the contents of train_results.json."""
    setup = prepare_training(args)
    try:
        return _train(setup)
    finally:
        setup.logger.close()


def _validate(setup: TrainingSetup, tracker: BestTracker, step: int) -> bool:
    metrics = evaluate_lm(setup.model, setup.eval_dataset, setup.eval_collator, setup.args.eval_batch_size,
                          setup.device, setup.args.bf16)
    log_eval(setup, step, metrics)
    return tracker.update(step, metrics["loss"])


def _train(setup: TrainingSetup) -> dict:
    args, model = setup.args, setup.model
    optimizer = make_optimizer(model, args)
    scheduler = make_scheduler(optimizer, setup)
    tracker = BestTracker(setup)
    # The data order comes from its own generator so it depends only on --seed.
    order = torch.Generator().manual_seed(args.seed)
    loader = DataLoader(setup.train_dataset, batch_size=args.batch_size, shuffle=True, generator=order,
                        collate_fn=setup.train_collator, drop_last=False)
    accum = args.gradient_accumulation_steps

    model.train()
    step, stop = 0, False
    started = last_log = time.time()
    window_loss, window_micro, window_tokens = 0.0, 0, 0
    bar = tqdm(total=setup.total_steps, desc="training", unit="step", dynamic_ncols=True)
    epoch = 0
    while not stop and step < setup.total_steps:
        micro_batches = len(loader)
        for i, batch in enumerate(loader):
            batch = {k: v.to(setup.device) for k, v in batch.items()}
            with autocast(setup.device, args.bf16):
                loss = model(**batch).loss
            # Average over the micro-batches of this optimizer step (the last group
            # of an epoch may be short). Blocks are all full, so the mean of the
            # micro-batch means is the mean over the accumulated batch.
            group = min(accum, micro_batches - (i // accum) * accum)
            (loss / group).backward()
            window_loss += loss.item()
            window_micro += 1
            window_tokens += batch["input_ids"].numel()
            if (i + 1) % accum and i + 1 != micro_batches:
                continue
            clip = args.grad_norm_clip if args.grad_norm_clip > 0 else float("inf")
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip).item()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            bar.update(1)

            if step % args.logging_steps == 0 or step == setup.total_steps:
                now = time.time()
                train_metrics = {
                    "train/loss": window_loss / window_micro,
                    "train/lr": scheduler.get_last_lr()[0],
                    "train/grad_norm": grad_norm,
                    "train/tokens_per_second": window_tokens / max(now - last_log, 1e-9),
                    "train/epoch": epoch + (i + 1) / micro_batches,
                }
                setup.logger.metrics(step, train_metrics)
                bar.set_postfix(loss=f"{train_metrics['train/loss']:.3f}",
                                tok_s=f"{train_metrics['train/tokens_per_second']:.0f}")
                window_loss, window_micro, window_tokens, last_log = 0.0, 0, 0, now

            epoch_end = i + 1 == micro_batches
            if step % args.eval_steps == 0 or epoch_end or step == setup.total_steps:
                stop = _validate(setup, tracker, step)
                last_log = time.time()  # do not count validation time in tokens/s
            if stop or step >= setup.total_steps:
                break
        epoch += 1
    bar.close()
    return finish_run(setup, tracker, step, started, loop="pytorch")
