"""Zero-shot grammatical minimal pairs (BLiMP format) for causal and masked LMs: the blimp
action and the test action's BLiMP, a view of the zero-shot scorer (evaluation/scoring.py)
under its strict convention, each sentence scored whole, read as paradigms.

A paradigm is one jsonl file of pairs {sentence_good, sentence_bad, field?,
linguistics_term?, UID?}. A pair is correct only if score(good) > score(bad)
strictly: a tie is wrong, so a model that gives every sentence the same score
gets 0%.

Scores (always float32, whatever precision the model was trained in):
- causal LM: sum of log p(token) over all tokens of the sentence, conditioned on
  a BOS token (EOS if the tokenizer has none), so the first word is scored too.
  This matches how the pipeline trains (every line follows an EOS) and a
  loglikelihood request with an empty context in lm-eval (HFLM); lm-eval 0.4's
  blimp task configs also prepend a space to the sentence (target_delimiter),
  which `--blimp_prefix_space` reproduces.
- masked LM: pseudo-log-likelihood (PLL): each token is masked in turn and its
  log-probability summed. Default variant `within_word_l2r`: when a token is
  masked, the later sub-tokens of the same word are masked too (Kauf & Ivanova,
  2023). The original `token` variant lets a multi-token word predict its own
  pieces from each other, which inflates the scores of rare, long words; the
  within-word variant removes that leak and tracks human judgements better, so
  it is the default. Special tokens (<s>, </s>) are never scored.
- hybrid GPT-BERT model (gpt_bert): causal log-likelihood as above by default
  (its causal mode); `--hybrid_scoring masked` gives the masked next-token PLL:
  token j masked in turn (with the same variants), bidirectional attention, and
  its log-probability read at position j-1, where the model predicts it.

Backends of the zero-shot scorer: causal LMs and gpt_bert's causal mode -> `causal`,
masked LMs -> `mlm`, gpt_bert with `--hybrid_scoring masked` -> `mntp` (blimp_backend).
Speed is the scorer's: identical sentences run once, a causal model reads a pair's shared
start once (prefix trees), batches are sorted by length and sized in tokens (at most
--blimp_batch_size sentences of the longest length a pass).

Report: accuracy per paradigm; overall = unweighted mean over paradigms; per
field and per linguistics term = unweighted mean over their paradigms."""

from __future__ import annotations

import argparse
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import PreTrainedModel

from custom_models import is_causal, is_hybrid, load_model_and_tokenizer
from evaluation.scoring import default_backend, make_plans, pad_id_of, score_plans
from evaluation.zero_shot import choose
from training.hardware import autocast, log_choice
from training.identity import WeightsIdentity, loaded, recorded
from utils import (
    BLIMP_RESULTS,
    BLIMP_TABLE,
    RunLogger,
    UserError,
    get_device,
    jsonl_objects,
    write_json_atomic,
    write_text_atomic,
)


@dataclass
class Paradigm:
    """One BLiMP paradigm: its name, field, linguistics term and pairs."""

    name: str
    field: str
    term: str
    pairs: list[tuple[str, str]] = field(default_factory=list)
    source: Path | None = None  # the jsonl file

    def duplicates(self) -> int:
        """Pairs that repeat an earlier pair of the paradigm (each line is still scored and
        counted as an item)."""
        return len(self.pairs) - len(set(self.pairs))


def normalize_field(value: str | None) -> str:
    """`syntax/semantics`, `Syntax-Semantics` and `syntax_semantics` are one field."""
    if not value:
        return "unknown"
    return value.strip().lower().replace("/", "_").replace("-", "_").replace(" ", "_")


