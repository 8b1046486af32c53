"""``sglab sweep``: grids of simulations (methods × machines × stages × bandwidth ...) on an Executor.

Bad options raise :class:`~sglab.errors.UsageError` (exit 2) before any point runs; a sweep
whose every point failed, or an empty grid, raises :class:`~sglab.errors.SglabError` (exit 1).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from sglab.cli.simulate import add_common_options, check_positive, load_profile, method_list, number_list
from sglab.errors import SglabError, UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``sweep`` subcommand."""
    sweep = subparsers.add_parser("sweep", help="simulate a grid of methods × hardware × stages × bandwidth ...",
                                  description="Run a grid of simulations on a process pool (or a dask.distributed "
                                              "cluster) and write sweep.csv and speedup figures.")
    sweep.add_argument("--profile", type=Path, required=True, help="CostProfile JSON")
    sweep.add_argument("--hardware", default="cluster-10gbe", help="comma-separated presets or spec files")
    sweep.add_argument("--methods", default="all", help="comma-separated methods or 'all'")
    add_common_options(sweep)
    sweep.add_argument("--stages", default="", help="comma-separated stage counts K (layers merged, K devices)")
    sweep.add_argument("--bandwidth", default="", help="comma-separated link bandwidths, GB/s per direction")
    sweep.add_argument("--synth-cost-ratios", default="",
                       help="comma-separated synthesizer costs S/F (override measured)")
    sweep.add_argument("--microbatches-grid", default="", help="comma-separated microbatch counts for gpipe/1f1b")
    sweep.add_argument("--workers", type=int, help="process-pool size (default: CPU count)")
    sweep.add_argument("--scheduler-address", help="dask.distributed scheduler, e.g. tcp://10.0.0.1:8786")
    sweep.add_argument("--connect-timeout", type=float, default=10.0,
                       help="seconds to wait for the scheduler to answer (default: %(default)s)")
    sweep.add_argument("--out", type=Path, required=True, help="output directory")
    sweep.add_argument("--no-figures", action="store_true", help="write the CSV only")
    sweep.add_argument("--no-progress", action="store_true", help="no progress bar")
    sweep.set_defaults(func=run_sweep_command)


def run_sweep_command(args: argparse.Namespace) -> int:
    """``sglab sweep``: run the grid, write CSV and figures, print the speedup table."""
    from sglab.sim import SimOptions
    from sglab.sim.sweep import SweepGrid, run_sweep, write_sweep

    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    check_positive("--reference-flops", args.reference_flops)
    # checked once here, so that a bad value is one usage error rather than a failure at every point
    SimOptions(steps=args.steps, microbatches=args.microbatches, seed=args.seed, synth_cost_ratio=args.synth_cost_ratio)
    grid = SweepGrid(methods=tuple(method_list(args.methods, "--methods")),
                     hardware=tuple(h.strip() for h in args.hardware.split(",") if h.strip()),
                     stages=number_list(args.stages, "--stages", int), bandwidths=number_list(args.bandwidth, "--bandwidth"),
                     synth_cost_ratios=number_list(args.synth_cost_ratios, "--synth-cost-ratios", zero_ok=True),
                     microbatches=number_list(args.microbatches_grid, "--microbatches-grid", int),
                     steps=args.steps, seed=args.seed, reference_flops=args.reference_flops)
    if args.microbatches is not None and grid.microbatches == (None,):
        grid = replace(grid, microbatches=(args.microbatches,))
    if args.synth_cost_ratio is not None and grid.synth_cost_ratios == (None,):
        grid = replace(grid, synth_cost_ratios=(args.synth_cost_ratio,), override_synth=False)
    profile = load_profile(args.profile)
    if not grid.hardware:
        raise SglabError(f"the grid is empty: --hardware {args.hardware!r} names no machine")
    check_positive("--connect-timeout", args.connect_timeout)
    table = run_sweep(profile, grid, workers=args.workers, scheduler_address=args.scheduler_address,
                      progress=not args.no_progress, connect_timeout_s=args.connect_timeout)
    files = write_sweep(table, grid, args.out)
    if not args.no_figures:
        from analysis.sim_figures import sweep_figures

        files += sweep_figures(table, grid, args.out)
    failed = table[table["error"] != ""]
    columns = ["method", "hardware_spec", "num_stages", "bandwidth_GB_per_s", "synth_cost_ratio", "speedup"]
    ok = table[table["error"] == ""]
    if len(ok):
        print(ok[[c for c in columns if c in table]].to_string(index=False))
    for row in failed.itertuples():
        print(f"failed: {row.method} on {row.hardware_spec}: {row.error}")
    print(f"wrote {len(files)} files to {args.out}")
    if not len(ok):
        raise SglabError(f"every one of the {len(table)} grid points failed (see above and {args.out / 'sweep.csv'}); "
                         f"first: {failed['error'].iloc[0]}")
    return 0
