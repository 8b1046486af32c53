"""How fast the simulator is, against a bare SimPy Resource loop measured in the same run.

    python benchmarks/simulator.py --out docs/results/simulator_benchmark

1. **Rate vs SimPy**: simulated ops per second of the engine (``Engine.run``) on DNI task graphs,
   next to a bare loop of ``simpy.Resource`` request / timeout / release doing the same number
   of ops (goal: the engine at least 0.5× the bare loop).
2. **Scaling** from 1e3 to 1e6 ops (goal: a flat rate): graph building, engine and the whole
   ``simulate`` call (graph + engine + trace + summary) timed separately.
3. **16 stages × 1,000 steps of DNI**: the wall time of ``simulate`` with and without the
   baseline (sequential backprop, ``simulate_baseline``) it runs for the speedup.

Writes ``simulator_benchmark.json`` (provenance, settings, medians and every sample),
``rates.csv`` (one row per size) and ``rates.png`` into ``--out``. Times are medians of
``--repeats`` runs (1e6-op sizes: ``--big-repeats``). Each section is timed twice: CPU time of
this process (``time.process_time``; the rates use it, because a shared machine's other jobs
inflate wall time but not our CPU time, and the simulator is single-threaded) and wall time
(``time.perf_counter``, kept in the files as ``*_wall_s``).
"""

from __future__ import annotations

import argparse
import gc
import statistics
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


def median(samples: list[dict], key: str) -> float:
    """Median of ``key`` over samples."""
    return statistics.median(s[key] for s in samples)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write its files."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--sizes", default="1e3,1e4,1e5,1e6", help="target op counts")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--big-repeats", type=int, default=3, help="repeats for sizes >= 1e6")
    parser.add_argument("--long-steps", type=int, default=1000, help="steps of the 16-stage DNI run")
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
    atomic_write_json(args.out / "simulator_benchmark.json", {
        "provenance": provenance(), "settings": vars(args) | {"out": str(args.out)},
        "hardware": hw.name, "ops_per_step": ops_per_step, "rates": rows, "dni_16x1000": long, "samples": samples,
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
