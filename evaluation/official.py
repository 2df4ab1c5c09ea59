"""The official BabyLM evaluation pipeline as the judge of a submission.

`make submission` ends by running the official collate step (evaluation-pipeline-2025's
`collate_preds.py --fast`, unmodified) on the results tree our own writers produced, in a
process of its own, and prints its verdict beside ours: whether it accepts the tree and
whether the file it writes is the file we wrote. The project never imports the official
code: it is found on disk (`--official_pipeline`, else $OFFICIAL_PIPELINE, else
../shared/official_pipeline beside the repository) and run with this Python, so it needs
the packages it imports (numpy, scipy, pandas, statsmodels).

The collate step writes its file into the results tree it reads; to keep ours, it reads
our revision folders through links from a temporary folder and writes there."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

OFFICIAL_PIPELINE_ENV = "OFFICIAL_PIPELINE"
DEFAULT_OFFICIAL_PIPELINE = Path(__file__).resolve().parents[2] / "shared" / "official_pipeline"
COLLATE_MODULE = "evaluation_pipeline.collate_preds"
# Keys of our partial file that the official one never has.
OUR_OWN_KEYS = ("missing", "fast_eval_revisions")


def official_pipeline_dir(given: str | Path | None = None) -> Path:
    """Where the official pipeline is: `given`, else $OFFICIAL_PIPELINE, else ../shared/official_pipeline."""
    return Path(given or os.environ.get(OFFICIAL_PIPELINE_ENV) or DEFAULT_OFFICIAL_PIPELINE)


@dataclass
class Verdict:
    """What the official collate step said: `ran` False when it could not run at all (`message` says
    why); else `accepted`, and `same` whether its file equals ours (None when there is none to compare)."""

    ran: bool
    accepted: bool = False
    same: bool | None = None
    message: str = ""

    def line(self) -> str:
        """One line for the terminal."""
        if not self.ran:
            return f"official collate step: not run ({self.message})"
        if not self.accepted:
            return f"official collate step: REFUSED ({self.message})"
        agree = {True: "its file equals ours", False: f"its file DIFFERS from ours ({self.message})",
                 None: "nothing of ours to compare"}[self.same]
        return f"official collate step: accepted; {agree}"


def official_collate(results_root: str | Path, model_name: str, backend: str, track: str,
                     fast_eval_dir: str | Path, ours: dict | None = None,
                     official: str | Path | None = None, timeout: float = 1800) -> Verdict:
    """Run the official collate step on <results_root>/<model_name>/ and compare its file with `ours`."""
    official = official_pipeline_dir(official)
    if not (official / "evaluation_pipeline" / "collate_preds.py").is_file():
        return Verdict(False, message=f"no official pipeline at '{official}': set {OFFICIAL_PIPELINE_ENV}= or pass "
                                      "--official_pipeline to the evaluation-pipeline-2025 folder")
    source = Path(results_root).resolve() / model_name
    with tempfile.TemporaryDirectory(prefix="official_collate_") as tmp:
        tree = Path(tmp) / Path(model_name).stem  # the collate step files results under the name's stem
        tree.mkdir()
        for revision in source.iterdir():
            if revision.is_dir():
                (tree / revision.name).symlink_to(revision, target_is_directory=True)
        command = [sys.executable, "-m", COLLATE_MODULE, "--model_path_or_name", model_name, "--backend", backend,
                   "--fast", "--track", track, "--results_dir", tmp, "--fast_eval_dir",
                   str(Path(fast_eval_dir).resolve())]
        try:
            done = subprocess.run(command, cwd=official, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return Verdict(False, message=f"it ran past {timeout:.0f} s and was stopped")
        if done.returncode != 0:
            return _failure(done)
        written = tree / f"all_full_preds_and_fast_scores_{backend}.json"
        if not written.is_file():
            return Verdict(True, False, message=f"it exited 0 but wrote no {written.name}")
        theirs = json.loads(written.read_text())
    if ours is None:
        return Verdict(True, True)
    difference = first_difference({k: v for k, v in ours.items() if k not in OUR_OWN_KEYS}, theirs)
    return Verdict(True, True, difference is None, difference or "")


def _failure(done: subprocess.CompletedProcess) -> Verdict:
    """The verdict of a collate run that exited non-zero: a missing import, or a refusal."""
    lines = [line.strip() for line in (done.stdout + "\n" + done.stderr).splitlines() if line.strip()]
    last = lines[-1] if lines else f"exit {done.returncode}"
    if "ModuleNotFoundError" in last or "ImportError" in last:
        return Verdict(False, message=f"its imports are missing ({last}): pip install -r requirements.txt")
    said = [line for line in done.stdout.splitlines() if line.strip()]  # what it printed before refusing
    reason = last.removeprefix("AssertionError: ")
    return Verdict(True, False, message="; ".join([*said[:3], reason]))


def first_difference(ours, theirs, where: str = "") -> str | None:
    """Where two collated files first differ (a key path), or None; floats equal to 1e-9 relative."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        if set(ours) != set(theirs):
            extra, lacking = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
            return f"{where or 'top level'}: ours also has {extra}, theirs also has {lacking}"
        for key in ours:
            found = first_difference(ours[key], theirs[key], f"{where}/{key}")
            if found:
                return found
        return None
    if isinstance(ours, list) and isinstance(theirs, list):
        if len(ours) != len(theirs):
            return f"{where}: {len(ours)} entries in ours, {len(theirs)} in theirs"
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            found = first_difference(a, b, f"{where}[{i}]")
            if found:
                return found
        return None
    if isinstance(ours, float) or isinstance(theirs, float):
        same = (isinstance(ours, int | float) and isinstance(theirs, int | float)
                and (math.isclose(ours, theirs, rel_tol=1e-9, abs_tol=1e-12)
                     or (math.isnan(ours) and math.isnan(theirs))))
        return None if same else f"{where}: {ours!r} in ours, {theirs!r} in theirs"
    return None if ours == theirs else f"{where}: {ours!r} in ours, {theirs!r} in theirs"
