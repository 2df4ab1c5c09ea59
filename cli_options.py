"""The command line's options, one group per concern, each option with its range or choices
beside it. argument_parser.py composes the groups per action (its ACTIONS table); a group can be
given whole or `.only(...)` some of its options, so each action's --help lists what it reads."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass

from hybrid_model import GPTBertConfig, LtgBertConfig
from utils import TRACKS

MODEL_TYPES = ("gpt2", "llama", "bert", "gpt_bert", "ltg_bert")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
COMPILE_CHOICES = ("auto", "on", "off")


# The hybrid body's switches (hybrid_model.BODY_PIECES, whose module docstring says more; their
# defaults are the config classes').
BODY_PIECE_HELP = {
    "relative_positions": "log-bucketed relative positions shared by all layers, DeBERTa-style scores, no "
                          "absolute positions",
    "value_gate": "the attention's context times GELU(a gate projection)",
    "attention_output_norm": "a LayerNorm before the attention's output projection",
    "geglu": "a GEGLU feed-forward without biases, with a LayerNorm inside",
    "affine_norms": "LayerNorms with a learned scale and shift",
    "layer_weights": "DenseFormer-style learned weights over all earlier layer outputs",
    "mlp_head": "an MLP head (LayerNorm, dense, GELU, LayerNorm, tied projection with a bias)",
    "ltg_init": "truncated-normal init, the feed-forward scaled by depth",
}


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
        """Whether `value` is in the range."""
        if not math.isfinite(value):
            return False
        above = value >= self.low if self.low_in else value > self.low
        below = value <= self.high if self.high_in else value < self.high
        return above and below

    def says(self) -> str:
        """The range in words, e.g. 'at least 1' or 'greater than 0 and below 1'."""
        def show(x: float) -> str:
            return str(int(x)) if float(x).is_integer() else f"{x:g}"

        low = (f"at least {show(self.low)}" if self.low else "0 or more") if self.low_in else \
            f"greater than {show(self.low)}"
        if self.high == math.inf:
            return low
        return f"{low} and {'at most' if self.high_in else 'below'} {show(self.high)}"


AT_LEAST_1, POSITIVE, NON_NEGATIVE, SHARE = Range(1), Range(0, low_in=False), Range(0), Range(0, 1)
RANGES: dict[str, Range] = {}  # option dest -> its range, filled as the parsers are built


def _on_off(value: bool) -> str:
    return "on" if value else "off"


def _number(group, flag: str, valid: Range, **kwargs) -> None:
    """Add a numeric option whose range is checked after parsing (argument_parser._check_ranges)."""
    action = group.add_argument(flag, **kwargs)
    if action is not None:  # None: an option the action's group leaves out (Group.only)
        RANGES[action.dest] = valid


class _Only:
    """An argparse group that keeps only the options named in `dests` (the others are not added)."""

    def __init__(self, group, dests: frozenset[str]) -> None:
        self.group, self.dests = group, dests

    def add_argument(self, *flags: str, **kwargs) -> argparse.Action | None:
        """Add the option when its dest is one of `dests`."""
        dest = kwargs.get("dest") or flags[0].lstrip("-")
        return self.group.add_argument(*flags, **kwargs) if dest in self.dests else None


@dataclass(frozen=True)
class Group:
    """Options of one concern: a title and the function that adds them to an argparse group."""

    title: str
    add: Callable
    dests: frozenset[str] | None = None  # None: all of them

    def only(self, *dests: str) -> Group:
        """The same group with only the options `dests`."""
        return Group(self.title, self.add, frozenset(dests))

    def add_to(self, group) -> None:
        """Add this group's options to `group` (an argparse argument group, or one that wraps it)."""
        self.add(group if self.dests is None else _Only(group, self.dests))


def _general(g) -> None:
    g.add_argument("--config", action="append", default=None, metavar="RECIPE.toml",
                   help="options from a TOML recipe (see configs/), the command line winning (default: none)")
    g.add_argument("--debug", action="store_true", help="show full tracebacks on errors")


def _corpus(g) -> None:
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


def _tokenizer(g) -> None:
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


def _model(g) -> None:
    g.add_argument("--model_type", choices=MODEL_TYPES, default=None,
                   help="architecture of a freshly built model (gpt2/llama: causal LM, bert: masked LM, gpt_bert: "
                   "hybrid causal + masked next-token LM on a GPT-2-like body, ltg_bert: the same on GPT-BERT's "
                   "authors' body, see hybrid_model.py; both need a tokenizer with a mask token: --tokenizer_type "
                   "mlm) (default: gpt2, or --init_model's type)")
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
    for name, what in BODY_PIECE_HELP.items():
        g.add_argument(f"--{name}", action=argparse.BooleanOptionalAction, default=None,
                       help=f"gpt_bert/ltg_bert body: {what} (default: {_on_off(LtgBertConfig.PIECES[name])} for "
                       f"ltg_bert, {_on_off(GPTBertConfig.PIECES[name])} for gpt_bert)")


