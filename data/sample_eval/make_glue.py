#!/usr/bin/env python3
"""Generate the tiny synthetic fine-tuning task set in ``data/sample_eval/glue/``.

Two sentence-pair tasks in BabyLM's (Super)GLUE jsonl layout, one JSON object
per line with ``sentence1``, ``sentence2``, ``label`` and ``idx``:

- ``rte``: does sentence1 entail sentence2? Labels as in GLUE/BabyLM RTE:
  0 = entailment, 1 = not_entailment.
- ``mrpc``: is sentence2 a paraphrase of sentence1? 1 = paraphrase, 0 = not.

Every sentence is built here from words of the sample corpus's own vocabulary
(``data/make_sample.py``: its invented names, its things, verbs and places,
each of which occurs in ``data/sample/babylm_10M``), so the pretrained demo
models know the words; nothing is copied from any real data set. The labels
follow surface cues a tiny model picks up in a few epochs, plus a share of
pairs that only a comparison of the two sentences decides:

- rte: "Someone"/"something" or a pronoun mark entailment, "not"/"Nobody"
  not_entailment; a fifth of the hypotheses ("Mira found the cup." against
  "Teo found the cup.") carry no cue word.
- mrpc: a paraphrase is a passive ("The cup was found by Mira in the
  garden."), a fronted place ("In the garden, Mira found the cup.") or the
  name replaced by its pronoun ("She found the cup in the garden."); a
  non-paraphrase keeps sentence1's words with one swapped (another person,
  thing or verb). A fifth of the non-paraphrases are passives with another
  person, which only a comparison of the names tells apart.

Labels alternate, so each split is exactly balanced: the majority class is
right half the time, and predicting "paraphrase" everywhere scores an mrpc F1
of 0.667 at accuracy 0.5.

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

# Names of data/make_sample.py, with the pronoun its grammar uses for them.
NAMES = {"Mira": "She", "Calla": "She", "Nessa": "She", "Petra": "She", "Ilse": "She", "Junie": "She",
         "Teo": "He", "Tobin": "He", "Bram": "He", "Oren": "He", "Marek": "He", "Jory": "He"}
OBJECTS = ("cup", "book", "box", "key", "boat", "basket", "map", "rope", "letter", "bell", "mirror", "truck")
PLACES = ("in the garden", "in the kitchen", "near the market", "in the yard", "near the lake", "near the river",
          "on the hill", "near the bridge")
# (base, past, participle), all in data/make_sample.py's verb lists
VERBS = (
    ("find", "found", "found"),
    ("carry", "carried", "carried"),
    ("drop", "dropped", "dropped"),
    ("hold", "held", "held"),
    ("bring", "brought", "brought"),
    ("push", "pushed", "pushed"),
    ("open", "opened", "opened"),
    ("lose", "lost", "lost"),
    ("wash", "washed", "washed"),
    ("paint", "painted", "painted"),
)

Pair = tuple[str, str, int]


def other(rng: random.Random, choices, not_this):
    """A random element of `choices` different from `not_this`."""
    return rng.choice([c for c in choices if c != not_this])


def rte_pair(rng: random.Random, label: int) -> Pair:
    """A premise and a hypothesis; 0 = entailment, 1 = not_entailment."""
    name, obj, place = rng.choice(sorted(NAMES)), rng.choice(OBJECTS), rng.choice(PLACES)
    base, past, _ = rng.choice(VERBS)
    premise = f"{name} {past} the {obj} {place}."
    kind = rng.random()
    if label == 0:
        if kind < 0.3:
            hypothesis = f"Someone {past} the {obj}."
        elif kind < 0.6:
            hypothesis = f"{name} {past} something."
        elif kind < 0.8:
            hypothesis = f"{NAMES[name]} {past} the {obj} {place}."
        else:  # no cue word: only comparing with the premise shows it is entailed
            hypothesis = f"{name} {past} the {obj}."
    else:
        if kind < 0.35:
            hypothesis = f"{name} did not {base} the {obj}."
        elif kind < 0.7:
            hypothesis = f"Nobody {past} the {obj}."
        elif kind < 0.85:
            hypothesis = f"{other(rng, sorted(NAMES), name)} {past} the {obj}."
        else:
            hypothesis = f"{name} {past} the {other(rng, OBJECTS, obj)}."
    return premise, hypothesis, label


def mrpc_pair(rng: random.Random, label: int) -> Pair:
    """Two sentences; 1 = paraphrase, 0 = not a paraphrase."""
    name, obj, place = rng.choice(sorted(NAMES)), rng.choice(OBJECTS), rng.choice(PLACES)
    verb = rng.choice(VERBS)
    _, past, participle = verb
    first = f"{name} {past} the {obj} {place}."
    kind = rng.random()
    if label == 1:
        if kind < 1 / 3:
            second = f"The {obj} was {participle} by {name} {place}."
        elif kind < 2 / 3:
            second = f"{place.capitalize()}, {name} {past} the {obj}."
        else:
            second = f"{NAMES[name]} {past} the {obj} {place}."
    else:
        if kind < 0.2:  # a passive like the paraphrases, but with another person
            second = f"The {obj} was {participle} by {other(rng, sorted(NAMES), name)} {place}."
        elif kind < 0.47:
            second = f"{other(rng, sorted(NAMES), name)} {past} the {obj} {place}."
        elif kind < 0.74:
            second = f"{name} {past} the {other(rng, OBJECTS, obj)} {place}."
        else:
            second = f"{name} {other(rng, VERBS, verb)[1]} the {obj} {place}."
    return first, second, label


TASKS: dict[str, Callable[[random.Random, int], Pair]] = {"rte": rte_pair, "mrpc": mrpc_pair}


def make_split(task: str, split: str, avoid: set[Pair]) -> list[Pair]:
    """`SIZES[split]` distinct pairs of `task`, none of them in `avoid`, labels alternating 0, 1, 0, ..."""
    rng = random.Random(BASE_SEED ^ zlib.crc32(f"{task}/{split}".encode()))
    pairs: list[Pair] = []
    seen = set(avoid)
    while len(pairs) < SIZES[split]:
        pair = TASKS[task](rng, len(pairs) % 2)
        if pair not in seen:
            seen.add(pair)
            pairs.append(pair)
    return pairs


def main(out_dir: Path = OUT_DIR) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for task in TASKS:
        train = make_split(task, "train", set())
        splits = {"train": train, "valid": make_split(task, "valid", set(train))}
        for split, pairs in splits.items():
            lines = [json.dumps({"sentence1": a, "sentence2": b, "label": label, "idx": i})
                     for i, (a, b, label) in enumerate(pairs)]
            path = out_dir / f"{task}.{split}.jsonl"
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
            ones = sum(label for _, _, label in pairs)
            print(f"{path}: {len(pairs)} pairs, {ones} with label 1")


if __name__ == "__main__":
    main()
