"""Write a tiny BLiMP-format minimal-pair set for the demo and the tests.

The pairs are synthetic, made here from a small word list in the vocabulary of
data/sample (so a model trained on the sample corpus can beat chance). Four
paradigms of 40 pairs each, in the real files' jsonl layout. One paradigm spells
its field `syntax/semantics`, as some real BLiMP files do, to exercise the
normalisation. Regenerate with `python3 data/sample_eval/make_blimp.py`."""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parent / "blimp"
PAIRS = 40

# (singular, plural, gender) for people; gender m/f/None
PEOPLE = [("boy", "boys", "m"), ("girl", "girls", "f"), ("king", "kings", "m"), ("queen", "queens", "f"),
          ("brother", "brothers", "m"), ("sister", "sisters", "f"), ("man", "men", "m"), ("woman", "women", "f"),
          ("teacher", "teachers", None), ("friend", "friends", None), ("farmer", "farmers", None)]
THINGS = [("ball", "balls"), ("cup", "cups"), ("box", "boxes"), ("book", "books"), ("apple", "apples"),
          ("hat", "hats"), ("dog", "dogs"), ("cat", "cats"), ("bird", "birds"), ("horse", "horses")]
NAMES = ["Mira", "Teo", "Junie", "Bram", "Calla", "Jory"]
# (base, third singular, past) of transitive verbs
VERBS = [("see", "sees", "saw"), ("find", "finds", "found"), ("want", "wants", "wanted"),
         ("like", "likes", "liked"), ("carry", "carries", "carried"), ("watch", "watches", "watched")]
REFL_VERBS = ["washed", "helped", "dressed", "praised", "blamed"]
INTRANS = [("run", "runs"), ("sleep", "sleeps"), ("sing", "sings"), ("laugh", "laughs"), ("jump", "jumps")]


def determiner_noun(rng: random.Random) -> tuple[str, str]:
    name, verb = rng.choice(NAMES), rng.choice(VERBS)[2]
    sg, pl = rng.choice(THINGS)
    if rng.random() < 0.5:
        return f"{name} {verb} this {sg}.", f"{name} {verb} this {pl}."
    return f"{name} {verb} these {pl}.", f"{name} {verb} these {sg}."


def subject_verb(rng: random.Random) -> tuple[str, str]:
    sg, pl, _ = rng.choice(PEOPLE)
    base, third = rng.choice(INTRANS)
    if rng.random() < 0.5:
        return f"The {pl} {base}.", f"The {pl} {third}."
    return f"The {sg} {third}.", f"The {sg} {base}."


def anaphor_number(rng: random.Random) -> tuple[str, str]:
    sg, pl, gender = rng.choice([p for p in PEOPLE if p[2]])
    verb = rng.choice(REFL_VERBS)
    own = "himself" if gender == "m" else "herself"
    if rng.random() < 0.5:
        return f"The {pl} {verb} themselves.", f"The {pl} {verb} {own}."
    return f"The {sg} {verb} {own}.", f"The {sg} {verb} themselves."


def anaphor_gender(rng: random.Random) -> tuple[str, str]:
    sg, _, gender = rng.choice([p for p in PEOPLE if p[2]])
    verb = rng.choice(REFL_VERBS)
    good, bad = ("himself", "herself") if gender == "m" else ("herself", "himself")
    return f"The {sg} {verb} {good}.", f"The {sg} {verb} {bad}."


PARADIGMS = [
    ("determiner_noun_agreement_sample", "morphology", "determiner_noun_agreement", determiner_noun),
    ("subject_verb_agreement_sample", "morphology", "subject_verb_agreement", subject_verb),
    ("anaphor_number_agreement_sample", "morphology", "anaphor_agreement", anaphor_number),
    ("anaphor_gender_agreement_sample", "syntax/semantics", "binding", anaphor_gender),
]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for n, (uid, field, term, make) in enumerate(PARADIGMS):
        rng = random.Random(1000 + n)
        seen: set[tuple[str, str]] = set()
        rows = []
        while len(rows) < PAIRS:
            good, bad = make(rng)
            if (good, bad) in seen:
                continue
            seen.add((good, bad))
            rows.append({"sentence_good": good, "sentence_bad": bad, "field": field,
                         "linguistics_term": term, "UID": uid, "pair_id": len(rows)})
        with open(OUT / f"{uid}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)


if __name__ == "__main__":
    main()
