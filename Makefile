# BabyLM pipeline: each stepN target pins one reproducible experiment.
# Targets depend on the files earlier steps write, so `make step2_2` runs step1
# and step2_1 first when their outputs are missing, and redoes nothing done.
#
#   make demo                  whole chain on data/sample, tiny models (< 5 min on 2 CPU cores)
#   make data / make eval_data download the BabyLM corpus into $(DATA_DIR) / BLiMP into $(BLIMP_DIR)
#                              and the official 2025 evaluation data into $(EVAL_DIR)
#   make evaluate STEP=step2_1 the official BabyLM zero-shot suite on a step's model (EVAL_SET=fast_eval)
#   make test                  the test suite (and ruff)
#   make step2_2               tokenizer -> small GPT-2 -> its test, on $(DATA_DIR)
#   make step2_1 NPROC=4       train data-parallel in 4 processes (torchrun; docs/distributed.md)
#   make best / make baseline  the recipe / the step2 GPT-2, each trained for BUDGET_MINUTES, tested, scored
#   make -j2 candidates        the recipe's rivals at BUDGET_MINUTES (-j2 with OMP_NUM_THREADS=1)
#   make -j2 sweep             short runs, one change each (SWEEP_MINUTES each; -j2 with OMP_NUM_THREADS=1)
#   make tensorboard           serve $(SAVE_DIR) in TensorBoard
#
# Any variable can be overridden: make step2_1 DATA_DIR=/data/babylm_data SAVE_DIR=runs

PYTHON      ?= python3
VENV        := .venv
PY          := $(VENV)/bin/python
VENV_STAMP  := $(VENV)/.installed

# ----------------------------------------------------------------------------- data and outputs
# Any corpus layout corpus/editions.py reads (2023 or 2024 release, a Hugging Face dataset folder, a
# folder of .txt files), detected and logged. TRAIN_SPLIT=100M picks a release's 100M training set.
DATA_DIR    ?= data/babylm_data
TRAIN_SPLIT ?=
SAVE_DIR    ?= save_dir
BLIMP_DIR   ?= data/blimp
# The official BabyLM 2025 evaluation data (make eval_data): $(EVAL_DIR)/full_eval and $(EVAL_DIR)/fast_eval.
EVAL_DIR    ?= data/official_eval
# The (Super)GLUE files fine-tuning reads: the official full_eval/glue_filtered/ by default.
GLUE_DIR    ?= $(EVAL_DIR)/full_eval/glue_filtered
# The curricula's two halves: the detected release's lists (corpus/editions.py EDITIONS; for 2023
# aochildes open_subtitles qed simple_wikipedia switchboard / bnc_spoken cbt children_stories
# gutenberg wikipedia, the original experiment's). A corpus of no release names its own sources.
EASY_FILES  ?= @easier
HARD_FILES  ?= @harder
# The BabyLM track whose rules training checks (strict-small: at most 10M words of training data,
# strict: 100M; at most 10 epochs) and whose checkpoints a submission covers; empty checks nothing
# in training (--track none) and takes the run's track, else strict-small, for a submission.
TRACK       ?=

