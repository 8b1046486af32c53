"""The ``sglab`` command line: one subcommand per capability.

Each capability registers its own subcommand with a ``register(subparsers)`` function that adds
a parser and sets ``func`` (called with the parsed arguments, returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from sglab.errors import SglabError

#: Modules that provide a ``register(subparsers)``; order is the order in ``sglab --help``.
COMMAND_MODULES = (
    "sglab.train.cli",
    "sglab.profile.cli",
    "sglab.sim.cli",
    "sglab.data.cli",
    "sglab.demo",
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available subcommand."""
    parser = argparse.ArgumentParser(
        prog="sglab",
        description="Study locking in neural-network training with Decoupled Neural Interfaces.",
    )
    from sglab import __version__

    parser.add_argument("--version", action="version", version=f"sglab {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:  # capability not built yet
                continue
            raise
        module.register(subparsers)
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
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except SglabError as err:
        print(f"sglab {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
