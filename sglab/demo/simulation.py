"""The simulator's part of ``sglab demo``: the profiled model on a hypothetical multi-device machine, and
where DNI beats the best locked schedule that machine could run (:func:`demo_frontier`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from sglab.costprofile import CostProfile
from sglab.io import atomic_write_json, atomic_write_text
from sglab.methods import method_names
from sglab.sim import Hardware, SimError, SimOptions, load_hardware, simulate, simulate_baseline
from sglab.trace import chrome_trace

#: Methods drawn in the demo's Gantt figure (under the baseline), when they could be simulated.
GANTT_METHODS = ("gpipe", "1f1b", "dni")
#: Steps of each method kept in the demo's Chrome trace (the whole run would be megabytes).
TRACE_STEPS = 5
#: The frontier's small grid: synthesizer costs (None: as measured) and link bandwidths (None: the preset's).
FRONTIER_SYNTH_COSTS = (0.0, 0.5, 1.0, None)
FRONTIER_BANDWIDTHS = (0.1, None)
#: Columns of the frontier table in the report.
FRONTIER_COLUMNS = ["stages", "bandwidth_GB_per_s", "synth_cost_ratio", "best_locked", "best_locked_stages",
                    "best_locked_steady_speedup", "steady_speedup", "ratio", "wins", "best_locked_MB", "MB"]


def demo_hardware(profile: CostProfile, preset: str | Hardware = "cluster-10gbe") -> Hardware:
    """``preset`` resized to one device per stage of ``profile``."""
    hw = preset if isinstance(preset, Hardware) else load_hardware(preset)
    return hw if hw.num_devices == profile.num_stages else hw.resized(profile.num_stages)


def demo_simulation(profile: CostProfile, out_dir: Path, hardware: str | Hardware = "cluster-10gbe",
                    steps: int = 20, synth_cost_ratio: float | None = None, seed: int = 0) -> dict[str, Any]:
    """Simulate ``profile`` with every method the simulator runs, one stage per device of ``hardware``.

    Speedups are over sequential backprop (``bprop`` with every stage on one device). Writes
    ``sim_summary.csv``, ``sim_gantt.png``/``.pdf`` (the baseline on top),
    ``sim_speedups.png``/``.pdf`` and ``sim_trace.json`` (Chrome trace of the first steps, one
    process per method) into ``out_dir``. A method whose ops the profile did not measure (S/T without
    ``synth_cost_ratio``) is skipped, and the returned dict says why. Returns the hardware,
    baseline, speedups per method, a compact summary table, skipped methods, figures and files.
    """
    from analysis.sim_figures import gantt, plot_speedups, save_figure

    out = Path(out_dir)
    hw = demo_hardware(profile, hardware)
    options = SimOptions(steps=steps, seed=seed, synth_cost_ratio=synth_cost_ratio)
    results, skipped = {}, {}
    for name in method_names("sim"):
        try:
            results[name] = simulate(profile, hw, name, options)
        except SimError as err:
            skipped[name] = str(err)
    table = pd.DataFrame([r.summary for r in results.values()])
    files = [atomic_write_text(out / "sim_summary.csv", table.to_csv(index=False))]
    events: list[dict] = []
    for pid, (name, result) in enumerate(results.items()):
        first = result.trace[result.trace["step"] < TRACE_STEPS]
        events += chrome_trace(first, process_name=f"{name} on {hw.name}", pid=pid)["traceEvents"]
    files.append(atomic_write_json(out / "sim_trace.json", {"traceEvents": events, "displayTimeUnit": "ns"}))
    baseline = simulate_baseline(profile, hw, options)
    figures = _figures(results, baseline, hw, out, gantt, plot_speedups, save_figure, table)
    columns = ["method", "speedup", "steady_speedup", "throughput_samples_per_s", "bubble_fraction",
               "peak_memory_bytes", "fits", "max_staleness"]
    return {
        "hardware": f"{hw.name} ({hw.description})",
        "num_devices": hw.num_devices,
        "steps": steps,
        "baseline": baseline.summary["baseline"],
        "speedups": {name: r.summary["speedup"] for name, r in results.items()},
        "steady_speedups": {name: r.summary["steady_speedup"] for name, r in results.items()},
        "summary": table[columns].to_dict(orient="records") if len(table) else [],
        "skipped": skipped,
        "figures": [str(f) for f in figures],
        "files": [str(f) for f in files + figures],
    }


def _figures(results, baseline, hw, out, gantt, plot_speedups, save_figure, table) -> list[Path]:
    import matplotlib.pyplot as plt

    shown = {"sequential backprop (the baseline)": baseline, **{m: results[m] for m in GANTT_METHODS if m in results}}
    fig, axes = plt.subplots(len(shown), 1, figsize=(12, 2.2 * len(shown) + 1.5), squeeze=False)
    for ax, (name, result) in zip(axes[:, 0], shown.items()):
        steps = 2 if result.summary["microbatches"] > 1 else 3
        gantt(result.trace, max_steps=steps, ax=ax, labels=False, title=f"{name}: first {steps} steps on {hw.name}")
    fig.tight_layout()
    files = save_figure(fig, out / "sim_gantt")
    if len(table):
        files += save_figure(plot_speedups(table, title=f"speedup on {hw.name} (simulated)"), out / "sim_speedups")
    return files


def demo_frontier(profile: CostProfile, out_dir: Path, hardware: str = "cluster-10gbe", steps: int = 20,
                  seed: int = 0) -> dict[str, Any]:
    """DNI against the best locked schedule (:mod:`analysis.frontier`) on ``hardware`` with one
    node per stage of ``profile``, over :data:`FRONTIER_SYNTH_COSTS` and :data:`FRONTIER_BANDWIDTHS`.

    Writes ``frontier.csv`` and ``frontier.png``/``.pdf`` (DNI) into ``out_dir``; returns the table's main
    columns (memory in MB), one summary line per bandwidth, the measured synthesizers' ``r``, the notes
    (warnings: rows that failed) and the files.
    """
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    from analysis.frontier import frontier_summary, frontier_table, measured_synth_ratios
    from analysis.frontier_figures import plot_frontier
    from analysis.style import save_figure
    from sglab.sim.sweep import SweepGrid, frontier_grids, locked_methods, run_sweep

    out = Path(out_dir)
    grid = SweepGrid(methods=(*locked_methods(), "dni"), hardware=(hardware,), bandwidths=FRONTIER_BANDWIDTHS,
                     synth_cost_ratios=FRONTIER_SYNTH_COSTS, steps=steps, seed=seed)
    with ThreadPoolExecutor(max_workers=1) as pool:  # a few dozen small points: no process pool to start
        sweep = run_sweep(profile, frontier_grids(grid), executor=pool, progress=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        front = frontier_table(sweep)
    files = [atomic_write_text(out / "frontier.csv", front.to_csv(index=False))]
    measured = measured_synth_ratios(profile, [None])
    if len(front):
        files += save_figure(plot_frontier(front, "dni", measured_ratio=measured), out / "frontier")
    shown = front.assign(MB=front["peak_memory_bytes"] / 1e6, best_locked_MB=front["best_locked_peak_memory_bytes"] / 1e6,
                         synth_cost_ratio=front["synth_cost_ratio"].map(lambda r: "measured" if pd.isna(r) else f"{r:g}"),
                         bandwidth_GB_per_s=front["bandwidth_GB_per_s"].map(lambda b: "preset" if pd.isna(b) else f"{b:g}"))
    return {
        "locked": locked_methods(),
        "measured_synth_cost": measured.get(profile.num_stages),
        "table": shown[FRONTIER_COLUMNS].to_dict(orient="records"),
        "summary": frontier_summary(front, "dni"),
        "notes": [str(w.message) for w in caught],
        "figures": [str(f) for f in files if f.suffix == ".png"],
        "files": [str(f) for f in files],
    }
