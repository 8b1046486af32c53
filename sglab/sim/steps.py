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


def build_steps(g: TaskGraph, method: Method, options: SimOptions) -> None:
    """Add ``options.steps`` steps of ``method`` to ``g`` (static device orders where the method's policy is static)."""
    num_stages = len(g.placement)
    edges = method.cross_step_edges(num_stages, options.max_ahead)
    static = method.policy == "static"
    activation = [s.activation_bytes for s in g.profile.stages]
    # per cross-step producer, the latest task of it at or before each step (a stage that skips
    # an update keeps the weights of its last one)
    latest: dict[Action, list[int | None]] = {edge.producer: [] for edge in edges}
    plans: dict[tuple, tuple] = {}
    orders: dict[int, list[int]] = {}
    for step, (active, locked) in enumerate(_draws(method, num_stages, options)):
        if (active, locked) not in plans:
            plans[active, locked] = _compile(method.step_graph(num_stages, active, locked), edges)
        plan, buffers, pos = plans[active, locked]
        ids = [0] * len(plan)
        for n, (stage, op, deps, across) in enumerate(plan):
            waits = [g.data(ids[p], stage) if crosses else ids[p] for p, crosses in deps]
            for producer, lag in across:
                earlier = latest[producer][step - lag] if step >= lag else None
                if earlier is not None:
                    waits.append(earlier)
            ids[n] = g.compute(step, stage, op, 0, waits)
            if static:
                orders.setdefault(g.placement[stage], []).append(ids[n])
        for alloc, free, kind in buffers:
            g.buffer(activation[plan[alloc][0]], ids[alloc], ids[free], kind)
        for producer, seen in latest.items():
            n = pos.get(producer)
            seen.append(ids[n] if n is not None else (seen[-1] if seen else None))
    for device, order in orders.items():
        g.set_order(device, order)
