"""Which corpus a --data_dir holds, and where each split's files are.

Four layouts are read, detected from what the folder holds (and logged):

- `2023`: the 2023 BabyLM release, `babylm_10M/` (or `babylm_100M/`), `babylm_dev/`,
  `babylm_test/`, ten sources, `<source>.train/.dev/.test`.
- `2024`: the 2024 release (used again in 2025), `train_10M/` (or `train_100M/`),
  `dev/`, `test/`, six sources; the zip's `text_data/` folder may be the root.
- `dataset`: a Hugging Face dataset on disk: a `save_to_disk` folder, or a folder of
  parquet / jsonl / json / csv files as a hub repository holds them (the splits named
  by the file names, as `datasets` reads them), with a `text` column and, optionally,
  a `source` column (one file per source; without it the whole set is one source,
  `text`). A value holding several lines is split into lines.
- `plain`: the user's own text, one `<source>.txt` (or `.train`) file per source, at the
  top of the folder or in `train/`, with `dev/` and `test/` beside it when there are.

Whatever a split lacks (a plain folder's dev or test, the dev and test of a release slice
without dev files, such as a 2024 slice holding only `train_10M/`) is held out from the
training lines (a release with its dev files is read as it is, as before): every
`HELD_OUT_PERIOD`-th line of each training file goes to dev, another to test (2% each),
the same lines on every run. A `dataset` corpus, and any corpus with held-out lines, is
written once as text files (`train/<source>.train`, `dev/<source>.dev`, `test/<source>.test`)
under `<cache_dir>/corpus/<key>/`, where
the key hashes the source files and the held-out rule, so everything downstream (the
tokenized-block cache, cleaning by source name, the curriculum, word counts) reads plain
files and a changed rule or file gives a new folder.

Each release's sources and the curriculum's easier/harder lists are in `EDITIONS`;
`@easier` and `@harder` in --train_files name them for the detected edition."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from utils import UserError, numbered_lines, remove_path, sha256_of, temp_dir_beside, write_failure, write_json_atomic

log = logging.getLogger(__name__)

# split -> the extension of its files in every layout the pipeline writes or reads
SPLIT_EXT = {"train": ".train", "validation": ".dev", "test": ".test"}
SPLITS = tuple(SPLIT_EXT)
# The folders of a corpus this module writes (and of a plain corpus with its own splits).
WRITTEN_DIRS = {"train": "train", "validation": "dev", "test": "test"}
# One line in HELD_OUT_PERIOD of each training file goes to dev, one to test (2% each).
HELD_OUT_PERIOD = 50
HELD_OUT_VERSION = 1  # bump when the held-out rule or the written layout changes
DATASET_SUFFIXES = (".parquet", ".jsonl", ".json", ".csv", ".arrow")
PLAIN_SUFFIXES = (".txt", ".train")
TEXT_COLUMN, SOURCE_COLUMN = "text", "source"
GROUPS = ("@easier", "@harder")  # --train_files names for the edition's curriculum lists


@dataclass(frozen=True)
class Edition:
    """One BabyLM release: its folder names and sources, and the original experiment's
    split of the sources into easier and harder for the curricula (steps 3, 5, 7-9)."""

    name: str
    train_dirs: dict[str, str]  # "10M"/"100M" -> the training folder
    dev_dir: str
    test_dir: str
    sources: tuple[str, ...]
    easier: tuple[str, ...]
    harder: tuple[str, ...]


EDITIONS = {
    "2023": Edition(
        "2023", {"10M": "babylm_10M", "100M": "babylm_100M"}, "babylm_dev", "babylm_test",
        sources=("aochildes", "bnc_spoken", "cbt", "children_stories", "gutenberg", "open_subtitles", "qed",
                 "simple_wikipedia", "switchboard", "wikipedia"),
        easier=("aochildes", "open_subtitles", "qed", "simple_wikipedia", "switchboard"),
        harder=("bnc_spoken", "cbt", "children_stories", "gutenberg", "wikipedia")),
    # The same split for the six 2024 sources: child-directed and spoken, and simple text,
    # before the spoken BNC and the books.
    "2024": Edition(
        "2024", {"10M": "train_10M", "100M": "train_100M"}, "dev", "test",
        sources=("bnc_spoken", "childes", "gutenberg", "open_subtitles", "simple_wiki", "switchboard"),
        easier=("childes", "open_subtitles", "simple_wiki", "switchboard"),
        harder=("bnc_spoken", "gutenberg")),
}
# Every source name of a release: a missing file of one of these is skipped with a warning.
KNOWN_SOURCES = frozenset(s for edition in EDITIONS.values() for s in edition.sources)


@dataclass(frozen=True)
class Corpus:
    """A detected corpus: its layout, the folder of each split, and what was held out."""

    layout: str  # "2023", "2024", "dataset" or "plain"
    root: Path  # the --data_dir given
    folders: dict[str, Path]  # split -> folder of <source><ext> files
    edition: Edition | None
    held_out: tuple[str, ...] = ()  # the splits taken from the training lines
    origin: str = ""  # what was read, when the files are a copy written under the cache

    def describe(self) -> str:
        """One line for the log: the layout, the folders read and what was held out."""
        what = f"the {self.layout} BabyLM release" if self.edition else f"a {self.layout} corpus"
        held = (f"; {' and '.join(self.held_out)} held out from the training lines (1 line in {HELD_OUT_PERIOD} "
                "each, the same every run)" if self.held_out else "")
        where = (f"{self.origin}, as text files in {self.folders['train'].parent}" if self.origin
                 else f"training files in {self.folders['train']}")
        return f"corpus {self.root}: {what} ({where}){held}"

    def group(self, name: str) -> tuple[str, ...]:
        """The sources an `@easier`/`@harder` name stands for (UserError without an edition)."""
        if self.edition is None:
            raise UserError(f"{name} names the curriculum lists of a BabyLM release, but {self.root} is a "
                            f"{self.layout} corpus: name its sources instead (e.g. --train_files "
                            f"{' '.join(sorted(p.stem for p in self.folders['train'].glob('*.train'))[:2])})")
        return self.edition.easier if name == "@easier" else self.edition.harder

    def files(self, split: str, names: list[str] | None, logger=log) -> list[Path]:
        """The files of `split` ('train', 'validation', 'test') for the sources in `names`.

        `names=None` means every file of the split; `@easier`/`@harder` stand for the
        edition's curriculum lists. A named source without a file:
        - a source of a BabyLM release is skipped with a warning, because the curriculum
          lists name every source and a partial corpus (a slice of the release) must still
          run; if none of the named files exists it is an error;
        - any other name is a typo and an error at once, listing the sources present.
        A name that is no release's source but has a file (an added corpus) is used."""
        folder, ext = self.folders[split], SPLIT_EXT[split]
        if names is None:
            found = sorted(folder.glob(f"*{ext}"))
            if not found:
                raise UserError(f"no *{ext} files in '{folder}': put the corpus's {split} files there or fix "
                                "--data_dir")
            return found
        present = " ".join(p.stem for p in sorted(folder.glob(f"*{ext}"))) or f"(no *{ext} file there)"
        expanded = expand_names(self, names)
        for name in expanded:
            if name not in KNOWN_SOURCES and not (folder / f"{name}{ext}").is_file():
                raise UserError(f"{split} source '{name}' has no file {folder / (name + ext)} and is not a BabyLM "
                                f"source: pick from the sources in '{folder}': {present}")
        paths = [folder / f"{name}{ext}" for name in expanded]
        found = [path for path in paths if path.is_file()]
        if not found:  # checked before warning, so the error is the only line printed
            raise UserError(f"none of the {split} sources {' '.join(expanded)} exists in '{folder}': pick from "
                            f"{present}")
        for name, path in zip(expanded, paths, strict=True):
            if not path.is_file():
                logger.warning(f"{split} source '{name}' has no file {path}: skipped")
        return found


