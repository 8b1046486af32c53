"""Pipeline schedules with a flush per step: the registry's ``gpipe`` and ``1f1b``, and schedules written by hand.

A step splits into ``m`` microbatches of the profiled batch each. Every microbatch runs the ops
of ``method.step_graph(K)`` without its updates, with that graph's dependencies between ops of
the same microbatch; each stage then runs one U after all its B's, so weights never go stale
(a forward waits for its stage's update of the step before, as ``method.cross_step_edges``
says). Each device runs a static list of actions written like torch's (``2F3`` = stage 2,
forward, microbatch 3): the registry's :meth:`~sglab.methods.Method.rank_actions`, or the
lists of a :class:`UserSchedule`.

What costs what is as for every method (:mod:`sglab.sim.steps`): an op costs its profiled time
on its stage's device, a value crossing devices its transfer, and each microbatch's stage input
is stashed from its F to its B (so the schedule decides the memory).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

from sglab.methods import METHODS, Graph, Method, topological_order
from sglab.ops import ALL_OPS, Action
from sglab.sim.errors import SimUsageError
from sglab.sim.graph import TaskGraph
from sglab.sim.options import SimOptions
from sglab.sim.rank_orders import UPDATE, devices_for, method_orders, microbatch_graph, rank_schedule, stage_placement  # noqa: F401  (re-exported: the pipeline's public names)
from sglab.sim.steps import stash_buffers

#: Ops a schedule written by hand may list.
USER_OPS = ("F", "B", "U")


@dataclass(frozen=True, eq=False)
class UserSchedule:
    """A pipeline schedule written by hand: each rank's actions, with ``method``'s dependencies (backprop).

    Made by :func:`pipeline_schedule`; :func:`~sglab.sim.simulate` runs it like ``gpipe``.
    """

    name: str
    per_rank: dict[int, tuple[Action, ...]]
    description: str = ""
    method: Method = field(default_factory=lambda: METHODS["bprop"])

    @property
    def microbatches(self) -> int:
        """Microbatches per step: one more than the highest microbatch listed."""
        return 1 + max(a.microbatch for actions in self.per_rank.values() for a in actions)


def pipeline_schedule(name: str, per_rank: dict[int, Iterable[str | Action]], description: str = "") -> UserSchedule:
    """A static pipeline schedule from per-rank torch-style lists, e.g. ``{0: ["0F0", "0F1", "0B0", "0B1"], 1: [...]}``.

    Every stage must run F and B of each microbatch exactly once; a stage's U, unless listed,
    comes after its rank's last action. An order that can never finish (``0B0`` before
    ``0F0``) makes :func:`~sglab.sim.simulate` raise a :class:`SimError` naming the stuck ops.
    """
    parsed: dict[int, tuple[Action, ...]] = {}
    for rank, texts in per_rank.items():
        actions = []
        for text in texts:
            try:
                action = text if isinstance(text, Action) else Action.parse(text)
            except ValueError as err:
                raise SimUsageError(f"schedule {name!r}, rank {rank}: {err}") from None
            if action.op not in USER_OPS:
                raise SimUsageError(f"schedule {name!r}, rank {rank}: {action} is not one of the ops a schedule "
                                    f"may list ({', '.join(USER_OPS)})")
            actions.append(action)
        parsed[rank] = tuple(actions)
    if not any(parsed.values()):
        raise SimUsageError(f"schedule {name!r} lists no actions")
    return UserSchedule(name, parsed, description or f"user schedule {name}")


def user_orders(schedule: UserSchedule, placement: list[int]) -> dict[int, list[Action]]:
    """Each device's actions of a hand-written schedule, checked against the stages and microbatches."""
    num_stages, m, name = len(placement), schedule.microbatches, schedule.name
    orders: dict[int, list[Action]] = {}
    for rank, actions in sorted(schedule.per_rank.items()):
        stages = sorted({a.stage for a in actions})
        if stages and stages[-1] >= num_stages:
            raise SimUsageError(f"schedule {name!r}, rank {rank} lists stage {stages[-1]} but the profile has "
                                f"{num_stages} stages")
        devices = sorted({placement[s] for s in stages})
        if len(devices) > 1:
            raise SimUsageError(f"schedule {name!r}, rank {rank} lists stages {stages}, which the hardware places "
                                f"on {len(devices)} devices; a rank runs on one device")
        if devices and devices[0] in orders:
            raise SimUsageError(f"schedule {name!r}: ranks share device {devices[0]}; give each device one rank")
        if devices:
            listed = set(actions)
            orders[devices[0]] = list(actions) + [Action(s, UPDATE) for s in reversed(stages)
                                                  if Action(s, UPDATE) not in listed]
    ops = sorted({a.op for a in microbatch_graph(schedule.method, num_stages)}, key=ALL_OPS.index)
    listed = Counter(a for actions in orders.values() for a in actions)
    missing = [str(Action(s, op, j)) for s in range(num_stages) for op in ops for j in range(m)
               if Action(s, op, j) not in listed]
    twice = sorted(str(a) for a, count in listed.items() if count > 1)
    faults = ([f"missing: {', '.join(missing[:8])}"] if missing else []) + \
        ([f"listed twice: {', '.join(twice[:8])}"] if twice else [])
    if faults:
        raise SimUsageError(f"schedule {name!r} must run {' and '.join(ops)} of each of its {m} microbatches once "
                            f"on every one of {num_stages} stages; {'; '.join(faults)}")
    return orders


