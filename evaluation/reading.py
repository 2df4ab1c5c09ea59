"""The reading task of the BabyLM zero-shot suite: how much a model's surprisal adds to
a baseline regression of human reading measures (evaluation-pipeline-2025's
`reading/run.py`, reproduced).

For each row of reading_data.csv the surprisal -log p(word | item) is computed the
official way: the context `item` goes through the tokenizer with its special tokens,
the word is tokenized on its own (no leading space) and, when it has several tokens,
each later piece is decoded, re-tokenized and predicted after the context extended by
the pieces before it. Causal models read the last position; masked models get three
mask tokens appended and are read at the first (`mlm`) or at the position before it
(`mntp`). The same is done for `prev_item`/`prev_word` (spillover).

Scores: for each measure, an ordinary least-squares fit with the baseline predictors
(word frequency, length, context length and their pairwise interactions; plus the
previous word's length and surprisal for the spillover fits) with and without the
surprisal; the score is 100 x (R2_full - R2_base) / (1 - R2_base). Eye tracking = mean
over the four eye-tracking measures (no spillover), self-paced reading = the spillover
fit of self_paced_reading_time. The fits use numpy's least squares and scipy's t
distribution (the official code calls statsmodels, whose OLS computes the same)."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats
from tqdm import tqdm
from transformers import PreTrainedModel

from custom_models import body_and_head
from evaluation.scoring import hidden_states, pad_batch, pad_id_of
from utils import UserError, write_json_atomic, write_text_atomic

MEASURES = ("RTfirstfix", "RTfirstpass", "RTgopast", "RTrightbound", "self_paced_reading_time",
            "ELAN", "LAN", "N400", "P600", "EPNP", "PNP")
BASELINE = ("Subtlex_log10", "length", "context_length")
SPILLOVER = BASELINE + ("prev_length", "prev_pred")
MASKS_APPENDED = 3  # the official --number_of_mask_tokens_to_append


def read_csv(path: str | Path) -> pd.DataFrame:
    """reading_data.csv as the official code reads it (pandas' missing-value rules; an empty
    item becomes the string "None"); UserError naming a missing column."""
    try:
        df = pd.read_csv(path, dtype={"item": str})
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise UserError(f"cannot read the reading data '{path}' ({e}): restore the official reading_data.csv") from None
    needed = {"item", "word", "prev_item", "prev_word", *BASELINE, "prev_length", *MEASURES}
    missing = sorted(needed - set(df.columns))
    if missing:
        raise UserError(f"{path} has no column(s) {', '.join(missing)}: restore the official reading_data.csv")
    df["item"] = df["item"].fillna("None")
    return df


def _queries(tokenizer, context: str, word: str) -> list[tuple[str, int]]:
    """(context text, target id) for each piece of `word`, as the official get_p2 builds them."""
    target = tokenizer(word, add_special_tokens=False)["input_ids"]
    if not target:
        raise UserError(f"the reading word {word!r} tokenizes to nothing")
    queries = [(context, target[0])]
    context = context + tokenizer.decode(target[0])
    for token in target[1:]:
        piece = tokenizer.decode(token)
        queries.append((context, tokenizer(piece, add_special_tokens=False)["input_ids"][0]))
        context = context + piece
    return queries


def _read_position(ids: list[int], backend: str, mask_id: int | None) -> int:
    """Where the official code reads the prediction: the last token (causal), the first
    appended mask (mlm) or the token before it (mntp)."""
    if backend == "causal":
        return len(ids) - 1
    first_mask = len(ids) - MASKS_APPENDED - (0 if ids[-1] == mask_id else 1)
    return first_mask - (1 if backend == "mntp" else 0)


@torch.no_grad()
def surprisals(model: PreTrainedModel, tokenizer, pairs: list[tuple[str, str]], backend: str,
               device: torch.device | str = "cpu", batch_size: int = 64, progress: bool = False) -> list[float]:
    """-log p(word | context) for each (context, word), in float32 as the official code."""
    mask_text = "" if backend == "causal" else tokenizer.mask_token * MASKS_APPENDED
    per_pair = [_queries(tokenizer, context, word) for context, word in pairs]
    texts = list(dict.fromkeys(context + mask_text for qs in per_pair for context, _ in qs))
    encoded = tokenizer(texts)["input_ids"]
    order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
    probs: dict[str, torch.Tensor] = {}
    _, head = body_and_head(model)
    pad_id = pad_id_of(tokenizer, backend)
    model.eval()
    for start in tqdm(range(0, len(order), batch_size), desc=f"reading ({backend})", disable=not progress,
                      leave=False):
        idx = order[start: start + batch_size]
        ids, mask = pad_batch([encoded[i] for i in idx], pad_id)
        hidden = hidden_states(model, ids.to(device), mask.to(device), backend == "mntp")
        positions = torch.tensor([_read_position(encoded[i], backend, tokenizer.mask_token_id) for i in idx])
        logits = head(hidden[torch.arange(len(idx)), positions.to(hidden.device)]).float()
        for row, i in enumerate(idx):
            probs[texts[i]] = torch.softmax(logits[row], dim=-1).cpu()
    out = []
    for qs in per_pair:
        p = [probs[context + mask_text][target].item() for context, target in qs]
        out.append(-math.log(float(np.prod(p))))
    return out


def _ols(df: pd.DataFrame, measure: str, predictors: tuple[str, ...], with_pred: bool) -> dict:
    """Least squares of `measure` on the predictors, their pairwise interactions and (with_pred)
    the surprisal `pred`, on the rows where all of them are present; R2, AIC and pred's t and p."""
    columns = [measure, *predictors] + (["pred"] if with_pred else [])
    data = df[columns].dropna()
    x = [np.ones(len(data))] + [data[p].to_numpy(float) for p in predictors]
    x += [data[a].to_numpy(float) * data[b].to_numpy(float) for a, b in itertools.combinations(predictors, 2)]
    if with_pred:
        x.append(data["pred"].to_numpy(float))
    design, y = np.column_stack(x), data[measure].to_numpy(float)
    beta, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ beta
    n, k = design.shape
    ssr = float(resid @ resid)
    r2 = 1.0 - ssr / float(((y - y.mean()) ** 2).sum())
    aic = n * (math.log(2 * math.pi) + math.log(ssr / n) + 1) + 2 * k
    fit = {"R2": r2, "AIC": aic}
    if with_pred:
        cov = ssr / (n - k) * np.linalg.pinv(design.T @ design)
        with np.errstate(divide="ignore", invalid="ignore"):  # a collinear surprisal has no t: NaN, said once
            t = float(np.float64(beta[-1]) / np.sqrt(cov[-1, -1]))
        fit.update(coefficient=float(beta[-1]), t=t, p=float(2 * stats.t.sf(abs(t), n - k)))
    return fit


