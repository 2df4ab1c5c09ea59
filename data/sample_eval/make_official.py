#!/usr/bin/env python3
"""Write ``data/sample_eval/fast_eval/``: tiny synthetic sets in the official BabyLM
evaluation pipeline's fast_eval layout, for the demo and the tests.

Nothing here is benchmark data: every item is built below from the sample corpus'
own grammar and vocabulary (``data/make_sample.py``, through the word lists of
``make_blimp.py``, which keeps the words that occur in ``data/sample/babylm_10M``),
so a model trained on ``data/sample`` knows the words. The nonce words of the two
WUG sets, the box names of entity tracking and the reading measures are invented
here. Layout and fields (as ``evaluation/tasks.py`` and ``evaluation/reading.py``
decode them):

- ``blimp_fast/<paradigm>.jsonl``: the first 20 pairs of each ``blimp/`` paradigm.
- ``supplement_fast/<subtask>.jsonl``: ``sentence_good`` / ``sentence_bad`` only
  (the subtask is the file name), two-turn dialogues "A: ...\\nB: ...":
  ``qa_congruence_sample`` (does the answer fit the wh-word?) and
  ``turn_taking_sample`` (does the answer take the speaker's point of view: "Did
  you ...?" "Yes, I did.", not "Yes, you did.").
- ``ewok_fast/<domain>.jsonl``: Context1/Context2 and Target1/Target2, Target1 right
  after Context1 (and Target2 after Context2): ``spatial-relations_sample`` (where
  a thing is, said directly or through the box it is in) and
  ``social-interactions_sample`` (who has a thing, said directly or through who
  gave or took it).
- ``entity_tracking_fast/regular.jsonl``: boxes and their contents, 0-2 moves,
  removals or additions, and five ways to finish "Box k contains ", the first right.
- ``wug_adj_nominalization/`` and ``wug_past_tense/``: two forms of a nonce word
  (-ity / -ness nouns; irregular / -ed past tenses) and an invented share of
  "people" preferring the first, which follows the word's ending plus noise.
- ``comps/comps_base.jsonl``: a property ("says woof.", "is hungry.") after the
  right concept ("The dog") and a wrong one ("The cat", "The cup").
- ``reading/reading_data.csv``: one row per word after the first of ten grammar
  sentences, in the official 25 columns, with synthetic reading times and ERP
  amplitudes (a linear function of word length and corpus frequency plus
  Gaussian noise; a few cells left empty).

``python3 data/sample_eval/make_official.py`` rewrites the folder (byte-identical
output, from any directory; Python standard library only).
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import make_blimp as mb  # noqa: E402  (the corpus vocabulary, filtered by frequency, and its word counts)

ms = mb.ms  # data/make_sample.py: the corpus grammar
OUT = HERE / "fast_eval"
BLIMP_PAIRS = 20
LINES = 20
ENTITY_STATES = 10  # each written with 0, 1 and 2 operations: 30 lines
SEED = 20250524

# Small things a box can hold (a choice among the vocabulary's frequent things).
PORTABLE = [n for n in mb.THINGS if n.sg in {
    "cup", "book", "key", "ring", "crown", "coin", "map", "letter", "stone", "feather", "bell", "candle",
    "apple", "banana", "cookie", "cake", "egg", "orange", "pear", "plum", "muffin", "truck", "ticket"}]
CONTAINERS = ("box", "basket", "bag", "bucket", "bowl")  # "put the ball in the box" (make_sample.cds_utterance)
ROOMS = [noun for noun, preps in mb.PLACES if "in" in preps and noun not in CONTAINERS]


def person(rng: random.Random) -> str:
    """A name or "the <person>", as the corpus' subjects."""
    if rng.random() < 0.6:
        return rng.choice(mb.NAMES_M + mb.NAMES_F)
    return "the " + rng.choice(mb.PEOPLE).sg


def cap(text: str) -> str:
    return text[0].upper() + text[1:]


