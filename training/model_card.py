"""The model card: a README.md written into a run's best_model/ folder when training ends.

The card follows the Hugging Face model card (huggingface_hub's modelcard_template.md and the
Hub's model-card metadata; no BabyLM-specific template is published): YAML front matter
(language, library_name, pipeline_tag, tags), then Model Details (with how to load the
model), Training Data, Training Procedure and Hyper-parameters, Checkpoints, Evaluation,
and Uses, Risks and Limitations.

Every number comes from the run's own files, read as JSON or text here (no evaluation
module is imported, so training can call this without an import cycle):

    <model_dir>/config.json, run_args.json, tokenizer.json, *.safetensors   the model
    <run_dir>/train_results.json                 how the run went, the chck_* folders' steps
    the training files, resolved from run_args.json as training resolves them (words per file)
    <run_dir>/results/<run name>/main/zero_shot_summary_*.json        `run.py evaluate`
    <run_dir>/../*/finetune_results.json, <run_dir>/*/finetune_results.json  `run.py finetune`

A file that is missing or unreadable leaves its fields out; nothing is guessed. A result that
records the identity of the weights it scored (training/identity.py) and whose digest is not the
folder's now scored an earlier model of the same folder (a run resumed or started over keeps
results/): its table is replaced by a `stale: scored step 300 (digest ...), best_model/ is now
...` line. A result written before identities is kept only when it is newer than the weights."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from corpus.editions import resolve_files
from custom_models import is_causal, is_hybrid
from training.identity import WeightsIdentity, folder_identity, staleness
from training.run_folder import RunFolder
from utils import (
    BEST_MODEL_DIR,
    FINETUNE_RESULTS,
    RESULTS_DIR,
    RUN_ARGS,
    UserError,
    count_parameters,
    model_name_and_revision,
    write_text_atomic,
)

CARD_FILE = "README.md"
ZERO_SHOT_SUMMARIES = "zero_shot_summary_*.json"

# Run options that say where or how a run was written, not how the model was trained.
NOT_HYPER_PARAMETERS = {"output_dir", "overwrite_output_dir", "model_dir", "resume", "cache_dir", "num_proc",
                        "test_files"}
# Options that act only when another one is set (shown only then).
CURRICULUM_OPTIONS = {"easier_files", "harder_files", "pacing", "start_percent", "end_percent", "start_share",
                      "pacing_steps"}
DISTILLATION_OPTIONS = {"distill_alpha", "distill_temperature"}

# resolve_files warns about missing BabyLM sources; training has said so already.
_quiet = logging.getLogger(f"{__name__}.quiet")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False


# --------------------------------------------------------------------------- the card


def write_model_card(run_dir: Path, model_dir: Path | None = None) -> Path:
    """Write `README.md` into `model_dir` (default `run_dir/best_model`), atomically, from the
    run's files, and return its path. UserError when `model_dir` is not a folder (a card
    alone would look like a damaged model)."""
    run_dir = Path(run_dir)
    model_dir = Path(model_dir) if model_dir is not None else RunFolder(run_dir).best_model
    if not model_dir.is_dir():
        raise UserError(f"no model folder '{model_dir}' to write a model card into: pass a best_model/ or "
                        "chck_* folder a training run wrote")
    path = model_dir / CARD_FILE
    write_text_atomic(path, model_card_text(run_dir, model_dir))
    return path


def refresh_model_card(model_dir: str | Path) -> Path | None:
    """Rewrite the card of a finished run's best_model/ (after an evaluation added scores);
    None for any other folder."""
    model_dir = Path(model_dir)
    if model_dir.name != BEST_MODEL_DIR or not RunFolder(model_dir.parent).is_finished():
        return None
    return write_model_card(model_dir.parent, model_dir)


def model_card_text(run_dir: Path, model_dir: Path) -> str:
    """The card's markdown: front matter, then one block per section (empty sections left out)."""
    run = RunFiles.read(Path(run_dir), Path(model_dir))
    sections = [front_matter(run), title(run), model_details(run), training_data(run), training_procedure(run),
                checkpoints(run), evaluation(run), uses_and_limitations(run)]
    return "\n\n".join(section for section in sections if section) + "\n"


