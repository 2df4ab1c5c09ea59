"""--teacher_models: the teachers a student distils from, checked before anything is written
(`check_teachers`, without loading their weights) and then loaded (`load_teacher`)."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import PreTrainedModel

from custom_models import check_tokenizer_fits, is_causal, is_hybrid, load_model, saved_model_type
from tokenizer import load_tokenizer
from training.hardware import DTYPES
from utils import UserError


def check_teachers(folders: list[str | Path] | None, tokenizer, tokenizer_dir: str | Path,
                   model_type: str) -> list[str]:
    """The --teacher_models folders, checked without loading their weights: each holds a
    model of the student's kind (causal or masked) with the student's tokenizer."""
    if not folders:
        return []
    if is_hybrid(model_type):
        raise UserError(f"distillation into a {model_type} model is not supported: drop --teacher_models or train a "
                        "gpt2, llama or bert student")
    student_vocab = tokenizer.get_vocab()
    for folder in folders:
        teacher_type = saved_model_type(folder)
        if is_causal(teacher_type) != is_causal(model_type) or is_hybrid(teacher_type):
            kind = lambda t: "a masked LM" if not is_causal(t) else f"a causal LM ({t})"  # noqa: E731
            raise UserError(f"--teacher_models {folder} is {kind(teacher_type)} but the student ({model_type}) is "
                            f"{kind(model_type)}: distil from teachers that predict what the student predicts")
        teacher_tok = load_tokenizer(folder, "--teacher_models")
        if (teacher_tok.get_vocab() != student_vocab or teacher_tok.all_special_tokens != tokenizer.all_special_tokens):
            raise UserError(f"--teacher_models {folder} was trained with another tokenizer than --tokenizer_dir "
                            f"{tokenizer_dir} ({len(teacher_tok)} vs {len(tokenizer)} tokens, or different "
                            "tokens): teachers and student must share the tokenizer; train the teachers with it")
    return [str(f) for f in folders]


def load_teacher(folder: str, tokenizer, device: torch.device, attn_implementation: str | None, block_size: int,
                 precision: str) -> PreTrainedModel:
    """A teacher model: loaded, checked, in eval mode without gradients, in the run's precision."""
    teacher = load_model(folder, attn_implementation)
    check_tokenizer_fits(teacher.config, tokenizer, folder, block_size, option="--teacher_models")
    if teacher.config.vocab_size != len(tokenizer):
        raise UserError(f"--teacher_models {folder} has a vocabulary of {teacher.config.vocab_size} but the "
                        f"tokenizer has {len(tokenizer)} tokens: teachers and student must share the tokenizer")
    teacher.requires_grad_(False)
    return teacher.to(device, dtype=DTYPES[precision]).eval()
