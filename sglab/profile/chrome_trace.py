"""Chrome-trace JSON of timed ops, which Perfetto (ui.perfetto.dev) and chrome://tracing open.

Every op becomes one complete event (``"ph": "X"``) named with the shared op text (``2F0``),
``ts``/``dur`` in microseconds, ``pid`` the device, ``tid`` the stage, and ``args`` holding the
step, stage and op. Metadata events name the process after the device and each thread
``stage i``, so the timeline reads like the simulator's figures.

Accepted inputs: an :class:`~sglab.profile.timer.OpTimer`, its :class:`OpRecord` list, or plain
dicts with ``name`` (or ``action``), ``start_ns``, ``duration_ns`` and optionally ``stage``,
``step``, ``device`` (an integer pid) and ``device_name``, so a simulated trace can be written
the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from sglab.io import atomic_write_text
from sglab.ops import Action
from sglab.profile.timer import OpRecord, OpTimer


def _rows(source: OpTimer | Iterable[OpRecord | dict[str, Any]], device_name: str) -> list[dict[str, Any]]:
    records = source.records if isinstance(source, OpTimer) else source
    rows = []
    for record in records:
        if isinstance(record, OpRecord):
            rows.append({"action": record.action, "start_ns": record.start_ns, "duration_ns": record.duration_ns,
                         "step": record.step, "device": 0, "device_name": device_name})
            continue
        row = dict(record)
        text = str(row.get("action", row.get("name", "")))
        try:
            row["action"] = Action.parse(text)
        except ValueError:  # not an op name: kept as a plain label on its own row
            row["action"] = None
            row["name"] = text
        rows.append(row)
    return rows


def chrome_trace_events(source, device_name: str = "device") -> list[dict[str, Any]]:
    """The ``traceEvents`` list for ``source``; see the module docstring for accepted inputs."""
    events: list[dict[str, Any]] = []
    threads: set[tuple[int, int]] = set()
    processes: dict[int, str] = {}
    for row in _rows(source, device_name):
        action: Action | None = row["action"]
        pid = int(row.get("device", 0))
        tid = action.stage if action is not None else int(row.get("stage", 0))
        processes.setdefault(pid, str(row.get("device_name", device_name if pid == 0 else f"device {pid}")))
        threads.add((pid, tid))
        args = {"step": row.get("step"), "stage": tid}
        if action is not None:
            args["op"] = action.op
        events.append({
            "name": str(action) if action is not None else row["name"],
            "cat": action.op if action is not None else "other",
            "ph": "X",
            # Chrome traces count in microseconds; fractions keep the ns resolution.
            "ts": row["start_ns"] / 1000.0,
            "dur": row["duration_ns"] / 1000.0,
            "pid": pid,
            "tid": tid,
            "args": args,
        })
    meta = [{"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": name}}
            for pid, name in sorted(processes.items())]
    meta += [{"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": f"stage {tid}"}}
             for pid, tid in sorted(threads)]
    meta += [{"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid, "args": {"sort_index": tid}}
             for pid, tid in sorted(threads)]
    return meta + events


def write_chrome_trace(path: str | Path, source, device_name: str | None = None, metadata: dict | None = None) -> Path:
    """Write ``source`` as a Chrome-trace JSON file (atomically); returns the path."""
    if device_name is None:
        device_name = str(source.device) if isinstance(source, OpTimer) else "device"
    trace = {"traceEvents": chrome_trace_events(source, device_name), "displayTimeUnit": "ms",
             "otherData": dict(metadata or {})}
    return atomic_write_text(path, json.dumps(trace) + "\n")
