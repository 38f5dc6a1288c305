"""How the command modules add their subcommands: each one takes the global
options (`--dev`), so they are accepted before or after the subcommand."""

from __future__ import annotations

import argparse
from typing import TypeAlias

Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def global_options(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    # SUPPRESS as the default: a subcommand's unset --dev does not undo the
    # one given before it (`hostauth --dev serve`).
    parser.add_argument(
        "--dev",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="use the embedded development database and keyring",
    )


def command(parent: Subcommands, name: str, help_: str) -> argparse.ArgumentParser:
    sub = parent.add_parser(name, help=help_, description=help_)
    global_options(sub)
    return sub
