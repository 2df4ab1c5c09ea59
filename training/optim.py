"""AdamW and the learning-rate schedule: the same for both training loops and fine-tuning."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.optim.lr_scheduler import LambdaLR
from transformers import PreTrainedModel, get_cosine_schedule_with_warmup


def make_optimizer(model: PreTrainedModel, lr: float, weight_decay: float, betas: tuple[float, float],
                   eps: float) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only: biases and norm weights (all the
    1-D parameters) are not decayed. Both loops and fine-tuning use it."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    # The fused kernel (one pass over all parameters) is the same update as the default
    # for-each implementation, and measurably faster on CPU (see `make bench`).
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=params[0].device.type in ("cpu", "cuda"))


def optimizer_step(model: PreTrainedModel, optimizer: torch.optim.Optimizer, scheduler, scaler: torch.amp.GradScaler,
                   grad_norm_clip: float) -> float:
    """Clip the gradients (0: no clipping; their norm is returned, for the log), then step the
    optimizer, the gradient scaler and the LR schedule: the custom loop and fine-tuning both."""
    clip = grad_norm_clip if grad_norm_clip > 0 else float("inf")
    scaler.unscale_(optimizer)  # fp16: clip the true gradients
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip).item()
    scaler.step(optimizer)  # fp16: skipped when a gradient overflowed (the scale then shrinks)
    scaler.update()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm


def lr_factor(fraction: float, warmup_ratio: float) -> float:
    """The LR multiplier when `fraction` of the run is done: linear warm-up over the first
    `warmup_ratio`, then cosine decay to 0 at the end (get_cosine_schedule_with_warmup's shape)."""
    if fraction < warmup_ratio:
        return fraction / warmup_ratio
    return 0.5 * (1.0 + math.cos(math.pi * min((fraction - warmup_ratio) / (1.0 - warmup_ratio), 1.0)))


def make_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, warmup_ratio: float,
                   budget_fraction: Callable[[], float] | None = None, capped: bool = False):
    """Linear warm-up to the peak LR, then cosine decay to 0 at the last step. With a time budget
    (`budget_fraction`: the share of it used so far) over that share instead of the steps done, or,
    when the step count is `capped` too (a --track caps the run at MAX_EPOCHS epochs), over the
    larger of that share and the share of the capped steps: the schedule ends with whichever ends
    the run."""
    if budget_fraction is not None:
        return LambdaLR(optimizer, lambda step: lr_factor(
            max(budget_fraction(), step / total_steps if capped else 0.0), warmup_ratio))
    return get_cosine_schedule_with_warmup(optimizer, warmup_steps, total_steps)
