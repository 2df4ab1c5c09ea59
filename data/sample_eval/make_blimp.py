#!/usr/bin/env python3
"""Write the tiny BLiMP-format minimal-pair set for the demo and the tests.

The pairs test regularities that the sample corpus really contains: its text
comes from the grammar of ``data/make_sample.py``, which always gets
subject-verb, determiner-noun, a/an and reflexive agreement right, so every
good sentence below is one that grammar could write and every bad one breaks
a rule the corpus never breaks. The words are that grammar's own vocabulary
(imported from ``data/make_sample.py``), kept only when they occur often
enough in ``data/sample/babylm_10M`` (``MIN_COUNT``; for nouns both the singular
and the plural). Seven paradigms of ``PAIRS`` pairs each, in the real files'
jsonl layout; in each, half the pairs have a singular (or "a") good sentence
and half a plural (or "an") one, so a model that simply prefers one form of
the word scores 50%:

- determiner_noun_agreement_sample: ``Look at these frogs.`` / ``Look at these
  frog.`` (this / these / those; not "that", which the corpus also uses as a
  relative pronoun before verbs ending in -s: "the girl that helps ...")
- subject_verb_agreement_sample: ``The dogs are hungry.`` / ``The dogs is
  hungry.`` (is/are, was/were)
- existential_there_agreement_sample: ``There are two ducks near the pond.`` /
  ``There is two ducks near the pond.``
- indefinite_article_sample: ``She found an apple.`` / ``She found a apple.``
- anaphor_number_agreement_sample: ``The girls washed themselves.`` / ``The
  girls washed herself.``
- anaphor_gender_agreement_sample: ``He hid himself.`` / ``He hid herself.``
  (pronoun, name or noun subjects)
- principle_A_c_command_sample: the reflexive agrees with the head of the
  subject, not with the noun of a prepositional phrase inside it: ``The girls
  near the dog washed themselves.`` / ``The girls near the dog washed
  itself.`` Its field is spelled ``syntax/semantics``, as in some real BLiMP
  files, to exercise the normalisation.

``python3 data/sample_eval/make_blimp.py`` regenerates the files (byte-identical,
from any directory); ``--check`` instead counts, in the train corpus, the words
around the place where each pair differs (e.g. "dogs are" against "dogs is"):
how many pairs' good n-gram occurs there, and how many bad ones do.
Standard library only.
"""

from __future__ import annotations

import json
import random
import re
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import make_sample as ms  # noqa: E402  (data/make_sample.py: the corpus grammar and vocabulary)

OUT = HERE / "blimp"
CORPUS = HERE.parent / "sample" / "babylm_10M"
PAIRS = 50
MIN_COUNT = 8  # nouns: both forms at least this often in the train corpus; other words: see below
WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def corpus_words() -> list[list[str]]:
    """The train corpus as lowercased word lists, one per line."""
    return [WORD.findall(line.lower()) for path in sorted(CORPUS.glob("*.train"))
            for line in path.read_text(encoding="utf-8").splitlines()]


COUNTS = Counter(w for line in corpus_words() for w in line)


def frequent(*words: str, least: int = MIN_COUNT) -> bool:
    return all(COUNTS[w.lower()] >= least for w in words)


def nouns(*pools: tuple[ms.Noun, ...]) -> list[ms.Noun]:
    """Nouns with distinct singular and plural, both frequent, first occurrence kept."""
    return list(dict.fromkeys(n for pool in pools for n in pool if n.sg != n.pl and frequent(n.sg, n.pl)))


PEOPLE = nouns(ms.PEOPLE_HOME, ms.PEOPLE_TALE)
ANIMALS = nouns(ms.ANIMALS_HOME, ms.ANIMALS_TALE)
THINGS = [n for n in nouns(ms.THINGS_HOME, ms.THINGS_TALE, ms.THINGS_UK, ms.THINGS_US, ms.FOODS) if n not in ANIMALS]
ANIMATE = PEOPLE + ANIMALS
MALE = [n for n in PEOPLE if n.gender == "m"]
FEMALE = [n for n in PEOPLE if n.gender == "f"]
NAMES_M = [n for n in ms.NAMES_M + ms.KID_NAMES_M + ms.PET_NAMES_M if n[0].isupper() and frequent(n, least=5)]
NAMES_F = [n for n in ms.NAMES_F + ms.KID_NAMES_F + ms.PET_NAMES_F if n[0].isupper() and frequent(n, least=5)]
V_THING = [v for v in ms.V_THING if frequent(v.past, least=5)]
V_ANIM = [v for v in ms.V_ANIM if frequent(v.past, least=5)]
V_REFL = [v for v in ms.V_REFL if frequent(v.past, v.s, v.base, least=3)]
ADJ_ANIM = [a for a in ms.ADJ_ANIM_PRED if frequent(a, least=5)]
ADJ_THING = [a for a in ms.ADJ_THING_PRED if frequent(a, least=5)]
PLACES = [(noun, preps) for noun, preps in dict.fromkeys(ms.PLACES_HOME + ms.PLACES_TALE) if frequent(noun)]
PRONOUNS = ("I", "We", "They", "She", "He")

