"""Shared fixtures: the shipped sample corpus, tiny tokenizers trained on it, and
a helper that builds a tiny-model argument namespace through the real parser."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample"
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One thread: with another process busy, two threads are slower than one here.
torch.set_num_threads(1)

from argument_parser import parse_args  # noqa: E402
from corpus.editions import resolve_files  # noqa: E402
from tokenizer import train_tokenizer  # noqa: E402

TINY_MODEL = ["--hidden_size", "32", "--num_layers", "2", "--num_heads", "2", "--block_size", "32",
              "--max_position_embeddings", "64", "--dropout", "0.0"]


@pytest.fixture(scope="session")
def tok_dirs(tmp_path_factory) -> dict[str, Path]:
    """CLM and MLM tokenizers (vocabulary 600) trained once on the sample train files."""
    root = tmp_path_factory.mktemp("tokenizers")
    files = resolve_files(SAMPLE, "train", None)
    dirs = {}
    for kind in ("clm", "mlm"):
        dirs[kind] = root / kind
        train_tokenizer(files, dirs[kind], kind, vocab_size=600, min_frequency=2)
    return dirs


@pytest.fixture
def make_args(tmp_path, tok_dirs):
    """Build a namespace for `run.py ACTION` with tiny sizes; extra CLI words override."""

    def build(action: str, *extra: str, kind: str = "clm"):
        argv = [action, "--data_dir", str(SAMPLE), "--cache_dir", str(tmp_path / "cache"),
                "--tokenizer_dir", str(tok_dirs[kind]), *TINY_MODEL, *map(str, extra)]
        return parse_args(argv)

    return build


def run_loop(loop: str, args):
    """Train as run.py does: prepare the setup, run the loop ("pytorch": the custom loop,
    "huggingface": the Trainer) on it, close it; returns train_results.json's contents."""
    import huggingface_trainer_loop
    import pytorch_training_loop
    from training.setup import prepare_training

    module = pytorch_training_loop if loop == "pytorch" else huggingface_trainer_loop
    setup = prepare_training(args)
    try:
        return module.train(setup)
    finally:
        setup.close()
