"""`make report`: gather every step under a save folder into one report.

Reads what the steps wrote (train_results.json, best_model/config.json,
test_results.json, blimp_results.json, finetune_results.json, TensorBoard
events) and writes `<save_dir>/report.md` with a table of all steps, plus
`loss_curves.png` (training and validation loss of every step on one figure)
and `blimp_fields.png` (BLiMP accuracy per field, grouped bars per step), and,
for the runs `run.py curve` scored (learning_curve.json), `learning_curves.png`:
BLiMP and validation loss against words seen.
Test, BLiMP and fine-tuning results are joined to the training step whose
best model they scored (their `model_dir`). Only the steps that finished
training are listed (the demo runs four of the eleven experiment steps): a step
that has not run has no row. The steps after step8 (step9 curriculum, step10
distillation, step11 hybrid) follow in step order, so runs of equal tokens seen
sit together; a hybrid model's masked next-token BLiMP score
(`--hybrid_scoring masked`) gets its own column. The official zero-shot suite
(`run.py evaluate`, its zero_shot_summary_<backend>.json under each step's results/)
gets a table of its own, a row per step, backend and convention, with the published
strict-small baselines beside it, then the fine-tuned steps, a column per task; and,
for the runs `run.py evaluate_checkpoints` scored (checkpoint_scores_<backend>.json),
a table of every checkpoint's fast scores and `checkpoints_<task>.png` per task:
its score against words seen.

Every result that records the identity of the weights it scored (training/identity.py) is
compared with its model folder as it is now: a stale one (the folder was replaced since: a
resumed or retrained run, a rewritten chck_*, a changed weight file) is not presented; its
row says `stale: scored step 300 (digest 1a2b3c4d), best_model/ is now step 876 (...)`.
Results written before identities existed record none and are shown as they are."""

from __future__ import annotations

import json
import re
from pathlib import Path

from evaluation.layout import FINETUNE_TASKS
from training.identity import WeightsIdentity, folder_identity, staleness
from training.run_folder import RunFolder
from utils import (
    BLIMP_RESULTS,
    FINETUNE_RESULTS,
    TENSORBOARD_DIR,
    TEST_RESULTS,
    count_parameters,
    write_text_atomic,
)

# The zero-shot report's columns: (heading, the start of the summary keys it gathers, e.g. "blimp/blimp_fast").
ZERO_SHOT_COLUMNS = (("BLiMP", "blimp/blimp"), ("supplement", "blimp/supplement"), ("EWoK", "ewok/"),
                     ("entity tracking", "entity_tracking/"), ("WUG adj. (rho)", "wug_adj/"),
                     ("WUG past (rho)", "wug_past/"), ("COMPS", "comps/"), ("eye tracking", "reading/eye_tracking"),
                     ("self-paced reading", "reading/self_paced_reading"))
# Published BabyLM strict-small baselines (10M words), as the BabyLM organisers report them.
PUBLISHED_BASELINES = (("GPT-2 small", {"BLiMP": 67.3, "supplement": 59.1, "EWoK": 49.8}),
                       ("GPT-BERT (causal focus)", {"BLiMP": 71.7, "supplement": 63.2, "EWoK": 49.5}),
                       ("BabyLlama", {"BLiMP": 69.8, "supplement": 59.5, "EWoK": 50.7}))

TRAIN_STEPS = ("step2_1", "step3_1", "step3_2", "step4_1", "step5_1", "step5_2", "step6_1", "step7_1", "step7_2",
               "step8_1", "step8_2")


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _results_by_model(save_dir: Path, filename: str, masked_hybrid: bool = False) -> dict[str, dict]:
    """Every `filename` under save_dir/*/, keyed by the resolved model folder it scored.
    BLiMP results of a hybrid model scored with masked next-token PLL are kept apart
    (`masked_hybrid=True` returns those, otherwise the rest)."""
    found = {}
    for path in sorted(save_dir.glob(f"*/{filename}")):
        data = json.loads(path.read_text())
        if "model_dir" in data and (data.get("hybrid_scoring") == "masked") == masked_hybrid:
            found[str(Path(data["model_dir"]).resolve())] = data
    return found


def current(result: dict | None, identity: WeightsIdentity | None, folder: str) -> tuple[dict | None, str | None]:
    """(the result when it scored the weights `folder` holds now, else None; why not): a result that
    records no "model" (written before identities) is taken as it is."""
    if result is None or "model" not in result:
        return result, None
    why = staleness(result["model"], identity, folder)
    return (None, why) if why else (result, None)