@dataclass
class RunFiles:
    """What the card is written from: the JSON files of the run and its model folder
    ({} for a file that is missing or damaged)."""

    run_dir: Path
    model_dir: Path
    config: dict
    args: dict
    results: dict
    tokenizer: dict

    @classmethod
    def read(cls, run_dir: Path, model_dir: Path) -> RunFiles:
        return cls(run_dir=run_dir, model_dir=model_dir, config=read_json(model_dir / "config.json"),
                   args=read_json(model_dir / RUN_ARGS), results=_train_results(RunFolder(run_dir)),
                   tokenizer=read_json(model_dir / "tokenizer.json"))

    @property
    def model_type(self) -> str | None:
        return self.config.get("model_type") or self.args.get("model_type")

    @property
    def causal(self) -> bool:
        return self.model_type is not None and is_causal(self.model_type)

    @property
    def hybrid(self) -> bool:
        return self.model_type is not None and is_hybrid(self.model_type)

    @cached_property
    def word_counts(self) -> dict[Path, int]:
        """Words of each training file (read once: the corpus may hold 100M words)."""
        return words_per_file(training_files(self))

    @property
    def revision(self) -> str:
        """The revision the official layout files this model's results under (evaluation/layout.py)."""
        return model_name_and_revision(self.model_dir)[1]

    @cached_property
    def identity(self) -> WeightsIdentity | None:
        """The identity of the weights the model folder holds now (checked against its record)."""
        return folder_identity(self.model_dir)

    def weights_mtime(self) -> float:
        """When the model's weights were written (0 when there are none)."""
        return max((p.stat().st_mtime for p in self.model_dir.glob("*.safetensors")), default=0.0)


# --------------------------------------------------------------------------- sections


def front_matter(run: RunFiles) -> str:
    """The YAML metadata the Hub reads: language, library, pipeline and tags."""
    lines = ["---", "language: en", "library_name: transformers"]
    if run.model_type is not None:
        lines.append(f"pipeline_tag: {'text-generation' if run.causal else 'fill-mask'}")
    tags = ["babylm", run.model_type, "custom_code" if run.hybrid else None]
    lines += ["tags:", *(f"- {tag}" for tag in tags if tag)]
    return "\n".join([*lines, "---"])


def title(run: RunFiles) -> str:
    what = f"A {run.model_type} language model" if run.model_type else "A language model"
    return f"# {run.run_dir.name}\n\n{what} trained with the BabyLM pipeline (run folder `{run.run_dir}`)."


def model_details(run: RunFiles) -> str:
    """Architecture and sizes from config.json, parameters from the safetensors, and how to load it."""
    config = run.config
    facts = {
        "Model type": run.model_type,
        "Architecture": ", ".join(config.get("architectures") or []) or None,
        "Objective": objective(run),
        "Parameters": _number(count_parameters(run.model_dir)),
        "Hidden size": _number(_first(config, "hidden_size", "n_embd")),
        "Layers": _number(_first(config, "num_hidden_layers", "n_layer")),
        "Attention heads": _number(_first(config, "num_attention_heads", "n_head")),
        "Vocabulary": _number(config.get("vocab_size")),
        "Context length": _context_length(run),
        "Tokenizer": tokenizer_kind(run.tokenizer),
        "Initialised from": f"`{run.args['init_model']}`" if run.args.get("init_model") else None,
    }
    return "\n\n".join(["## Model Details", _facts(facts), how_to_load(run)])