Pair = tuple[str, str]


def determiner_noun(rng: random.Random, plural: bool) -> Pair:
    noun = rng.choice(THINGS + ANIMATE)
    det = rng.choice(("these", "those")) if plural else "this"
    good, bad = (noun.pl, noun.sg) if plural else (noun.sg, noun.pl)
    if rng.random() < 0.5:
        head = "Look at"
    else:
        head = f"{rng.choice(PRONOUNS)} {rng.choice(V_THING if noun in THINGS else V_ANIM).past}"
    return f"{head} {det} {good}.", f"{head} {det} {bad}."


def subject_verb(rng: random.Random, plural: bool) -> Pair:
    noun, adj = (rng.choice(ANIMATE), rng.choice(ADJ_ANIM)) if rng.random() < 0.6 else \
        (rng.choice(THINGS), rng.choice(ADJ_THING))
    sg, pl = ("was", "were") if rng.random() < 0.5 else ("is", "are")
    if plural:
        return f"The {noun.pl} {pl} {adj}.", f"The {noun.pl} {sg} {adj}."
    return f"The {noun.sg} {sg} {adj}.", f"The {noun.sg} {pl} {adj}."


def existential_there(rng: random.Random, plural: bool) -> Pair:
    noun = rng.choice(ANIMALS + THINGS)
    place, preps = rng.choice(PLACES)
    where = f"{rng.choice(preps)} the {place}"
    sg, pl = ("was", "were") if rng.random() < 0.5 else ("is", "are")
    if plural:
        many = rng.choice(("two", "three", "many", "some", "no"))
        return f"There {pl} {many} {noun.pl} {where}.", f"There {sg} {many} {noun.pl} {where}."
    art = ms.article(noun.sg)
    return f"There {sg} {art} {noun.sg} {where}.", f"There {pl} {art} {noun.sg} {where}."


def indefinite_article(rng: random.Random, vowel: bool) -> Pair:
    noun = rng.choice([n for n in THINGS + ANIMATE if (n.sg[0] in "aeiou") == vowel])
    verbs = ("saw", "met", "helped") if noun in PEOPLE else ("found", "saw", "wanted", "had", "needed")
    head = f"{rng.choice(PRONOUNS)} {rng.choice(verbs)}"
    good, bad = ("an", "a") if vowel else ("a", "an")
    return f"{head} {good} {noun.sg}.", f"{head} {bad} {noun.sg}."


def own_reflexive(noun_or_name: ms.Noun | str) -> str:
    male = noun_or_name in NAMES_M if isinstance(noun_or_name, str) else noun_or_name.gender == "m"
    return "himself" if male else "herself"


def anaphor_number(rng: random.Random, plural: bool) -> Pair:
    verb = rng.choice(V_REFL)
    person = rng.choice(MALE + FEMALE)
    if plural:
        subject, form = ("They", verb.base) if rng.random() < 0.3 else (f"The {person.pl}", verb.past)
        if rng.random() < 0.5:
            form = verb.past
        return f"{subject} {form} themselves.", f"{subject} {form} {own_reflexive(person)}."
    form = verb.past if rng.random() < 0.5 else verb.s
    return f"The {person.sg} {form} {own_reflexive(person)}.", f"The {person.sg} {form} themselves."


def anaphor_gender(rng: random.Random, female: bool) -> Pair:
    r = rng.random()
    if r < 0.35:
        subject = "She" if female else "He"
    elif r < 0.6:
        subject = rng.choice(NAMES_F if female else NAMES_M)
    else:
        subject = "The " + rng.choice(FEMALE if female else MALE).sg
    verb = rng.choice(V_REFL)
    form = verb.past if rng.random() < 0.5 else verb.s
    good, bad = ("herself", "himself") if female else ("himself", "herself")
    return f"{subject} {form} {good}.", f"{subject} {form} {bad}."


