"""The measured trace of a multi-process run: every rank's op records on one clock, in :mod:`sglab.trace`'s schema.

Each rank times every op twice: on its own ``time.perf_counter_ns`` (monotonic, nanosecond
resolution, but counted from an origin of its own, so two processes' values do not compare) and
on the wall clock ``time.time_ns`` (CLOCK_REALTIME). The merged trace is built from the
perf-counter times, put on one clock like this:

- **Alignment.** Right after the ranks pass a barrier at start-up, each rank reads a
  :class:`ClockReference`: a ``(perf_counter_ns, time_ns)`` pair, the one of a few reads whose two
  clocks were read closest together. ``time_ns - perf_counter_ns`` of that pair is the rank's
  offset, fixed for the run; an op's time on the common clock is its ``perf_counter_ns`` plus
  the offset. On one host every process reads the same CLOCK_REALTIME, so this puts all ranks
  on one clock to within the microsecond or so it takes to read two clocks, while every
  duration stays a perf-counter difference (a step of the wall clock by NTP during the run
  cannot make an op negative or move one rank against the others).
- **Origin.** 0 ns is the earliest rank's reference, i.e. the barrier's exit.
- **Across hosts** (``align="barrier"``) wall clocks agree only as well as NTP keeps them, so
  each rank's reference is taken as the same instant instead: every rank's barrier exit is
  0 ns. The error is the barrier's exit skew, about one message latency.

Rows: ``device`` is ``rank{r}`` and ``kind`` is ``device`` for compute ops (``F B S T U I W SI
TI``); a message op (``SEND_F RECV_F SEND_B RECV_B``) is a **link** row on the direction of
its message, ``rank{src}->rank{dst}``. Its time is what the rank spent in the call (posting a
send, or waiting for and receiving a message), not the time on the wire; keeping it off the
rank's own row means :func:`sglab.trace.summarize_trace`'s utilisation and bubble count only
computation, and a rank waiting for a peer shows as idle, as it is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Iterable

import pandas as pd

from sglab.trace import make_trace

#: The fields of one op record, as every rank worker keeps them (a tuple per op, to keep recording cheap).
RECORD_FIELDS = ("rank", "stage", "op", "step", "microbatch", "start_ns", "end_ns", "start_wall_ns", "end_wall_ns")

#: Message ops and the rank at the other end, relative to the rank that ran them.
_PEER = {"SEND_F": +1, "RECV_F": -1, "SEND_B": -1, "RECV_B": +1}
_SENDS = ("SEND_F", "SEND_B")


@dataclass(frozen=True)
class ClockReference:
    """One rank's ``perf_counter_ns`` and ``time_ns`` read at (nearly) one instant, after the start-up barrier."""

    perf_ns: int
    wall_ns: int

    @property
    def offset_ns(self) -> int:
        """What to add to this rank's ``perf_counter_ns`` to get the wall clock."""
        return self.wall_ns - self.perf_ns


def read_clock_reference(samples: int = 5) -> ClockReference:
    """The reading, of ``samples``, whose perf-counter reads before and after the wall clock were closest."""
    best = None
    for _ in range(samples):
        before = time.perf_counter_ns()
        wall = time.time_ns()
        after = time.perf_counter_ns()
        if best is None or after - before < best[0]:
            best = (after - before, ClockReference((before + after) // 2, wall))
    return best[1]


def link_name(rank: int, op: str) -> str:
    """The link row of a message op that ``rank`` ran: ``rank0->rank1`` for rank 0's ``SEND_F``."""
    other = rank + _PEER[op]
    return f"rank{rank}->rank{other}" if op in _SENDS else f"rank{other}->rank{rank}"


def merge_records(records: Iterable[dict[str, Any]], references: dict[int, ClockReference],
                  align: str = "wall") -> pd.DataFrame:
    """Every rank's op records as one measured trace on one clock (see the module docstring).

    ``records`` are dicts with ``rank stage op step microbatch start_ns end_ns`` (``*_ns`` on the
    rank's ``perf_counter_ns``); ``references[rank]`` is that rank's :class:`ClockReference`.
    ``align`` is ``wall`` (one host) or ``barrier`` (every rank's reference is the same instant).
    """
    if align not in ("wall", "barrier"):
        raise ValueError(f"align must be 'wall' or 'barrier', got {align!r}")
    if align == "wall":
        origin = min(ref.wall_ns for ref in references.values()) if references else 0
        shift = {rank: ref.offset_ns - origin for rank, ref in references.items()}
    else:
        shift = {rank: -ref.perf_ns for rank, ref in references.items()}
    columns: dict[str, list] = {name: [] for name in ("stage", "op", "step", "microbatch", "device", "start_ns", "end_ns",
                                                       "kind")}
    for record in sorted(records, key=lambda r: r["start_ns"] + shift[r["rank"]]):
        rank, op, moved = record["rank"], record["op"], shift[record["rank"]]
        message = op in _PEER
        for name in ("stage", "op", "step", "microbatch"):
            columns[name].append(record[name])
        columns["device"].append(link_name(rank, op) if message else f"rank{rank}")
        columns["kind"].append("link" if message else "device")
        columns["start_ns"].append(record["start_ns"] + moved)
        columns["end_ns"].append(record["end_ns"] + moved)
    return make_trace(**columns, source="measured")
