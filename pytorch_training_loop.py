"""The custom PyTorch training loop (`--torch_training`).

AdamW or LAMB + the warm-up/cosine(/cool-down) schedule (shared with the HF path through training/setup.py),
gradient accumulation, gradient clipping with the norm logged, the fast path
(--precision: bf16 or fp16 autocast, fp16 with a gradient scaler; torch.compile;
fused AdamW; batches read straight from the memory-mapped uint16 cache; see
`make bench` and training/hardware.py), validation every --eval_steps and at each epoch
end, the best model by validation loss saved in HF format, early stopping, and a
tqdm bar with the step, loss and tokens/s.

--ema_decay keeps an exponential moving average of the weights (training/optim.py
make_ema), updated after every optimizer step: validation, best_model/ and the chck_*
folders use it, while the live weights train on.

Resumable checkpoints (every --save_steps and at each epoch end) hold the model,
optimizer, scheduler, RNG states, the EMA, the position inside the epoch and the
best-model/early-stopping state; `--resume` continues from the newest one and
reproduces the uninterrupted run's losses exactly (CPU, float32). This works
because each epoch's data order is a permutation drawn from its own generator
seeded by (--seed, epoch), so the rest of an epoch can be rebuilt from the
number of optimizer steps already done.

Several processes (`torchrun --nproc_per_node=N run.py train --torch_training ...`,
see training/distributed.py): the objective runs inside DistributedDataParallel. Every rank
computes the same epoch order (or curriculum draws); optimizer step k of an epoch
trains on the global batch order[k*G:(k+1)*G], G = --batch_size x
--gradient_accumulation_steps x N, of which rank r takes the r-th slice, cut into
micro-batches; gradients are all-reduced (averaged) on each step's last micro-batch
only (`no_sync` on the others). So N processes of batch B see, per step, exactly the
blocks one process of batch N x B sees, and the same mean loss. When the epoch's last
global batch is short, several processes fill it up with blocks from the start of the
epoch's order (as DistributedSampler does; one process keeps it short), so every
micro-batch has --batch_size blocks and the step count does not depend on N. With
--length_schedule, late steps join runs of consecutive blocks into longer sequences
(training/plan.py joined_blocks): the same blocks per step, fewer and longer sequences. Only
rank 0 logs and saves; a checkpoint counts steps, so a run resumes with any number
of processes whose global batch is the checkpoint's."""

from __future__ import annotations

import math
import random
import time
from pathlib import Path

import numpy as np
import torch

import training.distributed as distributed
from custom_models import load_model
from training.hardware import autocast, grad_scaler
from training.losses import ObjectiveModule, make_objective
from training.optim import make_ema, optimizer_step
from training.plan import joined_blocks
from training.run_folder import PIPELINE_STATE, RunFolder
from training.setup import TrainingSetup
from training.tracking import BestTracker, NonFiniteLoss, WordMarks, add_loss_parts
from training.validation import evaluate_lm
from utils import UserError, atomic_dir, write_json_atomic

STATE_FILE = PIPELINE_STATE  # written last: marks the checkpoint complete
TENSORS_FILE = "training_state.pt"


