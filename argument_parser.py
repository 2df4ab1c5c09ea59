"""The one argparse parser of the pipeline.

Every hyper-parameter is defined here once, with its default; run.py dispatches
on the action and both training loops read the same namespace."""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass
from typing import NoReturn

from utils import BABYLM_WORD_MARKS, TRACKS, parse_word_mark

ACTIONS = ("tokenizer", "dataset", "train", "test", "blimp", "evaluate", "finetune", "report", "stats", "curve",
           "evaluate_checkpoints", "submission", "export")
MODEL_TYPES = ("gpt2", "llama", "bert", "gpt_bert")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
COMPILE_CHOICES = ("auto", "on", "off")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends '(default: X)' to every option, unless its help already says the default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if "default:" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class _OneLineErrorParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr, exit code 2, without the
    usage block (the pipeline's errors are all one line: what is wrong, how to fix it)."""

    def error(self, message: str) -> NoReturn:
        message = " ".join(message.splitlines())
        self.exit(2, f"{self.prog}: error: {message} (see python {self.prog} --help)\n")


@dataclass(frozen=True)
class Range:
    """The values a numeric option may take (NaN and infinity never): above `low` (or at
    it, `low_in`), below `high` (or at it, `high_in`)."""

    low: float
    high: float = math.inf
    low_in: bool = True
    high_in: bool = False
    hint: str = ""  # appended to the error, e.g. how to get the default back

    def holds(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        above = value >= self.low if self.low_in else value > self.low
        below = value <= self.high if self.high_in else value < self.high
        return above and below

    def says(self) -> str:
        def show(x: float) -> str:
            return str(int(x)) if float(x).is_integer() else f"{x:g}"

        low = (f"at least {show(self.low)}" if self.low else "0 or more") if self.low_in else \
            f"greater than {show(self.low)}"
        if self.high == math.inf:
            return low
        return f"{low} and {'at most' if self.high_in else 'below'} {show(self.high)}"


AT_LEAST_1, POSITIVE, NON_NEGATIVE, SHARE = Range(1), Range(0, low_in=False), Range(0), Range(0, 1)
RANGES: dict[str, Range] = {}  # option dest -> its range, filled as the parser is built


def _number(group: argparse._ArgumentGroup, flag: str, valid: Range, **kwargs) -> None:
    """Add a numeric option whose range is checked after parsing (`_check_ranges`)."""
    action = group.add_argument(flag, **kwargs)
    RANGES[action.dest] = valid


def build_parser() -> argparse.ArgumentParser:
    """Return the parser for `python run.py ACTION [options]`."""
    p = _OneLineErrorParser(
        prog="run.py",
        description="BabyLM pipeline: train a tokenizer, build the packed dataset, "
        "train a model with the custom PyTorch loop (--torch_training) or the HF Trainer, "
        "or test a saved model.",
        formatter_class=_HelpFormatter,
    )
    p.add_argument("action", choices=ACTIONS, help="what to do")
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    # One function per option group, in --help's order; each declares its options' ranges beside them.
    for add_options in (_data_options, _tokenizer_options, _model_options, _training_options, _curriculum_options,
                        _objective_options, _blimp_options, _evaluate_options, _finetune_options,
                        _submission_options, _report_options):
        add_options(p)
    return p


def _data_options(p: argparse.ArgumentParser) -> None:
    """The option group 'data'."""
    g = p.add_argument_group("data")
    g.add_argument("--data_dir", default="data/babylm_data",
                   help="the corpus: a BabyLM 2023 or 2024 release, a Hugging Face dataset on disk or a folder of "
                   ".txt files (detected and logged; docs/data.md)")
    g.add_argument("--train_split", default=None,
                   help="a release's training set: 10M or 100M (babylm_10M/train_10M or babylm_100M/train_100M), "
                   "or a folder name (default: 10M)")
    g.add_argument("--train_files", nargs="+", default=None, metavar="SOURCE",
                   help="training sources by name, e.g. aochildes switchboard, or @easier/@harder (the "
                   "release's curriculum lists) (default: every file present)")
    g.add_argument("--validation_files", nargs="+", default=None, metavar="SOURCE",
                   help="validation sources (default: every file present)")
    g.add_argument("--test_files", nargs="+", default=None, metavar="SOURCE",
                   help="test sources (default: every file present)")
    g.add_argument("--cache_dir", default="cache",
                   help="where packed datasets (and held-out or converted corpora) are cached")
    _number(g, "--block_size", Range(2, hint=' (a one-token block has nothing to predict)'), type=int, default=128,
            help="tokens per training block")
    _number(g, "--num_proc", AT_LEAST_1, type=int, default=1, help="processes for tokenizing the corpus")
    g.add_argument("--no_cleaning", action="store_true",
                   help="use the corpus lines as they are: no per-source cleaning (rules in corpus/cleaning.py)")


def _tokenizer_options(p: argparse.ArgumentParser) -> None:
    """The option group 'tokenizer'."""
    g = p.add_argument_group("tokenizer")
    g.add_argument("--tokenizer_dir", default=None,
                   help="tokenizer folder: written by the tokenizer action, read by the others")
    g.add_argument("--tokenizer_type", choices=("clm", "mlm"), default="clm",
                   help="clm: byte-level BPE for GPT-2/Llama; mlm: byte-level BPE with "
                   "<s> </s> <pad> <unk> <mask> for BERT")
    _number(g, "--vocab_size", AT_LEAST_1, type=int, default=16000, help="tokenizer vocabulary size")
    _number(g, "--min_frequency", AT_LEAST_1, type=int, default=2, help="minimum pair frequency for a BPE merge")
    _number(g, "--model_max_length", AT_LEAST_1, type=int, default=512, help="the tokenizer's max length")
    g.add_argument("--lowercase", action="store_true",
                   help="the tokenizer lowercases its input (saved with it, so training, test and BLiMP text alike)")
    g.add_argument("--join_punctuation", action="store_true",
                   help="the tokenizer removes the space before . , ? ! ; : 's n't (PTB-style sources: aochildes, cbt)")


def _model_options(p: argparse.ArgumentParser) -> None:
    """The option group 'model'."""
    g = p.add_argument_group("model")
    g.add_argument("--model_type", choices=MODEL_TYPES, default=None,
                   help="architecture of a freshly built model (gpt2/llama: causal LM, bert: masked LM, gpt_bert: "
                   "hybrid causal + masked next-token LM, see hybrid_model.py; it needs a tokenizer with a mask "
                   "token: --tokenizer_type mlm) (default: gpt2, or --init_model's type)")
    g.add_argument("--init_model", default=None,
                   help="continue training from this saved model folder instead of a fresh model")
    _number(g, "--hidden_size", AT_LEAST_1, type=int, default=256, help="model width")
    _number(g, "--num_layers", AT_LEAST_1, type=int, default=4, help="transformer blocks")
    _number(g, "--num_heads", AT_LEAST_1, type=int, default=4, help="attention heads (must divide --hidden_size)")
    _number(g, "--intermediate_size", Range(1, hint=' (leave it out for 4 x --hidden_size)'), type=int, default=None,
            help="MLP width (default: 4 x hidden_size)")
    _number(g, "--max_position_embeddings", AT_LEAST_1, type=int, default=512,
            help="positions the model supports (must be >= --block_size)")
    # Off by default: BabyLM-size runs see each token only a few times, so there is little
    # to regularise, and dropout costs step time.
    _number(g, "--dropout", SHARE, type=float, default=0.0, help="dropout on attention, residual and embeddings")
    g.add_argument("--attn_implementation", choices=("eager", "sdpa"), default="eager",
                   help="attention kernel (eager and sdpa trained the step2 GPT-2 equally fast on this CPU)")


def _training_options(p: argparse.ArgumentParser) -> None:
    """The option group 'training'."""
    g = p.add_argument_group("training")
    g.add_argument("--torch_training", action="store_true",
                   help="train with the custom PyTorch loop instead of the Hugging Face Trainer")
    g.add_argument("--output_dir", default=None, help="run folder for train and test results")
    g.add_argument("--overwrite_output_dir", action="store_true",
                   help="train even if --output_dir already holds a finished run")
    g.add_argument("--model_dir", default=None, help="saved model to test (test action)")
    _number(g, "--num_train_epochs", POSITIVE, type=float, default=None,
            help="passes over the training blocks (default 1)")
    _number(g, "--max_steps", Range(1, hint=' (leave it out to train for --num_train_epochs)'), type=int, default=None,
            help="optimizer steps, overriding --num_train_epochs (default: from the epochs)")
    _number(g, "--max_minutes", POSITIVE, type=float, default=None,
            help="train for this many minutes of wall-clock time inside optimizer steps (compiling included; "
            "validation and checkpoint writing not) instead of a number of steps or epochs: the warm-up + cosine "
            "schedule runs on the share of the budget used, so it ends when the budget does")
    g.add_argument("--track", choices=TRACKS, default=None,
                   help="the BabyLM track. Training: strict-small and strict refuse training data over 10M / 100M "
                   "words and a plan of more than 10 epochs (a --max_minutes run stops at the tenth); none checks "
                   "nothing (default: none). Submission: which checkpoints the fast scores must cover "
                   "(strict-small: chck_1M ... chck_100M; strict: up to chck_1000M) (default: the run's track, "
                   "else strict-small)")
    _number(g, "--batch_size", AT_LEAST_1, type=int, default=32, help="training blocks per micro-batch")
    _number(g, "--eval_batch_size", AT_LEAST_1, type=int, default=64, help="blocks per validation/test batch")
    _number(g, "--eval_blocks", Range(1, hint=' (leave it out to validate on all)'), type=int, default=None,
            help="validate during training (and score the curve action's validation loss) on this many blocks, evenly "
            "spaced over the validation files (the same ones every time; default: all)")
    _number(g, "--gradient_accumulation_steps", AT_LEAST_1, type=int, default=1,
            help="micro-batches per optimizer step")
    _number(g, "--learning_rate", POSITIVE, type=float, default=5e-4, help="peak learning rate")
    _number(g, "--warmup_ratio", SHARE, type=float, default=0.05,
            help="share of the optimizer steps spent in linear warm-up before cosine decay to 0")
    _number(g, "--weight_decay", NON_NEGATIVE, type=float, default=0.1,
            help="AdamW decay (not applied to biases or norms)")
    _number(g, "--adam_beta1", SHARE, type=float, default=0.9, help="AdamW beta1")
    _number(g, "--adam_beta2", SHARE, type=float, default=0.98, help="AdamW beta2")
    _number(g, "--adam_epsilon", NON_NEGATIVE, type=float, default=1e-8, help="AdamW epsilon")
    _number(g, "--grad_norm_clip", NON_NEGATIVE, type=float, default=1.0, help="clip the global gradient norm (0: off)")
    # fp32/off by default so that a bare command computes the same numbers on every machine;
    # the Makefile passes auto (FAST), which chooses from the hardware (training/hardware.py).
    g.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="numeric precision of training and evaluation: auto (bf16 where the device computes it "
                   "natively, fp16 on a CUDA GPU without bf16, else fp32), fp32, bf16 or fp16 (autocast; fp16 with "
                   "a gradient scaler)")
    g.add_argument("--bf16", dest="precision", action="store_const", const="bf16", help="alias of --precision bf16")
    g.add_argument("--compile", nargs="?", choices=COMPILE_CHOICES, const="on", default="off",
                   help="torch.compile the model for training (both loops; the first steps pay the compile time, "
                   "cached under --cache_dir for reruns): auto (on CUDA, and on a CPU with native bf16), on "
                   "(--compile alone), or off")
    _number(g, "--num_threads", Range(1, hint=' (leave it out for one per core)'), type=int, default=None,
            help="torch CPU threads (default: torch's choice, one per core)")
    _number(g, "--mlm_probability", Range(0, 1, low_in=False), type=float, default=0.15,
            help="share of tokens masked for MLM")
    _number(g, "--eval_steps", AT_LEAST_1, type=int, default=500,
            help="validate every N optimizer steps (and at epoch end)")
    _number(g, "--logging_steps", AT_LEAST_1, type=int, default=50, help="log training metrics every N optimizer steps")
    _number(g, "--early_stopping_patience", Range(0, hint=' (0: never stop early)'), type=int, default=0,
            help="stop after N validations without a new best loss (0: never)")
    _number(g, "--save_steps", AT_LEAST_1, type=int, default=500,
            help="write a resumable checkpoint every N optimizer steps (and at each epoch end)")
    _number(g, "--save_total_limit", AT_LEAST_1, type=int, default=2,
            help="keep only the newest N resumable checkpoints (the best model is always kept)")
    g.add_argument("--resume", nargs="?", choices=("yes", "auto"), const="yes", default=None,
                   help="continue the run in --output_dir from its newest complete checkpoint; --resume auto: "
                   "continue it if it has one, else start it (over) (what make passes; default: no resume)")
    g.add_argument("--skip_nonfinite", action="store_true",
                   help="skip batches whose loss is NaN/inf, counting them, instead of stopping "
                   "(custom loop only)")
    g.add_argument("--checkpoint_words", nargs="+", default=None, metavar="WORDS",
                   help="also save a model folder <output_dir>/chck_<mark> when the words seen (of the source text, "
                   "counted over all processes) cross each mark, e.g. 1M 2M 5M 10M (suffixes K, M, B); 'babylm' "
                   "stands for the BabyLM checkpoints: every 1M words up to 10M, then every 10M up to 100M "
                   "(default: none)")
    _number(g, "--seed", Range(0, 2**32, hint=" (numpy's seed range)"), type=int, default=42,
            help="seed for initialisation, data order and masking")
    g.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:1, mps")


def _curriculum_options(p: argparse.ArgumentParser) -> None:
    """The option group 'data curriculum (training; see training/curriculum.py)'."""
    g = p.add_argument_group("data curriculum (training; see training/curriculum.py)")
    g.add_argument("--difficulty", choices=("length", "unigram", "source"), default=None,
                   help="order the training blocks by difficulty and pace them in: length (mean tokens per line "
                   "in the block), unigram (mean surprisal of its tokens) or source (its file's rank: "
                   "--easier_files before --harder_files) (default: no curriculum)")
    g.add_argument("--easier_files", nargs="+", default=["@easier"], metavar="SOURCE",
                   help="sources ranked easier for --difficulty source (default: the release's easier list, "
                   "corpus/editions.py)")
    g.add_argument("--harder_files", nargs="+", default=["@harder"], metavar="SOURCE",
                   help="sources ranked harder for --difficulty source (default: the release's harder list)")
    g.add_argument("--pacing", choices=("linear", "quad", "root", "step", "exp", "log"), default="linear",
                   help="how fast the available share of the easiest blocks grows")
    _number(g, "--start_percent", Range(0, 1, high_in=True), type=float, default=0.0625,
            help="share of the steps before the pool starts growing")
    _number(g, "--end_percent", Range(0, 1, high_in=True), type=float, default=0.875,
            help="share of the steps after which all data is used")
    _number(g, "--start_share", Range(0, 1, low_in=False, high_in=True), type=float, default=0.1,
            help="share of the easiest blocks available at first")
    _number(g, "--pacing_steps", AT_LEAST_1, type=int, default=None, metavar="N",
            help="pace the data over the first N optimizer steps, then train on all of it (default: the run's steps; "
            "needed with --max_minutes, which leaves the step count open)")

    g.add_argument("--objective_schedule", default=None, metavar="STEP:KEY=VALUE,...",
                   help="objective settings by optimizer step, each holding until the next, e.g. "
                   "'0:mlm_probability=0.3,2000:mlm_probability=0.15' (masked LMs and gpt_bert) or "
                   "'0:masked_share=1,1000:masked_share=0' (gpt_bert: share of masked steps, 0 to 1; default: "
                   "--mlm_probability and --hybrid_ratio throughout)")


def _objective_options(p: argparse.ArgumentParser) -> None:
    """The option group 'distillation and the hybrid objective (training; see training/losses.py)'."""
    g = p.add_argument_group("distillation and the hybrid objective (training; see training/losses.py)")
    g.add_argument("--teacher_models", nargs="+", default=None, metavar="DIR",
                   help="distil from these saved models (best_model folders trained with the same tokenizer): "
                   "loss = alpha * CE + (1 - alpha) * T^2 * KL(average of the teachers' softmax(logits / T) || "
                   "student) per predicted token (default: no distillation)")
    _number(g, "--distill_alpha", Range(0, 1, high_in=True), type=float, default=0.5,
            help="weight of the cross-entropy with the data (1: plain training, 0: teachers only)")
    _number(g, "--distill_temperature", POSITIVE, type=float, default=2.0,
            help="softmax temperature T of teachers and student in the KL term")
    g.add_argument("--hybrid_ratio", default="15:1", metavar="MASKED:CAUSAL",
                   help="gpt_bert: optimizer steps of masked next-token prediction to causal LM steps, e.g. 15:1 "
                   "or 1:1 (each step's batch is one or the other, evenly interleaved; the objective_schedule key "
                   "masked_share overrides it by step)")


def _blimp_options(p: argparse.ArgumentParser) -> None:
    """The option group 'BLiMP (blimp action; the test action too when --blimp_dir is given)'."""
    g = p.add_argument_group("BLiMP (blimp action; the test action too when --blimp_dir is given)")
    g.add_argument("--blimp_dir", default=None,
                   help="folder of BLiMP-format jsonl files, one per paradigm (default: none, no BLiMP)")
    _number(g, "--blimp_batch_size", AT_LEAST_1, type=int, default=64,
            help="sentences (causal) or masked copies (PLL) per forward pass")
    g.add_argument("--blimp_prefix_space", action="store_true",
                   help="score ' ' + sentence, as lm-eval 0.4's blimp tasks do (default: the sentence as written, "
                   "as every training line starts after EOS)")
    g.add_argument("--pll_variant", choices=("within_word_l2r", "token"), default="within_word_l2r",
                   help="masked-LM pseudo-log-likelihood: mask each token alone (token) or also the "
                   "later sub-tokens of its word (within_word_l2r)")
    g.add_argument("--hybrid_scoring", choices=("causal", "masked"), default="causal",
                   help="gpt_bert models: causal log-likelihood, or masked next-token pseudo-log-likelihood (each "
                   "token masked in turn as --pll_variant says, bidirectional attention, its log-probability read "
                   "at the position before it)")


def _evaluate_options(p: argparse.ArgumentParser) -> None:
    """The option group 'official zero-shot suite (evaluate action)'."""
    g = p.add_argument_group("official zero-shot suite (evaluate action; --pll_variant applies under strict)")
    g.add_argument("--eval_dir", default=None,
                   help="the official full_eval/ or fast_eval/ folder (make eval_data): every task folder found "
                   "there is scored (blimp_*, supplement_*, ewok_*, entity_tracking*, wug_*, comps*, reading/); "
                   "or the evaluation_data/ folder holding both (see --fast)")
    g.add_argument("--fast", action="store_true",
                   help="with --eval_dir the evaluation_data/ folder: score its fast_eval/ (default: full_eval/)")
    g.add_argument("--backend", choices=("causal", "mlm", "mntp"), default=None,
                   help="how candidates are scored (default: from the model type: gpt2/llama causal, bert mlm, "
                   "gpt_bert mntp)")
    g.add_argument("--convention", choices=("official", "strict", "both"), default="both",
                   help="official: exactly the official scorer (token 0 unscored, ties to the first candidate); "
                   "strict: every word scored, conditioned on BOS, a tie is wrong")
    g.add_argument("--zero_shot_tasks", nargs="+", default=None, metavar="TASK",
                   choices=("blimp", "ewok", "entity_tracking", "wug_adj", "wug_past", "comps", "reading"),
                   help="only these tasks (default: every task whose data is in --eval_dir)")
    g.add_argument("--results_dir", default=None,
                   help="root of the official results layout for evaluate, evaluate_checkpoints, finetune and "
                   "submission (default: <run>/results beside the model; evaluate also takes --output_dir)")
    g.add_argument("--revision", default=None,
                   help="the revision folder results are filed under (default: main for a run's best_model/, "
                   "the folder's name for a chck_* checkpoint)")
    _number(g, "--zero_shot_tokens_per_batch", AT_LEAST_1, type=int, default=None,
            help="tokens a forward pass carries, padding included (default: TOKENS_PER_BATCH in "
            "evaluation/scoring.py, measured best on a 2-core CPU; raise it on a GPU)")


def _submission_options(p: argparse.ArgumentParser) -> None:
    """The option group 'submission (submission and export actions)'."""
    g = p.add_argument_group("submission (submission and export actions; --model_dir is the run folder, --backend "
                             "as evaluate, --track under training)")
    g.add_argument("--export_dir", default=None,
                   help="export: where to write the run's model repository (default: <run>/export)")
    g.add_argument("--push", default=None, metavar="REPO_ID",
                   help="export: then upload every branch to this Hugging Face model repository (needs HF_TOKEN "
                   "or a saved login)")
    g.add_argument("--partial", action="store_true",
                   help="write what there is, naming what is missing, as all_full_preds_and_fast_scores_<backend>_"
                   "partial.json (default: refuse an incomplete submission)")
    g.add_argument("--official_pipeline", default=None, metavar="DIR",
                   help="submission: the official evaluation pipeline (evaluation-pipeline-2025) whose collate step "
                   "then judges the same tree (default: $OFFICIAL_PIPELINE, else ../shared/official_pipeline)")


def _finetune_options(p: argparse.ArgumentParser) -> None:
    """The option group 'fine-tuning (finetune action)'."""
    g = p.add_argument_group("fine-tuning (finetune action)")
    g.add_argument("--glue_dir", default=None,
                   help="folder of (Super)GLUE jsonl files, <task>.train.jsonl and <task>.valid.jsonl")
    g.add_argument("--tasks", nargs="+", default=None, metavar="TASK",
                   help="tasks to fine-tune on, e.g. rte mrpc (default: every task in --glue_dir)")
    _number(g, "--finetune_epochs", AT_LEAST_1, type=int, default=None,
            help="epochs per task (default: the official 10, 30 for wsc)")
    _number(g, "--finetune_learning_rate", POSITIVE, type=float, default=None,
            help="fine-tuning peak learning rate (default: the official 3e-5)")
    _number(g, "--finetune_batch_size", AT_LEAST_1, type=int, default=None,
            help="examples per batch (default: the official 32, 16 for boolq and multirc)")
    _number(g, "--finetune_dropout", SHARE, type=float, default=None,
            help="dropout of every dropout layer while fine-tuning (default: the saved model's, as officially; the "
            "pipeline pretrains with --dropout 0)")
    _number(g, "--finetune_patience", Range(0, hint=' (0: never stop early)'), type=int, default=0,
            help="stop a task after N epochs without a better validation score (default 0: every epoch runs, "
            "as officially)")
    _number(g, "--finetune_cross_fit", Range(0, hint=" (0: off; else at least 2 folds)"), type=int, default=0,
            help="for a task with a valid file but no train file: K folds of the valid file, each predicted by "
            "a model trained on the others (not the official protocol; a submission from it is partial)")
    _number(g, "--max_seq_length", AT_LEAST_1, type=int, default=512,
            help="fine-tuning inputs are truncated to this (default: the official 512; at most the model's positions)")
    g.add_argument("--finetune_protocol", choices=("official", "ours"), default="official",
                   help="official: the official pipeline's head (on AutoModel), AdamW (decay 0.01 on all, betas 0.9/"
                   "0.999), 6%% warm-up, cosine to 0.1x, no clipping, last partial batch dropped, its text layouts and "
                   "files (it ignores --weight_decay, --warmup_ratio, --adam_*, --grad_norm_clip); ours: the "
                   "*ForSequenceClassification head with the training options (docs/evaluation.md)")
    g.add_argument("--finetune_pool", choices=("first", "last"), default=None,
                   help="official protocol: the token the head reads (default: last real token for GPT-2 and Llama, "
                   "whose first token sees nothing else; first for BERT and gpt_bert, as officially)")


def _report_options(p: argparse.ArgumentParser) -> None:
    """The option group 'report (report action)'."""
    g = p.add_argument_group("report (report action)")
    g.add_argument("--save_dir", default="save_dir", help="folder whose step runs the report gathers")


SCHEDULE_KEYS = ("mlm_probability", "masked_share")


def _parse_schedule(parser: argparse.ArgumentParser, text: str) -> list[tuple[int, dict[str, float]]]:
    """'0:mlm_probability=0.3,2000:mlm_probability=0.15' -> [(0, {...}), (2000, {...})], checked."""
    entries = []
    for item in text.split(","):
        step, _, setting = item.strip().partition(":")
        key, _, value = setting.partition("=")
        try:
            step_n, number = int(step), float(value)
        except ValueError:
            parser.error(f"--objective_schedule entry '{item}' is not STEP:KEY=VALUE, e.g. 0:mlm_probability=0.3")
        if key not in SCHEDULE_KEYS:
            parser.error(f"--objective_schedule key '{key}' is not one of {', '.join(SCHEDULE_KEYS)}")
        if not (0.0 <= number <= 1.0 if key == "masked_share" else 0.0 < number < 1.0):
            parser.error(f"--objective_schedule {key}={value} must be between 0 and 1")
        entries.append((step_n, {key: number}))
    steps = [s for s, _ in entries]
    if steps != sorted(set(steps)) or steps[0] < 0:
        parser.error("--objective_schedule steps must be distinct, ascending and >= 0")
    return entries


def _parse_word_marks(parser: argparse.ArgumentParser, items: list[str]) -> list[int]:
    """['1M', '1.5M', '20M'] -> [1000000, 1500000, 20000000]; 'babylm' adds BABYLM_WORD_MARKS.
    The numbers given must be whole, positive and ascending."""
    given = []
    for item in items:
        if item.lower() == "babylm":
            continue
        value = parse_word_mark(item)
        if value is None:
            parser.error(f"--checkpoint_words {item} is not a positive whole number of words, e.g. 500K, 1M, 1.5M "
                         "or 1000000")
        given.append(value)
    if given != sorted(set(given)):
        parser.error(f"--checkpoint_words {' '.join(items)}: the marks must be distinct and ascending")
    babylm = BABYLM_WORD_MARKS if any(item.lower() == "babylm" for item in items) else ()
    return sorted(set(given) | set(babylm))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line and check the options that depend on each other."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.action in ("dataset", "train") and args.tokenizer_dir is None:
        parser.error(f"the {args.action} action needs --tokenizer_dir (the folder step1 wrote)")
    if args.action in ("train", "test", "blimp", "finetune") and args.output_dir is None:
        parser.error(f"the {args.action} action needs --output_dir (the run folder)")
    if args.action == "tokenizer" and args.tokenizer_dir is None:
        parser.error("the tokenizer action needs --tokenizer_dir (where to save the tokenizer)")
    if args.action in ("test", "blimp", "evaluate", "finetune") and args.model_dir is None:
        parser.error(f"the {args.action} action needs --model_dir (a saved model folder, "
                     "e.g. save_dir/step2_1/best_model)")
    if args.action in ("curve", "evaluate_checkpoints", "submission", "export") and args.model_dir is None:
        parser.error(f"the {args.action} action needs --model_dir (a training run's folder, e.g. save_dir/step2_1)")
    if args.action in ("blimp", "curve") and args.blimp_dir is None:
        parser.error(f"the {args.action} action needs --blimp_dir (a folder of BLiMP jsonl files)")
    if args.action in ("evaluate", "evaluate_checkpoints") and args.eval_dir is None:
        parser.error(f"the {args.action} action needs --eval_dir (the official fast_eval/ or full_eval/ folder; "
                     "make eval_data fetches them)")
    if args.action == "finetune" and args.glue_dir is None:
        parser.error("the finetune action needs --glue_dir (a folder of <task>.train.jsonl/<task>.valid.jsonl)")
    _check_ranges(parser, args)
    _check_together(parser, args)
    # Which options are the training run's (saved in run_args.json; the model card lists them).
    args.training_options = [action.dest for group in parser._action_groups
                             if group.title in ("data", "model", "training") or "(training" in (group.title or "")
                             for action in group._group_actions]
    if args.num_train_epochs is None:
        args.num_train_epochs = 1.0
    if args.model_type is None and args.init_model is None:
        args.model_type = "gpt2"  # with --init_model, training takes the saved model's type
    if args.objective_schedule is not None:
        args.objective_schedule = _parse_schedule(parser, args.objective_schedule)
    args.hybrid_masked_share = _parse_ratio(parser, args.hybrid_ratio)
    if args.checkpoint_words is not None:
        args.checkpoint_words = _parse_word_marks(parser, args.checkpoint_words)
    return args


def _parse_ratio(parser: argparse.ArgumentParser, text: str) -> float:
    """--hybrid_ratio 'MASKED:CAUSAL' (whole numbers, not both 0) -> the share of masked steps."""
    masked, _, causal = text.partition(":")
    try:
        m, c = int(masked), int(causal)
    except ValueError:
        m = c = -1
    if m < 0 or c < 0 or m + c == 0:
        parser.error(f"--hybrid_ratio {text} is not MASKED:CAUSAL with whole numbers >= 0, not both 0, e.g. 15:1")
    return m / (m + c)


def _check_ranges(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Every numeric option within the range declared beside it (`_number`); an option left
    out (None) keeps its default."""
    for name, valid in RANGES.items():
        value = getattr(args, name)
        if value is not None and not valid.holds(value):
            parser.error(f"--{name} must be {valid.says()}, got {value}{valid.hint}")


def _check_together(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The options that depend on each other."""
    if args.max_minutes is not None:
        given = [f"--{n}" for n in ("max_steps", "num_train_epochs") if getattr(args, n) is not None]
        if given:
            parser.error(f"--max_minutes sets the length of the run, so {' and '.join(given)} cannot: drop "
                         f"{'them' if len(given) > 1 else 'it'} or --max_minutes")
    if args.action == "train" and args.init_model is None and args.block_size > args.max_position_embeddings:
        parser.error(f"--block_size {args.block_size} exceeds --max_position_embeddings "
                     f"{args.max_position_embeddings}: raise the latter or lower the former")
    if args.hidden_size % args.num_heads:
        parser.error(f"--hidden_size {args.hidden_size} must be divisible by --num_heads {args.num_heads}")
    if args.finetune_cross_fit == 1:
        parser.error("--finetune_cross_fit 1 leaves no fold to train on: pass 0 (off) or K >= 2 folds")
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", args.device):
        parser.error(f"--device {args.device} is not one of auto, cpu, mps, cuda, cuda:N")
    if args.start_percent > args.end_percent:
        parser.error(f"--start_percent {args.start_percent} is after --end_percent {args.end_percent}: the pool "
                     "starts growing before it stops")
    if args.pacing_steps is not None and args.difficulty is None:
        parser.error("--pacing_steps paces a curriculum: give --difficulty too, or drop --pacing_steps")
    if args.max_minutes is not None and args.difficulty is not None and args.pacing_steps is None:
        parser.error("--difficulty paces the data over a known number of steps, which --max_minutes leaves open: "
                     "give --pacing_steps N, or train the curriculum with --max_steps or --num_train_epochs")
