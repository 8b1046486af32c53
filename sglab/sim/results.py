"""What a simulation says: the op trace (:mod:`sglab.trace`'s schema) and the numbers read from it.

The trace is the same table a measured run writes (``source`` says ``simulated``), and the
makespan, per-device busy time and utilisation and the bubble come from the one
:func:`sglab.trace.summarize_trace` that reads both. What only a simulation knows is added
here: throughput and speedup against the baseline, memory (stashed activations and
synthesizer inputs from the task graph's buffers, plus ``param_copies`` of each stage's
parameters) and whether it fits, the staleness of updates and the lag of synthesizers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sglab import __version__
from sglab.io import atomic_write_json, atomic_write_text
from sglab.sim.graph import TaskGraph
from sglab.sim.spec import hardware_to_dict
from sglab.trace import make_trace, summarize_trace, write_chrome_trace


@dataclass
class SimResult:
    """The outcome of :func:`sglab.sim.simulate`.

    Attributes:
        trace: one row per op (:data:`sglab.trace.TRACE_COLUMNS`, ``source`` = ``simulated``).
        summary: flat dict of scalars (one CSV row): makespan, throughput, speedup, bubble ...
        devices: one row per device and link: busy time, utilisation, memory and whether it fits.
        stages: one row per stage: device, peak stashed microbatches, staleness.
        config: what was simulated (method, hardware spec, options) for provenance.
        graph: the task graph that was run (dependencies, for checks); not saved.
    """

    trace: pd.DataFrame
    summary: dict[str, Any]
    devices: pd.DataFrame
    stages: pd.DataFrame
    config: dict[str, Any]
    graph: TaskGraph | None = field(default=None, repr=False)

    def events(self) -> list[tuple[str, str, int, int]]:
        """``(device, action, start_ns, end_ns)`` in start order, actions written like ``1B0@2``."""
        t = self.trace.sort_values(["start_ns", "end_ns", "device"], kind="stable")
        names = t["stage"].astype(str) + t["op"].astype(str) + t["microbatch"].astype(str) + "@" + t["step"].astype(str)
        return list(zip(t["device"].astype(str), names, t["start_ns"].tolist(), t["end_ns"].tolist()))

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``trace.csv``, ``summary.json``, ``devices.csv``, ``stages.csv`` and ``trace.json`` (Chrome)."""
        out = Path(out_dir)
        name = f"{self.summary['method']} on {self.summary['hardware']} (simulated)"
        return {
            "trace": atomic_write_text(out / "trace.csv", self.trace.to_csv(index=False)),
            "summary": atomic_write_json(out / "summary.json", {"summary": self.summary, "config": self.config}),
            "devices": atomic_write_text(out / "devices.csv", self.devices.to_csv(index=False)),
            "stages": atomic_write_text(out / "stages.csv", self.stages.to_csv(index=False)),
            "chrome_trace": write_chrome_trace(out / "trace.json", self.trace, name, {"summary": self.summary}),
        }


def trace_frame(graph: TaskGraph, start: np.ndarray, end: np.ndarray) -> pd.DataFrame:
    """The trace of a finished run, in task order."""
    server = np.asarray(graph.server, dtype=np.int64)
    kinds = np.asarray([s.kind for s in graph.servers])
    return make_trace(stage=graph.stage, op=graph.op, step=graph.step, microbatch=graph.micro,
                      device=pd.Categorical.from_codes(server, categories=[s.name for s in graph.servers]),
                      start_ns=start, end_ns=end, kind=kinds[server] if len(server) else [], source="simulated")


def _peaks(keys: np.ndarray, t0: np.ndarray, t1: np.ndarray, amount: np.ndarray, size: int) -> np.ndarray:
    """Per key, the largest total ``amount`` held at once over intervals ``[t0, t1)``."""
    peaks = np.zeros(size, dtype=np.int64)
    times = np.concatenate([t0, t1])
    deltas = np.concatenate([amount, -amount])
    owners = np.concatenate([keys, keys])
    order = np.lexsort((deltas, times, owners))  # per owner, by time, releases before allocations
    for key in np.unique(keys):
        mine = order[owners[order] == key]
        peaks[key] = max(0, int(np.cumsum(deltas[mine]).max()))
    return peaks