def objective(run: RunFiles) -> str | None:
    if run.model_type is None:
        return None
    if run.hybrid:
        ratio = f" ({run.args['hybrid_ratio']} masked:causal steps)" if run.args.get("hybrid_ratio") else ""
        return f"hybrid: causal LM and masked next-token prediction{ratio}"
    text = "causal language modelling" if run.causal else "masked language modelling"
    teachers = run.args.get("teacher_models")
    return text + (f", distilled from {', '.join(f'`{t}`' for t in teachers)}" if teachers else "")


def how_to_load(run: RunFiles) -> str:
    """Loading through the Auto classes (the hybrid gpt_bert carries its own code: trust_remote_code)."""
    folder = str(run.model_dir)
    if run.hybrid:
        code = ["from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer", "",
                f'tokenizer = AutoTokenizer.from_pretrained("{folder}")',
                "# causal LM (the default mode)",
                f'model = AutoModelForCausalLM.from_pretrained("{folder}", trust_remote_code=True)',
                "# masked next-token prediction",
                f'masked = AutoModelForMaskedLM.from_pretrained("{folder}", trust_remote_code=True)']
    else:
        auto = "AutoModelForCausalLM" if run.causal or run.model_type is None else "AutoModelForMaskedLM"
        code = [f"from transformers import {auto}, AutoTokenizer", "",
                f'tokenizer = AutoTokenizer.from_pretrained("{folder}")',
                f'model = {auto}.from_pretrained("{folder}")']
    note = ("This folder is a standard transformers folder (model, tokenizer and `run_args.json`); "
            "pass its path, or its Hub id once uploaded:")
    return "\n".join(["### How to load", "", note, "", "```python", *code, "```"])


def training_data(run: RunFiles) -> str:
    """The training files the run used with their words (str.split(), as training counts them), and the total."""
    args, results = run.args, run.results
    facts = {
        "Track": results.get("track"),  # what the run checked (train_results.json), not an option's default
        "Data folder": f"`{args['data_dir']}`" if args.get("data_dir") else None,
        "Corpus": results.get("corpus"),  # the detected layout, as the training log gave it
        "Training split": f"`{args['train_split']}`" if args.get("train_split") else None,
        "Words read by training (after cleaning)": _number(results.get("train_words")),
        "Words trained on (all epochs)": _number(results.get("words_seen")),
    }
    lines = ["## Training Data", _facts(facts)]
    counts = run.word_counts
    if counts:
        rows = [f"| {path.name} | {words:,} |" for path, words in counts.items()]
        lines.append("\n".join(["Words per training file (whitespace-separated, as in the file):", "",
                                "| file | words |", "|---|---:|", *rows,
                                f"| **total** | **{sum(counts.values()):,}** |"]))
    return "\n\n".join(line for line in lines if line)


def training_procedure(run: RunFiles) -> str:
    """How the run went (train_results.json) and a table of its training options (run_args.json)."""
    results = run.results
    loop = {"pytorch": "the custom PyTorch loop", "huggingface": "the Hugging Face Trainer"}.get(results.get("loop"))
    facts = {
        "Training loop": loop,
        "Optimizer steps": _number(results.get("steps")),
        "Tokens trained on": _number(results.get("tokens_seen")),
        "Training time (s)": _number(results.get("train_seconds")),
        "Processes": _number(results.get("processes")),
        "Precision": results.get("precision"),
        "This model": best_model_line(results),
    }
    lines = ["## Training Procedure", _facts(facts)]
    options = hyper_parameters(run.args, run.model_type)
    if options:
        rows = [f"| {name} | {_cell(value)} |" for name, value in options.items()]
        lines.append("\n".join(["### Hyper-parameters", "", f"The training options of `{RUN_ARGS}`:", "",
                                "| option | value |", "|---|---|", *rows]))
    return "\n\n".join(line for line in lines if line)


