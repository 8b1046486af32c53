"""The SimPy engine: one server per device and per link direction, integer nanoseconds.

Each resource is a capacity-one server that takes one op at a time (by its static order, its
priority or first come first served), waits for the op's inputs, holds itself for the op's
duration and then releases the ops that waited for it. That is what a
``simpy.Resource(capacity=1)`` with a queue discipline amounts to, with one SimPy event per op
instead of a request, a timeout and a release, and a callback instead of a process: a server
has at most one op in flight, so it schedules one reusable event on the SimPy environment's
queue (:meth:`simpy.Environment.schedule`) for each op's end, or to wake when its next op's
inputs are there. The events are the same, in the same order, as those of one SimPy process
per server yielding a timeout per op, so the schedule is that process model's.

With ``hardware.contention`` the devices share one machine (processes on one CPU): every running
compute op progresses at ``1 / contention_factor(n)`` while ``n`` devices compute (processor
sharing, :class:`_SharedCores`), so an op ends when its work is done at the rates it met.

Nothing ends early: if SimPy runs out of events before every op has run, the schedule can never
finish and :class:`SimError` names the stuck ops and what each one waits for.
"""

from __future__ import annotations

import gc
import math
from array import array
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from heapq import heappop, heappush

import numpy as np
import simpy
from simpy.events import NORMAL

from sglab.sim.errors import SimError
from sglab.sim.graph import TaskGraph, as_numpy


def label(graph: TaskGraph, task: int) -> str:
    """Torch-style name of a task with its step, e.g. ``1B0@3`` = stage 1, backward, microbatch 0, step 3."""
    return f"{graph.stage[task]}{graph.op[task]}{graph.micro[task]}@{graph.step[task]}"


