"""Data-parallel training over several processes: PyTorch's own engine, nothing home-made.

`torchrun --nproc_per_node=N run.py train ...` starts N processes and tells each one
its place through environment variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
MASTER_PORT). `init_distributed` reads them and joins the process group (gloo on
CPU, NCCL on CUDA with device cuda:LOCAL_RANK); without them (a plain `python
run.py`), or with WORLD_SIZE 1, it does nothing and every helper below is the
single-process identity, so a one-process run behaves exactly as before.

The custom loop wraps its training objective in `DistributedDataParallel` (see
`wrap_ddp`); the HF Trainer does the same through accelerate, which finds the
process group already initialised. Everything else the loops share asks `rank()`,
`is_main()` and `world_size()`: only rank 0 writes the run folder, and the
collectives here (a barrier, a broadcast flag, sums) are all the coordination there is.

A rank that fails stops the others: it exits non-zero (run.py turns a UserError into
exit code 1) and torchrun then terminates the remaining workers; as a backstop every
collective of the default group times out after `TIMEOUT` instead of waiting forever.
The one step that may legitimately keep the others waiting longer, rank 0 building
the dataset cache, waits on a separate group with a long timeout (`main_first`)."""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator

import torch
import torch.distributed as dist

from utils import UserError, get_device

# A collective that waits longer than this raises instead of hanging (a rank stuck or gone).
TIMEOUT = datetime.timedelta(minutes=10)
# Rank 0 tokenizing and packing a 100M-word corpus for the cache keeps the others waiting this long at most.
CACHE_TIMEOUT = datetime.timedelta(hours=3)

_slow_group = None  # a gloo group with CACHE_TIMEOUT, for `main_first`


def env_world_size() -> int:
    """WORLD_SIZE as torchrun sets it (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Processes training together (1 without a process group)."""
    return dist.get_world_size() if is_initialized() else 1


def rank() -> int:
    """This process's global rank (0 without a process group)."""
    return dist.get_rank() if is_initialized() else 0


def is_main() -> bool:
    """Whether this process is rank 0: the one that logs, writes TensorBoard and saves."""
    return rank() == 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def process_device(device_name: str = "auto") -> torch.device:
    """The device this process trains on: `get_device(device_name)`, except that with
    several processes on CUDA each one gets its own GPU, cuda:LOCAL_RANK."""
    device = get_device(device_name)
    if is_initialized() and device.type == "cuda":
        return torch.device("cuda", local_rank())
    return device


def init_distributed(device_name: str = "auto") -> torch.device | None:
    """Join the process group torchrun set up; returns this process's device, or None
    when not launched with several processes (nothing is initialised then).

    gloo on CPU; NCCL on CUDA, one device per process (cuda:LOCAL_RANK)."""
    global _slow_group
    if env_world_size() <= 1 or is_initialized():
        return None
    device = get_device(device_name)
    if device.type == "cuda":
        if device.index is not None:
            raise UserError(f"--device {device_name} names one GPU, but torchrun gives each process its own "
                            "(cuda:LOCAL_RANK): pass --device cuda or auto")
        device = torch.device("cuda", local_rank())
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise UserError(f"training with several processes runs on CPU (gloo) or CUDA (NCCL), not {device.type}: "
                        "pass --device cpu or cuda")
    dist.init_process_group(backend=backend, timeout=TIMEOUT,
                            device_id=device if device.type == "cuda" else None)
    _slow_group = dist.new_group(backend="gloo", timeout=CACHE_TIMEOUT)
    return device


def shutdown() -> None:
    """Leave the process group (at the end of a run, also after an error)."""
    global _slow_group
    if is_initialized():
        dist.destroy_process_group()
    _slow_group = None


def barrier() -> None:
    if is_initialized():
        dist.barrier()


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. building the dataset cache), the others wait
    and then run it (reading what rank 0 wrote), so they never race on a folder."""
    if not is_initialized():
        yield
        return
    if not is_main():
        dist.barrier(group=_slow_group)
    yield
    if is_main():
        dist.barrier(group=_slow_group)


def _reduce_device() -> torch.device:
    """Where collective tensors live: the GPU for NCCL, the CPU for gloo."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def sum_across(values: list[float]) -> list[float]:
    """Element-wise sums of `values` over all ranks (float64); the values themselves without a group."""
    if not is_initialized():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=_reduce_device())
    dist.all_reduce(t)
    return t.tolist()


def broadcast_flag(flag: bool) -> bool:
    """Rank 0's `flag` on every rank (e.g. early stopping: every rank must stop together)."""
    if not is_initialized():
        return flag
    t = torch.tensor([int(flag)], device=_reduce_device())
    dist.broadcast(t, src=0)
    return bool(t.item())


def gather_objects(obj: object) -> list[object]:
    """`obj` of every rank, in rank order (a list of one without a group)."""
    if not is_initialized():
        return [obj]
    out: list[object] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def wrap_ddp(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """`module` in DistributedDataParallel (gradients averaged over ranks in backward,
    parameters broadcast from rank 0 now); the module itself without a group."""
    if not is_initialized():
        return module
    from torch.nn.parallel import DistributedDataParallel

    # Buffers are synced once, here, not before every forward: none of the models keeps running statistics.
    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None,
                                   forward_sync_buffers=False)


def no_sync(module: torch.nn.Module, skip: bool):
    """DDP's `no_sync()` (gradients accumulate locally, no all-reduce) when `skip` and
    `module` is DDP-wrapped; otherwise a no-op context."""
    if skip and hasattr(module, "no_sync"):
        return module.no_sync()
    return contextlib.nullcontext()
