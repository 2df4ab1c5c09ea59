#!/usr/bin/env python3
"""Generate the small synthetic BabyLM-style sample corpus in ``data/sample/``.

Every line of the corpus is synthetic. It comes from a small probabilistic
grammar and a hand-written vocabulary (a few hundred words, with invented
people, towns, regions and animals), all written for this project. Nothing is
copied from any real corpus.

The output follows the BabyLM corpus layout::

    data/sample/babylm_10M/<source>.train
    data/sample/babylm_dev/<source>.dev
    data/sample/babylm_test/<source>.test

for the ten BabyLM sources. Each source gets the surface style of its real
counterpart (speaker labels, transcription marks, tokenized punctuation,
curly quotes, wiki headers and stray markup), so that per-source cleaning
rules can be tested. Subject-verb agreement, determiner-noun agreement
(this/these, a/some) and reflexive agreement (himself/herself/themselves)
are always grammatical, so the text can serve as the "good" side of
minimal-pair tests. The corpus is for the demo and for tests, not for real
results.

The output is deterministic: each (split, source) pair has its own
``random.Random`` seed, computed with CRC32 rather than ``hash()``.
Run it from any working directory::

    python3 data/make_sample.py
"""

from __future__ import annotations

import random
import re
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, TypeVar

OUT_DIR = Path(__file__).resolve().parent / "sample"
BASE_SEED = 20240917
EMPTY_LINE_P = 0.02

SOURCES = (
    "aochildes",
    "bnc_spoken",
    "cbt",
    "children_stories",
    "gutenberg",
    "open_subtitles",
    "qed",
    "simple_wikipedia",
    "switchboard",
    "wikipedia",
)

# (folder, file extension, target bytes per source file)
SPLITS = (
    ("babylm_10M", "train", 25_000),
    ("babylm_dev", "dev", 7_000),
    ("babylm_test", "test", 7_000),
)

T = TypeVar("T")


# --------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------


class Noun(NamedTuple):
    sg: str
    pl: str
    gender: str  # "m", "f", "n" (it) or "c" (person, gender unspecified)


class Verb(NamedTuple):
    base: str
    s: str
    past: str
    ing: str  # "-" when the progressive would sound odd


def nouns(spec: str, default: str = "n") -> tuple[Noun, ...]:
    """Parse ``"sg pl [gender], ..."`` into nouns."""
    out = []
    for item in spec.split(","):
        parts = item.split()
        if parts:
            gender = parts[2] if len(parts) > 2 else default
            out.append(Noun(parts[0], parts[1], gender))
    return tuple(out)


def verbs(spec: str) -> tuple[Verb, ...]:
    """Parse ``"base 3sg past ing, ..."`` into verbs."""
    return tuple(Verb(*item.split()) for item in spec.split(",") if item.strip())


def wordlist(spec: str, sep: str | None = None) -> tuple[str, ...]:
    """Split a word list; use ``sep="|"`` when items contain spaces."""
    return tuple(item.strip() for item in spec.split(sep) if item.strip())