def detect_corpus(data_dir: str | Path, train_split: str | None = None, cache_dir: str | Path = "cache") -> Corpus:
    """The corpus in `data_dir` (see the module docstring), with dataset and held-out
    splits written to `cache_dir` first when they are not there yet. Callers log
    `describe()` where the user reads it (the run's log)."""
    root = Path(data_dir)
    if not root.is_dir():
        raise UserError(f"corpus folder '{root}' not found: run `make data DATA_DIR={root}` to download a BabyLM "
                        "corpus (README, 'Using the real corpus'), or pass DATA_DIR=data/sample to make "
                        "(--data_dir data/sample to run.py)")
    # Plain before dataset: a folder this module wrote (make data) holds meta.json beside its text files.
    corpus = _release(root, train_split, cache_dir) or _plain(root, cache_dir) or _dataset(root, cache_dir)
    if corpus is None:
        raise UserError(f"'{root}' holds no corpus: --data_dir must be a BabyLM release (babylm_10M/, babylm_dev/, "
                        "babylm_test/ for 2023; train_10M/, dev/, test/ for 2024), a Hugging Face dataset (saved, "
                        "parquet, jsonl or csv with a 'text' column) or a folder of .txt files")
    return corpus


def resolve_files(data_dir: str | Path, split: str, names: list[str] | None, train_split: str | None = None,
                  logger=log, cache_dir: str | Path = "cache") -> list[Path]:
    """`detect_corpus(...).files(split, names, logger)`: for a caller that needs one split once."""
    return detect_corpus(data_dir, train_split, cache_dir).files(split, names, logger)


