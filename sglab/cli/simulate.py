"""``sglab simulate``: the simulator (:mod:`sglab.sim`) on the command line.

Bad options raise :class:`~sglab.errors.UsageError` (exit 2) before any work; a simulation that
cannot run on its input (a profile without an op the method needs, a scheduler that does not
answer, a sweep whose every point failed) raises :class:`~sglab.errors.SglabError` (exit 1).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd

from sglab.errors import UsageError
from sglab.methods import ALIASES, get_method, method_names


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``simulate`` subcommand."""
    sim = subparsers.add_parser("simulate", help="simulate training a profiled model on (hypothetical) hardware",
                                description="Simulate training with SimPy and print makespan, throughput, speedup "
                                            "against sequential backprop, utilisation, bubble, memory and staleness.")
    sim.add_argument("--profile", type=Path, help="CostProfile JSON (from sglab profile)")
    sim.add_argument("--hardware", default="cluster-10gbe",
                     help="preset name or JSON/YAML spec file (default: %(default)s)")
    sim.add_argument("--method", default="all",
                     help="method, comma-separated methods, or 'all' the simulator runs (default: %(default)s)")
    sim.add_argument("--list", action="store_true", help="list methods and hardware presets, then exit")
    sim.add_argument("--schedule", action="store_true",
                     help="print each rank's actions of a pipeline method, with sends and receives, then exit")
    add_common_options(sim)
    sim.add_argument("--bandwidth", type=float, help="override every link's bandwidth, GB/s per direction")
    sim.add_argument("--stages", type=int, help="merge the profile's layers into this many stages first")
    sim.add_argument("--override-synth", action="store_true",
                     help="apply --synth-cost-ratio even where S/T were measured")
    sim.add_argument("--update-prob", type=float,
                     help="per-stage update probability, for the methods that are not pipelines "
                          "(default: each method's own; stochastic 0.2)")
    sim.add_argument("--unlock-prob", type=float,
                     help="probability that a stage uses its synthetic gradient rather than wait for the true one, "
                          "for the methods with synthetic gradients (default: each method's own; mixed 0.5)")
    sim.add_argument("--max-ahead", type=int, default=2, help="steps a stage may run ahead of the next; 0: unbounded")
    sim.add_argument("--host-time", action="store_true",
                     help="add an in-run profile's measured host time per batch (the loop between ops) to stage 0's F")
    sim.add_argument("--replicas", type=int, default=1,
                     help="data-parallel replicas, each on its own devices, gradients all-reduced (default: 1)")
    sim.add_argument("--allreduce", choices=("ring", "tree"), default="ring",
                     help="all-reduce algorithm across replicas (default: %(default)s)")
    sim.add_argument("--bucket-mb", type=float, default=25.0,
                     help="gradient bucket size in MiB, as DDP's bucket_cap_mb (default: %(default)g)")
    sim.add_argument("--out", type=Path, help="also write trace.csv, summary.json, trace.json and gantt.png here")
    sim.add_argument("--json", action="store_true", help="print the summaries as JSON")
    sim.set_defaults(func=run_simulate)


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """The options ``simulate`` and ``sweep`` share."""
    parser.add_argument("--steps", type=int, default=20, help="training steps (default: %(default)s)")
    parser.add_argument("--microbatches", type=int, help="microbatches per step for gpipe/1f1b (default 4 × ranks)")
    parser.add_argument("--seed", type=int, default=0, help="seed of slowdowns and stochastic updates")
    parser.add_argument("--synth-cost-ratio", type=float,
                        help="synthesizer cost S = r·F, T = 2r·F where the profile lacks S/T/SI/TI")
    parser.add_argument("--reference-flops", type=float, help="FLOP/s of the profiled device (for specs giving flops)")


