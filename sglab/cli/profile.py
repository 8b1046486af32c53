"""``sglab profile``: measure (or import, or show) a CostProfile and print it as a table.

    sglab profile --model fcn --layers 3 --method dni --batch-size 128 --out fcn3-dni.json
    sglab profile --mode inrun --steps 200 --method dni --out dni-inrun.json --trace dni.trace.json
    sglab profile --from-graph vgg16/graph.txt --stages 4 --batch-size 64 --out vgg16-4.json
    sglab profile --show fcn3-dni.json
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import fields
from pathlib import Path

from sglab.cli import positive_int, read_config_file
from sglab.costprofile import CostProfile, ProfileError
from sglab.methods import method_names
from sglab.ops import COMPUTE_OPS
from sglab.training.config import ClassifyConfig, make_config

#: ClassifyConfig fields the command exposes as flags (flag name = field name with dashes).
_CONFIG_FLAGS = {
    "model": dict(choices=["fcn", "cnn"]),
    "layers": dict(type=int, help="number of layers (= stages)"),
    "width": dict(type=int, help="FCN hidden width"),
    "channels": dict(type=int, help="CNN channels"),
    "method": dict(help=f"training method: {', '.join(method_names('train'))} (default: dni)"),
    "synth_width": dict(type=int, help="synthesizer hidden width"),
    "synth_hidden_layers": dict(type=int),
    "batch_size": dict(type=int, help="minibatch (default 128)"),
    "steps": dict(type=int, help="--mode inrun: training steps (default 100)"),
    "dataset": dict(help="embedded (default, offline), mnist, cifar10 or a .npz path"),
    "data_dir": dict(),
    "limit_train": dict(type=int),
    "seed": dict(type=int),
    "device": dict(help="auto (default), cpu or cuda"),
}


def register(subparsers) -> None:
    """Add the ``profile`` subcommand."""
    parser = subparsers.add_parser(
        "profile",
        help="measure per-stage op costs (F B I W U S T SI TI) into a CostProfile JSON",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    model = parser.add_argument_group("model and method (ClassifyConfig fields)")
    for name, options in _CONFIG_FLAGS.items():
        model.add_argument("--" + name.replace("_", "-"), dest=name, default=None, **options)
    model.add_argument("--config", type=Path, help="JSON file of ClassifyConfig fields (flags override it)")
    how = parser.add_argument_group("measuring")
    how.add_argument("--mode", choices=["micro", "inrun"], default="micro",
                     help="micro: standalone micro-benchmark (default); inrun: time a real training run")
    how.add_argument("--repeats", type=positive_int, default=20, help="micro: timed repeats (default 20)")
    how.add_argument("--warmup", type=int, default=5, help="micro: untimed repeats; inrun: steps left out (default 5)")
    how.add_argument("--statistic", choices=["median", "min", "p10", "p25"], default="median",
                     help="what each time reports (default: median; spread is always the IQR)")
    how.add_argument("--clock", choices=["perf_counter", "thread_time"], default="perf_counter",
                     help="CPU clock: wall time (default) or this thread's CPU time (needs --threads 1)")
    how.add_argument("--no-split", action="store_true", help="do not time I and W (B = I + W) separately")
    how.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's choice)")
    how.add_argument("--run-dir", type=Path, default=None, help="inrun: run directory (default: a temporary one)")
    graph = parser.add_argument_group("import instead of measuring")
    graph.add_argument("--from-graph", type=Path, help="PipeDream/DAPPLE graph.txt to import")
    graph.add_argument("--stages", type=positive_int, help="stages to group the graph's layers into (balanced by F+B)")
    graph.add_argument("--boundaries", help="comma-separated positions or node ids where stages 1..K-1 start")
    graph.add_argument("--show", type=Path, help="validate and print an existing profile, nothing else")
    out = parser.add_argument_group("output")
    out.add_argument("--out", type=Path, help="write the profile JSON here")
    out.add_argument("--trace", type=Path, help="write the timed steps as Chrome-trace JSON (Perfetto)")
    out.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> ClassifyConfig:
    """ClassifyConfig from ``--config`` and the flags; profile defaults: dni, batch 128, 100 steps."""
    values = {"method": "dni", "batch_size": 128, "steps": 100}
    if args.config:
        values.update(read_config_file(args.config))
    known = {f.name for f in fields(ClassifyConfig)}
    values.update({k: getattr(args, k) for k in _CONFIG_FLAGS if k in known and getattr(args, k) is not None})
    return make_config("classify", values)


def run(args: argparse.Namespace) -> int:
    """Run ``sglab profile``."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    timer = None
    if args.show:
        profile = CostProfile.load(args.show)
    elif args.from_graph:
        from sglab.profiling.graphtxt import import_graph_txt

        boundaries = args.boundaries.split(",") if args.boundaries else None
        profile = import_graph_txt(args.from_graph, args.batch_size or 1, stages=args.stages, boundaries=boundaries)
        if args.batch_size is None:
            print("note: graph.txt does not record its batch size; recorded as 1 (pass --batch-size)")
    else:
        profile, timer = _measure(args, config_from_args(args))
    if args.out:
        profile.save(args.out)
    if args.trace:
        if timer is None:
            raise ProfileError("--trace needs a measurement (not --show or --from-graph)")
        from sglab.trace import write_chrome_trace

        write_chrome_trace(args.trace, timer.trace(), f"sglab profile on {profile.measurement.device_name}")
    print(format_profile(profile))
    for label, path in (("profile", args.out), ("trace", args.trace)):
        if path:
            print(f"{label}: {path}")
    return 0


