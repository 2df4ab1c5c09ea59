"""Recipes as files: `run.py ACTION --config recipe.toml` reads options from a TOML file.

Keys are option names without dashes (`hidden_size = 256`), lists give a multi-value option its
values (`train_files = ["qed", "cbt"]`), `true` sets a flag (`torch_training = true`; `false` leaves
it off; a switch with a --no- form, e.g. `value_gate = false`, is turned off). The file becomes
command-line words put before the real ones, so the same parser checks every value (ranges,
choices: the same messages) and the command line wins."""

from __future__ import annotations

import argparse
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn


def config_argv(path: str, action: str, options: dict[str, argparse.Action],
                parsers: dict[str, argparse.ArgumentParser], error: Callable[[str], NoReturn]) -> list[str]:
    """The command-line words of the recipe at `path` for `action`, whose parser takes `options`
    (option string -> action); `parsers` (action -> parser with .options) names the action an
    unknown key belongs to; `error` reports a problem (one line, exit 2)."""
    try:
        recipe = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        error(f"--config {path}: no such file")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        error(f"--config {path} is not a readable TOML file: {e}")
    words: list[str] = []
    for key, value in recipe.items():
        flag = f"--{key}"
        option = options.get(flag)
        if option is None or key in ("config", "help"):
            owners = [name for name, p in parsers.items() if flag in getattr(p, "options", {})]
            where = f" (an option of {', '.join(owners)})" if owners and key != "config" else ""
            error(f"{path}: unknown key '{key}': not an option of the {action} action{where}")
        words += _words(path, flag, option, value, error)
    return words


def _words(path: str, flag: str, option: argparse.Action, value: object,
           error: Callable[[str], NoReturn]) -> list[str]:
    """The command-line words of one recipe entry."""
    key = f"{path}: {flag[2:]} = {value!r}"
    if isinstance(value, dict):
        error(f"{key}: a table, not an option value")
    if isinstance(value, bool):
        if isinstance(option, argparse.BooleanOptionalAction):  # a switch: false is its --no- form
            return [flag if value else f"--no-{flag[2:]}"]
        if option.nargs == 0 or (option.nargs == "?" and value):
            return [flag] if value else []
        error(f"{key}: true/false is for flags; {flag} takes a value")
    if option.nargs == 0:
        error(f"{key}: {flag} is a flag: write true or false")
    if isinstance(value, list):
        if option.nargs not in ("+", "*"):
            error(f"{key}: {flag} takes one value, not a list")
        return [flag, *map(_text, value)]
    return [f"{flag}={_text(value)}"]


def _text(value: object) -> str:
    """A TOML scalar as the command line writes it."""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
