"""`run.py submission` (`make submission STEP=<step>`): the BabyLM submission file of a run.

What the official collate step (evaluation-pipeline-2025 `collate_preds.py --fast`)
writes, gathered from the run's results in the official layout (evaluation/layout.py):

    <run>/results/<run name>/all_full_preds_and_fast_scores_<backend>.json
    {"blimp", "blimp_supplement", "ewok", "entity_tracking", "wug_adj", "wug_past", "comps":
         the final model's full-set predictions.json, {subtask: {"predictions": [...]}},
     "reading": its reading predictions, "aoa": its AoA_word/surprisal.json,
     "glue": the seven fine-tuning tasks' predictions, {task: {"predictions": [{"id", "pred"}]}},
     "fast_eval_results": {task: [per-subtask scores of each checkpoint, chck_1M first]}}

Like the collate step, every set's item count is checked against the official one
(per subtask where the official step checks per subtask) before anything is written.
Every piece is checked against the model folder it came from (training/identity.py): main's
full predictions, reading and fine-tuning against best_model/, each checkpoint's fast
predictions and AoA records against its chck_<mark>/. A piece whose recorded identity (the
model.json beside it) differs from the folder's weights now, or that records none, is stale:
a problem naming it and the command that redoes it.

An incomplete submission is refused with one line naming the first thing missing
(how many more) unless `--partial`: then what there is goes to
`..._<backend>_partial.json`, with two keys of its own, `missing` (every problem) and
`fast_eval_revisions` (the revisions its fast lists hold), and is not for upload.
A fine-tuning task cross-fitted on its valid file (--finetune_cross_fit) is not the
official protocol, so it counts as missing too."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

from custom_models import saved_model_type
from evaluation.fast_scores import FAST_SETS, prediction_path, revision_fast_scores
from evaluation.layout import (
    AOA_WORDS,
    FAST_SIZES,
    FINETUNE_TASKS,
    FULL_SIZES,
    MAIN,
    REVISIONS,
    ZERO_SHOT_ENTRIES,
    default_results_root,
    finetune_dir,
    revision_dir,
    submission_path,
    submission_track,
    zero_shot_dir,
)
from evaluation.official import Verdict, official_collate
from evaluation.scoring import default_backend
from evaluation.zero_shot import summary_paths
from training.identity import WeightsIdentity, read_sidecar, staleness
from training.run_folder import RunFolder
from utils import BEST_MODEL_DIR, UserError, write_json_atomic

STALE_KINDS = ("stale", "unidentified", "untrusted")  # how `Sources.stale` opens its reasons
FAST_KEYS = tuple(FAST_SETS)  # the collate step's order: blimp, blimp_supplement, ewok, ..., reading


def count_problems(name: str, results: dict, expected: int | dict[str, int]) -> list[str]:
    """What is wrong with the item counts of a predictions.json, {subtask: {"predictions": [...]}}:
    each subtask must hold `expected` items (an int) or its own count (a dict, which also
    names every subtask that must be there)."""
    problems = []
    counts = {key.lower(): len(block.get("predictions", [])) for key, block in results.items()}
    if isinstance(expected, dict):
        problems += [f"{name} has no subtask {key}" for key in expected if key not in counts]
        problems += [f"{name}/{key} has {n} items, the official set {expected[key]}"
                     for key, n in counts.items() if key in expected and n != expected[key]]
        problems += [f"{name} has a subtask {key} the official set does not" for key in counts if key not in expected]
    else:
        problems += [f"{name}/{key} has {n} items, the official set {expected}"
                     for key, n in counts.items() if n != expected]
        if not counts:
            problems.append(f"{name} holds no predictions")
    return problems


def _load(path: Path, what: str, problems: list[str]) -> dict | None:
    if not path.is_file():
        problems.append(f"{what} is missing ({path})")
        return None
    return json.loads(path.read_text())


@dataclass
class Sources:
    """The run's model folders as they are now (each identity read once) and the commands that redo
    each kind of result: what every piece of a submission is checked against."""

    run_dir: Path
    identities: dict[str, WeightsIdentity | None] = field(default_factory=dict)

    def current(self, revision: str) -> WeightsIdentity | None:
        """The identity of the folder `revision` was scored from (best_model/ for main), now."""
        if revision not in self.identities:
            folder = RunFolder(self.run_dir).model_folder(revision)
            self.identities[revision] = RunFolder(self.run_dir).identity(folder.name)
        return self.identities[revision]

    def command(self, target: str, extra: str = "") -> str:
        """`make <target> STEP=<run>` (with SAVE_DIR when the run is not under save_dir/)."""
        save_dir = self.run_dir.parent
        where = f" SAVE_DIR={save_dir}" if save_dir.name != "save_dir" else ""
        return f"make {target} STEP={self.run_dir.name}{where}{extra}"

    def stale(self, recorded: dict | None, revision: str, what: str, target: str, extra: str = "") -> str | None:
        """A problem naming `what` and the command that redoes it when `recorded` (the identity the
        piece records) is not the folder's now, or the folder's weights no longer match their record."""
        folder = BEST_MODEL_DIR if revision == MAIN else revision
        current = self.current(revision)
        why = staleness(recorded, current, folder)
        return None if why is None else f"{what} is {why}; redo it with `{self.command(target, extra)}`"

    def check(self, folder: Path, revision: str, what: str, target: str, problems: list[str],
              extra: str = "") -> bool:
        """Whether the piece in `folder` (its model.json) came from the folder of `revision` as it is now;
        else the problem is added."""
        problem = self.stale(read_sidecar(folder), revision, what, target, extra)
        if problem:
            problems.append(problem)
        return problem is None


def full_predictions(root: Path, model_name: str, backend: str, track: str, problems: list[str],
                     sources: Sources) -> dict:
    """The final model's full predictions (zero-shot, reading, AoA, fine-tuning), checked (counts and
    the identity of the model each came from)."""
    zero_shot = zero_shot_dir(root, model_name, MAIN, "official", backend)
    full: dict = {}
    full_eval = " EVAL_SET=full_eval"
    for key, task, data_dir, _ in ZERO_SHOT_ENTRIES:
        folder = zero_shot / task / data_dir
        found = _load(folder / "predictions.json", f"{task}/{data_dir} (full set)", problems)
        if found is not None and sources.check(folder, MAIN, f"{task}/{data_dir} (full set)", "evaluate", problems,
                                               full_eval):
            problems += count_problems(f"{task}/{data_dir}", found, FULL_SIZES[key])
            full[key] = found
    reading = _load(zero_shot / "reading" / "predictions.json", "reading (full set)", problems)
    if reading is not None and sources.check(zero_shot / "reading", MAIN, "reading (full set)", "evaluate", problems,
                                             full_eval):
        problems += count_problems("reading", reading, FULL_SIZES["reading"])
        full["reading"] = reading
    aoa = _load(zero_shot / "AoA_word" / "surprisal.json", "AoA_word/surprisal.json", problems)
    if aoa is not None and not aoa_stale(zero_shot / "AoA_word", aoa, track, sources, problems):
        problems += aoa_problems(aoa, track)
        full["aoa"] = aoa
    full["glue"] = {}
    for task in FINETUNE_TASKS:
        folder = finetune_dir(root, model_name, MAIN, task)
        found = _load(folder / "predictions.json", f"finetune/{task}", problems)
        if found is None or not sources.check(folder, MAIN, f"finetune/{task}", "finetune", problems):
            continue
        results_txt = folder / "results.txt"
        if results_txt.is_file() and "CROSS-FIT" in results_txt.read_text():
            problems.append(f"finetune/{task} was cross-fitted on its valid file, not trained on the official "
                            "train file")
        problems += count_problems(f"finetune/{task}", found, FULL_SIZES[task])
        full["glue"] |= found
    return full


def aoa_stale(folder: Path, aoa: dict, track: str, sources: Sources, problems: list[str]) -> bool:
    """Whether any of the track's checkpoints has AoA records from weights other than its chck_*
    folder's now (or records none: model.json beside surprisal.json); the first is a problem (a step
    outside the track is `aoa_problems`' to name)."""
    models = (read_sidecar(folder) or {}).get("checkpoints") or {}
    steps = [step for step in dict.fromkeys(r.get("step") for r in aoa.get("results", [])) if step in REVISIONS[track]]
    stale = [p for step in steps if (p := sources.stale(models.get(step), step, f"AoA_word/surprisal.json's {step}",
                                                           "evaluate_checkpoints"))]
    if stale:
        problems.append(stale[0] + (f" (and {len(stale) - 1} more checkpoints)" if len(stale) > 1 else ""))
    return bool(stale)


