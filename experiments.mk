# The experiment registry: make best, baseline, candidates, sweep and ablation (included by the Makefile,
# which defines the pipeline targets and templates this file uses). Their measured scores are in
# results/2026-11-23_recipe_search.md, not here.

# ----------------------------------------------------------------------------- the best model per CPU-hour
# make best: the recipe (BEST_OPTS, tokenizer vocabulary BEST_VOCAB) trained for BUDGET_MINUTES of
# wall-clock time inside optimizer steps (--max_minutes: the LR schedule ends with the budget), keeping
# the best checkpoint and chck_* folders at BabyLM's words-seen marks; then its test (+ BLiMP) and
# learning curve (BLiMP and validation loss per chck_* folder). make baseline: the same for the step2
# GPT-2 with the core pipeline's settings. make candidates: rivals of the recipe, the same way. make
# sweep: short runs that find candidates, each one change to the baseline's settings (SWEEP_<name>),
# SWEEP_MINUTES each, scored with BLiMP. make report shows them all.
BUDGET_MINUTES ?= 60
SWEEP_MINUTES  ?= 10
# The recipes are files (configs/*.toml: run.py --config; options on the command line win over them).
BASE_OPTS      = $(GPT_LOOP) --config configs/baseline.toml
BEST_VOCAB     ?= $(VOCAB)
# The recipe: the best options measured at the full budget (60 minutes on ../shared/data/babylm/2023, BLiMP
# dev). No candidate has beaten the baseline there yet (the scores are in
# results/2026-11-23_recipe_search.md), so the recipe is the baseline's options until one does.
BEST_OPTS      ?= $(GPT_LOOP) --config configs/best.toml
# make candidates: rivals of the recipe at the full budget, each run like make best as best_<name> (test,
# BLiMP, learning curve); CAND_<name> = its changes to BASE_OPTS, CAND_VOCAB_<name> its tokenizer (a size or
# a TOK_<name> variant; default VOCAB). The report compares each with best_baseline. Each candidate's changes are
# configs/candidates/<name>.toml, given after configs/baseline.toml.
cand_config   = --config configs/candidates/$(1).toml
CANDIDATES     ?= wide wide_batch16 hybrid_wide_batch16 dropout block256_dropout unigram_root vocab8k lr2e-3 \
                  seed43 bert norm deep ltg_bert
