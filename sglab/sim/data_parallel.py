"""Data parallelism: ``replicas`` copies of a run, each on its own devices, their gradients all-reduced.

Replica ``r`` runs the method's whole graph (one step = the method's minibatch or its pipeline
of microbatches) on its own group of devices: by default the hardware's placement on
``D // R`` devices, shifted to devices ``r · (D // R) + d``. Every op the builder
(:mod:`sglab.sim.steps`, :mod:`sglab.sim.pipeline`) adds is made once per replica
(:class:`_Mirror`), so all replicas draw the same stochastic updates and unlocking (they must
agree on which stages update). Before replica ``r`` updates stage ``s`` (``U``), the stage's
gradients are all-reduced over the links between the replicas' devices of stage ``s``:

- **buckets** (DDP): each stage is its own DDP module (as a pipeline stage is wrapped alone in
  DP × PP); its ``parameter_bytes`` are cut into buckets of ``bucket_bytes``. Its all-reduce
  starts once the ops producing the stage's gradients in the step (every microbatch's ``B``,
  or ``W`` for a split backward) are done on every replica, whether or not the stage then
  updates (DDP reduces from the backward's hooks); the last stage's backward ends first, so its
  buckets travel while earlier stages still compute. The replicas' devices of a stage run one
  collective at a time, bucket after bucket, in the order the backward produces them (one
  communicator, one stream, as NCCL); other stages' collectives run at the same time, sharing
  links first come, first served. Every replica's ``U`` of the stage waits for its last bucket.
- **ring** (reduce-scatter then all-gather): ``2(n-1)`` rounds; in each, replica ``i`` sends one
  chunk of ``ceil(bytes / n)`` to replica ``i+1 mod n`` once it has received the previous
  round's chunk from ``i-1``. On uniform links every round costs ``L + chunk / bw``, so the
  all-reduce takes ``2(n-1) · (L + ceil(ceil(bytes/n) · 1e9 / bw))`` ns (``2(n-1)/n · bytes/bw +
  2(n-1)·L`` when the sizes divide).
- **tree**: the plain binary tree of replicas in heap order (parent of ``i`` is ``(i-1) // 2``),
  whole buckets, no pipelining (not NCCL's double binary tree): every replica sends its bucket,
  summed with its children's, to its parent once both children's have arrived; the root then
  broadcasts it back down. With a link per pair (``fully_connected``) the ``2·floor(log2 n)``
  levels each cost ``L + bytes / bw``.

A message takes its route hop by hop (store and forward), one ``AR`` op per hop on the link
(``microbatch`` = the bucket's index in its stage). Not modelled: the reduction's own compute,
the sender's posting time (``LinkSpec.sender``), and the synthesizers' parameters, which each
replica trains on its own targets without an all-reduce (they are a small linear model of the
interface, next to the stage's own parameters).

The task graph numbers replica ``r``'s stage ``s`` as stage ``r·K + s`` (its profile lists the
stages once per replica), so memory, staleness and stage tables are per replica;
:func:`sglab.sim.simulate` writes the model's stage ``s`` back into the trace.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

from sglab.costprofile import CostProfile
from sglab.sim.errors import HardwareError, SimUsageError
from sglab.sim.graph import TaskGraph
from sglab.sim.hardware import Hardware
from sglab.sim.options import SimOptions
from sglab.sim.rank_orders import devices_for, stage_placement

#: The ops whose end means a stage's gradients of a microbatch are there.
GRADIENT_OPS = ("B", "W")


def replica_placements(method, hardware: Hardware, num_stages: int, replicas: int,
                       groups: list[list[int]] | None = None) -> list[list[int]]:
    """Each replica's device per stage: replica ``r`` on devices ``r · (D // replicas) + d`` or ``groups[r][d]``.

    ``d`` is the device the hardware's placement rule (or the schedule's layout) gives a stage
    on the first ``D // replicas`` devices (``len(groups[0])`` with ``groups``).
    """
    total = hardware.num_devices
    if groups is None:
        per = total // replicas
        groups = [list(range(r * per, (r + 1) * per)) for r in range(replicas)]
    else:
        _check_groups(groups, replicas, total)
        per = len(groups[0])
    if per < 1:
        raise SimUsageError(f"{replicas} replicas × 1 device per replica = {replicas} devices, more than the "
                            f"{total} of hardware {hardware.name!r}")
    try:
        first = stage_placement(method, hardware, num_stages, num_devices=per)
    except SimUsageError:
        need = devices_for(method, num_stages)
        raise SimUsageError(f"{replicas} replicas × {need} devices per replica ({method.name}, {num_stages} stages) "
                            f"= {replicas * need} devices, more than the {total} of hardware {hardware.name!r}") from None
    except HardwareError as err:
        raise SimUsageError(f"{replicas} replicas of {per} devices each: {err}") from None
    return [[group[d] for d in first] for group in groups]


def _check_groups(groups: list[list[int]], replicas: int, total: int) -> None:
    if len(groups) != replicas or len({len(g) for g in groups}) != 1:
        raise SimUsageError(f"groups must list {replicas} device groups of one size, got sizes {[len(g) for g in groups]}")
    flat = [d for g in groups for d in g]
    if len(set(flat)) != len(flat) or not all(0 <= d < total for d in flat):
        raise SimUsageError(f"groups must name distinct devices 0..{total - 1}, got {groups}")


def replicated_profile(profile: CostProfile, replicas: int) -> CostProfile:
    """``profile`` with its stages listed once per replica (replica ``r``'s stage ``s`` at ``r·K + s``)."""
    return replace(profile, stages=list(profile.stages) * replicas)


def add_replicas(graph: TaskGraph, profile: CostProfile, placements: list[list[int]], options: SimOptions,
                 build) -> None:
    """Let ``build(g)`` add one replica's ops to ``g``, made on every replica of ``graph``, all-reduce included.

    ``graph`` holds :func:`replicated_profile` and the replicas' placements one after another;
    ``profile`` is the model's own.
    """
    build(_Mirror(graph, profile, placements, options))


class _Mirror:
    """What a builder sees: one replica's stages and devices; every op it adds is made on each replica.

    The builder's task ids are indices into :attr:`copies`, each the tuple of the replicas' tasks.
    """

    def __init__(self, graph: TaskGraph, profile: CostProfile, placements: list[list[int]],
                 options: SimOptions) -> None:
        self.graph, self.profile, self.hardware = graph, profile, graph.hardware
        self.placement = placements[0]
        self.placements, self.options = placements, options
        self.num_stages, self.replicas = len(placements[0]), len(placements)
        self.device_maps = [_device_map(placements[0], p) for p in placements]
        self.copies: list[tuple[int, ...]] = []
        self.kinds: list[tuple[int, str]] = []  # (stage, op) of each id; "" for a transfer
        self._routes: dict[tuple[int, int], list] = {}
        self._per_step = options.microbatches or 1  # gradient ops of a stage per step and replica
        self._produced: dict[tuple[int, int], list[int]] = {}  # (step, stage) → its gradient ops so far
        self._reduced: dict[tuple[int, int], list[tuple[int, ...]]] = {}  # (step, stage) → what each U waits for
        self._previous: dict[tuple[int, ...], list[tuple[int, ...]]] = {}  # devices → their last collective

    def _new(self, tasks: tuple[int, ...], stage: int, op: str) -> int:
        self.copies.append(tasks)
        self.kinds.append((stage, op))
        return len(self.copies) - 1

    def _device(self, r: int, device: int | None) -> int | None:
        return None if device is None else self.device_maps[r][device]

    def compute(self, step: int, stage: int, op: str, micro: int = 0, deps=(), device: int | None = None) -> int:
        """The op on every replica; returns its id.

        A stage's all-reduce is added right after the step's last op producing its gradients (so
        collectives are made in the order the backward produces them), and its ``U`` waits for it.
        """
        key, deps, copies, k = (step, stage), tuple(deps), self.copies, self.num_stages
        extra = [()] * self.replicas
        if op == "U":
            if key in self._produced:  # fewer gradient ops than microbatches: reduce what there is
                self._reduced[key] = self._allreduce(step, stage, self._produced.pop(key))
            extra = self._reduced.pop(key, extra)
        tasks = tuple(self.graph.compute(step, r * k + stage, op, micro, [copies[d][r] for d in deps] + list(extra[r]),
                                         self._device(r, device)) for r in range(self.replicas))
        if op in GRADIENT_OPS:
            produced = self._produced.setdefault(key, [])
            produced.extend(tasks)
            if len(produced) == self._per_step * self.replicas:
                self._reduced[key] = self._allreduce(step, stage, self._produced.pop(key))
        return self._new(tasks, stage, op)

    def data(self, producer: int, consumer_stage: int, device: int | None = None) -> int:
        """What ``consumer_stage`` waits for to have ``producer``'s output, on every replica."""
        k = self.num_stages
        tasks = tuple(self.graph.data(self.copies[producer][r], r * k + consumer_stage, self._device(r, device))
                      for r in range(self.replicas))
        return producer if tasks == self.copies[producer] else self._new(tasks, consumer_stage, "")

    def buffer(self, nbytes: int, alloc: int, free: int, kind: str = "activation") -> None:
        """The buffer on every replica."""
        for a, f in zip(self.copies[alloc], self.copies[free]):
            self.graph.buffer(nbytes, a, f, kind)

    def set_order(self, device: int, order: list[int]) -> None:
        """The static order of ``device`` and of its counterpart on every replica."""
        for r in range(self.replicas):
            self.graph.set_order(self.device_maps[r][device], [self.copies[t][r] for t in order])

    def _allreduce(self, step: int, stage: int, ready: list[int]) -> list[tuple[int, ...]]:
        """All-reduce ``stage``'s gradients in buckets once ``ready`` are done; per replica, what its U waits for.

        Each replica joins a bucket's collective once it is done with the collective before it
        on the same devices (the previous bucket, or the last one these devices ran).
        """
        total, size = self.profile.stages[stage].parameter_bytes, self.options.bucket_bytes
        buckets = [size] * (total // size) + ([total % size] if total % size else [])
        devices = tuple(p[stage] for p in self.placements)
        if not buckets:
            return [()] * len(devices)
        reduce = ring_allreduce if self.options.allreduce == "ring" else tree_allreduce
        before = self._previous.get(devices, [()] * len(devices))
        joins = [tuple(ready) + mine for mine in before]
        for index, nbytes in enumerate(buckets):
            joins = reduce(len(devices), nbytes, partial(self._message, step, stage, index), joins)
        self._previous[devices] = joins
        return joins

    def _message(self, step: int, stage: int, bucket: int, src: int, dst: int, nbytes: int, deps) -> int:
        """Replica ``src`` sends ``nbytes`` of ``stage``'s bucket to replica ``dst``: one AR op per hop."""
        a, b = self.placements[src][stage], self.placements[dst][stage]
        route = self._routes.get((a, b))
        if route is None:
            route = self._routes[(a, b)] = self.hardware.route(a, b)
        last = tuple(deps)
        for name, spec in route:
            last = (self.graph.hop(step, src * self.num_stages + stage, "AR", bucket, name, spec.transfer_ns(nbytes),
                                   last),)
        return last[0]


def _device_map(first: list[int], other: list[int]) -> dict[int, int]:
    """Replica 0's device → the other replica's, stage by stage (the two must hold the same stages together)."""
    mapping: dict[int, int] = {}
    for a, b in zip(first, other):
        if mapping.setdefault(a, b) != b:
            raise SimUsageError(f"replica placements {first} and {other} group stages differently")
    return mapping


def ring_allreduce(n: int, nbytes: int, send, joins: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
    """Ring all-reduce of ``nbytes`` among ``n`` replicas; per replica, the message after which it has the sum.

    ``send(src, dst, nbytes, deps)`` adds one message and returns its last op; every message
    carries a chunk of ``ceil(nbytes / n)`` bytes. Replica ``i`` sends its round-0 chunk once
    ``joins[i]`` are done, and its round-``k`` chunk once round ``k-1``'s has arrived from
    ``i-1`` (reduce-scatter for ``n-1`` rounds, all-gather for ``n-1`` more).
    """
    chunk = -(-nbytes // n)
    received: list[tuple[int, ...]] = list(joins)
    for _ in range(2 * (n - 1)):
        sent = [send(i, (i + 1) % n, chunk, received[i]) for i in range(n)]
        received = [(sent[(i - 1) % n],) for i in range(n)]
    return received


def tree_allreduce(n: int, nbytes: int, send, joins: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
    """Binary-tree all-reduce (reduce to replica 0, then broadcast) of whole ``nbytes`` messages.

    Replica ``i`` sends up once ``joins[i]`` and its children's messages are done. Per replica,
    what it waits for to have the sum: the broadcast into it, or at the root its own join and
    its children's messages.
    """
    children = [[c for c in (2 * i + 1, 2 * i + 2) if c < n] for i in range(n)]
    up: dict[int, int] = {}
    for i in range(n - 1, 0, -1):  # children before parents
        up[i] = send(i, (i - 1) // 2, nbytes, joins[i] + tuple(up[c] for c in children[i]))
    down: dict[int, int] = {}
    root = joins[0] + tuple(up[c] for c in children[0])
    for i in range(1, n):
        parent = (i - 1) // 2
        down[i] = send(parent, i, nbytes, root if parent == 0 else (down[parent],))
    return [root] + [(down[i],) for i in range(1, n)]