def best_model_line(results: dict) -> str | None:
    """Which step's model best_model/ holds, and its validation loss (train_results.json)."""
    step, loss, perplexity = (results.get(k) for k in ("best_step", "best_eval_loss", "best_eval_perplexity"))
    if not isinstance(step, int) or step < 0 or loss is None or perplexity is None:
        return None
    words = results.get("best_words_seen")
    return (f"the lowest validation loss, {loss:.4f} (perplexity {perplexity:.2f}), at optimizer step {step:,}"
            + (f", after {words:,} words" if isinstance(words, int) else ""))


def checkpoints(run: RunFiles) -> str:
    """Every chck_* folder of the run, with the words and step train_results.json records for it."""
    # Every chck_* folder present, the ones train_results.json does not record too (blank cells).
    folders = RunFolder(run.run_dir).word_checkpoints(run.results, recorded_only=False)
    if not folders:
        return ""
    rows = [f"| `{m.name}` | {_number(m.mark) or ''} | {_number(m.step) or ''} | {_number(m.words_seen) or ''} |"
            for m in folders]
    return "\n".join(["## Checkpoints", "",
                      "Model folders saved when the words trained on crossed each mark (`--checkpoint_words`), "
                      "beside this one in the run folder; each loads like this one:", "",
                      "| folder | words mark | step | words seen |", "|---|---:|---:|---:|", *rows])


def evaluation(run: RunFiles) -> str:
    """Zero-shot and fine-tuning scores of this model, or how to get them."""
    tables = [stale_line(path, data, run) or zero_shot_table(path, data) for path, data in zero_shot_summaries(run)]
    tables += [stale_line(path, data, run) or finetune_table(path, data) for path, data in finetune_results(run)]
    if not tables:
        save_dir = run.run_dir.parent
        tables = ["Not evaluated yet. Run the official BabyLM zero-shot suite with "
                  f"`make evaluate STEP={run.run_dir.name} SAVE_DIR={save_dir}` (or "
                  f"`python run.py evaluate --model_dir {run.model_dir} --eval_dir data/official_eval/fast_eval`); "
                  "evaluate and finetune rewrite this card with their scores."]
    return "\n\n".join(["## Evaluation", *tables])


def uses_and_limitations(run: RunFiles) -> str:
    counts = run.word_counts
    data = (f"{sum(counts.values()):,} words of text ({', '.join(p.stem for p in counts)})" if counts
            else "a small corpus")
    return "\n\n".join([
        "## Uses, Risks and Limitations",
        "Intended use: research on data-efficient language modelling (the BabyLM challenge), e.g. comparing "
        "training recipes, probing what a model learns from a child-sized input, and scoring sentences by "
        "(pseudo-)log-likelihood.",
        f"Limitations: the model is small and was trained on {data}, so it knows little of the world and "
        "of rare words. Its text can be fluent and wrong; it has no instruction tuning or safety training and "
        "reflects the biases of its corpus. It is not meant for applications that people rely on, nor for "
        "languages other than English.",
    ])


# --------------------------------------------------------------------------- reading the run's files


def _train_results(folder: RunFolder) -> dict:
    """The run's train_results.json, or {} when it is missing, damaged or not an object."""
    try:
        results = folder.read_results()
    except (OSError, ValueError):
        return {}
    return results if isinstance(results, dict) else {}


def read_json(path: Path) -> dict:
    """A JSON object from `path`, or {} when the file is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def tokenizer_kind(spec: dict) -> str | None:
    """'byte-level BPE' and the like, from tokenizer.json's model and pre-tokenizer."""
    kind = (spec.get("model") or {}).get("type")
    if not kind:
        return None
    if '"ByteLevel"' in json.dumps(spec.get("pre_tokenizer")):
        kind = f"byte-level {kind}"
    if '"Lowercase"' in json.dumps(spec.get("normalizer")):
        kind += ", lowercased"
    return kind


