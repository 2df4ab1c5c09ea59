#!/usr/bin/env python3
"""Generate the tiny synthetic fine-tuning task set in ``data/sample_eval/glue/``.

Two sentence-pair tasks in BabyLM's (Super)GLUE jsonl layout, one JSON object
per line with ``sentence1``, ``sentence2``, ``label`` and ``idx``:

- ``rte``: does sentence1 entail sentence2? Labels as in GLUE/BabyLM RTE:
  0 = entailment, 1 = not_entailment.
- ``mrpc``: is sentence2 a paraphrase of sentence1? 1 = paraphrase, 0 = not.

Every sentence is built here from a small hand-written vocabulary with invented
names; nothing is copied from any real data set. The labels follow surface cues
a tiny model can pick up in a few epochs (e.g. "Someone"/"something" mostly
means entailment, "not"/"Nobody" means not_entailment; a passive, a fronted
place or a synonym verb mostly means paraphrase), plus a share of pairs that
only a comparison of the two sentences decides, so the tasks are learnable but
not trivial. Labels are balanced, so chance accuracy is about 0.5.

The output is deterministic: each (task, split) has its own ``random.Random``
seeded with a fixed base XOR the CRC32 of ``"<task>/<split>"``, and a valid pair
that also occurs in train is redrawn. Run it from any directory::

    python3 data/sample_eval/make_glue.py
"""

from __future__ import annotations

import json
import random
import zlib
from collections.abc import Callable
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent / "glue"
BASE_SEED = 20250311
SIZES = {"train": 200, "valid": 60}

NAMES = ("Mira", "Tovan", "Lusa", "Brenno", "Kalia", "Odrin", "Pella", "Surel", "Fenna", "Jarek", "Imso", "Dalvi")
OBJECTS = ("apple", "ball", "book", "cup", "kite", "hat", "drum", "lamp", "spoon", "boat", "map", "basket")
PLACES = ("in the garden", "at the river", "near the barn", "by the gate", "on the hill", "in the kitchen")
# (base, past, participle, synonym in the past tense): the synonym only ever appears in mrpc paraphrases.
VERBS = (
    ("find", "found", "found", "discovered"),
    ("carry", "carried", "carried", "took"),
    ("buy", "bought", "bought", "purchased"),
    ("fix", "fixed", "fixed", "repaired"),
    ("throw", "threw", "thrown", "tossed"),
    ("lose", "lost", "lost", "misplaced"),
    ("wash", "washed", "washed", "cleaned"),
    ("paint", "painted", "painted", "coloured"),
    ("hide", "hid", "hidden", "concealed"),
    ("drop", "dropped", "dropped", "let go of"),
)

Pair = tuple[str, str, int]


def other(rng: random.Random, choices: tuple, not_this) -> object:
    """A random element of `choices` different from `not_this`."""
    return rng.choice([c for c in choices if c != not_this])


def rte_pair(rng: random.Random) -> Pair:
    """A premise and a hypothesis; 0 = entailment, 1 = not_entailment."""
    name, obj, place = rng.choice(NAMES), rng.choice(OBJECTS), rng.choice(PLACES)
    base, past, _, _ = rng.choice(VERBS)
    premise = f"{name} {past} the {obj} {place}."
    label = int(rng.random() < 0.5)
    kind = rng.random()
    if label == 0:
        if kind < 0.4:
            hypothesis = f"Someone {past} the {obj}."
        elif kind < 0.8:
            hypothesis = f"{name} {past} something."
        else:  # no cue word: only comparing with the premise shows it is entailed
            hypothesis = f"{name} {past} the {obj}."
    else:
        if kind < 0.35:
            hypothesis = f"{name} did not {base} the {obj}."
        elif kind < 0.6:
            hypothesis = f"Nobody {past} the {obj}."
        elif kind < 0.8:
            hypothesis = f"{other(rng, NAMES, name)} {past} the {obj}."
        else:
            hypothesis = f"{name} {past} the {other(rng, OBJECTS, obj)}."
    return premise, hypothesis, label


def mrpc_pair(rng: random.Random) -> Pair:
    """Two sentences; 1 = paraphrase, 0 = not a paraphrase."""
    name, obj, place = rng.choice(NAMES), rng.choice(OBJECTS), rng.choice(PLACES)
    verb = rng.choice(VERBS)
    _, past, participle, synonym = verb
    first = f"{name} {past} the {obj} {place}."
    label = int(rng.random() < 0.5)
    kind = rng.random()
    if label == 1:
        if kind < 1 / 3:
            second = f"The {obj} was {participle} by {name} {place}."
        elif kind < 2 / 3:
            second = f"{place.capitalize()}, {name} {past} the {obj}."
        else:
            second = f"{name} {synonym} the {obj} {place}."
    else:
        if kind < 0.25:  # a passive like the paraphrases, but with the wrong person
            second = f"The {obj} was {participle} by {other(rng, NAMES, name)} {place}."
        elif kind < 0.5:
            second = f"{other(rng, NAMES, name)} {past} the {obj} {place}."
        elif kind < 0.75:
            second = f"{name} {past} the {other(rng, OBJECTS, obj)} {place}."
        else:
            second = f"{name} {other(rng, VERBS, verb)[1]} the {obj} {place}."
    return first, second, label


TASKS: dict[str, Callable[[random.Random], Pair]] = {"rte": rte_pair, "mrpc": mrpc_pair}


def make_split(task: str, split: str, avoid: set[Pair]) -> list[Pair]:
    """`SIZES[split]` distinct pairs of `task`, none of them in `avoid`."""
    rng = random.Random(BASE_SEED ^ zlib.crc32(f"{task}/{split}".encode()))
    pairs: list[Pair] = []
    seen = set(avoid)
    while len(pairs) < SIZES[split]:
        pair = TASKS[task](rng)
        if pair not in seen:
            seen.add(pair)
            pairs.append(pair)
    return pairs


def main() -> None:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for task in TASKS:
        train = make_split(task, "train", set())
        splits = {"train": train, "valid": make_split(task, "valid", set(train))}
        for split, pairs in splits.items():
            lines = [json.dumps({"sentence1": a, "sentence2": b, "label": label, "idx": i})
                     for i, (a, b, label) in enumerate(pairs)]
            path = OUT_DIR / f"{task}.{split}.jsonl"
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
            ones = sum(label for _, _, label in pairs)
            print(f"{path}: {len(pairs)} pairs, {ones} with label 1")


if __name__ == "__main__":
    main()
