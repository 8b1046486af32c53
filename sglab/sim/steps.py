"""Methods whose step is one minibatch: every op of every step, from the registry, on its stage's device.

Step ``t`` runs the ops of ``method.step_graph(K, active, locked)`` (see :mod:`sglab.methods`),
created in its topological order, and each op also waits for what
``method.cross_step_edges(K, max_ahead)`` says spans steps: a forward needs the weights of its
stage's last update (DDG: of an older one), and where stages run ahead of each other a forward
waits for the stage above's forward ``max_ahead`` steps back. ``active`` (stochastic updates)
and ``locked`` (stochastic unlocking) are drawn per step from the seed, only for methods that
use them, so every other method's trace does not depend on those draws.

What costs what: an op runs on its stage's device for its profiled cost; an op that reads
another stage's output waits for the transfer (:meth:`TaskGraph.data`); a cross-step edge is
weights already on the device or a queue's control signal, and costs nothing. Memory: a
stage's input activation is stashed from its F to its B, a synthesizer's input from S to T.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from sglab.methods import CrossStepEdge, Graph, Method, topological_order
from sglab.ops import Action
from sglab.sim.graph import TaskGraph
from sglab.sim.options import SimOptions
from sglab.sim.periodic import repeat_step

#: Memory a stage holds between two of its ops: (allocated at, freed after, kind). A split
#: backward holds the stage's input until its W, which needs it for the weight gradients.
STASHES = (("F", "B", "activation"), ("F", "W", "activation"), ("S", "T", "synth_input"))


def stash_buffers(ops: set[Action] | dict[Action, object], stages: range, microbatch: int = 0) -> list[tuple]:
    """``(alloc, free, kind)`` for each stash of :data:`STASHES` whose two ops both run."""
    out = []
    for stage in stages:
        for first, last, kind in STASHES:
            alloc, free = Action(stage, first, microbatch), Action(stage, last, microbatch)
            if alloc in ops and free in ops:
                out.append((alloc, free, kind))
    return out


def _draws(method: Method, num_stages: int, options: SimOptions) -> Iterator[tuple]:
    """``(active, locked)`` of each step; drawn only where the method's probabilities are below 1."""
    updates = np.random.default_rng([options.seed, 1]) if method.update_prob < 1 else None
    unlocks = np.random.default_rng([options.seed, 2]) if method.unlock_prob < 1 else None
    everyone = (True,) * num_stages
    for _ in range(options.steps):
        active = everyone if updates is None else method.active(updates.random(num_stages))
        locked = None if unlocks is None else method.locked(unlocks.random(num_stages - 1))
        yield active, locked


def _compile(graph: Graph, edges: list[CrossStepEdge]) -> tuple[list, list, dict]:
    """One step as positions, in topological order.

    Returns the plan ``(stage, op, ((dep position, crosses stages), ...), ((producer, lag), ...))``,
    the buffers ``(alloc position, free position, kind)`` and each op's position.
    """
    order = topological_order(graph)
    pos = {action: n for n, action in enumerate(order)}
    across: dict[Action, list] = {}
    for edge in edges:
        across.setdefault(edge.consumer, []).append((edge.producer, edge.lag))
    plan = [(a.stage, a.op, tuple((pos[d], d.stage != a.stage) for d in graph[a]), tuple(across.get(a, ())))
            for a in order]
    stages = range(max((a.stage for a in order), default=-1) + 1)
    buffers = [(pos[alloc], pos[free], kind) for alloc, free, kind in stash_buffers(pos, stages)]
    return plan, buffers, pos


def _prepare(compiled: tuple, latest: dict, g: TaskGraph, orders: dict, static: bool) -> tuple:
    """A compiled step with what the build loop looks up per op resolved once: each cross-step
    producer's list of latest tasks, each op's device order (static policies), each stash's bytes."""
    plan, buffers, pos = compiled
    activation = [s.activation_bytes for s in g.profile.stages]
    ops = [(stage, op, deps, tuple((latest[producer], lag) for producer, lag in across),
            orders.setdefault(g.placement[stage], []) if static else None) for stage, op, deps, across in plan]
    sized = [(activation[plan[alloc][0]], alloc, free, kind) for alloc, free, kind in buffers]
    tracked = [(seen, pos.get(producer)) for producer, seen in latest.items()]
    return ops, sized, tracked


def build_steps(g: TaskGraph, method: Method, options: SimOptions) -> None:
    """Add ``options.steps`` steps of ``method`` to ``g`` (static device orders where the method's policy is static).

    Where every step draws the same ops (no stochastic updates or unlocking), the steps after the
    cross-step edges' longest lag are alike, so the rest of the run is copied from the last built
    step (:func:`~sglab.sim.periodic.repeat_step`, which checks the copy first).
    """
    num_stages = len(g.placement)
    edges = method.cross_step_edges(num_stages, options.max_ahead)
    static = method.policy == "static"
    # per cross-step producer, the latest task of it at or before each step (a stage that skips
    # an update keeps the weights of its last one)
    latest: dict[Action, list[int | None]] = {edge.producer: [] for edge in edges}
    plans: dict[tuple, tuple] = {}
    orders: dict[int, list[int]] = {}
    alike = isinstance(g, TaskGraph) and method.update_prob >= 1 and method.unlock_prob >= 1
    copy_after = max((edge.lag for edge in edges), default=0) + 1 if alike else options.steps
    start = 0
    for step, draw in enumerate(_draws(method, num_stages, options)):
        previous, start = start, len(g) if alike else 0
        if draw not in plans:
            plans[draw] = _prepare(_compile(method.step_graph(num_stages, *draw), edges), latest, g, orders, static)
        _add_step(g, step, *plans[draw])
        left = options.steps - step - 1
        if step == copy_after and left and repeat_step(g, previous, start, left, orders):
            break
    for device, order in orders.items():
        g.set_order(device, order)


def _add_step(g: TaskGraph, step: int, plan: list, buffers: list, tracked: list) -> None:
    """Add one step's ops, stashes and latest cross-step producers."""
    ids = [0] * len(plan)
    for n, (stage, op, deps, across, order) in enumerate(plan):
        waits = [g.data(ids[p], stage) if crosses else ids[p] for p, crosses in deps]
        for seen, lag in across:
            earlier = seen[step - lag] if step >= lag else None
            if earlier is not None:
                waits.append(earlier)
        ids[n] = g.compute(step, stage, op, 0, waits)
        if order is not None:
            order.append(ids[n])
    for nbytes, alloc, free, kind in buffers:
        g.buffer(nbytes, ids[alloc], ids[free], kind)
    for seen, n in tracked:
        seen.append(ids[n] if n is not None else (seen[-1] if seen else None))
