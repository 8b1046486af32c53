"""Stages on their own clocks: stage ``k`` runs its ops ``chunks[k]`` times per step.

An RNN chain (``sglab train --task rnn-chain``) is the case: network ``k`` runs one chunk per
message it sends, network ``k+1`` one chunk per ``chunks[k] / chunks[k+1]`` messages it reads,
and one step is one episode. A profile says so with each stage's ``chunks`` (its times and
bytes are per chunk). The method's one-step graph (:meth:`~sglab.methods.Method.step_graph`)
is then one *chunk* of each stage, expanded along the clocks:

- an op waits for an op of its own stage of the same chunk, as in the one-step graph;
- an op that reads the stage below (``F``) waits for every message of its chunk: chunks
  ``j·r … (j+1)·r - 1`` of stage ``k-1``, with ``r = chunks[k-1] / chunks[k]``, each
  transferred on its own;
- an op that reads the stage above (``B`` with the true gradient, ``T`` training a
  synthesizer) waits for chunk ``j // r`` of stage ``k+1``, the chunk that read message ``j``;
- a stage's forward of chunk ``j`` waits for its forward of chunk ``j-1`` (the state carries
  on, across steps too) and, with synthetic or no gradients, for its update of chunk ``j-1``
  (each chunk updates before the next one runs, as the runner does). With the true gradient
  the weights are an episode's: every forward of step ``t`` waits for the stage's last update of
  step ``t-1``, since the gradient of chunk ``j`` arrives only after the stage above has read
  later chunks.

``max_ahead`` bounds, in steps, how far a stage of an unlocked method runs ahead of the stage
above. Devices run their ready ops lowest id first; ids follow each stage's chunks in order.
"""

from __future__ import annotations

from sglab.costprofile import CostProfile
from sglab.methods import Method, topological_order
from sglab.ops import Action
from sglab.sim.errors import SimUsageError
from sglab.sim.graph import TaskGraph
from sglab.sim.options import SimOptions
from sglab.sim.steps import STASHES


def is_clocked(profile: CostProfile) -> bool:
    """Whether some stage of ``profile`` runs more than one chunk per step."""
    return any(stage.chunks != 1 for stage in profile.stages)


def check_clocks(profile: CostProfile, method: Method, options: SimOptions) -> list[int]:
    """Each stage's chunks per step; a :class:`SimUsageError` for clocks or methods that cannot run."""
    chunks = [stage.chunks for stage in profile.stages]
    for k in range(len(chunks) - 1):
        if chunks[k] % chunks[k + 1]:
            raise SimUsageError(f"stages[{k}].chunks is {chunks[k]} and stages[{k + 1}].chunks {chunks[k + 1]}: a stage "
                                "must run a whole number of chunks per chunk of the stage above")
    if method.pipelined or method.synthetic_inputs or method.weight_delay:
        raise SimUsageError(f"method {method.name} needs every stage on one clock; a profile whose stages run several "
                            "chunks per step (an RNN chain) simulates bprop, nobprop and the synthetic-gradient methods")
    if method.update_prob < 1 or method.unlock_prob < 1 or options.update_prob is not None \
            or options.unlock_prob is not None or options.replicas != 1:
        raise SimUsageError("stochastic updates, stochastic unlocking and replicas are not simulated on stages with "
                            "their own clocks")
    return chunks


def build_clocked_steps(g: TaskGraph, method: Method, options: SimOptions) -> None:
    """Add ``options.steps`` steps of ``method`` to ``g``, stage ``k`` running ``chunks[k]`` chunks per step."""
    chunks = check_clocks(g.profile, method, options)
    num_stages = len(chunks)
    graph = method.step_graph(num_stages)
    ops = {k: [a.op for a in topological_order(graph) if a.stage == k] for k in range(num_stages)}
    episode_weights = method.gradient == "true"
    ahead = options.max_ahead if method.gradient in ("synthetic", "local") else None
    previous: dict[tuple[int, str], int] = {}  # (stage, op) → its task in the last chunk run
    last_forwards: list[list[int | None]] = []  # per step, each stage's last forward
    for step in range(options.steps):
        ids = {(k, op, j): g.compute(step, k, op, j) for k in range(num_stages) for j in range(chunks[k])
               for op in ops[k]}
        step_updates = {k: previous.get((k, "U")) for k in range(num_stages)}  # the last step's last update
        for k in range(num_stages):
            above = last_forwards[step - ahead][k + 1] if ahead and step >= ahead and k + 1 < num_stages else None
            for j in range(chunks[k]):
                update = step_updates[k] if episode_weights else previous.get((k, "U"))
                _add_chunk(g, graph, ids, chunks, ops[k], k, j, previous, update, above if j == 0 else None)
        last_forwards.append([ids.get((k, "F", chunks[k] - 1)) for k in range(num_stages)])


def _add_chunk(g: TaskGraph, graph: dict, ids: dict, chunks: list[int], stage_ops: list[str], k: int, j: int,
               previous: dict, update: int | None, above: int | None) -> None:
    """Chunk ``j`` of stage ``k``: each op with what it waits for, then the activations it keeps.

    Its forward also waits for the stage's previous forward, for ``update`` (the weights it runs
    with) and for ``above`` (the stage above's forward that bounds how far this one runs ahead).
    """
    for op in stage_ops:
        deps = _chunk_deps(g, graph, ids, chunks, k, op, j)
        if op == "F":
            deps += [t for t in (previous.get((k, "F")), update, above) if t is not None]
        g.add_deps(ids[(k, op, j)], *deps)
        previous[(k, op)] = ids[(k, op, j)]
    for first, last, kind in STASHES:
        if (k, first, j) in ids and (k, last, j) in ids:
            g.buffer(g.profile.stages[k].activation_bytes, ids[(k, first, j)], ids[(k, last, j)], kind)


def _chunk_deps(g: TaskGraph, graph: dict, ids: dict, chunks: list[int], k: int, op: str, j: int) -> list[int]:
    """What op ``op`` of chunk ``j`` of stage ``k`` waits for within its step (transfers included)."""
    deps = []
    for dep in graph[Action(k, op)]:
        if dep.stage == k:
            deps.append(ids[(k, dep.op, j)])
        elif dep.stage == k - 1:  # every message this chunk reads
            ratio = chunks[k - 1] // chunks[k]
            deps += [g.data(ids[(k - 1, dep.op, i)], k) for i in range(j * ratio, (j + 1) * ratio)]
        elif dep.stage == k + 1:  # the gradient of the chunk above that read this chunk's message
            deps.append(g.data(ids[(k + 1, dep.op, j // (chunks[k] // chunks[k + 1]))], k))
        else:
            raise SimUsageError(f"{k}{op} depends on stage {dep.stage}: stages on their own clocks only talk to "
                                "their neighbours")
    return deps
