"""``sglab simulate`` and ``sglab sweep``."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import pandas as pd

from sglab.sim.errors import SimError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``simulate`` and ``sweep`` subcommands."""
    sim = subparsers.add_parser("simulate", help="simulate training a profiled model on (hypothetical) hardware",
                                description="Simulate training with SimPy and print makespan, throughput, speedup "
                                            "against sequential backprop, utilisation, bubble, memory and staleness.")
    sim.add_argument("--profile", type=Path, help="CostProfile JSON (from sglab profile)")
    sim.add_argument("--hardware", default="cluster-10gbe",
                     help="preset name or JSON/YAML spec file (default: %(default)s)")
    sim.add_argument("--method", default="all", help="method, comma-separated methods, or 'all' (default: %(default)s)")
    sim.add_argument("--list", action="store_true", help="list methods and hardware presets, then exit")
    _common(sim)
    sim.add_argument("--bandwidth", type=float, help="override every link's bandwidth, GB/s per direction")
    sim.add_argument("--stages", type=int, help="merge the profile's layers into this many stages first")
    sim.add_argument("--override-synth", action="store_true",
                     help="apply --synth-cost-ratio even where S/T were measured")
    sim.add_argument("--update-prob", type=float, help="per-stage update probability of 'stochastic' (default 0.2)")
    sim.add_argument("--unlock-prob", type=float, default=0.5,
                     help="'mixed': probability a stage uses its synthetic gradient rather than wait (default 0.5)")
    sim.add_argument("--max-ahead", type=int, default=2, help="steps a stage may run ahead of the next; 0: unbounded")
    sim.add_argument("--out", type=Path, help="also write trace.csv, summary.json, trace.json and gantt.png here")
    sim.add_argument("--json", action="store_true", help="print the summaries as JSON")
    sim.set_defaults(func=run_simulate)

    sweep = subparsers.add_parser("sweep", help="simulate a grid of methods × hardware × stages × bandwidth ...",
                                  description="Run a grid of simulations on a process pool (or a dask.distributed "
                                              "cluster) and write sweep.csv and speedup figures.")
    sweep.add_argument("--profile", type=Path, required=True, help="CostProfile JSON")
    sweep.add_argument("--hardware", default="cluster-10gbe", help="comma-separated presets or spec files")
    sweep.add_argument("--methods", default="all", help="comma-separated methods or 'all'")
    _common(sweep)
    sweep.add_argument("--stages", default="", help="comma-separated stage counts K (layers merged, K devices)")
    sweep.add_argument("--bandwidth", default="", help="comma-separated link bandwidths, GB/s per direction")
    sweep.add_argument("--synth-cost-ratios", default="",
                       help="comma-separated synthesizer costs S/F (override measured)")
    sweep.add_argument("--microbatches-grid", default="", help="comma-separated microbatch counts for gpipe/1f1b")
    sweep.add_argument("--workers", type=int, help="process-pool size (default: CPU count)")
    sweep.add_argument("--scheduler-address", help="dask.distributed scheduler, e.g. tcp://10.0.0.1:8786")
    sweep.add_argument("--out", type=Path, required=True, help="output directory")
    sweep.add_argument("--no-figures", action="store_true", help="write the CSV only")
    sweep.add_argument("--no-progress", action="store_true", help="no progress bar")
    sweep.set_defaults(func=run_sweep_command)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=20, help="training steps (default: %(default)s)")
    parser.add_argument("--microbatches", type=int, help="microbatches per step for gpipe/1f1b (default 4 × ranks)")
    parser.add_argument("--seed", type=int, default=0, help="seed of slowdowns and stochastic updates")
    parser.add_argument("--synth-cost-ratio", type=float,
                        help="synthesizer cost S = r·F, T = 2r·F where the profile lacks S/T/SI/TI")
    parser.add_argument("--reference-flops", type=float, help="FLOP/s of the profiled device (for specs giving flops)")


def _methods(text: str) -> list[str]:
    from sglab.sim.schedules import SIM_METHODS, get_sim_method

    names = list(SIM_METHODS) if text == "all" else [m.strip() for m in text.split(",") if m.strip()]
    for name in names:
        get_sim_method(name)  # fail before any work on a typo
    return names


def _floats(text: str, kind=float) -> tuple:
    try:
        if not text:
            return (None,)
        return tuple(None if v.strip().lower() in ("none", "-") else kind(v) for v in text.split(","))
    except ValueError:
        raise SimError(f"cannot read {text!r} as comma-separated numbers") from None


def _load_profile(path: Path | None):
    from sglab.profile.schema import CostProfile

    if path is None:
        raise SimError("--profile is required (a CostProfile JSON written by sglab profile)")
    return CostProfile.load(path)


