"""The hardware a run is on, and the precision and compiling chosen from it.

`--precision auto|fp32|bf16|fp16` and `--compile auto|on|off` are resolved here, once
per process (`run.py` calls `resolve_fast_path` before any action), into
`args.precision` (fp32, bf16 or fp16) and `args.compile` (True or False). The request,
the choice and the hardware are kept in `args.fast_path`, so run_args.json and
train_results.json record them, and every run logs them in one line.

What `auto` chooses, and why (measured with `make bench`, see docs/speed.md):
- bf16 only where the device computes it natively: a CUDA GPU with bf16 (Ampere and
  later), or a CPU whose oneDNN reports native bf16 (AVX512-BF16 or AMX). On a CPU with
  only AVX2, bf16 autocast is emulated: one step of the step2 GPT-2 was measured at
  least 25x slower than float32.
- fp16, with a gradient scaler, on a CUDA GPU without bf16 (Volta, Turing).
- float32 everywhere else (MPS included: its autocast support varies by macOS version).
- compile on CUDA; on a CPU only with native bf16 and a C++ compiler for inductor
  (where the bench measured the compiled bf16 step faster than eager); off on MPS and
  on CPUs without native bf16, where compiling the float32 step was not measured to pay.

Asking for bf16 (or fp16) where it is emulated still works, with one warning line."""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import sysconfig
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from utils import UserError, get_device

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# Below --cache_dir: torch.compile's on-disk caches, so a rerun or resume finds its kernels.
COMPILE_CACHE_DIR = "torch_compile"
# Read before inductor first sets it (it writes its default back into the environment).
_USER_COMPILE_CACHE = os.environ.get("TORCHINDUCTOR_CACHE_DIR")