CAND_wide      = $(call cand_config,wide)
CAND_wide_batch16 = $(call cand_config,wide_batch16)
CAND_hybrid_wide_batch16 = $(call cand_config,hybrid_wide_batch16)
# The baseline sees each training word several times in an hour and its validation loss turns up before the
# end: dropout regularises the many-epoch run; block256 was the sweep's best change at the baseline's size.
# (--block_size stays on the command line: COMMON's --block_size would win over a file.)
CAND_dropout   = $(call cand_config,dropout)
CAND_block256_dropout = $(call cand_config,block256_dropout) --block_size 256
# The data curriculum that helped GPT-2 most at equal tokens (step9: unigram difficulty, root pacing),
# paced over about the baseline's step count in the hour, as step9 paced over its run.
CAND_unigram_root = $(call cand_config,unigram_root)
# Changes that do not slow the baseline's steps (words per hour bought BLiMP above): a smaller vocabulary
# (cheaper head, so more words per step-second) and a higher learning rate, both gains in the sweep.
CAND_VOCAB_vocab8k = $(SWEEP_VOCAB_vocab8k)
CAND_vocab8k   =
CAND_lr2e-3    = $(call cand_config,lr2e-3)
# The baseline again with another seed (initialisation, data order): how far BLiMP moves from the seed alone.
CAND_seed43    = $(call cand_config,seed43)
# A masked LM (step4's BERT at the baseline's size, scored by pseudo-log-likelihood): its dynamic masking
# draws new targets every pass, which may suit a run that sees each word several times (at 1M tokens,
# step9, it scored above GPT-2).
CAND_bert      = $(call cand_config,bert)
# One text convention for all sources: the tokenizer lowercases and joins the PTB-split punctuation of
# aochildes and cbt to its word, as the prose sources and BLiMP write it.
CAND_VOCAB_norm = norm
CAND_norm      =
# Deeper and narrower at about the baseline's cost per token (a smaller head pays for 4 more layers).
CAND_deep      = $(call cand_config,deep)
# GPT-BERT as its authors built it (step12's recipe) at the baseline's size: body, objective and optimizer.
CAND_ltg_bert  = $(call cand_config,ltg_bert)
# make ablation undoes each of the recipe's changes named in ABLATE (none while the recipe is the baseline);
# ABLATE_<name> restores the baseline's setting of a sweep change.
ABLATE         ?=
ABLATE_hybrid  = --model_type gpt2
ABLATE_wide    = $(SMALL)
ABLATE_batch16 = --batch_size 32
CURVE_MARKS    ?= --checkpoint_words babylm
# Validation during budget runs on 2000 evenly spaced dev blocks: its time is
# not in the budget, but it is in the wall clock. BUDGET_EVAL= validates on the whole dev split. The
# learning curves' validation loss: 500 evenly spaced blocks (each of up to 11 points also scores BLiMP).
BUDGET_EVAL    ?= --eval_blocks 2000
CURVE_EVAL     ?= --eval_blocks 500
# One change each to BASE_OPTS (options given later win); SWEEP_VOCAB_<name> trains with another tokenizer.
SWEEP          ?= base lr2e-3 vocab8k llama wide block256 batch16 dropout hybrid
SWEEP_base     =
SWEEP_lr2e-3   = --learning_rate 2e-3
SWEEP_VOCAB_vocab8k = 8000
SWEEP_vocab8k  =
SWEEP_llama    = --model_type llama
SWEEP_wide     = --hidden_size 384 --num_layers 6 --num_heads 6
SWEEP_block256 = --block_size 256 --batch_size 16
SWEEP_batch16  = --batch_size 16
SWEEP_dropout  = --dropout 0.1
SWEEP_hybrid   = --model_type gpt_bert --hybrid_ratio 1:1
# Other tokenizers, $(SAVE_DIR)/tok<variant>/tokenizer_{clm,mlm}/: a variant is a vocabulary size, or a
# name whose TOK_<name> holds the tokenizer options (the *_VOCAB_* variables above and below take either).
TOK_norm = --vocab_size $(VOCAB) --lowercase --join_punctuation
tok_of = $(if $(filter $(VOCAB),$(1)),$(SAVE_DIR)/step1,$(SAVE_DIR)/tok$(1))/tokenizer_$(2)/tokenizer.json
$(SAVE_DIR)/tok%/tokenizer_clm/tokenizer.json: | $(VENV_STAMP)
	$(RUN) tokenizer $(DATA_OPTS) --tokenizer_type clm $(or $(TOK_$*),--vocab_size $*) --tokenizer_dir $(@D)
$(SAVE_DIR)/tok%/tokenizer_mlm/tokenizer.json: | $(VENV_STAMP)
	$(RUN) tokenizer $(DATA_OPTS) --tokenizer_type mlm $(or $(TOK_$*),--vocab_size $*) --tokenizer_dir $(@D)
