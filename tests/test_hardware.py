"""--precision and --compile chosen from the hardware (training/hardware.py): the choice for each
kind of device, with torch's capability checks monkeypatched; the warning when bf16 is
forced where it is emulated; the choice recorded in the run's files; the time-budget
bar showing the step, loss and tokens/s."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from conftest import SAMPLE, TINY_MODEL

import run
import training.hardware as hardware
from training.tracking import TrainingBar, TrainingClock


def fake_cpu(monkeypatch, native_bf16: bool, compiler: str | None = "/usr/bin/g++", isa: str = "AVX2") -> None:
    """Make this CPU look like one with (or without) native bf16 and a C++ compiler."""
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: native_bf16)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: isa)
    monkeypatch.setattr(hardware, "_cpp_compiler", lambda: compiler)


def fake_cuda(monkeypatch, bf16: bool, capability: tuple[int, int]) -> None:
    """Make torch believe there is one CUDA GPU, with or without bf16."""
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: "Test GPU")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: bf16)


def choose(requested_precision: str = "auto", requested_compile: str = "auto", device: str = "cpu",
           cache_dir: str | None = None) -> argparse.Namespace:
    args = argparse.Namespace(precision=requested_precision, compile=requested_compile, device=device,
                              cache_dir=cache_dir)
    hardware.resolve_fast_path(args, torch.device(device))
    return args


@pytest.mark.parametrize("native, precision, compiled", [(True, "bf16", True), (False, "fp32", False)])
def test_auto_on_a_cpu_takes_bf16_and_compile_only_where_bf16_is_native(monkeypatch, native, precision, compiled):
    fake_cpu(monkeypatch, native_bf16=native)
    args = choose()
    assert (args.precision, args.compile) == (precision, compiled)
    assert args.fast_path["requested"] == {"precision": "auto", "compile": "auto"}
    bf16 = "native bf16" if native else "no native bf16"
    assert args.fast_path["summary"] == (f"precision {precision}, compile {'on' if compiled else 'off'} "
                                         f"({hardware.cpu_name()}, AVX2, {bf16}, {torch.get_num_threads()} thread"
                                         f"{'s' if torch.get_num_threads() != 1 else ''})")
    assert args.fast_path["warnings"] == []


def test_auto_does_not_compile_on_a_cpu_without_a_compiler(monkeypatch):
    fake_cpu(monkeypatch, native_bf16=True, compiler=None)
    args = choose()
    assert (args.precision, args.compile) == ("bf16", False)


@pytest.mark.parametrize("bf16, capability, precision", [(True, (9, 0), "bf16"), (False, (7, 5), "fp16")])
def test_auto_on_cuda_takes_bf16_where_supported_else_fp16_and_compiles(monkeypatch, bf16, capability, precision):
    fake_cuda(monkeypatch, bf16, capability)
    args = choose(device="cuda")
    assert (args.precision, args.compile) == (precision, True)
    assert f"(Test GPU, sm_{capability[0]}{capability[1]}" in args.fast_path["summary"]


def test_auto_on_mps_is_fp32_without_compile():
    args = choose(device="mps")  # detect() asks torch nothing about an MPS device
    assert (args.precision, args.compile) == ("fp32", False)


def test_explicit_choices_are_kept(monkeypatch):
    fake_cpu(monkeypatch, native_bf16=True)
    for precision in ("fp32", "bf16"):
        for flag, compiled in (("on", True), ("off", False)):
            args = choose(precision, flag)
            assert (args.precision, args.compile, args.fast_path["warnings"]) == (precision, compiled, [])


def test_bf16_forced_where_it_is_emulated_works_with_one_warning(monkeypatch):
    fake_cpu(monkeypatch, native_bf16=False)
    args = choose("bf16", "off")
    assert args.precision == "bf16"
    (warning,) = args.fast_path["warnings"]
    assert "bf16 is emulated here" in warning and "slow" in warning and "auto chooses fp32" in warning


def test_fp16_forced_on_a_cpu_warns(monkeypatch):
    fake_cpu(monkeypatch, native_bf16=True)
    (warning,) = choose("fp16", "off").fast_path["warnings"]
    assert "fp16 on a CPU" in warning and "auto chooses bf16" in warning


def test_compile_on_without_a_compiler_is_a_one_line_error(monkeypatch, capsys, tmp_path):
    fake_cpu(monkeypatch, native_bf16=False, compiler=None)
    code = run.main(["train", "--tokenizer_dir", str(tmp_path), "--output_dir", str(tmp_path / "out"),
                     "--compile", "on"])  # only training compiles: evaluation actions run eager
    err = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in err
    assert "--compile on" in err and "C++ compiler" in err and "--compile auto or off" in err
    assert not (tmp_path / "out").exists()


def test_a_resolved_namespace_is_left_alone(monkeypatch):
    fake_cpu(monkeypatch, native_bf16=True)
    args = choose()
    fake_cpu(monkeypatch, native_bf16=False)  # a second resolve (prepare_training after run.py) changes nothing
    hardware.resolve_fast_path(args, torch.device("cpu"))
    assert (args.precision, args.compile) == ("bf16", True)


def test_compile_cache_goes_below_cache_dir(monkeypatch, tmp_path):
    fake_cpu(monkeypatch, native_bf16=True)
    monkeypatch.setattr(hardware, "_USER_COMPILE_CACHE", None)
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    choose(cache_dir=str(tmp_path / "cache"))
    assert hardware.os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "cache" / "torch_compile")
    monkeypatch.setattr(hardware, "_USER_COMPILE_CACHE", "/user/choice")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/user/choice")
    choose(cache_dir=str(tmp_path / "other"))
    assert hardware.os.environ["TORCHINDUCTOR_CACHE_DIR"] == "/user/choice"  # the user's own setting wins


def test_the_choice_and_the_warning_are_in_the_runs_files(monkeypatch, tok_dirs, tmp_path):
    fake_cpu(monkeypatch, native_bf16=False)
    out = tmp_path / "run"
    code = run.main(["train", "--torch_training", "--data_dir", str(SAMPLE), "--tokenizer_dir", str(tok_dirs["clm"]),
                     "--cache_dir", str(tmp_path / "cache"), "--output_dir", str(out), *TINY_MODEL,
                     "--max_steps", "3", "--batch_size", "4", "--bf16", "--compile", "auto"])
    assert code == 0
    results = json.loads((out / "train_results.json").read_text())
    assert (results["precision"], results["compile"], results["compile_seconds"]) == ("bf16", False, 0.0)
    assert results["fast_path"].startswith("precision bf16, compile off (") and "no native bf16" in results["fast_path"]
    saved = json.loads((out / "best_model" / "run_args.json").read_text())
    assert saved["precision"] == "bf16" and saved["compile"] is False
    assert saved["fast_path"]["requested"] == {"precision": "bf16", "compile": "auto"}
    log = (out / "log.txt").read_text()
    assert results["fast_path"] in log
    assert sum("bf16 is emulated here" in line for line in log.splitlines()) == 1


def test_test_and_blimp_record_their_precision(monkeypatch, tok_dirs, tmp_path, capsys):
    fake_cpu(monkeypatch, native_bf16=False)
    out = tmp_path / "run"
    common = ["--data_dir", str(SAMPLE), "--cache_dir", str(tmp_path / "cache"), *TINY_MODEL]
    assert run.main(["train", "--torch_training", *common, "--tokenizer_dir", str(tok_dirs["clm"]),
                     "--output_dir", str(out), "--max_steps", "2", "--batch_size", "4"]) == 0
    capsys.readouterr()
    assert run.main(["test", *common[:4], "--block_size", "32", "--model_dir", str(out / "best_model"),
                     "--output_dir", str(tmp_path / "test"),
                     "--blimp_dir", str(SAMPLE.parent / "sample_eval" / "blimp"), "--precision", "auto"]) == 0
    assert "INFO precision fp32, compile off (" in (tmp_path / "test" / "log.txt").read_text()
    assert json.loads((tmp_path / "test" / "test_results.json").read_text())["precision"] == "fp32"
    assert json.loads((tmp_path / "test" / "blimp_results.json").read_text())["precision"] == "fp32"


def test_a_time_budget_bar_shows_the_step_loss_and_tokens_per_second():
    clock = TrainingClock(1.0)  # one minute
    bar = TrainingBar(clock, 10)
    clock.used = 12.4
    bar.step_done(7)
    bar.show({"train/loss": 3.14159, "train/tokens_per_second": 2048.4})
    assert bar.bar.n == 12  # seconds of the budget
    assert bar.bar.postfix == "step=7, loss=3.142, tok_s=2048"
    bar.close()
