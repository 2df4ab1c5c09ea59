"""The official BabyLM zero-shot tasks as data: where each lives in an evaluation folder,
how one line of its files becomes an item (candidate sentences and the part of each
that is scored), and a line-by-line check that names the first bad line.

The decoding follows evaluation-pipeline-2025 (`sentence_zero_shot/read_files.py`):
- BLiMP and its supplement: candidates = [sentence_good, sentence_bad], the whole
  sentence scored; UID from the line (BLiMP) or the file name (supplement);
  field `syntax_semantics` is reported as `syntax/semantics`.
- EWoK: candidates = Context1 + " " + Target1 / Target2, completion " " + target;
  reported by Domain (UID), ContextType, ContextDiff and TargetDiff.
- entity tracking: candidates = input_prefix + option, completion = option (5
  options, the first correct); UID `<file stem>_<numops>_ops`.
- WUG adjective nominalization and past tense: the tab-separated `sentences`,
  the whole sentence scored; Spearman's rho between the first candidate's softmax
  share and the human `ratio`.
- COMPS (`decode_comps`): candidates prefix_acceptable / prefix_unacceptable and
  property_phrase joined with one space, completion = property_phrase; UID from the
  file name (comps_base -> base, comps_wugs -> wugs, comps_wugs_dist-before ->
  wugs_dist_before, comps_wugs_dist-in-between -> wugs_dist_in_between); its
  predictions hold the whole chosen sentence (`compute_results.py`), not the completion.

The first candidate of every item is the correct one."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from utils import UserError, jsonl_objects


@dataclass
class Item:
    """One test item: candidate sentences (the first is correct), the scored tail of each,
    the groups it is reported under (`UID` among them, in the official report's order)
    and, for WUG, the human ratio."""

    candidates: list[str]
    completions: list[str]
    groups: dict[str, str]
    ratio: float | None = None

    @property
    def uid(self) -> str:
        return self.groups["UID"]


@dataclass
class Task:
    """A zero-shot task found in an evaluation folder."""

    name: str  # the official output folder: blimp, ewok, entity_tracking, wug_adj, wug_past, comps
    data_dir: Path
    items: list[Item] = field(default_factory=list)

    @property
    def metric(self) -> str:
        return "spearman" if self.name.startswith("wug") else "accuracy"

    @property
    def predicts_sentence(self) -> bool:
        """Whether a prediction names the whole chosen sentence (COMPS, officially) or its completion."""
        return self.name == "comps"


def _strings(row: dict, keys: tuple[str, ...], where: str) -> None:
    missing = [k for k in keys if not isinstance(row.get(k), str)]
    if missing:
        raise UserError(f"{where} has no string field(s) {', '.join(missing)}: not this task's format; "
                        "fix that line or replace the file with the official one")


def _blimp(row: dict, stem: str, where: str) -> Item:
    _strings(row, ("sentence_good", "sentence_bad"), where)
    pair = [row["sentence_good"], row["sentence_bad"]]
    if "field" in row:  # BLiMP proper; the supplement has no field and takes its UID from the file
        _strings(row, ("field", "UID", "linguistics_term"), where)
        fld = "syntax/semantics" if row["field"] == "syntax_semantics" else row["field"]
        groups = {"field": fld, "UID": row["UID"], "linguistics_term": row["linguistics_term"]}
    else:
        groups = {"field": "supplement", "UID": stem, "linguistics_term": "supplement"}
    return Item(pair, list(pair), groups)


def _ewok(row: dict, stem: str, where: str) -> Item:
    _strings(row, ("Domain", "ContextType", "ContextDiff", "TargetDiff", "Context1", "Target1", "Target2"), where)
    targets = [row["Target1"], row["Target2"]]
    return Item([row["Context1"] + " " + t for t in targets], [" " + t for t in targets],
                {"UID": row["Domain"], "context_type": row["ContextType"],
                 "context_contrast": row["ContextDiff"], "target_contrast": row["TargetDiff"]})


def _entity_tracking(row: dict, stem: str, where: str) -> Item:
    _strings(row, ("input_prefix",), where)
    options = row.get("options")
    if not (isinstance(options, list) and len(options) >= 2 and all(isinstance(o, str) for o in options)):
        raise UserError(f"{where} needs 'options', a list of two or more strings: fix that line")
    if not isinstance(row.get("numops"), int):
        raise UserError(f"{where} needs an integer 'numops': fix that line")
    return Item([row["input_prefix"] + o for o in options], list(options),
                {"UID": f"{stem}_{row['numops']}_ops"})


def _wug(uid: str) -> Callable[[dict, str, str], Item]:
    def decode(row: dict, stem: str, where: str) -> Item:
        _strings(row, ("sentences",), where)
        sentences = row["sentences"].split("\t")
        ratio = row.get("ratio")
        if len(sentences) < 2 or not isinstance(ratio, int | float) or isinstance(ratio, bool) \
                or not math.isfinite(ratio):
            raise UserError(f"{where} needs two or more tab-separated 'sentences' and a numeric 'ratio': "
                            "fix that line")
        return Item(sentences, list(sentences), {"UID": uid}, float(ratio))
    return decode


# COMPS file stem -> the subtask the official reader files it under (the collate step checks these keys).
COMPS_SUBTASKS = {"comps_base": "base", "comps_wugs": "wugs", "comps_wugs_dist-before": "wugs_dist_before",
                  "comps_wugs_dist-in-between": "wugs_dist_in_between"}


def _comps(row: dict, stem: str, where: str) -> Item:
    _strings(row, ("prefix_acceptable", "prefix_unacceptable", "property_phrase"), where)
    if stem not in COMPS_SUBTASKS:  # the official reader would file it under wugs_dist_in_between unasked
        raise UserError(f"{where}: a COMPS file must be named {', '.join(f'{s}.jsonl' for s in COMPS_SUBTASKS)}: "
                        "rename it or replace the folder with the official one")
    phrase = row["property_phrase"]
    return Item([" ".join([row["prefix_acceptable"], phrase]), " ".join([row["prefix_unacceptable"], phrase])],
                [phrase, phrase], {"UID": COMPS_SUBTASKS[stem]})


# task name -> (the folder names it has in the official full_eval/ and fast_eval/ layouts, decoder)
TASKS: dict[str, tuple[tuple[str, ...], Callable[[dict, str, str], Item]]] = {
    "blimp": (("blimp_filtered", "blimp_fast", "supplement_filtered", "supplement_fast"), _blimp),
    "ewok": (("ewok_filtered", "ewok_fast"), _ewok),
    "entity_tracking": (("entity_tracking", "entity_tracking_fast"), _entity_tracking),
    "wug_adj": (("wug_adj_nominalization",), _wug("wug_adj")),
    "wug_past": (("wug_past_tense",), _wug("wug_past")),
    "comps": (("comps", "comps_fast"), _comps),
}
READING_FILE = Path("reading") / "reading_data.csv"


def read_task(name: str, data_dir: str | Path) -> Task:
    """Every `*.jsonl` file of `data_dir` (sorted by name), decoded as task `name`; UserError
    naming file and line for the first line that is not valid."""
    data_dir = Path(data_dir)
    decode = TASKS[name][1]
    files = sorted(data_dir.glob("*.jsonl"))
    if not files:
        raise UserError(f"no *.jsonl files in '{data_dir}': pass a folder of the official evaluation data")
    task = Task(name, data_dir)
    for path in files:
        before = len(task.items)
        for where, row in jsonl_objects(path):
            task.items.append(decode(row, path.stem, where))
        if len(task.items) == before:
            raise UserError(f"{path} holds no items (it is empty or blank): restore it or remove it")
    return task


def choose_eval_set(eval_dir: str | Path, fast: bool) -> Path:
    """The folder whose tasks are scored: `eval_dir` itself, or, when it is the official
    `evaluation_data/` folder (holding full_eval/ and fast_eval/), its fast_eval/ with `fast`
    and its full_eval/ without."""
    eval_dir = Path(eval_dir)
    if not any((eval_dir / name).is_dir() for name in ("full_eval", "fast_eval")):
        if fast and eval_dir.name != "fast_eval":  # --fast would be ignored: say so rather than score full sets
            raise UserError(f"--fast picks fast_eval/ inside --eval_dir, but '{eval_dir}' holds neither full_eval/ "
                            "nor fast_eval/: pass the folder that holds them, or leave out --fast")
        return eval_dir
    chosen = eval_dir / ("fast_eval" if fast else "full_eval")
    if not chosen.is_dir():
        fix = "leave out --fast to score its full_eval/" if fast else "pass --fast to score its fast_eval/"
        raise UserError(f"--eval_dir '{eval_dir}' has no {chosen.name}/: {fix}")
    return chosen


def find_tasks(eval_dir: str | Path, only: list[str] | None = None) -> list[tuple[str, Path]]:
    """(task name, data folder) for every official task folder present in `eval_dir`, in the
    order of TASKS; `only` keeps those tasks. The reading CSV is found separately."""
    eval_dir = Path(eval_dir)
    if not eval_dir.is_dir():
        raise UserError(f"--eval_dir '{eval_dir}' is not a folder: pass the official full_eval/ or fast_eval/ "
                        "folder (make eval_data fetches them)")
    found = []
    for name, (folders, _) in TASKS.items():
        if only is not None and name not in only:
            continue
        found.extend((name, eval_dir / f) for f in folders if (eval_dir / f).is_dir())
    return found
