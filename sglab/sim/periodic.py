"""Copying a run's steady step instead of building it again: ten million ops in seconds.

Once a method's steps draw the same ops and every cross-step edge reaches back to a step that
exists, step ``t + 1`` is step ``t`` with its step number one higher and every task id, and so
every dependency, stash and device-order entry, ``L`` higher (``L`` = tasks per step).
:func:`repeat_step` checks that the last two built steps are such a pair, column by column, and
only then appends the copies with numpy; when they are not, it adds nothing and the builder goes
on step by step, so a copy never differs from what building would have made.
"""

from __future__ import annotations

import numpy as np

from sglab.sim.graph import COLUMNS, TaskGraph

#: Tasks appended per numpy batch (bounds the temporary arrays).
BATCH = 1 << 20
_SAME = ("stage", "op_code", "micro", "server", "duration")


def repeat_step(g: TaskGraph, previous: int, start: int, times: int, orders: dict[int, list]) -> bool:
    """Append ``times`` copies of the tasks from ``start`` on if they are those from ``previous``
    shifted one step; ``orders`` (device → op sequence) gets the copies' entries. Returns whether it did."""
    n, size = len(g), start - previous
    if n - start != size or size == 0 or times < 1 or any(task >= previous for task in g.extra_deps):
        return False
    step = _last_step(g, previous, start, n)
    tails = _order_tails(orders, previous, start)
    if step is None or tails is None:
        return False
    tasks, buffers = step
    flat, ends, last_end = tasks.pop("dep_flat"), tasks.pop("dep_end"), int(g.column("dep_end")[n - 1])
    per = max(1, BATCH // size)
    for first in range(1, times + 1, per):
        k = np.arange(first, min(first + per, times + 1), dtype=np.int64)[:, None]
        copies = {name: np.broadcast_to(values, (len(k), size)) for name, values in tasks.items()}
        copies.update(step=tasks["step"] + k, dep_flat=flat + k * size, dep_end=ends + last_end + (k - 1) * len(flat))
        stashes = {name: values + k * size if name in ("buffer_alloc", "buffer_free")
                   else np.broadcast_to(values, (len(k), len(values))) for name, values in buffers.items()}
        g.extend({name: values.ravel() for name, values in copies.items()},
                 {name: values.ravel() for name, values in stashes.items()})
    shifts = np.arange(1, times + 1, dtype=np.int64)[:, None] * size
    for device, tail in tails.items():
        orders[device] = np.concatenate([np.asarray(orders[device], dtype=np.int64), (tail + shifts).ravel()])
    return True


def _last_step(g: TaskGraph, previous: int, start: int, n: int) -> tuple[dict, dict] | None:
    """The last step's task columns (``dep_end`` relative to the step) and stashes, copied out
    of the graph, if they are the previous step's one step later; else None."""
    columns = {name: g.column(name) for name in COLUMNS}
    ends, flat = columns["dep_end"], columns["dep_flat"]
    before, middle = (int(ends[previous - 1]) if previous else 0), int(ends[start - 1])
    alike = (all(np.array_equal(columns[name][previous:start], columns[name][start:n]) for name in _SAME)
             and np.array_equal(columns["step"][previous:start] + 1, columns["step"][start:n])
             and np.array_equal(ends[previous:start] - before, ends[start:n] - middle)
             and np.array_equal(flat[before:middle] + (start - previous), flat[middle:]))
    if not alike:
        return None
    buffers = _last_stashes(g, previous, start)
    if buffers is None:
        return None
    tasks = {name: columns[name][start:n].copy() for name in COLUMNS if name not in ("dep_flat", "dep_end")}
    tasks.update(dep_flat=flat[middle:].astype(np.int64), dep_end=ends[start:n] - middle)
    return tasks, buffers


def _last_stashes(g: TaskGraph, previous: int, start: int) -> dict[str, np.ndarray] | None:
    """The last step's stashes (copied) if they are the previous step's shifted, else None."""
    rows = {name: g.column(name) for name in ("buffer_alloc", "buffer_free", "buffer_bytes", "buffer_kind")}
    alloc = rows["buffer_alloc"]
    old, new = (alloc >= previous) & (alloc < start), alloc >= start
    if old.sum() != new.sum() or not np.all(new[len(new) - int(new.sum()):]):
        return None
    for name, values in rows.items():
        shift = start - previous if name in ("buffer_alloc", "buffer_free") else 0
        if not np.array_equal(values[old] + shift, values[new]):
            return None
    return {name: values[new].copy() for name, values in rows.items()}


def _order_tails(orders: dict[int, list], previous: int, start: int) -> dict[int, np.ndarray] | None:
    """Each device order's entries in the last step (its last entries) if they are the previous step's shifted."""
    tails = {}
    for device, order in orders.items():
        order = np.asarray(order, dtype=np.int64)
        old, new = order[(order >= previous) & (order < start)], order[len(order) - int((order >= start).sum()):]
        if len(old) != len(new) or not np.array_equal(old + (start - previous), new):
            return None
        tails[device] = new
    return tails
