"""The ``sglab`` command line: one subcommand per capability.

Each command module has a ``register(subparsers)`` that adds its parser and sets ``func``
(called with the parsed arguments, returning an exit code). Every failure a user can cause is
one line on stderr, ``sglab <command>: error: <what, and what would work>``, and an exit code:
2 for a request that cannot work as asked (:class:`~sglab.errors.UsageError`, bad options), 1
for a problem of the input or environment (a missing file, a full disk, a diverged run), 130
for Ctrl-C. ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path
from typing import Any

from sglab.errors import SglabError, UsageError


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand."""
    from sglab import __version__
    from sglab.cli import data, demo, hardware, profile, report, simulate, sweep, train

    parser = argparse.ArgumentParser(prog="sglab", description="Study locking in neural-network training with "
                                                               "Decoupled Neural Interfaces.")
    parser.add_argument("--version", action="version", version=f"sglab {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in (train, profile, simulate, sweep, hardware, data, report, demo):
        command.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sglab`` console script and ``python -m sglab``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt as err:
        print(f"sglab {args.command}: {err or 'interrupted'}", file=sys.stderr)
        return 130
    except (SglabError, OSError) as err:
        if args.debug:
            traceback.print_exc()
        message = str(err) if isinstance(err, SglabError) else _os_message(err)
        print(f"sglab {args.command}: error: {message}", file=sys.stderr)
        return 2 if isinstance(err, UsageError) else 1


def _os_message(err: OSError) -> str:
    where = f"{err.filename}: " if err.filename else ""
    return f"{where}{err.strerror or err}"


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (argparse turns the error into a usage message, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def read_config_file(path: Path) -> dict[str, Any]:
    """The JSON object of config fields in ``--config`` ``path``, or one clear error."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"--config {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"--config {path}: cannot read it ({err})") from None
    except json.JSONDecodeError as err:
        raise UsageError(f"--config {path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise UsageError(f"--config {path}: must hold a JSON object of config fields, got {type(data).__name__}")
    return data


if __name__ == "__main__":
    sys.exit(main())