def aoa_problems(aoa: dict, track: str) -> list[str]:
    """The collate step's AoA check: every checkpoint of the track, AOA_WORDS records each."""
    records = aoa.get("results", [])
    steps: dict[str, int] = {}
    for record in records:
        steps[record.get("step")] = steps.get(record.get("step"), 0) + 1
    problems = [f"AoA has no records for {rev}" for rev in REVISIONS[track] if rev not in steps]
    # The collate step counts distinct steps against the track's list: an extra one fails it too.
    problems += [f"AoA has records for {rev}, which is not a {track} checkpoint" for rev in steps
                 if rev not in REVISIONS[track]]
    problems += [f"AoA has {n} records for {rev}, the official {AOA_WORDS}"
                 for rev, n in steps.items() if rev in REVISIONS[track] and n != AOA_WORDS]
    return problems


def fast_scores(root: Path, model_name: str, backend: str, track: str, problems: list[str],
                sources: Sources) -> tuple[dict[str, list[dict]], list[str], Path | None]:
    """{task: [per-subtask scores of each checkpoint evaluated, in the track's order]}, those
    revisions and the fast_eval/ folder they were scored on. The scores are recomputed from each
    revision's predictions.json files and that folder's data, as the collate step does
    (evaluation/fast_scores.py), never copied from a summary; every checkpoint of the track that
    lacks a fast evaluation, or whose fast predictions came from other weights than its chck_* folder's
    now, is a problem."""
    scores: dict[str, list[dict]] = {key: [] for key in FAST_KEYS}
    revisions, data_dirs = [], {}
    for revision in REVISIONS[track]:
        summary = _load(summary_paths(revision_dir(root, model_name, revision), backend)[0],
                        f"the fast evaluation of {revision}", problems)
        if summary is None:
            continue
        zero_shot = zero_shot_dir(root, model_name, revision, "official", backend)
        lacking, loaded = [], {}
        for key, (task, data) in FAST_SETS.items():
            path = prediction_path(zero_shot, key)
            if path.is_file():  # read once: counted here, rescored below
                loaded[key] = json.loads(path.read_text())
                problems += count_problems(f"{revision} {task}/{data or ''}".rstrip("/"), loaded[key],
                                           FAST_SIZES[key])
            else:
                lacking.append(key)
        if lacking:
            problems.append(f"the fast evaluation of {revision} lacks {', '.join(lacking)} (score it on the whole "
                            "fast_eval/ folder)")
            continue
        if not all(sources.check(zero_shot / task / (data or ""), revision, f"the fast evaluation of {revision}",
                                 "evaluate_checkpoints", problems) for task, data in FAST_SETS.values()):
            continue
        data_dir = Path(summary.get("eval_dir", "")).resolve()
        try:
            found = revision_fast_scores(loaded, data_dir)
        except (UserError, KeyError, ZeroDivisionError) as e:  # data the predictions do not fit: a problem
            problems.append(f"the fast evaluation of {revision} cannot be rescored on {data_dir} ({e}): score it "
                            "again with make evaluate_checkpoints")
            continue
        data_dirs.setdefault(data_dir, []).append(revision)
        revisions.append(revision)
        for key in FAST_KEYS:
            scores[key].append(found[key])
    if len(data_dirs) > 1:  # the collate step scores every checkpoint on one fast_eval/ folder
        problems.append("the checkpoints were scored on different fast sets: " + "; ".join(
            f"{', '.join(revs)} on {folder}" for folder, revs in data_dirs.items()) + " (score them on one)")
    return scores, revisions, next(iter(data_dirs), None)