# ----------------------------------------------------------------------------- hyper-parameters
VOCAB       ?= 16000
BLOCK       ?= 128
SMALL       ?= --hidden_size 256 --num_layers 4 --num_heads 4
LARGE       ?= --hidden_size 512 --num_layers 8 --num_heads 8
# TRAIN_CORE: every training option but the run's length (steps that set their own length use it).
TRAIN_CORE  ?= --batch_size 32 --learning_rate 5e-4 --eval_steps 500 --logging_steps 50
TRAIN_OPTS  ?= --num_train_epochs 2 $(TRAIN_CORE)
# The fast path of every step that trains or scores (see `make bench` and training/hardware.py): auto
# chooses the precision (bf16 where the device computes it natively, fp16 on a CUDA GPU without
# bf16, else fp32) and whether to torch.compile (CUDA, or a CPU with native bf16) from the
# hardware, and every run logs its choice. FAST= is plain float32 without compiling.
FAST        ?= --precision auto --compile auto
# Which loop trains which family (swap freely: both write the same layout). The custom
# loop is the faster one (`make bench`); empty selects the HF Trainer.
GPT_LOOP    ?= --torch_training
BERT_LOOP   ?= --torch_training
FINETUNE_OPTS ?=
# A training step that Make reruns continues from its newest complete checkpoint when an
# earlier run of it was interrupted (--resume auto: run.py decides from the folder, and starts
# over when there is no complete checkpoint); a finished step that Make reruns (its inputs
# changed) starts over. RESTART=1 forces a fresh start.
RESTART     ?=
resume_or_restart = $(if $(or $(RESTART),$(wildcard $(1)/train_results.json)),--overwrite_output_dir,--resume auto)
# More options for the action a target is about: training in a step's chain (its tokenizer and test take
# their own options only), else the one action the target runs (blimp, finetune, evaluate, ...).
EXTRA       ?=
# Training in NPROC processes, data-parallel (torchrun; one per GPU, or CPU processes with gloo).
# --batch_size stays per process: keep the global batch (batch x accumulation x NPROC) by
# dividing --batch_size (in TRAIN_OPTS) by NPROC. RDZV is torchrun's rendezvous: --standalone
# on one machine; several: RDZV="--nnodes 2 --rdzv_backend c10d --rdzv_endpoint HOST:29500 --rdzv_id ID".
NPROC       ?= 1
RDZV        ?= --standalone