def expand_names(corpus: Corpus, names: list[str]) -> list[str]:
    """Source names with `@easier`/`@harder` replaced by the edition's lists, each name once
    (a name given twice would silently double that file's data)."""
    return list(dict.fromkeys(s for name in names for s in (corpus.group(name) if name in GROUPS else (name,))))


# --------------------------------------------------------------------------- the layouts


def _release(root: Path, train_split: str | None, cache_dir: str | Path) -> Corpus | None:
    """A 2023 or 2024 release (or a slice of one) in `root` or in its `text_data/`."""
    for base in (root, root / "text_data"):
        for edition in EDITIONS.values():
            # A release is known by its folders, but for dev/ and test/: a plain corpus has those too.
            marks = [*edition.train_dirs.values(),
                     *(d for d in (edition.dev_dir, edition.test_dir) if d not in WRITTEN_DIRS.values())]
            if not any((base / name).is_dir() for name in marks):
                continue
            split = train_split or "10M"
            train = base / edition.train_dirs.get(split, split)
            folders = {"train": train, "validation": base / edition.dev_dir, "test": base / edition.test_dir}
            if not train.is_dir() and folders["validation"].is_dir() and folders["test"].is_dir():
                return Corpus(edition.name, root, folders, edition)  # evaluation sets only: no training split
            if not train.is_dir():
                present = [n for n in edition.train_dirs.values() if (base / n).is_dir()]
                raise UserError(f"'{train}' not found: this {edition.name} corpus has "
                                f"{', '.join(present) or 'no training folder'}; pass --train_split 10M or 100M "
                                "(make TRAIN_SPLIT=...) to pick one")
            missing = tuple(s for s in ("validation", "test") if not any(folders[s].glob(f"*{SPLIT_EXT[s]}")))
            if "validation" not in missing:
                # With its dev files a release is read as it is (as before held-out splits existed): a
                # missing test split is an error for the test step only.
                return Corpus(edition.name, root, folders, edition)
            # A slice without dev files (one training folder, say): dev, and test if missing too, held out.
            files = sorted(train.glob("*.train"))
            kept = {s: sorted(folders[s].glob(f"*{SPLIT_EXT[s]}")) for s in SPLITS if s != "train" and s not in missing}
            target = _held_out_copy(f"{edition.name}-{train.name}", files, kept, missing, root, cache_dir)
            return Corpus(edition.name, root, {s: target / WRITTEN_DIRS[s] for s in SPLITS}, edition, missing,
                          origin=f"{train.name}/")
    return None


