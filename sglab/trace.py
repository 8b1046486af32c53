"""The one trace schema: a tidy table of ops that ran, measured or simulated, and what is read from it.

One row per op run:

============  ======================================================================================
``stage``     the stage the op belongs to (a recurrent chunk is a stage in time)
``op``        the op (``F``, ``B``, ``SEND_F`` ...; see :mod:`sglab.ops`)
``step``      the training step
``microbatch`` the microbatch within the step (0 unless pipelined)
``device``    where it ran: a device (``cpu``, ``node3``) or one direction of a link (``node0->switch``)
``start_ns``  start, integer nanoseconds from the trace's origin
``end_ns``    end, integer nanoseconds
``kind``      ``device`` or ``link``
``source``    ``measured`` (timed in a real run) or ``simulated``
============  ======================================================================================

The profiler's in-run timer and the simulator both write this table; :func:`summarize_trace`
reads either (makespan, per-device utilisation, bubble, per-op time), and
:func:`chrome_trace` turns either into Chrome-trace JSON that Perfetto opens (one thread per
device, events named like torch's actions, ``2F0``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sglab.errors import SglabError
from sglab.io import atomic_write_text

TRACE_COLUMNS = ["stage", "op", "step", "microbatch", "device", "start_ns", "end_ns", "kind", "source"]
KINDS = ("device", "link")
SOURCES = ("measured", "simulated")
_INTEGER = ("stage", "step", "microbatch", "start_ns", "end_ns")


class TraceError(SglabError, ValueError):
    """A table that is not a trace; the message names the column."""


def _fixed_categorical(values, n: int, column: str, allowed: tuple[str, ...]) -> pd.Categorical:
    """``values`` (one string for every row, or one per row) as a categorical over ``allowed``."""
    if isinstance(values, str):
        present = {values}
    elif isinstance(values, pd.Categorical):
        present = set(map(str, pd.unique(values)))  # read through the codes, not row by row
    else:
        values = list(values)
        present = set(map(str, values))
    bad = sorted(present - set(allowed))
    if bad:
        raise TraceError(f"trace column {column!r} holds {bad}; allowed: {', '.join(allowed)}")
    if isinstance(values, str):
        return pd.Categorical.from_codes(np.full(n, allowed.index(values), dtype=np.int8), categories=list(allowed))
    return pd.Categorical(values, categories=list(allowed))


def make_trace(*, stage, op, step, microbatch, device, start_ns, end_ns, kind, source: str) -> pd.DataFrame:
    """A trace from equal-length columns (``kind`` may be one string for every row).

    ``op``, ``device`` and ``kind`` may be :class:`pandas.Categorical` already (a simulation's
    ten million rows are then never turned into strings).
    """
    n = len(start_ns)
    sources = _fixed_categorical(source, n, "source", SOURCES)
    kinds = _fixed_categorical(kind, n, "kind", KINDS)
    trace = pd.DataFrame({
        "stage": np.asarray(stage, dtype=np.int64),
        "op": op if isinstance(op, pd.Categorical) else pd.Categorical(op),
        "step": np.asarray(step, dtype=np.int64), "microbatch": np.asarray(microbatch, dtype=np.int64),
        "device": device if isinstance(device, pd.Categorical) else pd.Categorical(device),
        "start_ns": np.asarray(start_ns, dtype=np.int64), "end_ns": np.asarray(end_ns, dtype=np.int64),
        "kind": kinds, "source": sources,
    })
    return check_trace(trace)


def check_trace(trace: pd.DataFrame) -> pd.DataFrame:
    """``trace`` itself if it has the schema's columns and values; :class:`TraceError` names the first fault."""
    missing = [c for c in TRACE_COLUMNS if c not in trace.columns]
    if missing:
        raise TraceError(f"trace lacks column(s) {', '.join(missing)} (a trace has {', '.join(TRACE_COLUMNS)})")
    for column in _INTEGER:
        if len(trace) and not pd.api.types.is_integer_dtype(trace[column]):
            raise TraceError(f"trace column {column!r} must hold integers, got {trace[column].dtype}")
    for column, allowed in (("kind", KINDS), ("source", SOURCES)):
        bad = set(map(str, pd.unique(trace[column]))) - set(allowed)
        if bad:
            raise TraceError(f"trace column {column!r} holds {sorted(bad)}; allowed: {', '.join(allowed)}")
    if len(trace) and (trace["end_ns"] < trace["start_ns"]).any():
        row = int(np.flatnonzero((trace["end_ns"] < trace["start_ns"]).to_numpy())[0])
        raise TraceError(f"trace row {row} ends before it starts")
    return trace


