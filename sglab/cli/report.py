"""``sglab report RUN_DIR ... --out DIR``: every figure and table of some run directories, regenerated."""

from __future__ import annotations

import argparse
from pathlib import Path

from sglab.errors import SglabError


def register(subparsers) -> None:
    """Add the ``report`` subcommand."""
    parser = subparsers.add_parser(
        "report", help="regenerate every figure and table from run directories (learning curves, fidelity)",
        description="Read the run directories' metrics, summaries and fidelity logs and write their figures (PNG "
                    "and PDF), tables (CSV) and report.md into --out.")
    parser.add_argument("runs", nargs="+", type=Path, help="run directories written by sglab train")
    parser.add_argument("--out", type=Path, default=Path("report"), help="output folder (default: report)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``sglab report``."""
    from analysis.report import build_report

    try:
        path = build_report(args.runs, args.out)
    except (FileNotFoundError, ValueError) as err:
        raise SglabError(str(err)) from None
    print(f"report: {path}")
    return 0