class Engine:
    """Runs a :class:`TaskGraph` once; ``start``/``end`` (int64 arrays) hold each task's times after :meth:`run`
    (and ``seq`` the order ops started in); the run's own state is dropped when it ends."""

    def __init__(self, graph: TaskGraph, durations) -> None:
        graph.freeze()
        self.graph = graph
        self.env = simpy.Environment()
        n = len(graph)
        if len(durations) != n:
            raise SimError(f"durations has {len(durations)} entries for a graph of {n} tasks")
        self.duration = array("q", np.asarray(durations, dtype=np.int64).tobytes())
        self.start = array("q", [-1]) * n
        self.end = array("q", [-1]) * n
        self.started = array("q")  # tasks in the order they started (breaks time ties)
        self.offsets, self.users = graph.users()
        self.waiting = array("i", np.diff(graph.column("dep_end"), prepend=0).astype(np.int32).tobytes())
        self.cores = _SharedCores(self.env, graph.hardware.contention_factor) if graph.hardware.contention else None
        self._ready: list = []  # each server's ready(task), filled below
        self.finish = self._finisher()
        self.servers = [_static(self, s.order, self._cores_of(s)) if s.policy == "static"
                        else _queued(self, s.policy == "fifo", self._cores_of(s)) for s in graph.servers]
        self._ready.extend(server.ready for server in self.servers)
        self._check_orders()

    def _cores_of(self, server) -> _SharedCores | None:
        """The shared cores a server's ops run on (devices under contention), else None (plain timeouts)."""
        return self.cores if server.kind == "device" else None

    def _finisher(self):
        """``finish(task)``: hand every op that ``task``'s end unblocks to that op's server.

        Without contention an op ends exactly ``duration`` after its start, so the end times are
        filled in after the run instead of one by one.
        """
        env, end, waiting, users, offsets, ready = self.env, self.end, self.waiting, self.users, self.offsets, \
            self._ready
        server_of, record_end = self.graph.server, self.cores is not None

        def finish(task: int) -> None:
            if record_end:
                end[task] = env.now
            for user in users[offsets[task]:offsets[task + 1]]:
                left = waiting[user] - 1
                waiting[user] = left
                if not left:
                    ready[server_of[user]](user)

        return finish

    @property
    def seq(self) -> np.ndarray:
        """Each task's position in the global start order (-1 if it never started)."""
        seq = np.full(len(self.start), -1, dtype=np.int64)
        seq[as_numpy(self.started)] = np.arange(len(self.started), dtype=np.int64)
        return seq

    def _check_orders(self) -> None:
        """Every op of a static server appears in its order exactly once."""
        graph = self.graph
        server = graph.column("server")
        counts = np.zeros(len(graph), dtype=np.int64)
        where = lambda task: graph.servers[graph.server[task]].name  # noqa: E731
        for index, spec in enumerate(graph.servers):
            if spec.policy != "static":
                continue
            order = np.asarray(spec.order, dtype=np.int64)
            wrong = np.flatnonzero(server[order] != index)
            if len(wrong):
                task = int(order[wrong[0]])
                raise SimError(f"{label(graph, task)} is in {spec.name}'s order but runs on {where(task)}")
            np.add.at(counts, order, 1)
        static = np.asarray([s.policy == "static" for s in graph.servers], dtype=bool)
        wrong = np.flatnonzero(static[server] & (counts != 1)) if len(server) else []
        if len(wrong):
            task = int(wrong[0])
            raise SimError(f"{label(graph, task)} appears {counts[task]} times in {where(task)}'s order (must be once)")

    def run(self) -> Engine:
        """Simulate until every op has run; raise :class:`SimError` if some never can."""
        server_of = self.graph.server
        for task in np.flatnonzero(as_numpy(self.waiting) == 0).tolist():
            self.servers[server_of[task]].ready(task)
        # The run frees its millions of short-lived objects by reference counting; the cyclic
        # collector would only rescan them, so it waits until the end.
        collecting = gc.isenabled()
        gc.disable()
        try:
            for server in self.servers:  # in server order, as SimPy would start one process each
                server.run()
            self.env.run()
        finally:
            if collecting:
                gc.enable()
        if self.cores is None:
            start = as_numpy(self.start)
            self.end = array("q", np.where(start >= 0, start + as_numpy(self.duration), -1).tobytes())
        if (as_numpy(self.end) < 0).any():
            raise SimError(self._stuck_message())
        # what only the run needed goes (at ten million ops, several hundred MB the summary can use)
        self.servers, self.finish, self._ready = [], None, []
        self.users = self.offsets = self.waiting = None
        return self

    def _stuck_message(self, limit: int = 8) -> str:
        graph, end = self.graph, self.end
        stuck = np.flatnonzero(as_numpy(end) < 0).tolist()
        lines = [f"schedule cannot finish: {len(stuck)} of {len(end)} ops never ran (method {graph.method})"]
        for index, server in enumerate(self.servers):
            head = server.blocked()
            if head >= 0:
                unmet = [label(graph, d) for d in graph.deps[head] if end[d] < 0]
                lines.append(f"  {graph.servers[index].name} waits to run {label(graph, head)}, "
                             f"which needs {', '.join(unmet)}")
        shown = ", ".join(label(graph, t) for t in stuck[:limit])
        lines.append(f"  stuck ops: {shown}{' ...' if len(stuck) > limit else ''}")
        return "\n".join(lines)


@dataclass(frozen=True)
class _Server:
    """A server's callbacks: ``ready(task)`` (its inputs are there), ``run()`` (start what can
    start) and ``blocked()`` (the op a static server waits for, -1 if none)."""

    ready: Callable[[int], None]
    run: Callable[[], None]
    blocked: Callable[[], int]


def _event(env: simpy.Environment) -> simpy.Event:
    """A server's one SimPy event, reused for each of its ops' ends and wake-ups.

    A server has at most one of them pending, so one object serves them all: it is marked as
    succeeded once, and SimPy clears its callbacks when it fires; they are set again before
    each :meth:`simpy.Environment.schedule`.
    """
    event = simpy.Event(env)
    event._ok, event._value = True, None
    return event


