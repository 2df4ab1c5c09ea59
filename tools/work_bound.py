"""The most any exact scorer can gain over the official one in arithmetic: per task and backend,
the floating-point work the official loop does (plain_scores' batching, the head at every
position) against the least work an exact scorer must do, and their ratio.

An upper bound on the speedup at equal FLOP throughput: the official side is counted high
(full attention matrices over padded batches of 64, as its eager/sdpa kernels compute them),
the least side low (every distinct prefix-tree node or masked copy once, no padding, the last
layer and the head only where a log-probability is read, attention only over the keys a query
needs). A scorer can exceed it only by running its arithmetic faster than the official loop
does (larger matrix products, fewer Python steps), not by skipping work. `make bench` prints it
beside each measured speedup (tools/bench_official.py); `python -m tools.work_bound MODEL_DIR
BACKEND --eval_dir DIR` prints it alone.

FLOPs per position and layer: 24 d^2 (the projections and a 4d feed-forward, two FLOPs per
multiply-add); per attended (query, key) pair and layer: 4 d; per position through the head:
2 d V. Norms, softmaxes and embeddings are left out on both sides (a few percent)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from evaluation import zero_shot
from evaluation.scoring import Plan
from evaluation.tasks import Task, find_tasks, read_task

OFFICIAL_BATCH = 64  # evaluation-pipeline-2025 sentence_zero_shot: --batch_size and --non_causal_batch_size


@dataclass
class Work:
    """Positions through every layer but the last, through the last, (query, key) pairs likewise,
    and positions through the vocabulary head."""

    positions: int = 0
    last_positions: int = 0
    pairs: int = 0
    last_pairs: int = 0
    head: int = 0

    def flops(self, layers: int, hidden: int, vocab: int) -> float:
        """Floating-point operations of this work through a `layers` x `hidden` body and a `vocab` head."""
        return (24 * hidden * hidden * ((layers - 1) * self.positions + self.last_positions)
                + 4 * hidden * ((layers - 1) * self.pairs + self.last_pairs) + 2 * hidden * vocab * self.head)


def official_work(plans_per_slot: list[list[Plan]], backend: str, batch_size: int = OFFICIAL_BATCH) -> Work:
    """The official loop's work: items in file order, `batch_size` a batch, each candidate slot in
    turn. Causal: the batch padded to its longest sentence less its last token, every position
    through the head. Masked: every copy of the batch padded to the longest, through the head at
    every position."""
    work = Work()
    for plans in plans_per_slot:
        for start in range(0, len(plans), batch_size):
            batch = plans[start: start + batch_size]
            if backend == "causal":
                rows, length = len(batch), max(len(plan.ids) for plan in batch) - 1
            else:
                read = [plan for plan in batch if plan.reads]  # only copies are padded
                rows, length = sum(len(plan.reads) for plan in read), max((len(plan.ids) for plan in read), default=0)
            if rows == 0 or length < 1:
                continue
            work.positions += rows * length
            work.pairs += rows * length * length
            work.head += rows * length
    work.last_positions, work.last_pairs = work.positions, work.pairs
    return work


def least_work(plans: list[Plan], backend: str) -> Work:
    """The least work of an exact scorer. Causal: each distinct prefix a read needs is one node,
    attending to itself and its ancestors; the last layer and the head run only at the distinct
    nodes read. Masked: each distinct copy once through every layer but the last; the last layer
    only at the reads, which attend to the whole copy."""
    work = Work()
    if backend != "causal":
        copies = {(plan.ids, masked) for plan in plans for masked, _, _ in plan.reads}
        for ids, _ in copies:
            work.positions += len(ids)
            work.pairs += len(ids) * len(ids)
            work.last_positions += 1
            work.last_pairs += len(ids)
        work.head = len(copies)
        return work
    # A node is a distinct prefix. In sorted order a sequence shares with the one before it exactly
    # its common prefix, so counting the nodes past that prefix counts each node once.
    needed: dict[tuple[int, ...], set[int]] = {}
    for plan in plans:
        if plan.reads:
            reads = {read for _, read, _ in plan.reads}
            needed.setdefault(plan.ids[: max(reads) + 1], set()).update(reads)
    previous: tuple[int, ...] = ()
    read_on_path: list[bool] = []  # along the previous sequence: whether its node at each depth is counted as read
    for seq in sorted(needed):
        shared = 0
        while shared < min(len(seq), len(previous)) and seq[shared] == previous[shared]:
            shared += 1
        work.positions += len(seq) - shared
        work.pairs += sum(depth + 1 for depth in range(shared, len(seq)))
        read_on_path = read_on_path[:shared] + [False] * (len(seq) - shared)
        for depth in needed[seq]:
            if not read_on_path[depth]:
                read_on_path[depth] = True
                work.head += 1
                work.last_positions += 1
                work.last_pairs += depth + 1
        previous = seq
    return work


def _official_plans(tokenizer, task: Task, backend: str) -> tuple[list[Plan], list[list[Plan]]]:
    """The task's plans under the official convention, flat and per candidate slot (as the official loop runs them)."""
    plans = zero_shot.task_plans(tokenizer, task, backend, "official")
    per_item = zero_shot.by_item(task, plans)
    slots = max(len(item) for item in per_item)
    return plans, [[item[c] for item in per_item if c < len(item)] for c in range(slots)]


def bound(tokenizer, task: Task, backend: str, layers: int, hidden: int, vocab: int) -> float:
    """Official work / least work for one task at one size."""
    plans, per_slot = _official_plans(tokenizer, task, backend)
    return (official_work(per_slot, backend).flops(layers, hidden, vocab)
            / least_work(plans, backend).flops(layers, hidden, vocab))


def model_size(config) -> tuple[int, int, int]:
    """(layers, hidden, vocabulary) of a saved model's config (GPT-2's n_layer and n_embd answer to
    these names through transformers' attribute_map)."""
    return config.num_hidden_layers, config.hidden_size, config.vocab_size


def main() -> None:
    from transformers import AutoConfig

    from tokenizer import load_tokenizer

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model_dir", type=Path,
                   help="a saved model folder (its config gives the size, its tokenizer the tokens)")
    p.add_argument("backend", choices=["causal", "mlm", "mntp"])
    p.add_argument("--eval_dir", type=Path, required=True, help="the official fast_eval/ or full_eval/ folder")
    args = p.parse_args()
    size = model_size(AutoConfig.from_pretrained(args.model_dir, trust_remote_code=True))
    tokenizer = load_tokenizer(args.model_dir, "--model_dir")
    print(f"{args.backend}, {size[0]} layers x {size[1]}, vocabulary {size[2]}: official work / least work")
    for name, folder in find_tasks(args.eval_dir):
        print(f"{name}/{folder.name}: {bound(tokenizer, read_task(name, folder), args.backend, *size):.2f}", flush=True)


if __name__ == "__main__":
    main()
