"""Where the official BabyLM evaluation (evaluation-pipeline-2025, reused by the 2026
edition) files its results, and how many items each of its sets holds.

Every evaluation of a training run writes under the run's `results/` folder in the
official layout,

    <run>/results/<model name>/<revision>/zero_shot/<backend>/<task>/<data dir>/predictions.json
    <run>/results/<model name>/<revision>/finetune/<task>/{results.txt, predictions.json}
    <run>/results/<model name>/all_full_preds_and_fast_scores_<backend>.json   (the submission)

where the model name is the run's folder name (the model repository a submission
publishes) and the revision is `main` for the final model (`best_model/`) and the
checkpoint's name for a words-seen checkpoint (`chck_1M/`, ...), the names the
official pipeline reads them under. The sizes below are those the official collate
step checks before it writes a submission (`collate_preds.py`)."""

from __future__ import annotations

import json
from pathlib import Path

from utils import (  # noqa: F401 (MAIN, model_name_and_revision: the layout's rule, in utils for the core)
    BABYLM_WORD_MARKS,
    MAIN,
    RESULTS_DIR,
    TRAIN_RESULTS,
    WORD_CHECKPOINT_PREFIX,
    UserError,
    model_name_and_revision,
    word_mark_name,
)

# The checkpoints a submission reports fast scores for, by track: every 1M words to 10M,
# then every 10M to the track's budget (strict: then every 100M to chck_1000M, as the pipeline names them).
# strict-small is exactly --checkpoint_words babylm; strict needs the marks 200M ... 1000M added
# (--checkpoint_words babylm 200M 300M 400M 500M 600M 700M 800M 900M 1000M).
_BABYLM_REVISIONS = [WORD_CHECKPOINT_PREFIX + word_mark_name(mark) for mark in BABYLM_WORD_MARKS]
REVISIONS = {"strict-small": _BABYLM_REVISIONS,
             "strict": _BABYLM_REVISIONS[:-1] + [f"chck_{100 * i}M" for i in range(1, 11)]}


def submission_track(run_dir: Path, given: str | None) -> str:
    """The track whose checkpoints a run's submission covers: `given` (--track), else the one the run
    trained under (train_results.json), else strict-small. UserError for 'none' (no submission track)."""
    results = Path(run_dir) / TRAIN_RESULTS
    trained = json.loads(results.read_text()).get("track") if results.is_file() else None
    track = given or (trained if trained in REVISIONS else None) or "strict-small"
    if track not in REVISIONS:
        raise UserError(f"a submission is for the strict-small or strict track, not '{track}': pass --track "
                        "strict-small or --track strict")
    return track

# The fine-tuning tasks of a submission and the official defaults of each (eval_finetuning.sh):
# learning rate 3e-5, batch 32 (16 for the long-passage tasks), 10 epochs (30 for WSC), seed 42,
# the best epoch chosen by accuracy (F1 for the paraphrase tasks) on the validation file.
FINETUNE_TASKS = ("boolq", "mnli", "mrpc", "multirc", "qqp", "rte", "wsc")
FINETUNE_DEFAULTS = {"learning_rate": 3e-5, "batch_size": 32, "epochs": 10, "seed": 42}
FINETUNE_TASK_DEFAULTS = {"boolq": {"batch_size": 16}, "multirc": {"batch_size": 16}, "wsc": {"epochs": 30}}

