"""Download the BabyLM corpus, the BLiMP paradigms or the official evaluation data: the
command line of corpus/download.py (the corpus, a hub dataset), corpus/blimp_download.py
(BLiMP) and evaluation/official_download.py (the official evaluation data), which all
download through corpus/fetch.py (resumable, checked, installed with one rename).

    python -m tools.download corpus [--data_dir DIR] [--edition 2023|2024] [--url URL --sha256 HEX --size N]
    python -m tools.download dataset HUB_ID [--data_dir data/babylm_data] [--revision REV]
    python -m tools.download blimp  [--blimp_dir data/blimp] [--base_url URL] [--paradigms NAME ...]
    python -m tools.download official_eval [--eval_dir data/official_eval] [--url URL --sha256 HEX --size N]
    python -m tools.download official_eval [--eval_dir data/official_eval] --from FOLDER

`make data`, `make eval_data`, `make eval_data_blimp` and `make eval_data_official` run it.
Errors are `utils.UserError`, printed as one line `error: ...` with exit code 1; usage
errors exit 2."""

from __future__ import annotations

import argparse
import re
import sys
from typing import NoReturn

from corpus.blimp_download import BLIMP_BASE_URL, BLIMP_PARADIGMS, download_blimp
from corpus.download import CORPUS_SHA256, CORPUS_SIZE, CORPUS_URL, download_corpus, download_dataset
from corpus.fetch import RETRIES, TIMEOUT
from evaluation.official_download import (
    EWOK_FAST_PASSWORD,
    OFFICIAL_EVAL_URL,
    download_official_eval,
    install_official_eval,
)
from utils import UserError


