"""Age of acquisition (AoA): when, in words seen, a model learns each word, correlated with
when children do (Chang & Bergen 2022, "Word acquisition in neural language models"),
the AoA task of the official BabyLM evaluation (evaluation-pipeline-2025,
`evaluation_pipeline/AoA_word/` and `eval_aoa.sh`), reimplemented.

Data (the official `evaluation_data/full_eval/aoa/`, `AOA_DATA_FILES`):
- `cdi_childes.json`: one JSON object, word -> list of contexts, each an object with a string
  "context" (a short text the word followed): `{"dog": [{"context": "I want to pet the"}, ...]}`.
  As the official `load_eval` (AoA_word/eval_util.py) with run.py's --min_context default 0
  (eval_aoa.sh sets MIN_CONTEXT=20 but never passes it), every word of two or more characters
  is kept (`MIN_CONTEXTS` = 0); one listed without contexts gives no record, as there.
- `cdi_human.csv`, beside it: the children, from Wordbank's CDI: a `word` column and one
  column per age in months, "16" ... "30", holding the share of children who produce the
  word at that age (empty or NA where unknown).

Computation, as the official code:
1. Surprisal of a word in a context, at each checkpoint: the text `context.strip() + " " +
   word` is tokenized with the tokenizer's own special tokens, and the tokens whose
   characters overlap the word are scored (not a token holding only the space before it):
   -sum of their log-probabilities, in nats (causal: token i read at position i-1, token 0
   never scored; `mlm`/`mntp`: one copy per token with it masked), by the zero-shot suite's
   official scorer (evaluation/scoring.py `make_plans`/`score_plans`, batched, no_grad).
2. `surprisal.json` (results/<model>/main/zero_shot/<backend>/AoA_word/), as the official
   `analyze_steps` + `JsonProcessor.save_json` write it (json.dump, indent 2, keys in this
   order, no final newline): `{"metadata": {"model_name", "use_bos_only": false, "total_steps",
   "completed_steps"}, "results": [{"step": "chck_1M", "word_count": 1000000, "target_word",
   "context_id", "context", "surprisal"}, ...]}`, one record per (checkpoint, word, context) in
   file order. `word_count`: the revision's nominal mark (int, chck_3M -> 3000000), not the
   words seen; `model_name`: the model as given (the run folder); an unscorable context: NaN,
   or -0.0 for a causal text of 2+ tokens (`_score`). The collate step wants its track's
   revisions (19 strict-small, 28 strict), `AOA_WORDS` (8005) records each.
3. The model's AoA of a word: a sigmoid fitted (scipy curve_fit) to its surprisal against
   x = log10(words seen + 1); the AoA is the x where the fitted curve crosses halfway between
   chance (each of the word's tokens at 1/vocabulary size) and the lowest surprisal it reached,
   if that is inside the checkpoints' range. A flat, rising or unfittable curve gives no AoA.
4. A child AoA: a sigmoid fitted to the shares by age; the age where it crosses 0.5.
5. The score: Pearson's r (scipy) between model and child AoA over the words that have both.

Where this follows which official code, and where it deviates:
- The contexts are used (`use_bos_only: false`): the current official `analyze_steps`
  default; an earlier revision scored the word after BOS alone.
- Scoring (3-5) follows the official `AoAEvaluator` (evaluation_pipeline/utils.py), whose
  official revision fits every context's point, unbounded, with chance log2(300000) = 18.2
  (bits, set against nats). Later copies (official commit unchecked) average the contexts at
  each checkpoint (the same least-squares curve; only the lowest surprisal, the threshold's,
  becomes the lowest mean), take chance as scored tokens x ln(output vocabulary) and bound the
  fit; we follow those, but return r and p as they are (they report 0 when p > 0.1).
- Checkpoints are given as (revision name, words seen, folder), not read as revisions of a
  Hub repository. Our fit (3) takes the words each had actually seen, and leaves out
  unscorable contexts (the official one would take a -0.0 as a surprisal)."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import re
import warnings
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.optimize import curve_fit
from scipy.stats import pearsonr
from transformers import PreTrainedModel

from custom_models import is_causal, load_model_and_tokenizer
from evaluation.layout import AOA_WORDS, aoa_collate_note  # noqa: F401 (AOA_WORDS: aoa.AOA_WORDS for callers)
from evaluation.scoring import BACKENDS, TOKENS_PER_BATCH, default_backend, make_plans, pad_id_of, score_plans
from training.identity import loaded, recorded, write_sidecar
from utils import RunLogger, UserError, parse_word_mark, write_text_atomic

# In the official evaluation_data/: eval_aoa.sh's default word path (then the one of earlier
# revisions), and the children's table beside it (where the official run.py reads it).
AOA_DATA_FILES = (Path("full_eval") / "aoa" / "cdi_childes.json",
                  Path("full_eval") / "cdi_childes" / "cdi_childes.json")
AOA_DATA = AOA_DATA_FILES[0]
CHILD_AOA_FILE = "cdi_human.csv"
AOA_TASK_DIR = "AoA_word"  # results/<model>/main/zero_shot/<backend>/AoA_word/surprisal.json
SURPRISAL_FILE = "surprisal.json"
MIN_CONTEXTS = 0  # the official run.py's --min_context default (eval_aoa.sh passes none)
MIN_CHECKPOINTS = 3  # a sigmoid needs at least three points
CHILD_AGES = tuple(range(16, 31))  # the months of the CDI table
_NA = {"", "na", "n/a", "nan", "null", "none", "#n/a", "<na>"}  # pandas' usual missing-value spellings


# --------------------------------------------------------------------------- data files


def find_aoa_data(eval_dir: str | Path) -> Path | None:
    """The official cdi_childes.json under `eval_dir` (the evaluation_data/ folder, or its
    full_eval/ folder), or None when it is not there, so a caller can skip AoA with a note."""
    eval_dir = Path(eval_dir)
    for relative in AOA_DATA_FILES:
        for candidate in (eval_dir / relative, eval_dir / relative.relative_to("full_eval")):
            if candidate.is_file():
                return candidate
    return None


class _Lines:
    """Line numbers of positions in a text, counted incrementally (positions mostly increase)."""

    def __init__(self, text: str) -> None:
        self.text, self.pos, self.line = text, 0, 1

    def at(self, pos: int) -> int:
        if pos < self.pos:  # counted afresh from the start
            self.pos, self.line = 0, 1
        self.line += self.text.count("\n", self.pos, pos)
        self.pos = pos
        return self.line


_WS = re.compile(r"[ \t\n\r]*")


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read the AoA data '{path}' ({e.strerror or e}): "
                        "restore the official evaluation data (make eval_data)") from None
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise UserError(f"{path}:{line} is not valid UTF-8: fix that line or restore the official file") from None


def _members(text: str, path: Path, lines: _Lines) -> Iterator[tuple[str, Any, int, int]]:
    """(key, value, line, position of the value) for each member of the top-level JSON object,
    in file order; UserError naming the line of the first syntax error."""
    decoder = json.JSONDecoder()

    def fail(pos: int, what: str) -> UserError:
        return UserError(f"{path}:{lines.at(pos)}: {what}: the AoA words file is one JSON object "
                         '{"word": [{"context": "..."}, ...], ...}; fix that line or restore the official file')

    try:
        i = _WS.match(text, 0).end()
        if not text.startswith("{", i):
            raise fail(i, "expected '{'")
        i = _WS.match(text, i + 1).end()
        closed = text.startswith("}", i)
        while not closed:
            if not text.startswith('"', i):
                raise fail(i, "expected a word in double quotes")
            key, i = json.decoder.scanstring(text, i + 1)
            i = _WS.match(text, i).end()
            if not text.startswith(":", i):
                raise fail(i, "expected ':' after the word")
            start = _WS.match(text, i + 1).end()
            value, i = decoder.raw_decode(text, start)
            yield key, value, lines.at(start), start
            i = _WS.match(text, i).end()
            if text.startswith(",", i):
                i = _WS.match(text, i + 1).end()
            elif text.startswith("}", i):
                closed = True
            else:
                raise fail(i, "expected ',' or '}'")
        i = _WS.match(text, i + 1).end()
        if i != len(text):
            raise fail(i, "text after the end of the JSON object")
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: not valid JSON ({e.msg}): fix that line or restore the "
                        "official file") from None


def _element_line(text: str, start: int, index: int, lines: _Lines) -> int:
    """The line of element `index` of the JSON array that starts at `start` (error path only)."""
    decoder, i = json.JSONDecoder(), _WS.match(text, start + 1).end()
    for _ in range(index):
        _, i = decoder.raw_decode(text, i)
        i = _WS.match(text, i).end() + 1  # the comma
        i = _WS.match(text, i).end()
    return lines.at(i)


def read_aoa_words(path: str | Path, min_contexts: int = MIN_CONTEXTS) -> dict[str, list[str]]:
    """The official cdi_childes.json: word -> its contexts, in file order, keeping (as the official
    loader) the words of more than one character with at least `min_contexts` contexts (by
    default 0: every such word, one without contexts too).

    Bad input (not UTF-8, not JSON, a word listed twice, a word whose value is not a list of
    objects with a string "context") is a UserError naming the file and line."""
    path = Path(path)
    text = _read_text(path)
    lines = _Lines(text)
    words: dict[str, list[str]] = {}
    seen: set[str] = set()
    for word, value, line, start in _members(text, path, lines):
        where = f"{path}:{line}"
        if word in seen:
            raise UserError(f"{where}: the word {word!r} is listed a second time: keep one entry for it")
        seen.add(word)
        if not isinstance(value, list):
            raise UserError(f"{where}: the word {word!r} has a JSON {type(value).__name__} where a list of "
                            '{"context": "..."} objects belongs: fix that entry')
        contexts = []
        for k, item in enumerate(value):
            if not (isinstance(item, dict) and isinstance(item.get("context"), str)):
                at = _element_line(text, start, k, lines)
                raise UserError(f"{path}:{at}: context {k} of the word {word!r} is not an object with a string "
                                '"context": fix that line')
            contexts.append(item["context"])
        if len(word) > 1 and len(contexts) >= min_contexts:
            words[word] = contexts
    if not words:
        least = f" with {min_contexts} or more contexts" if min_contexts > 0 else ""
        raise UserError(f"{path} has no word of two or more characters{least}: restore the official "
                        "cdi_childes.json" + (" (or lower the minimum number of contexts)" if least else ""))
    return words


def read_child_table(path: str | Path) -> dict[str, dict[int, float]]:
    """The official cdi_human.csv: word -> {age in months: share of children producing it}, the
    missing cells left out. As the official code (which looks a word up and takes the first
    match), a word listed again keeps its first row. UserError naming the line of a cell that
    is not a share between 0 and 1, or of a row with the wrong number of fields."""
    path = Path(path)
    reader = csv.reader(io.StringIO(_read_text(path), newline=""))
    header = next(reader, None)
    if not header or "word" not in header:
        raise UserError(f"{path}:1: no 'word' column in the header: restore the official {CHILD_AOA_FILE}")
    ages = {i: int(name) for i, name in enumerate(header) if name.strip() in {str(a) for a in CHILD_AGES}}
    if not ages:
        raise UserError(f"{path}:1: no age columns ('16' ... '30') in the header: restore the official "
                        f"{CHILD_AOA_FILE}")
    word_col = header.index("word")
    table: dict[str, dict[int, float]] = {}
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise UserError(f"{path}:{line}: {len(row)} fields where the header has {len(header)}: fix that line")
        shares = {}
        for i, age in ages.items():
            cell = row[i].strip()
            if cell.lower() in _NA:
                continue
            try:
                share = float(cell)
            except ValueError:
                share = math.nan
            if not 0.0 <= share <= 1.0:
                raise UserError(f"{path}:{line}: age {age} of {row[word_col]!r} holds {row[i]!r}, not a share "
                                "between 0 and 1: fix that line")
            shares[age] = share
        table.setdefault(row[word_col], shares)
    return table


# --------------------------------------------------------------------------- surprisal


def _score(model: PreTrainedModel, tokenizer, pairs: Sequence[tuple[str, str]], backend: str | None,
           device: torch.device | str, tokens_per_batch: int, share_prefixes: bool,
           desc: str | None) -> tuple[list[float], list[int], list[float]]:
    """(surprisal in nats, NaN where no token of the word is scored; number of scored tokens;
    the surprisal as the official code writes it) of each (context, word)."""
    model_type = model.config.model_type
    backend = backend or default_backend(model_type)
    if backend not in BACKENDS:
        raise UserError(f"unknown AoA backend {backend!r}: pick one of {', '.join(BACKENDS)}")
    if backend == "causal" and not is_causal(model_type):
        raise UserError(f"a {model_type} model is a masked LM, not causal: score AoA with the mlm backend")
    words = [word.strip() for _, word in pairs]
    texts = [context.strip() + " " + word for (context, _), word in zip(pairs, words, strict=True)]
    plans = make_plans(tokenizer, texts, words, backend, "official")
    limit = getattr(model.config, "max_position_embeddings", None)
    longest = max((len(plan.ids) for plan in plans), default=0)
    if limit is not None and longest > limit:
        raise UserError(f"an AoA context is {longest} tokens long, more than the model's {limit} positions: "
                        "restore the official cdi_childes.json (its contexts are a few words long)")
    logp = score_plans(model, plans, backend, pad_id_of(tokenizer, backend), tokenizer.mask_token_id,
                       tokens_per_batch=tokens_per_batch, device=device, desc=desc, share_prefixes=share_prefixes)
    surprisals = [-value if plan.reads else math.nan for value, plan in zip(logp, plans, strict=True)]
    # Where nothing is scored, the official compute_surprisal_causal sums a mask of zeros (-0.0), but a
    # one-token text leaves it no input and the forward pass raises, as torch.stack of no masked copy
    # does: compute_surprisal catches both and returns NaN.
    official = [s if plan.reads else -0.0 if backend == "causal" and len(plan.ids) >= 2 else math.nan
                for s, plan in zip(surprisals, plans, strict=True)]
    return surprisals, [len(plan.reads) for plan in plans], official


@torch.no_grad()
def word_surprisals(model: PreTrainedModel, tokenizer, pairs: Sequence[tuple[str, str]], backend: str | None = None,
                    device: torch.device | str = "cpu", tokens_per_batch: int = TOKENS_PER_BATCH,
                    share_prefixes: bool = True, desc: str | None = None) -> list[float]:
    """Surprisal, in nats, of each word after its context, the official way: -sum of the
    log-probabilities of the tokens of `context.strip() + " " + word` that overlap the word.
    `pairs` are (context, word). Backend: causal (the default for causal models), mlm or mntp
    (masked LMs, as `make evaluate`). NaN where no token of the word can be scored."""
    return _score(model, tokenizer, pairs, backend, device, tokens_per_batch, share_prefixes, desc)[0]


# --------------------------------------------------------------------------- sigmoid fits


def _logistic(x: np.ndarray, a: float, b: float, c: float, d: float) -> np.ndarray:
    """a / (1 + exp(-b (x - c))) + d: the official parametrisation (rising, from d to a + d)."""
    with np.errstate(over="ignore"):
        return a / (1.0 + np.exp(-b * (x - c))) + d


def _fit_logistic(x: np.ndarray, y: np.ndarray, p0: list[float], bounds: tuple[list[float], list[float]],
                  maxfev: int) -> tuple[float, float, float, float] | None:
    """curve_fit of `_logistic`, or None when it does not converge or gives no finite parameters."""
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")  # OptimizeWarning: covariance not estimated (not needed here)
            popt, _ = curve_fit(_logistic, x, y, p0=p0, bounds=bounds, maxfev=maxfev)
    except (RuntimeError, ValueError, FloatingPointError):
        return None
    a, b, c, d = (float(v) for v in popt)
    return (a, b, c, d) if all(math.isfinite(v) for v in (a, b, c, d)) else None


@dataclass(frozen=True)
class SigmoidFit:
    """A word's fitted learning curve, surprisal = top - drop / (1 + exp(-slope (x - midpoint))),
    x = log10(words seen + 1), and its AoA in the same units (log10 words)."""

    top: float  # surprisal before the word is learnt (the upper asymptote)
    drop: float  # how far it falls
    slope: float  # per decade of words
    midpoint: float  # log10 words where the curve is halfway down
    aoa: float  # log10 words: the model's age of acquisition of the word

    @property
    def params(self) -> tuple[float, float, float, float]:
        """(a, b, c, d) of the official fit of -surprisal = a / (1 + exp(-b (x - c))) + d."""
        return self.drop, self.slope, self.midpoint, -self.top

    def surprisal(self, words_seen: Sequence[float] | np.ndarray) -> np.ndarray:
        """The fitted surprisal after `words_seen` words."""
        return -_logistic(np.log10(np.asarray(words_seen, dtype=float) + 1.0), *self.params)


def fit_sigmoid(words_seen: Sequence[float] | np.ndarray, surprisals: Sequence[float] | np.ndarray, *,
                chance_surprisal: float | None = None) -> SigmoidFit | None:
    """Fit a falling sigmoid to a word's surprisal against log10(words seen + 1) (scipy
    curve_fit, bounded: a non-negative fall and slope, the midpoint within a decade of the
    checkpoints) and take the model's AoA from it, in log10 words:
    - `chance_surprisal` None: the midpoint, where the curve is halfway between its asymptotes;
    - given (the official AoA): where the curve crosses halfway between chance and the lowest
      surprisal the word reached.
    None, never an exception, when there are fewer than 3 checkpoints with a finite surprisal,
    the curve is flat, the fit fails, the curve does not fall, or the AoA lies outside the
    checkpoints' range."""
    w = np.asarray(words_seen, dtype=float)
    s = np.asarray(surprisals, dtype=float)
    if w.shape != s.shape or w.ndim != 1:
        raise ValueError(f"words_seen {w.shape} and surprisals {s.shape} must be two lists of the same length")
    keep = np.isfinite(w) & np.isfinite(s) & (w >= 0)
    w, s = w[keep], s[keep]
    if len(np.unique(w)) < MIN_CHECKPOINTS:
        return None
    x, y = np.log10(w + 1.0), -s  # the official fits the rising -surprisal
    span = float(np.ptp(y))
    if span <= 1e-9 * max(1.0, float(np.abs(y).max())):
        return None  # flat: nothing is learnt (or unlearnt)
    p0 = [span, 1.0, float(x.mean()), float(y.min())]
    bounds = ([0.0, 0.0, float(x.min()) - 1.0, float(y.min()) - 2 * span - 1.0],
              [10 * span + 1.0, 100.0, float(x.max()) + 1.0, float(y.max()) + 1.0])
    params = _fit_logistic(x, y, p0, bounds, maxfev=20000)
    if params is None:
        return None
    a, b, c, d = params
    if a <= 1e-6 or b <= 1e-6:
        return None  # no fall: the word is not learnt over these checkpoints
    top = -d
    if chance_surprisal is None:
        share = 0.5
    else:
        threshold = chance_surprisal - 0.5 * (chance_surprisal - float(s.min()))
        share = (top - threshold) / a  # how far down the curve the threshold lies
    if not 0.0 < share < 1.0:
        return None
    aoa = c - math.log(1.0 / share - 1.0) / b
    if not float(x.min()) <= aoa <= float(x.max()):
        return None
    return SigmoidFit(top=top, drop=a, slope=b, midpoint=c, aoa=aoa)


