"""Training methods as dependency sets over one step's ops.

Locking is a set of dependencies between ops, and a method is nothing but that set
(see DESIGN.md). :meth:`Method.step_graph` gives, for a chain of ``K`` stages, every op one
training step runs and the ops each one waits for. The trainer executes a topological order of
that graph; the simulator adds cross-step and pipeline dependencies on top of it.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, replace
from typing import Iterable

from sglab.ops import Action

Graph = dict[Action, tuple[Action, ...]]


@dataclass(frozen=True)
class Method:
    """A training method: which ops a step runs and what each op waits for.

    Attributes:
        name: registry key (``bprop``, ``dni`` ...).
        description: one line for help texts and tables.
        synthetic_gradients: each non-last stage updates from a synthesizer's ``δ̂`` (S, T ops)
            instead of waiting for the true gradient (removes update and backward locking).
        context: synthesizers (and synthetic-input models) also see the one-hot label (cDNI).
        synthetic_inputs: each stage after the first reads ``ĥ = I(x, c)`` (SI, TI ops) instead
            of waiting for the stage below (removes forward locking).
        update_prob: probability that a stage runs its B and U in a given step (stochastic
            updates; the slides' "20% chance" is 0.2).
        lower_stages_learn: False for "No Bprop": only the last stage is trained.
    """

    name: str
    description: str
    synthetic_gradients: bool = False
    context: bool = False
    synthetic_inputs: bool = False
    update_prob: float = 1.0
    lower_stages_learn: bool = True

    def __post_init__(self) -> None:
        if not 0.0 < self.update_prob <= 1.0:
            raise ValueError(f"update_prob must be in (0, 1], got {self.update_prob}")
        if self.synthetic_inputs and not self.synthetic_gradients:
            raise ValueError("synthetic inputs need synthetic gradients: a stage fed ĥ cannot get a true gradient")

    def step_graph(self, num_stages: int, active: Iterable[bool] | None = None) -> Graph:
        """Every op of one step on a chain of ``num_stages`` stages, with its dependencies.

        ``active[i]`` False drops stage ``i``'s B and U (and the T that needs them) for this
        step, as stochastic updates do; by default every stage is active.
        """
        if num_stages < 1:
            raise ValueError(f"num_stages must be >= 1, got {num_stages}")
        active = [True] * num_stages if active is None else list(active)
        if len(active) != num_stages:
            raise ValueError(f"active has {len(active)} entries for {num_stages} stages")
        graph: Graph = {}

        def add(stage: int, op: str, *deps: Action) -> Action:
            action = Action(stage, op)
            graph[action] = tuple(deps)
            return action

        forwards = []
        for i in range(num_stages):
            if self.synthetic_inputs and i > 0:
                forwards.append(add(i, "F", add(i, "SI")))
            else:
                forwards.append(add(i, "F", *forwards[-1:]))
        if self.synthetic_gradients:
            self._add_unlocked_backward(add, forwards, active, graph)
        else:
            self._add_locked_backward(add, forwards, active)
        if self.synthetic_inputs:
            for i in range(1, num_stages):
                add(i, "TI", Action(i, "SI"), forwards[i - 1])
        return graph

    def _add_locked_backward(self, add, forwards, active) -> None:
        """Backprop: B_i waits for B_{i+1}; U_i waits for B_i (hence for the loss)."""
        last = len(forwards) - 1
        learners = range(last, -1, -1) if self.lower_stages_learn else [last]
        above = forwards[last]
        for i in learners:
            backward = add(i, "B", forwards[i], above)
            above = backward
            if active[i]:
                add(i, "U", backward)

    def _add_unlocked_backward(self, add, forwards, active, graph) -> None:
        """DNI: a stage's B waits only for its own S; T_{i-1} waits for B_i's input gradient."""
        last = len(forwards) - 1
        for i in range(last + 1):
            if not active[i]:
                continue
            if i < last:
                backward = add(i, "B", add(i, "S", forwards[i]))
            else:
                backward = add(i, "B", forwards[i])
            add(i, "U", backward)
            if i > 0 and Action(i - 1, "S") in graph:
                add(i - 1, "T", Action(i - 1, "S"), backward)

    def step_order(self, num_stages: int, active: Iterable[bool] | None = None) -> list[Action]:
        """A deterministic topological order of :meth:`step_graph` (lowest stage first)."""
        return topological_order(self.step_graph(num_stages, active))


def topological_order(graph: Graph) -> list[Action]:
    """Kahn's algorithm, breaking ties by (stage, op rank, microbatch); raises on cycles."""
    waiting = {action: set(deps) for action, deps in graph.items()}
    for action, deps in waiting.items():
        missing = deps - graph.keys()
        if missing:
            raise ValueError(f"{action} depends on ops that are not in the graph: {sorted(map(str, missing))}")
    users: dict[Action, list[Action]] = {action: [] for action in graph}
    for action, deps in waiting.items():
        for dep in deps:
            users[dep].append(action)
    key = lambda a: (a.stage, a.rank, a.microbatch)  # noqa: E731
    ready = [(key(a), a) for a, deps in waiting.items() if not deps]
    heapq.heapify(ready)
    order = []
    while ready:
        _, action = heapq.heappop(ready)
        order.append(action)
        for user in users[action]:
            waiting[user].discard(action)
            if not waiting[user]:
                heapq.heappush(ready, (key(user), user))
    if len(order) != len(graph):
        stuck = sorted(str(a) for a in graph if a not in set(order))
        raise ValueError(f"dependency cycle: these ops can never run: {', '.join(stuck)}")
    return order


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method("bprop", "backpropagation: forward, update and backward locked"),
        Method("nobprop", "no backprop: only the last stage learns", lower_stages_learn=False),
        Method("dni", "DNI: synthetic gradients at every interface", synthetic_gradients=True),
        Method("cdni", "cDNI: synthetic gradients conditioned on the label", synthetic_gradients=True, context=True),
        Method(
            "stochastic",
            "DNI with each stage updated with probability 0.2 per step",
            synthetic_gradients=True,
            update_prob=0.2,
        ),
        Method(
            "unlocked",
            "completely unlocked: synthetic inputs and synthetic gradients",
            synthetic_gradients=True,
            synthetic_inputs=True,
        ),
        Method(
            "cunlocked",
            "completely unlocked, synthesizers conditioned on the label",
            synthetic_gradients=True,
            synthetic_inputs=True,
            context=True,
        ),
    ]
}


def get_method(name: str, update_prob: float | None = None) -> Method:
    """Look up a method by name; ``update_prob`` overrides its per-stage update probability."""
    try:
        method = METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; choose one of: {', '.join(METHODS)}") from None
    if update_prob is not None and update_prob != method.update_prob:
        method = replace(method, update_prob=update_prob)
    return method
