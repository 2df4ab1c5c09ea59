"""What a reliability probe of the pipeline found, each fixed at its root and tested here:
the run folder's states (resume auto, partial checkpoints, folders renamed aside), counts of
what was actually trained, file-system failures as one line with nothing half-written, fsync
before renames, one writer per folder, Ctrl-C, and the smaller cases. The bad option values,
BLiMP folders and run-state messages are rows of tests/test_bad_input.py's table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import torch
from conftest import ROOT, SAMPLE, TINY_MODEL, run_loop
from test_bad_input import killed_in_first_save

import run
import training.setup as training_setup
import utils
from training.run_folder import RunFolder, RunRequest, RunState, list_checkpoints
from training.tracking import NonFiniteLoss
from utils import FolderLock, UserError


def train(tmp_path, tok_dirs, out, *extra: str, loop: str = "pytorch") -> list[str]:
    return ["train", *(["--torch_training"] if loop == "pytorch" else []), "--data_dir", str(SAMPLE),
            "--tokenizer_dir", str(tok_dirs["clm"]), "--cache_dir", str(tmp_path / "cache"), "--output_dir", str(out),
            *TINY_MODEL, "--batch_size", "4", "--logging_steps", "1", "--save_steps", "3", "--eval_steps", "3",
            *extra]


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith(("error", "interrupted"))]
    assert len(lines) == 1, err
    return lines[0]


# --------------------------------------------------------------------------- the run folder's state


@pytest.mark.parametrize("loop", ["pytorch", "huggingface"])
def test_resume_auto_starts_over_a_run_killed_in_its_first_save(loop, tmp_path, tok_dirs):
    out = killed_in_first_save(tmp_path)
    assert RunFolder(out).state() is RunState.INCOMPLETE
    assert run.main(train(tmp_path, tok_dirs, out, "--max_steps", "4", "--resume", "auto", loop=loop)) == 0
    assert RunFolder(out).state() is RunState.FINISHED
    assert [p.name for p in list_checkpoints(out)] == ["checkpoint-3", "checkpoint-4"]
    assert not list((out / "checkpoints").glob(".*.tmp"))


def test_resume_auto_continues_a_resumable_run_and_refuses_a_finished_one(tmp_path, tok_dirs):
    out = tmp_path / "run"
    assert run.main(train(tmp_path, tok_dirs, out, "--max_steps", "3")) == 0
    (out / "train_results.json").unlink()  # as if killed after its checkpoint at step 3
    assert RunFolder(out).state() is RunState.RESUMABLE
    assert run.main(train(tmp_path, tok_dirs, out, "--max_steps", "5", "--resume", "auto")) == 0
    assert "resuming from" in (out / "log.txt").read_text()
    assert json.loads((out / "train_results.json").read_text())["steps"] == 5
    with pytest.raises(UserError, match="already holds a finished run"):
        RunFolder(out).decide(RunRequest.from_args(run.parse_args(train(tmp_path, tok_dirs, out, "--resume", "auto"))))


def test_make_resumes_with_auto_and_restarts_finished_or_forced_steps(tmp_path):
    def flags(*variables: str) -> str:
        done = subprocess.run(["make", "-n", "-B", f"SAVE_DIR={tmp_path}", "step2_1", *variables], cwd=ROOT,
                              capture_output=True, text=True, check=True)
        (line,) = [line for line in done.stdout.splitlines() if " train " in line]
        return line

    assert "--resume auto" in flags()
    assert "--overwrite_output_dir" in flags("RESTART=1") and "--resume" not in flags("RESTART=1")
    (tmp_path / "step2_1").mkdir()
    (tmp_path / "step2_1" / "train_results.json").write_text("{}")
    assert "--overwrite_output_dir" in flags()  # a finished step that Make reruns (inputs changed) starts over


def test_a_folder_renamed_aside_gets_its_name_back_and_leftovers_go(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / ".best_model.old").mkdir(parents=True)  # killed between replace_dir's two renames
    (run_dir / ".best_model.old" / "config.json").write_text("{}")
    (run_dir / ".best_model.x1.tmp").mkdir()
    (run_dir / ".log.txt.y2.tmp").write_text("half")
    (run_dir / "checkpoints" / "checkpoint-4").mkdir(parents=True)  # a Trainer killed mid-save: no marker
    (run_dir / "checkpoints" / "checkpoint-2").mkdir()
    (run_dir / "checkpoints" / "checkpoint-2" / "trainer_state.json").write_text("{}")
    assert RunFolder(run_dir).state() is RunState.RESUMABLE
    RunFolder(run_dir).tidy()
    assert sorted(p.name for p in run_dir.iterdir()) == ["best_model", "checkpoints"]
    assert (run_dir / "best_model" / "config.json").is_file()
    assert [p.name for p in (run_dir / "checkpoints").iterdir()] == ["checkpoint-2"]


# --------------------------------------------------------------------------- counts of what was trained


@pytest.mark.parametrize("loop", ["pytorch", "huggingface"])
def test_tokens_seen_counts_the_blocks_trained_not_full_batches(loop, tmp_path, tok_dirs, capsys):
    big = tmp_path / "big"
    assert run.main(train(tmp_path, tok_dirs, big, "--batch_size", "100000", "--max_steps", "2", loop=loop)) == 0
    n_blocks = int(capsys.readouterr().err.split(" training blocks")[0].rsplit(" ", 1)[-1])
    results = json.loads((big / "train_results.json").read_text())
    assert results["tokens_seen"] == 2 * n_blocks * 32  # two steps of the whole corpus (32-token blocks)
    one_epoch = tmp_path / "epoch"
    assert run.main(train(tmp_path, tok_dirs, one_epoch, "--batch_size", "7", "--num_train_epochs", "1",
                          loop=loop)) == 0
    results = json.loads((one_epoch / "train_results.json").read_text())
    assert n_blocks % 7 and results["tokens_seen"] == n_blocks * 32  # the last, short batch counted as it is


# --------------------------------------------------------------------------- file-system failures


def test_a_full_disk_during_a_checkpoint_is_one_line_and_leaves_nothing_half_written(tmp_path, tok_dirs, capsys,
                                                                                    monkeypatch):
    import pytorch_training_loop

    real_save, saves = torch.save, {"n": 0}

    def save_until_full(obj, path, *args, **kwargs):
        saves["n"] += 1
        if saves["n"] == 2:  # the second checkpoint: what torch.save raises when the disk fills up
            raise RuntimeError("[enforce fail at inline_container.cc:783] . PytorchStreamWriter failed writing "
                               "file data/3: file write failed")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(pytorch_training_loop.torch, "save", save_until_full)
    out = tmp_path / "run"
    assert run.main(train(tmp_path, tok_dirs, out, "--max_steps", "9")) == 1
    line = one_line(capsys)
    assert line.startswith(f"error: cannot write '{out / 'checkpoints' / 'checkpoint-6'}'") and "free space" in line
    assert [p.name for p in list_checkpoints(out)] == ["checkpoint-3"]  # the earlier one is intact
    assert not list((out / "checkpoints").glob(".*")), "a temporary checkpoint folder was left behind"


def test_a_read_only_output_folder_is_one_line(tmp_path, tok_dirs, capsys, monkeypatch):
    # Tests run as root here, which ignores permission bits: the file system's answer is simulated.
    def read_only(self, folder):
        raise OSError(30, "Read-only file system", str(folder))

    monkeypatch.setattr(FolderLock, "__init__", read_only)
    out = tmp_path / "run"
    assert run.main(train(tmp_path, tok_dirs, out, "--max_steps", "2")) == 1
    line = one_line(capsys)
    assert line.startswith("error: Read-only file system") and f"'{out}'" in line and "permissions" in line


def test_atomic_text_write_fails_in_one_line_and_removes_its_temporary_file(tmp_path, monkeypatch):
    real_fsync = os.fsync

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(utils.os, "fsync", full)
    with pytest.raises(UserError, match=r"cannot write '.*results.json': No space left on device"):
        utils.write_json_atomic(tmp_path / "results.json", {"a": 1})
    monkeypatch.setattr(utils.os, "fsync", real_fsync)
    assert list(tmp_path.iterdir()) == []


def test_files_and_folders_are_fsynced_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = utils.fsync_path, os.replace
    monkeypatch.setattr(utils, "fsync_path", lambda p: (events.append(("fsync", p.name)), real_fsync(p)))
    monkeypatch.setattr(utils.os, "replace", lambda a, b: (events.append(("rename", b.name)), real_replace(a, b)))
    with utils.atomic_dir(tmp_path / "model") as tmp:
        (tmp / "weights.bin").write_bytes(b"w")
    synced = [name for kind, name in events[:events.index(("rename", "model"))] if kind == "fsync"]
    assert "weights.bin" in synced and any(name.startswith(".model.") for name in synced)  # file, then its folder
    assert events[-1] == ("fsync", tmp_path.name)  # the parent, after the rename


# --------------------------------------------------------------------------- one writer per folder


def test_a_second_run_into_a_locked_folder_is_refused(tmp_path, tok_dirs, capsys):
    out = tmp_path / "run"
    held = FolderLock(out)  # another process's run (a flock conflicts across open files, as across processes)
    try:
        assert run.main(train(tmp_path, tok_dirs, out, "--max_steps", "2")) == 1
        line = one_line(capsys)
        assert f"another process (pid {os.getpid()}) is writing to '{out}'" in line
        assert not (out / "log.txt").exists()
    finally:
        held.release()
    assert run.main(train(tmp_path, tok_dirs, out, "--max_steps", "2")) == 0


def test_a_killed_holder_does_not_leave_the_lock_stuck(tmp_path):
    code = (f"import sys, time; sys.path.insert(0, {str(ROOT)!r}); import utils; "
            f"lock = utils.FolderLock({str(tmp_path)!r}); print('locked', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(UserError, match=f"pid {holder.pid}"):
        FolderLock(tmp_path)
    holder.kill()
    holder.wait()
    time.sleep(0.1)
    FolderLock(tmp_path).release()  # free again


def test_a_run_that_appears_between_the_check_and_the_lock_is_not_clobbered(tmp_path, tok_dirs):
    out = tmp_path / "run"
    args = run.parse_args(train(tmp_path, tok_dirs, out))
    decided = RunFolder(out).decide(RunRequest.from_args(args))
    assert decided == (None, False)
    out.mkdir()
    (out / "train_results.json").write_text("{}")  # another run finished there meanwhile
    with pytest.raises(UserError, match="already holds a finished run"):  # decided again, under the lock
        RunFolder(out).lock(RunRequest.from_args(args, 1), decided)
    FolderLock(out).release()  # and the lock was given back


# --------------------------------------------------------------------------- smaller cases


def test_ctrl_c_ends_with_one_line_and_exit_130(tmp_path, tok_dirs, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training_setup, "load_splits", interrupted)
    assert run.main(train(tmp_path, tok_dirs, tmp_path / "run", "--max_steps", "2")) == 130
    assert one_line(capsys).startswith("interrupted: train stopped by Ctrl-C")


def test_a_nonfinite_loss_before_any_save_does_not_name_a_missing_best_model(tmp_path, tok_dirs, monkeypatch):
    real_build = training_setup.build_model

    def poisoned(args, tokenizer):
        model = real_build(args, tokenizer)
        def poison(module, inputs, out):  # the body's output: the custom loop never calls the head module
            out.last_hidden_state = out.last_hidden_state * float("nan")
            return out

        model.base_model.register_forward_hook(poison)
        return model

    monkeypatch.setattr(training_setup, "build_model", poisoned)

    with pytest.raises(NonFiniteLoss) as caught:
        run_loop("pytorch", run.parse_args(train(tmp_path, tok_dirs, tmp_path / "run", "--max_steps", "2")))
    assert "no model was saved yet" in str(caught.value) and "best_model" not in str(caught.value)
    assert "--resume" not in str(caught.value)


def test_init_model_keeps_and_records_its_type(tmp_path, tok_dirs):
    first = tmp_path / "first"
    assert run.main(train(tmp_path, tok_dirs, first, "--max_steps", "2", "--model_type", "llama")) == 0
    second = tmp_path / "second"
    assert run.main(train(tmp_path, tok_dirs, second, "--max_steps", "2", "--init_model",
                          str(first / "best_model"))) == 0
    assert json.loads((second / "best_model" / "run_args.json").read_text())["model_type"] == "llama"


def test_duplicated_blimp_pairs_and_empty_training_files_are_said(tmp_path, tok_dirs, capsys):
    from test_bad_input import GOOD_PAIR, corpus, jsonl, tiny_model

    folder = jsonl(tmp_path, "p.jsonl", [GOOD_PAIR, GOOD_PAIR, {**GOOD_PAIR, "sentence_good": "the dogs run ."}])
    model = tiny_model(tmp_path, tok_dirs["clm"])
    assert run.main(["blimp", "--blimp_dir", str(folder), "--model_dir", str(model),
                     "--output_dir", str(tmp_path / "out")]) == 0
    assert "p.jsonl: 1 of its 3 pairs repeat an earlier pair" in capsys.readouterr().err

    data = corpus(tmp_path, sources=("qed", "cbt", "switchboard"))
    (data / "babylm_10M" / "switchboard.train").write_text("\n\n")
    assert run.main(["dataset", "--data_dir", str(data), "--tokenizer_dir", str(tok_dirs["clm"]),
                     "--cache_dir", str(tmp_path / "cache"), "--block_size", "32"]) == 0
    assert "switchboard.train holds no text" in capsys.readouterr().err


def test_every_numeric_option_refuses_negative_and_nan_values(capsys):
    import argument_parser

    parsers = argument_parser.build_parser().action_parsers
    numeric = {(a.dest, name): a for name, p in parsers.items() for a in p._actions if a.type in (int, float)}
    assert {dest for dest, _ in numeric} == set(argument_parser.RANGES)  # each numeric option declares its range
    needed = {command: [w for dest, _ in spec.needs for w in (f"--{dest}", "x")]
              for command, spec in argument_parser.ACTIONS.items()}
    for (name, command), action in numeric.items():
        for value in ("-1", "nan") if action.type is float else ("-1",):
            with pytest.raises(SystemExit) as stopped:
                argument_parser.parse_args([command, *needed[command], action.option_strings[0], value])
            assert stopped.value.code == 2
            assert f"--{name} must be" in capsys.readouterr().err