def load_paradigms(folder: str | Path) -> list[Paradigm]:
    """Read every `*.jsonl` in `folder` as one paradigm, sorted by name."""
    folder = Path(folder)
    files = sorted(folder.glob("*.jsonl")) if folder.is_dir() else []
    if not files:
        raise UserError(f"no BLiMP jsonl files in '{folder}': pass --blimp_dir (BLIMP_DIR=) a folder "
                        "with one <paradigm>.jsonl per paradigm")
    paradigms = []
    for path in files:
        paradigm = None
        for where, row in jsonl_objects(path):
            if not all(isinstance(row.get(k), str) for k in ("sentence_good", "sentence_bad")):
                raise UserError(f"{where} has no sentence_good/sentence_bad strings: not a BLiMP-format "
                                "file; fix that line or move the file out of --blimp_dir")
            if paradigm is None:
                paradigm = Paradigm(row.get("UID") or path.stem, normalize_field(row.get("field")),
                                    row.get("linguistics_term") or "unknown")
            paradigm.pairs.append((row["sentence_good"], row["sentence_bad"]))
        if paradigm is None:
            raise UserError(f"{path} holds no minimal pairs (it is empty or blank): remove it from --blimp_dir "
                            "or restore its lines")
        paradigm.source = path
        paradigms.append(paradigm)
    return sorted(paradigms, key=lambda p: p.name)


def warn_duplicates(paradigms: list[Paradigm], logger: RunLogger) -> None:
    """One warning per paradigm whose file repeats pairs: they count again in its accuracy."""
    for p in paradigms:
        if p.duplicates():
            logger.warning(f"{p.source}: {p.duplicates()} of its {len(p.pairs)} pairs repeat an earlier pair; "
                           "each is scored and counted (every line is an item): deduplicate the file if "
                           "that is not intended")


# --------------------------------------------------------------------------- scoring: the zero-shot scorer


def blimp_backend(model_type: str, hybrid_scoring: str = "causal") -> str:
    """The zero-shot backend (evaluation/scoring.py) that scores a model of `model_type`:
    causal LMs and gpt_bert in its causal mode -> causal; masked LMs -> mlm; gpt_bert with
    hybrid_scoring 'masked' -> mntp (masked next-token)."""
    if is_hybrid(model_type):
        return "mntp" if hybrid_scoring == "masked" else "causal"
    return default_backend(model_type)


def uses_pll(model_type: str, hybrid_scoring: str = "causal") -> bool:
    """Whether BLiMP scores a model of `model_type` by pseudo-log-likelihood (masked LMs,
    and gpt_bert with hybrid_scoring 'masked') rather than causal log-likelihood."""
    return blimp_backend(model_type, hybrid_scoring) != "causal"


def score_sentences(model: PreTrainedModel, tokenizer, sentences: list[str], batch_size: int = 64,
                    device: torch.device | str = "cpu", variant: str = "within_word_l2r",
                    progress: bool = False, hybrid_scoring: str = "causal") -> list[float]:
    """Each sentence's score, in float32, by the model's kind (causal LL or masked PLL; gpt_bert:
    `hybrid_scoring`): the zero-shot scorer's strict convention with the whole sentence as the
    completion. Identical sentences are scored once."""
    backend = blimp_backend(model.config.model_type, hybrid_scoring)
    return _strict_scores(model, tokenizer, sentences, backend, batch_size, device, variant, progress)


def causal_scores(model: PreTrainedModel, tokenizer, sentences: list[str], batch_size: int = 64,
                  device: torch.device | str = "cpu", progress: bool = False) -> list[float]:
    """Sum of log p(token | BOS, previous tokens) for each sentence, in float32 (gpt_bert: its
    causal mode)."""
    return _strict_scores(model, tokenizer, sentences, "causal", batch_size, device, progress=progress)


def pll_scores(model: PreTrainedModel, tokenizer, sentences: list[str], batch_size: int = 64,
               device: torch.device | str = "cpu", variant: str = "within_word_l2r",
               progress: bool = False) -> list[float]:
    """Pseudo-log-likelihood of each sentence, in float32: a masked LM's, or gpt_bert's masked
    next-token one (token j masked, read at position j-1)."""
    backend = "mntp" if is_hybrid(model.config.model_type) else "mlm"
    return _strict_scores(model, tokenizer, sentences, backend, batch_size, device, variant, progress)