def principle_a(rng: random.Random, plural: bool) -> Pair:
    """The reflexive agrees with the head of the subject, not with the noun of a prepositional phrase
    inside it (which does not c-command it): the grammar's attractor subjects ("the dog near the trees")."""
    verb = rng.choice(V_REFL).past
    prep = rng.choice(("near", "behind", "beside", "with"))
    other = rng.choice(THINGS + ANIMALS)
    if plural:
        head = rng.choice(PEOPLE)
        return (f"The {head.pl} {prep} the {other.sg} {verb} themselves.",
                f"The {head.pl} {prep} the {other.sg} {verb} itself.")
    head = rng.choice(MALE + FEMALE)
    return (f"The {head.sg} {prep} the {other.pl} {verb} {own_reflexive(head)}.",
            f"The {head.sg} {prep} the {other.pl} {verb} themselves.")


# (UID, field, linguistics_term, maker, the words around the difference that --check counts: see window())
PARADIGMS: list[tuple[str, str, str, Callable[[random.Random, bool], Pair], tuple[int, int]]] = [
    ("determiner_noun_agreement_sample", "morphology", "determiner_noun_agreement", determiner_noun, (1, 0)),
    ("subject_verb_agreement_sample", "morphology", "subject_verb_agreement", subject_verb, (1, 0)),
    ("existential_there_agreement_sample", "morphology", "subject_verb_agreement", existential_there, (1, 1)),
    ("indefinite_article_sample", "morphology", "determiner_noun_agreement", indefinite_article, (0, 1)),
    ("anaphor_number_agreement_sample", "morphology", "anaphor_agreement", anaphor_number, (-2, 0)),
    ("anaphor_gender_agreement_sample", "morphology", "anaphor_agreement", anaphor_gender, (-2, 0)),
    ("principle_A_c_command_sample", "syntax/semantics", "binding", principle_a, (-5, 0)),
]


def make_rows(n: int) -> dict[str, list[dict]]:
    """PAIRS distinct pairs per paradigm, the two directions alternating."""
    out = {}
    for k, (uid, field, term, make, _) in enumerate(PARADIGMS):
        rng = random.Random(1000 + k)
        seen: set[Pair] = set()
        rows: list[dict] = []
        while len(rows) < PAIRS:
            pair = make(rng, len(rows) % 2 == 1)
            if pair in seen:
                continue
            seen.add(pair)
            rows.append({"sentence_good": pair[0], "sentence_bad": pair[1], "field": field,
                         "linguistics_term": term, "UID": uid, "pair_id": len(rows)})
        out[uid] = rows
    return out


def window(sentence: str, other: str, before: int, after: int) -> tuple[str, ...]:
    """The words of `sentence` from `before` words ahead of the first one that differs from `other`
    to `after` words past it; with a negative `before`, only the word -before ahead and the
    differing one, the words between them written "*" (a subject and its reflexive)."""
    a, b = WORD.findall(sentence.lower()), WORD.findall(other.lower())
    i = next(i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)
    if before < 0:
        return (a[i + before], *["*"] * (-before - 1), a[i])
    return tuple(a[max(i - before, 0): i + after + 1])


def check() -> None:
    """Per paradigm: pairs whose good / bad n-gram around the difference occurs in the train corpus."""
    grams: Counter[tuple[str, ...]] = Counter()
    for line in corpus_words():
        for n in (2, 3):
            grams.update(tuple(line[i: i + n]) for i in range(len(line) - n + 1))
        for gap in (1, 4):  # subject * reflexive, head * * * * reflexive
            grams.update((line[i], *["*"] * gap, line[i + gap + 1]) for i in range(len(line) - gap - 1))
    print(f"{'paradigm':36s} pairs  good n-gram in corpus  bad n-gram in corpus  (e.g. good / bad)")
    for (uid, _, _, _, (before, after)), rows in zip(PARADIGMS, make_rows(PAIRS).values(), strict=True):
        good = [window(r["sentence_good"], r["sentence_bad"], before, after) for r in rows]
        bad = [window(r["sentence_bad"], r["sentence_good"], before, after) for r in rows]
        print(f"{uid:36s} {len(rows):5d}  {sum(grams[g] > 0 for g in good):21d}  {sum(grams[b] > 0 for b in bad):20d}"
              f"  ({' '.join(good[0])} / {' '.join(bad[0])})")


def main() -> None:
    if sys.argv[1:] == ["--check"]:
        check()
        return
    OUT.mkdir(parents=True, exist_ok=True)
    for uid, rows in make_rows(PAIRS).items():
        (OUT / f"{uid}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        print(f"{OUT / uid}.jsonl: {len(rows)} pairs")


if __name__ == "__main__":
    main()
