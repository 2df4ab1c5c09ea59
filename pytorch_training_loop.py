"""The custom PyTorch training loop (`--torch_training`).

AdamW + warm-up/cosine schedule (shared with the HF path in training_setup.py),
gradient accumulation, gradient clipping with the norm logged, the fast path
(bf16 autocast, torch.compile, fused AdamW, batches read straight from the
memory-mapped uint16 cache; see `make bench`), validation every --eval_steps and at each epoch end, the best model
by validation loss saved in HF format, early stopping, and a tqdm bar with the
loss and tokens/s.

Resumable checkpoints (every --save_steps and at each epoch end) hold the model,
optimizer, scheduler, RNG states, the position inside the epoch and the
best-model/early-stopping state; `--resume` continues from the newest one and
reproduces the uninterrupted run's losses exactly (CPU, float32). This works
because each epoch's data order is a permutation drawn from its own generator
seeded by (--seed, epoch), so the rest of an epoch can be rebuilt from the
number of micro-batches already consumed."""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from custom_models import load_model
from evaluation import autocast, evaluate_lm
from losses import make_objective
from training_setup import (
    CHECKPOINTS_DIR,
    BestTracker,
    NonFiniteLoss,
    TrainingSetup,
    finish_run,
    list_checkpoints,
    log_eval,
    make_optimizer,
    make_scheduler,
    masked_share_at,
    mlm_probability_at,
    prepare_training,
    training_batch,
)
from utils import UserError, replace_dir, temp_dir_beside, write_json_atomic

STATE_FILE = "pipeline_state.json"  # written last: marks the checkpoint complete
TENSORS_FILE = "training_state.pt"


def train(args: argparse.Namespace) -> dict:
    """Train with the custom loop; returns the contents of train_results.json."""
    setup = prepare_training(args)
    try:
        return _train(setup)
    finally:
        setup.logger.close()