def _measure(args: argparse.Namespace, config: ClassifyConfig):
    from sglab.data import load_dataset
    from sglab.profiling.timer import OpTimer

    data = load_dataset(config.dataset, config.data_dir, config.download, config.limit_train, config.limit_test)
    if args.mode == "inrun":
        from sglab.profiling.inrun import profile_training

        if args.run_dir:
            return profile_training(config, args.run_dir, dataset=data, skip_steps=args.warmup, progress=not args.no_progress,
                                    statistic=args.statistic, clock=args.clock,
                                    split_backward=not args.no_split)
        with tempfile.TemporaryDirectory(prefix="sglab-profile-") as tmp:
            return profile_training(config, tmp, dataset=data, skip_steps=args.warmup, progress=not args.no_progress,
                                    statistic=args.statistic, clock=args.clock,
                                    split_backward=not args.no_split)
    from sglab.config import resolve_device
    from sglab.profiling.microbench import profile_model

    device = resolve_device(config.device)
    timer = OpTimer(device, track_memory=device.type == "cuda", clock=args.clock)
    profile = profile_model(config, dataset=data, repeats=args.repeats, warmup=args.warmup,
                            split_backward=not args.no_split, timer=timer, statistic=args.statistic)
    return profile, timer


def format_profile(profile: CostProfile) -> str:
    """A plain-text table: one row per stage, each op as median µs (± IQR), then the sizes."""
    ops = [op for op in COMPUTE_OPS if any(op in s.times_ns for s in profile.stages)]
    header = ["stage", *[f"{op} µs" for op in ops], "act KiB", "param KiB"]
    rows = []
    for s in profile.stages:
        cells = [str(s.index)]
        for op in ops:
            if op not in s.times_ns:
                cells.append("-")
                continue
            spread = s.spread_ns.get(op)
            cells.append(f"{s.times_ns[op] / 1e3:.1f}" + (f" ±{spread / 1e3:.1f}" if spread else ""))
        cells += [f"{s.activation_bytes / 1024:.1f}", f"{s.parameter_bytes / 1024:.1f}"]
        rows.append(cells)
    widths = [max(len(r[k]) for r in [header, *rows]) for k in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in [header, *rows]]
    m = profile.measurement
    title = (f"{profile.model.get('name', '?')} / {profile.method}: {m.source} on {m.device_name} ({m.device}), "
             f"batch {m.batch_size}, {m.statistic} of {m.repeats} after {m.warmup} warm-up, spread {m.spread}")
    extra = []
    if "forward_ns" in profile.totals:
        t = profile.totals
        extra.append(f"whole forward {t['forward_ns'] / 1e3:.1f} µs vs sum of stage F "
                     f"{t.get('sum_stage_forward_ns', 0) / 1e3:.1f} µs; whole step {t.get('step_ns', 0) / 1e3:.1f} µs")
    if m.notes:
        extra.append(f"notes: {m.notes}")
    return "\n".join([title, *lines, *extra])
