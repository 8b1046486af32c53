"""One rank's ops for one step: the registry's step order restricted to its stage, with messages added.

Rank ``r`` holds stage ``r``. Its ops are those of ``method.step_order(chain, active, locked)``
on stage ``r``, in that order; every dependency on another stage's op becomes a message:

- an op waiting for ``F_{r-1}`` (``F_r``, or ``TI_r`` with synthetic inputs) is preceded by
  ``RECV_F`` of ``h_{r-1}``, and ``F_r`` is followed by ``SEND_F`` when stage ``r+1`` waits for it;
- an op waiting for ``B_{r+1}`` (``B_r`` under backprop or a locked interface, ``T_r`` under DNI)
  is preceded by ``RECV_B`` of stage ``r+1``'s input gradient, and ``B_r`` is followed by
  ``SEND_B`` when stage ``r-1`` waits for it.

One message per dependency and step, received before the first op that needs it. Because
sends never block (:mod:`sglab.dist.transport`) and every rank follows one global topological
order, a receive only ever waits for an op that an earlier op of that order makes: no deadlock.

A ``RECV_B`` whose only reader is ``T_r`` can be *deferred*: the rank posts the receive and goes
on with the next step, running ``T_r`` once the target arrives (:class:`RankStep.deferred`).

A pipeline schedule (``gpipe``, ``1f1b``) is already a per-rank list:
:func:`pipeline_program` is the registry's :meth:`~sglab.methods.Method.rank_actions` with the
sends and receives of :func:`sglab.schedules.with_communication`, one stage per rank, which is
exactly what the simulator runs (:func:`sglab.sim.pipeline.rank_schedule`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sglab.methods import Chain, Method, MethodError
from sglab.ops import Action
from sglab.schedules import with_communication

#: The message that stands for a dependency on each op of a neighbouring stage.
_MESSAGE = {"F": ("SEND_F", "RECV_F"), "B": ("SEND_B", "RECV_B")}


@dataclass(frozen=True)
class RankStep:
    """Rank ``r``'s ops of one step, in the order to run them, messages included.

    ``deferred`` is True when the only op waiting for the ``RECV_B`` is a ``T`` that the rank may
    run later, when the target has arrived (DNI's update-unlocked synthesizer training).
    """

    actions: tuple[Action, ...]
    deferred: bool = False


def rank_step(method: Method, num_stages: int, rank: int, active=None, locked=None) -> RankStep:
    """Stage ``rank``'s ops of one step of ``method`` on a chain of ``num_stages``, with its sends and receives."""
    if method.pipelined:
        raise MethodError(f"{method.name!r} is a pipeline schedule: its ranks run pipeline_program(), "
                          f"not rank_step()")
    if method.weight_delay or method.gradient == "local":
        raise MethodError(f"the multi-process runner runs one batch per step without delays or local heads; "
                          f"it cannot run {method.name!r}")
    graph = method.step_graph(Chain(num_stages), active, locked)
    users: dict[Action, list[Action]] = {}
    for action, deps in graph.items():
        for dep in deps:
            users.setdefault(dep, []).append(action)
    mine = [a for a in method.step_order(Chain(num_stages), active, locked) if a.stage == rank]
    program: list[Action] = []
    received: set[str] = set()
    readers_of_b: list[str] = []
    for action in mine:
        for dep in graph[action]:
            if dep.stage == rank:
                continue
            message = _message(action, dep)
            if dep.op == "B":
                readers_of_b.append(action.op)
            if message not in received:
                received.add(message)
                program.append(Action(rank, message))
        program.append(action)
        if any(user.stage != rank for user in users.get(action, ())):
            program.append(Action(rank, _MESSAGE[action.op][0]))
    return RankStep(tuple(program), deferred=readers_of_b == ["T"])


def runs_pipeline(method: Method) -> bool:
    """Whether ``method`` is a plain synchronous pipeline (backprop over microbatches, one update per step)
    that :func:`pipeline_program` lays out and :mod:`sglab.dist.pipeline_worker` runs."""
    return (method.pipelined and method.gradient == "true" and not method.weight_delay
            and not method.synthetic_inputs and method.update_prob >= 1.0)


def pipeline_program(method: Method, num_stages: int, microbatches: int) -> dict[int, tuple[Action, ...]]:
    """Each rank's actions of one step of pipeline ``method``, stage ``r`` on rank ``r``, sends and receives included.

    The compute actions are ``method.rank_actions(num_stages, microbatches)`` in their order
    (every F and B of each microbatch, then the rank's ``U``); :func:`~sglab.schedules.with_communication`
    adds ``SEND_F`` after each F whose output goes up, ``SEND_B`` after each B whose input gradient goes
    down, and each receive where torch's pass puts it (after the matching send, in the global order).
    """
    if not runs_pipeline(method):
        raise MethodError(f"{method.name!r} is not a synchronous pipeline schedule (backprop over microbatches)")
    per_rank = with_communication(method.rank_actions(num_stages, microbatches), lambda stage: stage, num_stages)
    return {rank: tuple(actions) for rank, actions in sorted(per_rank.items())}


def _message(action: Action, dep: Action) -> str:
    """The receive that carries ``dep``'s output to ``action`` (adjacent stages, F up and B down only)."""
    expected = {"F": action.stage - 1, "B": action.stage + 1}
    if dep.op not in expected or dep.stage != expected[dep.op]:
        raise MethodError(f"{action} waits for {dep}: the multi-process runner carries only h_(i-1) from the "
                          f"stage below and the input gradient from the stage above")
    return _MESSAGE[dep.op][1]


def peer(action: Action) -> int:
    """The rank a message op talks to: sends and receives of ``h`` go up the chain, of gradients down."""
    return {"SEND_F": action.stage + 1, "RECV_F": action.stage - 1,
            "SEND_B": action.stage - 1, "RECV_B": action.stage + 1}[action.op]
