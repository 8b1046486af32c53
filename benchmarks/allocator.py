"""Does an op's speed depend on the process it runs in? An Adam step in fresh processes, with and without sglab.allocator.

    python benchmarks/allocator.py --out docs/results/allocator.json      # ~1 min on 2 cores

Each of ``--processes`` fresh Python processes per setting builds a 784x1024 Linear layer's
parameters (what stage 0 of the FCN-2 of ``benchmarks/sim_vs_real.py`` updates), gives them new
random gradients every step (as a backward does: ``set_to_none`` gradients are new tensors) and
times ``--steps`` Adam steps with one torch thread; a process reports its median step. Settings:
``default`` (glibc's malloc as it is: ``SGLAB_MALLOC=default``) and ``steady``
(:func:`sglab.allocator.steady_allocator` first). The settings alternate process by process, so a
drift of the machine's speed reaches both. Writes the medians per process, their min/median/max
per setting, the machine and versions.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sglab.dist.probe_spec import cpu_model  # noqa: E402
from sglab.io import atomic_write_json, provenance  # noqa: E402

CHILD = """
import statistics, sys, time, torch
from sglab.allocator import steady_allocator
applied = steady_allocator()
torch.set_num_threads(1)
torch.manual_seed(0)
params = [torch.nn.Parameter(torch.randn(1024, 784)), torch.nn.Parameter(torch.randn(1024))]
optimizer = torch.optim.Adam(params, lr=1e-3)
times = []
for _ in range({steps}):
    for p in params:
        p.grad = torch.randn_like(p)
    start = time.perf_counter_ns()
    optimizer.step()
    times.append(time.perf_counter_ns() - start)
print(applied, statistics.median(times[{skip}:]))
"""


def one_process(setting: str, steps: int, skip: int) -> float:
    """The median Adam step (ns) of one fresh process under ``setting``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if setting == "default":
        env["SGLAB_MALLOC"] = "default"
    else:
        env.pop("SGLAB_MALLOC", None)
    out = subprocess.run([sys.executable, "-c", CHILD.format(steps=steps, skip=skip)], capture_output=True,
                         text=True, check=True, env=env).stdout.split()
    applied = out[0] == "True"
    if applied != (setting == "steady"):
        raise RuntimeError(f"setting {setting!r}: steady_allocator() returned {applied} (not glibc?)")
    return float(out[1])


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/results/allocator.json"))
    parser.add_argument("--processes", type=int, default=10, help="fresh processes per setting")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--skip", type=int, default=10, help="first steps left out of each median")
    args = parser.parse_args(argv)
    medians: dict[str, list[float]] = {"default": [], "steady": []}
    for i in range(args.processes):
        for setting in ("default", "steady") if i % 2 == 0 else ("steady", "default"):
            medians[setting].append(one_process(setting, args.steps, args.skip))
    summary = {s: {"min_ms": float(np.min(v)) / 1e6, "median_ms": float(np.median(v)) / 1e6,
                   "max_ms": float(np.max(v)) / 1e6} for s, v in medians.items()}
    atomic_write_json(args.out, {"command": "python " + " ".join(["benchmarks/allocator.py", *(argv or sys.argv[1:])]),
                                 "settings": vars(args) | {"out": str(args.out)}, "op": "Adam step, 784x1024 + 1024",
                                 "cpu_model": cpu_model(),
                                 "per_process_median_ns": medians, "summary": summary, **provenance()})
    for setting, row in summary.items():
        print(f"{setting:8s} Adam step, median per process: min {row['min_ms']:.2f} ms, median {row['median_ms']:.2f} ms, "
              f"max {row['max_ms']:.2f} ms over {args.processes} processes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