# bert, gpt_bert and ltg_bert need the mlm tokenizer (<mask>)
# (the last --model_type in the options is the one that counts: options given later win, and the command line
# wins over the --config files, whose model_type = "..." lines config_model_types reads)
config_model_types = $(foreach f,$(filter %.toml,$(1)),$(shell sed -n 's/^model_type *= *"\([a-z_0-9]*\)".*/\1/p' $(f)))
tok_kind = $(if $(filter bert gpt_bert ltg_bert,$(lastword $(filter gpt2 llama bert gpt_bert ltg_bert,$(call config_model_types,$(1)) $(1)))),mlm,clm)
sweep_tok = $(call tok_of,$(or $(SWEEP_VOCAB_$(1)),$(VOCAB)),$(call tok_kind,$(SWEEP_$(1))))
$(foreach v,$(SWEEP),$(eval $(call TRAIN_STEP,sweep_$(v),$(call sweep_tok,$(v)),,$(BASE_OPTS) $(SWEEP_$(v)) --max_minutes $(SWEEP_MINUTES) $(BUDGET_EVAL))))
# make ablation: the recipe at the sweep's budget (ablate_recipe), and with each of its choices undone in
# turn (ABLATE_<name>: options that restore the baseline's setting; ABLATE_VOCAB_<name>: its tokenizer).
ablate_tok = $(call tok_of,$(or $(ABLATE_VOCAB_$(1)),$(BEST_VOCAB)),$(call tok_kind,$(BEST_OPTS) $(ABLATE_$(1))))
$(foreach v,recipe $(ABLATE),$(eval $(call TRAIN_STEP,ablate_$(v),$(call ablate_tok,$(v)),,$(BEST_OPTS) $(ABLATE_$(v)) --max_minutes $(SWEEP_MINUTES) $(BUDGET_EVAL))))
# $(call BUDGET_STEP,name,vocabulary,options): best_<name> trained for BUDGET_MINUTES, and its test
define BUDGET_STEP
$(call TRAIN_STEP,best_$(1),$(call tok_of,$(2),$(call tok_kind,$(3))),,$(3) --max_minutes $(BUDGET_MINUTES) $(BUDGET_EVAL) $(CURVE_MARKS))
$(call TEST_STEP,best_$(1)_test,best_$(1))
endef
$(eval $(call BUDGET_STEP,recipe,$(BEST_VOCAB),$(BEST_OPTS)))
$(eval $(call BUDGET_STEP,baseline,$(VOCAB),$(BASE_OPTS)))
$(foreach c,$(CANDIDATES),$(eval $(call BUDGET_STEP,$(c),$(or $(CAND_VOCAB_$(c)),$(VOCAB)),$(BASE_OPTS) $(CAND_$(c)))))
# what make best / baseline / candidates build for run best_<name>: its test and learning curve
budget_outputs = $(foreach n,$(1),best_$(n)_test $(SAVE_DIR)/best_$(n)/learning_curve.json)
# BLiMP of a training step's best model (what the sweep scores), and a run's learning curve (EXTRA is
# training's in these chains)
$(SAVE_DIR)/blimp_%/blimp_results.json: $(SAVE_DIR)/%/train_results.json $(wildcard $(BLIMP_DIR)/*.jsonl) | $(VENV_STAMP)
	$(RUN) blimp --model_dir $(SAVE_DIR)/$*/best_model --blimp_dir $(BLIMP_DIR) --output_dir $(@D) $(FAST)
$(SAVE_DIR)/%/learning_curve.json: $(SAVE_DIR)/%/train_results.json $(wildcard $(BLIMP_DIR)/*.jsonl) | $(VENV_STAMP)
	$(RUN) curve --model_dir $(@D) --blimp_dir $(BLIMP_DIR) --cache_dir $(SAVE_DIR)/cache $(CURVE_EVAL) $(FAST)
.PHONY: best baseline candidates sweep ablation
best: $(call budget_outputs,recipe)
baseline: $(call budget_outputs,baseline)
candidates: $(call budget_outputs,$(CANDIDATES))
sweep: $(foreach v,$(SWEEP),$(SAVE_DIR)/blimp_sweep_$(v)/blimp_results.json)
ablation: $(foreach v,recipe $(ABLATE),$(SAVE_DIR)/blimp_ablate_$(v)/blimp_results.json)
# The report is made after the runs, not as one more prerequisite, which make -j would start at once.
best baseline candidates sweep ablation:
	$(MAKE) --no-print-directory report
