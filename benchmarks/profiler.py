"""Benchmark the profiler: overhead of in-run timing, and repeatability of the micro-benchmark.

    python benchmarks/profiler.py --out docs/results/profiler-cpu            # CPU, 1 thread
    python benchmarks/profiler.py --device cuda --out docs/results/profiler-cuda

1. **Overhead** (goal <= 3 %): training steps of a DNI model run alternately without an observer
   and with an :class:`OpTimer`, step by step (ABAB, so drift hits both alike); the overhead is
   the median of the paired differences over the median untimed step. As a noise-free
   cross-check it also times the observer alone around empty ops and reports
   ``ops per step x cost per op / step time``.
2. **Repeatability** (goal <= 5 %): five independent micro-benchmark profiles (each a fresh
   model, warm-up and repeats); per ``(stage, op)`` the coefficient of variation (sample std /
   mean) of the five medians; reported as median and maximum over the ops. The same runs'
   raw timings also give the CV of a ``p10`` statistic, which preemptions disturb less.

Writes ``profiler.json`` (settings, provenance, load average, results), ``overhead.csv`` and
``repeatability.csv`` into ``--out``. CPU runs use one torch thread unless ``--threads`` says
otherwise: with two threads on a shared 2-core machine a descheduled worker stalls every
parallel kernel, which measures the machine's neighbours rather than the profiler.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from sglab.io import atomic_write_json, atomic_write_text, provenance
from sglab.ops import Action
from sglab.profiling.inrun import device_name
from sglab.profiling.microbench import profile_model
from sglab.profiling.timer import OpTimer
from sglab.training.config import ClassifyConfig

#: The models benchmarked: the paper's FCN-3 and a small CNN-3 (DNI, embedded MNIST).
MODELS = {
    "fcn3": dict(model="fcn", layers=3, batch_size=128),
    "cnn3": dict(model="cnn", layers=3, channels=16, batch_size=32),
}


def config_for(name: str, method: str, device: str) -> ClassifyConfig:
    """The ClassifyConfig of one benchmarked model."""
    return ClassifyConfig(method=method, device=device, **MODELS[name])


def overhead(config: ClassifyConfig, dataset, steps: int, warmup: int) -> dict:
    """Step time with and without the OpTimer, interleaved step by step."""
    from sglab.config import resolve_device
    from sglab.profiling.microbench import fixed_batch
    from sglab.training.build import build_chain

    device = resolve_device(config.device)
    runner = build_chain(config, dataset.input_shape, dataset.num_classes, device)
    x, y = fixed_batch(dataset, dataset.input_shape, dataset.num_classes, config.batch_size, device, config.seed)
    timer = OpTimer(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    plain, timed = [], []
    for step in range(warmup + steps):
        for observer, times in ((None, plain), (timer, timed)):
            sync()
            start = time.perf_counter_ns()
            runner.step(x, y, observer)
            sync()  # a step's cost includes finishing its kernels
            if step >= warmup:
                times.append(time.perf_counter_ns() - start)
    plain_ns, timed_ns = np.array(plain), np.array(timed)
    ops_per_step = sum(map(len, timer.durations().values())) // timer.num_steps
    per_op = observer_cost_ns(device)
    base = float(np.median(plain_ns))
    return {
        "step_ns_without": int(base),
        "step_ns_with": int(np.median(timed_ns)),
        "overhead_pct": 100 * float(np.median(timed_ns - plain_ns)) / base,
        "overhead_pct_of_medians": 100 * (float(np.median(timed_ns)) - base) / base,
        "ops_per_step": ops_per_step,
        "observer_ns_per_op": per_op,
        "observer_bound_pct": 100 * ops_per_step * per_op / base,
        "steps": steps,
    }


def observer_cost_ns(device: torch.device, n: int = 20000) -> float:
    """Cost of the OpTimer itself around an empty op, per op (events included on CUDA)."""
    timer = OpTimer(device)
    actions = [Action(i, op) for i in range(3) for op in ("F", "S", "B", "U", "T")]
    start = time.perf_counter_ns()
    for k in range(n):
        with timer.op(actions[k % len(actions)]):
            pass
    timer.durations()  # harvest (CUDA: one sync)
    return (time.perf_counter_ns() - start) / n


def repeatability(config: ClassifyConfig, dataset, profiles: int, repeats: int, warmup: int,
                  clock: str = "perf_counter") -> tuple[pd.DataFrame, dict]:
    """CV of each (stage, op) time over ``profiles`` independent micro-benchmarks.

    The profiles report medians (the default statistic); the same runs' raw step-op timings
    also give the CV a ``p10`` profile would have had, for comparison on noisy machines.
    """
    from sglab.profiling.inrun import summarize

    rows = []
    for k in range(profiles):
        timer = OpTimer(torch.device(config.device), clock=clock)
        profile = profile_model(config, dataset=dataset, repeats=repeats, warmup=warmup, timer=timer)
        for stage in profile.stages:
            rows += [{"profile": k, "statistic": "median", "stage": stage.index, "op": op, "ns": t}
                     for op, t in stage.times_ns.items()]
        rows += [{"profile": k, "statistic": "median", "stage": -1, "op": name, "ns": profile.totals[f"{name}_ns"]}
                 for name in ("forward", "step")]
        rows += [{"profile": k, "statistic": "p10", "stage": stage, "op": op, "ns": summarize(values, "p10")[0]}
                 for (stage, op), values in timer.durations().items()]
    table = pd.DataFrame(rows)
    cv = (table.groupby(["statistic", "stage", "op"])["ns"]
          .agg(mean="mean", std=lambda s: s.std(ddof=1), min="min", max="max").reset_index())
    cv["cv_pct"] = 100 * cv["std"] / cv["mean"]
    summary = {}
    for statistic, part in cv[cv["stage"] >= 0].groupby("statistic"):
        worst = part.loc[part["cv_pct"].idxmax()]
        summary[statistic] = {
            "median_cv_pct": float(part["cv_pct"].median()),
            "max_cv_pct": float(part["cv_pct"].max()),
            "worst_op": f"{worst['stage']}{worst['op']}",
            "share_of_ops_within_5pct": float((part["cv_pct"] <= 5).mean()),
            "ops": len(part),
        }
    step = cv[(cv["stage"] == -1) & (cv["op"] == "step")]
    summary["median"]["step_cv_pct"] = float(step["cv_pct"].iloc[0])
    return cv, summary


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/results/profiler-cpu"))
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--models", default="fcn3,cnn3")
    parser.add_argument("--method", default="dni")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=200, help="overhead: timed step pairs")
    parser.add_argument("--profiles", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=30, help="repeatability: repeats per profile")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--clocks", default="perf_counter,thread_time",
                        help="repeatability: CPU clocks to compare (thread_time needs --threads 1; CUDA uses events)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from sglab.config import resolve_device
    from sglab.data import load_dataset

    dataset = load_dataset("embedded")
    device = resolve_device(args.device)
    results, overhead_rows, cv_tables = {}, [], []
    load_before = os.getloadavg()  # other processes on a shared machine are the main noise source
    for name in args.models.split(","):
        config = config_for(name, args.method, args.device)
        started = time.perf_counter()
        over = overhead(config, dataset, args.steps, args.warmup)
        print(f"{name}: overhead {over['overhead_pct']:+.2f} % (median step {over['step_ns_without'] / 1e6:.2f} ms; "
              f"observer alone {over['observer_ns_per_op']:.0f} ns/op x {over['ops_per_step']} ops = "
              f"{over['observer_bound_pct']:.2f} %)", flush=True)
        clocks = ["cuda_event"] if device.type == "cuda" else args.clocks.split(",")
        cv_by_clock = {}
        for clock in clocks:
            cv, cv_summary = repeatability(config, dataset, args.profiles, args.repeats, args.warmup,
                                           "perf_counter" if clock == "cuda_event" else clock)
            cv_by_clock[clock] = cv_summary
            cv_tables.append(cv.assign(model=name, clock=clock))
            med, p10 = cv_summary["median"], cv_summary["p10"]
            print(f"  {clock}: CV of medians: median {med['median_cv_pct']:.2f} %, max {med['max_cv_pct']:.2f} % "
                  f"({med['worst_op']}), {100 * med['share_of_ops_within_5pct']:.0f} % of ops <= 5 %, "
                  f"whole step {med['step_cv_pct']:.2f} %; CV of p10: median {p10['median_cv_pct']:.2f} %, "
                  f"max {p10['max_cv_pct']:.2f} %", flush=True)
        results[name] = {"config": config.to_dict(), "overhead": over, "repeatability": cv_by_clock,
                         "wall_s": time.perf_counter() - started}
        overhead_rows.append({"model": name, **over})
    report = {
        "command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "device": str(device), "device_name": device_name(device), "threads": torch.get_num_threads(),
        "settings": vars(args) | {"out": str(args.out)}, "goals": {"overhead_pct": 3, "cv_pct": 5},
        "load_average_1_5_15min": {"before": load_before, "after": os.getloadavg()},
        "results": results, **provenance(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "profiler.json", report)
    atomic_write_text(args.out / "overhead.csv", pd.DataFrame(overhead_rows).to_csv(index=False))
    atomic_write_text(args.out / "repeatability.csv", pd.concat(cv_tables).to_csv(index=False))
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