def distinct(make, n: int, seed: int) -> list:
    """n distinct results of make(rng, i), redrawing repeats."""
    rng, out, seen = random.Random(seed), [], set()
    while len(out) < n:
        row = make(rng, len(out))
        key = json.dumps({k: v for k, v in row.items() if k != "id"}, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(row)
    return out


# --------------------------------------------------------------------------
# BLiMP supplement: dialogues
# --------------------------------------------------------------------------


def qa_congruence(rng: random.Random, i: int) -> dict:
    """The answer fits the question word: where -> a place, who -> a person, what -> a thing."""
    thing, animal = rng.choice(PORTABLE), rng.choice(mb.ANIMALS)
    place, preps = rng.choice(mb.PLACES)
    where = f"{cap(rng.choice(preps))} the {place}."
    who = cap(person(rng)) + "."
    kind = i % 4
    if kind == 0:
        question, good, bad = f"Where is the {animal.sg}?", where, who
    elif kind == 1:
        question, good, bad = f"Where are the {thing.pl}?", where, cap(ms.article(thing.sg)) + f" {thing.sg}."
    elif kind == 2:
        verb = rng.choice(mb.V_THING)
        question, good, bad = f"Who {verb.past} the {thing.sg}?", who, where
    else:
        verb = rng.choice(("want", "need", "find", "like"))
        question = f"What {rng.choice(('did', 'does'))} {person(rng)} {verb}?"
        good, bad = cap(ms.article(thing.sg)) + f" {thing.sg}.", where
    return {"sentence_good": f"A: {question}\nB: {good}", "sentence_bad": f"A: {question}\nB: {bad}"}


def turn_taking(rng: random.Random, i: int) -> dict:
    """The answer takes the answerer's point of view: "you" in the question is "I" in the answer."""
    thing = rng.choice(PORTABLE)
    yes = "Yes" if (i // 4) % 2 == 0 else "No"  # each kind of question: 3 yes, 2 no
    kind = i % 4
    if kind == 0:
        verb = rng.choice(mb.V_THING)
        question = f"Did you {verb.base} the {thing.sg}?"
        good, bad = ("I did", "you did") if yes == "Yes" else ("I didn't", "you didn't")
    elif kind == 1:
        question = f"Are you {rng.choice(mb.ADJ_ANIM)}?"
        good, bad = ("I am", "you are") if yes == "Yes" else ("I am not", "you are not")
    elif kind == 2:
        food = rng.choice(ms.FOODS)
        question = f"Do you want some {food.pl}?"
        good, bad = ("I do", "you do") if yes == "Yes" else ("I don't", "you don't")
    else:  # the other way round: "I" in the question is "you" in the answer
        question = f"Am I {rng.choice(mb.ADJ_ANIM)}?"
        good, bad = ("you are", "I am") if yes == "Yes" else ("you aren't", "I am not")
    return {"sentence_good": f"A: {question}\nB: {yes}, {good}.", "sentence_bad": f"A: {question}\nB: {yes}, {bad}."}


# --------------------------------------------------------------------------
# EWoK
# --------------------------------------------------------------------------


def ewok_row(domain: str, concepts: tuple[str, str], ctype: str, cdiff: str, tdiff: str,
             contexts: tuple[str, str], targets: tuple[str, str]) -> dict:
    return {"Domain": domain, "ConceptA": concepts[0], "ConceptB": concepts[1], "ContextType": ctype,
            "ContextDiff": cdiff, "TargetDiff": tdiff, "Context1": contexts[0], "Context2": contexts[1],
            "Target1": targets[0], "Target2": targets[1]}


def spatial(rng: random.Random, i: int) -> dict:
    """Where a thing is: said directly, or through the container it is in (indirect)."""
    room1, room2 = rng.sample(ROOMS, 2)
    thing = rng.choice(PORTABLE)
    targets = (f"The {thing.sg} is in the {room1}.", f"The {thing.sg} is in the {room2}.")
    if i % 2 == 0:
        other = rng.choice([n for n in PORTABLE if n != thing])
        contexts = tuple(f"The {thing.sg} is in the {a} and the {other.sg} is in the {b}."
                         for a, b in ((room1, room2), (room2, room1)))
        return ewok_row("spatial-relations_sample", (room1, room2), "direct", "variable swap", "variable swap",
                        contexts, targets)
    box = rng.choice(CONTAINERS)
    contexts = tuple(f"The {thing.sg} is in the {box}. The {box} is in the {room}." for room in (room1, room2))
    return ewok_row("spatial-relations_sample", (room1, room2), "indirect", "place swap", "place swap",
                    contexts, targets)


def social(rng: random.Random, i: int) -> dict:
    """Who has a thing: said directly, or through who gave, brought or took it (indirect)."""
    a, b = rng.sample(mb.NAMES_M + mb.NAMES_F, 2)
    thing = rng.choice(PORTABLE)
    targets = (f"{b} has the {thing.sg}.", f"{a} has the {thing.sg}.")
    if i % 2 == 0:
        other = rng.choice([n for n in PORTABLE if n != thing])
        contexts = (f"{b} has the {thing.sg} and {a} has the {other.sg}.",
                    f"{a} has the {thing.sg} and {b} has the {other.sg}.")
        return ewok_row("social-interactions_sample", (b, a), "direct", "variable swap", "variable swap",
                        contexts, targets)
    if rng.random() < 0.6:
        verb = rng.choice(("gave", "brought", "threw"))
        contexts = (f"{a} {verb} the {thing.sg} to {b}.", f"{b} {verb} the {thing.sg} to {a}.")
    else:
        contexts = (f"{b} took the {thing.sg} from {a}.", f"{a} took the {thing.sg} from {b}.")
    return ewok_row("social-interactions_sample", (b, a), "indirect", "variable swap", "variable swap",
                    contexts, targets)


# --------------------------------------------------------------------------
# Entity tracking
# --------------------------------------------------------------------------


def contents(things: list[str]) -> str:
    """"nothing", "the cup", "the cup and the hat", "the cup, the hat and the key"."""
    if not things:
        return "nothing"
    words = [f"the {t}" for t in things]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def entity_rows(n_states: int, seed: int) -> list[dict]:
    """Each start state (five boxes, 0-2 things each) with 0, 1 and 2 operations; the queried box
    is one the last operation changed, so the right answer depends on the operations."""
    rng, rows = random.Random(seed), []
    for state in range(n_states):
        pool = [n.sg for n in rng.sample(PORTABLE, 12)]
        boxes: list[list[str]] = [[pool.pop() for _ in range(rng.choice((0, 1, 1, 2)))] for _ in range(5)]
        if not any(boxes):
            boxes[0].append(pool.pop())
        start = ", ".join(f"Box {k} contains {contents(b)}" for k, b in enumerate(boxes)) + "."
        ops: list[str] = []
        for numops in range(3):
            if numops == 0:
                query = rng.randrange(5)
            else:
                full = [k for k, b in enumerate(boxes) if b]
                kind = rng.random()
                if kind < 0.6 and full:
                    src = rng.choice(full)
                    dst = rng.choice([k for k in range(5) if k != src])
                    thing = rng.choice(boxes[src])
                    boxes[src].remove(thing)
                    boxes[dst].append(thing)
                    ops.append(f"Move the {thing} from Box {src} to Box {dst}.")
                    query = rng.choice((src, dst))
                elif kind < 0.8 and full:
                    src = rng.choice(full)
                    thing = rng.choice(boxes[src])
                    boxes[src].remove(thing)
                    ops.append(f"Remove the {thing} from Box {src}.")
                    query = src
                else:
                    query, thing = rng.randrange(5), pool.pop()
                    boxes[query].append(thing)
                    ops.append(f"Put the {thing} in Box {query}.")
            right = contents(boxes[query]) + "."
            options = [right]
            # distractors: the other boxes' contents, then things of this item alone and in pairs
            every = [t for b in boxes for t in b] + pool[:3]
            candidates = [contents(b) + "." for b in boxes] + ["nothing."]
            candidates += [contents(rng.sample(every, rng.choice((1, 2)))) + "." for _ in range(20)]
            for option in candidates:
                if option not in options and len(options) < 5:
                    options.append(option)
            assert len(options) == 5, options
            prefix = " ".join([start, *ops, f"Box {query} contains "])
            rows.append({"sample_id": len(rows), "numops": numops, "input_prefix": prefix,
                         "options": options, "example_id": state})
    return rows


# --------------------------------------------------------------------------
# WUG: nonce words and invented human preferences
# --------------------------------------------------------------------------

# adjective ending -> (-ity noun ending, share preferring -ity, nonce stems)
ADJ_SUFFIXES = (
    ("able", "ability", 0.75, ("blick", "florp", "tresk", "vund")),
    ("al", "ality", 0.6, ("prond", "gost", "lemb", "durv")),
    ("ive", "ivity", 0.45, ("spect", "blon", "traff", "morp")),
    ("ous", "osity", 0.3, ("glamp", "zend", "crup", "phlor")),
    ("ish", "ishity", 0.05, ("snerv", "drusk", "plend", "vask")),
)
# (present, irregular past, regular past): classes by the real irregulars they resemble,
# with the share preferring the irregular form
PAST_CLASSES = (
    (0.5, (("spling", "splang", "splinged"), ("flink", "flank", "flinked"), ("skring", "skrang", "skringed"),
           ("shrim", "shram", "shrimmed"))),  # sing / sang, swim / swam
    (0.35, (("kleep", "klept", "kleeped"), ("fleep", "flept", "fleeped"), ("gleel", "glelt", "gleeled"),
            ("preep", "prept", "preeped"))),  # sleep / slept, feel / felt
    (0.3, (("drite", "drote", "drited"), ("blive", "blove", "blived"), ("plide", "plode", "plided"),
           ("frine", "frone", "frined"))),  # ride / rode, drive / drove
    (0.2, (("frow", "frew", "frowed"), ("vrow", "vrew", "vrowed"), ("klow", "klew", "klowed"),
           ("zow", "zew", "zowed"))),  # grow / grew
    (0.1, (("zet", "zet", "zetted"), ("plit", "plit", "plitted"), ("grut", "grut", "grutted"),
           ("snet", "snet", "snetted"))),  # cut / cut
)


def share(rng: random.Random, base: float) -> float:
    return round(min(1.0, max(0.0, rng.gauss(base, 0.08))), 2)


def wug_adj(seed: int) -> list[dict]:
    rng, rows = random.Random(seed), []
    for suffix, ity, base, stems in ADJ_SUFFIXES:
        for stem in stems:
            adj = stem + suffix
            frame = f"Create a noun out of the following adjective: {adj}. "
            rows.append({"sentences": f"{frame}{stem}{ity}\t{frame}{adj}ness", "ratio": share(rng, base)})
    return rows


def wug_past(seed: int) -> list[dict]:
    rng, rows = random.Random(seed), []
    for base, verbs in PAST_CLASSES:
        for present, irregular, regular in verbs:
            frame = f"Every day I {present}. Yesterday I"
            rows.append({"sentences": f"{frame} {irregular}.\t{frame} {regular}.", "ratio": share(rng, base)})
    return rows


# --------------------------------------------------------------------------
# COMPS
# --------------------------------------------------------------------------

SOUND_ANIMALS = [(sg, sound) for sg, _, sound in ms.ANIMAL_SOUNDS if mb.frequent(sg)]
ANIMATE_ADJS = [a for a in ("hungry", "sleepy", "happy", "sad", "angry", "tired", "brave", "clever", "proud", "kind")
                if a in mb.ADJ_ANIM]
ANIMATE_VERBS = [v for v in ms.V_INTRANS if mb.frequent(v.s, least=3) and v.base not in ("work", "rest", "play")]


def comps(rng: random.Random, i: int) -> dict:
    """What an animal says (the wrong concept: another animal), or what only an animate thing does
    or is (the wrong concept: a thing), as the corpus has it."""
    if i % 2 == 0:
        (good, sound), (bad, _) = rng.sample(SOUND_ANIMALS, 2)
        prefixes, phrase = (f"The {good}", f"The {bad}"), f"says {sound}."
    else:
        good = rng.choice(mb.ANIMATE).sg
        bad = rng.choice(PORTABLE).sg
        phrase = f"is {rng.choice(ANIMATE_ADJS)}." if rng.random() < 0.5 else f"{rng.choice(ANIMATE_VERBS).s}."
        prefixes = (f"The {good}", f"The {bad}")
    return {"id": i, "prefix_acceptable": prefixes[0], "prefix_unacceptable": prefixes[1], "property_phrase": phrase}


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------

READING_HEADER = ["", "item", "word", "word2", "sentence", "context_length", "sent_id", "item_id", "list",
                  "Subtlex_log10", "length", "RTfirstfix", "RTfirstpass", "RTgopast", "RTrightbound",
                  "self_paced_reading_time", "ELAN", "LAN", "N400", "P600", "EPNP", "PNP",
                  "prev_word", "prev_item", "prev_length"]
SENTENCE_WORDS = (7, 6, 8, 7, 5, 9, 6, 8, 7, 7)  # ten sentences, 60 rows (one per word after the first)
MISSING_CELLS = 6


def grammar_sentence(g: ms.Grammar, n_words: int) -> str:
    """A sentence of the corpus grammar with exactly n_words words (redrawn until it has)."""
    while True:
        clause = g.clause(g.pick(("pres", "past")), complex_p=0.2, special_p=0.15)
        text = ms.sent(clause.words)
        if len(text.split()) == n_words and "," not in text:
            return text


def frequency(word: str) -> float:
    """log10 of the word's count in the train corpus, plus one."""
    return math.log10(sum(mb.COUNTS[w] for w in mb.WORD.findall(word.lower())) + 1)


def measures(rng: random.Random, length: int, freq: float) -> list[float]:
    """Synthetic eye-tracking and self-paced reading times (ms) and ERP amplitudes (microvolts):
    longer and rarer words are read more slowly and give a larger N400. Go-past and right-bound
    times are at least the first-pass time, which is at least the first fixation."""
    first_fix = 235 + 5 * length - 8 * freq + rng.gauss(0, 12)
    first_pass = first_fix + 8 * length + abs(rng.gauss(0, 12))
    go_past = first_pass + 6 * length - 6 * freq + 20 + abs(rng.gauss(0, 25))
    right_bound = first_pass + abs(rng.gauss(0, 10))
    spr = 300 + 5 * length - 12 * freq + rng.gauss(0, 20)
    rts = [round(v, 1) for v in (first_fix, first_pass, go_past, right_bound, spr)]
    erps = [0.1 * length - 0.3 * freq + rng.gauss(0, 0.6),  # ELAN
            0.05 * length - 0.2 * freq + rng.gauss(0, 0.6),  # LAN
            1.2 - 0.7 * freq + rng.gauss(0, 0.6),  # N400
            0.1 * length - 0.2 * freq + rng.gauss(0, 0.7),  # P600
            -0.05 * length + 0.2 * freq + rng.gauss(0, 0.5),  # EPNP
            0.05 * length - 0.1 * freq + rng.gauss(0, 0.5)]  # PNP
    return rts + [round(max(-3.0, min(3.0, v)), 3) for v in erps]


def reading_csv(seed: int) -> str:
    rng = random.Random(seed)
    g = ms.Grammar(rng, ms.DOM_HOME)
    rows: list[list] = []
    for sent_id, n_words in enumerate(SENTENCE_WORDS):
        sentence = grammar_sentence(g, n_words)
        words = sentence.split()
        prev: tuple[str, str, int] | None = None
        for k in range(1, len(words)):
            word, item = words[k], " ".join(words[:k])
            freq = frequency(word)
            rows.append([len(rows), item, word, word.upper(), sentence, k, sent_id, k, sent_id % 2 + 1,
                         round(freq, 4), len(word), *measures(rng, len(word), freq),
                         *(prev if prev else ("", "", ""))])
            prev = (word, item, len(word))
    first = READING_HEADER.index("RTfirstfix")
    for r, c in random.Random(seed + 1).sample([(r, c) for r in range(len(rows)) for c in range(first, first + 11)],
                                               MISSING_CELLS):
        rows[r][c] = ""  # pandas reads an empty cell as a missing value
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(READING_HEADER)
    writer.writerows(rows)
    return out.getvalue()


# --------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------


def blimp_fast() -> dict[str, list[str]]:
    """The first BLIMP_PAIRS lines of each sample BLiMP paradigm, unchanged."""
    return {path.name: path.read_text(encoding="utf-8").splitlines()[:BLIMP_PAIRS]
            for path in sorted((HERE / "blimp").glob("*.jsonl"))}


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def files() -> dict[str, str]:
    out = {f"blimp_fast/{name}": "".join(line + "\n" for line in lines) for name, lines in blimp_fast().items()}
    out["supplement_fast/qa_congruence_sample.jsonl"] = jsonl(distinct(qa_congruence, LINES, SEED + 1))
    out["supplement_fast/turn_taking_sample.jsonl"] = jsonl(distinct(turn_taking, LINES, SEED + 2))
    out["ewok_fast/spatial-relations_sample.jsonl"] = jsonl(distinct(spatial, LINES, SEED + 3))
    out["ewok_fast/social-interactions_sample.jsonl"] = jsonl(distinct(social, LINES, SEED + 4))
    out["entity_tracking_fast/regular.jsonl"] = jsonl(entity_rows(ENTITY_STATES, SEED + 5))
    out["wug_adj_nominalization/wug_adj_nominalization.jsonl"] = jsonl(wug_adj(SEED + 6))
    out["wug_past_tense/wug_past_tense.jsonl"] = jsonl(wug_past(SEED + 7))
    out["comps/comps_base.jsonl"] = jsonl(distinct(comps, LINES, SEED + 8))
    out["reading/reading_data.csv"] = reading_csv(SEED + 9)
    return out


def main() -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    for name, text in files().items():
        path = OUT / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="\n")
        items = text.count("\n") - (1 if name.endswith(".csv") else 0)  # less the CSV's header
        print(f"{path.relative_to(HERE)}: {items} items, {len(text.encode())} bytes")


if __name__ == "__main__":
    main()
