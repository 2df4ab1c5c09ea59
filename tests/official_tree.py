"""Evaluation data at the official item counts, for tests of the submission and of the official
judge: every set of evaluation-pipeline-2025's full_eval/ and fast_eval/ layouts, with the
subtask names and sizes its collate step checks (evaluation/layout.py), filled by cycling the
shipped sample items (data/sample_eval/fast_eval) so that a model's scores vary.

Also model folders written as a training run writes them (`save_run_models`: RunFolder.save_model,
so each has its weights_identity.json), for trees whose results must name the model they scored;
and where the official pipeline is (evaluation/official.py's rule), and a skip marker for the
tests that run it: they skip cleanly when it or a package it imports is absent."""

from __future__ import annotations

import csv
import importlib.util
import itertools
import json
from pathlib import Path

import pytest
from conftest import ROOT

from evaluation.layout import FAST_SIZES, FULL_SIZES
from evaluation.official import official_pipeline_dir
from evaluation.tasks import COMPS_SUBTASKS
from training.identity import WeightsIdentity
from training.run_folder import RunFolder

SAMPLE_FAST = ROOT / "data" / "sample_eval" / "fast_eval"
OFFICIAL = official_pipeline_dir()


def tiny_model(tokenizer, seed: int = 0):
    """A one-layer GPT-2 of 8 dimensions for `tokenizer` (its weights differ by `seed`)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=8, n_layer=1, n_head=1, n_positions=16,
                                      bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)).eval()


def save_run_models(run: Path, tokenizer, names: list[str], seed: int = 0) -> dict[str, WeightsIdentity]:
    """Save a tiny model as each of the run's folders `names` (best_model, chck_*) through the run
    folder's own writer, at step i + 1; returns each folder's identity as a reader sees it."""
    folder = RunFolder(run)
    model = tiny_model(tokenizer, seed)
    for i, name in enumerate(names):
        folder.save_model(name, model, tokenizer, {"model_type": "gpt2"}, step=i + 1, words_seen=1000 * (i + 1))
    return {name: folder.identity(name) for name in names}


def official_missing(*modules: str) -> str | None:
    """Why a test of the official code cannot run here (None when it can)."""
    if not (OFFICIAL / "evaluation_pipeline").is_dir():
        return f"no official pipeline at {OFFICIAL} (set OFFICIAL_PIPELINE)"
    absent = [m for m in modules if importlib.util.find_spec(m) is None]
    return f"the official code imports {', '.join(absent)}, not installed" if absent else None


def needs_official(*modules: str):
    """Skip unless the official pipeline and `modules` (besides its collate step's) are importable."""
    reason = official_missing("numpy", "scipy", "pandas", "statsmodels", *modules)
    return pytest.mark.skipif(reason is not None, reason=reason or "")


def _sample(folder: str) -> list[dict]:
    return [json.loads(line) for path in sorted((SAMPLE_FAST / folder).glob("*.jsonl"))
            for line in path.read_text().splitlines() if line.strip()]


def _write(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def _cycled(rows: list[dict], n: int, **fields) -> list[dict]:
    return [{**row, **fields} for row in itertools.islice(itertools.cycle(rows), n)]


def _sizes(sizes: int | dict[str, int], names: list[str]) -> dict[str, int]:
    return sizes if isinstance(sizes, dict) else dict.fromkeys(names, sizes)


def write_reading(path: Path, rows: int) -> None:
    """reading_data.csv with `rows` rows: the sample's rows cycled (their measures kept)."""
    with (SAMPLE_FAST / "reading" / "reading_data.csv").open() as f:
        sample = list(csv.DictReader(f))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(sample[0]))
        writer.writeheader()
        for i, row in enumerate(itertools.islice(itertools.cycle(sample), rows)):
            writer.writerow({**row, "": i})


def _entity_tracking(folder: Path, sizes: dict[str, int]) -> None:
    """One file per split, its items in numops order (the official scorer walks them that way)."""
    for split in dict.fromkeys(key.rsplit("_", 2)[0] for key in sizes):
        rows = []
        for ops in range(6):
            n = sizes.get(f"{split}_{ops}_ops", 0)
            rows += [{"numops": ops, "input_prefix": f"Box {i % 7} contains ",
                      "options": ["the hat.", "the cup.", "nothing.", "the map.", "the key."][i % 5:] +
                      ["the hat.", "the cup.", "nothing.", "the map.", "the key."][:i % 5]} for i in range(n)]
        _write(folder / f"{split}.jsonl", rows)


def write_eval_set(root: Path, full: bool) -> Path:
    """<root>/full_eval or <root>/fast_eval at the official counts; returns that folder."""
    out = root / ("full_eval" if full else "fast_eval")
    sizes = FULL_SIZES if full else FAST_SIZES
    blimp = _sizes(sizes["blimp"], list(FULL_SIZES["blimp"]))
    for uid, n in blimp.items():
        _write(out / ("blimp_filtered" if full else "blimp_fast") / f"{uid}.jsonl",
               _cycled([r for r in _sample("blimp_fast")], n, UID=uid))
    supplement = [{k: r[k] for k in ("sentence_good", "sentence_bad")} for r in _sample("blimp_fast")]
    for name, n in _sizes(sizes["blimp_supplement"], list(FULL_SIZES["blimp_supplement"])).items():
        _write(out / ("supplement_filtered" if full else "supplement_fast") / f"{name}.jsonl", _cycled(supplement, n))
    for domain, n in _sizes(sizes["ewok"], list(FULL_SIZES["ewok"])).items():
        _write(out / ("ewok_filtered" if full else "ewok_fast") / f"{domain}.jsonl",
               _cycled(_sample("ewok_fast"), n, Domain=domain))
    _entity_tracking(out / ("entity_tracking" if full else "entity_tracking_fast"),
                     sizes["entity_tracking"])
    for folder, key in (("wug_adj_nominalization", "wug_adj"), ("wug_past_tense", "wug_past")):
        _write(out / folder / f"{folder}.jsonl", _cycled(_sample(folder), sizes[key]))
    if full:
        comps = _sample("comps")
        for stem, subtask in COMPS_SUBTASKS.items():
            _write(out / "comps" / f"{stem}.jsonl", _cycled(comps, FULL_SIZES["comps"][subtask]))
    write_reading(out / "reading" / "reading_data.csv", sizes["reading"])
    return out
