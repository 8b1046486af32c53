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
from sglab.trace import KINDS, make_trace, summarize_trace, write_chrome_trace


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
    """The trace of a finished run, in task order (ops as a categorical of the names that ran, sorted)."""
    server, codes = graph.column("server"), graph.column("op_code")
    names = np.asarray(graph.op_names, dtype=object)
    present = np.flatnonzero(np.bincount(codes, minlength=len(names)))
    ordered = present[np.argsort(names[present], kind="stable")] if len(present) else present
    recode = np.full(max(len(names), 1), -1, dtype=np.int16)
    recode[ordered] = np.arange(len(ordered))
    op = pd.Categorical.from_codes(recode[codes], categories=[str(n) for n in names[ordered]])
    kinds = np.asarray([KINDS.index(s.kind) for s in graph.servers], dtype=np.int8)
    device = pd.Categorical.from_codes(server, categories=[s.name for s in graph.servers])
    kind = pd.Categorical.from_codes(kinds[server] if len(server) else np.empty(0, np.int8), categories=list(KINDS))
    return make_trace(stage=graph.column("stage"), op=op, step=graph.column("step"), microbatch=graph.column("micro"),
                      device=device, start_ns=start, end_ns=end, kind=kind, source="simulated")


def _peaks(keys: np.ndarray, t0: np.ndarray, t1: np.ndarray, amount: np.ndarray, size: int) -> np.ndarray:
    """Per key, the largest total ``amount`` held at once over intervals ``[t0, t1)``."""
    peaks = np.zeros(size, dtype=np.int64)
    if not len(keys):
        return peaks
    deltas = np.concatenate([amount, -amount])
    owners = np.concatenate([keys, keys])
    order = np.lexsort((deltas, np.concatenate([t0, t1]), owners))  # per owner, by time, releases first
    owners, held = owners[order], np.cumsum(deltas[order])
    first = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
    before = np.where(first > 0, held[first - 1], 0)  # what earlier owners left in the running sum
    peaks[owners[first]] = np.maximum(0, np.maximum.reduceat(held, first) - before)
    return peaks


def memory_tables(graph: TaskGraph, start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Peak buffered bytes per server, and peak stashed microbatches (activations) per stage."""
    num_servers, num_stages = len(graph.servers), len(graph.placement)
    alloc, free = graph.column("buffer_alloc"), graph.column("buffer_free")
    t0, t1, nbytes = start[alloc], end[free], graph.column("buffer_bytes")
    peak_bytes = _peaks(graph.column("server")[alloc].astype(np.int64), t0, t1, nbytes, num_servers)
    kinds = graph.buffer_kinds
    act = graph.column("buffer_kind") == (kinds.index("activation") if "activation" in kinds else -1)
    stage = graph.column("stage")[alloc[act]].astype(np.int64)
    peak_stash = _peaks(stage, t0[act], t1[act], np.ones(len(stage), dtype=np.int64), num_stages)
    return peak_bytes, peak_stash


#: The ops :func:`staleness` reads, and their codes in its table.
_STALENESS_OPS = {"U": 0, "F": 1, "S": 2, "T": 3}


def _by_op(frame: pd.DataFrame, op: str, column: str) -> np.ndarray:
    return frame.loc[frame["op"] == _STALENESS_OPS[op], column].to_numpy()


def _staleness_rows(trace: pd.DataFrame, seq: np.ndarray) -> pd.DataFrame:
    """The device rows of U, F, S and T: stage, op code (:data:`_STALENESS_OPS`), step, seq."""
    ops = trace["op"].array if isinstance(trace["op"].dtype, pd.CategoricalDtype) else pd.Categorical(trace["op"])
    recode = np.array([_STALENESS_OPS.get(str(name), -1) for name in ops.categories] + [-1], dtype=np.int8)
    code = recode[ops.codes]  # a missing op (code -1) maps to the last entry, -1
    wanted = (trace["kind"] == "device").to_numpy() & (code >= 0)
    return pd.DataFrame({"stage": trace["stage"].to_numpy()[wanted], "op": code[wanted],
                         "step": trace["step"].to_numpy()[wanted], "seq": np.asarray(seq)[wanted]})


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
    stages = np.unique(trace["stage"].to_numpy()[(trace["kind"] == "device").to_numpy()])
    stale, lag = {}, {}
    for stage, rows in _staleness_rows(trace, seq).groupby("stage", sort=True):
        stale[int(stage)] = _stale(rows)
        targets_step, synth_step = _by_op(rows, "T", "step"), _by_op(rows, "S", "step")
        if len(synth_step) and len(targets_step):
            earlier = np.searchsorted(np.sort(targets_step), synth_step, side="left")
            trained = np.searchsorted(np.sort(_by_op(rows, "T", "seq")), _by_op(rows, "S", "seq"))
            lag[int(stage)] = int(max(0, (earlier - trained).max()))
    return {int(s): stale.get(int(s), 0) for s in stages}, lag


def _stale(rows: pd.DataFrame) -> int:
    """Of one stage's rows: the most updates run between a forward and the update of its step."""
    by_seq = np.argsort(_by_op(rows, "U", "seq"), kind="stable")
    order, u_step = _by_op(rows, "U", "seq")[by_seq], _by_op(rows, "U", "step")[by_seq]
    by_step = np.argsort(u_step, kind="stable")  # by_step[i]: updates done before the i-th update by step
    steps = u_step[by_step]
    f_step, f_seq = _by_op(rows, "F", "step"), _by_op(rows, "F", "seq")
    where = np.minimum(np.searchsorted(steps, f_step), max(len(steps) - 1, 0))
    has = (steps[where] == f_step) if len(steps) else np.zeros(len(f_step), dtype=bool)
    if not has.any():
        return 0
    return int((by_step[where[has]] - np.searchsorted(order, f_seq[has])).max())


def summarise(graph: TaskGraph, engine, hw, options, method: dict[str, Any]) -> SimResult:
    """Trace, summary, device and stage tables of a finished run of ``method`` (name and probabilities)."""
    start, end = np.array(engine.start, dtype=np.int64), np.array(engine.end, dtype=np.int64)
    trace = trace_frame(graph, start, end)
    measured = summarize_trace(trace)
    makespan = measured.makespan_ns
    peak_bytes, peak_stash = memory_tables(graph, start, end)
    devices = _device_table(graph, hw, measured, peak_bytes, options.param_copies)
    stale, lag = staleness(trace, engine.seq)
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