def _step_order(name: str) -> tuple:
    """step9_x < step10_x < step11_x (numbers compared as numbers), then the name."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def _objective(config: dict, args: dict) -> str:
    model_type = config.get("model_type")
    if model_type in ("gpt_bert", "ltg_bert"):
        return f"hybrid masked:causal {args.get('hybrid_ratio', '?')}"
    objective = "masked LM" if model_type == "bert" else "causal LM"
    if args.get("teacher_models"):
        teachers = " + ".join(Path(t).parent.name for t in args["teacher_models"])
        objective += f", distilled from {teachers} (alpha {args['distill_alpha']}, T {args['distill_temperature']})"
    return objective


def tokens_seen(save_dir: Path, step: str) -> int:
    """Training tokens of a run plus those of the run it continued from (--init_model, when that
    is a run of the same save folder), recursively: a curriculum's two halves count together."""
    run = RunFolder(save_dir / step)
    train = run.read_results() or {}
    args = run.run_args() or {}
    tokens = train.get("tokens_seen", 0)
    parent = Path(args["init_model"]).parent if args.get("init_model") else None
    if parent is not None and parent.parent.resolve() == save_dir.resolve() and parent.name != step:
        tokens += tokens_seen(save_dir, parent.name)
    return tokens


def collect(save_dir: str | Path) -> list[dict]:
    """One row per finished training step (one with train_results.json): the Makefile's experiment
    steps first, in their order, then any other run folder in step order. A test, BLiMP or fine-tuning
    result that scored other weights than best_model/ holds now is left out, its reason in row["stale"]."""
    save_dir = Path(save_dir)
    tests = _results_by_model(save_dir, TEST_RESULTS)
    blimps = _results_by_model(save_dir, BLIMP_RESULTS)
    blimps_masked = _results_by_model(save_dir, BLIMP_RESULTS, masked_hybrid=True)
    finetunes = _results_by_model(save_dir, FINETUNE_RESULTS)
    others = sorted((run.path.name for run in RunFolder.finished_in(save_dir) if run.path.name not in TRAIN_STEPS),
                    key=_step_order)
    rows = []
    for step in (*TRAIN_STEPS, *others):
        run = RunFolder(save_dir / step)
        train = run.read_results()
        if train is None:  # not run (or not finished) here: no row
            continue
        row = {"step": step}
        model_dir = run.best_model
        config = _read(model_dir / "config.json") or {}
        args = run.run_args() or {}
        key = str(model_dir.resolve())
        data = " ".join(Path(f).stem for f in train["train_files"])
        if args.get("init_model"):
            data += f" (from {Path(args['init_model']).parent.name})"
        if args.get("difficulty"):
            data += f" ({args['difficulty']} curriculum, {args['pacing']} pacing)"
        identity = folder_identity(model_dir)
        stale = {}
        found = {"test": tests.get(key), "blimp": blimps.get(key), "blimp_masked": blimps_masked.get(key),
                 "finetune": finetunes.get(key)}
        for kind, result in found.items():
            found[kind], why = current(result, identity, model_dir.name)
            if why:
                stale[kind] = why
        row.update(
            architecture=f"{config.get('model_type')} {config.get('num_hidden_layers', config.get('n_layer'))}"
                         f"x{config.get('hidden_size', config.get('n_embd'))}",
            objective=_objective(config, args),
            data=data, parameters=count_parameters(model_dir), tokens=tokens_seen(save_dir, step),
            seconds=train["train_seconds"], loop=train["loop"], best_eval_loss=train["best_eval_loss"],
            stale=stale, **found,
        )
        rows.append(row)
    return rows


def _fmt(value, spec: str = "") -> str:
    return "" if value is None else format(value, spec)


