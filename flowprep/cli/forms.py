"""Argument forms every `flowprep` command shares: the parser class (it suggests a close match for a
misspelt command or choice, and keeps its subcommands where they can be listed), the help formatter
(defaults shown where they mean something), the shard-folder argument (``--shards DIR`` everywhere, a
bare DIR kept as an alias) and comma-separated lists.

A module of its own so that every command module takes them from one place without importing the
package's entry point, and so that what argparse keeps private is touched here alone.
"""

from __future__ import annotations

import argparse
import difflib
import os
from typing import Iterator


class Parser(argparse.ArgumentParser):
    """argparse with a suggestion for a misspelt command or choice ("did you mean 'build'?"), and its
    subcommands by name in ``commands`` (empty when it has none)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.commands: dict[str, argparse.ArgumentParser] = {}

    def add_subparsers(self, **kwargs):
        action = super().add_subparsers(**kwargs)
        self.commands = action.choices  # the same dict argparse fills as subcommands are added
        return action

    def _check_value(self, action, value):
        if action.choices is not None and value not in action.choices:
            close = difflib.get_close_matches(str(value), [str(c) for c in action.choices], n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            choices = ", ".join(map(repr, action.choices))
            raise argparse.ArgumentError(action, f"invalid choice: {value!r} (choose from {choices}){hint}")
        super()._check_value(action, value)


class Help(argparse.ArgumentDefaultsHelpFormatter):
    """Show a default only where there is one worth reading: 0 is (--seed 0), None and an off switch
    are not. (Compared by identity: ``0 in (None, False)`` is true in Python.)"""

    def _get_help_string(self, action):
        hidden = action.default is None or action.default is False or action.default is argparse.SUPPRESS
        if hidden or "%(default)" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class ExamplesHelp(Help, argparse.RawDescriptionHelpFormatter):
    """Examples in a description kept as written, and defaults shown only where they mean something."""


def walk(parser: argparse.ArgumentParser, name: str = "flowprep") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every parser of a command with its command line ("flowprep bench build"), the top one first."""
    yield name, parser
    for sub_name, sub in getattr(parser, "commands", {}).items():
        yield from walk(sub, f"{name} {sub_name}")


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    """The options a parser takes ("--src", "-h", ...)."""
    return {o for action in parser._actions for o in action.option_strings}


def comma_list(text: str) -> tuple[str, ...]:
    """``"a, b,,c"`` -> ``("a", "b", "c")``."""
    return tuple(v.strip() for v in text.split(",") if v.strip())


def add_folder_argument(p: argparse.ArgumentParser) -> None:
    """The shard folder a command reads: ``--shards DIR``, as train and eval take it, or a bare DIR."""
    p.add_argument("root", nargs="?", metavar="DIR", help="the shard folder (same as --shards)")
    p.add_argument("--shards", dest="shards_dir", metavar="DIR", help="a shard folder written by `flowprep build`")
    p.set_defaults(folder_parser=p)


def resolve_folder(args: argparse.Namespace) -> None:
    parser = getattr(args, "folder_parser", None)
    if parser is None:
        return
    if args.root and args.shards_dir and os.path.abspath(args.root) != os.path.abspath(args.shards_dir):
        parser.error(f"two shard folders given ({args.root} and --shards {args.shards_dir}): give one")
    args.root = args.root or args.shards_dir
    if not args.root:
        parser.error("give the shard folder: --shards DIR (a folder written by `flowprep build`)")