@dataclass
class Collated:
    """A submission file written, and what the official collate step needs to judge the same tree."""

    path: Path
    root: Path
    model_name: str
    backend: str
    track: str
    fast_eval_dir: Path | None


def build_submission(run_dir: str | Path, backend: str | None = None, track: str | None = None,
                     partial: bool = False, results_root: str | Path | None = None) -> Collated:
    """Collate, check and write a run's submission file (see the module docstring).
    `track` None: the one the run trained under (train_results.json), else strict-small."""
    run_dir = Path(run_dir)
    if not (run_dir / BEST_MODEL_DIR).is_dir():
        raise UserError(f"'{run_dir}' has no {BEST_MODEL_DIR}/: pass a finished training step's folder, "
                        "e.g. save_dir/step2_1")
    track = submission_track(run_dir, track)
    backend = backend or default_backend(saved_model_type(run_dir / BEST_MODEL_DIR))
    root = Path(results_root) if results_root else default_results_root(run_dir / BEST_MODEL_DIR)
    model_name = run_dir.resolve().name
    problems: list[str] = []
    sources = Sources(run_dir)
    submission = full_predictions(root, model_name, backend, track, problems, sources)
    submission["fast_eval_results"], revisions, fast_eval_dir = fast_scores(root, model_name, backend, track,
                                                                            problems, sources)
    # A result that scored other weights is named first: it is the one a user believes is done.
    problems.sort(key=lambda problem: not any(f" is {kind}: " in problem for kind in STALE_KINDS))
    complete = submission_path(root, model_name, backend)
    if problems and complete.is_file():  # an earlier complete file no longer matches the run: never upload it
        complete.replace(complete.with_suffix(".stale.json"))
        problems.append(f"the earlier {complete.name} no longer matches the run: renamed to "
                        f"{complete.with_suffix('.stale.json').name}")
    if problems and not partial:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UserError(f"the submission is incomplete: {problems[0]}{more}; produce it (make evaluate / finetune / "
                        "evaluate_checkpoints) or pass --partial to write what there is")
    if problems:
        submission["missing"] = problems
        submission["fast_eval_revisions"] = revisions
    path = submission_path(root, model_name, backend, partial=bool(problems))
    write_json_atomic(path, submission)
    return Collated(path, root, model_name, backend, track, fast_eval_dir)


def judge(collated: Collated, official: str | Path | None = None) -> Verdict:
    """The official collate step's verdict on the tree `collated` came from, its file compared with ours."""
    ours = json.loads(collated.path.read_text())
    return official_collate(collated.root, collated.model_name, collated.backend, collated.track,
                            collated.fast_eval_dir or collated.root, ours, official)


def run_submission(args: argparse.Namespace) -> Path:
    """The submission action: collate --model_dir's results, print what is missing, if anything, then
    the official collate step's verdict on the same tree. A complete submission the official step
    refuses, or collates differently, is an error (exit 1): that is a fault of ours to report."""
    collated = build_submission(args.model_dir, args.backend, args.track, args.partial, args.results_dir)
    written = json.loads(collated.path.read_text())
    for problem in written.get("missing", []):
        print(f"missing: {problem}")
    partial = "missing" in written
    print(f"ours: {'PARTIAL, not for upload' if partial else 'complete'}: {collated.path}")
    verdict = judge(collated, args.official_pipeline)
    print(verdict.line())
    if not partial and verdict.ran and not (verdict.accepted and verdict.same):
        raise UserError(f"the official collate step disagrees with ours on a submission we call complete "
                        f"({verdict.message}): please report this with the run folder")
    return collated.path
