"""What a simulation says: a tidy op trace and the numbers computed from it.

The trace has one row per op run: ``stage, op, step, microbatch, device, start_ns, end_ns``
(``device`` is a device or a link direction such as ``node0->switch``; ``kind`` says which).
Everything else (utilisation, bubble, memory, staleness) is derived from the trace and the
task graph, so a measured trace of the same format can be summarised the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sglab.io import atomic_write_json, atomic_write_text
from sglab.sim.graph import TaskGraph

TRACE_COLUMNS = ["stage", "op", "step", "microbatch", "device", "start_ns", "end_ns", "kind"]


@dataclass
class SimResult:
    """The outcome of :func:`sglab.sim.simulate`.

    Attributes:
        trace: one row per op (see module docstring).
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
        from sglab.sim.trace import chrome_trace

        out = Path(out_dir)
        paths = {
            "trace": atomic_write_text(out / "trace.csv", self.trace.to_csv(index=False)),
            "summary": atomic_write_json(out / "summary.json", {"summary": self.summary, "config": self.config}),
            "devices": atomic_write_text(out / "devices.csv", self.devices.to_csv(index=False)),
            "stages": atomic_write_text(out / "stages.csv", self.stages.to_csv(index=False)),
            "chrome_trace": atomic_write_text(out / "trace.json", json.dumps(chrome_trace(self.trace))),
        }
        return paths


def trace_frame(graph: TaskGraph, start: list[int], end: list[int]) -> pd.DataFrame:
    """The tidy trace of a finished run."""
    names = [s.name for s in graph.servers]
    server = np.asarray(graph.server)
    kinds = np.asarray([s.kind for s in graph.servers])
    return pd.DataFrame({
        "stage": np.asarray(graph.stage, dtype=np.int64),
        "op": pd.Categorical(graph.op),
        "step": np.asarray(graph.step, dtype=np.int64),
        "microbatch": np.asarray(graph.micro, dtype=np.int64),
        "device": pd.Categorical.from_codes(server, categories=names),
        "start_ns": np.asarray(start, dtype=np.int64),
        "end_ns": np.asarray(end, dtype=np.int64),
        "kind": pd.Categorical(kinds[server]) if len(server) else pd.Categorical([]),
    })


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


def step_completions(trace: pd.DataFrame) -> np.ndarray:
    """The time each step's last op ends, in step order."""
    return trace.groupby("step", sort=True)["end_ns"].max().to_numpy()


def steady_step_ns(trace: pd.DataFrame) -> float | None:
    """Mean time between step completions over the middle half of the run (None below 4 steps).

    The middle half skips the pipeline filling at the start and the drain at the end, where
    the last steps finish faster because nothing queues behind them.
    """
    done = step_completions(trace)
    if len(done) < 4:
        return None
    first, last = len(done) // 4, 3 * len(done) // 4
    return float(done[last] - done[first]) / (last - first)
