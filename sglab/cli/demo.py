"""``sglab demo``: the whole chain, offline, on the embedded data (see :mod:`sglab.demo`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sglab.cli import positive_int


def register(subparsers) -> None:
    """Add the ``demo`` subcommand."""
    import sglab.demo
    from sglab.demo import DemoConfig

    parser = subparsers.add_parser(
        "demo", help="run the whole chain offline on the embedded data: train, profile, simulate, report",
        description=sglab.demo.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = DemoConfig()
    parser.add_argument("--out", default=defaults.out, help=f"output folder (default: {defaults.out})")
    parser.add_argument("--steps", type=positive_int, default=defaults.steps, help="training steps per method")
    parser.add_argument("--layers", type=positive_int, default=defaults.layers, help="FCN layers (= stages)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--no-real-run", action="store_true",
                        help="skip step 5, the real 2-process DNI run on this machine against its prediction")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``sglab demo``."""
    from sglab.demo import DemoConfig, run_demo
    from sglab.demo.real_run import summary_line

    config = DemoConfig(out=args.out, steps=args.steps, layers=args.layers, seed=args.seed, progress=not args.no_progress,
                        real_run=not args.no_real_run)
    report = run_demo(config)
    print(summary_line(report["real_run"]), file=sys.stderr if report["real_run"]["status"] == "failed" else sys.stdout)
    print(f"demo finished in {report['wall_time_s']:.0f} s; report: {Path(config.out) / 'report.md'}")
    return 0
