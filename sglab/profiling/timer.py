"""``OpTimer``: an observer that times every op a runner executes.

    timer = OpTimer("cpu")
    runner.step(x, y, timer)                 # or train(config, out, observer=timer)
    timer.durations()                        # {(stage, op): [ns, ns, ...]}
    timer.trace()                            # the ops as a measured trace (sglab.trace schema)

On CPU an op is timed with ``time.perf_counter_ns`` around it: CPU kernels run synchronously,
so the wall time *is* the op's cost. On a machine shared with other work the wall clock also
counts the time the scheduler gives to others; ``clock="thread_time"`` instead reads the
calling thread's CPU time, which preemptions do not advance. It is exact only when torch runs
ops on that one thread, so it requires ``torch.get_num_threads() == 1``.

On CUDA kernels run asynchronously, so a wall clock would time the launches; instead a pair
of CUDA events is recorded around the op on the current stream and read later. Reading an
event pair needs the GPU to have passed the end event, so the timer never synchronises per op
(that would serialise host and device and inflate every step): finished pairs are harvested
without blocking at each step boundary and the rest with one synchronisation when the records
are read.

Runners announce each step (``begin_step``); a repeated action also starts a new step (every
op of a step is a distinct action: ``2F0`` happens once per step), and ``next_step()`` sets the
boundary explicitly for callers that time something other than a runner.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

import pandas as pd
import torch

from sglab.exec.observe import Observer
from sglab.ops import Action
from sglab.trace import make_trace

#: CPU clocks an OpTimer can read (CUDA always uses events).
CLOCKS = {"perf_counter": time.perf_counter_ns, "thread_time": time.thread_time_ns}


def cpu_clock(name: str):
    """The ns clock called ``name``; ``thread_time`` only with one torch thread (see module doc)."""
    from sglab.costprofile import ProfileError

    if name not in CLOCKS:
        raise ProfileError(f"clock must be one of {', '.join(CLOCKS)}, got {name!r}")
    if name == "thread_time" and torch.get_num_threads() != 1:
        raise ProfileError(
            f"clock 'thread_time' counts only the calling thread, but torch uses {torch.get_num_threads()} "
            "threads; call torch.set_num_threads(1) (--threads 1) or use clock 'perf_counter'"
        )
    return CLOCKS[name]


class OpTimer(Observer):
    """Times each ``observer.op(action)`` section; see the module docstring.

    Args:
        device: where the ops run (``"cpu"``, ``"cuda"``, a ``torch.device``).
        track_memory: on CUDA, also record each op's peak extra allocated memory (the peak while
            it ran minus what was allocated when it started). Costs a little host time per op,
            so it is off unless asked; devices that do not report memory ignore it.
        clock: on CPU, ``perf_counter`` (wall time, default) or ``thread_time`` (CPU time of
            this thread; needs one torch thread). Ignored on CUDA.

    The hot path allocates no new Python container objects: it appends ints and the caller's
    own Action to flat lists. Creating a record object per op made the garbage collector run
    every few hundred ops and scan the whole (large, in training) heap, which cost ~10 µs per
    op; :meth:`trace` builds the table only when it is read.
    """

    def __init__(self, device: str | torch.device = "cpu", track_memory: bool = False, clock: str = "perf_counter"):
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.track_memory = track_memory and self.cuda
        self._clock = None if self.cuda else cpu_clock(clock)
        self.timer_name = "cuda_event" if self.cuda else clock
        self._section = _CudaSection(self) if self.cuda else _CpuSection(self)
        self._free_events: list = []
        self.reset()

    # ---- recording ---------------------------------------------------------------------

    def next_step(self) -> None:
        """Start a new step explicitly (otherwise a repeated action starts one)."""
        if self._seen:
            self.step_index += 1
            self._seen.clear()
            if self.cuda:
                self._harvest(block=False)

    def begin_step(self, step: int) -> None:
        """A runner starts a step: the observer interface's step boundary."""
        self.next_step()

    def op(self, action: Action):
        """Context manager timing one op (the observer interface)."""
        if action in self._seen:
            self.next_step()
        self._seen.add(action)
        self._open.append(action)
        return self._section

    def _event(self):
        return self._free_events.pop() if self._free_events else torch.cuda.Event(enable_timing=True)

    def _harvest(self, block: bool) -> None:
        """Turn finished CUDA event pairs into times; ``block`` waits for all of them."""
        if block and self._pending:
            self._pending[-1][3].synchronize()
        keep = []
        for entry in self._pending:
            step, action, start, end, peak = entry
            if not block and not end.query():
                keep.append(entry)
                continue
            origin = self._origin_event
            self._append(step, action, round(origin.elapsed_time(start) * 1e6), round(start.elapsed_time(end) * 1e6), peak)
            if start is not origin:  # the origin stays alive: every later start is measured from it
                self._free_events.append(start)
            self._free_events.append(end)
        self._pending = keep

    def _append(self, step: int, action: Action, start_ns: int, duration_ns: int, peak: int | None) -> None:
        self._steps.append(step)
        self._actions.append(action)
        self._starts.append(start_ns)
        self._durations.append(duration_ns)
        self._peaks.append(peak)

    # ---- reading -----------------------------------------------------------------------

    def _flush(self) -> None:
        if self.cuda:
            self._harvest(block=True)

    def trace(self, device_name: str | None = None, skip_steps: int = 0) -> pd.DataFrame:
        """Every timed op as a measured trace (:mod:`sglab.trace`), in start order, from ``skip_steps`` on.

        Times are ns from the first op's start; ``device`` is ``device_name`` (default: the
        torch device, e.g. ``cpu``).
        """
        self._flush()
        origin = 0 if self.cuda or not self._starts else self._origin_ns  # CUDA starts are relative already
        rows = sorted((start - origin, step, action, duration) for step, action, start, duration
                      in zip(self._steps, self._actions, self._starts, self._durations) if step >= skip_steps)
        return make_trace(stage=[a.stage for _, _, a, _ in rows], op=[a.op for _, _, a, _ in rows],
                          step=[s for _, s, _, _ in rows], microbatch=[a.microbatch for _, _, a, _ in rows],
                          device=[device_name or str(self.device)] * len(rows), start_ns=[t for t, *_ in rows],
                          end_ns=[t + d for t, _, _, d in rows], kind="device", source="measured")

    @property
    def num_steps(self) -> int:
        """Number of steps seen so far."""
        return self.step_index + 1 if self._seen or self._steps or self._pending else 0

    def durations(self, skip_steps: int = 0) -> dict[tuple[int, str], list[int]]:
        """Durations in ns per ``(stage, op)``, leaving out the first ``skip_steps`` steps."""
        self._flush()
        found: dict[tuple[int, str], list[int]] = {}
        for step, action, duration in zip(self._steps, self._actions, self._durations):
            if step >= skip_steps:
                found.setdefault((action.stage, action.op), []).append(duration)
        return found

    def peak_memory(self, skip_steps: int = 0) -> dict[int, int]:
        """Per stage, the largest peak extra memory of its ops (only with ``track_memory``)."""
        self._flush()
        peaks: dict[int, int] = {}
        for step, action, peak in zip(self._steps, self._actions, self._peaks):
            if step >= skip_steps and peak is not None:
                peaks[action.stage] = max(peaks.get(action.stage, 0), peak)
        return peaks

    def reset(self) -> None:
        """Forget every record (e.g. after warm-up); pending CUDA events are drained first."""
        if self.cuda and getattr(self, "_pending", None):
            self._harvest(block=True)
        self.step_index = 0
        self._seen: set[Action] = set()
        self._open: list[Action] = []
        self._open_starts: list = []
        self._steps: list[int] = []
        self._actions: list[Action] = []
        self._starts: list[int] = []
        self._durations: list[int] = []
        self._peaks: list[int | None] = []
        self._pending: list[tuple] = []
        self._origin_ns: int | None = None
        self._origin_event = None


