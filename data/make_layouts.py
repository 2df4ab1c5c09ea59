#!/usr/bin/env python3
"""Write the sample corpus (data/sample, synthetic, see its README) in the other layouts the
pipeline reads (corpus/editions.py), for the demo and the tests:

    data/sample_2024/train_10M/<source>.train, dev/<source>.dev, test/<source>.test
        the 2024 release's layout and six source names (childes <- aochildes,
        simple_wiki <- simple_wikipedia; the others keep their names)
    data/sample_dataset/train.jsonl, validation.jsonl
        a Hugging Face dataset as a hub repository stores it: rows {"text", "source"}, each
        text up to 4 lines of one source; no test split (the pipeline holds one out)
    data/sample_plain/stories.txt, dialogue.txt, facts.txt
        a user's own text files, no dev or test (held out)

Each is a subset of data/sample, so it is small; the output is byte-identical each run:

    python3 data/make_layouts.py
"""

from __future__ import annotations

import json
from pathlib import Path

DATA = Path(__file__).resolve().parent
SAMPLE = DATA / "sample"
SOURCES_2024 = {"bnc_spoken": "bnc_spoken", "childes": "aochildes", "gutenberg": "gutenberg",
                "open_subtitles": "open_subtitles", "simple_wiki": "simple_wikipedia", "switchboard": "switchboard"}
SPLITS_2023 = {"train": ("babylm_10M", "train"), "dev": ("babylm_dev", "dev"), "test": ("babylm_test", "test")}
ROWS_LINES = 4  # lines per dataset row


def lines_of(split: str, source: str) -> list[str]:
    folder, ext = SPLITS_2023[split]
    return (SAMPLE / folder / f"{source}.{ext}").read_text(encoding="utf-8").splitlines()


def write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def sample_2024() -> None:
    for name, source in SOURCES_2024.items():
        write(DATA / "sample_2024" / "train_10M" / f"{name}.train", lines_of("train", source))
        write(DATA / "sample_2024" / "dev" / f"{name}.dev", lines_of("dev", source))
        write(DATA / "sample_2024" / "test" / f"{name}.test", lines_of("test", source))


def sample_dataset() -> None:
    for split, file_name in (("train", "train.jsonl"), ("dev", "validation.jsonl")):
        rows = []
        for source in ("aochildes", "qed", "simple_wikipedia"):
            lines = [line for line in lines_of(split, source) if line.strip()]
            rows += [{"text": "\n".join(lines[i:i + ROWS_LINES]), "source": source}
                     for i in range(0, len(lines), ROWS_LINES)]
        write(DATA / "sample_dataset" / file_name, [json.dumps(row, ensure_ascii=False) for row in rows])


def sample_plain() -> None:
    for name, source in (("stories", "children_stories"), ("dialogue", "switchboard"), ("facts", "wikipedia")):
        write(DATA / "sample_plain" / f"{name}.txt", lines_of("train", source))


if __name__ == "__main__":
    sample_2024()
    sample_dataset()
    sample_plain()
    print("wrote data/sample_2024, data/sample_dataset, data/sample_plain")