def _strict_scores(model: PreTrainedModel, tokenizer, sentences: list[str], backend: str, batch_size: int,
                   device: torch.device | str, variant: str = "within_word_l2r", progress: bool = False) -> list[float]:
    """make_plans + score_plans under the strict convention, each sentence its own completion. A
    pass holds at most `batch_size` sequences of the longest sentence's length (--blimp_batch_size)."""
    if backend != "causal" and tokenizer.mask_token_id is None:
        raise UserError("masked-LM scoring needs a tokenizer with a mask token")
    if not sentences:
        return []
    plans = make_plans(tokenizer, sentences, sentences, backend, "strict", variant)
    longest = max(len(plan.ids) for plan in plans)
    return score_plans(model, plans, backend, pad_id_of(tokenizer, backend), tokenizer.mask_token_id,
                       tokens_per_batch=batch_size * longest, device=device,
                       desc=f"BLiMP ({backend})" if progress else None)


def masked_copies(tokenizer, sentence: str,
                  variant: str = "within_word_l2r") -> tuple[list[int], list[tuple[list[int], int]]]:
    """The sentence's ids and, for each scored position, (masked ids, position): the copies the
    strict convention scores. `token`: only that position is masked. `within_word_l2r`: the
    later sub-tokens of the same word are masked as well. Special tokens are never scored."""
    [plan] = make_plans(tokenizer, [sentence], [sentence], "mlm", "strict", variant)
    copies = [(list(seq), read[1]) for seq, read in zip(plan.inputs(tokenizer.mask_token_id), plan.reads, strict=True)]
    return list(plan.ids), copies


# --------------------------------------------------------------------------- evaluation and report


def pair_accuracy(good: list[float], bad: list[float]) -> float:
    """Share of pairs with good strictly above bad (the strict convention: ties are wrong)."""
    return sum(choose([g, b], "strict")[1] for g, b in zip(good, bad, strict=True)) / len(good)


def summarize(paradigms: list[Paradigm], accuracies: dict[str, float]) -> dict:
    """Overall (unweighted mean over paradigms), per field, per term, per paradigm."""
    by_field, by_term = defaultdict(list), defaultdict(list)
    for p in paradigms:
        by_field[p.field].append(accuracies[p.name])
        by_term[p.term].append(accuracies[p.name])
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    return {
        "overall": mean(list(accuracies.values())),
        "fields": {k: mean(v) for k, v in sorted(by_field.items())},
        "terms": {k: mean(v) for k, v in sorted(by_term.items())},
        "paradigms": dict(sorted(accuracies.items())),
        "pairs": {p.name: len(p.pairs) for p in paradigms},
        "field_of": {p.name: p.field for p in paradigms},
        "term_of": {p.name: p.term for p in paradigms},
    }


def evaluate_blimp(model: PreTrainedModel, tokenizer, paradigms: list[Paradigm], batch_size: int = 64,
                   device: torch.device | str = "cpu", variant: str = "within_word_l2r",
                   progress: bool = False, prefix_space: bool = False, hybrid_scoring: str = "causal",
                   precision: str = "fp32") -> dict:
    """Score every pair of every paradigm in one batched pass, in `precision` (autocast);
    return the summary.

    `prefix_space` scores " " + sentence, as lm-eval 0.4's blimp tasks do (their
    target delimiter); by default the sentence is scored as written, the way every
    training line starts after an EOS."""
    lead = " " if prefix_space else ""
    sentences = [lead + s for p in paradigms for pair in p.pairs for s in pair]
    with autocast(torch.device(device), precision):
        scores = iter(score_sentences(model, tokenizer, sentences, batch_size, device, variant, progress,
                                      hybrid_scoring))
    accuracies = {}
    for p in paradigms:
        values = [(next(scores), next(scores)) for _ in p.pairs]
        accuracies[p.name] = pair_accuracy([g for g, _ in values], [b for _, b in values])
    return summarize(paradigms, accuracies)