def _whole_backward(graph: Graph, stages: set[int]) -> Graph:
    """``graph`` with a whole ``B`` instead of ``I`` and ``W`` on ``stages`` (DualPipe-V mixes the two)."""
    if not stages:
        return graph
    merged = lambda a: Action(a.stage, "B") if a.op == "I" and a.stage in stages else a  # noqa: E731
    dropped = lambda a: a.op == "W" and a.stage in stages  # noqa: E731
    return {merged(a): tuple(merged(d) for d in deps if not dropped(d)) for a, deps in graph.items() if not dropped(a)}


def microbatch_graphs(method: Method, num_stages: int, orders: dict[int, list[Action]], microbatches: int) -> list[Graph]:
    """Each microbatch's ops and dependencies: :func:`microbatch_graph`, with a whole ``B`` on the
    stages where the orders list one for that microbatch instead of ``I`` and ``W``."""
    graph = microbatch_graph(method, num_stages)
    listed = {a for order in orders.values() for a in order}
    whole = {a.stage for a in graph if a.op == "I"}
    return [_whole_backward(graph, {s for s in whole if Action(s, "B", j) in listed}) for j in range(microbatches)]


def _creation_order(graphs: list[Graph]) -> list[Action]:
    """The step's ops, op by op in the order one microbatch first runs them, microbatch by microbatch.

    For a backprop pipeline that is every forward, then every backward (input gradients, then
    weight gradients when split): each op is created after the ops it waits for, and each
    device gets its ops in the order it runs them. A whole ``B`` takes the place of its ``I``.
    """
    orders = [topological_order(graph) for graph in graphs]
    split = any(a.op == "I" for order in orders for a in order)
    slot = lambda op: "I" if op == "B" and split else op  # noqa: E731
    kinds = dict.fromkeys(slot(a.op) for order in orders for a in order)
    return [Action(a.stage, a.op, j) for kind in kinds for j, order in enumerate(orders)
            for a in order if slot(a.op) == kind]


def build_pipeline(g: TaskGraph, method: Method, orders: dict[int, list[Action]], options: SimOptions) -> None:
    """Add ``options.steps`` flushed steps of ``options.microbatches`` to ``g``, each device running ``orders``."""
    if method.update_prob < 1:
        raise SimUsageError(f"{method.name!r} is a pipeline, which updates every stage every step; "
                            f"update_prob does not apply")
    num_stages, m = len(g.placement), options.microbatches
    whole = method.step_graph(num_stages)
    graphs = microbatch_graphs(method, num_stages, orders, m)
    created_in = _creation_order(graphs)
    updates = [(u, whole[u]) for u in topological_order(whole) if u.op == UPDATE]
    edges: dict[Action, list] = {}
    for edge in method.cross_step_edges(num_stages, options.max_ahead):
        edges.setdefault(edge.consumer, []).append((edge.producer, edge.lag))
    activation = [s.activation_bytes for s in g.profile.stages]
    steps: list[dict[Action, int]] = []
    device_orders: dict[int, list[int]] = {d: [] for d in orders}
    for step in range(options.steps):
        tasks: dict[Action, int] = {}
        for a in created_in:
            waits = [_input(g, tasks[Action(d.stage, d.op, a.microbatch)], d.stage, a.stage)
                     for d in graphs[a.microbatch][Action(a.stage, a.op)]]
            waits += _earlier(steps, step, edges.get(Action(a.stage, a.op), ()), a.microbatch)
            tasks[a] = g.compute(step, a.stage, a.op, a.microbatch, waits)
        for u, deps in updates:
            tasks[u] = g.compute(step, u.stage, UPDATE, 0, [_last_gradient(tasks, d, j) for d in deps
                                                             for j in range(m)])
        for j in range(m):
            for alloc, free, kind in stash_buffers(tasks, range(num_stages), j):
                g.buffer(activation[alloc.stage], tasks[alloc], tasks[free], kind)
        for d, order in orders.items():
            device_orders[d].extend(tasks[a] for a in order)
        steps.append(tasks)
    for d, order in device_orders.items():
        g.set_order(d, order)


def _last_gradient(tasks: dict[Action, int], dep: Action, microbatch: int) -> int:
    """The task of ``dep`` (a stage's B or W) on ``microbatch``; its whole B where that microbatch ran one."""
    task = tasks.get(Action(dep.stage, dep.op, microbatch))
    return tasks[Action(dep.stage, "B", microbatch)] if task is None else task


def _input(g: TaskGraph, producer: int, producer_stage: int, consumer_stage: int) -> int:
    return g.data(producer, consumer_stage) if producer_stage != consumer_stage else producer


def _earlier(steps: list[dict[Action, int]], step: int, edges, microbatch: int) -> list[int]:
    """The tasks of earlier steps that cross-step ``edges`` name; a once-per-step producer has microbatch 0."""
    out = []
    for producer, lag in edges:
        if step >= lag:
            j = 0 if producer.op == UPDATE else microbatch
            out.append(steps[step - lag][Action(producer.stage, producer.op, j)])
    return out
