"""The one method registry: every training method as a set of dependencies between ops.

Locking is a set of dependencies between ops, and a method is nothing but that set (see
docs/design.md). A :class:`Method` says what crosses an interface backwards (the true gradient,
a synthetic one, nothing, or a local loss's), whether synthesizers see the label, whether inputs
are synthesized too, how often stages update, and, for pipeline schedules, each rank's list of
actions. Applied to a :class:`Chain` (the stages a runner trains) it gives

- :meth:`Method.step_graph`: every op of one step and the ops each one waits for;
- :meth:`Method.cross_step_edges`: what spans steps (weights of the last update, DDG's
  staleness, the bounded queue ``max_ahead`` between unlocked stages);
- :meth:`Method.rank_actions`: per-rank action lists like torch's (``2F0``, ``1B3``) for
  pipeline schedules (:mod:`sglab.schedules`, which also adds their sends and receives).

Every runner reads this module: the feed-forward trainer, the recurrent and two-RNN runners
and the simulator. Each says which methods it runs (:data:`RUNNERS`, :attr:`Method.runners`);
:func:`get_method` asked for a method a runner cannot run names the runners that can.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field, replace
from typing import Iterable, Sequence

from sglab.errors import UsageError
from sglab.ops import Action
from sglab.schedules import SCHEDULES

Graph = dict[Action, tuple[Action, ...]]

#: The runners that execute methods, by name, with what each one is.
RUNNERS = {
    "train": "feed-forward training (sglab train --task classify)",
    "recurrent": "recurrent training in chunks of T ticks (sglab train --task copy, repeat-copy, charlm)",
    "two-rnn": "two recurrent networks talking through an interface (sglab train --task two-rnn)",
    "rnn-chain": "K recurrent networks in a chain, each on its own clock (sglab train --task rnn-chain)",
    "sim": "the simulator (sglab simulate, sglab sweep)",
}
#: What may cross an interface backwards.
GRADIENTS = ("true", "synthetic", "none", "local")


class MethodError(UsageError):
    """An unknown method, or one that the runner asked cannot run; the message names the alternatives."""


@dataclass(frozen=True)
class Chain:
    """The chain of stages a method runs on.

    Attributes:
        num_stages: stages ``0..K-1``.
        losses: stages with a loss of their own (default: the last one only). A recurrent
            network's chunks each have one; so do both of two talking networks.
        tied: the stages share one set of weights and one synthesizer (chunks of a recurrent
            network in time), so a stage's forward waits for the update before it.
        carried: stage 0 is the state carried in from before this step (the previous window of
            a stream, or the initial state): it runs no ops, but for synthetic gradients the
            synthesizer is trained on its interface (``0T``) once stage 1's backward has run.
        open_end: the last stage's output goes on beyond this step (a stream): with synthetic
            gradients a synthesizer stands in for that future (``S`` on the last stage).
    """

    num_stages: int
    losses: frozenset[int] | None = None
    tied: bool = False
    carried: bool = False
    open_end: bool = False

    def __post_init__(self) -> None:
        if self.num_stages < 1 + self.carried:
            raise ValueError(f"a chain needs at least {1 + self.carried} stages, got {self.num_stages}")
        if self.losses is not None and not set(self.losses) <= set(range(self.num_stages)):
            raise ValueError(f"losses {sorted(self.losses)} name stages outside 0..{self.num_stages - 1}")

    @property
    def loss_stages(self) -> frozenset[int]:
        """The stages with a loss of their own."""
        return frozenset({self.num_stages - 1}) if self.losses is None else frozenset(self.losses)

    @property
    def first(self) -> int:
        """The first stage that runs ops (1 when stage 0 is carried in)."""
        return 1 if self.carried else 0


@dataclass(frozen=True)
class CrossStepEdge:
    """``consumer`` of step ``t`` waits for ``producer`` of step ``t - lag`` (ignored where ``t < lag``)."""

    consumer: Action
    producer: Action
    lag: int


@dataclass(frozen=True)
class Method:
    """A training method: which ops a step runs and what each op waits for.

    Attributes:
        name: registry key (``bprop``, ``dni`` ...).
        description: one line for help texts and tables.
        gradient: what crosses an interface backwards. ``true``: the real gradient (B_i waits
            for B_{i+1}); ``synthetic``: a synthesizer's ``δ̂`` (S, T ops) so a stage updates
            without waiting (removes update and backward locking); ``none``: nothing, a stage
            learns only from a loss of its own; ``local``: an auxiliary local loss (DGL, whose
            head runs as S and trains as T), and no gradient crosses.
        context: synthesizers (and synthetic-input models) also see the one-hot label (cDNI).
        synthetic_inputs: each stage after the first reads ``ĥ = I(x, c)`` (SI, TI ops) instead
            of waiting for the stage below (removes forward locking).
        update_prob: probability that a stage runs its B and U in a given step (stochastic
            updates; the slides' "20% chance" is 0.2).
        unlock_prob: with synthetic gradients, the probability per stage and step of using the
            synthetic gradient rather than waiting for the true one (stochastic unlocking).
        aux: the recurrent DNI+Aux auxiliary task (the last chunk's S also runs, for its target).
        weight_delay: DDG: stage i's forward uses weights ``K-1-i`` updates older than plain
            backprop's, so no stage waits for the gradient of its own latest forward.
        schedule: a pipeline schedule (:data:`sglab.schedules.SCHEDULES`): each step is ``m``
            microbatches run in the order of :meth:`rank_actions`, with one update per stage
            after its last backward.
        stages_per_rank: stages each pipeline rank holds (interleaved and V-shaped schedules: 2 by
            default); the schedule's own number where it fixes one.
        runners: the runners (:data:`RUNNERS`) that can run it.
    """

    name: str
    description: str
    gradient: str = "true"
    context: bool = False
    synthetic_inputs: bool = False
    update_prob: float = 1.0
    unlock_prob: float = 1.0
    aux: bool = False
    weight_delay: bool = False
    schedule: str | None = None
    stages_per_rank: int = 1
    runners: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if self.gradient not in GRADIENTS:
            raise ValueError(f"gradient must be one of {', '.join(GRADIENTS)}, got {self.gradient!r}")
        if not 0.0 < self.update_prob <= 1.0:
            raise ValueError(f"update_prob must be in (0, 1], got {self.update_prob}")
        if not 0.0 <= self.unlock_prob <= 1.0:
            raise ValueError(f"unlock_prob must be in [0, 1], got {self.unlock_prob}")
        if self.synthetic_inputs and not self.synthetic_gradients:
            raise ValueError("synthetic inputs need synthetic gradients: a stage fed ĥ cannot get a true gradient")
        if self.schedule is not None and self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; known: {', '.join(SCHEDULES)}")
        fixed = SCHEDULES[self.schedule].stages_per_rank if self.schedule else 1
        if self.stages_per_rank < 1 or fixed not in (None, self.stages_per_rank):
            raise ValueError(f"schedule {self.schedule!r} puts {fixed} stage(s) on a rank, not {self.stages_per_rank}")
        unknown = set(self.runners) - set(RUNNERS)
        if unknown:
            raise ValueError(f"unknown runners {sorted(unknown)}; known: {', '.join(RUNNERS)}")

    @property
    def synthetic_gradients(self) -> bool:
        """Whether stages update from a synthesizer's gradient (S and T ops)."""
        return self.gradient == "synthetic"

    @property
    def pipelined(self) -> bool:
        """Whether a step is a pipeline of microbatches (:meth:`rank_actions`)."""
        return self.schedule is not None

    @property
    def split_backward(self) -> bool:
        """Whether the backward runs as ``I`` (input gradient) and a later ``W`` (weight gradients), ``B = I + W``."""
        return self.pipelined and SCHEDULES[self.schedule].split_backward

    @property
    def policy(self) -> str:
        """How a device picks its next op: ``static`` (a fixed order, for methods whose stages
        wait for each other) or ``ready`` (the oldest ready op, for methods whose stages run ahead)."""
        ahead = self.gradient in ("synthetic", "local") or self.weight_delay
        return "ready" if ahead else "static"

    # ---- one step ----------------------------------------------------------------------

    def learns(self, stage: int, chain: Chain) -> bool:
        """Whether ``stage`` ever receives a gradient under this method (so its forward keeps a graph)."""
        if stage < chain.first:
            return False
        if self.gradient in ("synthetic", "local"):
            return True
        losses = chain.loss_stages
        if self.gradient == "true":
            return stage <= max(losses)
        return stage in losses

    def active(self, draws: Sequence[float]) -> tuple[bool, ...]:
        """Which stages run B and U this step, from one uniform draw per stage."""
        return tuple(bool(d < self.update_prob) for d in draws)

    def locked(self, draws: Sequence[float]) -> tuple[bool, ...]:
        """Which interfaces wait for the true gradient this step, from one uniform draw each."""
        return tuple(bool(d >= self.unlock_prob) for d in draws)

    @staticmethod
    def waiting(active: Sequence[bool], locked: Sequence[bool]) -> tuple[bool, ...]:
        """Which stages' B waits for the true gradient: locked, and the stage above runs its B this step
        (a locked interface whose upper stage skips its update falls back to the synthetic gradient)."""
        k = len(active)
        return tuple(bool(i < len(locked) and locked[i] and i + 1 < k and active[i + 1]) for i in range(k))

    def step_graph(self, chain: Chain | int, active: Iterable[bool] | None = None,
                   locked: Iterable[bool] | None = None) -> Graph:
        """Every op of one step on ``chain`` (or on a plain chain of that many stages), with its dependencies.

        ``active[i]`` False drops stage ``i``'s B and U (and the S and T that go with them) for
        this step, as stochastic updates do; ``locked[i]`` True makes stage ``i``'s B also wait
        for the true gradient from stage ``i+1`` (stochastic unlocking). By default every stage
        is active and nothing is locked.
        """
        chain = chain if isinstance(chain, Chain) else Chain(chain)
        k = chain.num_stages
        active = [True] * k if active is None else list(active)
        locked = [False] * k if locked is None else list(locked)
        if len(active) != k:
            raise ValueError(f"active has {len(active)} entries for {k} stages")
        graph: Graph = {}

        def add(stage: int, op: str, *deps: Action) -> Action:
            action = Action(stage, op)
            graph[action] = tuple(d for d in deps if d is not None)
            return action

        forwards = self._add_forwards(add, chain)
        backward = {"true": self._add_true_backward, "none": self._add_local_backward,
                    "synthetic": self._add_synthetic_backward, "local": self._add_aux_backward}[self.gradient]
        backward(add, graph, chain, forwards, active, locked)
        if self.synthetic_inputs:
            for i in range(chain.first + 1, k):
                add(i, "TI", Action(i, "SI"), forwards[i - 1])
        if chain.tied:
            _tie(graph, chain)
        return graph

    def _add_forwards(self, add, chain: Chain) -> list[Action | None]:
        forwards: list[Action | None] = [None] * chain.num_stages
        for i in range(chain.first, chain.num_stages):
            if self.synthetic_inputs and i > chain.first:
                forwards[i] = add(i, "F", add(i, "SI"))
            else:
                forwards[i] = add(i, "F", forwards[i - 1] if i > chain.first else None)
        return forwards

    def _add_true_backward(self, add, graph, chain, forwards, active, locked) -> None:
        """Backprop: B_i waits for B_{i+1}; U_i waits for B_i (hence for the loss).

        Split (``B = I + W``): I_i waits for I_{i+1}; W_i, which only stage i needs, waits for
        I_i and may run later; U_i waits for W_i.
        """
        above = None
        for i in range(max(chain.loss_stages), chain.first - 1, -1):
            above = add(i, "I" if self.split_backward else "B", forwards[i], above)
            last = add(i, "W", above) if self.split_backward else above
            if active[i]:
                add(i, "U", last)

    def _add_local_backward(self, add, graph, chain, forwards, active, locked) -> None:
        """Nothing crosses an interface: a stage with a loss of its own backpropagates it alone."""
        for i in sorted(chain.loss_stages, reverse=True):
            if i >= chain.first:
                backward = add(i, "B", forwards[i])
                if active[i]:
                    add(i, "U", backward)

    def _add_synthetic_backward(self, add, graph, chain, forwards, active, locked) -> None:
        """DNI: a stage's B waits only for its own S; T_{i-1} waits for B_i's input gradient."""
        last = chain.num_stages - 1
        waiting = self.waiting(active, locked)
        for i in range(chain.first, last + 1):
            if not active[i]:
                continue
            synthetic = i < last or chain.open_end or self.aux
            deps = [add(i, "S", forwards[i])] if synthetic else [forwards[i]]
            if waiting[i]:
                deps.append(Action(i + 1, "B"))
            backward = add(i, "B", *deps)
            add(i, "U", backward)
            if i > chain.first and Action(i - 1, "S") in graph:
                add(i - 1, "T", Action(i - 1, "S"), backward)
        if chain.carried and active[chain.first]:
            # the carried interface's prediction was made last step; its target is stage 1's input gradient
            add(0, "T", Action(chain.first, "B"))

    def _add_aux_backward(self, add, graph, chain, forwards, active, locked) -> None:
        """DGL: every stage but the last learns from an auxiliary head (S: its forward and loss,
        T: its backward and update); no gradient crosses an interface."""
        last = chain.num_stages - 1
        for i in range(chain.first, last + 1):
            if not active[i]:
                continue
            if i < last:
                head = add(i, "S", forwards[i])
                backward = add(i, "B", head)
                add(i, "T", head)
            else:
                backward = add(i, "B", forwards[i])
            add(i, "U", backward)

    def step_order(self, chain: Chain | int, active: Iterable[bool] | None = None,
                   locked: Iterable[bool] | None = None) -> list[Action]:
        """A deterministic topological order of :meth:`step_graph` (lowest stage first)."""
        return topological_order(self.step_graph(chain, active, locked))

    # ---- across steps ------------------------------------------------------------------

    def cross_step_edges(self, num_stages: int, max_ahead: int | None = None) -> list[CrossStepEdge]:
        """The dependencies between steps on a chain of ``num_stages`` stages.

        A stage's forward needs the weights of its last update (DDG: of the update ``K-1-i``
        steps further back). Where stages run ahead of each other (synthetic gradients, local
        losses) ``max_ahead`` bounds how far: ``F_i(t)`` waits for ``F_{i+1}(t - max_ahead)``, a
        bounded queue between stages (a zero-cost control signal); None leaves them unbounded.
        """
        edges = []
        for i in range(num_stages):
            lag = num_stages - i if self.weight_delay else 1
            edges.append(CrossStepEdge(Action(i, "F"), Action(i, "U"), lag))
        if max_ahead is not None and self.gradient in ("synthetic", "local"):
            edges += [CrossStepEdge(Action(i, "F"), Action(i + 1, "F"), max_ahead) for i in range(num_stages - 1)]
        return edges

    # ---- pipeline schedules ------------------------------------------------------------

    def default_microbatches(self, num_ranks: int) -> int:
        """Microbatches per step: ``4 ×`` the ranks for a pipeline (GPipe's rule of thumb), else 1."""
        return 4 * num_ranks if self.pipelined else 1

    def rank_actions(self, num_ranks: int, microbatches: int) -> dict[int, list[Action]]:
        """Each rank's actions for one step, ending with an update ``sU0`` of each of its stages.

        Rank ``r`` holds the :attr:`stages_per_rank` stages its schedule's layout gives it
        (stage ``r`` alone for one stage per rank).
        """
        if not self.pipelined:
            raise MethodError(f"method {self.name!r} is not a pipeline schedule; pipelines: {', '.join(pipelines())}")
        if num_ranks < 1 or microbatches < 1:
            raise ValueError(f"need >= 1 rank and microbatch, got {num_ranks} and {microbatches}")
        schedule, v = SCHEDULES[self.schedule], self.stages_per_rank
        try:
            lists = {r: schedule.actions(r, num_ranks, microbatches, v) for r in range(num_ranks)}
        except ValueError as err:  # sizes the schedule does not support
            raise MethodError(f"{self.name} cannot run {microbatches} microbatches on {num_ranks} ranks: {err}") from None
        return {r: lists[r] + [Action(s, "U") for s in reversed(schedule.rank_stages(r, num_ranks, v))]
                for r in range(num_ranks)}


def _tie(graph: Graph, chain: Chain) -> None:
    """Stages sharing weights: F_{i+1} waits for U_i; S_{i+1} waits for T_{i-1} (one synthesizer)."""
    for i in range(chain.first, chain.num_stages - 1):
        after = Action(i + 1, "F")
        if after in graph and Action(i, "U") in graph:
            graph[after] += (Action(i, "U"),)
        synth = Action(i + 1, "S")
        if synth in graph and Action(i - 1, "T") in graph:
            graph[synth] += (Action(i - 1, "T"),)


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
    ready = [(a.key, a) for a, deps in waiting.items() if not deps]
    heapq.heapify(ready)
    order = []
    while ready:
        _, action = heapq.heappop(ready)
        order.append(action)
        for user in users[action]:
            waiting[user].discard(action)
            if not waiting[user]:
                heapq.heappush(ready, (user.key, user))
    if len(order) != len(graph):
        stuck = sorted(str(a) for a in graph if a not in set(order))
        raise ValueError(f"dependency cycle: these ops can never run: {', '.join(stuck)}")
    return order


# ---- the registry ------------------------------------------------------------------------

_ALL = frozenset(RUNNERS)
_FF = frozenset({"train", "sim"})
METHODS: dict[str, Method] = {m.name: m for m in [
    Method("bprop", "backpropagation: forward, update and backward locked", "true",
           runners=frozenset({"train", "two-rnn", "sim"})),
    Method("nobprop", "no gradient crosses an interface: a stage learns only from a loss of its own "
           "(feed-forward: only the last stage learns; recurrent: truncated BPTT)", "none", runners=_ALL),
    Method("dni", "DNI: synthetic gradients at every interface, bootstrapped targets", "synthetic", runners=_ALL),
    Method("cdni", "cDNI: synthetic gradients conditioned on the label", "synthetic", context=True,
           runners=frozenset({"train", "two-rnn", "rnn-chain", "sim"})),
    Method("dni-aux", "DNI+Aux: recurrent DNI whose core also predicts the synthetic gradient at its chunk's end",
           "synthetic", aux=True, runners=frozenset({"recurrent"})),
    Method("stochastic", "DNI with each stage updated with probability 0.2 per step", "synthetic",
           update_prob=0.2, runners=_FF),
    Method("mixed", "stochastic unlocking: DNI, but each stage waits for the true gradient with probability "
           "1 - 0.5 per step", "synthetic", unlock_prob=0.5, runners=_FF),
    Method("unlocked", "completely unlocked: synthetic inputs and synthetic gradients", "synthetic",
           synthetic_inputs=True, runners=_FF),
    Method("cunlocked", "completely unlocked, synthesizers conditioned on the label", "synthetic",
           synthetic_inputs=True, context=True, runners=_FF),
    Method("gpipe", "GPipe: backprop over microbatches, all forwards then all backwards, flush per step",
           "true", schedule="gpipe", runners=frozenset({"sim"})),
    Method("1f1b", "1F1B (PipeDream-Flush): backprop over microbatches, warm-up forwards, then one forward "
           "one backward", "true", schedule="1f1b", runners=frozenset({"sim"})),
    Method("zb-h1", "ZB-H1: 1F1B with the backward split into I and a later W that fills the drain's bubbles, "
           "1F1B's peak memory", "true", schedule="zb-h1", runners=frozenset({"sim"})),
    Method("zb-h2", "ZB-H2: more warm-up forwards and W's reordered so that a rank's steady state has no bubble, "
           "up to 2p-1 microbatches held", "true", schedule="zb-h2", runners=frozenset({"sim"})),
    Method("interleaved-1f1b", "interleaved 1F1B (Megatron-LM): 1F1B over 2 looped stages per rank, depth first",
           "true", schedule="interleaved-1f1b", stages_per_rank=2, runners=frozenset({"sim"})),
    Method("interleaved-zb", "interleaved zero bubble: interleaved 1F1B with the backward split, W's delayed",
           "true", schedule="interleaved-zb", stages_per_rank=2, runners=frozenset({"sim"})),
    Method("looped-bfs", "looped BFS: every microbatch through a rank's first stage, then its next (2 per rank)",
           "true", schedule="looped-bfs", stages_per_rank=2, runners=frozenset({"sim"})),
    Method("zbv", "ZBV: zero bubble with 2 stages per rank in a V, split backward", "true", schedule="zbv",
           stages_per_rank=2, runners=frozenset({"sim"})),
    Method("dualpipev", "DualPipe-V (DeepSeek-V3): 2 stages per rank in a V, one stage's F paired with the "
           "other's B in steady state, split backwards in the drain", "true", schedule="dualpipev",
           stages_per_rank=2, runners=frozenset({"sim"})),
    Method("ddg", "DDG: decoupled backprop with delayed gradients (stage k's weights K-1-k updates stale)",
           "true", weight_delay=True, runners=frozenset({"sim"})),
    Method("dgl", "DGL: decoupled greedy learning, auxiliary local losses, no backward traffic", "local",
           runners=frozenset({"sim"})),
]}
#: Other names accepted for a method; each means the one method it points to, everywhere.
ALIASES = {"backprop": "bprop", "naive": "bprop", "bptt": "nobprop", "tbptt": "nobprop",
           "pipedream-flush": "1f1b"}


def method_names(runner: str | None = None) -> list[str]:
    """The registered methods (that ``runner`` can run), in registry order."""
    return [name for name, m in METHODS.items() if runner is None or runner in m.runners]


def pipelines() -> list[str]:
    """The registered pipeline schedules."""
    return [name for name, m in METHODS.items() if m.pipelined]


def get_method(name: str, runner: str | None = None, *, update_prob: float | None = None,
               unlock_prob: float | None = None) -> Method:
    """The method called ``name`` (or an alias), checked against ``runner``; probabilities override its own.

    Raises :class:`MethodError` naming the known methods for an unknown name, and the runners
    that can run it for one that ``runner`` cannot.
    """
    if not isinstance(name, str):
        raise MethodError(f"a method is named by a string, got {type(name).__name__} {name!r}")
    if runner is not None and runner not in RUNNERS:
        raise ValueError(f"unknown runner {runner!r}; known: {', '.join(RUNNERS)}")
    method = METHODS.get(ALIASES.get(name, name))
    if method is None:
        known = method_names(runner)
        raise MethodError(f"unknown method {name!r}; choose one of: {', '.join(known)}"
                          + (f" (aliases: {', '.join(f'{a}={m}' for a, m in ALIASES.items())})" if ALIASES else ""))
    if runner is not None and runner not in method.runners:
        where = "; ".join(RUNNERS[r] for r in RUNNERS if r in method.runners)
        raise MethodError(f"{RUNNERS[runner]} cannot run method {method.name!r}; it runs: "
                          f"{', '.join(method_names(runner))}. {method.name!r} runs in: {where}")
    if update_prob is not None and update_prob != method.update_prob:
        method = replace(method, update_prob=update_prob)
    if unlock_prob is not None and unlock_prob != method.unlock_prob:
        if not method.synthetic_gradients:
            raise MethodError(f"unlock_prob applies to methods with synthetic gradients, not {method.name!r}")
        method = replace(method, unlock_prob=unlock_prob)
    return method