def _static(engine: Engine, order, cores: _SharedCores | None) -> _Server:
    """A server that runs ``order`` in sequence; the head op blocks it until its inputs are there.

    The state lives in the closures (the hot path reads locals, not attributes).
    """
    env, waiting, duration, start, finish = engine.env, engine.waiting, engine.duration, engine.start, engine.finish
    started, event, schedule, count = engine.started.append, _event(env), env.schedule, len(order)
    position, blocked, current = 0, -1, -1

    def ready(task: int) -> None:
        nonlocal blocked
        if task == blocked:
            blocked = -1
            event.callbacks = woken
            schedule(event, NORMAL, 0)

    def run(_event=None) -> None:
        nonlocal position, blocked, current
        while position < count:
            task = order[position]
            if waiting[task]:
                blocked = task
                return
            position += 1
            start[task] = env.now
            started(task)
            ns = duration[task]
            if ns:
                current = task
                if cores is None:
                    event.callbacks = ended
                    schedule(event, NORMAL, ns)
                else:
                    cores.hold(ns, done)
                return
            finish(task)

    def done(_event) -> None:
        finish(current)
        run()

    ended, woken = (done,), (run,)
    return _Server(ready, run, lambda: blocked)


def _queued(engine: Engine, fifo: bool, cores: _SharedCores | None) -> _Server:
    """A server that runs its ready ops first come first served (``fifo``: a link's transmit queue)
    or lowest task id first (the builders number ops oldest step first)."""
    env, duration, start, finish = engine.env, engine.duration, engine.start, engine.finish
    started, event, schedule = engine.started.append, _event(env), env.schedule
    queue: list[int] | deque = deque() if fifo else []
    push, pop = (queue.append, queue.popleft) if fifo else (partial(heappush, queue), partial(heappop, queue))
    idle, current = False, -1

    def ready(task: int) -> None:
        nonlocal idle
        push(task)
        if idle:
            idle = False
            event.callbacks = woken
            schedule(event, NORMAL, 0)

    def run(_event=None) -> None:
        nonlocal idle, current
        while queue:
            task = pop()
            start[task] = env.now
            started(task)
            ns = duration[task]
            if ns:
                current = task
                if cores is None:
                    event.callbacks = ended
                    schedule(event, NORMAL, ns)
                else:
                    cores.hold(ns, done)
                return
            finish(task)
        idle = True

    def done(_event) -> None:
        finish(current)
        run()

    ended, woken = (done,), (run,)
    return _Server(ready, run, lambda: -1)


class _SharedCores:
    """Processor sharing between devices: ``n`` ops running at once each progress at ``1 / factor(n)``.

    ``hold(work, callback)`` starts an op of ``work`` ns (its duration alone on the machine) whose end
    calls ``callback``. Whenever an op starts or ends, every running op's remaining work is charged
    the elapsed time at the old rate and the next completion is rescheduled at the new one (rounded
    up to whole ns; an op ends once its remaining work is under half a nanosecond).
    """

    def __init__(self, env: simpy.Environment, factor) -> None:
        self.env, self.factor = env, factor
        self.running: dict[simpy.Event, float] = {}
        self.last = 0
        self.generation = 0

    def _charge(self) -> None:
        now = self.env.now
        if self.running and now > self.last:
            done = (now - self.last) / self.factor(len(self.running))
            for event in self.running:
                self.running[event] -= done
        self.last = now

    def _schedule(self) -> None:
        self.generation += 1
        if not self.running:
            return
        wait = min(self.running.values()) * self.factor(len(self.running))
        timer = self.env.timeout(max(1, math.ceil(wait - 1e-6)) if wait > 0.5 else 0)
        generation = self.generation
        timer.callbacks.append(lambda _event: self._fire(generation))

    def _fire(self, generation: int) -> None:
        if generation != self.generation:  # a start or an end since rescheduled
            return
        self._charge()
        for event in [e for e, left in self.running.items() if left < 0.5]:
            del self.running[event]
            event.succeed()
        self._schedule()

    def hold(self, work: int, callback) -> None:
        """Start an op of ``work`` ns now; ``callback`` runs when it ends."""
        self._charge()
        event = self.env.event()
        event.callbacks.append(callback)
        self.running[event] = float(work)
        self._schedule()
