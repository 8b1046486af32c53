"""``sglab hardware probe``: measure this machine and write a hardware spec ``sglab simulate --hardware`` reads.

Bad options raise :class:`~sglab.errors.UsageError` (exit 2) before any process starts; a rank
that fails raises :class:`~sglab.dist.launch.RankFailed` (exit 1), naming the rank.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from sglab.errors import UsageError

_SUFFIX = {"": 1, "K": 1024, "KI": 1024, "M": 1024 ** 2, "MI": 1024 ** 2, "G": 1024 ** 3, "GI": 1024 ** 3}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``hardware`` subcommand and its ``probe`` action."""
    hw = subparsers.add_parser("hardware", help="measure this machine as a hardware spec for the simulator",
                               description="Measure the machine sglab runs on (link latency and bandwidth between "
                                           "processes, per-op overhead, slowdown when processes share the cores) and "
                                           "write a hardware spec that sglab simulate --hardware reads.")
    actions = hw.add_subparsers(dest="action", metavar="ACTION")
    probe = actions.add_parser("probe", help="run the probe with K local processes and write the spec",
                               description="Ping-pong tensors between two processes, time a tiny op, and run one "
                                           "matmul in 1..K processes at once; write the spec and <stem>.probe.json.")
    probe.add_argument("--processes", "-K", type=int, default=2, help="processes (devices of the spec), >= 2 "
                                                                     "(default: %(default)s)")
    probe.add_argument("--out", type=Path, default=Path("machine.yaml"),
                       help="spec file, .yaml/.yml or .json (default: %(default)s); the raw numbers go to "
                            "<stem>.probe.json next to it")
    probe.add_argument("--sizes", default="4,16,64,256,1K,4K,16K,64K,256K,1M,4M,16M",
                       help="message sizes in bytes, comma-separated; K, M, G are powers of 1024 (default: %(default)s)")
    probe.add_argument("--repeats", type=int, default=20, help="timed round trips per size (default: %(default)s)")
    probe.add_argument("--warmup", type=int, default=3, help="untimed round trips per size first (default: %(default)s)")
    probe.add_argument("--kernel", default="256x1024x1024",
                       help="the contention matmul m x k x n (default: %(default)s)")
    probe.add_argument("--kernel-repeats", type=int, default=10,
                       help="timed matmuls per process count and pass (default: %(default)s)")
    probe.add_argument("--overhead-calls", type=int, default=200,
                       help="tiny-op calls per overhead sample (default: %(default)s)")
    probe.add_argument("--no-op-overhead", action="store_true",
                       help="write op_overhead_ns 0 (the measured value stays in the .probe.json)")
    probe.add_argument("--backend", default="auto", help="auto (nccl with two GPUs or more, else gloo), gloo or nccl")
    probe.add_argument("--timeout", type=float, default=60.0, help="bound of every wait inside a rank, seconds")
    probe.add_argument("--name", help="the spec's name (default: <host>-<K>proc)")
    probe.add_argument("--json", action="store_true", help="print the raw report as JSON instead of the summary")
    probe.set_defaults(func=run_probe)
    hw.set_defaults(func=lambda args: _no_action(hw))


def _no_action(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def parse_sizes(text: str) -> tuple[int, ...]:
    """``"4,1K,16M"`` → ``(4, 1024, 16777216)``; a :class:`UsageError` naming ``--sizes`` otherwise."""
    sizes = []
    for item in (part.strip() for part in text.split(",")):
        digits = item.rstrip("KkMmGgIiBb")
        suffix = item[len(digits):].upper().removesuffix("B")
        try:
            value = int(digits) * _SUFFIX[suffix]
        except (ValueError, KeyError):
            raise UsageError(f"--sizes: cannot read {item!r} as a size in bytes (e.g. 4, 1K, 16M)") from None
        if value < 1:
            raise UsageError(f"--sizes: every size must be >= 1 byte, got {item!r}")
        sizes.append(value)
    return tuple(sizes)


def parse_kernel(text: str) -> tuple[int, int, int]:
    """``"256x1024x1024"`` → ``(256, 1024, 1024)``."""
    try:
        dims = tuple(int(d) for d in text.lower().split("x"))
    except ValueError:
        dims = ()
    if len(dims) != 3 or min(dims) < 1:
        raise UsageError(f"--kernel must be m x k x n, three integers >= 1 such as 256x1024x1024, got {text!r}")
    return dims  # type: ignore[return-value]


def run_probe(args: argparse.Namespace) -> int:
    """Run ``sglab hardware probe``."""
    from sglab.dist.hardware_probe import probe_hardware
    from sglab.dist.probe_spec import format_probe

    if args.processes < 2:
        raise UsageError(f"--processes must be >= 2 (a link needs two processes), got {args.processes}")
    if not (math.isfinite(args.timeout) and args.timeout > 0):
        raise UsageError(f"--timeout must be a number of seconds > 0, got {args.timeout:g}")
    if args.out.suffix.lower() not in (".yaml", ".yml", ".json"):
        raise UsageError(f"--out must end in .yaml, .yml or .json, got {str(args.out)!r}")
    result = probe_hardware(args.processes, sizes=parse_sizes(args.sizes), repeats=args.repeats, warmup=args.warmup,
                            kernel=parse_kernel(args.kernel), kernel_repeats=args.kernel_repeats,
                            overhead_calls=args.overhead_calls, backend=args.backend, timeout=args.timeout,
                            name=args.name, op_overhead=not args.no_op_overhead)
    spec_path, sidecar = result.save(args.out)
    if args.json:
        from sglab.io import strict_json

        print(json.dumps(strict_json(result.report), indent=2))
    else:
        print(format_probe(result))
        print(f"wrote {spec_path} and {sidecar}")
    return 0
