"""The BLiMP paradigms (Warstadt et al., 2020), one `<paradigm>.jsonl` each, into BLIMP_DIR.

    python -m tools.download blimp [--blimp_dir data/blimp] [--base_url URL] [--paradigms NAME ...]

BLiMP publishes no checksums, so each file is only checked to be non-empty jsonl whose
every line has `sentence_good` and `sentence_bad` strings. Downloads are resumable and the
folder is installed with one rename (corpus/fetch.py); evaluation/blimp.py reads it."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from tqdm import tqdm

from corpus.fetch import (
    MARKER,
    RETRIES,
    RETRY_WAIT,
    TIMEOUT,
    fetch,
    is_empty_dir,
    move_into_place,
    now,
    read_marker,
    write_marker,
)
from utils import UserError, sha256_of

BLIMP_BASE_URL = "https://raw.githubusercontent.com/alexwarstadt/blimp/master/data"
# The 67 paradigm UIDs of BLiMP (Warstadt et al., 2020): the files of the repository's data/ folder.
BLIMP_PARADIGMS = (
    "adjunct_island", "anaphor_gender_agreement", "anaphor_number_agreement", "animate_subject_passive",
    "animate_subject_trans", "causative", "complex_NP_island",
    "coordinate_structure_constraint_complex_left_branch", "coordinate_structure_constraint_object_extraction",
    "determiner_noun_agreement_1", "determiner_noun_agreement_2", "determiner_noun_agreement_irregular_1",
    "determiner_noun_agreement_irregular_2", "determiner_noun_agreement_with_adj_2",
    "determiner_noun_agreement_with_adj_irregular_1", "determiner_noun_agreement_with_adj_irregular_2",
    "determiner_noun_agreement_with_adjective_1", "distractor_agreement_relational_noun",
    "distractor_agreement_relative_clause", "drop_argument", "ellipsis_n_bar_1", "ellipsis_n_bar_2",
    "existential_there_object_raising", "existential_there_quantifiers_1", "existential_there_quantifiers_2",
    "existential_there_subject_raising", "expletive_it_object_raising", "inchoative", "intransitive",
    "irregular_past_participle_adjectives", "irregular_past_participle_verbs",
    "irregular_plural_subject_verb_agreement_1", "irregular_plural_subject_verb_agreement_2",
    "left_branch_island_echo_question", "left_branch_island_simple_question",
    "matrix_question_npi_licensor_present", "npi_present_1", "npi_present_2", "only_npi_licensor_present",
    "only_npi_scope", "passive_1", "passive_2", "principle_A_c_command", "principle_A_case_1",
    "principle_A_case_2", "principle_A_domain_1", "principle_A_domain_2", "principle_A_domain_3",
    "principle_A_reconstruction", "regular_plural_subject_verb_agreement_1",
    "regular_plural_subject_verb_agreement_2", "sentential_negation_npi_licensor_present",
    "sentential_negation_npi_scope", "sentential_subject_island", "superlative_quantifiers_1",
    "superlative_quantifiers_2", "tough_vs_raising_1", "tough_vs_raising_2", "transitive", "wh_island",
    "wh_questions_object_gap", "wh_questions_subject_gap", "wh_questions_subject_gap_long_distance",
    "wh_vs_that_no_gap", "wh_vs_that_no_gap_long_distance", "wh_vs_that_with_gap",
    "wh_vs_that_with_gap_long_distance",
)


def download_blimp(blimp_dir: str | Path = "data/blimp", base_url: str = BLIMP_BASE_URL,
                   paradigms: Sequence[str] = BLIMP_PARADIGMS, *, timeout: float = TIMEOUT,
                   retries: int = RETRIES, retry_wait: float = RETRY_WAIT, progress: bool = True) -> bool:
    """Download `<base_url>/<paradigm>.jsonl` for each paradigm into `blimp_dir`; False if already there.

    Files collect in `<blimp_dir>.part/` (a rerun reuses the finished ones and
    resumes a partial one); each is checked to be non-empty jsonl whose every
    line has `sentence_good` and `sentence_bad` strings (BLiMP publishes no
    checksums, so this is the only check). When all are there the folder is
    renamed to `blimp_dir` with a marker listing the paradigms and each file's
    sha256. `blimp_dir` must be absent, empty, or already hold the paradigms."""
    blimp_dir = Path(blimp_dir)
    paradigms = list(paradigms)
    bad = [p for p in paradigms if not re.fullmatch(r"[A-Za-z0-9_]+", p)]
    if not paradigms or bad or len(set(paradigms)) != len(paradigms):
        raise UserError(f"paradigm names must be distinct UIDs like wh_island; got {' '.join(bad or paradigms)}")
    if _blimp_present(blimp_dir, paradigms):
        return False
    base = base_url.rstrip("/")
    part_dir = blimp_dir.with_name(blimp_dir.name + ".part")
    hint = (f"or place the files by hand: download {base}/<paradigm>.jsonl for every paradigm "
            f"(BLIMP_PARADIGMS in corpus/blimp_download.py) into {blimp_dir}")
    print(f"downloading {len(paradigms)} BLiMP paradigms from {base}/ -> {part_dir}")
    digests = {}
    for name in tqdm(paradigms, unit="file", desc="BLiMP", disable=not progress, leave=False):
        url, final = f"{base}/{name}.jsonl", part_dir / f"{name}.jsonl"
        if not final.is_file():  # a file an earlier, interrupted run finished is kept
            part = part_dir / f"{name}.jsonl.part"
            fetch(url, part, None, hint=hint, timeout=timeout, retries=retries, retry_wait=retry_wait,
                  progress=False)
            _check_blimp_file(part, url)
            os.replace(part, final)
        digests[name] = sha256_of(final)
    for stale in part_dir.iterdir():  # files of paradigms an earlier run asked for, this one does not
        if stale.name != MARKER and stale.name.removesuffix(".part").removesuffix(".jsonl") not in digests:
            stale.unlink()
    write_marker(part_dir, {"base_url": base, "paradigms": paradigms, "sha256": digests,
                             "downloaded": now(), "by": "tools/download.py blimp"})
    move_into_place(part_dir, blimp_dir)
    print(f"installed {len(paradigms)} BLiMP paradigms in {blimp_dir}")
    return True


def _blimp_present(blimp_dir: Path, paradigms: list[str]) -> bool:
    """True (and says so) if `blimp_dir` already holds every paradigm; False if it is free;
    a UserError if it holds something else."""
    if not blimp_dir.exists():
        return False
    if not blimp_dir.is_dir():
        raise UserError(f"{blimp_dir} exists and is not a folder: move it away or pass another --blimp_dir")
    if is_empty_dir(blimp_dir):
        return False
    have = all((blimp_dir / f"{name}.jsonl").is_file() for name in paradigms)
    marker = read_marker(blimp_dir)
    if have:
        how = f"downloaded from {marker.get('base_url')}" if marker else "placed there by hand, not checked"
        print(f"{blimp_dir} already holds the {len(paradigms)} BLiMP paradigms ({how}): nothing done")
        return True
    if marker is not None:
        raise UserError(f"{blimp_dir} holds a BLiMP download of other paradigms "
                        f"({len(marker.get('paradigms', []))} of them): delete it to download again, "
                        "or pass another --blimp_dir")
    raise UserError(f"{blimp_dir} exists and holds other files (not a BLiMP download): refusing to overwrite "
                    "it; move it away, or pass another --blimp_dir")


def _check_blimp_file(path: Path, url: str) -> None:
    """Every non-empty line must be a JSON object with sentence_good/sentence_bad strings.

    Checking every line (not only the first) also catches a truncated file, whose
    last line is cut. A bad file is deleted, so a rerun downloads it again."""
    def bad(why: str) -> NoReturn:
        path.unlink()
        raise UserError(f"{url} is not a BLiMP jsonl file ({why}): it was deleted and nothing was installed; "
                        "check --base_url and the paradigm names, then rerun")

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        bad("not UTF-8 text")
    rows = 0
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            bad(f"line {n} is not JSON")
        if not (isinstance(row, dict) and all(isinstance(row.get(k), str) for k in ("sentence_good", "sentence_bad"))):
            bad(f"line {n} has no sentence_good/sentence_bad strings")
        rows += 1
    if not rows:
        bad("empty")