def event_scalars(run_dir: Path, tag: str) -> tuple[list[int], list[float]]:
    """The (steps, values) of one TensorBoard scalar of a run; empty when the run logged none."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if not (run_dir / TENSORBOARD_DIR).is_dir():  # e.g. a run copied without its logs
        return [], []
    acc = EventAccumulator(str(run_dir / TENSORBOARD_DIR))
    acc.Reload()
    if tag not in acc.Tags().get("scalars", []):
        return [], []
    events = acc.Scalars(tag)
    return [e.step for e in events], [e.value for e in events]


def plot_losses(save_dir: Path, rows: list[dict], path: Path) -> None:
    """Training (thin) and validation (thick, dots) loss of every finished step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5))
    for i, row in enumerate(rows):
        style = line_style(i)
        steps, values = event_scalars(save_dir / row["step"], "train/loss")
        ax.plot(steps, values, color=style["color"], alpha=0.5, linewidth=1, label=f"{row['step']} train")
        steps, values = event_scalars(save_dir / row["step"], "eval/loss")
        ax.plot(steps, values, linewidth=2, label=f"{row['step']} validation", **style)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (nats/token; MLM: masked tokens)")
    ax.set_title("Training and validation loss")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_blimp_fields(rows: list[dict], path: Path) -> None:
    """BLiMP accuracy per field: one group of bars per field, one bar per step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scored = [r for r in rows if r.get("blimp")]
    fields = sorted({f for r in scored for f in r["blimp"]["fields"]})
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / max(len(scored), 1)
    for i, row in enumerate(scored):
        xs = [j + i * width for j in range(len(fields))]
        ax.bar(xs, [100 * row["blimp"]["fields"].get(f, 0.0) for f in fields], width, label=row["step"])
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(fields))], fields, fontsize=8)
    ax.axhline(50, color="grey", linestyle="--", linewidth=1)  # chance
    ax.set_ylabel("BLiMP accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# run_args.json entries that name a run rather than configure it, or follow from another option
_NOT_SETTINGS = {"output_dir", "overwrite_output_dir", "resume", "action", "debug", "cache_dir", "hybrid_masked_share",
                 "training_options"}  # the parser's list of option names, not a setting


def option_changes(args: dict, base: dict) -> str:
    """The options of `args` that differ from `base` (both run_args.json contents), as CLI words."""
    changed = []
    for key in sorted(set(args) | set(base)):
        if key in _NOT_SETTINGS or args.get(key) == base.get(key):
            continue
        value = args.get(key)
        if key == "tokenizer_dir":  # the vocabulary is what differs
            value = Path(str(value)).parent.name + "/" + Path(str(value)).name
        changed.append(f"--{key} {' '.join(map(str, value)) if isinstance(value, list) else value}")
    return ", ".join(changed) or "(none)"


def comparison_table(save_dir: Path, rows: list[dict], prefix: str, base: str) -> list[str]:
    """The runs named `prefix`* against run `base`: what each changes, and what it got."""
    runs = [r for r in rows if r["step"].startswith(prefix)]
    base_row = next((r for r in runs if r["step"] == base), None)
    if base_row is None or len(runs) < 2:
        return []
    base_args = RunFolder(save_dir / base).run_args() or {}
    base_blimp = (base_row.get("blimp") or {}).get("overall")
    lines = [f"| run | options changed from {base} | tokens seen | BLiMP overall | change vs {base} | best val loss "
             "| test nats per word |", "|---|---|---:|---:|---:|---:|---:|"]
    for r in runs:
        args = RunFolder(save_dir / r["step"]).run_args() or {}
        blimp = (r.get("blimp") or {}).get("overall")
        delta = "" if blimp is None or base_blimp is None else f"{100 * (blimp - base_blimp):+.1f}"
        lines.append(f"| {r['step']} | {option_changes(args, base_args) if r is not base_row else ''} | "
                     f"{r['tokens']:,} | {_fmt(None if blimp is None else 100 * blimp, '.1f')} | {delta} | "
                     f"{r['best_eval_loss']:.3f} | {_fmt((r.get('test') or {}).get('test_nats_per_word'), '.3f')} |")
    return lines


def read_curves(save_dir: Path) -> dict[str, dict]:
    """Every run's learning_curve.json (`run.py curve`), by run folder name."""
    curves = {}
    for path in sorted(save_dir.glob("*/learning_curve.json"), key=lambda p: _step_order(p.parent.name)):
        curves[path.parent.name] = json.loads(path.read_text())
        _mark_stale(curves[path.parent.name]["points"], path.parent, "name")
    return curves


