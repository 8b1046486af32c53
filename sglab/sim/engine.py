"""The SimPy engine: one process per device and per link direction, integer nanoseconds.

Each resource is a capacity-one server: a SimPy process that takes one op at a time (by its
static order, its priority or first come first served), waits for the op's inputs, holds itself
for the op's duration and then releases the ops that waited for it. A server process is what a
``simpy.Resource(capacity=1)`` with a queue discipline amounts to, without the request/release
events per op, which makes the engine cheaper per op than a bare Resource loop.

With ``hardware.contention`` the devices share one machine (processes on one CPU): every running
compute op progresses at ``1 / contention_factor(n)`` while ``n`` devices compute (processor
sharing, :class:`_SharedCores`), so an op ends when its work is done at the rates it met.

Nothing ends early: if SimPy runs out of events before every op has run, the schedule can never
finish and :class:`SimError` names the stuck ops and what each one waits for.
"""

from __future__ import annotations

import gc
import itertools
import math
from collections import deque
from heapq import heappop, heappush

import simpy

from sglab.sim.errors import SimError
from sglab.sim.graph import TaskGraph


def label(graph: TaskGraph, task: int) -> str:
    """Torch-style name of a task with its step, e.g. ``1B0@3`` = stage 1, backward, microbatch 0, step 3."""
    return f"{graph.stage[task]}{graph.op[task]}{graph.micro[task]}@{graph.step[task]}"


class Engine:
    """Runs a :class:`TaskGraph` once; ``start``/``end`` hold each task's times after :meth:`run`."""

    def __init__(self, graph: TaskGraph, durations: list[int]) -> None:
        self.graph = graph
        self.env = simpy.Environment()
        n = len(durations)
        self.duration = durations
        self.start = [-1] * n
        self.end = [-1] * n
        self.seq = [-1] * n  # position of each op in the global start order (breaks time ties)
        self.counter = itertools.count()
        self.done = 0
        self.users: list[list[int]] = [[] for _ in range(n)]
        self.waiting = [len(deps) for deps in graph.deps]
        for task, deps in enumerate(graph.deps):
            for dep in deps:
                self.users[dep].append(task)
        kinds = {"static": _Static, "priority": _Priority, "fifo": _Fifo}
        self.servers = [kinds[s.policy](self, s.order) for s in graph.servers]
        if graph.hardware.contention:
            cores = _SharedCores(self.env, graph.hardware.contention_factor)
            for server, spec in zip(self.servers, graph.servers):
                if spec.kind == "device":
                    server.hold = cores.hold
        self._check_orders()

    def _check_orders(self) -> None:
        """Every op of a static server appears in its order exactly once."""
        graph = self.graph
        counts = [0] * len(self.duration)
        where = lambda task: graph.servers[graph.server[task]].name  # noqa: E731
        for index, spec in enumerate(graph.servers):
            if spec.policy != "static":
                continue
            for task in spec.order:
                if graph.server[task] != index:
                    raise SimError(f"{label(graph, task)} is in {spec.name}'s order but runs on {where(task)}")
                counts[task] += 1
        for task, count in enumerate(counts):
            static = graph.servers[graph.server[task]].policy == "static"
            if static and count != 1:
                raise SimError(f"{label(graph, task)} appears {count} times in {where(task)}'s order (must be once)")

    def run(self) -> "Engine":
        """Simulate until every op has run; raise :class:`SimError` if some never can."""
        for task, waiting in enumerate(self.waiting):
            if not waiting:
                self.servers[self.graph.server[task]].ready(task)
        for server in self.servers:
            self.env.process(server.loop())
        # The run frees its millions of short-lived events by reference counting; the cyclic
        # collector only rescans them (about 20% of the time at 1e6 ops), so it waits until the end.
        collecting = gc.isenabled()
        gc.disable()
        try:
            self.env.run()
        finally:
            if collecting:
                gc.enable()
        if self.done != len(self.duration):
            raise SimError(self._stuck_message())
        return self

    def finish(self, task: int) -> None:
        """Mark ``task`` done now and hand every op it unblocks to that op's server."""
        self.end[task] = self.env.now
        self.done += 1
        waiting, servers, server_of = self.waiting, self.servers, self.graph.server
        for user in self.users[task]:
            left = waiting[user] - 1
            waiting[user] = left
            if not left:
                servers[server_of[user]].ready(user)

    def _stuck_message(self, limit: int = 8) -> str:
        graph, end = self.graph, self.end
        stuck = [t for t in range(len(end)) if end[t] < 0]
        lines = [f"schedule cannot finish: {len(stuck)} of {len(end)} ops never ran (method {graph.method})"]
        for index, server in enumerate(self.servers):
            head = getattr(server, "blocked", -1)
            if head >= 0:
                unmet = [label(graph, d) for d in graph.deps[head] if end[d] < 0]
                lines.append(f"  {graph.servers[index].name} waits to run {label(graph, head)}, "
                             f"which needs {', '.join(unmet)}")
        shown = ", ".join(label(graph, t) for t in stuck[:limit])
        lines.append(f"  stuck ops: {shown}{' ...' if len(stuck) > limit else ''}")
        return "\n".join(lines)


