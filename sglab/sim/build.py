"""Training methods as task graphs over many steps: which ops run, on which device, after what.

The DNI family and backprop reuse :meth:`sglab.methods.Method.step_graph` for each step's
dependencies and add what spans steps: ``F_i(t)`` needs the weights of stage i's last update,
and (for ready-queue methods) ``F_i(t)`` waits for ``F_{i+1}(t - max_ahead)`` so a fast stage
cannot run unboundedly ahead of a slow one (a bounded queue between stages; a zero-cost
control signal). Pipelines live in :mod:`sglab.sim.pipeline`. Locked methods run a static
per-device order; unlocked ones a ready queue, oldest step first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from sglab.methods import METHODS, Method, topological_order
from sglab.ops import Action
from sglab.sim.errors import SimError
from sglab.sim.graph import TaskGraph
from sglab.sim.pipeline import build_pipeline, fixed_actions


@dataclass(frozen=True)
class SimOptions:
    """Knobs of one simulation.

    Attributes:
        steps: training steps (each one minibatch, or ``microbatches`` of them for pipelines).
        microbatches: per step for ``gpipe``/``1f1b``; default ``4 ×`` the pipeline ranks
            (GPipe's rule of thumb for a small bubble). Other methods use 1.
        seed: draws slowdowns and stochastic updates; equal seeds give equal traces.
        synth_cost_ratio: synthesizer costs relative to F where the profile lacks them
            (see :mod:`sglab.sim.costs`); ``override_synth`` applies it even where measured.
        update_prob: per-stage update probability of ``stochastic`` (default the method's 0.2).
        unlock_prob: per-stage, per-step probability that ``mixed`` uses the synthetic gradient
            instead of waiting for the true one.
        max_ahead: steps a ready-queue stage may run ahead of the stage above (None: unbounded).
        param_copies: parameter-sized buffers resident per stage (weights, gradients and two
            Adam moments = 4) for the memory check.
    """

    steps: int = 20
    microbatches: int | None = None
    seed: int = 0
    synth_cost_ratio: float | None = None
    override_synth: bool = False
    update_prob: float | None = None
    unlock_prob: float = 0.5
    max_ahead: int | None = 2
    param_copies: int = 4

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise SimError(f"steps must be >= 1, got {self.steps}")
        if self.microbatches is not None and self.microbatches < 1:
            raise SimError(f"microbatches must be >= 1, got {self.microbatches}")
        if self.max_ahead is not None and self.max_ahead < 1:
            raise SimError(f"max_ahead must be >= 1 or None, got {self.max_ahead}")
        if self.update_prob is not None and not 0 < self.update_prob <= 1:
            raise SimError(f"update_prob must be in (0, 1], got {self.update_prob}")
        if not 0 <= self.unlock_prob <= 1:
            raise SimError(f"unlock_prob must be in [0, 1], got {self.unlock_prob}")


@dataclass(frozen=True)
class SimMethod:
    """A simulated method: how to build its task graph and how devices pick ops."""

    name: str
    description: str
    build: Callable[[TaskGraph, SimOptions], None]
    policy: str  # "static" or "priority"
    needs: tuple[str, ...] = ("F", "B", "U")
    one_device: bool = False
    pipelined: bool = False
    fixed_microbatches: int | None = None

    def microbatches(self, options: SimOptions, ranks: int) -> int:
        """Microbatches per step under ``options`` on ``ranks`` pipeline ranks."""
        if self.fixed_microbatches is not None:
            return self.fixed_microbatches
        if not self.pipelined or self.name == "naive":
            return 1
        return options.microbatches or 4 * ranks


def _compile(method: Method, num_stages: int, active: tuple[bool, ...],
             locked: tuple[bool, ...] = ()) -> tuple[list, list]:
    """One step of ``method`` as positions: ``(stage, op, ((dep position, crosses stages), ...))`` in
    topological order, and its buffers ``(alloc position, free position, kind)``.

    ``locked[i]``: stage i's B also waits for the true gradient from B_{i+1} this step.
    """
    graph = method.step_graph(num_stages, active)
    for i, lock in enumerate(locked):
        if lock and Action(i, "B") in graph and Action(i + 1, "B") in graph:
            graph[Action(i, "B")] += (Action(i + 1, "B"),)
    order = topological_order(graph)
    pos = {action: n for n, action in enumerate(order)}
    plan = [(a.stage, a.op, tuple((pos[d], d.stage != a.stage) for d in graph[a])) for a in order]
    buffers = []
    for i in range(num_stages):  # activations stashed from F to B; a synthesizer's input kept from S to T
        if Action(i, "B") in pos:
            buffers.append((pos[Action(i, "F")], pos[Action(i, "B")], "activation"))
        if Action(i, "T") in pos:
            buffers.append((pos[Action(i, "S")], pos[Action(i, "T")], "synth_input"))
    return plan, buffers


def _build_steps(method: Method, g: TaskGraph, options: SimOptions, mixed: bool = False) -> None:
    """Each step's ``method.step_graph`` plus the cross-step dependencies (module docstring).

    ``mixed``: each stage but the last waits for its true gradient with probability
    ``1 - options.unlock_prob`` per step (stochastic unlocking).
    """
    num_stages = len(g.placement)
    static = g.servers[0].policy == "static"
    update_prob = method.update_prob if options.update_prob is None else options.update_prob
    rng = np.random.default_rng([options.seed, 1])
    unlock_rng = np.random.default_rng([options.seed, 2])
    orders: dict[int, list[int]] = {}
    last_update: list[int | None] = [None] * num_stages
    forwards: list[list[int]] = [[] for _ in range(num_stages)]
    plans: dict[tuple[bool, ...], tuple] = {}
    bound = None if static else options.max_ahead
    activation = [s.activation_bytes for s in g.profile.stages]
    for step in range(options.steps):
        active = (True,) * num_stages
        if update_prob < 1:
            active = tuple(bool(a) for a in rng.random(num_stages) < update_prob)
        locked = tuple(bool(x) for x in unlock_rng.random(num_stages - 1) >= options.unlock_prob) if mixed else ()
        if (active, locked) not in plans:
            plans[active, locked] = _compile(method, num_stages, active, locked)
        plan, buffers = plans[active, locked]
        ids = [0] * len(plan)
        for n, (i, op, deps) in enumerate(plan):
            waits = [g.data(ids[p], i) if crosses else ids[p] for p, crosses in deps]
            if op == "F":
                if last_update[i] is not None:
                    waits.append(last_update[i])
                if bound is not None and i + 1 < num_stages and step >= bound:
                    waits.append(forwards[i + 1][step - bound])
            task = ids[n] = g.compute(step, i, op, 0, waits)
            if op == "F":
                forwards[i].append(task)
            elif op == "U":
                last_update[i] = task
            if static:
                orders.setdefault(g.placement[i], []).append(task)
        for alloc, free, kind in buffers:
            g.buffer(activation[plan[alloc][0]], ids[alloc], ids[free], kind)
    for device, order in orders.items():
        g.set_order(device, order)


def _build_ddg(g: TaskGraph, options: SimOptions) -> None:
    """DDG (Huo et al., 2018): stage k's F(t) uses weights updated up to step ``t - 1 - (K-1-k)``.

    Backward stays a true, locked backward of each batch, but no stage waits for the gradient
    of its own latest forward: stage k runs K-1-k steps ahead of its gradients.
    """
    num_stages = len(g.placement)
    updates: list[list[int]] = [[] for _ in range(num_stages)]
    for step in range(options.steps):
        fwd, bwd = [0] * num_stages, [0] * num_stages
        for i in range(num_stages):
            deps = [g.data(fwd[i - 1], i)] if i else []
            waits_for = step - 1 - (num_stages - 1 - i)
            if waits_for >= 0:
                deps.append(updates[i][waits_for])
            fwd[i] = g.compute(step, i, "F", 0, deps)
        for i in reversed(range(num_stages)):
            above = [g.data(bwd[i + 1], i)] if i + 1 < num_stages else []
            bwd[i] = g.compute(step, i, "B", 0, [fwd[i], *above])
            g.buffer(g.profile.stages[i].activation_bytes, fwd[i], bwd[i])
            updates[i].append(g.compute(step, i, "U", 0, [bwd[i]]))


def _build_dgl(g: TaskGraph, options: SimOptions) -> None:
    """DGL (Belilovsky et al., 2020): every stage but the last learns from an auxiliary local loss.

    The auxiliary head reuses the synthesizer ops: S is its forward and loss, T its backward and
    update. No gradient crosses an interface, so there is no backward traffic at all.
    """
    num_stages = len(g.placement)
    last_update: list[int | None] = [None] * num_stages
    forwards: list[list[int]] = [[] for _ in range(num_stages)]
    bound = options.max_ahead
    for step in range(options.steps):
        previous = None
        for i in range(num_stages):
            deps = [g.data(previous, i)] if previous is not None else []
            if last_update[i] is not None:
                deps.append(last_update[i])
            if bound is not None and i + 1 < num_stages and step >= bound:
                deps.append(forwards[i + 1][step - bound])
            fwd = previous = g.compute(step, i, "F", 0, deps)
            forwards[i].append(fwd)
            head = g.compute(step, i, "S", 0, [fwd]) if i + 1 < num_stages else fwd
            bwd = g.compute(step, i, "B", 0, [head])
            if head != fwd:
                g.compute(step, i, "T", 0, [head])
            g.buffer(g.profile.stages[i].activation_bytes, fwd, bwd)
            last_update[i] = g.compute(step, i, "U", 0, [bwd])


def _steps_of(name: str, mixed: bool = False) -> Callable[[TaskGraph, SimOptions], None]:
    return lambda g, options: _build_steps(METHODS[name], g, options, mixed)


def _pipeline_of(kind: str) -> Callable[[TaskGraph, SimOptions], None]:
    return lambda g, options: build_pipeline(g, kind, options.steps, options.microbatches or 1)


_SYNTH = ("F", "B", "U", "S", "T")
#: Every method the simulator knows, by name.
SIM_METHODS: dict[str, SimMethod] = {m.name: m for m in [
    SimMethod("sequential", "backprop with every stage on one device (the speedup baseline)", _steps_of("bprop"),
              "static", one_device=True),
    SimMethod("naive", "naive model parallel: backprop, one stage per device, one batch at a time",
              _pipeline_of("naive"), "static", pipelined=True),
    SimMethod("gpipe", "GPipe: all microbatch forwards, then all backwards, flush per step",
              _pipeline_of("gpipe"), "static", pipelined=True),
    SimMethod("1f1b", "1F1B (PipeDream-Flush): warm-up forwards, then one forward one backward",
              _pipeline_of("1f1b"), "static", pipelined=True),
    SimMethod("nobprop", "no backprop: only the last stage learns", _steps_of("nobprop"), "static"),
    SimMethod("dni", "DNI: a stage updates after its own synthetic gradient; T runs when the target arrives",
              _steps_of("dni"), "priority", _SYNTH),
    SimMethod("cdni", "cDNI: DNI with label-conditioned synthesizers (same dependencies)", _steps_of("cdni"),
              "priority", _SYNTH),
    SimMethod("stochastic", "DNI where each stage updates with probability p per step (default 0.2)",
              _steps_of("stochastic"), "priority", _SYNTH),
    SimMethod("mixed", "stochastic unlocking: DNI, but each stage waits for the true gradient with "
              "probability 1-p per step (default p 0.5)", _steps_of("dni", mixed=True), "priority", _SYNTH),
    SimMethod("unlocked", "completely unlocked: synthetic inputs and synthetic gradients", _steps_of("unlocked"),
              "priority", _SYNTH + ("SI", "TI")),
    SimMethod("cunlocked", "completely unlocked with label-conditioned synthesizers", _steps_of("cunlocked"),
              "priority", _SYNTH + ("SI", "TI")),
    SimMethod("ddg", "DDG: decoupled backprop with delayed gradients (stage k is K-1-k steps stale)",
              _build_ddg, "priority"),
    SimMethod("dgl", "DGL: decoupled greedy learning, local auxiliary losses, no backward traffic",
              _build_dgl, "priority", _SYNTH),
]}
#: Other names accepted for a method.
ALIASES = {"bprop": "naive", "backprop": "sequential", "pipedream-flush": "1f1b"}


def get_sim_method(name: str) -> SimMethod:
    """The method called ``name`` (or an alias); :class:`SimError` lists the known ones."""
    method = SIM_METHODS.get(ALIASES.get(name, name))
    if method is None:
        raise SimError(f"unknown method {name!r}; choose one of: {', '.join(SIM_METHODS)}")
    return method


def pipeline_schedule(name: str, per_rank: dict[int, list[str]], description: str = "") -> SimMethod:
    """A static pipeline method from per-rank action lists, e.g. ``{0: ["F0", "F1", "B0", "B1"], ...}``.

    Every rank must list ``F j`` and ``B j`` of each microbatch once; an order that can never
    finish (``B0`` before ``F0``) makes :func:`~sglab.sim.simulate` raise a :class:`SimError`
    naming the stuck ops.
    """
    actions = fixed_actions(per_rank)
    microbatches = max(j for texts in per_rank.values() for j in (int(t.strip()[1:]) for t in texts)) + 1
    build = lambda g, options: build_pipeline(g, actions, options.steps, options.microbatches)  # noqa: E731
    return SimMethod(name, description or f"user schedule {name}", build, "static", pipelined=True,
                     fixed_microbatches=microbatches)