def line_style(i: int) -> dict:
    """Matplotlib style of the i-th run in a plot: ten colours, then the same colours with another marker
    and dash pattern, so up to 30 runs stay apart (the default cycle repeats its colours after ten)."""
    return {"color": f"C{i % 10}", "marker": "os^"[i // 10 % 3], "linestyle": ("-", "--", ":")[i // 10 % 3]}


def plot_learning_curves(curves: dict[str, dict], path: Path) -> None:
    """BLiMP accuracy (left) and validation loss (right) against words seen (log scale), one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    for i, (name, curve) in enumerate(curves.items()):
        points = [p for p in curve["points"] if not p.get("stale")]  # a stale point scored other weights
        words = [p["words"] for p in points]
        left.plot(words, [100 * p["blimp"] for p in points], label=name, **line_style(i))
        right.plot(words, [p["eval_loss"] for p in points], label=name, **line_style(i))
    for ax, label in ((left, "BLiMP accuracy (%)"), (right, "validation loss (nats/token)")):
        ax.set_xscale("log")
        ax.set_xlabel("words seen")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    left.axhline(50, color="grey", linestyle="--", linewidth=1)  # chance
    fig.suptitle("Learning curves")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def curve_table(curves: dict[str, dict]) -> list[str]:
    """The learning curves as markdown: one row per scored model folder."""
    lines = ["| run | model folder | words seen | optimizer step | BLiMP overall | validation loss (dev blocks) |",
             "|---|---|---:|---:|---:|---:|"]
    for name, curve in curves.items():
        blocks = f" ({curve['eval_blocks']:,})" if "eval_blocks" in curve else ""
        lines += [f"| {name} | {p['name']} | {p['words']:,} | {p['step']} | {p['stale']} | |" if p.get("stale") else
                  f"| {name} | {p['name']} | {p['words']:,} | {p['step']} | {100 * p['blimp']:.1f} | "
                  f"{p['eval_loss']:.3f}{blocks} |" for p in curve["points"]]
    return lines


def read_checkpoint_scores(save_dir: Path) -> dict[str, dict]:
    """Every run's checkpoint_scores_<backend>.json (`run.py evaluate_checkpoints`), by "<step> (<backend>)"."""
    found = sorted(save_dir.glob("*/results/*/checkpoint_scores_*.json"), key=lambda p: _step_order(p.parts[-4]))
    scores = {}
    for path in found:
        data = json.loads(path.read_text())
        _mark_stale(data["points"], save_dir / path.parts[-4], "revision")
        scores[f"{path.parts[-4]} ({data['backend']})"] = data
    return scores


def _mark_stale(points: list[dict], run_dir: Path, key: str) -> None:
    """Give each point that scored other weights than its folder (`point[key]`) holds now a "stale" reason."""
    for point in points:
        folder = run_dir / point[key]
        _, why = current(point, folder_identity(folder), folder.name)
        if why:
            point["stale"] = why


def plot_checkpoint_scores(scores: dict[str, dict], save_dir: Path) -> list[str]:
    """One PNG per zero-shot task, its score against words seen (log scale), a line per run;
    returns the file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(dict.fromkeys(k for run in scores.values() for p in run["points"] for k in p["scores"]))
    names = []
    for key in keys:
        fig, ax = plt.subplots(figsize=(6, 4))
        for i, (name, run) in enumerate(scores.items()):
            points = [p for p in run["points"] if key in p["scores"] and not p.get("stale")]
            ax.plot([p["words"] for p in points], [p["scores"][key] for p in points], label=name, **line_style(i))
        ax.set_xscale("log")
        ax.set_xlabel("words seen")
        ax.set_ylabel("Spearman's rho" if key.startswith("wug") else "delta R2 %" if key.startswith("reading")
                      else "accuracy (%)")
        ax.set_title(f"{key} over checkpoints")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        names.append(f"checkpoints_{key.replace('/', '_')}.png")
        fig.savefig(save_dir / names[-1], dpi=100)
        plt.close(fig)
    return names


def checkpoint_table(scores: dict[str, dict]) -> list[str]:
    """A row per run and checkpoint: words seen, then each fast task's score."""
    keys = list(dict.fromkeys(k for run in scores.values() for p in run["points"] for k in p["scores"]))
    lines = ["| run | revision | words seen | " + " | ".join(keys) + " |", "|---|---|---:|" + "---:|" * len(keys)]
    for name, run in scores.items():
        for p in run["points"]:
            why = p.get("stale")
            cells = [why] + [""] * (len(keys) - 1) if why else [_fmt(p["scores"].get(k), ".2f") for k in keys]
            lines.append(f"| {name} | {p['revision']} | {p['words']:,} | " + " | ".join(cells) + " |")
    return lines


def finetune_table(rows: list[dict]) -> list[str]:
    """The fine-tuned steps, a column per task (the official seven first): the best epoch's validation
    accuracy, F1 and MCC in %."""
    tasks = sorted({t for r in rows if r.get("finetune") for t in r["finetune"].get("tasks", {})},
                   key=lambda t: (t not in FINETUNE_TASKS, t))
    stale = [r for r in rows if r.get("stale", {}).get("finetune")]
    if not tasks and not stale:
        return []
    tasks = tasks or ["tasks"]
    lines = ["| step | " + " | ".join(tasks) + " |", "|---|" + "---:|" * len(tasks)]
    for r in rows:
        if r.get("finetune"):
            done = r["finetune"].get("tasks", {})
            lines.append(f"| {r['step']} | " + " | ".join(_finetune_cell(done.get(t)) for t in tasks) + " |")
        elif r in stale:
            lines.append(f"| {r['step']} | {r['stale']['finetune']} |" + " |" * (len(tasks) - 1))
    return lines


def zero_shot_table(save_dir: Path, rows: list[dict]) -> list[str]:
    """The official zero-shot suite of every evaluated step (each backend and convention), the
    published baselines below; each row says what it was trained on and which sets it was scored on."""
    data_of = {r["step"]: r.get("data", "") for r in rows}
    lines = []
    # The final model only (revision main): the checkpoints have a table of their own.
    for path in sorted(save_dir.glob("*/results/*/main/zero_shot_summary_*.json"),
                       key=lambda p: _step_order(p.parts[-5])):
        record = _read(path) or {}
        step, revision = path.parts[-5], path.parts[-2]
        folder = RunFolder(save_dir / step).model_folder(revision)
        _, why = current(record, folder_identity(folder), folder.name)
        if why:
            lines.append(f"| {step} ({revision}) | {data_of.get(step, '')} | {record.get('backend')} | | | {why} |"
                         + " |" * len(ZERO_SHOT_COLUMNS))
            continue
        for convention, tasks in record.get("results", {}).items():
            cells, ties = [], []
            for name, prefix in ZERO_SHOT_COLUMNS:
                found = [v for k, v in tasks.items() if k.startswith(prefix)]
                cells.append(_fmt(found[0]["score"], ".2f") if len(found) == 1 else "")
                ties += [f"{name} {found[0]['ties']}"] if len(found) == 1 and found[0].get("ties") else []
            known = any("ties" in v for v in tasks.values())  # summaries written before ties were counted have none
            sets = Path(record.get("eval_dir", "")).name
            lines.append(f"| {step} ({record.get('revision', 'main')}) | {data_of.get(step, '')} | "
                         f"{record.get('backend')} | {convention} | {sets} | " + " | ".join(cells)
                         + f" | {', '.join(ties) or ('0' if known else '')} |")
    if not lines:
        return []
    names = [name for name, _ in ZERO_SHOT_COLUMNS]
    head = ["model", "training data", "backend", "convention", "evaluation sets", *names, "tied items"]
    baselines = [f"| {name} (published) | BabyLM strict-small, 10M words | | official | | "
                 + " | ".join(_fmt(scores.get(col), ".1f") for col in names) + " | |"
                 for name, scores in PUBLISHED_BASELINES]
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *lines, *baselines]


def write_report(save_dir: str | Path) -> Path:
    """Write `<save_dir>/report.md` (+ PNG plots); returns its path."""
    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    rows = collect(save_dir)
    lines = [f"# Results in {save_dir}", "", *steps_table(save_dir, rows)]
    comparisons = (("sweep_", "sweep_base", "Sweep (make sweep)"),
                   ("ablate_", "ablate_recipe", "Ablation: the recipe with each choice undone (make ablation)"),
                   ("best_", "best_baseline", "Full-budget runs against the baseline (make best/baseline/candidates)"))
    for prefix, base, title in comparisons:
        table = comparison_table(save_dir, rows, prefix, base)
        if table:
            lines += ["", f"## {title}", "", *table]
    lines += evaluation_sections(save_dir, rows)
    path = save_dir / "report.md"
    write_text_atomic(path, "\n".join(lines) + "\n")
    print(f"report: {path}")
    return path


def steps_table(save_dir: Path, rows: list[dict]) -> list[str]:
    """The table of every finished step (training, test, BLiMP, fine-tuning) and its two plots."""
    fields = sorted({f for r in rows if r.get("blimp") for f in r["blimp"]["fields"]})
    tasks = sorted({t for r in rows if r.get("finetune") for t in r["finetune"].get("tasks", {})})
    masked_column = any(r.get("blimp_masked") for r in rows)
    head = ["step", "architecture", "objective", "training data", "parameters",
            "tokens seen (with the run it continued)", "train time (s)",
            "best val loss", "test perplexity", "BLiMP overall", *[f"BLiMP {f}" for f in fields],
            *(["BLiMP overall, masked next-token PLL (hybrid)"] if masked_column else []),
            *[f"{t} (fine-tuned)" for t in tasks]]
    lines = ["BLiMP in %, unweighted mean over paradigms (per field: over that field's paradigms). "
             "Fine-tuning: validation accuracy of the best epoch (F1 / MCC where the task defines one), "
             "optimistic since the epoch is chosen on the same split, as in BabyLM's own pipeline. "
             "Perplexity of masked LMs is over the masked tokens. Only the steps that finished training are "
             "listed.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        test, bl, ft = r.get("test") or {}, r.get("blimp") or {}, (r.get("finetune") or {}).get("tasks", {})
        stale = r.get("stale", {})
        cells = [r["step"], r.get("architecture", ""), r.get("objective", ""), r.get("data", ""),
                 _fmt(r.get("parameters"), ","), _fmt(r.get("tokens"), ","), _fmt(r.get("seconds"), ".0f"),
                 _fmt(r.get("best_eval_loss"), ".3f"), stale.get("test") or _fmt(test.get("test_perplexity"), ".2f"),
                 stale.get("blimp") or (_fmt(100 * bl["overall"], ".1f") if bl else ""),
                 *[_fmt(100 * bl["fields"][f], ".1f") if f in bl.get("fields", {}) else "" for f in fields],
                 *([stale.get("blimp_masked") or (_fmt(100 * r["blimp_masked"]["overall"], ".1f")
                                                  if r.get("blimp_masked") else "")] if masked_column else []),
                 *[_finetune_cell(ft.get(t)) for t in tasks]]
        lines.append("| " + " | ".join(cells) + " |")
    if rows:
        plot_losses(save_dir, rows, save_dir / "loss_curves.png")
        lines += ["", "![training and validation loss](loss_curves.png)"]
    else:
        lines += ["", f"No step under {save_dir} has finished training yet."]
    if fields:
        plot_blimp_fields(rows, save_dir / "blimp_fields.png")
        lines += ["", "![BLiMP per field](blimp_fields.png)"]
    return lines


def evaluation_sections(save_dir: Path, rows: list[dict]) -> list[str]:
    """The official suite, fine-tuning, checkpoints and learning-curve sections (those with results)."""
    lines = []
    zero_shot = zero_shot_table(save_dir, rows)
    if zero_shot:
        lines += ["", "## Official zero-shot suite (run.py evaluate)", "",
                  "Accuracy in % (WUG: Spearman's rho; reading: % of the variance the baseline leaves that "
                  "surprisal explains). official: the official pipeline's scorer, exactly; strict: every word "
                  "scored, a tie wrong. Scores on the fast sets are not comparable with the published "
                  "baselines' when the training data differ.", "", *zero_shot]
    finetuned = finetune_table(rows)
    if finetuned:
        lines += ["", "## Fine-tuning (run.py finetune)", "",
                  "Validation accuracy of the best epoch in % (F1 of label 1 and MCC for two-label tasks), chosen "
                  "on the same split as in the official pipeline; cross-fit: trained on folds of the valid file, "
                  "not the official protocol.", "", *finetuned]
    checkpoint_scores = read_checkpoint_scores(save_dir)
    if checkpoint_scores:
        pictures = plot_checkpoint_scores(checkpoint_scores, save_dir)
        lines += ["", "## Fast zero-shot suite over checkpoints (run.py evaluate_checkpoints)", "",
                  "Official convention, each words-seen checkpoint (chck_*) scored on the fast sets.", "",
                  *checkpoint_table(checkpoint_scores), "", *[f"![{p}]({p})" for p in pictures]]
    curves = read_curves(save_dir)
    if curves:
        plot_learning_curves(curves, save_dir / "learning_curves.png")
        lines += ["", "## Learning curves", "", "BLiMP and validation loss (float32, the run's validation files) "
                  "of each run's words-seen checkpoints and best model (`run.py curve`).", "",
                  *curve_table(curves), "", "![learning curves](learning_curves.png)"]
    return lines


def _finetune_cell(task: dict | None) -> str:
    if not task:
        return ""
    metrics = task.get("metrics", {})
    cell = f"{100 * metrics['accuracy']:.1f}" if "accuracy" in metrics else ""
    for name in ("f1", "mcc"):
        if name in metrics:
            cell += f" / {name.upper()} {100 * metrics[name]:.1f}"
    return cell + (" (cross-fit)" if "cross_fit" in task else "")