class _CpuSection:
    """The context manager :meth:`OpTimer.op` returns on CPU (one per timer; ops may nest)."""

    __slots__ = ("timer",)

    def __init__(self, timer: OpTimer):
        self.timer = timer

    def __enter__(self) -> None:
        timer = self.timer
        start = timer._clock()
        if timer._origin_ns is None:
            timer._origin_ns = start
        timer._open_starts.append(start)

    def __exit__(self, *exc) -> bool:
        timer = self.timer
        end = timer._clock()
        start = timer._open_starts.pop()
        timer._append(timer.step_index, timer._open.pop(), start, end - start, None)
        return False


class _CudaSection:
    """The context manager :meth:`OpTimer.op` returns on CUDA: an event pair per op."""

    __slots__ = ("timer",)

    def __init__(self, timer: OpTimer):
        self.timer = timer

    def __enter__(self) -> None:
        timer = self.timer
        start, end = timer._event(), timer._event()
        if timer._origin_event is None:
            timer._origin_event = start
        base = None
        if timer.track_memory:
            # Allocator statistics are kept on the host at launch time, so no sync is needed.
            torch.cuda.reset_peak_memory_stats(timer.device)
            base = torch.cuda.memory_allocated(timer.device)
        timer._open_starts.append((start, end, base))
        start.record()

    def __exit__(self, *exc) -> bool:
        timer = self.timer
        start, end, base = timer._open_starts.pop()
        end.record()
        peak = torch.cuda.max_memory_allocated(timer.device) - base if base is not None else None
        timer._pending.append((timer.step_index, timer._open.pop(), start, end, peak))
        return False


class Stopwatch:
    """Times whole sections (a full forward, a full step) with the same clock as :class:`OpTimer`.

    Used for totals that are checked against the per-op times, so both must use one primitive.
    """

    def __init__(self, device: str | torch.device = "cpu", clock: str = "perf_counter"):
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self._clock = None if self.cuda else cpu_clock(clock)
        self._samples: dict[str, list] = {}

    @contextmanager
    def section(self, name: str) -> Iterator[None]:
        """Time the body under ``name``."""
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            try:
                yield
            finally:
                end.record()
                self._samples.setdefault(name, []).append((start, end))
        else:
            start_ns = self._clock()
            try:
                yield
            finally:
                self._samples.setdefault(name, []).append(self._clock() - start_ns)

    def samples(self, name: str) -> list[int]:
        """Durations of ``name`` in ns (synchronises CUDA once)."""
        raw = self._samples.get(name, [])
        if not self.cuda:
            return list(raw)
        if raw:
            raw[-1][1].synchronize()
        return [int(round(start.elapsed_time(end) * 1e6)) for start, end in raw]

    def reset(self) -> None:
        """Forget every sample."""
        self._samples.clear()