def epoch_order(n_blocks: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled block order of one epoch; depends only on (seed, epoch)."""
    return torch.randperm(n_blocks, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))


class _Progress:
    """Where the loop is, plus the running sums of the current logging window:
    everything besides tensors and RNG that a checkpoint must restore."""

    def __init__(self) -> None:
        self.step = 0
        self.epoch = 0
        self.micro = 0  # micro-batches of this epoch already consumed
        self.window_loss = 0.0
        self.window_micro = 0
        self.window_tokens = 0
        self.skipped = 0  # non-finite batches skipped (--skip_nonfinite)
        self.window_parts = {}  # loss parts (distillation, hybrid): tag -> [sum, micro-batches]


def _save_checkpoint(setup: TrainingSetup, optimizer, scheduler, tracker: BestTracker, progress: _Progress) -> None:
    """Write checkpoints/checkpoint-<step> atomically, then drop the oldest beyond the limit."""
    final = setup.run_dir / CHECKPOINTS_DIR / f"checkpoint-{progress.step}"
    tmp = temp_dir_beside(final)
    setup.model.save_pretrained(tmp)
    torch.save({
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
    }, tmp / TENSORS_FILE)
    write_json_atomic(tmp / STATE_FILE, {"progress": vars(progress), "tracker": tracker.state_dict()})
    replace_dir(tmp, final)
    for old in list_checkpoints(setup.run_dir)[: -setup.args.save_total_limit]:
        shutil.rmtree(old)


def _load_checkpoint(setup: TrainingSetup, path: Path, tracker: BestTracker, progress: _Progress):
    """Restore model, progress and tracker; returns the tensor state (optimizer, scheduler, RNG)."""
    if not (path / STATE_FILE).is_file():
        raise UserError(f"'{path}' was written by the HF Trainer loop: resume without --torch_training")
    setup.model = load_model(path, setup.args.attn_implementation).to(setup.device)
    state = json.loads((path / STATE_FILE).read_text())
    vars(progress).update(state["progress"])
    tracker.load_state_dict(state["tracker"])
    return torch.load(path / TENSORS_FILE, weights_only=False)


def _restore_rng(rng: dict) -> None:
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] is not None:
        torch.cuda.set_rng_state_all(rng["cuda"])


def _validate(setup: TrainingSetup, tracker: BestTracker, step: int) -> bool:
    metrics = evaluate_lm(setup.model, setup.eval_dataset, setup.eval_collator, setup.args.eval_batch_size,
                          setup.device, setup.args.bf16)
    log_eval(setup, step, metrics)
    return tracker.update(step, metrics["loss"])


def _train(setup: TrainingSetup) -> dict:
    args = setup.args
    # A save killed half-way leaves a temporary folder (never a checkpoint): drop it.
    for stale in (setup.run_dir / CHECKPOINTS_DIR).glob(".checkpoint-*.tmp"):
        shutil.rmtree(stale)
    tracker, progress = BestTracker(setup), _Progress()
    saved = _load_checkpoint(setup, setup.resume_from, tracker, progress) if setup.resume_from else None
    model = setup.model  # after a resume, the checkpoint's weights
    optimizer = make_optimizer(model, args)
    scheduler = make_scheduler(optimizer, setup)
    if saved is not None:
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        _restore_rng(saved["rng"])  # last: dropout and MLM masking continue where they were

    # --compile: the compiled modules share their parameters with `model`, which stays
    # uncompiled for validation and saving (no recompiling for eval mode or new shapes).
    loss_fn = make_objective(model, setup.teachers, args.distill_alpha, args.distill_temperature, args.compile)
    first_step_started = time.time()
    n_blocks, accum = len(setup.train_dataset), args.gradient_accumulation_steps
    curriculum = setup.curriculum
    # With a curriculum every optimizer step is a full group of micro-batches drawn by the sampler.
    micro_batches = setup.steps_per_epoch * accum if curriculum else math.ceil(n_blocks / args.batch_size)
    model.train()
    stop = False
    last_log = time.time()
    setup.step_clock.append(time.perf_counter())
    bar = tqdm(total=setup.total_steps, initial=progress.step, desc="training", unit="step", dynamic_ncols=True)
    while not stop and progress.step < setup.total_steps:
        if curriculum:  # determined by (seed, step): resume rebuilds it like the plain order
            order = torch.from_numpy(curriculum.epoch_indices(progress.epoch, setup.steps_per_epoch))
        else:
            order = epoch_order(n_blocks, args.seed, progress.epoch)
        batches = order.split(args.batch_size)
        for i in range(progress.micro, micro_batches):
            batch = training_batch(setup, {"input_ids": setup.train_dataset.batch(batches[i])}, progress.step)
            batch = {k: v.to(setup.device) if torch.is_tensor(v) else v for k, v in batch.items()}
            with autocast(setup.device, args.bf16):
                loss, parts = loss_fn(batch)
            progress.micro = i + 1
            if not torch.isfinite(loss):
                if not args.skip_nonfinite:
                    raise NonFiniteLoss.at(setup, loss.item(), progress.step + 1, skippable=True)
                progress.skipped += 1
                setup.logger.warning(f"skipped a batch with a non-finite loss ({progress.skipped} so far)")
            else:
                # Average over the micro-batches of this optimizer step (the last group
                # of an epoch may be short).
                group = min(accum, micro_batches - (i // accum) * accum)
                (loss / group).backward()
                progress.window_loss += loss.item()
                progress.window_micro += 1
                progress.window_tokens += batch["input_ids"].numel()
                for tag, value in parts.items():
                    total = progress.window_parts.setdefault(tag, [0.0, 0])
                    total[0], total[1] = total[0] + value.item(), total[1] + 1
            if (i + 1) % accum and i + 1 != micro_batches:
                continue
            clip = args.grad_norm_clip if args.grad_norm_clip > 0 else float("inf")
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip).item()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            progress.step += 1
            step = progress.step
            bar.update(1)
            setup.step_clock.append(time.perf_counter())
            if first_step_started is not None:
                what = "compiling + first step" if args.compile else "first step"
                setup.logger.info(f"{what} took {time.time() - first_step_started:.1f} s")
                first_step_started = None
                last_log, progress.window_tokens = time.time(), 0  # compile time is not throughput

            if step % args.logging_steps == 0 or step == setup.total_steps:
                now = time.time()
                metrics = {
                    "train/loss": progress.window_loss / max(progress.window_micro, 1),
                    "train/lr": scheduler.get_last_lr()[0],
                    "train/grad_norm": grad_norm,
                    "train/tokens_per_second": progress.window_tokens / max(now - last_log, 1e-9),
                    "train/epoch": progress.epoch + (i + 1) / micro_batches,
                }
                if args.skip_nonfinite:
                    metrics["train/skipped_batches"] = progress.skipped
                if curriculum:
                    metrics["train/curriculum_share"] = curriculum.share(step - 1)
                if args.objective_schedule:
                    metrics["train/mlm_probability"] = mlm_probability_at(args, step - 1)
                if setup.hybrid:
                    metrics["train/masked_share"] = masked_share_at(args, step - 1)
                metrics.update({tag: total / n for tag, (total, n) in progress.window_parts.items()})
                progress.window_parts = {}
                setup.logger.metrics(step, metrics)
                bar.set_postfix(loss=f"{metrics['train/loss']:.3f}",
                                tok_s=f"{metrics['train/tokens_per_second']:.0f}")
                progress.window_loss, progress.window_micro, progress.window_tokens = 0.0, 0, 0
                last_log = now

            epoch_end = i + 1 == micro_batches
            if step % args.eval_steps == 0 or epoch_end or step == setup.total_steps:
                stop = _validate(setup, tracker, step)
                last_log = time.time()  # do not count validation time in tokens/s
            if epoch_end:  # the checkpoint then starts the next epoch
                progress.epoch, progress.micro = progress.epoch + 1, 0
            if step % args.save_steps == 0 or epoch_end or step == setup.total_steps:  # as the HF Trainer
                _save_checkpoint(setup, optimizer, scheduler, tracker, progress)
            if stop or step >= setup.total_steps:
                break
    bar.close()
    return finish_run(setup, tracker, progress.step, loop="pytorch")