def training_files(run: RunFiles) -> list[Path]:
    """The training files, resolved from run_args.json as training resolves them; else the ones
    train_results.json lists that still exist; else none."""
    args = run.args
    if "data_dir" in args:
        try:
            return resolve_files(args["data_dir"], "train", args.get("train_files"), args.get("train_split"),
                                 logger=_quiet, cache_dir=args.get("cache_dir", "cache"))
        except UserError:
            pass
    return [Path(f) for f in run.results.get("train_files") or [] if Path(f).is_file()]


def words_per_file(files: list[Path]) -> dict[Path, int]:
    """Whitespace-separated words (str.split()) of each file; a file that cannot be read is left out."""
    counts = {}
    for path in files:
        try:
            with open(path, encoding="utf-8") as f:
                counts[path] = sum(len(line.split()) for line in f)
        except (OSError, UnicodeDecodeError):
            continue
    return counts


def hyper_parameters(args: dict, model_type: str | None) -> dict[str, Any]:
    """The run's training options (the names the parser recorded in `training_options`, in --help's
    order; a run saved before that: every option it saved), plus the tokenizer folder; left out:
    unset options (None), bookkeeping ones, and those that act only with another option that is
    not set."""
    names = ["tokenizer_dir", *args.get("training_options", args)]
    causal = model_type is not None and is_causal(model_type)
    hybrid = model_type is not None and is_hybrid(model_type)
    inactive = set(NOT_HYPER_PARAMETERS)
    if not args.get("difficulty"):
        inactive |= CURRICULUM_OPTIONS
    elif args["difficulty"] != "source":
        inactive |= {"easier_files", "harder_files"}
    if not args.get("teacher_models"):
        inactive |= DISTILLATION_OPTIONS
    if not hybrid:
        inactive.add("hybrid_ratio")
    if causal and not hybrid:
        inactive.add("mlm_probability")
    return {name: args[name] for name in dict.fromkeys(names)
            if name in args and args[name] is not None and name not in inactive | {"training_options"}}


def zero_shot_summaries(run: RunFiles) -> list[tuple[Path, dict]]:
    """The zero-shot summaries of this model, newer than its weights: where evaluation/layout.py files
    them, <run>/results/<run name>/<revision>/ (revision main for best_model/, the folder's name for a
    chck_* folder: the other revisions there are other models), or where the layout before it did,
    <run>/results/<model folder>/<revision>/."""
    results = run.run_dir / RESULTS_DIR
    paths = sorted({*(results / run.run_dir.name / run.revision).glob(ZERO_SHOT_SUMMARIES),
                    *(results / run.model_dir.name).glob(f"*/{ZERO_SHOT_SUMMARIES}")})
    return [(p, data) for p in paths
            if isinstance((data := read_json(p)).get("results"), dict) and _current(p, run, data)]


def finetune_results(run: RunFiles) -> list[tuple[Path, dict]]:
    """finetune_results.json files beside the run or inside it that scored this model, newer than its weights."""
    found = []
    me = run.model_dir.resolve()
    for path in sorted({*run.run_dir.parent.glob(f"*/{FINETUNE_RESULTS}"), *run.run_dir.glob(f"*/{FINETUNE_RESULTS}")}):
        data = read_json(path)
        if data.get("tasks") and data.get("model_dir") and Path(data["model_dir"]).resolve() == me \
                and _current(path, run, data):
            found.append((path, data))
    return found


def stale_line(path: Path, data: dict, run: RunFiles) -> str | None:
    """The line that replaces a result's table when it scored other weights than the folder's now (a
    result written before identities records none: `_current` has judged it by its time)."""
    if "model" not in data:
        return None
    why = staleness(data["model"], run.identity, run.model_dir.name)
    return None if why is None else f"### Not shown: `{path}`\n\n{why}; evaluate again to update this card."


def zero_shot_table(path: Path, data: dict) -> str:
    """One row per task, a column per convention (as evaluation/zero_shot.py's summary table)."""
    results = {c: tasks for c, tasks in data["results"].items() if isinstance(tasks, dict)}
    where = ", ".join(f"{key} `{data[key]}`" for key in ("backend", "eval_dir", "precision") if data.get(key))
    return "\n".join([f"### Zero-shot: BabyLM evaluation suite (revision {path.parent.name}; {where})", "",
                      *zero_shot_rows(results, "task")])


