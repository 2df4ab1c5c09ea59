"""Record `make -n -B` for every Makefile target, to compare the commands before and after a change.

    python -m tools.make_dry_run OUT_DIR        # one file per target (and variable set) in OUT_DIR
    diff -r BEFORE_DIR AFTER_DIR

The targets are the Makefile's .PHONY ones (read from `make -qp`), each run with STEP=step2_1 (the
targets that need a step), plus a few variable sets that change the commands (ablation, NPROC, TRACK).
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SKIP = {"$(1)", "test", "clean", "clean_demo", "tensorboard", "lint", "venv"}
EXTRA_RUNS = {
    "ablation__ABLATE": ["ablation", "ABLATE=wide batch16"],
    "step2_1__NPROC4": ["step2_1", "NPROC=4", "TRACK=strict", "TRAIN_SPLIT=100M"],
    "best__RESTART": ["best", "RESTART=1"],
    "submission__opts": ["submission", "STEP=step2_1", "PARTIAL=1", "PUSH=a/b", "TRACK=strict"],
    "data__hub": ["data", "EDITION=hub", "HUB_ID=org/name"],
    "sweep__vocab": ["sweep", "VOCAB=8000"],
}


def phony_targets() -> list[str]:
    """The Makefile's .PHONY targets, sorted."""
    out = subprocess.run(["make", "-qp"], capture_output=True, text=True).stdout
    names: set[str] = set()
    for line in out.splitlines():
        if line.startswith(".PHONY:"):
            names.update(line.split()[1:])
    return sorted(names - SKIP)


def dry_run(args: list[str]) -> str:
    """`make -n -B ARGS` output (stdout and stderr)."""
    res = subprocess.run(["make", "-n", "-B", "--no-print-directory", *args], capture_output=True, text=True)
    return res.stdout + res.stderr + f"[rc {res.returncode}]\n"


def main(out_dir: str) -> None:
    """Write one file per target (and extra variable set) into OUT_DIR."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = {t: [t, "STEP=step2_1"] for t in phony_targets()}
    runs.update(EXTRA_RUNS)
    for name, args in runs.items():
        (out / (re.sub(r"[^\w.-]", "_", name) + ".txt")).write_text(dry_run(args))
    print(f"{len(runs)} dry runs in {out}")


if __name__ == "__main__":
    main(sys.argv[1])