def epoch_order(n_blocks: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled block order of one epoch; depends only on (seed, epoch)."""
    return torch.randperm(n_blocks, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))


def step_blocks(order: torch.Tensor, k: int, size: int, fill: bool) -> torch.Tensor:
    """The global batch of optimizer step `k` of an epoch: order[k*size:(k+1)*size]. The
    epoch's last one may be short; with `fill` (several processes) it is filled up from the
    start of `order`, so it splits into equal micro-batches."""
    blocks = order[k * size:(k + 1) * size]
    if fill and len(blocks) < size:
        blocks = torch.cat([blocks, order.repeat(math.ceil(size / len(order)))[:size - len(blocks)]])
    return blocks


class _Progress:
    """Where the loop is, plus the running sums of the current logging window:
    everything besides tensors and RNG that a checkpoint must restore."""

    def __init__(self, global_batch: int) -> None:
        self.step = 0
        self.epoch = 0  # the epoch's own steps done are step - epoch x steps per epoch
        self.global_batch = global_batch  # blocks per optimizer step over all processes: a resume must keep it
        self.window_loss = 0.0
        self.window_micro = 0
        self.window_tokens = 0
        self.tokens_seen = 0  # of the global batches trained on (all processes), across resumes
        self.skipped = 0  # non-finite batches skipped (--skip_nonfinite)
        self.window_parts = {}  # loss parts (distillation, hybrid): tag -> [sum, micro-batches]


def _rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _save_checkpoint(setup: TrainingSetup, optimizer, scheduler, scaler, tracker: BestTracker,
                     progress: _Progress, marks: WordMarks) -> None:
    """Write checkpoints/checkpoint-<step> atomically (rank 0; with several processes it
    holds every rank's RNG state), then drop the oldest beyond the limit."""
    rng_ranks = distributed.gather_objects(_rng_state()) if distributed.world_size() > 1 else None
    if not distributed.is_main():
        return
    with atomic_dir(setup.folder.checkpoint_path(progress.step)) as tmp:
        setup.model.save_pretrained(tmp)
        torch.save({
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),  # fp16's loss scale ({} for other precisions)
            "ema": setup.ema.state_dict() if setup.ema is not None else None,  # its weights and update count
            # What the state above is of: a resume must continue the same (`_check_resumed_options`).
            "optimizer_kind": setup.args.optimizer,
            "ema_decay": setup.args.ema_decay,
            "rng": _rng_state(),
            "rng_ranks": rng_ranks,
        }, tmp / TENSORS_FILE)
        write_json_atomic(tmp / STATE_FILE, {"progress": vars(progress), "tracker": tracker.state_dict(),
                                             "word_marks": marks.state_dict()})
    setup.folder.drop_old_checkpoints(setup.args.save_total_limit)


def _load_checkpoint(setup: TrainingSetup, path: Path, tracker: BestTracker, progress: _Progress,
                     marks: WordMarks):
    """Restore model, progress, tracker and word count; returns the tensor state (optimizer, scheduler, RNG).
    prepare_training has checked that this loop wrote the checkpoint."""
    setup.model = load_model(path, setup.args.attn_implementation).to(setup.device)
    state = RunFolder.checkpoint_state(path)
    vars(progress).update({k: v for k, v in state["progress"].items() if k != "micro"})  # micro: older checkpoints
    if "tokens_seen" not in state["progress"]:  # older checkpoints: the estimate they used (full steps)
        progress.tokens_seen = progress.step * setup.tokens_per_step
    tracker.load_state_dict(state["tracker"])
    marks.load_state_dict(state.get("word_marks"))
    progress.global_batch = setup.plan.global_batch  # checked equal in prepare_training (RunFolder.decide)
    return torch.load(path / TENSORS_FILE, weights_only=False)


def _restore_rng(saved: dict, seed: int, step: int) -> None:
    """This rank's RNG states from the checkpoint. Resumed with another number of
    processes, rank 0 continues rank 0's states and the others are seeded afresh
    (from the seed, the step and the rank)."""
    world, rank = distributed.world_size(), distributed.rank()
    ranks = saved.get("rng_ranks")
    rng = ranks[rank] if ranks is not None and len(ranks) == world else saved["rng"]
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] is not None:
        torch.cuda.set_rng_state_all(rng["cuda"])
    if rank > 0 and (ranks is None or len(ranks) != world):
        torch.manual_seed(seed + rank * 1_000_003 + step)


def _validate(setup: TrainingSetup, tracker: BestTracker, step: int) -> bool:
    # The judged weights: with --ema_decay the average, which the tracker then saves.
    metrics = evaluate_lm(setup.judged_model, setup.eval_dataset, setup.eval_collator, setup.args.eval_batch_size,
                          setup.device, setup.args.precision)
    setup.log_eval(step, metrics)
    # Every rank has the same summed loss; rank 0's decision is broadcast all the same, so all stop together.
    return distributed.broadcast_flag(tracker.update(step, metrics["loss"]))