def _fits(df: pd.DataFrame, predictors: tuple[str, ...]) -> list[dict]:
    rows = []
    for measure in MEASURES:
        base, full = _ols(df, measure, predictors, False), _ols(df, measure, predictors, True)
        rows.append({"Predicted variable": measure, "Coefficient": full["coefficient"],
                     "Number of standard deviations": full["t"], "P-value": full["p"], "R2": full["R2"],
                     "Change in R2 from baseline": full["R2"] - base["R2"], "AIC": full["AIC"],
                     "Change in AIC from baseline": full["AIC"] - base["AIC"],
                     "score": 100 * (full["R2"] - base["R2"]) / (1 - base["R2"])})
    return rows


def evaluate_reading(model: PreTrainedModel, tokenizer, csv_path: str | Path, backend: str,
                     device: torch.device | str = "cpu", progress: object = None) -> dict:
    """Surprisals for every row, the fits, and the two scores."""
    df = read_csv(csv_path)
    if backend != "causal" and tokenizer.mask_token is None:
        raise UserError(f"the {backend} backend appends mask tokens but the tokenizer has none: pass --backend causal")
    df["pred"] = surprisals(model, tokenizer, list(zip(df["item"], df["word"], strict=True)), backend, device,
                            progress=bool(progress))
    has_prev = [isinstance(v, str) for v in df["prev_item"]]
    prev_pairs = [(c, w) for c, w, h in zip(df["prev_item"], df["prev_word"], has_prev, strict=True) if h]
    prev = iter(surprisals(model, tokenizer, prev_pairs, backend, device, progress=bool(progress)))
    df["prev_pred"] = [next(prev) if h else float("nan") for h in has_prev]
    return {"rows": len(df), "frame": df, **fit_scores(df),
            "correlations": df[["pred", *MEASURES]].corr()["pred"].drop("pred").to_dict()}


def fit_scores(df: pd.DataFrame) -> dict:
    """The fits and the two scores of a reading frame whose `pred` and `prev_pred` columns hold
    the surprisals (also how the collate step scores a predictions.json: evaluation/fast_scores.py)."""
    plain, spill = _fits(df, BASELINE), _fits(df, SPILLOVER)
    eye = [r["score"] for r in plain if r["Predicted variable"].startswith("RT")]
    spr = next(r["score"] for r in spill if r["Predicted variable"] == "self_paced_reading_time")
    return {"fits": plain, "spillover_fits": spill, "eye_tracking": sum(eye) / len(eye), "self_paced_reading": spr}


def write_outputs(out_dir: str | Path, result: dict) -> None:
    """The official reading outputs: report.txt, predictions.json, prediction.jsonl,
    predictive_power(_spillover).jsonl and correlations.txt."""
    out, df = Path(out_dir), result["frame"]
    preds = [{"id": int(i), "pred": float(p), "prev_pred": float(q)}
             for i, p, q in zip(df.index, df["pred"], df["prev_pred"], strict=True)]
    write_json_atomic(out / "predictions.json", {"reading": {"predictions": preds}})
    write_text_atomic(out / "prediction.jsonl", "".join(
        json.dumps({"Index": int(i), "Sentence": s, "Word": w, "Logprob": float(p), "Prev_Logprob": float(q)}) + "\n"
        for i, s, w, p, q in zip(df.index, df["item"], df["word"], df["pred"], df["prev_pred"], strict=True)))
    for name, fits in (("predictive_power.jsonl", result["fits"]),
                       ("predictive_power_spillover.jsonl", result["spillover_fits"])):
        write_text_atomic(out / name, "".join(json.dumps({k: v for k, v in f.items() if k != "score"}) + "\n"
                                              for f in fits))
    write_text_atomic(out / "correlations.txt", "".join(f"{k}\t{v:.4f}\n" for k, v in result["correlations"].items()))
    write_text_atomic(out / "report.txt", f"EYE TRACKING SCORE: {result['eye_tracking']:.2f}\n"
                                          f"SELF-PACED READING SCORE: {result['self_paced_reading']:.2f}\n")