# Items per subtask (an int: every subtask of the set has that many) the collate step requires.
FAST_SIZES: dict[str, int | dict[str, int]] = {
    "blimp": 200, "blimp_supplement": 50, "ewok": 100, "reading": 1726, "wug_adj": 200, "wug_past": 50,
    "entity_tracking": {"regular_0_ops": 606, "regular_1_ops": 607, "regular_2_ops": 606, "regular_3_ops": 606,
                        "regular_4_ops": 568, "regular_5_ops": 159},
}
FULL_SIZES: dict[str, int | dict[str, int]] = {
    "blimp": {
        "superlative_quantifiers_2": 986, "superlative_quantifiers_1": 979, "anaphor_gender_agreement": 971,
        "principle_a_reconstruction": 967, "irregular_past_participle_adjectives": 961,
        "sentential_subject_island": 961, "wh_island": 960, "left_branch_island_simple_question": 951,
        "coordinate_structure_constraint_object_extraction": 949, "tough_vs_raising_1": 948,
        "left_branch_island_echo_question": 947, "principle_a_c_command": 946,
        "regular_plural_subject_verb_agreement_2": 945, "irregular_past_participle_verbs": 942,
        "determiner_noun_agreement_with_adj_2": 941, "principle_a_domain_3": 941,
        "determiner_noun_agreement_with_adjective_1": 933, "anaphor_number_agreement": 931,
        "determiner_noun_agreement_2": 931, "existential_there_quantifiers_1": 930,
        "determiner_noun_agreement_1": 929, "matrix_question_npi_licensor_present": 929, "adjunct_island": 928,
        "existential_there_subject_raising": 924, "animate_subject_trans": 923, "drop_argument": 920,
        "tough_vs_raising_2": 920, "wh_vs_that_with_gap": 919, "sentential_negation_npi_licensor_present": 919,
        "principle_a_case_2": 915, "principle_a_domain_2": 915, "principle_a_domain_1": 914, "npi_present_2": 914,
        "principle_a_case_1": 912, "existential_there_quantifiers_2": 911,
        "wh_vs_that_with_gap_long_distance": 910, "npi_present_1": 909,
        "coordinate_structure_constraint_complex_left_branch": 906, "passive_2": 903,
        "wh_questions_subject_gap": 898, "animate_subject_passive": 895,
        "irregular_plural_subject_verb_agreement_2": 892, "regular_plural_subject_verb_agreement_1": 890,
        "only_npi_licensor_present": 882, "wh_vs_that_no_gap_long_distance": 875,
        "distractor_agreement_relative_clause": 871, "sentential_negation_npi_scope": 871, "intransitive": 868,
        "transitive": 868, "wh_vs_that_no_gap": 861, "wh_questions_object_gap": 859,
        "wh_questions_subject_gap_long_distance": 857, "inchoative": 855, "complex_np_island": 846,
        "passive_1": 840, "determiner_noun_agreement_with_adj_irregular_2": 840, "only_npi_scope": 837,
        "ellipsis_n_bar_2": 828, "determiner_noun_agreement_irregular_2": 820, "causative": 818,
        "existential_there_object_raising": 812, "irregular_plural_subject_verb_agreement_1": 804,
        "ellipsis_n_bar_1": 802, "distractor_agreement_relational_noun": 788, "expletive_it_object_raising": 759,
        "determiner_noun_agreement_with_adj_irregular_1": 718, "determiner_noun_agreement_irregular_1": 681},
    "blimp_supplement": {"hypernym": 842, "qa_congruence_easy": 64, "qa_congruence_tricky": 165,
                         "subject_aux_inversion": 3867, "turn_taking": 280},
    "ewok": {"agent-properties": 2210, "social-relations": 1548, "physical-relations": 818,
             "material-dynamics": 770, "physical-interactions": 556, "spatial-relations": 490,
             "social-properties": 328, "quantitative-properties": 314, "social-interactions": 294,
             "material-properties": 170, "physical-dynamics": 120},
    "entity_tracking": {f"{split}_{n}_ops": size for split, sizes in (
        ("regular", (606, 607, 606, 606, 568, 159)), ("ambiref", (607, 607, 604, 604, 615, 187)),
        ("move_contents", (605, 606, 605, 606, 529, 156))) for n, size in enumerate(sizes)},
    "comps": {"base": 49340, "wugs_dist_before": 13896, "wugs_dist_in_between": 13896, "wugs": 13896},
    "reading": 1726, "wug_adj": 200, "wug_past": 50,
    "boolq": 1635, "mnli": 4908, "mrpc": 204, "multirc": 2424, "qqp": 20215, "rte": 139, "wsc": 52,
}
AOA_WORDS = 8005  # records per checkpoint in AoA_word/surprisal.json (collate_preds.py AOA_SIZE)

# Each zero-shot entry of a submission: (its key, the task folder, the data folder of the full
# sets, that of the fast sets or None when the fast suite leaves it out).
ZERO_SHOT_ENTRIES = (("blimp", "blimp", "blimp_filtered", "blimp_fast"),
                     ("blimp_supplement", "blimp", "supplement_filtered", "supplement_fast"),
                     ("ewok", "ewok", "ewok_filtered", "ewok_fast"),
                     ("entity_tracking", "entity_tracking", "entity_tracking", "entity_tracking_fast"),
                     ("wug_adj", "wug_adj", "wug_adj_nominalization", "wug_adj_nominalization"),
                     ("wug_past", "wug_past", "wug_past_tense", "wug_past_tense"),
                     ("comps", "comps", "comps", None))


def default_results_root(model_dir: str | Path) -> Path:
    """The results/ folder beside a saved model (inside its run folder)."""
    return Path(model_dir).resolve().parent / RESULTS_DIR


def revision_dir(root: str | Path, model_name: str, revision: str) -> Path:
    """<root>/<model name>/<revision>: everything evaluated of one model revision."""
    return Path(root) / model_name / revision


def finetune_dir(root: str | Path, model_name: str, revision: str, task: str) -> Path:
    """<root>/<model name>/<revision>/finetune/<task>: a fine-tuning task's results.txt and predictions.json."""
    return revision_dir(root, model_name, revision) / "finetune" / task


def zero_shot_dir(root: str | Path, model_name: str, revision: str, convention: str, backend: str) -> Path:
    """<root>/<model name>/<revision>/zero_shot[_<convention>]/<backend>: `zero_shot/` holds the
    official convention (what the leaderboard takes), `zero_shot_strict/` the strict one."""
    top = "zero_shot" if convention == "official" else f"zero_shot_{convention}"
    return revision_dir(root, model_name, revision) / top / backend


def submission_path(root: str | Path, model_name: str, backend: str, partial: bool = False) -> Path:
    """<root>/<model name>/all_full_preds_and_fast_scores_<backend>[_partial].json."""
    return Path(root) / model_name / f"all_full_preds_and_fast_scores_{backend}{'_partial' if partial else ''}.json"


def aoa_collate_note(steps: list[str], per_step: int) -> str | None:
    """Why the official collate step would refuse an AoA surprisal.json of the checkpoints `steps`,
    `per_step` records each, or None."""
    problems = []
    if not any(sorted(steps) == sorted(names) for names in REVISIONS.values()):
        tracks = ", ".join(f"{track}: {len(names)}" for track, names in REVISIONS.items())
        problems.append(f"its checkpoints are not one track's revisions ({tracks})")
    if per_step != AOA_WORDS:
        problems.append(f"it holds {per_step} records a checkpoint, not {AOA_WORDS}")
    return "; ".join(problems) or None