def zero_shot_rows(results: dict[str, dict], first_column: str) -> list[str]:
    """A zero-shot summary's `results` ({convention: {task: {"metric", "items", "score", "ties"}}}) as a
    markdown table: a row per task, a score column per convention, then a tied-items column per
    convention (an accuracy item whose candidates score the same: right officially, wrong strictly)."""
    conventions = list(results)
    tasks = list(dict.fromkeys(task for c in conventions for task in results[c]))
    rows = [f"| {first_column} | metric | items | " + " | ".join(conventions) + " | "
            + " | ".join(f"ties ({c})" for c in conventions) + " |",
            "|---|---|---:|" + "---:|" * 2 * len(conventions)]
    for task in tasks:
        first = next(results[c][task] for c in conventions if task in results[c])
        cells = [_score(results[c].get(task, {}).get("score"), ".2f") for c in conventions]
        cells += [str(results[c].get(task, {}).get("ties", "")) for c in conventions]
        rows.append(f"| {task} | {first.get('metric', '')} | {first.get('items', '')} | " + " | ".join(cells) + " |")
    return rows


def finetune_table(path: Path, data: dict) -> str:
    """One row per fine-tuned task: its best epoch's validation metrics."""
    tasks = data["tasks"]
    metrics = list(dict.fromkeys(m for task in tasks.values() for m in task.get("metrics", {}) if m != "eval_loss"))
    rows = []
    for name, task in tasks.items():
        cells = [_score(task.get("metrics", {}).get(m), ".4f") for m in metrics]
        chosen = task.get("best_epoch", f"{task['cross_fit']}-fold cross-fit" if "cross_fit" in task else "")
        rows.append(f"| {name} | " + " | ".join(cells) + f" | {chosen} |")
    return "\n".join([f"### Fine-tuning: validation split, best epoch (`{path}`)", "",
                      "| task | " + " | ".join(metrics) + " | best epoch |",
                      "|---|" + "---:|" * (len(metrics) + 1), *rows])


# --------------------------------------------------------------------------- formatting


def _current(path: Path, run: RunFiles, data: dict) -> bool:
    """Whether a results file may describe this model: one that records an identity is kept (and
    marked stale by `stale_line` when its digest is not the folder's now); one written before
    identities, only when it is newer than the weights."""
    return "model" in data or path.stat().st_mtime >= run.weights_mtime()


def _first(config: dict, *keys: str) -> Any:
    """The first of `keys` present in a config (GPT-2 names its sizes n_embd, n_layer, n_head)."""
    return next((config[k] for k in keys if config.get(k) is not None), None)


def _context_length(run: RunFiles) -> str | None:
    positions = _first(run.config, "max_position_embeddings", "n_positions")
    block = run.args.get("block_size")
    if positions is None:
        return None
    return f"{_number(positions)} positions" + (f" (trained on blocks of {_number(block)} tokens)" if block else "")


def _number(value: Any) -> str | None:
    """1234567 -> '1,234,567'; floats as written; None stays None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _score(value: Any, spec: str) -> str:
    """A score in a table cell ('' when there is none)."""
    return format(value, spec) if isinstance(value, int | float) and not isinstance(value, bool) else ""


def _facts(facts: dict[str, str | None]) -> str:
    """A bullet list of the facts that are known."""
    return "\n".join(f"- **{name}:** {value}" for name, value in facts.items() if value is not None)


def _cell(value: Any) -> str:
    """An option's value in a markdown table cell: lists space-separated, others as JSON would write them."""
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        text = " ".join(map(str, value))
    elif isinstance(value, str | int | float):
        text = str(value)
    else:
        text = json.dumps(value)
    return text.replace("|", "\\|")