def memory_tables(graph: TaskGraph, start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Peak buffered bytes per server, and peak stashed microbatches (activations) per stage."""
    num_servers, num_stages = len(graph.servers), len(graph.placement)
    if not graph.buffers:
        return np.zeros(num_servers, dtype=np.int64), np.zeros(num_stages, dtype=np.int64)
    device, stage, nbytes, alloc, free, kind = (np.asarray(c) for c in zip(*graph.buffers))
    t0, t1 = start[alloc.astype(np.int64)], end[free.astype(np.int64)]
    peak_bytes = _peaks(device.astype(np.int64), t0, t1, nbytes.astype(np.int64), num_servers)
    act = kind == "activation"
    ones = np.ones(int(act.sum()), dtype=np.int64)
    peak_stash = _peaks(stage[act].astype(np.int64), t0[act], t1[act], ones, num_stages)
    return peak_bytes, peak_stash


def staleness(trace: pd.DataFrame, seq: np.ndarray | None = None) -> tuple[dict[int, int], dict[int, int]]:
    """Per stage: the largest number of updates between a forward's weights and the update
    applying its gradient, and the largest synthesizer lag (targets of earlier steps not yet
    trained on when S runs).

    A stage's F, U, S and T share its device, so "before" is the device's execution order:
    ``seq`` gives each row's position in the order ops started (ties of zero-length ops
    included); without it, rows are ordered by start then end time.
    """
    if seq is None:
        seq = np.empty(len(trace), dtype=np.int64)
        seq[np.lexsort((trace["end_ns"].to_numpy(), trace["start_ns"].to_numpy()))] = np.arange(len(trace))
    frame = trace.assign(seq=seq)
    stale, lag = {}, {}
    for stage, rows in frame[frame["kind"] == "device"].groupby("stage", sort=True):
        ops = rows["op"].astype(str)
        ups = rows[ops == "U"].sort_values("seq")
        order = np.sort(ups["seq"].to_numpy())
        rank = pd.Series(np.arange(len(ups)), index=ups["step"].to_numpy())  # updates done before each U
        fwd = rows[(ops == "F") & rows["step"].isin(rank.index)]
        seen = np.searchsorted(order, fwd["seq"].to_numpy())
        stale[int(stage)] = int((rank.loc[fwd["step"].to_numpy()].to_numpy() - seen).max()) if len(fwd) else 0
        targets, synth = rows[ops == "T"], rows[ops == "S"]
        if len(synth) and len(targets):
            earlier = np.searchsorted(np.sort(targets["step"].to_numpy()), synth["step"].to_numpy(), side="left")
            trained = np.searchsorted(np.sort(targets["seq"].to_numpy()), synth["seq"].to_numpy())
            lag[int(stage)] = int(max(0, (earlier - trained).max()))
    return stale, lag


def summarise(graph: TaskGraph, engine, hw, options, method: dict[str, Any]) -> SimResult:
    """Trace, summary, device and stage tables of a finished run of ``method`` (name and probabilities)."""
    start, end = np.asarray(engine.start, dtype=np.int64), np.asarray(engine.end, dtype=np.int64)
    trace = trace_frame(graph, start, end)
    measured = summarize_trace(trace)
    makespan = measured.makespan_ns
    peak_bytes, peak_stash = memory_tables(graph, start, end)
    devices = _device_table(graph, hw, measured, peak_bytes, options.param_copies)
    stale, lag = staleness(trace, np.asarray(engine.seq))
    num_stages = len(graph.placement)
    stages = pd.DataFrame({
        "stage": range(num_stages),
        "device": [hw.devices[d].name for d in graph.placement],
        "peak_stash_microbatches": peak_stash,
        "max_staleness": [stale.get(i, 0) for i in range(num_stages)],
        "max_synthesizer_lag": [lag.get(i, 0) for i in range(num_stages)],
    })
    used = devices[devices["stages"] != ""]
    batch = graph.profile.measurement.batch_size
    samples = options.steps * options.microbatches * batch
    compute = measured.devices[measured.devices["kind"] == "device"]
    summary = {
        "method": method["name"], "hardware": hw.name, "num_stages": num_stages, "num_devices": len(used),
        "steps": options.steps, "microbatches": options.microbatches, "batch_size": batch, "samples": samples,
        "num_ops": len(graph), "seed": options.seed, "makespan_ns": makespan,
        "throughput_samples_per_s": samples * 1e9 / makespan if makespan else None,
        "steady_step_ns": measured.steady_step_ns,
        "busy_ns": int(compute["busy_ns"].sum()), "capacity_ns": len(compute) * makespan,
        "bubble_fraction": measured.bubble_fraction,
        "mean_utilisation": float(used["utilisation"].mean()) if len(used) else 0.0,
        "peak_memory_bytes": int(used["peak_memory_bytes"].max()) if len(used) else 0,
        "fits": bool(used["fits"].all()),
        "max_staleness": int(stages["max_staleness"].max()),
        "max_synthesizer_lag": int(stages["max_synthesizer_lag"].max()),
    }
    profiled = {"model": graph.profile.model, "measurement": asdict(graph.profile.measurement)}
    config = {"sglab_version": __version__, "method": method, "options": asdict(options),
              "hardware": hardware_to_dict(hw), "profile": profiled}
    return SimResult(trace=trace, summary=summary, devices=devices, stages=stages, config=config, graph=graph)


def add_speedup(summary: dict[str, Any], baseline: dict[str, Any]) -> None:
    """Add the baseline's makespan and the speedups over it to ``summary`` (None where a makespan is 0).

    The baseline ran the same samples one batch per step, so its steady step is scaled to ours.
    """
    ours, theirs = summary["makespan_ns"], baseline["makespan_ns"]
    summary["baseline"] = baseline["baseline"]
    summary["baseline_makespan_ns"] = theirs
    summary["speedup"] = theirs / ours if ours and theirs else None
    step, base_step = summary["steady_step_ns"], baseline["steady_step_ns"]
    if base_step is not None:
        base_step *= summary["microbatches"]
    summary["steady_speedup"] = base_step / step if base_step and step else None


def _device_table(graph: TaskGraph, hw, measured, peak_bytes: np.ndarray, param_copies: int) -> pd.DataFrame:
    """One row per server, in server order: what the trace summary measured, and memory."""
    busy = measured.devices.set_index("device")
    rows = []
    for index, server in enumerate(graph.servers):
        stages = [s for s, d in enumerate(graph.placement) if d == index] if server.kind == "device" else []
        resident = param_copies * sum(_parameter_bytes(graph, s) for s in stages)
        capacity = hw.devices[index].memory_bytes if server.kind == "device" else None
        peak = resident + int(peak_bytes[index])
        ran = server.name in busy.index
        rows.append({
            "device": server.name, "kind": server.kind, "stages": " ".join(map(str, stages)),
            "busy_ns": int(busy.at[server.name, "busy_ns"]) if ran else 0,
            "utilisation": float(busy.at[server.name, "utilisation"]) if ran else 0.0,
            "peak_activation_bytes": int(peak_bytes[index]), "resident_bytes": resident,
            "peak_memory_bytes": peak, "memory_bytes": capacity, "fits": capacity is None or peak <= capacity,
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