def train(setup: TrainingSetup) -> dict:
    """Train with the custom loop on a prepared setup (`training.setup.prepare_training`);
    returns the contents of train_results.json. The caller closes the setup."""
    args, clock = setup.args, setup.clock
    world, rank = distributed.world_size(), distributed.rank()
    marks, progress = setup.word_marks(), _Progress(setup.plan.global_batch)
    tracker = setup.best_tracker(marks)
    saved = _load_checkpoint(setup, setup.resume_from, tracker, progress, marks) if setup.resume_from else None
    model = setup.model  # after a resume, the checkpoint's weights
    if saved is not None:
        _check_resumed_options(setup, saved)
    setup.ema = _ema_state(setup, saved)
    optimizer, scheduler, scaler = _optimizer_state(setup, saved, progress.step)
    objective = _objective(setup, world)
    first_step_started = time.time()
    per_epoch, size = setup.steps_per_epoch, setup.plan.global_batch
    words_per_block = setup.train_meta["words_per_block"]
    model.train()
    stop = False
    window_from = clock.used  # the clock's seconds when the logging window began: tokens/s counts step time only
    setup.step_clock.append(time.perf_counter())
    bar = setup.progress_bar(progress.step)
    while not stop and progress.step < setup.total_steps and not clock.expired():
        order = _epoch_order(setup, progress.epoch)
        for k in range(progress.step - progress.epoch * per_epoch, per_epoch):
            clock.start()
            blocks = step_blocks(order, k, size, fill=world > 1)  # the same on every rank
            joined = setup.blocks_per_sequence(progress.step)  # --length_schedule: longer sequences late
            blocks = joined_blocks(blocks, joined, len(setup.train_dataset))
            share = len(blocks) // world
            micro_batches = blocks[rank * share:(rank + 1) * share].split(args.batch_size)
            _forward_backward(setup, objective, scaler, micro_batches, progress, joined)
            grad_norm = optimizer_step(model, optimizer, scheduler, scaler, args.grad_norm_clip)
            if setup.ema is not None:
                setup.ema.update_parameters(model)
            clock.stop()
            progress.step += 1
            step = progress.step
            last = step == setup.total_steps or clock.expired()
            bar.step_done(step)
            setup.step_clock.append(time.perf_counter())
            marks.add(int(words_per_block[blocks.numpy()].sum()), step)  # the global batch's words
            progress.tokens_seen += len(blocks) * args.block_size
            if first_step_started is not None:
                window_from, first_step_started = _first_step_done(setup, progress, first_step_started), None

            if step % args.logging_steps == 0 or last:
                metrics = _log_window(setup, progress, scheduler, grad_norm, clock.used - window_from, k + 1)
                bar.show(metrics)
                window_from = clock.used

            epoch_end = k + 1 == per_epoch
            if step % args.eval_steps == 0 or epoch_end or last:
                stop = _validate(setup, tracker, step)
            if epoch_end:  # the checkpoint then starts the next epoch
                progress.epoch += 1
            if step % args.save_steps == 0 or epoch_end or last:  # as the HF Trainer
                _save_checkpoint(setup, optimizer, scheduler, scaler, tracker, progress, marks)
            if stop or last:
                break
    bar.close()
    return setup.finish(tracker, progress.step, loop="pytorch", tokens_seen=progress.tokens_seen, marks=marks)


def _objective(setup: TrainingSetup, world: int):
    """The loss of a batch (training/losses.py). --compile: the compiled modules share their
    parameters with `setup.model`, which stays uncompiled for validation and saving (no
    recompiling for eval mode or new shapes). Several processes: the objective runs inside
    DDP (which also broadcasts rank 0's weights now)."""
    args = setup.args
    loss_fn = make_objective(setup.model, setup.teachers, args.distill_alpha, args.distill_temperature, args.compile,
                             args.z_loss)
    return distributed.wrap_ddp(ObjectiveModule(setup.model, loss_fn), setup.device) if world > 1 else loss_fn


def _epoch_order(setup: TrainingSetup, epoch: int) -> torch.Tensor:
    """The blocks of `epoch` in training order: the curriculum's draws or the shuffled order, both
    determined by (seed, step), so a resume rebuilds them."""
    if setup.curriculum:
        return torch.from_numpy(setup.curriculum.epoch_indices(epoch, setup.steps_per_epoch))
    return epoch_order(len(setup.train_dataset), setup.args.seed, epoch)


def _first_step_done(setup: TrainingSetup, progress: _Progress, started: float) -> float:
    """Log how long the first step took (compiling included) and restart the tokens/s window
    (compile time is not throughput); returns the window's new start on the step clock."""
    what = "compiling + first step" if setup.args.compile else "first step"
    setup.logger.info(f"{what} took {time.time() - started:.1f} s")
    progress.window_tokens = 0
    return setup.clock.used