RUN    = $(PY) run.py
TRAIN_RUN = $(if $(filter-out 1,$(NPROC)),$(VENV)/bin/torchrun $(RDZV) --nproc_per_node=$(NPROC),$(PY)) run.py
SPLIT_OPT = $(if $(TRAIN_SPLIT),--train_split $(TRAIN_SPLIT))
# Each action takes only its own options (run.py <action> --help): the corpus options go to every action of
# a chain, COMMON (with the track and EXTRA) to training only; a step's test gets the corpus and block size.
DATA_OPTS = --data_dir $(DATA_DIR) $(SPLIT_OPT) --cache_dir $(SAVE_DIR)/cache
COMMON = $(DATA_OPTS) --block_size $(BLOCK) $(if $(TRACK),--track $(TRACK)) $(EXTRA)
# Test steps also score BLiMP when BLIMP_DIR holds jsonl files.
BLIMP_OPTS = $(if $(wildcard $(BLIMP_DIR)/*.jsonl),--blimp_dir $(BLIMP_DIR))
TOK_CLM = $(SAVE_DIR)/step1/tokenizer_clm/tokenizer.json
TOK_MLM = $(SAVE_DIR)/step1/tokenizer_mlm/tokenizer.json

.PHONY: all venv demo test bench gpu_bundle gpu_check lint tensorboard clean clean_demo step1 blimp evaluate evaluate_checkpoints submission export finetune report data eval_data eval_data_blimp eval_data_official stats
all: step2_2

# ----------------------------------------------------------------------------- set-up
venv: $(VENV_STAMP)
$(VENV_STAMP): requirements.txt
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ needed, found " + sys.version'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

# ----------------------------------------------------------------------------- step1: tokenizers
step1: $(TOK_CLM) $(TOK_MLM)
$(SAVE_DIR)/step1/tokenizer_%/tokenizer.json: | $(VENV_STAMP)
	$(RUN) tokenizer $(DATA_OPTS) --tokenizer_type $* --vocab_size $(VOCAB) --tokenizer_dir $(@D)

# ----------------------------------------------------------------------------- step templates
# $(call TRAIN_STEP,step,tokenizer.json,step to continue from or empty,options[,steps it also needs, e.g. teachers])
define TRAIN_STEP
.PHONY: $(1)
$(1): $(SAVE_DIR)/$(1)/train_results.json
$(SAVE_DIR)/$(1)/train_results.json: $(2) $(if $(3),$(SAVE_DIR)/$(3)/train_results.json) \
		$(foreach s,$(5),$(SAVE_DIR)/$(s)/train_results.json) | $(VENV_STAMP)
	$$(TRAIN_RUN) train $$(COMMON) --tokenizer_dir $$(dir $(2)) --output_dir $$(@D) $$(call resume_or_restart,$$(@D)) \
		$(if $(3),--init_model $(SAVE_DIR)/$(3)/best_model) $$(FAST) $(4)
endef

# $(call TEST_STEP,step,training step whose best model it tests[,options])
define TEST_STEP
.PHONY: $(1)
$(1): $(SAVE_DIR)/$(1)/test_results.json
$(SAVE_DIR)/$(1)/test_results.json: $(SAVE_DIR)/$(2)/train_results.json $(wildcard $(BLIMP_DIR)/*.jsonl) | $(VENV_STAMP)
	$$(RUN) test $$(DATA_OPTS) --block_size $$(BLOCK) --model_dir $(SAVE_DIR)/$(2)/best_model --output_dir $$(@D) $$(BLIMP_OPTS) $$(FAST) $(3)
endef

# ----------------------------------------------------------------------------- the experiment
# step2: small GPT-2 on all training files
$(eval $(call TRAIN_STEP,step2_1,$(TOK_CLM),,$(GPT_LOOP) --model_type gpt2 $(SMALL) $(TRAIN_OPTS)))
$(eval $(call TEST_STEP,step2_2,step2_1))
# step3: GPT-2 curriculum: easier files, then harder files from 3_1's best model
$(eval $(call TRAIN_STEP,step3_1,$(TOK_CLM),,$(GPT_LOOP) --model_type gpt2 $(SMALL) $(TRAIN_OPTS) --train_files $(EASY_FILES)))
$(eval $(call TRAIN_STEP,step3_2,$(TOK_CLM),step3_1,$(GPT_LOOP) $(TRAIN_OPTS) --train_files $(HARD_FILES)))
$(eval $(call TEST_STEP,step3_3,step3_2))
# step4: small BERT (masked LM)
$(eval $(call TRAIN_STEP,step4_1,$(TOK_MLM),,$(BERT_LOOP) --model_type bert $(SMALL) $(TRAIN_OPTS)))
$(eval $(call TEST_STEP,step4_2,step4_1))
# step5: BERT curriculum
$(eval $(call TRAIN_STEP,step5_1,$(TOK_MLM),,$(BERT_LOOP) --model_type bert $(SMALL) $(TRAIN_OPTS) --train_files $(EASY_FILES)))
$(eval $(call TRAIN_STEP,step5_2,$(TOK_MLM),step5_1,$(BERT_LOOP) $(TRAIN_OPTS) --train_files $(HARD_FILES)))
$(eval $(call TEST_STEP,step5_3,step5_2))
# step6: scaled-up GPT-2
$(eval $(call TRAIN_STEP,step6_1,$(TOK_CLM),,$(GPT_LOOP) --model_type gpt2 $(LARGE) $(TRAIN_OPTS)))
$(eval $(call TEST_STEP,step6_2,step6_1))
# step7: scaled-up GPT-2 with the curriculum
$(eval $(call TRAIN_STEP,step7_1,$(TOK_CLM),,$(GPT_LOOP) --model_type gpt2 $(LARGE) $(TRAIN_OPTS) --train_files $(EASY_FILES)))
$(eval $(call TRAIN_STEP,step7_2,$(TOK_CLM),step7_1,$(GPT_LOOP) $(TRAIN_OPTS) --train_files $(HARD_FILES)))
$(eval $(call TEST_STEP,step7_3,step7_2))
# step8: the original report's reverse file-level curriculum: step6-size GPT-2 on the harder
# files first, then the easier ones
$(eval $(call TRAIN_STEP,step8_1,$(TOK_CLM),,$(GPT_LOOP) --model_type gpt2 $(LARGE) $(TRAIN_OPTS) --train_files $(HARD_FILES)))
$(eval $(call TRAIN_STEP,step8_2,$(TOK_CLM),step8_1,$(GPT_LOOP) $(TRAIN_OPTS) --train_files $(EASY_FILES)))
$(eval $(call TEST_STEP,step8_3,step8_2))

# ----------------------------------------------------------------------------- curriculum experiments
# step9_<model>_<variant>: the step2 GPT-2 and the step4 BERT, each for CURRIC_STEPS optimizer steps
# (equal tokens seen in every run): no curriculum; the file-level curriculum (easier files, then
# harder ones, half the steps each); the data curriculum with linear and root pacing on length
# and unigram difficulty. Each is tested with BLiMP (step9_..._test); `make step9` runs them all
# and `make report` puts them side by side.
CURRIC_STEPS ?= 2000
CURRIC_TRAIN  = $(TRAIN_CORE)
CURRIC_OPTS   = --max_steps $(CURRIC_STEPS) $(CURRIC_TRAIN)
CURRIC_HALF   = --max_steps $(shell echo $$(( $(CURRIC_STEPS) / 2 ))) $(CURRIC_TRAIN)
CURRIC_MODELS = gpt2 bert
CURRIC_DATA   = length_linear length_root unigram_linear unigram_root
model_opts = $(if $(filter bert,$(1)),$(BERT_LOOP) --model_type bert,$(GPT_LOOP) --model_type gpt2) $(SMALL)
model_tok  = $(if $(filter bert,$(1)),$(TOK_MLM),$(TOK_CLM))
# $(call CURRIC_MODEL,model)
define CURRIC_MODEL
$$(eval $$(call TRAIN_STEP,step9_$(1)_none,$(call model_tok,$(1)),,$(call model_opts,$(1)) $$(CURRIC_OPTS)))
$$(eval $$(call TRAIN_STEP,step9_$(1)_files_a,$(call model_tok,$(1)),,$(call model_opts,$(1)) $$(CURRIC_HALF) --train_files $$(EASY_FILES)))
$$(eval $$(call TRAIN_STEP,step9_$(1)_files,$(call model_tok,$(1)),step9_$(1)_files_a,$(call model_opts,$(1)) $$(CURRIC_HALF) --train_files $$(HARD_FILES)))
$$(foreach v,$(CURRIC_DATA),$$(eval $$(call TRAIN_STEP,step9_$(1)_$$(v),$(call model_tok,$(1)),,$(call model_opts,$(1)) $$(CURRIC_OPTS) --difficulty $$(firstword $$(subst _, ,$$(v))) --pacing $$(lastword $$(subst _, ,$$(v))))))
$$(foreach v,none files $(CURRIC_DATA),$$(eval $$(call TEST_STEP,step9_$(1)_$$(v)_test,step9_$(1)_$$(v))))
endef
$(foreach m,$(CURRIC_MODELS),$(eval $(call CURRIC_MODEL,$(m))))
.PHONY: step9
step9: $(foreach m,$(CURRIC_MODELS),$(foreach v,none files $(CURRIC_DATA),step9_$(m)_$(v)_test))

# ----------------------------------------------------------------------------- distillation and the hybrid objective
# step10 (BabyLlama-style ensemble distillation): two larger teachers, a GPT-2 and a Llama
# (TEACHER_SIZE, TEACHER_STEPS optimizer steps each), then a step2-size GPT-2 student distilled
# from both for CURRIC_STEPS steps: the same tokens seen as step9_gpt2_none, its undistilled twin.
# step11 (GPT-BERT-style hybrid): a step2-size gpt_bert model (mlm tokenizer: it needs <mask>)
# trained on masked next-token prediction and causal LM, masked:causal steps 15:1 and 1:1, for
# CURRIC_STEPS steps (as step9_gpt2_none and step9_bert_none). Every model is tested with BLiMP
# (<step>_test; the hybrids also with masked next-token PLL, <step>_test_masked).
# `make step10 step11` runs them all and `make report` lists them beside step9.
TEACHER_SIZE  ?= $(LARGE)
TEACHER_STEPS ?= $(CURRIC_STEPS)
DISTILL_OPTS  ?= --distill_alpha 0.5 --distill_temperature 2.0
HYBRID_RATIOS ?= 15:1 1:1
TEACHERS      = step10_teacher_gpt2 step10_teacher_llama
hybrid_step   = step11_hybrid_$(subst :,to,$(1))
$(foreach m,gpt2 llama,$(eval $(call TRAIN_STEP,step10_teacher_$(m),$(TOK_CLM),,$(GPT_LOOP) --model_type $(m) $(TEACHER_SIZE) --max_steps $(TEACHER_STEPS) $(CURRIC_TRAIN))))
$(eval $(call TRAIN_STEP,step10_student,$(TOK_CLM),,$(GPT_LOOP) --model_type gpt2 $(SMALL) $(CURRIC_OPTS) $(DISTILL_OPTS) --teacher_models $(foreach t,$(TEACHERS),$(SAVE_DIR)/$(t)/best_model),$(TEACHERS)))
$(foreach s,$(TEACHERS) step10_student,$(eval $(call TEST_STEP,$(s)_test,$(s))))
$(foreach r,$(HYBRID_RATIOS),$(eval $(call TRAIN_STEP,$(call hybrid_step,$(r)),$(TOK_MLM),,$(GPT_LOOP) --model_type gpt_bert $(SMALL) $(CURRIC_OPTS) --hybrid_ratio $(r))))
$(foreach r,$(HYBRID_RATIOS),$(eval $(call TEST_STEP,$(call hybrid_step,$(r))_test,$(call hybrid_step,$(r)))))
$(foreach r,$(HYBRID_RATIOS),$(eval $(call TEST_STEP,$(call hybrid_step,$(r))_test_masked,$(call hybrid_step,$(r)),--hybrid_scoring masked)))
.PHONY: step10 step11
step10: $(foreach s,$(TEACHERS) step10_student,$(s)_test)
step11: $(foreach r,$(HYBRID_RATIOS),$(call hybrid_step,$(r))_test $(call hybrid_step,$(r))_test_masked)

# ----------------------------------------------------------------------------- the experiment registry
# make best / baseline / candidates / sweep / ablation (docs/time_budget.md)
include experiments.mk

# ----------------------------------------------------------------------------- GPT-BERT as its authors built it
# step12: ltg_bert (hybrid_model.py: GPT-BERT's authors' body) trained with their objective and optimizer,
# the recipe configs/candidates/ltg_bert.toml (also `make candidates`' ltg_bert), for LTG_STEPS optimizer
# steps: at the step2 size (step12_ltg_bert_small; the same steps and batch as step11) and at the
# authors' strict-small size (step12_ltg_bert_strict_small: 12 x 384, 6 heads, 1,280 feed-forward, an
# LTG_VOCAB-token mlm tokenizer; about 30M parameters). Each is tested with causal BLiMP (<step>_test)
# and masked next-token PLL (<step>_test_masked). The recipe's learning rate is the authors', so only
# the batch and the logging come from the command line here (not TRAIN_CORE).
LTG_RECIPE       ?= --config configs/candidates/ltg_bert.toml
LTG_STRICT_SMALL ?= --hidden_size 384 --num_layers 12 --num_heads 6 --intermediate_size 1280
LTG_VOCAB        ?= 8192
LTG_STEPS        ?= $(CURRIC_STEPS)
LTG_TRAIN         = --max_steps $(LTG_STEPS) --batch_size 32 --eval_steps 500 --logging_steps 50
LTG_RUNS          = step12_ltg_bert_small step12_ltg_bert_strict_small
$(eval $(call TRAIN_STEP,step12_ltg_bert_small,$(TOK_MLM),,$(GPT_LOOP) $(LTG_RECIPE) $(SMALL) $(LTG_TRAIN)))
$(eval $(call TRAIN_STEP,step12_ltg_bert_strict_small,$(call tok_of,$(LTG_VOCAB),mlm),,$(GPT_LOOP) $(LTG_RECIPE) $(LTG_STRICT_SMALL) $(LTG_TRAIN)))
$(foreach s,$(LTG_RUNS),$(eval $(call TEST_STEP,$(s)_test,$(s))))
$(foreach s,$(LTG_RUNS),$(eval $(call TEST_STEP,$(s)_test_masked,$(s),--hybrid_scoring masked)))
.PHONY: step12
step12: $(foreach s,$(LTG_RUNS),$(s)_test $(s)_test_masked)

# ----------------------------------------------------------------------------- downloads
# make data: the BabyLM 2023 corpus into $(DATA_DIR); EDITION=2024 the 2024/2025 release (its zip's link
# in CORPUS_OPTS="--url ...": OSF publishes no direct link or checksum); EDITION=hub HUB_ID=org/name a
# Hugging Face dataset, written once as text files (then read offline). make eval_data: the 67 BLiMP paradigms
# into $(BLIMP_DIR) (eval_data_blimp) and the official BabyLM 2025 evaluation data, full_eval/ and
# fast_eval/, into $(EVAL_DIR) (eval_data_official). Checked before anything is installed (corpus:
# size + sha256; BLiMP and the official data: every line of every file), resumable (rerun after a
# broken download), and a no-op once installed. Another release or a mirror:
#   make data CORPUS_OPTS="--url URL --sha256 HEX --size BYTES"
# The official data's release pins no checksum: EVAL_OPTS="--sha256 HEX --size BYTES" pins a copy,
# EVAL_OPTS="--url URL" picks a mirror, EVAL_OPTS="--from DIR" installs a folder downloaded by hand.
CORPUS_OPTS ?=
EVAL_OPTS   ?=
EDITION     ?= 2023
HUB_ID      ?=

data: $(VENV_STAMP)
ifeq ($(EDITION),hub)
	@test -n "$(HUB_ID)" || { echo "error: make data EDITION=hub needs HUB_ID=<dataset id or folder>"; exit 2; }
	$(PY) -m tools.download dataset $(HUB_ID) --data_dir $(DATA_DIR) $(CORPUS_OPTS)
else
	$(PY) -m tools.download corpus --edition $(EDITION) --data_dir $(DATA_DIR) $(CORPUS_OPTS)
endif

eval_data: eval_data_blimp eval_data_official

eval_data_blimp: $(VENV_STAMP)
	$(PY) -m tools.download blimp --blimp_dir $(BLIMP_DIR)

eval_data_official: $(VENV_STAMP)
	$(PY) -m tools.download official_eval --eval_dir $(EVAL_DIR) $(EVAL_OPTS)

# Corpus statistics per split and file (+ tokens per word once step1 ran) -> $(SAVE_DIR)/stats/.
stats: $(VENV_STAMP)
	$(RUN) stats --data_dir $(DATA_DIR) $(SPLIT_OPT) --cache_dir $(SAVE_DIR)/cache \
		$(if $(wildcard $(TOK_CLM)),--tokenizer_dir $(dir $(TOK_CLM))) --output_dir $(SAVE_DIR)/stats $(EXTRA)

# ----------------------------------------------------------------------------- evaluation and report
# make blimp STEP=step2_1 / make finetune STEP=step4_1: score one training step's best model
# (training it first if needed); outputs in $(SAVE_DIR)/blimp_<step>/ and $(SAVE_DIR)/finetune_<step>/.
need_step = @test -n "$(STEP)" || { echo "error: make $@ needs STEP=<training step>, e.g. make $@ STEP=step2_1"; exit 2; }

blimp: $(VENV_STAMP)
	$(need_step)
	$(MAKE) --no-print-directory $(SAVE_DIR)/$(STEP)/train_results.json
	$(RUN) blimp --model_dir $(SAVE_DIR)/$(STEP)/best_model --blimp_dir $(BLIMP_DIR) --output_dir $(SAVE_DIR)/blimp_$(STEP) $(FAST) $(EXTRA)

finetune: $(VENV_STAMP)
	$(need_step)
	$(MAKE) --no-print-directory $(SAVE_DIR)/$(STEP)/train_results.json
	$(RUN) finetune --model_dir $(SAVE_DIR)/$(STEP)/best_model --glue_dir $(GLUE_DIR) --output_dir $(SAVE_DIR)/finetune_$(STEP) $(FAST) $(FINETUNE_OPTS) $(EXTRA)

# make evaluate STEP=step2_1: the official BabyLM zero-shot suite on one step's best model (training it
# first if needed): every task in $(EVAL_DIR)/$(EVAL_SET), both conventions, in float32 so that the
# official convention reproduces the official pipeline exactly; results in $(SAVE_DIR)/<step>/results/
# in the official layout, with zero_shot_summary.md/.json. EVAL_SET=full_eval for the full sets.
EVAL_SET ?= fast_eval
EVAL_ZS_OPTS ?=
evaluate: $(VENV_STAMP)
	$(need_step)
	$(MAKE) --no-print-directory $(SAVE_DIR)/$(STEP)/train_results.json
	$(RUN) evaluate --model_dir $(SAVE_DIR)/$(STEP)/best_model --eval_dir $(EVAL_DIR)/$(EVAL_SET) $(EVAL_ZS_OPTS) $(EXTRA)

# make evaluate_checkpoints STEP=step2_1: the fast suite on every chck_* folder of a step trained with
# EXTRA="--checkpoint_words babylm", each filed as its revision, then AoA across them when
# $(EVAL_DIR) holds its data; make submission STEP=step2_1: the official submission file from the
# step's results (make evaluate EVAL_SET=full_eval, make finetune, make evaluate_checkpoints), its
# item counts checked; PARTIAL=1 writes an incomplete one under a _partial name. TRACK=strict for 100M.
# make export STEP=step2_1: the step as a local git repository, main + a branch per chck_* (PUSH=org/name
# uploads it with huggingface_hub; needs HF_TOKEN).
# The official pipeline whose collate step judges the submission (empty: $$OFFICIAL_PIPELINE, else
# ../shared/official_pipeline).
PARTIAL ?=
PUSH    ?=
OFFICIAL_PIPELINE ?=
evaluate_checkpoints: $(VENV_STAMP)
	$(need_step)
	$(MAKE) --no-print-directory $(SAVE_DIR)/$(STEP)/train_results.json
	$(RUN) evaluate_checkpoints --model_dir $(SAVE_DIR)/$(STEP) --eval_dir $(EVAL_DIR) $(EVAL_ZS_OPTS) $(EXTRA)

submission: $(VENV_STAMP)
	$(need_step)
	$(RUN) submission --model_dir $(SAVE_DIR)/$(STEP) $(if $(TRACK),--track $(TRACK)) $(if $(PARTIAL),--partial) $(if $(OFFICIAL_PIPELINE),--official_pipeline $(OFFICIAL_PIPELINE)) $(EXTRA)

export: $(VENV_STAMP)
	$(need_step)
	$(RUN) export --model_dir $(SAVE_DIR)/$(STEP) $(if $(PUSH),--push $(PUSH)) $(EXTRA)

# Gathers every finished step into $(SAVE_DIR)/report.md (+ loss and BLiMP plots).
report: $(VENV_STAMP)
	$(RUN) report --save_dir $(SAVE_DIR)

# ----------------------------------------------------------------------------- demo, tests, tools
DEMO_VARS = DATA_DIR=data/sample SAVE_DIR=save_demo VOCAB=1000 BLOCK=64 \
	BLIMP_DIR=data/sample_eval/blimp GLUE_DIR=data/sample_eval/glue EVAL_DIR=data/sample_eval FINETUNE_OPTS="--finetune_epochs 10 --finetune_learning_rate 2e-3 --finetune_batch_size 8 --finetune_patience 0" \
	SMALL="--hidden_size 64 --num_layers 2 --num_heads 2" \
	TRAIN_OPTS="--num_train_epochs 10 --batch_size 16 --learning_rate 3e-3 --eval_steps 100 --logging_steps 10" \
	FAST="$(DEMO_FAST)" BERT_LOOP=
# No torch.compile in the demo: its tiny models train in seconds, less than compiling takes;
# DEMO_FAST= runs it in plain float32. Its BERT trains with the HF Trainer, so the demo runs both loops.
DEMO_FAST ?= --precision auto --compile off
DEMO_LAYOUTS = 2024 dataset plain

demo: $(VENV_STAMP)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(MAKE) --no-print-directory step2_2 step3_3 step4_2 $(DEMO_VARS)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(MAKE) --no-print-directory finetune STEP=step4_1 $(DEMO_VARS)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(MAKE) --no-print-directory evaluate STEP=step2_1 $(DEMO_VARS)
	@# The other corpus layouts (docs/data.md): step2 on each, in save_demo/layouts/<layout>/.
	$(foreach l,$(DEMO_LAYOUTS),OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(MAKE) --no-print-directory step2_2 $(DEMO_VARS) DATA_DIR=data/sample_$(l) SAVE_DIR=save_demo/layouts/$(l) &&) true
	$(MAKE) --no-print-directory report $(DEMO_VARS)
	@echo
	@cat save_demo/report.md
	@echo
	@echo "Demo finished. Report: save_demo/report.md (+ loss_curves.png, blimp_fields.png)"
	@echo "Models: save_demo/step*/best_model   Test, BLiMP, fine-tuning: save_demo/step*_{2,3}/, save_demo/finetune_step4_1/"
	@echo "The 2024, dataset and plain layouts: save_demo/layouts/*/step2_2/test_results.json (layout in step2_1/log.txt)"
	@echo "TensorBoard: make tensorboard SAVE_DIR=save_demo   (or .venv/bin/tensorboard --logdir save_demo)"

test: $(VENV_STAMP)
	$(VENV)/bin/ruff check .
	OMP_NUM_THREADS=1 $(PY) -m pytest -q tests

# Throughput side by side in one process (training tokens/s, peak memory and MFU per loop,
# data loading, loss curves, BLiMP pairs/s, tokenization MB/s) and zero-shot scoring against the
# official pipeline itself (OFFICIAL_PIPELINE, as for submission; skipped with a note when absent):
# printed and saved in $(SAVE_DIR)/bench/. About an hour on 2 CPU cores (see docs/speed.md);
# BENCH_OPTS="--models gpt2 --sizes step2 --skip zero_shot" is quicker.
BENCH_OPTS ?=
bench: $(VENV_STAMP)
	$(PY) -m tools.bench --out_dir $(SAVE_DIR)/bench $(if $(OFFICIAL_PIPELINE),--official_pipeline $(OFFICIAL_PIPELINE)) $(BENCH_OPTS)

# The pipeline on one CUDA GPU (tools/gpu_check.py): gpu_bundle prepares the data on the CPU (corpus slice,
# BLiMP, tokenizers, packed cache into gpu_bundle/); gpu_check runs on the GPU machine's own python3
# and writes $(SAVE_DIR)/gpu_check/gpu_check.md.
GPU_DATA  ?= ../shared/data/babylm/2023
GPU_BLIMP ?= ../shared/data/blimp_dev
GPU_PY    ?= python3
gpu_bundle: $(VENV_STAMP)
	$(PY) -m tools.gpu_check bundle --data_dir $(GPU_DATA) --blimp_dir $(GPU_BLIMP) --out gpu_bundle
gpu_check:
	$(GPU_PY) -m tools.gpu_check run --bundle gpu_bundle --out $(SAVE_DIR)/gpu_check

lint: $(VENV_STAMP)
	$(VENV)/bin/ruff check .

tensorboard: $(VENV_STAMP)
	$(VENV)/bin/tensorboard --logdir $(SAVE_DIR)

clean_demo:
	rm -rf save_demo

clean: clean_demo
	rm -rf $(SAVE_DIR) .pytest_cache