class _Static:
    """Runs its order in sequence; the head op blocks the device until its inputs are there."""

    def __init__(self, engine: Engine, order: list[int]) -> None:
        self.engine, self.order = engine, order
        self.blocked = -1
        self.wake = None
        self.hold = engine.env.timeout  # an event that fires after the op's duration

    def ready(self, task: int) -> None:
        """``task``'s inputs are there: wake the device if it is waiting for exactly this op."""
        if task == self.blocked:
            self.blocked = -1
            self.wake.succeed()

    def loop(self):
        """The server's SimPy process."""
        engine = self.engine
        env, waiting, duration, start, finish = engine.env, engine.waiting, engine.duration, engine.start, engine.finish
        timeout, seq, counter = self.hold, engine.seq, engine.counter
        for task in self.order:
            if waiting[task]:
                self.blocked = task
                self.wake = env.event()
                yield self.wake
            start[task] = env.now
            seq[task] = next(counter)
            if duration[task]:
                yield timeout(duration[task])
            finish(task)


class _Priority:
    """Runs the ready op with the lowest task id (the builders number ops oldest step first)."""

    def __init__(self, engine: Engine, order: list[int]) -> None:
        self.engine = engine
        self.queue: list[int] = []
        self.idle = False
        self.wake = None
        self.hold = engine.env.timeout

    def ready(self, task: int) -> None:
        """Queue ``task`` and wake the server if it is idle."""
        self._push(task)
        if self.idle:
            self.idle = False
            self.wake.succeed()

    def _push(self, task: int) -> None:
        heappush(self.queue, task)

    def _pop(self) -> int:
        return heappop(self.queue)

    def loop(self):
        """The server's SimPy process."""
        engine = self.engine
        env, duration, start, finish = engine.env, engine.duration, engine.start, engine.finish
        timeout, queue, pop, seq, counter = self.hold, self.queue, self._pop, engine.seq, engine.counter
        while True:
            if not queue:
                self.idle = True
                self.wake = env.event()
                yield self.wake
            task = pop()
            start[task] = env.now
            seq[task] = next(counter)
            if duration[task]:
                yield timeout(duration[task])
            finish(task)


class _Fifo(_Priority):
    """Runs ready ops first come, first served (a link's transmit queue)."""

    def __init__(self, engine: Engine, order: list[int]) -> None:
        super().__init__(engine, order)
        self.queue = deque()

    def _push(self, task: int) -> None:
        self.queue.append(task)

    def _pop(self) -> int:
        return self.queue.popleft()


class _SharedCores:
    """Processor sharing between devices: ``n`` ops running at once each progress at ``1 / factor(n)``.

    ``hold(work)`` is the event of an op of ``work`` ns (its duration alone on the machine). Whenever
    an op starts or ends, every running op's remaining work is charged the elapsed time at the old
    rate and the next completion is rescheduled at the new one (rounded up to whole ns; an op ends
    once its remaining work is under half a nanosecond).
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

    def hold(self, work: int) -> simpy.Event:
        """The event of an op of ``work`` ns starting now."""
        self._charge()
        event = self.env.event()
        self.running[event] = float(work)
        self._schedule()
        return event