def _compute(g) -> None:
    g.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:1, mps")
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
    g.add_argument("--attn_implementation", choices=("eager", "sdpa"), default=None,
                   help="attention kernel, the same arithmetic (default: eager to train and fine-tune, which "
                   "compiled faster here; sdpa to score, 1.6x as fast on long items and the official pipeline's)")


def _outputs(g) -> None:
    g.add_argument("--output_dir", default=None,
                   help="where the action writes (train: the run folder; stats: corpus_stats.md/.json)")
    g.add_argument("--overwrite_output_dir", action="store_true",
                   help="train even if --output_dir already holds a finished run")
    g.add_argument("--resume", nargs="?", choices=("yes", "auto"), const="yes", default=None,
                   help="continue the run in --output_dir from its newest complete checkpoint; --resume auto: "
                   "continue it if it has one, else start it (over) (what make passes; default: no resume)")


def _saved_model(g) -> None:
    g.add_argument("--model_dir", default=None,
                   help="the saved model folder, e.g. save_dir/step2_1/best_model (curve, evaluate_checkpoints, "
                   "submission, export: the training run's folder, e.g. save_dir/step2_1)")


def _track(g) -> None:
    g.add_argument("--track", choices=TRACKS, default=None,
                   help="the BabyLM track. Training: strict-small and strict refuse training data over 10M / 100M "
                   "words and a plan of more than 10 epochs (a --max_minutes run stops at the tenth); none checks "
                   "nothing (default: none). Submission: which checkpoints the fast scores must cover "
                   "(strict-small: chck_1M ... chck_100M; strict: up to chck_1000M) (default: the run's track, "
                   "else strict-small)")


def _schedule(g) -> None:
    g.add_argument("--torch_training", action="store_true",
                   help="train with the custom PyTorch loop instead of the Hugging Face Trainer")
    _number(g, "--num_train_epochs", POSITIVE, type=float, default=None,
            help="passes over the training blocks (default: 1)")
    _number(g, "--max_steps", Range(1, hint=' (leave it out to train for --num_train_epochs)'), type=int, default=None,
            help="optimizer steps, overriding --num_train_epochs (default: from the epochs)")
    _number(g, "--max_minutes", POSITIVE, type=float, default=None,
            help="train for this many minutes of wall-clock time inside optimizer steps (compiling included; "
            "validation and checkpoint writing not) instead of steps or epochs: the warm-up + cosine schedule "
            "ends with the budget")
    _number(g, "--batch_size", AT_LEAST_1, type=int, default=32, help="training blocks per micro-batch")
    _number(g, "--gradient_accumulation_steps", AT_LEAST_1, type=int, default=1,
            help="micro-batches per optimizer step")
    _number(g, "--learning_rate", POSITIVE, type=float, default=5e-4, help="peak learning rate")
    g.add_argument("--length_schedule", default=None, metavar="SHARE:BLOCKS,...",
                   help="custom loop: from each SHARE of the run on, BLOCKS consecutive blocks make one sequence, "
                   "--batch_size / BLOCKS a micro-batch (the same tokens); GPT-BERT: 0.7:2,0.9:4 (default: none)")
    g.add_argument("--skip_nonfinite", action="store_true",
                   help="skip batches whose loss is NaN/inf, counting them, instead of stopping "
                   "(custom loop only)")


def _optimizer(g) -> None:
    g.add_argument("--optimizer", choices=("adamw", "lamb"), default="adamw",
                   help="adamw, or lamb: Adam steps scaled per weight matrix by ||w|| / ||step|| "
                   "(training/optim.py Lamb)")
    _number(g, "--warmup_ratio", SHARE, type=float, default=0.05,
            help="share of the optimizer steps spent in linear warm-up before the cosine decay")
    _number(g, "--min_lr_ratio", SHARE, type=float, default=0.0,
            help="the cosine decays to this share of the peak LR (GPT-BERT: 0.1)")
    _number(g, "--cooldown_ratio", SHARE, type=float, default=0.0,
            help="share of the run at its end where the LR falls linearly from --min_lr_ratio to 0 (GPT-BERT: 0.016)")
    _number(g, "--weight_decay", NON_NEGATIVE, type=float, default=0.1,
            help="weight decay of AdamW or LAMB (not applied to biases or norms)")
    _number(g, "--adam_beta1", SHARE, type=float, default=0.9, help="AdamW/LAMB beta1")
    _number(g, "--adam_beta2", SHARE, type=float, default=0.98, help="AdamW/LAMB beta2")
    _number(g, "--adam_epsilon", NON_NEGATIVE, type=float, default=1e-8, help="AdamW/LAMB epsilon")
    _number(g, "--grad_norm_clip", NON_NEGATIVE, type=float, default=1.0, help="clip the global gradient norm (0: off)")
    _number(g, "--ema_decay", SHARE, type=float, default=0.0,
            help="validate and save an EMA of the weights with this decay (0: off; GPT-BERT: 0.999; custom loop only)")
    _number(g, "--seed", Range(0, 2**32, hint=" (numpy's seed range)"), type=int, default=42,
            help="seed for initialisation, data order and masking")


