"""Are a stage's ops slower in GPipe's order? Stage 0 of sim_vs_real's FCN-2, one process, two orders.

    python benchmarks/pipeline_order.py --out docs/results/pipeline_order.json     # ~20 s

Stage 0 (Linear(784, 1024) + batch norm + ReLU) runs 4 microbatches of 256 per step, one torch
thread, :func:`sglab.allocator.steady_allocator` on, in two orders: one microbatch at a time
(F0 B0 F1 B1 ...) and GPipe's (F0 .. F3, then B0 .. B3, all four activations alive). Each repeat
times ``--steps`` steps per order and keeps the medians of F and of B (the first quarter of
steps left out); the orders alternate repeat by repeat. If keeping activations alive made ops
slower, the GPipe medians would be higher.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sglab.allocator import steady_allocator  # noqa: E402
from sglab.dist.probe_spec import cpu_model  # noqa: E402
from sglab.io import atomic_write_json, provenance  # noqa: E402

ORDERS = {"one_at_a_time": [(op, j) for j in range(4) for op in "FB"],
          "gpipe": [("F", j) for j in range(4)] + [("B", j) for j in range(4)]}


def medians(stage, xs, grads, order, steps: int) -> dict[str, float]:
    """Median F and B (ms) of ``steps`` steps of ``order``, the first quarter left out."""
    times: dict[str, list[float]] = {"F": [], "B": []}
    for _ in range(steps):
        outputs = {}
        for op, j in order:
            start = time.perf_counter_ns()
            if op == "F":
                outputs[j] = stage(xs[j])
            else:
                outputs.pop(j).backward(grads[j])
            times[op].append((time.perf_counter_ns() - start) / 1e6)
    skip = len(times["F"]) // 4
    return {op: statistics.median(values[skip:]) for op, values in times.items()}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/results/pipeline_order.json"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args(argv)
    steady_allocator()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    stage = torch.nn.Sequential(torch.nn.Linear(784, 1024), torch.nn.BatchNorm1d(1024), torch.nn.ReLU())
    xs, grads = [torch.randn(256, 784) for _ in range(4)], [torch.randn(256, 1024) for _ in range(4)]
    rows = []
    for repeat in range(args.repeats):
        names = list(ORDERS) if repeat % 2 == 0 else list(reversed(ORDERS))
        for name in names:
            rows.append({"repeat": repeat, "order": name, **medians(stage, xs, grads, ORDERS[name], args.steps)})
            print(f"repeat {repeat} {name:14s} F {rows[-1]['F']:.2f} ms  B {rows[-1]['B']:.2f} ms", flush=True)
    summary = {name: {op: statistics.median(r[op] for r in rows if r["order"] == name) for op in "FB"} for name in ORDERS}
    atomic_write_json(args.out, {"command": "python benchmarks/pipeline_order.py " + " ".join(argv or sys.argv[1:]),
                                 "settings": {"repeats": args.repeats, "steps": args.steps}, "cpu_model": cpu_model(),
                                 "rows": rows, "median_ms": summary, **provenance()})
    print("median over repeats:", summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