def _dataset(root: Path, cache_dir: str | Path) -> Corpus | None:
    """A Hugging Face dataset saved or stored as files in `root`, written out as text files."""
    saved = (root / "dataset_dict.json").is_file() or (root / "state.json").is_file()
    files = sorted(p for p in root.rglob("*") if p.suffix in DATASET_SUFFIXES and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not saved and not files:
        return None
    key = _key("dataset", root, files or sorted(p for p in root.rglob("*") if p.is_file()))
    target = Path(cache_dir) / "corpus" / f"dataset-{key}"
    if not (target / "meta.json").is_file():
        write_text_corpus(load_dataset_dict(root), target, source=str(root))
    held_out = tuple(json.loads((target / "meta.json").read_text())["held_out"])
    return Corpus("dataset", root, {s: target / WRITTEN_DIRS[s] for s in SPLITS}, None, held_out,
                  origin="a saved dataset" if saved else f"{len(files)} data files")


def _plain(root: Path, cache_dir: str | Path) -> Corpus | None:
    """The user's own text files, at the top of `root` or in train/ (+ dev/, test/)."""
    base = root / "train" if (root / "train").is_dir() else root
    files = sorted(p for p in base.iterdir() if p.suffix in PLAIN_SUFFIXES and p.is_file())
    if not files:
        return None
    given = {"validation": _plain_split(root, "dev", "validation"), "test": _plain_split(root, "test", "test")}
    missing = tuple(split for split, found in given.items() if not found)
    if not missing and base != root and all(p.suffix == ".train" for p in files) and all(
            p.suffix == SPLIT_EXT[split] for split, found in given.items() for p in found):
        # Already in the shape the pipeline reads (what `make data` writes from a dataset): read in place.
        return Corpus("plain", root, {s: root / WRITTEN_DIRS[s] for s in SPLITS}, None)
    kept = {split: found for split, found in given.items() if found}
    target = _held_out_copy("plain", files, kept, missing, root, cache_dir)
    return Corpus("plain", root, {s: target / WRITTEN_DIRS[s] for s in SPLITS}, None, missing,
                  origin=f"{len(files)} text files")


def _held_out_copy(kind: str, files: list[Path], kept: dict[str, list[Path]], missing: tuple[str, ...],
                   root: Path, cache_dir: str | Path) -> Path:
    """The corpus written under the cache in the 2023 shape: the training files with the
    `missing` splits held out of them, and the `kept` splits' own files copied. Written once
    (atomically), keyed by the files' contents and the held-out rule."""
    all_files = files + [p for found in kept.values() for p in found]
    target = Path(cache_dir) / "corpus" / f"{kind}-{_key(kind, root, all_files, missing)}"
    if not (target / "meta.json").is_file():
        with written_once(target) as tmp:
            _write_held_out(files, tmp, missing)
            for split, found in kept.items():
                for path in found:
                    _copy_lines(path, tmp / WRITTEN_DIRS[split] / f"{path.stem}{SPLIT_EXT[split]}")
            write_json_atomic(tmp / "meta.json", {"layout": kind, "source": str(root), "held_out": list(missing)})
    return target


@contextlib.contextmanager
def written_once(target: Path) -> Iterator[Path]:
    """Write a folder that several processes may write at once (the ranks of a run, `make -j`):
    a temporary folder beside `target` becomes `target` unless another process has put a
    complete one (with meta.json) there first, which then stays and this one is dropped.
    Never replaces a complete folder: its readers may be reading it."""
    tmp = temp_dir_beside(target)
    try:
        yield tmp
        if not (target / "meta.json").is_file():
            remove_path(target)  # a folder without meta.json is a leftover, not a corpus
            try:
                os.replace(tmp, target)
            except OSError:
                if not (target / "meta.json").is_file():  # not another process's complete copy: a real failure
                    raise
    except BaseException as e:
        failure = write_failure(target, e)
        if failure is None:
            raise
        raise failure from None
    finally:
        remove_path(tmp)


def _plain_split(root: Path, name: str, split: str) -> list[Path]:
    """A plain corpus's own dev/ or test/ files (none: that split is held out)."""
    folder = root / name
    return sorted(p for p in folder.iterdir() if p.suffix in (*PLAIN_SUFFIXES, SPLIT_EXT[split]) and p.is_file()
                  ) if folder.is_dir() else []


# --------------------------------------------------------------------------- writing text files


def _key(kind: str, root: Path, files: list[Path], held_out: tuple[str, ...] = ()) -> str:
    """Hash of what a written corpus depends on: each file's place under the corpus root and its
    contents (a file moved from dev/ to test/ changes it), and the held-out rule."""
    h = hashlib.sha256(f"{kind} v{HELD_OUT_VERSION} period={HELD_OUT_PERIOD} held={held_out}\n".encode())
    for path in files:
        stat = path.stat()
        place = path.relative_to(root).as_posix()
        h.update(f"{place} {_digest(str(path.resolve()), stat.st_size, stat.st_mtime_ns)}\n".encode())
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=4096)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of a file, once per process for a given size and modification time: a run resolves
    its corpus for every split (and the model card once more), each time hashing every file."""
    return sha256_of(path)


def held_out_split(index: int) -> str:
    """The split a training file's line `index` (0-based, empty lines counted) goes to when dev
    and test are held out: 'validation', 'test' or 'train' (1 line in HELD_OUT_PERIOD each)."""
    slot = index % HELD_OUT_PERIOD
    return "validation" if slot == HELD_OUT_PERIOD - 1 else "test" if slot == HELD_OUT_PERIOD // 2 - 1 else "train"


def _write_held_out(files: list[Path], dest: Path, missing: tuple[str, ...]) -> list[str]:
    """Write each training file to dest/train, its held-out lines to dest/<split> for the
    splits in `missing` (lines of a split that is not missing stay in training)."""
    for path in files:
        parts: dict[str, list[str]] = {split: [] for split in SPLITS}
        for number, line in numbered_lines(path):
            split = held_out_split(number - 1)
            parts[split if split in missing else "train"].append(line.rstrip("\n"))
        for split in ("train", *missing):
            _write_lines(parts[split], dest / WRITTEN_DIRS[split] / f"{path.stem}{SPLIT_EXT[split]}")
    return list(missing)


def _copy_lines(path: Path, dest: Path) -> None:
    _write_lines([line.rstrip("\n") for _, line in numbered_lines(path)], dest)


def _write_lines(lines: list[str], dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def load_dataset_dict(source: str | Path, revision: str | None = None):
    """A dataset as a `datasets.DatasetDict` (split -> Dataset): a `save_to_disk` folder, a folder
    of data files (read as `datasets` reads a hub repository), or else a hub id, fetched (the
    one place the pipeline goes online; `make data EDITION=hub`)."""
    import datasets

    root = Path(source)
    try:
        if (root / "dataset_dict.json").is_file() or (root / "state.json").is_file():
            loaded = datasets.load_from_disk(str(root))
        else:
            loaded = datasets.load_dataset(str(source), revision=revision)
    except (ValueError, ConnectionError, OSError, datasets.exceptions.DatasetGenerationError) as e:
        where = "check its files" if root.is_dir() else "check the id and the network, or pass a local copy's folder"
        raise UserError(f"'{source}' could not be read as a dataset ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''}): {where}") from None
    return loaded if isinstance(loaded, datasets.DatasetDict) else datasets.DatasetDict({"train": loaded})


# The split names datasets uses -> the pipeline's.
DATASET_SPLITS = {"train": "train", "validation": "validation", "valid": "validation", "dev": "validation",
                  "test": "test"}


def write_text_corpus(dataset_dict, target: Path, source: str) -> dict:
    """Write a dataset's splits as `<source><ext>` text files in target/{train,dev,test}
    (`written_once`), holding out dev and test from the training lines when the dataset has none.
    Returns the meta written to target/meta.json."""
    unknown = sorted(set(dataset_dict) - set(DATASET_SPLITS))
    if unknown or "train" not in dataset_dict:
        raise UserError(f"dataset {source} has splits {', '.join(sorted(dataset_dict))}: it needs a 'train' split "
                        f"(and optionally validation/dev and test), not {', '.join(unknown) or 'only those'}")
    if len(dataset_dict["train"]) == 0:
        raise UserError(f"dataset {source} has an empty train split: nothing to train on")
    for name, split in dataset_dict.items():
        if TEXT_COLUMN not in split.column_names:
            raise UserError(f"dataset {source} split '{name}' has no '{TEXT_COLUMN}' column (it has "
                            f"{', '.join(split.column_names)}): the corpus must hold its text in '{TEXT_COLUMN}'")
        dtype = getattr(split.features[TEXT_COLUMN], "dtype", None)
        if dtype not in ("string", "large_string"):
            raise UserError(f"dataset {source} split '{name}': column '{TEXT_COLUMN}' holds {dtype or 'nested values'}"
                            ", not strings: the corpus must hold its text as strings")
    given = {DATASET_SPLITS[name] for name in dataset_dict}
    missing = tuple(s for s in ("validation", "test") if s not in given)
    with written_once(target) as tmp:
        staged = tmp / ".from_dataset"  # the train split as files, then held out like a plain corpus
        for name, split in dataset_dict.items():
            folder = staged if DATASET_SPLITS[name] == "train" else tmp / WRITTEN_DIRS[DATASET_SPLITS[name]]
            ext = ".train" if folder is staged else SPLIT_EXT[DATASET_SPLITS[name]]
            for src, lines in _lines_by_source(split).items():
                _write_lines(lines, folder / f"{src}{ext}")
        _write_held_out(sorted(staged.glob("*.train")), tmp, missing)
        for path in staged.iterdir():
            path.unlink()
        staged.rmdir()
        meta = {"layout": "dataset", "source": source, "held_out": list(missing),
                "splits": {name: len(split) for name, split in dataset_dict.items()}}
        write_json_atomic(tmp / "meta.json", meta)
    return meta


def _lines_by_source(split) -> dict[str, list[str]]:
    """source -> the lines of its rows (a row's text split into lines), in row order."""
    by_source: dict[str, list[str]] = {}
    sources = split[SOURCE_COLUMN] if SOURCE_COLUMN in split.column_names else None
    for i, text in enumerate(split[TEXT_COLUMN]):
        name = str(sources[i]) if sources is not None else TEXT_COLUMN
        by_source.setdefault(_safe_name(name), []).extend((text or "").splitlines())
    return by_source


def _safe_name(name: str) -> str:
    """A source name usable as a file name."""
    cleaned = "".join(c if c.isalnum() or c in "_-" else "_" for c in name.strip()) or "unnamed"
    return cleaned