def _evaluation(g) -> None:
    _number(g, "--eval_batch_size", AT_LEAST_1, type=int, default=64, help="blocks per validation/test batch")
    _number(g, "--eval_blocks", Range(1, hint=' (leave it out to validate on all)'), type=int, default=None,
            help="validate during training (and score the curve action's validation loss) on this many blocks, evenly "
            "spaced over the validation files (the same ones every time; default: all)")
    _number(g, "--eval_steps", AT_LEAST_1, type=int, default=500,
            help="validate every N optimizer steps (and at epoch end)")
    _number(g, "--logging_steps", AT_LEAST_1, type=int, default=50, help="log training metrics every N optimizer steps")
    _number(g, "--early_stopping_patience", Range(0, hint=' (0: never stop early)'), type=int, default=0,
            help="stop after N validations without a new best loss (0: never)")
    _number(g, "--save_steps", AT_LEAST_1, type=int, default=500,
            help="write a resumable checkpoint every N optimizer steps (and at each epoch end)")
    _number(g, "--save_total_limit", AT_LEAST_1, type=int, default=2,
            help="keep only the newest N resumable checkpoints (the best model is always kept)")
    g.add_argument("--checkpoint_words", nargs="+", default=None, metavar="WORDS",
                   help="also save a model folder <output_dir>/chck_<mark> when the words seen (of the source text, "
                   "counted over all processes) cross each mark, e.g. 1M 2M 5M 10M (suffixes K, M, B); 'babylm' "
                   "stands for the BabyLM checkpoints: every 1M words up to 10M, then every 10M up to 100M "
                   "(default: none)")


def _curriculum(g) -> None:
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


def _objective(g) -> None:
    _number(g, "--mlm_probability", Range(0, 1, low_in=False), type=float, default=0.15,
            help="share of tokens masked for MLM")
    g.add_argument("--objective_schedule", default=None, metavar="SCHEDULE",
                   help="STEP:KEY=VALUE,...: objective settings by optimizer step, each holding until the next, e.g. "
                   "'0:mlm_probability=0.3,2000:mlm_probability=0.15' (masked LMs and gpt_bert) or "
                   "'0:masked_share=1,1000:masked_share=0' (gpt_bert: share of masked steps, 0 to 1; default: "
                   "--mlm_probability and --hybrid_ratio throughout)")
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
    g.add_argument("--hybrid_mix", choices=("step", "batch"), default="step",
                   help="hybrids: each step masked or causal, or each micro-batch split by --hybrid_ratio (batch: "
                   "GPT-BERT's)")
    _number(g, "--mask_span", AT_LEAST_1, type=int, default=1,
            help="mask spans of 1..N tokens, each replaced as one (masked LMs and hybrids; GPT-BERT: 3)")
    _number(g, "--mlm_probability_end", Range(0, 1, low_in=False), type=float, default=None,
            help="masking share at the run's end, linear from --mlm_probability (GPT-BERT: 0.3 to 0.15; default: "
            "constant)")
    _number(g, "--z_loss", NON_NEGATIVE, type=float, default=0.0,
            help="add X * mean logsumexp(logits)^2 to the loss, logged as train/z_loss (GPT-BERT: 1e-4; "
            "0: off; default: 0)")
    g.add_argument("--document_mask", action="store_true",
                   help="block-diagonal attention: each token attends within its own corpus line only (GPT-BERT's "
                   "packing with a line as the document: in BabyLM's files an utterance or paragraph); eager/sdpa; "
                   "validation stays unmasked")


def _blimp(g) -> None:
    g.add_argument("--blimp_dir", default=None,
                   help="folder of BLiMP-format jsonl files, one per paradigm (default: none, no BLiMP)")
    _number(g, "--blimp_batch_size", AT_LEAST_1, type=int, default=64,
            help="sentences (causal) or masked copies (PLL) per forward pass")
    g.add_argument("--blimp_prefix_space", action="store_true",
                   help="score ' ' + sentence, as lm-eval 0.4's blimp tasks do (default: the sentence as written, "
                   "as every training line starts after EOS)")
    g.add_argument("--hybrid_scoring", choices=("causal", "masked"), default="causal",
                   help="gpt_bert models: causal log-likelihood, or masked next-token pseudo-log-likelihood (each "
                   "token masked in turn as --pll_variant says, bidirectional attention, its log-probability read "
                   "at the position before it)")