def markdown_table(summary: dict) -> str:
    """The summary as markdown: overall, fields, terms, paradigms (accuracy in %)."""
    lines = ["| group | name | pairs | accuracy |", "|---|---|---:|---:|",
             f"| overall | mean of {len(summary['paradigms'])} paradigms | {sum(summary['pairs'].values())} "
             f"| {100 * summary['overall']:.1f} |"]
    for name, acc in summary["fields"].items():
        n = sum(c for p, c in summary["pairs"].items() if summary["field_of"][p] == name)
        lines.append(f"| field | {name} | {n} | {100 * acc:.1f} |")
    for name, acc in summary["terms"].items():
        n = sum(c for p, c in summary["pairs"].items() if summary["term_of"][p] == name)
        lines.append(f"| term | {name} | {n} | {100 * acc:.1f} |")
    for name, acc in summary["paradigms"].items():
        lines.append(f"| paradigm | {name} | {summary['pairs'][name]} | {100 * acc:.1f} |")
    return "\n".join(lines) + "\n"


def run_blimp(args: argparse.Namespace, logger: RunLogger | None = None, *, model: PreTrainedModel | None = None,
              tokenizer=None, paradigms: list[Paradigm] | None = None, identity: WeightsIdentity | None = None) -> dict:
    """Score `--model_dir` on `--blimp_dir`; write blimp_results.json/.md and
    TensorBoard scalars (blimp/overall, blimp/field/*, blimp/term/*, blimp/paradigm/*).

    The test action passes the model, tokenizer and pairs it already loaded, and the identity of its
    weights; blimp_results.json records it under "model"."""
    paradigms = paradigms if paradigms is not None else load_paradigms(args.blimp_dir)
    model_dir = Path(args.model_dir)
    if model is None:
        (model, tokenizer), identity = loaded(model_dir, lambda: load_model_and_tokenizer(model_dir,
                                                                                          args.attn_implementation))
    device = get_device(args.device)
    model.to(device)  # float32 weights; --precision bf16/fp16 autocasts the forward passes
    own_logger = logger is None
    logger = logger or RunLogger(args.output_dir)
    try:
        if own_logger:  # the test action has logged it
            log_choice(logger, args, compiles=False)
        warn_duplicates(paradigms, logger)
        model_type = model.config.model_type
        summary = evaluate_blimp(model, tokenizer, paradigms, args.blimp_batch_size, device,
                                 args.pll_variant, progress=True, prefix_space=args.blimp_prefix_space,
                                 hybrid_scoring=args.hybrid_scoring, precision=args.precision)
        if is_hybrid(model_type) and args.hybrid_scoring == "masked":
            method = f"masked next-token pseudo-log-likelihood ({args.pll_variant})"
        elif is_causal(model_type):
            method = "causal log-likelihood, BOS-conditioned"
        else:
            method = f"masked-LM pseudo-log-likelihood ({args.pll_variant})"
        summary.update(model_dir=str(model_dir), model=recorded(identity), blimp_dir=str(args.blimp_dir), method=method,
                       prefix_space=args.blimp_prefix_space, precision=args.precision,
                       hybrid_scoring=args.hybrid_scoring if is_hybrid(model_type) else None)
        out = Path(args.output_dir)
        write_json_atomic(out / BLIMP_RESULTS, summary)
        write_text_atomic(out / BLIMP_TABLE, markdown_table(summary))
        scalars = {"blimp/overall": summary["overall"]}
        scalars.update({f"blimp/field/{k}": v for k, v in summary["fields"].items()})
        scalars.update({f"blimp/term/{k}": v for k, v in summary["terms"].items()})
        scalars.update({f"blimp/paradigm/{k}": v for k, v in summary["paradigms"].items()})
        logger.metrics(0, scalars)
        logger.info(f"BLiMP overall {100 * summary['overall']:.1f}% over {len(paradigms)} paradigms -> "
                    f"{out / 'blimp_results.json'}")
        return summary
    finally:
        if own_logger:
            logger.close()
