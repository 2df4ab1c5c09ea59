"""`run.py evaluate_checkpoints` (`make evaluate_checkpoints STEP=<step>`): the official
fast zero-shot suite on every words-seen checkpoint of a run, then age of acquisition
across them.

A run trained with --checkpoint_words saved `chck_<mark>/` folders (train_results.json
says how many words each had seen). Each is scored on the fast sets (--eval_dir: the
official fast_eval/ folder, or evaluation_data/ with --fast implied) under the official
convention, the one the collate step reads, and filed as its revision:

    <run>/results/<run name>/chck_<mark>/zero_shot/<backend>/<task>/<data dir>/predictions.json
    <run>/results/<run name>/chck_<mark>/zero_shot_summary_<backend>.json
    <run>/results/<run name>/checkpoint_scores_<backend>.json   every revision's scores, by words seen

(each with the identity of the weights it scored: "model", and model.json in each task folder)

AoA (evaluation/aoa.py) runs across the checkpoints when its data is found beside the
fast sets and there are at least three checkpoints; otherwise the log says why it was
skipped. `make report` draws each task's score against words seen."""

from __future__ import annotations

import argparse
from pathlib import Path

from evaluation.layout import REVISIONS, default_results_root, revision_dir, submission_track
from evaluation.tasks import choose_eval_set, find_tasks
from evaluation.zero_shot import evaluate_folder
from training.hardware import log_choice
from training.identity import refuse_if_training
from training.run_folder import RunFolder
from utils import RunLogger, UserError, get_device, write_json_atomic

CHECKPOINT_SCORES = "checkpoint_scores_{backend}.json"


def run_evaluate_checkpoints(args: argparse.Namespace) -> dict:
    """The evaluate_checkpoints action: --model_dir is the run folder; returns the scores file's contents."""
    run_dir = Path(args.model_dir)
    refuse_if_training(run_dir, "evaluate_checkpoints")
    # (folder name, words seen, step) of every chck_* folder, by words seen
    checkpoints = [(m.name, m.words_seen, m.step) for m in RunFolder(run_dir).word_checkpoints()]
    if not checkpoints:
        raise UserError(f"'{run_dir}' has no chck_* folders: train it with --checkpoint_words babylm "
                        "(make ... EXTRA=\"--checkpoint_words babylm\")")
    # evaluation_data/ (full_eval/ + fast_eval/): its fast_eval/; any other folder: itself.
    official = any((Path(args.eval_dir) / name).is_dir() for name in ("full_eval", "fast_eval"))
    eval_dir = choose_eval_set(args.eval_dir, fast=official)
    found = find_tasks(eval_dir)  # a wrong --eval_dir fails before any model is loaded
    if not any(folder.name.endswith("_fast") for _, folder in found):
        raise UserError(f"'{eval_dir}' holds no fast set (blimp_fast/, ewok_fast/, ...): checkpoints are scored on "
                        "the official fast_eval/ sets; pass that folder or evaluation_data/")
    out_root = Path(args.results_dir or args.output_dir or default_results_root(run_dir / checkpoints[0][0]))
    logger = RunLogger(out_root)
    try:
        log_choice(logger, args, compiles=False)
        logger.info(f"fast zero-shot suite on {len(checkpoints)} checkpoints of {run_dir}: "
                    + ", ".join(name for name, _, _ in checkpoints))
        points = []
        for name, words, step in checkpoints:
            record = evaluate_folder(run_dir / name, eval_dir, out_root, args, ["official"], logger,
                                     tensorboard_step=words)
            points.append({"revision": name, "words": words, "step": step, "model": record["model"],
                           "scores": {k: v["score"] for k, v in record["results"]["official"].items()}})
        backend, model_name = record["backend"], record["model_name"]
        scores = {"run": str(run_dir), "eval_dir": str(eval_dir), "backend": backend, "convention": "official",
                  "points": points, "aoa": _age_of_acquisition(run_dir, checkpoints, eval_dir, out_root, model_name,
                                                               backend, args, logger)}
        path = out_root / model_name / CHECKPOINT_SCORES.format(backend=backend)
        write_json_atomic(path, scores)
        logger.info(f"-> {path}")
        return scores
    finally:
        logger.close()


def _age_of_acquisition(run_dir: Path, checkpoints: list[tuple[str, int, int]], eval_dir: Path, out_root: Path,
                        model_name: str, backend: str, args: argparse.Namespace, logger: RunLogger) -> dict | None:
    """AoA across the checkpoints when its data is there and there are enough of them; None (logged) otherwise."""
    from evaluation import aoa

    given = Path(args.eval_dir)  # evaluation_data/ (AoA is in its full_eval/), or a sets folder inside it
    data = aoa.find_aoa_data(given) or aoa.find_aoa_data(given.parent)
    if data is None:
        logger.info(f"AoA skipped: no AoA data (full_eval/aoa/ or full_eval/cdi_childes/cdi_childes.json) in or "
                    f"beside {given}")
        return None
    # The track's checkpoints when the run has enough of them: the collate step refuses AoA records of any
    # other revision. Otherwise every checkpoint (a study of the run, not a submission's file).
    track = submission_track(run_dir, args.track)
    kept = [c for c in checkpoints if c[0] in REVISIONS[track]]
    if len(kept) >= 3 and len(kept) < len(checkpoints):
        logger.info(f"AoA leaves out {', '.join(c[0] for c in checkpoints if c not in kept)}: not {track} "
                    "checkpoints")
        checkpoints = kept
    elif len(kept) < 3 <= len(checkpoints):
        logger.info(f"AoA over all {len(checkpoints)} checkpoints: fewer than 3 are {track} checkpoints, so "
                    "its surprisal.json will not pass a submission's check")
    if len(checkpoints) < 3:
        logger.info(f"AoA skipped: a sigmoid over words seen needs at least 3 checkpoints, the run has "
                    f"{len(checkpoints)}")
        return None
    out = revision_dir(out_root, model_name, "main") / "zero_shot" / backend / "AoA_word"
    # surprisal.json's metadata names the model as given, the run folder (the official: --model_name)
    return aoa.evaluate_aoa([(name, words, run_dir / name) for name, words, _ in checkpoints], data, out,
                            get_device(args.device), logger, backend=backend, model_name=str(run_dir))
