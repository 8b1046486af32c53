"""What fidelity probes cost: the extra time of a probed step, and its share of a run at ``probe_every``.

    python benchmarks/probe_overhead.py --out docs/results/probe_overhead

For each method, one run of FCN-3 (width 256, batch 256, embedded digits, one thread) logs every
step's training time (``log_every=1``). Every ``probe_every``-th step is probed; its extra time is
its duration minus the median of the 6 unprobed steps around it (the same run, so drift and load
hit both alike). The overhead is the mean extra time over ``probe_every`` times the median step.
Runs with probes off attach no observer at all, so they cost nothing. Writes ``overhead.csv`` and
``probe_overhead.json`` (settings, provenance).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from sglab.io import atomic_write_json, atomic_write_text, provenance
from sglab.training import ClassifyConfig, train


def step_times(method: str, steps: int, probe_every: int) -> np.ndarray:
    """Each step's training time in seconds, from a run that logs every step."""
    config = ClassifyConfig(method=method, layers=3, steps=steps, batch_size=256, eval_every=steps, log_every=1,
                            probe_every=probe_every, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        rows = train(config, tmp, progress=False).metrics
    times = np.array([r["time_s"] for r in rows if r["kind"] == "train"])
    return np.diff(np.concatenate([[0.0], times]))


def overhead(method: str, steps: int, probe_every: int) -> dict:
    """Extra time per probed step and the overhead at ``probe_every`` (see the module docstring)."""
    durations = step_times(method, steps, probe_every)
    probed = np.arange(probe_every, steps + 1, probe_every) - 1  # 0-based index of probed steps
    extra = []
    for i in probed:
        around = [j for j in range(i - 3, i + 4) if 0 <= j < steps and j != i and (j + 1) % probe_every]
        extra.append(durations[i] - np.median(durations[around]))
    plain = np.median(np.delete(durations, probed))
    return {"method": method, "median_step_ms": 1e3 * plain, "extra_per_probe_ms": 1e3 * float(np.mean(extra)),
            "probes": len(probed), "overhead_pct": 100 * float(np.mean(extra)) / (probe_every * plain)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=["bprop", "dni", "cdni"])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--probe-every", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("docs/results/probe_overhead"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    table = pd.DataFrame([overhead(m, args.steps, args.probe_every) for m in args.methods])
    print(table.round(2).to_string(index=False))
    atomic_write_text(args.out / "overhead.csv", table.to_csv(index=False))
    atomic_write_json(args.out / "probe_overhead.json", {"settings": vars(args) | {"out": str(args.out)}, **provenance()})


if __name__ == "__main__":
    main()
