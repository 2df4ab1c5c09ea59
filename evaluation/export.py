"""`run.py export` (`make export STEP=<step>`): a run as a model repository, ready to push.

The official evaluation reads a model's checkpoints as revisions of one Hugging Face
repository (`chck_1M`, ..., `main` for the final model). This writes that repository as a
local git repository (default `<run>/export/`):

- branch `main`: the run's best_model/ (weights, config, tokenizer, model card README.md);
- one branch per `chck_*` folder of the run, by words seen, each a complete transformers
  folder with the tokenizer and the run's model card, branched from `main`.

Weights are stored with git-lfs when `git lfs` is installed (`*.safetensors`, `*.bin`, `*.pt`
tracked; the Hugging Face hub refuses plain git files over 10 MB), else as plain git
objects, and the command says which. The folder is built beside its destination and
renamed into place when complete; an existing destination is refused, not overwritten.

`--push REPO_ID` then uploads every branch with huggingface_hub (create the repository,
a branch per checkpoint, one upload each), which needs a token (`HF_TOKEN` or
`huggingface-cli login`): without one it stops before exporting anything. `git push` from
the folder works too (add the remote, `git push --all`)."""

from __future__ import annotations

import argparse
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from training.model_card import CARD_FILE
from training.run_folder import RunFolder
from utils import MAIN, UserError, remove_path, replace_dir, temp_dir_beside

EXPORT_DIR = "export"
LFS_PATTERNS = ("*.safetensors", "*.bin", "*.pt")
# Used when the user's git has no identity (a fresh machine or CI): commits need one.
GIT_IDENTITY = ("-c", "user.name=BabyLM pipeline", "-c", "user.email=babylm-pipeline@localhost")


def git(repo: Path, *args: str) -> str:
    """Run git in `repo`; its stdout. A failure is a UserError with git's own message."""
    try:
        done = subprocess.run(["git", *GIT_IDENTITY, "-C", str(repo), *args], capture_output=True, text=True,
                              check=True)
    except FileNotFoundError:
        raise UserError("git is not installed: install it to export a model repository") from None
    except subprocess.CalledProcessError as e:
        raise UserError(f"git {' '.join(args)} failed in {repo}: {(e.stderr or e.stdout).strip()}") from None
    return done.stdout


def has_git_lfs() -> bool:
    """Whether `git lfs` is installed."""
    try:
        return subprocess.run(["git", "lfs", "version"], capture_output=True).returncode == 0
    except FileNotFoundError:
        return False


def revisions(run_dir: Path) -> list[tuple[str, Path]]:
    """(branch, model folder) of a finished run: main first, then every chck_* by words seen."""
    return RunFolder(run_dir).revisions()


def export_run(run_dir: str | Path, export_dir: str | Path | None = None, lfs: bool | None = None) -> tuple[Path, bool]:
    """Write the run's model repository (see the module docstring); returns (its path, whether
    it uses git-lfs). `lfs` None: git-lfs when installed."""
    run_dir = Path(run_dir)
    dest = Path(export_dir) if export_dir else run_dir / EXPORT_DIR
    branches = revisions(run_dir)
    if dest.exists():
        raise UserError(f"'{dest}' exists already: remove it to export again, or pass --export_dir")
    card = RunFolder(run_dir).best_model / CARD_FILE
    lfs = has_git_lfs() if lfs is None else lfs
    tmp = temp_dir_beside(dest)
    try:
        git(tmp, "init", "-q", "-b", MAIN)
        if lfs:
            git(tmp, "lfs", "install", "--local")
            git(tmp, "lfs", "track", *LFS_PATTERNS)
        for branch, folder in branches:
            if branch != MAIN:
                git(tmp, "checkout", "-q", "-b", branch, MAIN)
                git(tmp, "rm", "-rq", "--ignore-unmatch", ".", ":!.gitattributes")
            _copy_model(folder, tmp, card)
            git(tmp, "add", "-A")
            git(tmp, "commit", "-q", "-m", f"{branch}: {folder.name} of {run_dir.name}")
        git(tmp, "checkout", "-q", MAIN)
        replace_dir(tmp, dest)
    except BaseException:
        remove_path(tmp)
        raise
    return dest, lfs


def _copy_model(folder: Path, repo: Path, card: Path) -> None:
    """A model folder's files into the repository's work tree, with the run's model card."""
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        target = repo / path.name
        shutil.copytree(path, target) if path.is_dir() else shutil.copy2(path, target)
    if card.is_file() and not (repo / CARD_FILE).is_file():
        shutil.copy2(card, repo / CARD_FILE)


def branches_of(repo: Path) -> list[str]:
    """The local branches of an exported repository."""
    return git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/").split()


@contextmanager
def checked_out(repo: Path, branch: str, dest: Path) -> Iterator[Path]:
    """`branch` of `repo` checked out (git-lfs files included) into `dest`, removed afterwards."""
    git(repo, "worktree", "add", "-q", "--detach", str(dest), branch)
    try:
        yield dest
    finally:
        git(repo, "worktree", "remove", "--force", str(dest))


def hub_token() -> str | None:
    """The Hugging Face token huggingface_hub would use (HF_TOKEN or a saved login)."""
    from huggingface_hub import get_token

    return get_token()


def push(repo: Path, repo_id: str, token: str) -> None:
    """Upload every branch of the exported repository to the hub repository `repo_id`."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, exist_ok=True)
    for branch in branches_of(repo):
        if branch != MAIN:
            api.create_branch(repo_id, branch=branch, exist_ok=True)
        with checked_out(repo, branch, temp_dir_beside(repo / f"push-{branch}")) as folder:
            # delete_patterns: files of an earlier push that this export no longer has go too.
            api.upload_folder(folder_path=str(folder), repo_id=repo_id, revision=branch,
                              commit_message=f"{branch} from the BabyLM pipeline", ignore_patterns=[".git*"],
                              delete_patterns=["*"])
        print(f"pushed {branch} -> https://huggingface.co/{repo_id}/tree/{branch}")


def run_export(args: argparse.Namespace) -> Path:
    """The export action: --model_dir's run as a local repository; --push uploads it (an export
    made earlier, when there is one: a failed push is retried without exporting again)."""
    # The token is checked first: a push that cannot happen must not leave an export behind either.
    token = None
    if args.push:
        token = hub_token()
        if token is None:
            raise UserError(f"--push {args.push} needs a Hugging Face token: set HF_TOKEN or run "
                            "`huggingface-cli login`, or export without --push and `git push` yourself")
    repo = Path(args.export_dir) if args.export_dir else Path(args.model_dir) / EXPORT_DIR
    if token is not None and (repo / ".git").is_dir():
        print(f"pushing the export made earlier, {repo} (delete it to export the run again)")
    else:
        repo, lfs = export_run(args.model_dir, repo)
        names = branches_of(repo)
        print(f"exported {len(names)} revisions ({', '.join(names)}) to the git repository {repo}, "
              + ("weights in git-lfs" if lfs else "weights as plain git objects (git-lfs is not installed; the hub "
                 "needs git-lfs for a `git push` of files over 10 MB, --push uploads without it)"))
    if token is not None:
        push(repo, args.push, token)
    return repo
