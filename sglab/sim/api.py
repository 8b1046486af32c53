"""``simulate``: profile + hardware + method → :class:`SimResult`."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sglab import __version__
from sglab.profile.schema import CostProfile
from sglab.sim.costs import CostModel
from sglab.sim.engine import Engine
from sglab.sim.graph import TaskGraph
from sglab.sim.hardware import Hardware
from sglab.sim.results import SimResult, memory_tables, staleness, steady_step_ns, trace_frame
from sglab.sim.schedules import SimMethod, SimOptions, get_sim_method
from sglab.sim.spec import hardware_to_dict, load_hardware


def build_graph(profile: CostProfile, hardware: Hardware, method: SimMethod, options: SimOptions) -> TaskGraph:
    """The task graph of ``method`` on ``hardware``; ``options.microbatches`` must be resolved."""
    placement = hardware.placement_for(profile.num_stages)
    if method.one_device:
        placement = [placement[0]] * profile.num_stages
    costs = CostModel(options.synth_cost_ratio, options.override_synth)
    graph = TaskGraph(profile, hardware, placement, costs, method.name, method.policy)
    method.build(graph, options)
    return graph


def simulate(profile: CostProfile, hardware: Hardware | str | Path | dict, method: str | SimMethod,
             options: SimOptions | None = None, *, baseline: bool = True, **overrides: Any) -> SimResult:
    """Simulate ``options.steps`` training steps of ``method`` on ``hardware``.

    ``hardware`` may be a :class:`Hardware`, a preset name, a spec file or a spec mapping;
    keyword ``overrides`` replace fields of ``options`` (``steps=100``). With ``baseline``, the
    same samples are also simulated with sequential backprop on the device of stage 0, giving
    ``speedup`` and ``steady_speedup``.
    """
    options = replace(options or SimOptions(), **overrides)
    hw = hardware if isinstance(hardware, Hardware) else load_hardware(hardware)
    method = get_sim_method(method) if isinstance(method, str) else method
    ranks = len(set(hw.placement_for(profile.num_stages)))
    options = replace(options, microbatches=method.microbatches(options, ranks))
    graph = build_graph(profile, hw, method, options)
    engine = Engine(graph, graph.durations(options.seed)).run()
    result = summarise(graph, engine, hw, options)
    if baseline:
        _add_baseline(result, profile, hw, options)
    return result


def _add_baseline(result: SimResult, profile: CostProfile, hw: Hardware, options: SimOptions) -> None:
    summary = result.summary
    if summary["method"] == "sequential":
        base_makespan, base_step = summary["makespan_ns"], summary["steady_step_ns"]
    else:
        base_options = replace(options, steps=summary["steps"] * summary["microbatches"], microbatches=1)
        base = simulate(profile, hw, "sequential", base_options, baseline=False).summary
        base_makespan, base_step = base["makespan_ns"], base["steady_step_ns"]
        if base_step is not None:
            base_step *= summary["microbatches"]  # the baseline's step is one batch, ours m
    summary["baseline_makespan_ns"] = base_makespan
    summary["speedup"] = base_makespan / summary["makespan_ns"] if summary["makespan_ns"] else None
    ours = summary["steady_step_ns"]
    summary["steady_speedup"] = base_step / ours if base_step is not None and ours else None


def summarise(graph: TaskGraph, engine: Engine, hw: Hardware, options: SimOptions) -> SimResult:
    """Trace, summary, device and stage tables of a finished run."""
    start, end = np.asarray(engine.start, dtype=np.int64), np.asarray(engine.end, dtype=np.int64)
    trace = trace_frame(graph, start, end)
    makespan = int(end.max()) if len(end) else 0
    busy = np.zeros(len(graph.servers), dtype=np.int64)
    np.add.at(busy, np.asarray(graph.server, dtype=np.int64), end - start)
    peak_bytes, peak_stash = memory_tables(graph, start, end)
    devices = _device_table(graph, hw, busy, peak_bytes, makespan, options.param_copies)
    stale, lag = staleness(trace, np.asarray(engine.seq))
    stages = pd.DataFrame({
        "stage": range(len(graph.placement)),
        "device": [hw.devices[d].name for d in graph.placement],
        "peak_stash_microbatches": peak_stash,
        "max_staleness": [stale.get(i, 0) for i in range(len(graph.placement))],
        "max_synthesizer_lag": [lag.get(i, 0) for i in range(len(graph.placement))],
    })
    used = devices[devices["stages"] != ""]
    capacity = len(used) * makespan
    busy_total = int(used["busy_ns"].sum())
    batch = graph.profile.measurement.batch_size
    samples = options.steps * options.microbatches * batch
    summary = {
        "method": graph.method, "hardware": hw.name, "num_stages": len(graph.placement),
        "num_devices": len(used), "steps": options.steps, "microbatches": options.microbatches,
        "batch_size": batch, "samples": samples, "num_ops": len(graph), "seed": options.seed,
        "makespan_ns": makespan,
        "throughput_samples_per_s": samples * 1e9 / makespan if makespan else None,
        "steady_step_ns": steady_step_ns(trace),
        "busy_ns": busy_total, "capacity_ns": capacity,
        "bubble_fraction": 1 - busy_total / capacity if capacity else 0.0,
        "mean_utilisation": float(used["utilisation"].mean()) if len(used) else 0.0,
        "peak_memory_bytes": int(used["peak_memory_bytes"].max()) if len(used) else 0,
        "fits": bool(used["fits"].all()),
        "max_staleness": int(stages["max_staleness"].max()),
        "max_synthesizer_lag": int(stages["max_synthesizer_lag"].max()),
    }
    config = {"sglab_version": __version__, "method": graph.method, "options": asdict(options),
              "hardware": hardware_to_dict(hw), "profile": {"model": graph.profile.model,
                                                            "measurement": asdict(graph.profile.measurement)}}
    return SimResult(trace=trace, summary=summary, devices=devices, stages=stages, config=config, graph=graph)


def _device_table(graph: TaskGraph, hw: Hardware, busy: np.ndarray, peak_bytes: np.ndarray, makespan: int,
                  param_copies: int) -> pd.DataFrame:
    rows = []
    for index, server in enumerate(graph.servers):
        stages = [s for s, d in enumerate(graph.placement) if d == index] if server.kind == "device" else []
        resident = param_copies * sum(_parameter_bytes(graph, s) for s in stages)
        capacity = hw.devices[index].memory_bytes if server.kind == "device" else None
        peak = resident + int(peak_bytes[index])
        rows.append({
            "device": server.name, "kind": server.kind, "stages": " ".join(map(str, stages)),
            "busy_ns": int(busy[index]), "utilisation": busy[index] / makespan if makespan else 0.0,
            "peak_activation_bytes": int(peak_bytes[index]), "resident_bytes": resident,
            "peak_memory_bytes": peak, "memory_bytes": capacity,
            "fits": capacity is None or peak <= capacity,
        })
    return pd.DataFrame(rows)


def _parameter_bytes(graph: TaskGraph, stage: int) -> int:
    """The stage's parameters plus those of the synthesizers the method runs on it (if profiled)."""
    cost = graph.profile.stages[stage]
    ops = graph.stage_ops(stage)
    total = cost.parameter_bytes
    if "S" in ops:
        total += getattr(cost, "synthesizer_parameter_bytes", 0)
    if "SI" in ops:
        total += getattr(cost, "input_model_parameter_bytes", 0)
    return total