def run_simulate(args: argparse.Namespace) -> int:
    """``sglab simulate``: print one summary row per method (and write files with --out)."""
    from sglab.sim import costs, load_hardware, simulate
    from sglab.sim.presets import preset_table
    from sglab.sim.schedules import SIM_METHODS, SimOptions

    if args.list:
        print("methods:")
        for m in SIM_METHODS.values():
            print(f"  {m.name:<11} {m.description}")
        print("hardware presets (hypothetical):")
        for row in preset_table():
            print(f"  {row['name']:<25} {row['description']}\n  {'':<25} sources: {row['sources']}")
        return 0
    profile = _load_profile(args.profile)
    if args.stages:
        profile = costs.regroup(profile, args.stages)
    hw = load_hardware(args.hardware, args.reference_flops)
    if args.bandwidth is not None:
        hw = hw.with_link(bandwidth_bytes_per_s=int(args.bandwidth * 1e9))
    options = SimOptions(steps=args.steps, microbatches=args.microbatches, seed=args.seed,
                         synth_cost_ratio=args.synth_cost_ratio, override_synth=args.override_synth,
                         update_prob=args.update_prob, unlock_prob=args.unlock_prob, max_ahead=args.max_ahead or None)
    results = {name: simulate(profile, hw, name, options) for name in _methods(args.method)}
    table = pd.DataFrame([r.summary for r in results.values()])
    if args.json:
        print(json.dumps([r.summary for r in results.values()], indent=2, default=str))
    else:
        name, batch = profile.model.get("name", "model"), profile.measurement.batch_size
        print(f"{name} ({profile.num_stages} stages, batch {batch}) on {hw.name}: {hw.description}")
        print(format_summary(table))
        if len(results) == 1:
            print(next(iter(results.values())).devices.to_string(index=False))
    if args.out:
        _write(results, table, hw, args.out)
    return 0


def format_summary(table: pd.DataFrame) -> str:
    """The summary columns a person reads first, in readable units."""
    view = pd.DataFrame({
        "method": table["method"],
        "makespan_ms": (table["makespan_ns"] / 1e6).round(3),
        "samples/s": table["throughput_samples_per_s"].round(1),
        "speedup": table["speedup"].round(3),
        "steady_speedup": table["steady_speedup"].astype(float).round(3),
        "bubble": table["bubble_fraction"].round(3),
        "peak_mem_MB": (table["peak_memory_bytes"] / 1e6).round(1),
        "fits": table["fits"],
        "staleness": table["max_staleness"],
        "synth_lag": table["max_synthesizer_lag"],
    })
    return view.to_string(index=False)


def _write(results, table, hw, out: Path) -> None:
    from analysis.sim_figures import gantt, save_figure
    from sglab.io import atomic_write_json, atomic_write_text, provenance

    atomic_write_text(out / "summary.csv", table.to_csv(index=False))
    atomic_write_json(out / "provenance.json", provenance())
    for name, result in results.items():
        result.save(out / name)
        save_figure(gantt(result.trace, max_steps=3, title=f"{name} on {hw.name}"), out / name / "gantt")
    print(f"wrote {out}")


def run_sweep_command(args: argparse.Namespace) -> int:
    """``sglab sweep``: run the grid, write CSV and figures, print the speedup table."""
    from sglab.sim.sweep import SweepGrid, run_sweep, write_sweep

    profile = _load_profile(args.profile)
    grid = SweepGrid(methods=tuple(_methods(args.methods)), hardware=tuple(h.strip() for h in args.hardware.split(",")),
                     stages=_floats(args.stages, int), bandwidths=_floats(args.bandwidth),
                     synth_cost_ratios=_floats(args.synth_cost_ratios),
                     microbatches=_floats(args.microbatches_grid, int),
                     steps=args.steps, seed=args.seed, reference_flops=args.reference_flops)
    if args.microbatches and grid.microbatches == (None,):
        grid = replace(grid, microbatches=(args.microbatches,))
    if args.synth_cost_ratio is not None and grid.synth_cost_ratios == (None,):
        grid = replace(grid, synth_cost_ratios=(args.synth_cost_ratio,), override_synth=False)
    table = run_sweep(profile, grid, workers=args.workers, scheduler_address=args.scheduler_address,
                      progress=not args.no_progress)
    files = write_sweep(table, grid, args.out, figures=not args.no_figures)
    failed = table[table["error"] != ""]
    columns = ["method", "hardware_spec", "num_stages", "bandwidth_GB_per_s", "synth_cost_ratio", "speedup"]
    print(table[table["error"] == ""][[c for c in columns if c in table]].to_string(index=False))
    for row in failed.itertuples():
        print(f"failed: {row.method} on {row.hardware_spec}: {row.error}")
    print(f"wrote {len(files)} files to {args.out}")
    return 0