def read_trace(path: str | Path) -> pd.DataFrame:
    """A trace saved with ``trace.to_csv(index=False)`` (``trace.csv`` of a run or a simulation)."""
    try:
        frame = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise TraceError(f"{path}: cannot read a trace ({err})") from None
    try:
        return check_trace(frame)
    except TraceError as err:
        raise TraceError(f"{path}: {err}") from None


@dataclass
class TraceSummary:
    """What :func:`summarize_trace` reads from a trace.

    Attributes:
        makespan_ns: from the first op's start to the last op's end.
        devices: one row per device and link: ``device, kind, busy_ns, utilisation`` (busy / makespan).
        ops: one row per (stage, op): ``count, total_ns, mean_ns``.
        bubble_fraction: the idle share of the devices (links left out) over the makespan.
        steady_step_ns: mean time between step completions over the run's middle half (None
            below 4 steps), which leaves out a pipeline's filling and draining.
    """

    makespan_ns: int
    devices: pd.DataFrame
    ops: pd.DataFrame
    bubble_fraction: float
    steady_step_ns: float | None

    def as_dict(self) -> dict[str, Any]:
        """The scalars, and per-device utilisation, as one flat dict."""
        return {"makespan_ns": self.makespan_ns, "bubble_fraction": self.bubble_fraction,
                "steady_step_ns": self.steady_step_ns,
                **{f"utilisation[{d}]": u for d, u in zip(self.devices["device"], self.devices["utilisation"])}}


def summarize_trace(trace: pd.DataFrame) -> TraceSummary:
    """Makespan, per-device busy time and utilisation, bubble and per-op time of a measured or simulated trace."""
    check_trace(trace)
    start, end = trace["start_ns"].to_numpy(), trace["end_ns"].to_numpy()
    makespan = int(end.max() - start.min()) if len(trace) else 0
    busy = (trace.assign(busy_ns=end - start).groupby(["device", "kind"], observed=True, sort=False)["busy_ns"].sum()
            .reset_index())
    busy["device"], busy["kind"] = busy["device"].astype(str), busy["kind"].astype(str)
    busy["utilisation"] = busy["busy_ns"] / makespan if makespan else 0.0
    compute = busy[busy["kind"] == "device"]
    capacity = len(compute) * makespan
    bubble = 1 - compute["busy_ns"].sum() / capacity if capacity else 0.0
    per_op = trace.assign(ns=end - start).groupby(["stage", "op"], observed=True)["ns"]
    ops = pd.DataFrame({"count": per_op.size(), "total_ns": per_op.sum(), "mean_ns": per_op.mean()}).reset_index()
    return TraceSummary(makespan, busy, ops, float(bubble), steady_step_ns(trace))


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


def chrome_trace(trace: pd.DataFrame, process_name: str = "sglab", pid: int = 0) -> dict[str, Any]:
    """The Chrome-trace object (``json.dumps`` it) of ``trace``: one thread per device, in order of first use.

    Chrome counts in microseconds, so ``ts`` and ``dur`` are ``ns / 1000`` (floats keep the ns).
    Traces of several runs go side by side as processes: give each its own ``pid`` and
    concatenate their ``traceEvents``.
    """
    devices = list(dict.fromkeys(trace["device"].astype(str)))
    tid = {name: i for i, name in enumerate(devices)}
    events: list[dict[str, Any]] = [{"name": "process_name", "ph": "M", "pid": pid, "args": {"name": process_name}}]
    for name, i in tid.items():
        events.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": i, "args": {"name": name}})
        events.append({"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": i, "args": {"sort_index": i}})
    columns = ["stage", "op", "microbatch", "step", "device", "start_ns", "end_ns", "source"]
    for stage, op, micro, step, device, start, end, source in trace[columns].itertuples(index=False, name=None):
        events.append({
            "name": f"{stage}{op}{micro}", "cat": str(op), "ph": "X", "pid": pid, "tid": tid[str(device)],
            "ts": start / 1000, "dur": (end - start) / 1000,
            "args": {"stage": int(stage), "op": str(op), "step": int(step), "microbatch": int(micro), "source": str(source)},
        })
    return {"traceEvents": events, "displayTimeUnit": "ns"}


def write_chrome_trace(path: str | Path, trace: pd.DataFrame, process_name: str = "sglab",
                       metadata: dict[str, Any] | None = None) -> Path:
    """Write ``trace`` as a Chrome-trace JSON file (atomically); returns the path."""
    data = {**chrome_trace(trace, process_name), "otherData": dict(metadata or {})}
    return atomic_write_text(path, json.dumps(data) + "\n")