def places(spec: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Parse ``"noun:prep/prep, ..."`` into (place noun, prepositions)."""
    out = []
    for item in spec.split(","):
        noun, preps = item.strip().split(":")
        out.append((noun, tuple(preps.split("/"))))
    return tuple(out)


PEOPLE_HOME = nouns(
    "boy boys m, girl girls f, baby babies, mother mothers f, father fathers m,"
    " brother brothers m, sister sisters f, grandmother grandmothers f,"
    " grandfather grandfathers m, friend friends, teacher teachers,"
    " doctor doctors, neighbour neighbours, uncle uncles m, aunt aunts f,"
    " man men m, woman women f, child children",
    "c",
)
PEOPLE_TALE = nouns(
    "king kings m, queen queens f, prince princes m, princess princesses f,"
    " woodcutter woodcutters, shepherd shepherds, giant giants, witch witches f,"
    " knight knights m, miller millers, merchant merchants, fisherman fishermen m,"
    " soldier soldiers, boy boys m, girl girls f, man men m, woman women f,"
    " daughter daughters f, son sons m, wife wives f, husband husbands m,"
    " brother brothers m, sister sisters f, farmer farmers, stranger strangers",
    "c",
)
ANIMALS_HOME = nouns(
    "dog dogs, cat cats, cow cows, duck ducks, sheep sheep, pig pigs,"
    " horse horses, frog frogs, owl owls, mouse mice, rabbit rabbits,"
    " bird birds, bear bears, goose geese, fish fish, lion lions, goat goats,"
    " puppy puppies, kitten kittens, monkey monkeys, elephant elephants,"
    " turtle turtles, hen hens"
)
ANIMALS_TALE = nouns(
    "fox foxes, wolf wolves, bear bears, goose geese, horse horses, owl owls,"
    " mouse mice, hen hens, cat cats, dog dogs, rabbit rabbits, raven ravens,"
    " hare hares, badger badgers, squirrel squirrels, frog frogs, goat goats,"
    " swan swans, deer deer"
)
THINGS_HOME = nouns(
    "ball balls, cup cups, spoon spoons, book books, toy toys, truck trucks,"
    " doll dolls, shoe shoes, hat hats, box boxes, block blocks, car cars,"
    " blanket blankets, sock socks, bottle bottles, puzzle puzzles,"
    " crayon crayons, picture pictures, plate plates, bucket buckets,"
    " kite kites, train trains, boat boats, drum drums, key keys,"
    " basket baskets, umbrella umbrellas, brush brushes, bag bags, bowl bowls"
)
THINGS_TALE = nouns(
    "sword swords, ring rings, crown crowns, lantern lanterns, key keys,"
    " horn horns, cloak cloaks, coin coins, map maps, letter letters,"
    " stone stones, feather feathers, boat boats, basket baskets,"
    " mirror mirrors, box boxes, rope ropes, candle candles, book books,"
    " bell bells, shield shields, cup cups, spindle spindles, purse purses"
)
THINGS_UK = nouns(
    "kettle kettles, mug mugs, jumper jumpers, brolly brollies, telly tellies,"
    " lorry lorries, biscuit biscuits, car cars, bag bags, key keys,"
    " letter letters, ticket tickets, bus buses, coat coats, parcel parcels,"
    " bill bills, garden gardens, flat flats, cooker cookers, pram prams"
)
THINGS_US = nouns(
    "car cars, truck trucks, house houses, yard yards, dog dogs, job jobs,"
    " movie movies, computer computers, game games, book books, bill bills,"
    " check checks, garden gardens, boat boats, camper campers, tree trees,"
    " program programs, class classes, ticket tickets, phone phones"
)
FOODS = nouns(
    "apple apples, banana bananas, cookie cookies, cake cakes, egg eggs,"
    " sandwich sandwiches, grape grapes, carrot carrots, orange oranges,"
    " pie pies, potato potatoes, pear pears, plum plums, cherry cherries,"
    " berry berries, onion onions, tomato tomatoes, muffin muffins"
)
PLACES_HOME = places(
    "garden:in/near, kitchen:in, park:in/near, house:in/behind/near,"
    " bath:in, box:in/behind, car:in/near, shop:in/near, yard:in,"
    " bed:in/under, table:under/near, barn:in/behind, pond:near/by,"
    " beach:on/near, road:on/near"
)
PLACES_TALE = places(
    "forest:in/near, river:near/by/across, castle:in/near/behind,"
    " village:in/near, market:at/near, hill:on/over, bridge:on/under/near,"
    " tower:in/near, field:in/across, lake:near/by, road:on/along,"
    " cottage:in/near/behind, mountain:on/near, cave:in/near,"
    " meadow:in/across, well:near/by, mill:in/near, garden:in/near"
)
PLACES_TOWN = places(
    "shop:in/near, pub:in/near, station:at/near, market:at/near, park:in/near,"
    " garden:in, kitchen:in, office:at/in, school:at/near, church:at/near,"
    " flat:in, bus:on, road:on/near, lake:at/near, mall:at/near, yard:in"
)

NAMES_M = wordlist(
    "Tobin Corvin Jory Halden Perrin Fennick Lucan Marek Oren Bram Dacey "
    "Anselm Teo Rudd"
)
NAMES_F = wordlist(
    "Mira Lenna Tessaly Oriel Briony Calla Junie Maelis Sorrel Wren Ilse "
    "Nessa Petra Ysolde"
)
KID_NAMES_M = wordlist("daddy grandpa tobin jory teo bram")
KID_NAMES_F = wordlist("mommy grandma mira calla junie nessa")
PET_NAMES_M = wordlist("Pim Nib Odo Fidget Rolo Tump")
PET_NAMES_F = wordlist("Tully Posy Bramble Clover Dilly Mossy")
SURNAMES = wordlist(
    "Venmarch Ardwyn Esselin Dunmere Quillon Marrowby Castelane Pellow "
    "Thistlewood Brannock Selvey Oakhurst"
)

V_INTRANS = verbs(
    "sleep sleeps slept sleeping, run runs ran running, jump jumps jumped"
    " jumping, sing sings sang singing, laugh laughs laughed laughing,"
    " cry cries cried crying, swim swims swam swimming, wait waits waited"
    " waiting, smile smiles smiled smiling, dance dances danced dancing,"
    " shout shouts shouted shouting, climb climbs climbed climbing,"
    " play plays played playing, walk walks walked walking, sit sits sat"
    " sitting, rest rests rested resting, listen listens listened listening,"
    " hide hides hid hiding, work works worked working"
)
V_THING = verbs(
    "find finds found -, want wants wanted -, carry carries carried carrying,"
    " drop drops dropped dropping, hold holds held holding, bring brings"
    " brought bringing, push pushes pushed pushing, open opens opened opening,"
    " lose loses lost -, need needs needed -, fix fixes fixed fixing,"
    " take takes took taking, wash washes washed washing, throw throws threw"
    " throwing, catch catches caught catching, make makes made making,"
    " keep keeps kept -, like likes liked -, paint paints painted painting"
)
V_ANIM = verbs(
    "see sees saw -, help helps helped helping, follow follows followed"
    " following, call calls called calling, meet meets met meeting,"
    " like likes liked -, watch watches watched watching, chase chases chased"
    " chasing, visit visits visited visiting, hug hugs hugged hugging,"
    " thank thanks thanked thanking, love loves loved -, feed feeds fed feeding"
)
V_FOOD = verbs(
    "eat eats ate eating, want wants wanted -, like likes liked -,"
    " cook cooks cooked cooking, share shares shared sharing, cut cuts cut"
    " cutting, buy buys bought buying, pick picks picked picking"
)
V_REFL = verbs(
    "see sees saw -, wash washes washed washing, hurt hurts hurt -,"
    " dry dries dried drying, dress dresses dressed dressing, help helps"
    " helped helping, blame blames blamed -, praise praises praised -,"
    " hide hides hid hiding, scratch scratches scratched scratching,"
    " enjoy enjoys enjoyed enjoying, teach teaches taught teaching"
)

ADJ_SIZE = wordlist("big little small old young tiny tall")
ADJ_COLOUR = wordlist("red blue green yellow white black brown grey golden")
ADJ_ANIM_PRE = (
    *ADJ_SIZE,
    *wordlist("happy sad clever brave kind quiet hungry sleepy funny lazy wise"),
    *wordlist("poor gentle proud"),
)
ADJ_ANIM_PRED = wordlist(
    "happy sad tired hungry clever brave kind quiet angry sleepy proud busy"
    " lazy wise funny cross cold warm glad afraid ready late"
)
ADJ_THING_PRE = (
    *ADJ_SIZE[:-1],
    *ADJ_COLOUR,
    *wordlist("new shiny soft heavy broken wet pretty empty"),
)
ADJ_THING_PRED = (
    *ADJ_COLOUR,
    *wordlist("big small heavy new old shiny soft wet broken clean dirty ready"),
    *wordlist("lovely pretty empty full"),
)

NUM_WORDS = wordlist(
    "zero one two three four five six seven eight nine ten eleven twelve"
)
DAYS = wordlist("Monday Tuesday Wednesday Thursday Friday Saturday Sunday")

SG_DETS = (
    ("the", 10.0),
    ("a", 6.0),
    ("this", 2.0),
    ("that", 2.0),
    ("every", 0.6),
    ("each", 0.4),
    ("my", 0.8),
    ("your", 0.6),
    ("his", 0.5),
    ("her", 0.5),
    ("our", 0.4),
    ("their", 0.4),
)
PL_DETS = (
    ("the", 10.0),
    ("some", 5.0),
    ("these", 2.0),
    ("those", 2.0),
    ("many", 0.6),
    ("two", 0.8),
    ("three", 0.6),
    ("several", 0.5),
    ("my", 0.8),
    ("your", 0.6),
    ("our", 0.4),
    ("their", 0.4),
)


@dataclass(frozen=True)
class Domain:
    people: tuple[Noun, ...]
    animals: tuple[Noun, ...]
    things: tuple[Noun, ...]
    foods: tuple[Noun, ...]
    places: tuple[tuple[str, tuple[str, ...]], ...]
    names_m: tuple[str, ...]
    names_f: tuple[str, ...]


DOM_HOME = Domain(
    PEOPLE_HOME,
    ANIMALS_HOME,
    THINGS_HOME,
    FOODS,
    PLACES_HOME,
    KID_NAMES_M,
    KID_NAMES_F,
)
DOM_TALE = Domain(
    PEOPLE_TALE,
    ANIMALS_TALE,
    THINGS_TALE,
    FOODS,
    PLACES_TALE,
    NAMES_M,
    NAMES_F,
)
DOM_UK = Domain(
    PEOPLE_HOME,
    ANIMALS_HOME[:8],
    THINGS_UK,
    FOODS,
    PLACES_TOWN,
    NAMES_M,
    NAMES_F,
)
DOM_US = Domain(
    PEOPLE_HOME,
    ANIMALS_HOME[:8],
    THINGS_US,
    FOODS,
    PLACES_TOWN,
    NAMES_M,
    NAMES_F,
)


# --------------------------------------------------------------------------
# Grammar
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class NP:
    words: tuple[str, ...]
    plural: bool
    person: int = 3
    gender: str = "n"


@dataclass(frozen=True)
class Clause:
    words: list[str]
    subj: NP
    aux: str | None  # finite auxiliary/copula used, if any
    tense: str
    taggable: bool = True


PRONOUNS = (
    NP(("I",), False, 1, "1"),
    NP(("you",), True, 2, "2"),
    NP(("we",), True, 1, "p"),
    NP(("they",), True, 3, "p"),
    NP(("he",), False, 3, "m"),
    NP(("she",), False, 3, "f"),
)
PRONOUN_IT = NP(("it",), False, 3, "n")


def is_3sg(np: NP) -> bool:
    return np.person == 3 and not np.plural


def vform(verb: Verb, subj: NP, tense: str) -> str:
    if tense == "past":
        return verb.past
    return verb.s if is_3sg(subj) else verb.base


def be_form(subj: NP, tense: str) -> str:
    if tense == "past":
        return "were" if subj.plural else "was"
    if subj.person == 1 and not subj.plural:
        return "am"
    return "is" if is_3sg(subj) else "are"


def do_form(subj: NP, tense: str) -> str:
    if tense == "past":
        return "did"
    return "does" if is_3sg(subj) else "do"


def have_form(subj: NP, tense: str) -> str:
    if tense == "past":
        return "had"
    return "has" if is_3sg(subj) else "have"


def reflexive(np: NP) -> str | None:
    if np.person == 1:
        return "ourselves" if np.plural else "myself"
    if np.person == 2:
        return None
    if np.plural:
        return "themselves"
    return {"m": "himself", "f": "herself", "n": "itself"}.get(np.gender)


def pronoun_of(np: NP) -> str | None:
    """Subject pronoun that refers back to ``np`` (None if unclear)."""
    if np.person == 1:
        return "we" if np.plural else "I"
    if np.person == 2:
        return "you"
    if np.plural:
        return "they"
    return {"m": "he", "f": "she", "n": "it"}.get(np.gender)


def article(next_word: str) -> str:
    return "an" if next_word[0].lower() in "aeiou" else "a"


NEGATED = {
    "is": "isn't",
    "are": "aren't",
    "am": "aren't",
    "was": "wasn't",
    "were": "weren't",
    "does": "doesn't",
    "do": "don't",
    "did": "didn't",
}


def tag_question(clause: Clause) -> list[str] | None:
    """Return e.g. ``[",", "wasn't", "it"]`` for a positive clause."""
    pron = pronoun_of(clause.subj)
    if not clause.taggable or pron is None:
        return None
    aux = clause.aux or do_form(clause.subj, clause.tense)
    return [",", NEGATED[aux], pron]


PRED_KINDS = (
    ("intrans", 3.0),
    ("trans", 4.0),
    ("cop", 2.5),
    ("prog", 1.5),
    ("refl", 1.5),
    ("have", 0.8),
)


class Grammar:
    """A tiny probabilistic grammar over one vocabulary domain."""

    def __init__(self, rng: random.Random, dom: Domain) -> None:
        self.rng = rng
        self.dom = dom

    # -- random helpers ---------------------------------------------------
    def p(self, prob: float) -> bool:
        return self.rng.random() < prob

    def pick(self, seq: Sequence[T]) -> T:
        return seq[self.rng.randrange(len(seq))]

    def wpick(self, pairs: Sequence[tuple[T, float]]) -> T:
        return self.rng.choices([k for k, _ in pairs], [w for _, w in pairs])[0]

    # -- noun phrases -----------------------------------------------------
    def det(self, plural: bool, next_word: str, mode: str = "any") -> str:
        if mode == "the":
            return "the"
        if mode == "indef":
            return "some" if plural else article(next_word)
        if mode == "demo":
            d = self.pick(("these", "those") if plural else ("this", "that"))
        else:
            d = self.wpick(PL_DETS if plural else SG_DETS)
        return article(next_word) if d == "a" else d

    def np(
        self,
        pool: Sequence[Noun],
        plural: bool | None = None,
        adjs: Sequence[str] = ADJ_THING_PRE,
        adj_p: float = 0.25,
        mode: str = "any",
    ) -> NP:
        noun = self.pick(pool)
        if plural is None:
            plural = self.p(0.4)
        words = [noun.pl if plural else noun.sg]
        if self.p(adj_p):
            words.insert(0, self.pick(adjs))
        words.insert(0, self.det(plural, words[0], mode))
        return NP(tuple(words), plural, 3, "p" if plural else noun.gender)

    def name(self) -> tuple[str, str]:
        if self.p(0.5):
            return self.pick(self.dom.names_m), "m"
        return self.pick(self.dom.names_f), "f"

    def name_np(self) -> NP:
        name, gender = self.name()
        return NP((name,), False, 3, gender)

    def animate_np(self, adj_p: float = 0.25, mode: str = "any") -> NP:
        pool = self.dom.people if self.p(0.55) else self.dom.animals
        return self.np(pool, adjs=ADJ_ANIM_PRE, adj_p=adj_p, mode=mode)

    def object_np(self, adj_p: float = 0.25) -> tuple[Verb, NP]:
        r = self.rng.random()
        if r < 0.45:
            return self.pick(V_THING), self.np(self.dom.things, adj_p=adj_p)
        if r < 0.75:
            if self.p(0.25):
                return self.pick(V_ANIM), self.name_np()
            return self.pick(V_ANIM), self.animate_np(adj_p)
        return self.pick(V_FOOD), self.np(self.dom.foods, adj_p=adj_p * 0.5)

    def place_pp(self) -> list[str]:
        noun, preps = self.pick(self.dom.places)
        return [self.pick(preps), "the", noun]

    def possessive_np(self) -> NP:
        """``the king 's daughters`` / ``Mira 's dog``: agrees with the head."""
        owner = [self.pick(self.dom.people).sg] if self.p(0.6) else []
        owner = ["the", *owner] if owner else [self.name()[0]]
        pool = self.dom.people if self.p(0.5) else self.dom.animals
        noun = self.pick(pool)
        plural = self.p(0.4)
        head = noun.pl if plural else noun.sg
        return NP((*owner, "'s", head), plural, 3, "p" if plural else noun.gender)

    def subject(
        self,
        *,
        complex_p: float = 0.0,
        pron_p: float = 0.1,
        name_p: float = 0.15,
        adj_p: float = 0.25,
        tense: str = "pres",
    ) -> NP:
        r = self.rng.random()
        if r < pron_p:
            return self.pick(PRONOUNS)
        if r < pron_p + name_p:
            return self.name_np()
        if not self.p(complex_p):
            return self.animate_np(adj_p)
        kind = self.rng.random()
        head = self.animate_np(adj_p * 0.5, mode="the" if self.p(0.5) else "any")
        if kind < 0.4:  # attractor: "the dog near the trees"
            prep = self.pick(("near", "behind", "beside", "with", "next to"))
            other = self.np(
                self.dom.things if self.p(0.5) else self.dom.animals,
                plural=not head.plural if self.p(0.7) else None,
                adj_p=0.1,
                mode="the",
            )
            words = (*head.words, *prep.split(), *other.words)
        elif kind < 0.55 and self.dom.people:
            return self.possessive_np()
        elif kind < 0.8:  # subject relative: "the girl who helps the boys"
            verb, obj = self.object_np(0.1)
            rel = "who" if head.gender in "mfc" and self.p(0.6) else "that"
            words = (*head.words, rel, vform(verb, head, tense), *obj.words)
        else:  # object relative: "the dog that the boys saw"
            inner = self.animate_np(0.0, mode="the")
            verb = self.pick(V_ANIM)
            words = (*head.words, "that", *inner.words, vform(verb, inner, tense))
        return NP(words, head.plural, 3, head.gender)

    # -- clauses ----------------------------------------------------------
    def predicate(
        self,
        subj: NP,
        tense: str,
        kinds: Sequence[tuple[str, float]] = PRED_KINDS,
        adj_p: float = 0.25,
        pp_p: float = 0.3,
    ) -> tuple[list[str], str | None]:
        kind = self.wpick(kinds)
        refl = reflexive(subj)
        if kind == "refl" and refl is None:
            kind = "trans"
        pp = self.place_pp() if self.p(pp_p) else []
        if kind == "intrans":
            return [vform(self.pick(V_INTRANS), subj, tense), *pp], None
        if kind == "trans":
            verb, obj = self.object_np(adj_p)
            return [vform(verb, subj, tense), *obj.words, *pp], None
        if kind == "cop":
            be = be_form(subj, tense)
            words = [be]
            if self.p(0.2):
                words.append(self.pick(("very", "so", "really")))
            words.append(self.pick(ADJ_ANIM_PRED))
            return words, be
        if kind == "prog":
            be = be_form(subj, tense)
            if self.p(0.5):
                return [be, self.pick(V_INTRANS).ing, *pp], be
            verb, obj = self.object_np(adj_p)
            while verb.ing == "-":
                verb, obj = self.object_np(adj_p)
            return [be, verb.ing, *obj.words], be
        if kind == "refl":
            assert refl is not None
            return [vform(self.pick(V_REFL), subj, tense), refl, *pp], None
        obj = self.np(self.dom.things, adj_p=adj_p, mode="indef")
        return [have_form(subj, tense), *obj.words], None

    def clause(
        self,
        tense: str = "pres",
        *,
        complex_p: float = 0.0,
        pron_p: float = 0.1,
        name_p: float = 0.15,
        adj_p: float = 0.25,
        kinds: Sequence[tuple[str, float]] = PRED_KINDS,
        special_p: float = 0.15,
    ) -> Clause:
        if self.p(special_p):
            return self.special_clause(tense)
        subj = self.subject(
            complex_p=complex_p, pron_p=pron_p, name_p=name_p, adj_p=adj_p, tense=tense
        )
        pred, aux = self.predicate(subj, tense, kinds, adj_p)
        return Clause([*subj.words, *pred], subj, aux, tense)

    def special_clause(self, tense: str) -> Clause:
        """Thing subjects, existentials and demonstratives."""
        r = self.rng.random()
        if r < 0.4:  # "the cups are clean"
            subj = self.np(self.dom.things, adj_p=0.15)
            be = be_form(subj, tense)
            adj = self.pick(ADJ_THING_PRED)
            return Clause([*subj.words, be, adj], subj, be, tense)
        if r < 0.75:  # "there is a cat in the garden"
            subj = self.np(
                self.dom.animals if self.p(0.5) else self.dom.things,
                adj_p=0.2,
                mode="indef",
            )
            if subj.plural and self.p(0.4):
                num = self.pick(("two", "three", "many", "several", "no"))
                subj = NP((num, *subj.words[1:]), True, 3, "p")
            be = be_form(subj, tense)
            words = ["there", be, *subj.words, *self.place_pp()]
            return Clause(words, subj, be, tense, taggable=False)
        # "these are my books" / "this is a dog"
        plural = self.p(0.45)
        demo = self.pick(("these", "those") if plural else ("this", "that"))
        demo_np = NP((demo,), plural, 3, "p" if plural else "n")
        be = be_form(demo_np, tense)
        obj = self.np(self.dom.things, plural=plural, adj_p=0.3, mode="indef")
        if self.p(0.4):
            owner = self.pick(("my", "your", "our", "their", "his", "her"))
            obj = NP((owner, *obj.words[1:]), plural)
        return Clause([demo, be, *obj.words], demo_np, be, tense, taggable=False)

    def question(self, tense: str = "pres", adj_p: float = 0.2) -> list[str]:
        r = self.rng.random()
        subj = self.subject(pron_p=0.35, name_p=0.15, adj_p=adj_p)
        if r < 0.3:
            verb, obj = self.object_np(adj_p)
            return [do_form(subj, tense), *subj.words, verb.base, *obj.words]
        if r < 0.45:
            return [be_form(subj, tense), *subj.words, self.pick(ADJ_ANIM_PRED)]
        if r < 0.6:
            verb = self.pick(V_INTRANS)
            return [be_form(subj, tense), *subj.words, verb.ing]
        if r < 0.75:
            thing = self.np(self.dom.things + self.dom.animals, adj_p=0.1)
            return ["where", be_form(thing, tense), *thing.words]
        if r < 0.87:
            verb = self.pick(("want", "like", "need", "see", "find"))
            return ["what", do_form(subj, tense), *subj.words, verb]
        verb, obj = self.object_np(adj_p)
        modal = self.pick(("can", "will", "should", "could"))
        return [modal, *subj.words, verb.base, *obj.words]


# --------------------------------------------------------------------------
# Rendering helpers
# --------------------------------------------------------------------------

_SPACE_BEFORE = re.compile(r" ([,.?!;:])")


def detok(words: Sequence[str]) -> str:
    """Join tokens with normal English spacing."""
    text = " ".join(words)
    text = _SPACE_BEFORE.sub(r"\1", text)
    return text.replace(" 's ", "'s ").replace(" 's", "'s")


def cap(text: str) -> str:
    for i, ch in enumerate(text):
        if ch.isalpha():
            return text[:i] + ch.upper() + text[i + 1 :]
    return text


def sent(words: Sequence[str], end: str = ".") -> str:
    """Normal prose sentence."""
    return cap(detok([*words, end]))


def tok_sent(words: Sequence[str], end: str = ".") -> str:
    """Tokenized sentence (punctuation split off)."""
    return " ".join([*words, end])


def roman(n: int) -> str:
    out = []
    for value, sym in (
        (50, "L"),
        (40, "XL"),
        (10, "X"),
        (9, "IX"),
        (5, "V"),
        (4, "IV"),
        (1, "I"),
    ):
        while n >= value:
            out.append(sym)
            n -= value
    return "".join(out)


def with_adverb(g: Grammar, words: list[str], advs: Sequence[str]) -> list[str]:
    if g.p(0.25):
        return [*g.pick(advs).split(), ",", *words]
    return words


# --------------------------------------------------------------------------
# Per-source generators: each yields lines forever
# --------------------------------------------------------------------------

ANIMAL_SOUNDS = (
    ("dog", "dogs", "woof"),
    ("cat", "cats", "meow"),
    ("cow", "cows", "moo"),
    ("duck", "ducks", "quack"),
    ("sheep", "sheep", "baa"),
    ("pig", "pigs", "oink"),
    ("owl", "owls", "hoo"),
    ("horse", "horses", "neigh"),
    ("frog", "frogs", "ribbit"),
    ("lion", "lions", "roar"),
    ("hen", "hens", "cluck"),
    ("goat", "goats", "maa"),
)


def cds_utterance(g: Grammar) -> tuple[list[str], str]:
    """Child-directed speech templates."""
    d = g.dom
    thing = g.pick(d.things + d.animals)
    food = g.pick(d.foods)
    pl = g.p(0.45)
    t = g.rng.randrange(16)
    if t == 0:
        if pl:
            return ["do", "you", "want", "some", food.pl], "?"
        return ["do", "you", "want", article(food.sg), food.sg], "?"
    if t == 1:
        if pl:
            return ["where", "are", "the", thing.pl], "?"
        return [g.pick(("where's", "where is")), "the", thing.sg], "?"
    if t == 2:
        if pl:
            return ["are", g.pick(("those", "these")), thing.pl], "?"
        return ["is", g.pick(("that", "this")), article(thing.sg), thing.sg], "?"
    if t == 3:
        adj = [g.pick(ADJ_THING_PRE)] if g.p(0.4) else []
        if pl:
            return [g.pick(("those", "these")), "are", *adj, thing.pl], "."
        head = [*adj, thing.sg]
        return [g.pick(("that's", "this is")), article(head[0]), *head], "."
    if t == 4:
        if pl:
            return ["look", "at", g.pick(("these", "those")), thing.pl], "."
        return ["look", "at", g.pick(("this", "that")), thing.sg], "."
    if t == 5:
        sg_, pl_, sound = g.pick(ANIMAL_SOUNDS)
        r = g.rng.random()
        if r < 0.3:
            return ["what", "does", "the", sg_, "say"], "?"
        if r < 0.45:
            return ["what", "do", "the", pl_, "say"], "?"
        if r < 0.75:
            return ["the", sg_, "says", sound], "."
        return ["the", pl_, "say", sound], "."
    if t == 6:
        k = g.rng.randint(1, 5)
        if g.p(0.3):
            return ["how", "many", thing.pl, "are", "there"], "?"
        if k == 1:
            return ["there", "is", "one", thing.sg], "."
        return ["there", "are", NUM_WORDS[k], thing.pl], "."
    if t == 7:
        return ["can", "you", "find", "the", thing.sg], "?"
    if t == 8:
        verb = g.pick(V_THING)
        return ["let's", verb.base, "the", thing.sg], "."
    if t == 9:
        verb = g.pick(V_THING)
        if g.p(0.5):
            return ["you", verb.past, "the", thing.pl if pl else thing.sg], "."
        return ["did", "you", verb.base, "the", thing.sg], "?"
    if t == 10:
        name = g.name()[0]
        if g.p(0.4):
            return ["what", "is", name, "doing"], "?"
        return [name, "is", g.pick(V_INTRANS).ing], "."
    if t == 11:
        box = g.pick(("box", "basket", "bucket", "bag", "bowl"))
        return ["put", "the", thing.sg, "in", "the", box], "."
    if t == 12:
        adj = g.pick(ADJ_THING_PRED)
        if pl:
            return ["are", "the", thing.pl, adj], "?"
        return ["is", "the", thing.sg, adj], "?"
    if t == 13:
        adj = g.pick(ADJ_THING_PRED)
        if pl:
            return ["the", thing.pl, "are", adj, ",", "aren't", "they"], "?"
        return ["the", thing.sg, "is", adj, ",", "isn't", "it"], "?"
    if t == 14:
        name = g.name()[0]
        return (["who's", "that"], "?") if g.p(0.4) else (["that's", name], ".")
    name = g.name()[0]
    return [name, ",", "do", "you", "want", "some", food.pl], "?"


AO_FRAGMENTS = wordlist(
    "yeah | no | okay | uh oh | all done | bye bye | thank you | good job | "
    "oh | wow | there you go | here you go | good girl | good boy | what's "
    "that | oh no | night night | peekaboo",
    sep="|",
)


def gen_aochildes(g: Grammar) -> Iterator[str]:
    while True:
        r = g.rng.random()
        if r < 0.3:
            tense = g.pick(("pres", "pres", "past"))
            c = g.clause(tense, pron_p=0.35, adj_p=0.1, special_p=0.25)
            words, end = c.words, "."
        elif r < 0.42:
            words, end = g.question(g.pick(("pres", "pres", "past")), 0.1), "?"
        elif r < 0.85:
            words, end = cds_utterance(g)
        else:
            frag = g.pick(AO_FRAGMENTS)
            if g.p(0.3):
                noun = g.pick(g.dom.things + g.dom.foods)
                lead = g.pick(("the", "my", "more"))
                frag = f"{lead} {noun.pl if lead == 'more' else noun.sg}"
            words, end = frag.split(), g.pick((".", ".", ".", "!"))
        words = list(words)
        if g.p(0.04):
            words.insert(g.rng.randrange(len(words) + 1), g.pick(("xxx", "yyy")))
        line = tok_sent(words, end).lower()
        if g.p(0.02):
            line = "xxx ."
        if g.p(0.025):
            line += g.pick((" [+ IMIT]", " [+ PI]", " [+ IMIT]"))
        r = g.rng.random()
        if r < 0.12:
            line = "*MOT:\t" + line
        elif r < 0.18:
            line = "*CHI:\t" + line
        elif r < 0.21:
            line = "*FAT:\t" + line
        yield line


def mark_inside(g: Grammar, words: list[str], mark: str) -> list[str]:
    pos = g.rng.randrange(1, len(words)) if len(words) > 1 else 1
    return [*words[:pos], mark, *words[pos:]]


BNC_SHORT = wordlist(
    "Yeah. | Mm. | Yes. | No. | Right. | Oh. | Erm | Mhm. | Oh I see. | Is "
    "it? | Really? | Go on then. | Cheers. | Ta. | I know. | Oh dear. | "
    "Lovely. | Oh right. | Ooh. | Mm, yeah. | No, no. | Bless him.",
    sep="|",
)


def gen_bnc_spoken(g: Grammar) -> Iterator[str]:
    labels = ("S01", "S02", "S03", "S04", "S05", "S06")
    while True:
        r = g.rng.random()
        tense = g.pick(("pres", "past", "past"))
        if r < 0.2:
            line = g.pick(BNC_SHORT)
        elif r < 0.48:
            c = g.clause(tense, pron_p=0.3, name_p=0.2, complex_p=0.1)
            tag = tag_question(c)
            opener = g.pick(("well", "oh", "I mean", "and", "but", "", "", ""))
            head = [opener] if opener in ("and", "but") else [opener, ","]
            head = head if opener else []
            if tag and g.p(0.6):
                line = sent([*head, *c.words, *tag], "?")
            else:
                line = sent([*head, *c.words], ".")
        elif r < 0.62:
            line = sent(g.question(tense), "?")
        elif r < 0.8:
            t = g.rng.randrange(7)
            name = g.name()[0]
            thing = g.pick(g.dom.things)
            if t == 0:
                line = g.pick(
                    (
                        "Do you want a cup of tea?",
                        "Put the kettle on, love.",
                        "Shall I make a cuppa?",
                        "Pass us a biscuit.",
                    )
                )
            elif t == 1:
                line = f"It was {NUM_WORDS[g.rng.randint(2, 12)]} quid."
            elif t == 2:
                line = f"I'll ring {name} on {g.pick(DAYS)}."
            elif t == 3:
                line = f"{name}'s coming round on {g.pick(DAYS)}."
            elif t == 4:
                pp = g.place_pp()
                line = sent(["we", "went", "to", "the", pp[-1], "on", g.pick(DAYS)])
            elif t == 5:
                line = sent(["have", "you", "got", article(thing.sg), thing.sg], "?")
            else:
                c = g.clause("past", pron_p=0.2)
                line = sent([g.pick(("mum", "nan", name)), "said", *c.words])
        else:
            c = g.clause(tense, pron_p=0.25)
            lead = g.pick(
                (
                    ["I", "think"],
                    ["I", "don't", "think"],
                    ["I", "reckon"],
                    ["apparently"],
                    ["you", "know"],
                )
            )
            line = sent([*lead, *c.words])
        if g.p(0.08):
            words = line.split()
            line = " ".join(mark_inside(g, words, g.pick(("<pause>", "<unclear>"))))
        if g.p(0.07):
            line += g.pick((" [laughs]", " [laughs]", " [coughs]"))
        if g.p(0.3):
            line = f"{g.pick(labels)}: {line}"
        yield line


SWB_BACK = wordlist(
    "Uh-huh. | Yeah. | Right. | Oh, really? | Yeah, yeah. | Huh. | Sure. | "
    "Okay. | I see. | Oh, wow. | Exactly. | Um-hum. | Oh, yeah.",
    sep="|",
)


def gen_switchboard(g: Grammar) -> Iterator[str]:
    speaker = "A"
    while True:
        r = g.rng.random()
        tense = g.pick(("pres", "pres", "past"))
        if r < 0.25:
            line = g.pick(SWB_BACK)
        elif r < 0.75:
            c = g.clause(tense, pron_p=0.4, complex_p=0.1)
            opener = g.pick(
                ("uh", "um", "well", "yeah", "I mean", "so", "and", "but", "", "")
            )
            words = [opener] if opener in ("so", "and", "but") else [opener, ","]
            words = words if opener else []
            lead = g.pick(([], [], ["I", "think"], ["I", "guess"]))
            words += [*lead, *c.words]
            if g.p(0.15):
                words += [",", "you", "know"]
            if g.p(0.12):
                words = [words[0], ",", *words]
            line = sent(words)
        elif r < 0.88:
            line = sent(g.question(tense), "?")
        else:
            k = g.rng.randint(2, 5)
            noun = g.pick(g.dom.animals + g.dom.things)
            line = g.pick(
                (
                    sent(["we", "have", NUM_WORDS[k], noun.pl]),
                    sent(["um", ",", "we", "just", "have", "one", noun.sg]),
                    sent(
                        [
                            "the",
                            "weather",
                            "here",
                            "has",
                            "been",
                            g.pick(
                                ("real nice", "awful", "pretty warm", "kind of cold")
                            ),
                        ]
                    ),
                    sent(
                        [
                            "my",
                            g.pick(("kids", "folks", "neighbors")),
                            "like",
                            "the",
                            noun.pl,
                            "a",
                            "lot",
                        ]
                    ),
                )
            )
        if g.p(0.06):
            line = g.pick(("[laughter] ", "")) + line + g.pick((" [laughter]", ""))
        if g.p(0.02):
            line += " [noise]"
        if g.p(0.45):
            line = f"{speaker}:\t{line}"
            speaker = "B" if speaker == "A" else "A"
        yield line


SUB_SHORT = wordlist(
    "Come on! | Get out of here! | Wait! | Look at me. | Stay here. | Let's "
    "go. | Hurry up! | Be careful. | Yes. | No. | I don't know. | Thank you. "
    "| Okay. | Sorry. | I'm fine. | Me too. | Right. | Really? | What "
    "happened? | Are you okay? | Who are you? | What are you doing? | Shut "
    "the door. | Not now. | Listen to me.",
    sep="|",
)


def gen_open_subtitles(g: Grammar) -> Iterator[str]:
    while True:
        r = g.rng.random()
        tense = g.pick(("pres", "pres", "past"))
        if r < 0.3:
            line = g.pick(SUB_SHORT)
        elif r < 0.55:
            line = sent(g.question(tense, 0.1), "?")
        elif r < 0.85:
            c = g.clause(tense, pron_p=0.45, adj_p=0.1, complex_p=0.05)
            line = sent(c.words, g.pick((".", ".", "!")))
        else:
            name = g.name()[0]
            thing = g.pick(g.dom.things)
            line = g.pick(
                (
                    f"Come here, {name}.",
                    f"Where's {name}?",
                    f"{name}, wait!",
                    f"Give me the {thing.sg}.",
                    f"Take the {thing.pl}!",
                    f"Did you see the {thing.sg}?",
                    f"I need {article(thing.sg)} {thing.sg}.",
                    f"{name} is coming.",
                    "They are coming!",
                )
            )
        if g.p(0.05):
            line = f"- {line} - {g.pick(SUB_SHORT)}"
        elif g.p(0.25):
            line = f"- {line}"
        if g.p(0.03):
            line = line.rstrip(".!") + "..."
        yield line


SCI_NOUNS = nouns(
    "cell cells, atom atoms, molecule molecules, planet planets, star stars,"
    " particle particles, electron electrons, wave waves, bacterium bacteria,"
    " neuron neurons, gene genes, protein proteins, galaxy galaxies,"
    " crystal crystals, virus viruses, seed seeds, leaf leaves,"
    " nucleus nuclei, photon photons, robot robots, sensor sensors"
)
SCI_VI = verbs(
    "move moves moved moving, grow grows grew growing, divide divides divided"
    " dividing, spin spins spun spinning, vibrate vibrates vibrated vibrating,"
    " shrink shrinks shrank shrinking, glow glows glowed glowing,"
    " split splits split splitting, change changes changed changing,"
    " collide collides collided colliding, cool cools cooled cooling"
)
SCI_VT = verbs(
    "contain contains contained containing, produce produces produced"
    " producing, absorb absorbs absorbed absorbing, release releases released"
    " releasing, attract attracts attracted attracting, carry carries carried"
    " carrying, form forms formed forming, use uses used using, need needs"
    " needed -, send sends sent sending, detect detects detected detecting"
)
SCI_ADJ = wordlist(
    "tiny huge hot cold stable unstable bright small fast slow dense simple "
    "complex important strange"
)
SCI_REL = wordlist("size speed mass shape number temperature colour")
SHAPES = (
    ("triangle", "triangles", 3),
    ("square", "squares", 4),
    ("pentagon", "pentagons", 5),
    ("hexagon", "hexagons", 6),
    ("octagon", "octagons", 8),
)
QED_FILLERS = wordlist(
    "Right? | Okay? | Let me show you. | Think about that for a second. | "
    "This is really important. | And this is where it gets interesting. | So "
    "why does this matter? | Now, here's the thing. | Let's try it. | And "
    "that's the whole idea. | It's actually quite simple.",
    sep="|",
)


def gen_qed(g: Grammar) -> Iterator[str]:
    while True:
        r = g.rng.random()
        tense = "past" if g.p(0.15) else "pres"
        if r < 0.05:
            yield g.pick(("(Applause)", "(Applause)", "(Laughter)", "(Music)"))
            continue
        if r < 0.4:
            subj = g.np(SCI_NOUNS, adjs=SCI_ADJ, adj_p=0.15)
            s = g.rng.random()
            if s < 0.35:
                pred = [vform(g.pick(SCI_VI), subj, tense)]
                if g.p(0.3):
                    pred.append(
                        g.pick(("very quickly", "slowly", "again", "all the time"))
                    )
            elif s < 0.7:
                verb = g.pick(SCI_VT)
                obj = g.np(SCI_NOUNS, adjs=SCI_ADJ, adj_p=0.1, mode="indef")
                pred = [vform(verb, subj, tense), *obj.words]
            else:
                pred = [be_form(subj, tense)]
                if g.p(0.6):
                    pred.append(g.pick(("very", "really", "quite")))
                pred.append(g.pick(SCI_ADJ))
            lead = g.pick(
                (
                    ["so"],
                    ["and"],
                    ["now", ","],
                    ["and", "what", "happens", "is", "that"],
                    [],
                    [],
                )
            )
            line = sent([*lead, *subj.words, *pred])
        elif r < 0.55:
            a, b = g.rng.randint(2, 12), g.rng.randint(2, 12)
            line = g.pick(
                (
                    f"So if we take {a} and add {b}, we get {a + b}.",
                    f"{a} times {b} is {a * b}.",
                    f"And {a * b} divided by {b} is {a}.",
                    f"Half of {2 * a} is {a}.",
                    f"{a} squared is {a * a}.",
                    f"If you take {b} away from {a + b}, you get {a}.",
                )
            )
        elif r < 0.68:
            sg_, pl_, sides = g.pick(SHAPES)
            k = g.rng.randint(2, 4)
            line = g.pick(
                (
                    f"{cap(article(sg_))} {sg_} has {NUM_WORDS[sides]} sides.",
                    f"{cap(NUM_WORDS[k])} {pl_} have {k * sides} sides in total.",
                    f"This {sg_} has {NUM_WORDS[sides]} corners.",
                    f"These {pl_} have {NUM_WORDS[sides]} corners each.",
                )
            )
        elif r < 0.8:
            noun = g.pick(SCI_NOUNS)
            pl = g.p(0.5)
            head = noun.pl if pl else noun.sg
            line = g.pick(
                (
                    sent(
                        [
                            "the",
                            g.pick(SCI_REL),
                            "of",
                            "the",
                            head,
                            "is",
                            g.pick(("important", "surprising", "tiny", "huge")),
                        ]
                    ),
                    sent(
                        [
                            "I'm",
                            "going",
                            "to",
                            "show",
                            "you",
                            *(["some", head] if pl else [article(head), head]),
                        ]
                    ),
                    sent(
                        [
                            "we're",
                            "going",
                            "to",
                            "look",
                            "at",
                            "these" if pl else "this",
                            head,
                        ]
                    ),
                    sent(["how", "many", noun.pl, "are", "there"], "?"),
                    sent(["there", "are", "billions", "of", noun.pl, "in", "here"])
                    if pl
                    else sent(["there", "is", "one", noun.sg, "in", "here"]),
                )
            )
        else:
            line = g.pick(QED_FILLERS)
        if g.p(0.04):
            line += g.pick((" (Laughter)", " (Applause)"))
        yield line


NARR_ADVS = wordlist(
    "then | at last | one day | in the morning | so | soon | after a while | "
    "that evening",
    sep="|",
)
OLD_ADVS = wordlist(
    "thereupon | at length | now | presently | upon this | and so | in a "
    "little while | that same night",
    sep="|",
)


def narrative_clause(g: Grammar, tense: str = "past") -> Clause:
    return g.clause(tense, complex_p=0.3, pron_p=0.15, name_p=0.15, adj_p=0.35)


def narrative_words(g: Grammar, advs: Sequence[str]) -> list[str]:
    r = g.rng.random()
    if r < 0.45:
        return with_adverb(g, narrative_clause(g).words, advs)
    if r < 0.7:
        a, b = narrative_clause(g), narrative_clause(g)
        return [*a.words, ",", g.pick(("and", "but", "so")), *b.words]
    if r < 0.8:
        a, b = narrative_clause(g), narrative_clause(g)
        return ["when", *a.words, ",", *b.words]
    if r < 0.92:
        subj = g.possessive_np()
        pred, _aux = g.predicate(subj, "past", adj_p=0.3)
        return with_adverb(g, [*subj.words, *pred], advs)
    person = g.pick(g.dom.people)
    home = g.pick(("cottage", "castle", "tower", "mill", "village", "house", "hut"))
    adj = g.pick(ADJ_ANIM_PRE)
    return [
        "there",
        "was",
        "once",
        article(adj),
        adj,
        person.sg,
        "who",
        "lived",
        "in",
        "a",
        "little" if adj != "little" else "small",
        home,
    ]


def dialogue_parts(g: Grammar) -> tuple[list[str], str, str, list[str]]:
    """Return (inner words, inner punctuation, speech verb, speaker words)."""
    r = g.rng.random()
    if r < 0.5:
        inner = g.clause(g.pick(("pres", "pres", "past")), pron_p=0.5).words
        end, verb = ",", g.pick(("said", "said", "cried", "answered", "whispered"))
    elif r < 0.8:
        inner = g.question(g.pick(("pres", "past")))
        end, verb = "?", "asked"
    else:
        v, obj = g.object_np(0.2)
        inner = [v.base, *obj.words]
        end, verb = "!", g.pick(("cried", "shouted", "said"))
    if g.p(0.35):
        speaker = [g.name()[0]]
    else:
        speaker = list(
            g.np(
                g.dom.people, plural=False, adjs=ADJ_ANIM_PRE, adj_p=0.4, mode="the"
            ).words
        )
    return inner, end, verb, speaker


def gen_cbt(g: Grammar) -> Iterator[str]:
    title = f"{g.pick(NAMES_F)}_{g.pick(SURNAMES)}___The_{g.pick(ADJ_COLOUR).title()}"
    title += f"_{g.pick(THINGS_TALE).sg.title()}.txt.out"
    yield f"_BOOK_TITLE_ : {title}"
    chapter = 0
    since = 0
    while True:
        if since == 0 or (since > 20 and g.p(0.05)):
            chapter += 1
            since = 1
            yield f"CHAPTER {roman(chapter)}."
            continue
        since += 1
        parts = []
        for _ in range(g.rng.choice((1, 1, 2, 3))):
            if g.p(0.25):
                inner, end, verb, spk = dialogue_parts(g)
                inner = [cap(inner[0]), *inner[1:]]
                parts.append(" ".join(["``", *inner, end, "''", verb, *spk, "."]))
            else:
                parts.append(cap(tok_sent(narrative_words(g, NARR_ADVS))))
        yield " ".join(parts)


def gen_gutenberg(g: Grammar) -> Iterator[str]:
    chapter = 0
    since = 0
    while True:
        if since == 0 or (since > 18 and g.p(0.06)):
            chapter += 1
            since = 1
            yield f"CHAPTER {roman(chapter)}."
            continue
        since += 1
        parts = []
        for _ in range(g.rng.choice((1, 2, 2, 3, 4))):
            r = g.rng.random()
            if r < 0.2:
                inner, end, verb, spk = dialogue_parts(g)
                parts.append(f'"{sent(inner, end)}" {verb} {detok(spk)}.')
            elif r < 0.35:
                a, b = narrative_clause(g), narrative_clause(g)
                parts.append(sent([*a.words, ";", "but", *b.words]))
            else:
                words = narrative_words(g, OLD_ADVS)
                if g.p(0.05):
                    i = g.rng.randrange(len(words))
                    if words[i].isalpha():
                        words[i] = f"_{words[i]}_"
                parts.append(sent(words))
        yield " ".join(parts)


def gen_children_stories(g: Grammar) -> Iterator[str]:
    while True:
        hero, gender = (
            (g.pick(PET_NAMES_M), "m") if g.p(0.5) else (g.pick(PET_NAMES_F), "f")
        )
        friend = g.name()[0]
        animal = g.pick(g.dom.animals).sg
        adj = g.pick(("little", "small", "young", "clever", "brave", "happy"))
        he = "He" if gender == "m" else "She"
        his = "his" if gender == "m" else "her"
        hero_np = NP((hero,), False, 3, gender)
        pron_np = NP((he.lower(),), False, 3, gender)
        pair_np = NP((hero, "and", friend), True, 3, "p")
        place = g.pick(g.dom.places)[0]
        home = g.pick(("little", "cosy", "tiny"))
        para = [
            f"Once upon a time, there was {article(adj)} {adj} {animal} named {hero}.",
            f"{he} lived in a {home} house near the {place}.",
        ]
        paras = []
        for _ in range(g.rng.randint(2, 4)):
            for _ in range(g.rng.randint(2, 4)):
                r = g.rng.random()
                subj = g.pick((hero_np, pron_np, pron_np, pair_np))
                if r < 0.55:
                    pred, _aux = g.predicate(subj, "past", adj_p=0.3)
                    para.append(sent([*subj.words, *pred]))
                elif r < 0.8:
                    inner = g.clause("pres", pron_p=0.6, special_p=0.1)
                    speaker = g.pick((hero, friend))
                    para.append(f"\u201c{sent(inner.words, ',')}\u201d said {speaker}.")
                else:
                    thing = g.pick(g.dom.things)
                    thing_np = f"{article(thing.sg)} {thing.sg}"
                    mood = g.pick(ADJ_ANIM_PRED)
                    para.append(
                        g.pick(
                            (
                                f"One day, {hero} found {thing_np}.",
                                f"{he} didn\u2019t know what to do.",
                                f"{hero} and {friend} were very happy.",
                                f"{he} gave {his} {thing.sg} to {friend}.",
                                f"\u201cI\u2019m so {mood},\u201d said {hero}.",
                                f"{friend} smiled at {hero}.",
                            )
                        )
                    )
            paras.append(" ".join(para))
            para = []
        if g.p(0.4):
            paras.append("The end.")
        yield from paras


# ---- encyclopedic sources ----------------------------------------------

TOWN_HEAD = wordlist(
    "Bren Ash Cal Dor Elm Fal Gor Hal Kel Lin Mor Nor Ost Pel Quen Rav Sel Tor Ul Wen"
)
TOWN_TAIL = wordlist("moor ford wick haven stead by holm mere ton dale brook gate")
# (region, adjective, Latin-style species epithet)
REGIONS = (
    ("Valdoria", "Valdorian", "valdoriensis"),
    ("Estmark", "Estmarkish", "estmarkensis"),
    ("Orlenne", "Orlennese", "orlennensis"),
    ("Kessary", "Kessarian", "kessariensis"),
    ("the Tarrow Islands", "Tarrovian", "tarrowensis"),
)
RIVERS = wordlist("Ambry Selwen Oska Tarrin Vell Mordle")
OCCUPATIONS = nouns(
    "painter painters, poet poets, sailor sailors, engineer engineers,"
    " botanist botanists, composer composers, mapmaker mapmakers,"
    " architect architects, weaver weavers, physician physicians,"
    " astronomer astronomers, farmer farmers, miller millers, potter potters"
)
TOWN_THINGS = nouns(
    "bridge bridges, mill mills, tower towers, market markets, school schools,"
    " library libraries, harbour harbours, gate gates, farm farms,"
    " museum museums, hall halls, well wells, garden gardens, road roads"
)
CROPS = wordlist("apples barley pears flax oats plums hops cabbages rye")
PRODUCTS = wordlist("wool cheese honey salt timber cider lace pottery rope")
SPECIES = (
    ("marsh vole", "marsh voles", "mammal"),
    ("reed finch", "reed finches", "bird"),
    ("stone lizard", "stone lizards", "reptile"),
    ("river toad", "river toads", "amphibian"),
    ("hill hare", "hill hares", "mammal"),
    ("cave beetle", "cave beetles", "insect"),
    ("moss frog", "moss frogs", "amphibian"),
    ("dune mouse", "dune mice", "mammal"),
    ("cliff swift", "cliff swifts", "bird"),
    ("thorn snake", "thorn snakes", "reptile"),
)
HABITATS = wordlist(
    "wet meadows | reed beds | rocky hills | pine forests | shallow lakes | "
    "sand dunes | old stone walls | river banks",
    sep="|",
)
ANIMAL_FOODS = wordlist(
    "seeds | berries | insects | worms | snails | small fish | leaves | roots | moss",
    sep="|",
)
CENTURIES = {
    12: "twelfth",
    13: "thirteenth",
    14: "fourteenth",
    15: "fifteenth",
    16: "sixteenth",
    17: "seventeenth",
    18: "eighteenth",
    19: "nineteenth",
}
GENUS_ENDINGS = {
    "mammal": "mys",
    "bird": "spiza",
    "reptile": "saura",
    "amphibian": "bufo",
    "insect": "carabus",
}
BODY_PARTS = wordlist("feathers scales fur spots stripes")


ATTRACT = Verb("attract", "attracts", "attracted", "attracting")


def town_name(g: Grammar) -> str:
    return g.pick(TOWN_HEAD) + g.pick(TOWN_TAIL)


def town_thing_sentence(g: Grammar, town: str, tense: str) -> list[str]:
    """``The old mills near Brenmoor are famous`` (agrees with the head)."""
    noun = g.pick(TOWN_THINGS)
    pl = g.p(0.5)
    head = noun.pl if pl else noun.sg
    adj = [g.pick(("old", "new", "large", "small", "stone"))] if g.p(0.5) else []
    subj = NP(("the", *adj, head), pl)
    prep = g.pick(("near", "in", "of"))
    pred = g.pick(
        (
            [
                be_form(subj, tense),
                g.pick(
                    (
                        "famous",
                        "popular with visitors",
                        "very old",
                        "well known",
                        "important",
                    )
                ),
            ],
            [
                have_form(subj, tense),
                "a",
                g.pick(("long", "strange", "proud")),
                "history",
            ],
            [be_form(subj, tense), "open", "to", "everyone"],
            [vform(ATTRACT, subj, tense), "many", "visitors"],
        )
    )
    return [*subj.words, prep, town, *pred]


def walls_sentence(g: Grammar, founded: int) -> str:
    """Long-distance agreement across a relative clause and a subordinate clause."""
    wall = g.pick(("wall", "walls", "tower", "towers"))
    walls = NP(("the", "old", wall), wall.endswith("s"))
    gate = g.pick(("gate", "gates", "bridge", "bridges", "mill", "mills"))
    gate_np = NP(("the", gate), gate.endswith("s"))
    place = g.pick(("river", "market", "church", "harbour"))
    built = founded + g.rng.randint(20, 90)
    lost = founded + g.rng.randint(100, 250)
    return sent(
        [
            *walls.words,
            ",",
            "which",
            be_form(walls, "past"),
            "built",
            "in",
            str(built),
            "to",
            "protect",
            "the",
            "market",
            ",",
            be_form(walls, "pres"),
            "still",
            "standing",
            ",",
            "although",
            *gate_np.words,
            "near",
            "the",
            place,
            be_form(gate_np, "past"),
            g.pick(("destroyed", "rebuilt", "burned", "repaired")),
            "in",
            str(lost),
        ]
    )


def town_article(g: Grammar, full: bool) -> list[str]:
    town = town_name(g)
    other = town_name(g)
    region = g.pick(REGIONS)[0]
    river = g.pick(RIVERS)
    founded = g.rng.randint(1100, 1750)
    pop = g.rng.randint(8, 900) * 10 + g.rng.randint(0, 9)
    occ = g.pick(OCCUPATIONS)
    crop = g.pick(CROPS)
    product = g.pick(PRODUCTS)
    also = f" &amp; {g.pick(PRODUCTS)}" if g.p(0.3) else ""
    k = g.rng.randint(2, 9)
    tt = g.pick(TOWN_THINGS)
    lines: list[str] = []
    if full:
        lines.append(f"= {town} =")
        side = g.pick(("north", "south", "east", "west"))
        lines.append(
            f"{town} is a market town in the {side} of {region}, on the {river}"
            f" River. At the {g.rng.randint(1990, 2020)} census it had a population"
            f" of {pop:,}, which makes it one of the"
            f" larger towns in the {river} valley. The town, which is known for its"
            f" {product}, is linked to {other} by a road that follows the river."
        )
        lines.append("= = History = =")
        lines.append(
            f"Founded in {founded} by {occ.pl} from {other}, {town} grew quickly"
            f" during the {CENTURIES[(founded + 60) // 100 + 1]} century,"
            f" when the {river} valley became an important route for the {product}"
            f" trade. "
            + sent(town_thing_sentence(g, town, "past"))
            + " "
            + walls_sentence(g, founded)
        )
        lines.append("= = = Later years = = =")
        lines.append(
            f"In {g.rng.randint(1840, 1890)} a railway reached the town,"
            f" and the number of {occ.pl} who lived there rose sharply. "
            + sent(town_thing_sentence(g, town, "pres"))
        )
        lines.append("= = Economy = =")
        lines.append(
            f"The farmers of {town} grow {crop} and {g.pick(CROPS)}, and the"
            f" town has {NUM_WORDS[k]} {tt.pl}. The {town} Farmers &amp; Traders"
            f" Society, which was founded in {g.rng.randint(1850, 1960)},"
            f" still holds a market every {g.pick(DAYS)}."
        )
    else:
        lines.append(town)
        lines.append(
            f"{town} is a small town in {region}. It is on the {river} River."
            f" About {pop:,} people live there."
        )
        lines.append("= = = History = = =")
        lines.append(
            f"The town was started in {founded} by {occ.pl} from {other}."
            f" The first houses were made of stone. "
            + sent(town_thing_sentence(g, town, "past"))
        )
        lines.append("= = = Economy = = =")
        lines.append(
            f"Many people in {town} work as {occ.pl}. The town is known for its"
            f" {product}{also}. It has {NUM_WORDS[k]} {tt.pl}"
            + (" and one " + g.pick(TOWN_THINGS).sg if g.p(0.5) else "")
            + "."
        )
    return lines


def animal_article(g: Grammar, full: bool) -> list[str]:
    region, nat, epithet = g.pick(REGIONS)
    sg_, pl_, cls = g.pick(SPECIES)
    name = f"{nat} {sg_}"
    cm = g.rng.randint(3, 40)
    eggs = g.rng.randint(2, 12)
    col1 = g.pick(ADJ_COLOUR)
    col2 = g.pick([c for c in ADJ_COLOUR if c != col1])
    part = g.pick(BODY_PARTS)
    f1, f2 = g.pick(ANIMAL_FOODS), g.pick(ANIMAL_FOODS)
    lines: list[str] = []
    males_pl = g.p(0.5)
    males = (
        f"The males have {col1} {part}, but the females have {col2} {part}."
        if males_pl
        else f"The male has {col1} {part}, but the female has {col2} {part}."
    )
    adults = (
        f"Adults are about {cm} centimetres long."
        if g.p(0.5)
        else f"An adult is about {cm} centimetres long."
    )
    if full:
        genus = g.pick(("Paludo", "Saxi", "Rivo", "Colli", "Dunae", "Musco"))
        genus += GENUS_ENDINGS[cls]
        occ = g.pick(OCCUPATIONS).sg
        finder = f"{article(occ)} {occ}"
        lines.append(f"= {cap(name)} =")
        lines.append(
            f"The {name} ( {genus} {epithet} ) is a small {cls} that is"
            f" found in the {g.pick(HABITATS)} of {region}. It was first described"
            f" in {g.rng.randint(1780, 1950)} by {finder} who"
            f" had collected several specimens near the {g.pick(RIVERS)} River."
        )
        lines.append("= = Description = =")
        lines.append(
            f"{adults} {males} The young, which are born in"
            f" {g.pick(('spring', 'early summer', 'late summer'))}, look like the"
            f" females until they are about {NUM_WORDS[g.rng.randint(2, 9)]} weeks"
            f" old.<br>"
        )
        lines.append("= = Behaviour = =")
        lines.append(
            f"The {name} feeds mainly on {f1} and {f2}, which it finds under"
            f" stones and fallen leaves.  A female lays {eggs} eggs in a nest"
            f" that she builds herself, and the {pl_} that hatch from them stay"
            f" close to the nest for several weeks."
        )
    else:
        lines.append(f"{cap(name)}")
        lines.append(
            f"The {name} is a small {cls}. It lives in {g.pick(HABITATS)} in"
            f" {region}. It eats {f1} and {f2}."
        )
        lines.append("= = = Description = = =")
        lines.append(f"{adults} {males}")
        lines.append(
            f"A female lays {eggs} eggs. Young {pl_} leave the nest after"
            f" {NUM_WORDS[g.rng.randint(2, 9)]} weeks."
        )
    return lines


def person_article(g: Grammar, full: bool) -> list[str]:
    first, gender = g.name()
    last = g.pick(SURNAMES)
    he = "he" if gender == "m" else "she"
    his = "his" if gender == "m" else "her"
    himself = "himself" if gender == "m" else "herself"
    region, nat, _epithet = g.pick(REGIONS)
    a_nat = f"{article(nat)} {nat}"
    occ = g.pick(OCCUPATIONS).sg
    born = g.rng.randint(1700, 1950)
    died = born + g.rng.randint(35, 90)
    town, town2 = town_name(g), town_name(g)
    work = f"The {g.pick(ADJ_COLOUR).title()} {g.pick(THINGS_TALE).sg.title()}"
    spouse, _sg = g.name()
    sibs = g.rng.randint(2, 5)
    lines: list[str] = []
    if full:
        lines.append(f"= {first} {last} =")
        lines.append(
            f"{first} {last} ( {born} \u2013 {died} ) was {a_nat} {occ} whose work on"
            f" {g.pick(('rivers', 'bridges', 'birds', 'songs', 'maps'))}"
            f" made {his} name well known across {region}. Born in {town}, the"
            f" youngest of {NUM_WORDS[sibs]} children, {he} taught {himself} to"
            f" read before {he} was {NUM_WORDS[g.rng.randint(4, 7)]}."
        )
        lines.append("= = Early life = =")
        lines.append(
            f"{cap(his)} parents, who were {g.pick(OCCUPATIONS).pl}, moved to"
            f" {town2} in {born + g.rng.randint(5, 15)}. There {he} studied at the"
            f" {town2} School of Arts &amp; Sciences, where {his} teachers praised"
            f" {his} early drawings."
        )
        lines.append("= = Career = =")
        lines.append(
            f"In {born + g.rng.randint(20, 30)}, {first} married {spouse}"
            f" {g.pick(SURNAMES)}, and the two of them ran a small workshop"
            f" together.  {cap(his)} best-known work, {work}, was finished in"
            f" {born + g.rng.randint(31, 34)} and is still shown in the museum in"
            f" {town}. {first} and {his} students described themselves as"
            f' "the {town2} group".'
        )
    else:
        lines.append(f"{first} {last}")
        lines.append(
            f"{first} {last} ({born} \u2013 {died}) was {a_nat} {occ}."
            f" {cap(he)} was born in {town}."
        )
        lines.append("= = = Life = = =")
        lines.append(
            f"{cap(he)} taught {himself} to {g.pick(('paint', 'read', 'sing'))}."
            f" In {born + g.rng.randint(20, 30)}, {he} moved to {town2}."
            f" {cap(his)} most famous work is {work}."
        )
    return lines


def gen_wiki(g: Grammar, full: bool) -> Iterator[str]:
    makers: tuple[Callable[[Grammar, bool], list[str]], ...] = (
        town_article,
        animal_article,
        person_article,
    )
    while True:
        for clean in g.pick(makers)(g, full):
            line = clean
            if full and g.p(0.04):
                line = line.replace(". ", ".  ", 1)
            elif not full and g.p(0.03):
                line = line.replace(" ", "  ", 1)
            if g.p(0.03 if full else 0.02):
                line += " <br>"
            yield line


def gen_simple_wikipedia(g: Grammar) -> Iterator[str]:
    return gen_wiki(g, full=False)


def gen_wikipedia(g: Grammar) -> Iterator[str]:
    return gen_wiki(g, full=True)


GENERATORS: dict[str, tuple[Domain, Callable[[Grammar], Iterator[str]]]] = {
    "aochildes": (DOM_HOME, gen_aochildes),
    "bnc_spoken": (DOM_UK, gen_bnc_spoken),
    "cbt": (DOM_TALE, gen_cbt),
    "children_stories": (DOM_TALE, gen_children_stories),
    "gutenberg": (DOM_TALE, gen_gutenberg),
    "open_subtitles": (DOM_US, gen_open_subtitles),
    "qed": (DOM_HOME, gen_qed),
    "simple_wikipedia": (DOM_TALE, gen_simple_wikipedia),
    "switchboard": (DOM_US, gen_switchboard),
    "wikipedia": (DOM_TALE, gen_wikipedia),
}


# --------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------


def seed_for(split: str, source: str) -> int:
    return BASE_SEED ^ zlib.crc32(f"{split}/{source}".encode())


def make_text(split: str, source: str, target: int) -> str:
    rng = random.Random(seed_for(split, source))
    dom, gen = GENERATORS[source]
    g = Grammar(rng, dom)
    lines: list[str] = []
    size = 0
    for line in gen(g):
        if lines and rng.random() < EMPTY_LINE_P:
            lines.append("")
            size += 1
        lines.append(line)
        size += len(line.encode("utf-8")) + 1
        if size >= target:
            break
    return "\n".join(lines) + "\n"


SOURCE_STYLES = {
    "aochildes": (
        "short lowercase child-directed utterances with tokenized punctuation"
        " (`do you want the ball ?`); some `*MOT:`/`*CHI:`/`*FAT:` labels,"
        " `xxx`, `[+ IMIT]`"
    ),
    "bnc_spoken": (
        "casual British talk (quid, cuppa, tag questions); some `S01:` labels,"
        " `[laughs]`, `<pause>`, `<unclear>`"
    ),
    "cbt": (
        "tokenized book prose (` , `, ` 's `, backtick quotes);"
        " a `_BOOK_TITLE_` line, `CHAPTER III.` headings"
    ),
    "children_stories": (
        "simple story paragraphs with curly quotes \u201c \u201d and \u2019"
    ),
    "gutenberg": (
        "older narrative prose, normal punctuation, several sentences per line,"
        " `CHAPTER` headings, `_italics_`"
    ),
    "open_subtitles": "short film lines, some starting with `- `",
    "qed": (
        "lecture lines on science and arithmetic (the sums are correct);"
        " `(Applause)`, `(Laughter)`"
    ),
    "simple_wikipedia": (
        "short encyclopedic sentences on invented towns, animals and people;"
        " `= = = History = = =` headers, occasional `&amp;`, `<br>`"
    ),
    "switchboard": (
        "telephone talk with `uh`/`um`; some `A:`/`B:` labels, `[laughter]`, `[noise]`"
    ),
    "wikipedia": (
        "longer encyclopedic sentences with relative clauses; `= Title =`,"
        " `= = Section = =`; `&amp;`, `<br>`, doubled spaces"
    ),
}


def write_readme(stats: dict[str, tuple[int, int, int]]) -> None:
    rows = "\n".join(
        f"| `{folder}/` | {nbytes:,} | {nlines:,} | {nwords:,} |"
        for folder, (nbytes, nlines, nwords) in stats.items()
    )
    styles = "\n".join(
        ["| source | surface style |", "| --- | --- |"]
        + [f"| `{src}` | {desc} |" for src, desc in SOURCE_STYLES.items()]
    )
    text = f"""# Synthetic BabyLM sample corpus

This folder is a **small, synthetic** corpus laid out like the BabyLM data:

```
babylm_10M/<source>.train
babylm_dev/<source>.dev
babylm_test/<source>.test
```

for the ten sources {", ".join(f"`{s}`" for s in SOURCES)}.

All of it was generated by `data/make_sample.py`, a deterministic script
(Python standard library only) with a small probabilistic grammar and a
hand-written vocabulary written for this project. Names, towns, regions and
animals are invented. No sentence is taken from any real corpus. Each source
copies only the *surface style* of its real counterpart (speaker labels and
transcription marks, tokenized punctuation, curly quotes, chapter headings,
wiki section headers and stray markup such as `&amp;` and `<br>`), so that
per-source cleaning rules can be tested. Subject-verb, determiner-noun and
reflexive agreement are always grammatical.

To regenerate (the output is byte-identical each time, from any directory):

```
python3 data/make_sample.py
```

Dev and test use the same grammar as train but different seeds per split and
source (seed = a fixed base XOR the CRC32 of `"<split>/<source>"`), so they are
new random draws, not copies. Short stock lines (headers, "Yeah.", "(Applause)")
naturally recur across splits.

Each file holds one utterance, sentence or paragraph per line, plain UTF-8
with `\\n` line ends, and a few empty lines (the pipeline drops them). Every
train file is about 25 KB and every dev/test file about 7 KB.

| split | bytes | lines | words |
| --- | ---: | ---: | ---: |
{rows}

{styles}

This corpus is **only for the demo and the tests** (smoke-training a tiny
model, checking the data pipeline and the cleaning rules). It is far too small
and too artificial for real results.
"""
    (OUT_DIR / "README.md").write_text(text, encoding="utf-8")


def main() -> None:
    stats: dict[str, tuple[int, int, int]] = {}
    for folder, ext, target in SPLITS:
        out = OUT_DIR / folder
        out.mkdir(parents=True, exist_ok=True)
        nbytes = nlines = nwords = 0
        for source in SOURCES:
            text = make_text(ext, source, target)
            (out / f"{source}.{ext}").write_bytes(text.encode("utf-8"))
            nbytes += len(text.encode("utf-8"))
            nlines += text.count("\n")
            nwords += len(text.split())
        stats[folder] = (nbytes, nlines, nwords)
        print(f"{folder}: {nbytes:,} bytes, {nlines:,} lines, {nwords:,} words")
    write_readme(stats)


if __name__ == "__main__":
    main()