def _check_resumed_options(setup: TrainingSetup, saved: dict) -> None:
    """A resume continues the checkpoint's optimizer state and EMA, so it needs the --optimizer and
    --ema_decay that wrote them (checkpoints older than these options: adamw, no EMA)."""
    written_with = {"optimizer": saved.get("optimizer_kind", "adamw"), "ema_decay": saved.get("ema_decay", 0.0)}
    for option, written in written_with.items():
        given = getattr(setup.args, option)
        if given != written:
            raise UserError(f"'{setup.resume_from}' was written with --{option} {written}, this run has {given}: "
                            f"resume with --{option} {written}, or start over with --overwrite_output_dir")


def _ema_state(setup: TrainingSetup, saved: dict | None):
    """--ema_decay: the average of the weights (None without), restored from a checkpoint's tensor
    state when resuming. Built before the objective, so it copies the plain model, never a compiled one."""
    if not setup.args.ema_decay:
        return None
    ema = make_ema(setup.model, setup.args.ema_decay)
    if saved is not None:
        ema.load_state_dict(saved["ema"])
    return ema


def _optimizer_state(setup: TrainingSetup, saved: dict | None, step: int):
    """The optimizer (--optimizer), the LR schedule and fp16's gradient scaler, restored from a checkpoint's tensor
    state when resuming; the RNG states last, so dropout and masking continue where they were."""
    optimizer, scheduler = setup.optimizer_and_scheduler()
    scaler = grad_scaler(setup.device, setup.args.precision)
    if saved is not None:
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        if saved.get("scaler"):  # absent in checkpoints older than --precision
            scaler.load_state_dict(saved["scaler"])
        _restore_rng(saved, setup.args.seed, step)
    return optimizer, scheduler, scaler


def _forward_backward(setup: TrainingSetup, objective, scaler, micro_batches: list[torch.Tensor],
                      progress: _Progress, joined: int = 1) -> None:
    """Accumulate the gradients of one optimizer step's micro-batches (block indices, each run of
    `joined` consecutive ones one sequence: --length_schedule), each loss divided by their number,
    and add their losses to the logging window. With several processes the gradients are
    all-reduced on the last micro-batch only."""
    args = setup.args
    for j, indices in enumerate(micro_batches):
        ids = setup.train_dataset.batch(indices)
        ids = ids.view(-1, joined * ids.size(1))  # runs of `joined` consecutive blocks: one sequence each
        batch = setup.training_batch({"input_ids": ids}, progress.step)
        batch = {key: v.to(setup.device) if torch.is_tensor(v) else v for key, v in batch.items()}
        with distributed.no_sync(objective, j + 1 < len(micro_batches)):
            with autocast(setup.device, args.precision):
                loss, parts = objective(batch)
            if not torch.isfinite(loss):
                if not args.skip_nonfinite:
                    raise NonFiniteLoss.at(setup.folder, loss.item(), progress.step + 1, skippable=True)
                progress.skipped += 1
                setup.logger.warning(f"skipped a batch with a non-finite loss ({progress.skipped} so far)")
                continue
            # Average over the micro-batches of this step (the epoch's last may have fewer).
            scaler.scale(loss / len(micro_batches)).backward()
        progress.window_loss += loss.item()
        progress.window_micro += 1
        progress.window_tokens += batch["input_ids"].numel()
        add_loss_parts(progress.window_parts, parts)


def _log_window(setup: TrainingSetup, progress: _Progress, scheduler, grad_norm: float, seconds: float,
                steps_in_epoch: int) -> dict[str, float]:
    """Log the training metrics of the window since the last log (sums over all processes), reset it, and
    return them."""
    tags = sorted(progress.window_parts)
    sums = distributed.sum_across([progress.window_loss, progress.window_micro, progress.window_tokens,
                                   *(progress.window_parts[t][0] for t in tags),
                                   *(progress.window_parts[t][1] for t in tags)])
    loss, micro, tokens = sums[:3]
    part_sums, part_counts = sums[3:3 + len(tags)], sums[3 + len(tags):]
    metrics = setup.train_metrics(progress.step, loss / max(micro, 1), scheduler.get_last_lr()[0], grad_norm,
                            tokens / max(seconds, 1e-9), progress.epoch + steps_in_epoch / setup.steps_per_epoch,
                            {tag: total / n for tag, total, n in zip(tags, part_sums, part_counts, strict=True)})
    if setup.args.skip_nonfinite:
        metrics["train/skipped_batches"] = progress.skipped
    setup.logger.metrics(progress.step, metrics)
    progress.window_parts = {}
    progress.window_loss, progress.window_micro, progress.window_tokens = 0.0, 0, 0
    return metrics
