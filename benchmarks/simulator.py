"""How fast the simulator is, against a bare SimPy Resource loop measured in the same run.

    python benchmarks/simulator.py --out docs/results/simulator_benchmark

1. **Rate vs SimPy**: simulated ops per second of the engine (``Engine.run``) on DNI task graphs,
   next to a bare loop of ``simpy.Resource`` request / timeout / release doing the same number
   of ops (goal: the engine at least 1.5× the bare loop).
2. **Scaling** from 1e3 to 1e6 ops (goal: a flat rate): graph building, engine and the whole
   ``simulate`` call (graph + engine + trace + summary) timed separately.
3. **Whole ``simulate()`` up to 1e7 ops**, each size in a fresh process (``--whole-sizes``),
   without and with the baseline run (sequential backprop on the same samples): wall time, CPU
   time and the process's peak RSS (``VmHWM`` of the child, so that sizes do not inherit each
   other's or the parent's memory; goal at 1e7: under 60 s wall and 4 GB).
4. **16 stages × 1,000 steps of DNI**: the wall time of ``simulate`` with and without the
   baseline (sequential backprop, ``simulate_baseline``) it runs for the speedup.

Writes ``simulator_benchmark.json`` (provenance, settings, medians and every sample),
``rates.csv`` (one row per size), ``whole.csv`` (one row per size and baseline) and
``rates.png`` into ``--out``. Times of 1 and 2 are medians of ``--repeats`` runs (1e6-op sizes:
``--big-repeats``), timed twice: CPU time of this process (``time.process_time``; the rates use
it, because a shared machine's other jobs inflate wall time but not our CPU time, and the
simulator is single-threaded) and wall time (``time.perf_counter``, kept in the files as
``*_wall_s``). Section 3 runs each case ``--whole-repeats`` times and keeps the median.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import simpy

from sglab.costprofile import CostProfile, Measurement, StageCost
from sglab.io import atomic_write_json, atomic_write_text, provenance
from sglab.methods import get_method
from sglab.sim import SimOptions, build_graph, load_hardware, simulate
from sglab.sim.engine import Engine

STAGES = 16


def bench_profile(num_stages: int = STAGES) -> CostProfile:
    """A fixed synthetic profile (the costs only set simulated times, not the simulator's speed)."""
    times = {"F": 200_000, "B": 400_000, "U": 50_000, "S": 30_000, "T": 60_000}
    stages = [StageCost(index=i, name=f"fc{i}", times_ns=dict(times), activation_bytes=1 << 20,
                        gradient_bytes=1 << 20, parameter_bytes=4 << 20) for i in range(num_stages)]
    measurement = Measurement(source="benchmark fixture (synthetic)", device="none", device_name="none",
                              torch_version="n/a", dtype="float32", batch_size=256, repeats=0, warmup=0)
    return CostProfile(model={"name": "benchmark", "num_stages": num_stages}, method="dni",
                       measurement=measurement, stages=stages)


@contextmanager
def clock(into: dict, name: str):
    """Record the CPU seconds (``name``) and wall seconds (``name_wall``) of the block into ``into``."""
    cpu, wall = time.process_time(), time.perf_counter()
    yield
    into[name] = time.process_time() - cpu
    into[name.removesuffix("_s") + "_wall_s"] = time.perf_counter() - wall


def bare_resource_loop(num_ops: int) -> dict[str, float]:
    """CPU and wall seconds for one SimPy process to request, hold and release a Resource ``num_ops`` times."""
    env = simpy.Environment()
    resource = simpy.Resource(env, capacity=1)

    def worker():
        for _ in range(num_ops):
            with resource.request() as request:
                yield request
                yield env.timeout(10)

    env.process(worker())
    times: dict[str, float] = {}
    with clock(times, "bare_s"):
        env.run()
    return times


def timed_simulation(profile: CostProfile, hw, steps: int) -> dict[str, float]:
    """Seconds to build the DNI graph, run the engine and run the whole ``simulate`` call."""
    method = get_method("dni", "sim")
    options = SimOptions(steps=steps)
    times: dict[str, float] = {}
    with clock(times, "build_s"):
        graph = build_graph(profile, hw, method, options)
        durations = graph.durations(0)
    with clock(times, "engine_init_s"):
        engine = Engine(graph, durations)
    with clock(times, "engine_run_s"):
        engine.run()
    del engine, graph
    gc.collect()
    with clock(times, "simulate_s"):
        result = simulate(profile, hw, "dni", options, baseline=False)
    return {"ops": len(result.trace), **times}


def whole_simulate(size: int, baseline: bool) -> dict:
    """The whole ``simulate()`` of about ``size`` ops in a fresh process: its wall and CPU seconds and peak RSS."""
    command = [sys.executable, str(Path(__file__).resolve()), "child", str(size), str(int(baseline))]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _peak_rss_mb() -> float:
    """This process's peak resident memory in MB: ``VmHWM`` where Linux gives it (``ru_maxrss``
    would include the parent's peak, which a child keeps across fork and exec), else ``ru_maxrss``."""
    try:
        status = Path("/proc/self/status").read_text()
        return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB elsewhere
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale / 1024


def _child(size: int, baseline: bool) -> int:
    """Body of :func:`whole_simulate`'s process: one ``simulate`` call; prints one JSON line."""
    profile = bench_profile()
    hw = load_hardware("cluster-ib-hdr").resized(STAGES)
    steps = max(1, round(size / len(build_graph(profile, hw, get_method("dni", "sim"), SimOptions(steps=1)))))
    gc.collect()
    before = _peak_rss_mb()
    times: dict[str, float] = {}
    with clock(times, "simulate_s"):
        result = simulate(profile, hw, "dni", steps=steps, baseline=baseline)
    peak = _peak_rss_mb()
    ops = len(result.trace)
    print(json.dumps({"target_ops": size, "ops": ops, "steps": steps, "baseline": baseline,
                      "wall_s": times["simulate_wall_s"], "cpu_s": times["simulate_s"],
                      "ops_per_wall_s": ops / times["simulate_wall_s"], "peak_rss_mb": peak,
                      "rss_before_mb": before}))
    return 0


def median(samples: list[dict], key: str) -> float:
    """Median of ``key`` over samples."""
    return statistics.median(s[key] for s in samples)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write its files."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["child"]:
        return _child(int(float(argv[1])), argv[2] == "1")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--sizes", default="1e3,1e4,1e5,1e6", help="target op counts")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--big-repeats", type=int, default=3, help="repeats for sizes >= 1e6")
    parser.add_argument("--long-steps", type=int, default=1000, help="steps of the 16-stage DNI run")
    parser.add_argument("--whole-sizes", default="1e3,1e4,1e5,1e6,1e7", help="target op counts of section 3")
    parser.add_argument("--whole-repeats", type=int, default=1, help="fresh processes per size and baseline")
    args = parser.parse_args(argv)

    profile = bench_profile()
    hw = load_hardware("cluster-ib-hdr").resized(STAGES)
    ops_per_step = timed_simulation(profile, hw, 1)["ops"]
    rows, samples = [], {}
    for size in (int(float(s)) for s in args.sizes.split(",")):
        steps = max(1, round(size / ops_per_step))
        repeats = args.big_repeats if size >= 1_000_000 else args.repeats
        runs = []
        for _ in range(repeats):
            run = timed_simulation(profile, hw, steps)
            run.update(bare_resource_loop(run["ops"]))
            runs.append(run)
            gc.collect()
        ops = runs[0]["ops"]
        row = {"target_ops": size, "ops": ops, "steps": steps, "repeats": repeats,
               **{f"median_{k}{w}": median(runs, f"{k}{w}")
                  for k in ("build", "engine_init", "engine_run", "simulate", "bare") for w in ("_s", "_wall_s")}}
        row["engine_ops_per_s"] = ops / row["median_engine_run_s"]
        row["bare_simpy_ops_per_s"] = ops / row["median_bare_s"]
        row["engine_vs_bare"] = row["engine_ops_per_s"] / row["bare_simpy_ops_per_s"]
        row["simulate_ops_per_s"] = ops / row["median_simulate_s"]
        rows.append(row)
        samples[str(size)] = runs
        print(f"{ops:>9} ops: engine {row['engine_ops_per_s']:,.0f} ops/s, "
              f"bare SimPy {row['bare_simpy_ops_per_s']:,.0f} ops/s ({row['engine_vs_bare']:.2f}x), "
              f"whole simulate {row['simulate_ops_per_s']:,.0f} ops/s", flush=True)

    whole, whole_samples = [], {}
    for size in (int(float(s)) for s in args.whole_sizes.split(",")):
        for baseline in (False, True):
            runs = [whole_simulate(size, baseline) for _ in range(args.whole_repeats)]
            row = {**runs[0], **{k: median(runs, k) for k in ("wall_s", "cpu_s", "peak_rss_mb", "rss_before_mb")}}
            row["ops_per_wall_s"] = row["ops"] / row["wall_s"]
            whole.append(row)
            whole_samples[f"{size}{'+baseline' if baseline else ''}"] = runs
            print(f"{row['ops']:>9} ops, whole simulate(baseline={baseline}) in a fresh process: {row['wall_s']:.2f} s "
                  f"wall ({row['cpu_s']:.2f} s CPU), {row['ops_per_wall_s']:,.0f} ops/s, peak RSS "
                  f"{row['peak_rss_mb']:,.0f} MB", flush=True)

    long_runs = []
    for _ in range(args.repeats):
        run: dict[str, float] = {}
        with clock(run, "simulate_s"):
            result = simulate(profile, hw, "dni", steps=args.long_steps, baseline=False)
        with clock(run, "with_baseline_s"):
            simulate(profile, hw, "dni", steps=args.long_steps)
        long_runs.append({"ops": len(result.trace), **run})
    long = {"stages": STAGES, "steps": args.long_steps, "ops": long_runs[0]["ops"], "samples": long_runs,
            **{f"median_{k}": median(long_runs, k) for k in long_runs[0] if k != "ops"}}
    print(f"16 stages x {args.long_steps} steps of DNI ({long['ops']} ops): {long['median_simulate_s']:.2f} s CPU "
          f"({long['median_simulate_wall_s']:.2f} s wall), {long['median_with_baseline_s']:.2f} s CPU with the "
          f"baseline")

    table = pd.DataFrame(rows)
    atomic_write_text(args.out / "rates.csv", table.to_csv(index=False))
    atomic_write_text(args.out / "whole.csv", pd.DataFrame(whole).to_csv(index=False))
    atomic_write_json(args.out / "simulator_benchmark.json", {
        "provenance": provenance(), "settings": vars(args) | {"out": str(args.out)},
        "hardware": hw.name, "ops_per_step": ops_per_step, "rates": rows, "whole_simulate": whole,
        "whole_samples": whole_samples, "dni_16x1000": long, "samples": samples,
    })
    _figure(table, args.out / "rates")
    return 0


def _figure(table: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from analysis.sim_figures import save_figure

    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(table["ops"], table["engine_ops_per_s"], "o-", label="sglab engine (Engine.run)")
    ax.plot(table["ops"], table["simulate_ops_per_s"], "s-", label="whole simulate() (graph, engine, trace, summary)")
    ax.plot(table["ops"], table["bare_simpy_ops_per_s"], "^--", label="bare simpy.Resource loop")
    ax.set_xscale("log")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("simulated ops")
    ax.set_ylabel("ops per CPU second")
    ax.legend(fontsize=8)
    ax.set_title("simulator speed (median)")
    save_figure(fig, path)


if __name__ == "__main__":
    raise SystemExit(main())