def check_positive(flag: str, value: float | None) -> None:
    """A :class:`UsageError` unless ``value`` (given for ``flag``) is absent or a finite number > 0."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise UsageError(f"{flag} must be a number > 0, got {value:g}")


def method_list(text: str, flag: str = "--method") -> list[str]:
    """The methods ``text`` names (``all``: every one the simulator runs), each checked against the registry."""
    if text.strip() == "all":
        return method_names("sim")
    names = [m.strip() for m in text.split(",") if m.strip()]
    if not names:
        raise UsageError(f"{flag} {text!r} names no method; give one or more of {', '.join(method_names('sim'))}, "
                         f"or all")
    for name in names:
        get_method(name, "sim")  # fail before any work on a typo
    return names


def _runnable(names: list[str], profile) -> list[str]:
    """``--method all``: the methods ``profile`` can drive; a note on stderr names each left out and why."""
    split = all("I" in s.times_ns and "W" in s.times_ns for s in profile.stages)
    kept = []
    for name in names:
        method = get_method(name, "sim")
        if method.split_backward and not split:
            why = "needs I and W (B = I + W), which this profile lacks (sglab profile times them unless --no-split)"
        elif profile.num_stages % method.stages_per_rank:
            why = f"holds {method.stages_per_rank} stages per rank, and {profile.num_stages} stages do not divide"
        else:
            kept.append(name)
            continue
        print(f"note: --method all leaves out {name}: it {why}", file=sys.stderr)
    return kept


def number_list(text: str, flag: str, kind=float, zero_ok: bool = False) -> tuple:
    """Comma-separated values (``none`` or ``-``: as given), each > 0 (or >= 0); ``""``: one ``None``."""
    if not text:
        return (None,)
    try:
        values = tuple(None if v.strip().lower() in ("none", "-") else kind(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"{flag}: cannot read {text!r} as comma-separated {kind.__name__}s") from None
    bad = [v for v in values if v is not None and not (math.isfinite(v) and (v > 0 or (zero_ok and v == 0)))]
    if bad:
        raise UsageError(f"{flag}: every value must be {'>=' if zero_ok else '>'} 0, got {bad[0]:g}")
    return values


def load_profile(path: Path | None):
    """The CostProfile at ``--profile`` (required)."""
    from sglab.costprofile import CostProfile

    if path is None:
        raise UsageError("--profile is required (a CostProfile JSON written by sglab profile)")
    return CostProfile.load(path)


def _regrouped(profile, stages: int | None):
    from sglab.partition import regroup

    if stages is None:
        return profile
    if not 1 <= stages <= profile.num_stages:
        raise UsageError(f"--stages must be 1..{profile.num_stages} (the profile's stages), got {stages}")
    return regroup(profile, stages)


def _overrides(names: list[str], args: argparse.Namespace) -> dict[str, dict]:
    """Per method, the probabilities the flags set where they apply; a flag that applies to none is an error."""
    methods = {name: get_method(name, "sim") for name in names}
    rules = (("update_prob", "--update-prob", lambda m: not m.pipelined, "are not pipelines"),
             ("unlock_prob", "--unlock-prob", lambda m: m.synthetic_gradients, "have synthetic gradients"))
    out: dict[str, dict] = {name: {} for name in names}
    for field, flag, applies, what in rules:
        value = getattr(args, field)
        if value is None:
            continue
        takers = [name for name, m in methods.items() if applies(m)]
        if not takers:
            raise UsageError(f"{flag} applies to the methods that {what}; none of {', '.join(names)} does")
        for name in takers:
            out[name][field] = value
    return out


def run_simulate(args: argparse.Namespace) -> int:
    """``sglab simulate``: print one summary row per method (and write files with --out)."""
    from sglab.sim import SimOptions, load_hardware, simulate

    if args.list:
        return _list()
    check_positive("--bandwidth", args.bandwidth)
    check_positive("--reference-flops", args.reference_flops)
    check_positive("--bucket-mb", args.bucket_mb)
    if args.replicas < 1:
        raise UsageError(f"--replicas must be >= 1, got {args.replicas}")
    if args.stages is not None and args.stages < 1:
        raise UsageError(f"--stages must be >= 1, got {args.stages}")
    if args.max_ahead < 0:
        raise UsageError(f"--max-ahead must be >= 0 (0: unbounded), got {args.max_ahead}")
    names = method_list(args.method)
    if args.schedule:
        return _print_schedule(args, names)
    profile = _regrouped(load_profile(args.profile), args.stages)
    hw = load_hardware(args.hardware, args.reference_flops)
    if args.bandwidth is not None:
        hw = hw.with_link(bandwidth_bytes_per_s=int(args.bandwidth * 1e9))
    options = SimOptions(steps=args.steps, microbatches=args.microbatches, seed=args.seed,
                         synth_cost_ratio=args.synth_cost_ratio, override_synth=args.override_synth,
                         max_ahead=args.max_ahead or None, host_time=args.host_time, replicas=args.replicas,
                         allreduce=args.allreduce, bucket_bytes=max(1, round(args.bucket_mb * 2**20)))
    if args.method.strip() == "all":
        names = _runnable(names, profile)
    overrides = _overrides(names, args)
    results = {name: simulate(profile, hw, name, replace(options, **overrides[name])) for name in names}
    table = pd.DataFrame([r.summary for r in results.values()])
    if args.json:
        print(json.dumps([r.summary for r in results.values()], indent=2, default=str))
    else:
        name, batch = profile.model.get("name", "model"), profile.measurement.batch_size
        replicas = (f", {args.replicas} data-parallel replicas ({args.allreduce} all-reduce, "
                    f"{args.bucket_mb:g} MiB buckets)") if args.replicas > 1 else ""
        print(f"{name} ({profile.num_stages} stages, batch {batch}{replicas}) on {hw.name}: {hw.description}; "
              f"speedup over {table['baseline'].iloc[0]}")
        print(format_summary(table))
        if len(results) == 1:
            print(next(iter(results.values())).devices.to_string(index=False))
    if args.out:
        _write(results, table, hw, args.out)
    return 0


def _list() -> int:
    from sglab.sim.presets import preset_table

    print("methods (sglab.methods, the ones the simulator runs):")
    for name in method_names("sim"):
        print(f"  {name:<11} {get_method(name).description}")
    print("  aliases: " + ", ".join(f"{a}={m}" for a, m in ALIASES.items() if m in method_names("sim")))
    print("hardware presets (hypothetical):")
    for row in preset_table():
        print(f"  {row['name']:<25} {row['description']}\n  {'':<25} sources: {row['sources']}")
    return 0


def _print_schedule(args: argparse.Namespace, names: list[str]) -> int:
    """Each rank's actions of one step, with the sends and receives torch's pipelining would add."""
    from sglab.sim import load_hardware
    from sglab.sim.errors import SimUsageError
    from sglab.sim.pipeline import rank_schedule, stage_placement

    method = get_method(names[0], "sim")
    if len(names) != 1 or not method.pipelined:
        pipelines = [n for n in method_names("sim") if get_method(n).pipelined]
        raise UsageError(f"--schedule needs one pipeline method ({', '.join(pipelines)}), not {args.method!r}")
    if args.profile is not None:
        num_stages = _regrouped(load_profile(args.profile), args.stages).num_stages
    elif args.stages is not None:
        num_stages = args.stages
    else:
        raise UsageError("--schedule needs the number of stages: give --profile or --stages")
    hw = load_hardware(args.hardware, args.reference_flops)
    try:
        placement = stage_placement(method, hw, num_stages)
    except SimUsageError as err:
        raise UsageError(str(err)) from None
    ranks = len(set(placement))
    m = method.default_microbatches(ranks) if args.microbatches is None else args.microbatches
    if m < 1:
        raise UsageError(f"--microbatches must be >= 1, got {m}")
    print(f"{method.name}: {num_stages} stages on {ranks} ranks of {hw.name}, {m} microbatches per step")
    for rank, (device, actions) in rank_schedule(method, placement, m).items():
        print(f"rank {rank} ({hw.devices[device].name}): {' '.join(map(str, actions))}")
    return 0


def format_summary(table: pd.DataFrame) -> str:
    """The summary columns a person reads first, in readable units; an undefined speedup shows as NaN."""
    number = lambda column: pd.to_numeric(table[column], errors="coerce").astype(float)  # noqa: E731  None -> NaN
    view = pd.DataFrame({
        "method": table["method"],
        "makespan_ms": (table["makespan_ns"] / 1e6).round(3),
        "samples/s": number("throughput_samples_per_s").round(1),
        "speedup": number("speedup").round(3),
        "steady_speedup": number("steady_speedup").round(3),
        "bubble": table["bubble_fraction"].round(3),
        "peak_mem_MB": (table["peak_memory_bytes"] / 1e6).round(1),
        "fits": table["fits"],
        "staleness": table["max_staleness"],
        "synth_lag": table["max_synthesizer_lag"],
        "replicas": table["replicas"] if "replicas" in table else 1,
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