def _pll(g) -> None:
    g.add_argument("--pll_variant", choices=("within_word_l2r", "token"), default="within_word_l2r",
                   help="masked-LM pseudo-log-likelihood: mask each token alone (token) or also the "
                   "later sub-tokens of its word (within_word_l2r)")


def _zero_shot(g) -> None:
    g.add_argument("--eval_dir", default=None,
                   help="the official full_eval/ or fast_eval/ folder (make eval_data): every task folder found "
                   "there is scored (blimp_*, supplement_*, ewok_*, entity_tracking*, wug_*, comps*, reading/); "
                   "or the evaluation_data/ folder holding both (see --fast)")
    g.add_argument("--fast", action="store_true",
                   help="with --eval_dir the evaluation_data/ folder: score its fast_eval/ (default: full_eval/)")
    g.add_argument("--backend", choices=("causal", "mlm", "mntp"), default=None,
                   help="how candidates are scored (submission: whose results are collated) (default: from the "
                   "model type: gpt2/llama causal, bert mlm, gpt_bert mntp)")
    g.add_argument("--convention", choices=("official", "strict", "both"), default="both",
                   help="official: exactly the official scorer (token 0 unscored, ties to the first candidate); "
                   "strict: every word scored, conditioned on BOS, a tie is wrong")
    g.add_argument("--zero_shot_tasks", nargs="+", default=None, metavar="TASK",
                   choices=("blimp", "ewok", "entity_tracking", "wug_adj", "wug_past", "comps", "reading"),
                   help="only these tasks (default: every task whose data is in --eval_dir)")
    g.add_argument("--revision", default=None,
                   help="the revision folder results are filed under (default: main for a run's best_model/, "
                   "the folder's name for a chck_* checkpoint)")
    _number(g, "--zero_shot_tokens_per_batch", AT_LEAST_1, type=int, default=None,
            help="tokens a forward pass carries, padding included (default: TOKENS_PER_BATCH in "
            "evaluation/scoring.py, measured best on a 2-core CPU; raise it on a GPU)")


def _results(g) -> None:
    g.add_argument("--results_dir", default=None,
                   help="root of the official results layout for evaluate, evaluate_checkpoints, finetune and "
                   "submission (default: <run>/results beside the model; evaluate also takes --output_dir)")


def _finetune(g) -> None:
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


def _submission(g) -> None:
    g.add_argument("--partial", action="store_true",
                   help="write what there is, naming what is missing, as all_full_preds_and_fast_scores_<backend>_"
                   "partial.json (default: refuse an incomplete submission)")
    g.add_argument("--official_pipeline", default=None, metavar="DIR",
                   help="the official evaluation pipeline (evaluation-pipeline-2025) whose collate step then judges "
                   "the same tree (default: $OFFICIAL_PIPELINE, else ../shared/official_pipeline)")


def _export(g) -> None:
    g.add_argument("--export_dir", default=None,
                   help="where to write the run's model repository (default: <run>/export)")
    g.add_argument("--push", default=None, metavar="REPO_ID",
                   help="then upload every branch to this Hugging Face model repository (needs HF_TOKEN "
                   "or a saved login)")


def _report(g) -> None:
    g.add_argument("--save_dir", default="save_dir", help="folder whose step runs the report gathers")


GENERAL = Group("general", _general)
CORPUS = Group("corpus", _corpus)
TOKENIZER = Group("tokenizer", _tokenizer)
MODEL = Group("model", _model)
COMPUTE = Group("device and precision", _compute)
OUTPUTS = Group("outputs", _outputs)
SAVED_MODEL = Group("input", _saved_model)
TRACK = Group("BabyLM track", _track)
SCHEDULE = Group("optimization: loop, length, batch and learning rate (training)", _schedule)
OPTIMIZER = Group("optimizer: AdamW or LAMB, warm-up + cosine + cool-down, EMA of the weights, seed", _optimizer)
EVALUATION = Group("validation, logging and checkpoints", _evaluation)
CURRICULUM = Group("data curriculum (see training/curriculum.py)", _curriculum)
OBJECTIVE = Group("objective: masking, distillation, the hybrid (see training/losses.py)", _objective)
BLIMP = Group("BLiMP", _blimp)
PLL = Group("masked-LM scoring", _pll)
ZERO_SHOT = Group("official zero-shot suite", _zero_shot)
RESULTS = Group("official results layout", _results)
FINETUNE = Group("fine-tuning (see docs/evaluation.md)", _finetune)
SUBMISSION = Group("submission", _submission)
EXPORT = Group("export", _export)
REPORT = Group("report", _report)