class _Parser(argparse.ArgumentParser):
    """Usage errors on one line with exit code 2, like run.py's parser."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.splitlines())} (see python {self.prog} --help)\n")


def _sha256_arg(value: str) -> str | None:
    if value.lower() == "none":
        return None
    if not re.fullmatch(r"[0-9a-fA-F]{64}", value):
        raise argparse.ArgumentTypeError(f"'{value}' is not 64 hex digits (or 'none' to skip the check)")
    return value.lower()


def _size_arg(value: str) -> int | None:
    if value.lower() == "none":
        return None
    if not value.isdigit() or int(value) == 0:
        raise argparse.ArgumentTypeError(f"'{value}' is not a positive byte count (or 'none' to skip the check)")
    return int(value)


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if not number > 0:
        raise argparse.ArgumentTypeError(f"'{value}' is not a positive number of seconds")
    return number


def _count_arg(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"'{value}' is not a count >= 0")
    return int(value)


def build_parser() -> argparse.ArgumentParser:
    """The parser of `python -m tools.download corpus|dataset|blimp|official_eval [options]`."""
    parser = _Parser(prog="python -m tools.download",
                     description="Download the BabyLM corpus, the BLiMP paradigms or the official evaluation data.")
    sub = parser.add_subparsers(dest="what", required=True, parser_class=_Parser)
    corpus = sub.add_parser("corpus", help="a BabyLM corpus zip -> DATA_DIR")
    corpus.add_argument("--data_dir", default="data/babylm_data",
                        help="where to install the corpus (gets babylm_10M/, babylm_dev/, ...; default: %(default)s)")
    corpus.add_argument("--edition", choices=("2023", "2024"), default="2023",
                        help="the release (2024 is also 2025's); 2024 needs --url (default: %(default)s)")
    corpus.add_argument("--url", default=CORPUS_URL,
                        help="the zip; a mirror keeps the default checksum and size (default: the 2023 release, "
                        "%(default)s; 2024 has no published direct link: pass its zip's)")
    corpus.add_argument("--sha256", type=_sha256_arg, default=CORPUS_SHA256,
                        help="expected sha256 of the zip, 'none' to skip the check (default: the 2023 zip's, "
                        "%(default)s; 2024: unchecked, none is published)")
    corpus.add_argument("--size", type=_size_arg, default=CORPUS_SIZE,
                        help="expected size of the zip in bytes, 'none' to skip the check (default: the 2023 zip's, "
                        "%(default)s; 2024: unchecked)")
    hub = sub.add_parser("dataset", help="a Hugging Face dataset (hub id or local folder) -> text files in DATA_DIR")
    hub.add_argument("hub_id", help="the dataset's hub id (org/name) or a local dataset folder")
    hub.add_argument("--data_dir", default="data/babylm_data", help="where to write the text files (default: "
                     "%(default)s)")
    hub.add_argument("--revision", default=None, help="the dataset revision (default: main)")
    hub.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    blimp = sub.add_parser("blimp", help="the BLiMP paradigms -> BLIMP_DIR")
    blimp.add_argument("--blimp_dir", default="data/blimp",
                       help="where to put <paradigm>.jsonl (default: %(default)s)")
    blimp.add_argument("--base_url", default=BLIMP_BASE_URL,
                       help="folder URL holding <paradigm>.jsonl (default: %(default)s)")
    blimp.add_argument("--paradigms", nargs="+", default=BLIMP_PARADIGMS, metavar="UID",
                       help="paradigms to download (default: all 67, BLIMP_PARADIGMS in corpus/blimp_download.py)")
    official = sub.add_parser("official_eval", help="the official BabyLM 2025 evaluation data -> EVAL_DIR")
    official.add_argument("--eval_dir", default="data/official_eval",
                          help="where to install full_eval/ and fast_eval/ (default: %(default)s)")
    source = official.add_mutually_exclusive_group()
    source.add_argument("--url", default=OFFICIAL_EVAL_URL,
                        help="zip of the release's evaluation_data folder (default: OSF's, %(default)s)")
    source.add_argument("--from", dest="from_dir", metavar="DIR",
                        help="install a copy of a folder placed by hand (the evaluation_data folder, holding "
                        "full_eval/ and/or fast_eval/) instead of downloading; checked the same way")
    official.add_argument("--sha256", type=_sha256_arg, default=None,
                          help="expected sha256 of the zip (default: unchecked, the release pins none)")
    official.add_argument("--size", type=_size_arg, default=None,
                          help="expected size of the zip in bytes (default: unchecked, the release pins none)")
    official.add_argument("--zip_password", default=EWOK_FAST_PASSWORD,
                          help="password of the zips inside a set (fast_eval/ewok_fast.zip; default: the one "
                          "the pipeline's README gives)")
    for p in (corpus, blimp, official):  # our own downloads (a hub dataset is fetched by `datasets`)
        p.add_argument("--timeout", type=_positive_float, default=TIMEOUT,
                       help="seconds to wait for a connection or for data (default: %(default)s)")
        p.add_argument("--retries", type=_count_arg, default=RETRIES,
                       help="automatic resumes of a broken transfer before giving up (default: %(default)s)")
        p.add_argument("--no_progress", action="store_true", help="no progress bars")
        p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; a UserError is one line `error: ...` on stderr and exit code 1."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.what == "official_eval" and args.from_dir and (args.sha256 or args.size):
        parser.error("--sha256 and --size check a downloaded zip: they do not apply to --from")
    common = ({} if args.what == "dataset" else
              {"timeout": args.timeout, "retries": args.retries, "progress": not args.no_progress})
    try:
        if args.what == "corpus":
            # The defaults are the 2023 zip's; another release keeps only what was given.
            other = args.edition != "2023"
            url = None if other and args.url == CORPUS_URL else args.url
            sha256 = None if other and args.sha256 == CORPUS_SHA256 else args.sha256
            size = None if other and args.size == CORPUS_SIZE else args.size
            download_corpus(args.data_dir, url, sha256, size, edition=args.edition, **common)
        elif args.what == "dataset":
            download_dataset(args.hub_id, args.data_dir, args.revision)
        elif args.what == "blimp":
            download_blimp(args.blimp_dir, args.base_url, args.paradigms, **common)
        elif args.from_dir:
            install_official_eval(args.from_dir, args.eval_dir, zip_password=args.zip_password)
        else:
            download_official_eval(args.eval_dir, args.url, args.sha256, args.size,
                                   zip_password=args.zip_password, **common)
    except UserError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume the download", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