def child_aoa(ages: Sequence[float] | np.ndarray, shares: Sequence[float] | np.ndarray) -> float | None:
    """The age (months) at which a word's fitted share of children producing it crosses 0.5, as the
    official code: a / (1 + exp(-b (age - c))) + d fitted with a in [0, 2], b in [0, 1], c within
    the ages, d in [-0.5, 0.5]; None with fewer than 3 known ages, a failed fit, or no crossing
    within the ages."""
    x = np.asarray(ages, dtype=float)
    y = np.asarray(shares, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < 3:
        return None
    order = np.argsort(x)
    x, y = x[order], y[order]
    params = _fit_logistic(x, y, [1.0, 0.1, float(x.mean()), 0.0],
                           ([0.0, 0.0, float(x[0]), -0.5], [2.0, 1.0, float(x[-1]), 0.5]), maxfev=1000)
    if params is None:
        return None
    a, b, c, d = params
    if a <= 0 or b <= 0 or not d < 0.5 < a + d:
        return None
    age = c - math.log(a / (0.5 - d) - 1.0) / b
    return age if x[0] <= age <= x[-1] else None


def child_aoas(table: dict[str, dict[int, float]]) -> dict[str, float]:
    """Child AoA (months) of every word of a `read_child_table` table that has one."""
    out = {}
    for word, shares in table.items():
        ages = sorted(shares)
        age = child_aoa(ages, [shares[a] for a in ages])
        if age is not None:
            out[word] = age
    return out


def aoa_correlation(model_aoa: dict[str, float], child: dict[str, float]) -> tuple[float | None, float | None, int]:
    """(Pearson's r, its p-value, n) between model and child AoA over the n words that have both
    (scipy.stats.pearsonr); r and p are None when n < 3 or either side is constant."""
    common = [w for w in model_aoa if w in child]
    x = np.array([model_aoa[w] for w in common], dtype=float)
    y = np.array([child[w] for w in common], dtype=float)
    if len(common) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None, None, len(common)
    result = pearsonr(x, y)
    return float(result.statistic), float(result.pvalue), len(common)


def model_aoas(records: Sequence[dict],
               chance: dict[str, float] | None = None) -> tuple[dict[str, SigmoidFit], list[str]]:
    """Fit every word of surprisal.json records: its surprisal averaged over its contexts at each
    checkpoint (the record's word_count, else the words its step name says), against words seen.
    `chance`: word -> chance surprisal (the official AoA threshold); without it, the midpoint.
    Returns the fits, and the words whose fit failed (no AoA) in record order."""
    by_word: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        words = record.get("word_count")
        words = parse_word_mark(str(record["step"])) if words is None else float(words)
        surprisal = record.get("surprisal")
        points = by_word[record["target_word"]]  # listed even without a usable point (then its fit fails)
        if words is not None and surprisal is not None and math.isfinite(float(surprisal)):
            points[words].append(float(surprisal))
    fits, failed = {}, []
    for word, points in by_word.items():
        seen = sorted(points)
        fit = fit_sigmoid(seen, [float(np.mean(points[n])) for n in seen],
                          chance_surprisal=None if chance is None else chance.get(word))
        if fit is None:
            failed.append(word)
        else:
            fits[word] = fit
    return fits, failed


# --------------------------------------------------------------------------- surprisal.json


def surprisal_records(step: str, word_count: int, words: dict[str, list[str]],
                      surprisals: Sequence[float]) -> list[dict]:
    """The official records of one checkpoint, one per (word, context) in `words` order with
    `surprisals` in that order (NaN kept); `word_count`: in the file, the name's nominal mark."""
    pairs = [(word, k, context) for word, contexts in words.items() for k, context in enumerate(contexts)]
    if len(pairs) != len(surprisals):
        raise ValueError(f"{len(surprisals)} surprisals for {len(pairs)} (word, context) pairs")
    return [{"step": step, "word_count": int(word_count), "target_word": word, "context_id": k, "context": context,
             "surprisal": float(s)} for (word, k, context), s in zip(pairs, surprisals, strict=True)]


def write_surprisal_json(path: str | Path, records: list[dict], model_name: str,
                         total_steps: int | None = None, models: dict[str, dict | None] | None = None) -> dict:
    """Write `records` (all checkpoints) as the official writer does (json.dump, indent 2: keys in
    order, NaN as NaN, no final newline), atomically; returns what was written. `models`: each
    checkpoint's identity (training/identity.py), written beside it in model.json."""
    completed = len({r["step"] for r in records})
    data = {"metadata": {"model_name": model_name, "use_bos_only": False,
                         "total_steps": completed if total_steps is None else total_steps,
                         "completed_steps": completed},
            "results": records}
    write_text_atomic(path, json.dumps(data, indent=2))
    write_sidecar(Path(path).parent, {"checkpoints": models} if models is not None else None)
    return data


def _checked(checkpoints: list[tuple[str, int, Path]]) -> list[tuple[str, int, Path]]:
    """The checkpoints by words seen; UserError for fewer than 3, repeated names or counts."""
    if len(checkpoints) < MIN_CHECKPOINTS:
        raise UserError(f"AoA fits a sigmoid to each word's surprisal across checkpoints, which needs at least "
                        f"{MIN_CHECKPOINTS} checkpoints; got {len(checkpoints)}: train with --checkpoint_words "
                        "(e.g. babylm) to save more")
    names = [name for name, _, _ in checkpoints]
    if len(set(names)) != len(names):
        raise UserError(f"AoA checkpoints must have distinct revision names, got {', '.join(names)}")
    seen = [int(n) for _, n, _ in checkpoints]
    if min(seen) <= 0 or len(set(seen)) != len(seen):
        raise UserError(f"AoA checkpoints need distinct, positive words-seen counts, got {seen}")
    return sorted(checkpoints, key=lambda c: c[1])


def _score_checkpoints(checkpoints: list[tuple[str, int, Path]], words: dict[str, list[str]], device, log,
                       backend: str | None, tokens_per_batch: int,
                       progress: bool) -> tuple[list[dict], list[dict], dict[str, float], dict[str, dict | None]]:
    """(the file's records, those our fit reads: words actually seen, NaN where nothing is scored;
    each word's chance surprisal at the last checkpoint; each checkpoint's identity)."""
    pairs = [(context, word) for word, contexts in words.items() for context in contexts]
    written: list[dict] = []
    fitted: list[dict] = []
    chance: dict[str, float] = {}
    models: dict[str, dict | None] = {}
    for name, words_seen, folder in checkpoints:
        (model, tokenizer), identity = loaded(folder, lambda f=folder: load_model_and_tokenizer(
            f, option="an AoA checkpoint"))
        models[name] = recorded(identity)
        model.to(device).eval()
        surprisals, tokens, official = _score(model, tokenizer, pairs, backend, device, tokens_per_batch, True,
                                              f"AoA {name}" if progress else None)
        # chance: every scored token at 1 / (the model's output vocabulary), averaged over the contexts
        per_word: dict[str, list[int]] = defaultdict(list)
        for (_, word), n in zip(pairs, tokens, strict=True):
            per_word[word].append(n)
        chance = {w: float(np.mean(n)) * math.log(model.config.vocab_size) for w, n in per_word.items()}
        nominal = parse_word_mark(name)  # the official StepConfig's word_count: chck_3M -> 3000000
        written += surprisal_records(name, words_seen if nominal is None else nominal, words, official)
        fitted += surprisal_records(name, words_seen, words, surprisals)
        finite = [s for s in surprisals if math.isfinite(s)]
        mean = f"mean surprisal {np.mean(finite):.3f} nats over {len(finite)} contexts" if finite else "no context"
        unscorable = len(surprisals) - len(finite)
        log.info(f"AoA {name} ({words_seen:,} words): {mean}" + (f", {unscorable} unscorable" if unscorable else ""))
        del model
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return written, fitted, chance, models


def evaluate_aoa(checkpoints: list[tuple[str, int, Path]], data_path: str | Path, out_dir: str | Path,
                 device: torch.device | str = "cpu", logger: RunLogger | logging.Logger | None = None, *,
                 backend: str | None = None, child_path: str | Path | None = None,
                 min_contexts: int = MIN_CONTEXTS, model_name: str | None = None,
                 tokens_per_batch: int = TOKENS_PER_BATCH, progress: bool = False) -> dict:
    """The AoA task over a run's checkpoints, (revision name such as "chck_1M", words seen, model
    folder): every word's surprisal in every context of `data_path` (cdi_childes.json) at each,
    written to `out_dir/surprisal.json` as the official code does (`model_name`: by default the
    folder holding the checkpoints, the run); each word's curve fitted against the words seen,
    and the model's AoA correlated with the children's (cdi_human.csv beside `data_path`, or
    `child_path`; missing: None, with a warning). Returns {"pearson_r", "p_value", "words_fitted",
    "words_failed", "words_correlated", "checkpoints"} (r, p None under 3 words with both AoAs)."""
    log = logger if logger is not None else logging.getLogger(__name__)
    checkpoints = _checked(checkpoints)
    data_path = Path(data_path)
    words = read_aoa_words(data_path, min_contexts)
    per_step = sum(map(len, words.values()))
    if not per_step:
        raise UserError(f"{data_path} lists no context for any word: restore the official cdi_childes.json")
    child_path = Path(child_path) if child_path is not None else data_path.parent / CHILD_AOA_FILE
    child = child_aoas(read_child_table(child_path)) if child_path.is_file() else None
    log.info(f"AoA: {len(words)} words, {per_step} contexts, {len(checkpoints)} checkpoints "
             f"({checkpoints[0][0]} ... {checkpoints[-1][0]})")
    written, fitted, chance, models = _score_checkpoints(checkpoints, words, device, log, backend, tokens_per_batch,
                                                 progress)
    out_path = Path(out_dir) / SURPRISAL_FILE
    model_name = str(Path(checkpoints[-1][2]).parent) if model_name is None else model_name
    write_surprisal_json(out_path, written, model_name, total_steps=len(checkpoints), models=models)
    log.info(f"AoA surprisals -> {out_path}")
    note = aoa_collate_note([name for name, _, _ in checkpoints], per_step)
    if note:
        log.warning(f"AoA: the official collate step would not take {out_path} as a submission's: {note}")

    fits, failed = model_aoas(fitted, chance)
    if failed:
        shown = ", ".join(failed[:5]) + (" ..." if len(failed) > 5 else "")
        log.warning(f"AoA: no sigmoid fit (flat, rising or outside the checkpoints) for {len(failed)} of "
                    f"{len(words)} words: {shown}")
    r, p, n = (None, None, 0) if child is None else aoa_correlation({w: f.aoa for w, f in fits.items()}, child)
    if child is None:
        log.warning(f"AoA: no children's table {child_path}: no correlation computed "
                    "(restore the official evaluation data)")
    elif r is None:
        log.warning(f"AoA: only {n} words have both a model and a child AoA: no correlation")
    else:
        log.info(f"AoA: Pearson r = {r:.4f} (p = {p:.3g}) between model and child AoA over {n} words")
    return {"pearson_r": r, "p_value": p, "words_fitted": len(fits), "words_failed": len(failed),
            "words_correlated": n, "checkpoints": [name for name, _, _ in checkpoints]}