@dataclass(frozen=True)
class Hardware:
    """What the chooser needs to know about the device a process computes on."""

    device_type: str  # cpu, cuda or mps
    name: str  # CPU model or GPU name
    capability: str  # the CPU's vector ISA as torch dispatches it (AVX2, AVX512, ...) or the GPU's sm_XY
    native_bf16: bool
    threads: int  # torch's CPU threads
    cpp_compiler: str | None  # the C++ compiler inductor would use on CPU (None: none found)

    def describe(self) -> str:
        """e.g. 'AMD EPYC, AVX2, no native bf16, 2 threads' or 'NVIDIA H200, sm_90, native bf16'."""
        bf16 = "native bf16" if self.native_bf16 else "no native bf16"
        threads = f", {self.threads} thread{'s' if self.threads != 1 else ''}" if self.device_type == "cpu" else ""
        return f"{self.name}, {self.capability}, {bf16}{threads}"


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, else what platform knows)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _cpp_compiler() -> str | None:
    """The C++ compiler inductor calls for CPU kernels ($CXX, else c++/g++/clang++), when
    it and the Python headers it compiles against are there; else None."""
    if not Path(sysconfig.get_paths()["include"], "Python.h").is_file():
        return None
    for name in [os.environ.get("CXX"), "c++", "g++", "clang++"]:
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def detect(device: torch.device) -> Hardware:
    """The hardware of `device`."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(index)
        return Hardware("cuda", torch.cuda.get_device_name(index), f"sm_{major}{minor}",
                        torch.cuda.is_bf16_supported(including_emulation=False), torch.get_num_threads(), None)
    if device.type == "mps":
        return Hardware("mps", f"Apple GPU ({platform.machine()})", "mps", False, torch.get_num_threads(), None)
    # oneDNN's own answer: False on AVX2-only CPUs and under ONEDNN_MAX_CPU_ISA=AVX2.
    return Hardware("cpu", cpu_name(), torch.backends.cpu.get_cpu_capability(),
                    bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()), torch.get_num_threads(), _cpp_compiler())


def choose_precision(requested: str, hw: Hardware) -> tuple[str, str | None]:
    """(precision, warning or None) for `--precision requested` on `hw`."""
    if requested == "auto":
        if hw.native_bf16:
            return "bf16", None
        return ("fp16" if hw.device_type == "cuda" else "fp32"), None
    if requested == "bf16" and not hw.native_bf16:
        return "bf16", (f"--precision bf16 on {hw.describe()}: bf16 is emulated here, so training and scoring "
                        "will be slow (one step of the step2 GPT-2 measured >= 25x slower than fp32 on an AVX2 "
                        "CPU); --precision auto chooses " + choose_precision("auto", hw)[0] + " on this device")
    if requested == "fp16" and hw.device_type == "cpu":
        return "fp16", (f"--precision fp16 on a CPU ({hw.describe()}): CPUs compute fp16 matmuls slowly or "
                        "emulated; --precision auto chooses " + choose_precision("auto", hw)[0] + " here")
    return requested, None


def choose_compile(requested: str, hw: Hardware) -> bool:
    """Whether to torch.compile for `--compile requested` on `hw` (UserError when `on` cannot work)."""
    if requested == "off":
        return False
    cannot = hw.device_type == "cpu" and hw.cpp_compiler is None
    if requested == "on":
        if cannot:
            raise UserError("--compile on: torch.compile on a CPU needs a C++ compiler and the Python headers "
                            "(none found: install g++ and python3-dev), or pass --compile auto or off")
        return True
    if hw.device_type == "cuda":
        return True
    return hw.device_type == "cpu" and hw.native_bf16 and not cannot


def resolve_fast_path(args: argparse.Namespace, device: torch.device | None = None) -> None:
    """Resolve args.precision and args.compile in place (see the module docstring), keep
    the request, the hardware, the logged summary and the warning lines to show (one per
    problem) in args.fast_path, and point torch.compile's caches below --cache_dir. A
    namespace already resolved is left as it is."""
    if hasattr(args, "fast_path"):
        return
    device = device if device is not None else get_device(getattr(args, "device", "auto"))
    hw = detect(device)
    requested = {"precision": args.precision, "compile": args.compile}
    precision, warning = choose_precision(args.precision, hw)
    compile_ = choose_compile(args.compile, hw)
    args.precision, args.compile = precision, compile_
    args.fast_path = {"requested": requested, "hardware": asdict(hw), "summary": summary(precision, compile_, hw),
                      "warnings": [warning] if warning else []}
    if compile_ and getattr(args, "cache_dir", None) and _USER_COMPILE_CACHE is None:
        # A rerun or resume of the same step then loads its compiled kernels instead of compiling
        # again (inductor reads this at each cache access); a TORCHINDUCTOR_CACHE_DIR of the user's wins.
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(args.cache_dir).resolve() / COMPILE_CACHE_DIR)


def log_choice(logger, args: argparse.Namespace, compiles: bool = True) -> None:
    """Log the choice (one line) and its warnings where an action starts its work,
    resolving it first when run.py has not (programmatic callers). `compiles` False: the
    action runs eager whatever --compile says (evaluation), and the line says so."""
    if not compiles and not hasattr(args, "fast_path"):
        args.compile = "off"  # the shared FAST options pass --compile to every action: nothing here compiles
    resolve_fast_path(args)
    logger.info(args.fast_path["summary"])
    for warning in args.fast_path["warnings"]:
        logger.warning(warning)


def summary(precision: str, compile_: bool, hw: Hardware) -> str:
    """The one line every run logs, e.g. 'precision fp32, compile off (AMD EPYC, AVX2, no native bf16, 2 threads)'."""
    return f"precision {precision}, compile {'on' if compile_ else 'off'} ({hw.describe()})"


def autocast(device: torch.device | str, precision: str):
    """Autocast to bf16 or fp16 on `device` for that precision, else a no-op context."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=DTYPES[precision])


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """fp16 needs its loss scaled so that small gradients do not underflow; for any other
    precision the scaler is disabled (scale, unscale_, step and update pass through)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def compile_seconds() -> float:
    """Seconds this process has spent in torch.compile so far (Dynamo's own timer, which
    includes inductor's code generation and C++/Triton builds)."""
    from torch._dynamo.utils import compilation_time_metrics

    return round(sum(compilation_time_metrics.get("_compile.compile_inner", [])), 1)
