"""Chrome-trace JSON (``chrome://tracing``, Perfetto) from a simulated or measured op trace.

One complete event (``ph: "X"``) per op, named like torch's actions (``2F0`` = stage 2,
forward, microbatch 0) with the step in ``args``; one thread per device or link, in trace order.
Chrome's timestamps are microseconds, so ``ts`` and ``dur`` are ``ns / 1000`` (floats keep the
nanoseconds).
"""

from __future__ import annotations

from typing import Any

import pandas as pd


def chrome_trace(trace: pd.DataFrame, process_name: str = "sglab simulation") -> dict[str, Any]:
    """The Chrome-trace object (``json.dumps`` it) of a trace with the columns of :data:`TRACE_COLUMNS`."""
    devices = list(dict.fromkeys(trace["device"].astype(str)))
    tid = {name: i for i, name in enumerate(devices)}
    events: list[dict[str, Any]] = [{"name": "process_name", "ph": "M", "pid": 0, "args": {"name": process_name}}]
    for name, i in tid.items():
        events.append({"name": "thread_name", "ph": "M", "pid": 0, "tid": i, "args": {"name": name}})
        events.append({"name": "thread_sort_index", "ph": "M", "pid": 0, "tid": i, "args": {"sort_index": i}})
    columns = ["stage", "op", "microbatch", "step", "device", "start_ns", "end_ns"]
    for stage, op, micro, step, device, start, end in trace[columns].itertuples(index=False, name=None):
        events.append({
            "name": f"{stage}{op}{micro}", "cat": str(op), "ph": "X", "pid": 0, "tid": tid[str(device)],
            "ts": start / 1000, "dur": (end - start) / 1000,
            "args": {"stage": int(stage), "op": str(op), "step": int(step), "microbatch": int(micro)},
        })
    return {"traceEvents": events, "displayTimeUnit": "ns"}
