"""``sglab sweep``: grids of simulations (methods × machines × stages × bandwidth ...) on an Executor.

``--frontier`` asks where unlocked training beats the best locked schedule: it runs every locked
schedule of the registry (bprop and every pipeline) and every fully unlocked method (DNI, cDNI,
unlocked ...) over the grid's axes, or the ``--methods`` given, and writes ``frontier.csv`` and
``frontier.png``/``.pdf`` (:mod:`analysis.frontier`) beside ``sweep.csv``.

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
    sweep.add_argument("--microbatches-grid", default="", help="comma-separated microbatch counts for the pipeline schedules")
    sweep.add_argument("--replicas", default="",
                       help="comma-separated data-parallel replica counts, each replica on its own devices (default: 1)")
    sweep.add_argument("--workers", type=int, help="process-pool size (default: CPU count)")
    sweep.add_argument("--scheduler-address", help="dask.distributed scheduler, e.g. tcp://10.0.0.1:8786")
    sweep.add_argument("--connect-timeout", type=float, default=10.0,
                       help="seconds to wait for the scheduler to answer (default: %(default)s)")
    sweep.add_argument("--out", type=Path, required=True, help="output directory")
    sweep.add_argument("--no-figures", action="store_true", help="write the CSV only")
    sweep.add_argument("--no-progress", action="store_true", help="no progress bar")
    sweep.add_argument("--frontier", action="store_true",
                       help="compare every locked schedule (bprop, the pipelines; sequential backprop on one device "
                            "added) with every unlocked method (--methods all: the registry's) and write frontier.csv "
                            "and frontier.png/.pdf instead of the speedup figures")
    sweep.add_argument("--frontier-metric", choices=("steady", "throughput"), default="steady",
                       help="--frontier compares steady throughput (default) or samples over the whole makespan")
    sweep.add_argument("--frontier-must-fit", action="store_true",
                       help="--frontier: a locked schedule that does not fit the devices' memory is no rival")
    sweep.set_defaults(func=run_sweep_command)


def run_sweep_command(args: argparse.Namespace) -> int:
    """``sglab sweep``: run the grid, write CSV and figures, print the speedup table."""
    from sglab.sim import SimOptions
    from sglab.sim.sweep import SweepGrid, frontier_grids, run_sweep, write_sweep

    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    check_positive("--reference-flops", args.reference_flops)
    if args.frontier and args.frontier_metric == "steady" and args.steps < 4:
        raise UsageError(f"--frontier-metric steady measures the middle half of at least 4 steps; --steps is {args.steps}")
    # checked once here, so that a bad value is one usage error rather than a failure at every point
    SimOptions(steps=args.steps, microbatches=args.microbatches, seed=args.seed, synth_cost_ratio=args.synth_cost_ratio)
    grid = SweepGrid(methods=tuple(_methods(args)),
                     hardware=tuple(h.strip() for h in args.hardware.split(",") if h.strip()),
                     stages=number_list(args.stages, "--stages", int), bandwidths=number_list(args.bandwidth, "--bandwidth"),
                     synth_cost_ratios=number_list(args.synth_cost_ratios, "--synth-cost-ratios", zero_ok=True),
                     microbatches=number_list(args.microbatches_grid, "--microbatches-grid", int),
                     replicas=tuple(n or 1 for n in number_list(args.replicas, "--replicas", int)),
                     steps=args.steps, seed=args.seed, reference_flops=args.reference_flops)
    if args.microbatches is not None and grid.microbatches == (None,):
        grid = replace(grid, microbatches=(args.microbatches,))
    if args.synth_cost_ratio is not None and grid.synth_cost_ratios == (None,):
        grid = replace(grid, synth_cost_ratios=(args.synth_cost_ratio,), override_synth=False)
    profile = load_profile(args.profile)
    if not grid.hardware:
        raise SglabError(f"the grid is empty: --hardware {args.hardware!r} names no machine")
    check_positive("--connect-timeout", args.connect_timeout)
    grids = frontier_grids(grid) if args.frontier else grid
    table = run_sweep(profile, grids, workers=args.workers, scheduler_address=args.scheduler_address,
                      progress=not args.no_progress, connect_timeout_s=args.connect_timeout)
    files = write_sweep(table, grids, args.out)
    failed = table[table["error"] != ""]
    ok = table[table["error"] == ""]
    for row in failed.itertuples():
        print(f"failed: {row.method} on {row.hardware_spec}: {row.error}")
    if args.frontier and len(ok):
        files += _frontier(table, grid, profile, args)
    elif len(ok):
        if not args.no_figures:
            from analysis.sim_figures import sweep_figures

            files += sweep_figures(table, grid, args.out)
        columns = ["method", "hardware_spec", "num_stages", "bandwidth_GB_per_s", "synth_cost_ratio", "speedup"]
        print(ok[[c for c in columns if c in table]].to_string(index=False))
    print(f"wrote {len(files)} files to {args.out}")
    if not len(ok):
        raise SglabError(f"every one of the {len(table)} grid points failed (see above and {args.out / 'sweep.csv'}); "
                         f"first: {failed['error'].iloc[0]}")
    return 0


def _methods(args: argparse.Namespace) -> list[str]:
    """``--methods``; with ``--frontier``, ``all`` is every locked schedule and every fully unlocked method,
    and a list must name at least one locked schedule and one method with synthetic gradients."""
    from sglab.methods import get_method
    from sglab.sim.sweep import locked_methods, unlocked_methods

    if not args.frontier:
        return method_list(args.methods, "--methods")
    if args.methods.strip() == "all":
        return locked_methods() + unlocked_methods()
    names = [get_method(m).name for m in method_list(args.methods, "--methods")]  # aliases as the registry names them
    if not set(names) & set(locked_methods()) or not any(get_method(m).synthetic_gradients for m in names):
        raise UsageError(f"--frontier compares locked schedules ({', '.join(locked_methods())}) with methods with "
                         f"synthetic gradients; --methods {args.methods!r} needs at least one of each")
    return names


#: Columns of the frontier table printed (all of them are in frontier.csv).
FRONTIER_COLUMNS = ["method", "hardware_spec", "stages", "replicas", "bandwidth_GB_per_s", "synth_cost_ratio",
                    "microbatches_per_step", "best_locked", "best_locked_stages", "best_locked_replicas",
                    "best_locked_microbatches",
                    "best_locked_speedup", "speedup", "ratio", "wins", "best_locked_MB", "MB"]


def _frontier(table, grid, profile, args: argparse.Namespace) -> list[Path]:
    """frontier.csv (and frontier-microbatches.csv for a microbatch axis of pipelines), their figures; prints both
    tables."""
    import warnings

    from analysis.frontier import frontier_table, measured_synth_ratios
    from analysis.frontier_figures import frontier_figures
    from sglab.io import atomic_write_text
    from sglab.methods import get_method

    files = []
    measured = measured_synth_ratios(profile, grid.stages)
    by_count = len(grid.microbatches) > 1 and any(get_method(m).pipelined for m in grid.methods)
    axes = {"frontier": False, **({"frontier-microbatches": True} if by_count else {})}
    for name, by_microbatches in axes.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            front = frontier_table(table, args.frontier_metric, by_microbatches=by_microbatches,
                                   must_fit=args.frontier_must_fit)
        for warning in caught:
            print(f"note: {warning.message}")
        files.append(atomic_write_text(args.out / f"{name}.csv", front.to_csv(index=False)))
        if not args.no_figures:
            files += frontier_figures(front, args.out, measured_ratio=measured)
        _print_frontier(name, front, args.frontier_metric)
    return files


def _print_frontier(name: str, front, metric: str) -> None:
    """The frontier table's main columns (memory in MB) and one summary line per machine, K and bandwidth."""
    from analysis.frontier import frontier_summary

    steady = metric == "steady"
    shown = front.assign(MB=front["peak_memory_bytes"] / 1e6, best_locked_MB=front["best_locked_peak_memory_bytes"] / 1e6)
    if steady:  # the speedups whose quotient the ratio is
        shown = shown.assign(speedup=shown["steady_speedup"], best_locked_speedup=shown["best_locked_steady_speedup"])
    varied = {"hardware_spec": shown["hardware_spec"].nunique() > 1,
              **dict.fromkeys(("replicas", "best_locked_replicas"),
                              bool(len(shown)) and (shown[["replicas", "best_locked_replicas"]] != 1).any().any())}
    columns = [c for c in FRONTIER_COLUMNS if c in shown and varied.get(c, True)]  # constant machine, 1 replica: not shown
    print(f"{name}: {'steady ' if steady else ''}throughput of each unlocked method over the best locked schedule "
          f"on at most as many devices (speedups over sequential backprop on one device)")
    print(shown[columns].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    for method in dict.fromkeys(front["method"]):
        print("\n".join(frontier_summary(front, method)))
