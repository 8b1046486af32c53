"""The task graph of a simulated run: every op, the resource it runs on and what it waits for.

The builders (:mod:`sglab.sim.steps`, :mod:`sglab.sim.pipeline`) add compute ops and their
dependencies; whenever an op needs the output of an op on another device, :meth:`TaskGraph.data`
inserts the transfer, one ``SEND_F``/``SEND_B`` op per link hop, the way torch's pipelining
passes turn a compute schedule into one with sends and receives. The engine
(:mod:`sglab.sim.engine`) then runs the graph.

Tasks are typed columns indexed by task id rather than objects (``array`` of machine integers,
ops as small codes into :attr:`TaskGraph.op_names`, dependencies as one flat array with an end
offset per task), so that ten million ops take a few hundred MB and every column reads as a
numpy array without a copy (:meth:`TaskGraph.column`).
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from sglab.costprofile import CostProfile
from sglab.sim.costs import CostModel
from sglab.sim.errors import SimError
from sglab.sim.hardware import Hardware

#: Producer ops whose output crosses an interface, and the transfer op that carries it.
_TRANSFER_OP = {"F": "SEND_F", "B": "SEND_B", "I": "SEND_B"}
#: numpy dtype of each ``array`` typecode the graph uses.
_DTYPES = {"q": np.int64, "i": np.int32, "B": np.uint8}


def as_numpy(values: array) -> np.ndarray:
    """A read-only numpy view of an ``array`` column (no copy)."""
    view = np.frombuffer(values, dtype=_DTYPES[values.typecode]) if len(values) else np.empty(0, _DTYPES[values.typecode])
    view.flags.writeable = False
    return view


@dataclass
class Server:
    """A capacity-one resource: a device or one direction of a link.

    ``policy`` says how it picks its next op: ``static`` runs ``order`` in sequence (waiting for
    each op's inputs), ``priority`` runs the ready op with the lowest task id (oldest step
    first), ``fifo`` runs ready ops in the order they became ready (links).
    """

    name: str
    kind: str
    policy: str
    order: Sequence[int] = field(default_factory=lambda: array("q"))


class OpNames(Sequence):
    """``graph.op[task]``: the op name of each task, read through its code."""

    def __init__(self, graph: TaskGraph) -> None:
        self._graph = graph

    def __len__(self) -> int:
        return len(self._graph.op_code)

    def __getitem__(self, task: int) -> str:
        return self._graph.op_names[self._graph.op_code[task]]


class Dependencies(Sequence):
    """``graph.deps[task]``: the tuple of tasks ``task`` waits for, read from the flat arrays."""

    def __init__(self, graph: TaskGraph) -> None:
        self._graph = graph

    def __len__(self) -> int:
        return len(self._graph.dep_end)

    def __getitem__(self, task: int) -> tuple[int, ...]:
        g = self._graph
        ends = g.dep_end
        first = ends[task - 1] if task > 0 else 0
        return tuple(g.dep_flat[first:ends[task]]) + tuple(g.extra_deps.get(task, ()))


class TaskGraph:
    """Ops of one run on one machine; built by a builder, run by the engine.

    Columns (one entry per task): ``step``, ``stage``, ``micro``, ``server`` (int32),
    ``duration`` (int64 ns), ``op_code`` (uint8 into ``op_names``; ``op`` reads names).
    Dependencies: task ``t`` waits for ``dep_flat[dep_end[t-1]:dep_end[t]]`` and for
    ``extra_deps[t]`` (added later by :meth:`add_deps`, merged by :meth:`freeze`).
    """

    def __init__(self, profile: CostProfile, hardware: Hardware, placement: list[int], costs: CostModel,
                 method: str, device_policy: str) -> None:
        self.profile, self.hardware, self.placement = profile, hardware, placement
        self.costs, self.method = costs, method
        self.servers = [Server(d.name, "device", device_policy) for d in hardware.devices]
        self._server_ids = {s.name: i for i, s in enumerate(self.servers)}
        self.step, self.stage, self.micro, self.server = array("i"), array("i"), array("i"), array("i")
        self.duration, self.op_code = array("q"), array("B")
        self.op_names: list[str] = []
        self._op_codes: dict[str, int] = {}
        self.dep_flat, self.dep_end = array("q"), array("q")
        self.extra_deps: dict[int, list[int]] = {}
        self.op, self.deps = OpNames(self), Dependencies(self)
        #: Memory held from ``alloc``'s start to ``free``'s end: task columns, bytes and kind code.
        self.buffer_alloc, self.buffer_free, self.buffer_bytes, self.buffer_kind = (array("q"), array("q"),
                                                                                    array("q"), array("B"))
        self.buffer_kinds: list[str] = []
        self._buffer_codes: dict[str, int] = {}
        self._transfers: dict[int, int] = {}  # producer << 32 | destination → last hop
        self._routes: dict[tuple, tuple] = {}  # (stage, transfer op, src, dst) → (post, ((link, ns), ...))
        self._op_ns: dict[tuple[int, str, int], tuple[int, int]] = {}  # (stage, op, device) → (ns, op code)

    def __len__(self) -> int:
        return len(self.dep_end)

    def _code(self, op: str) -> int:
        code = self._op_codes.get(op)
        if code is None:
            if len(self.op_names) == 256:
                raise SimError(f"op {op!r}: a task graph holds at most 256 op names")
            code = self._op_codes[op] = len(self.op_names)
            self.op_names.append(op)
        return code

    def _add(self, step: int, stage: int, code: int, micro: int, server: int, duration: int, deps) -> int:
        flat, task = self.dep_flat, len(self.dep_end)
        try:
            flat.extend(deps)
            self.step.append(step)
            self.stage.append(stage)
            self.op_code.append(code)
            self.micro.append(micro)
            self.server.append(server)
            self.duration.append(duration)
        except (TypeError, OverflowError) as err:
            self._truncate(task)
            raise SimError(f"task {task} ({self.op_names[code]} of stage {stage}, step {step}): {err} "
                           f"(step, stage, micro, device: int32; duration: int64 ns; deps: task ids)") from None
        self.dep_end.append(len(flat))
        return task

    def _truncate(self, tasks: int) -> None:
        """Drop what a failed :meth:`_add` appended: every column back to ``tasks`` entries."""
        del self.dep_flat[self.dep_end[tasks - 1] if tasks else 0:]
        for column in (self.step, self.stage, self.op_code, self.micro, self.server, self.duration):
            del column[tasks:]

    def compute(self, step: int, stage: int, op: str, micro: int = 0, deps=(), device: int | None = None) -> int:
        """Add ``op`` of ``stage`` (on its placed device unless ``device`` is given); returns its id."""
        device = self.placement[stage] if device is None else device
        key = (stage, op, device)
        hit = self._op_ns.get(key)
        if hit is None:
            cost = self.costs.cost(self.profile.stages[stage], op, self.method)
            hit = self._op_ns[key] = (self.hardware.devices[device].compute_ns(cost), self._code(op))
        return self._add(step, stage, hit[1], micro, device, hit[0], deps)

    def data(self, producer: int, consumer_stage: int, device: int | None = None) -> int:
        """What an op of ``consumer_stage`` must wait for to have ``producer``'s output.

        The producer itself when both run on one device; otherwise the last hop of a transfer,
        added once per (producer, destination) however many ops read it. Ops whose output is
        not an activation or a gradient (a control dependency) cost no transfer.
        """
        src = self.server[producer]
        dst = self.placement[consumer_stage] if device is None else device
        transfer_op = _TRANSFER_OP.get(self.op_names[self.op_code[producer]])
        if src == dst or transfer_op is None:
            return producer
        key = producer << 32 | dst
        hit = self._transfers.get(key)
        if hit is not None:
            return hit
        stage = self.stage[producer]
        post, hops = self._route(stage, transfer_op, src, dst)
        self.duration[producer] += post  # the sender posts the message before its device is free
        last, step, micro, code = producer, self.step[producer], self.micro[producer], self._code(transfer_op)
        for link, duration in hops:
            last = self._add(step, stage, code, micro, link, duration, (last,))
        self._transfers[key] = last
        return last

    def _route(self, stage: int, transfer_op: str, src: int, dst: int) -> tuple[int, tuple[tuple[int, int], ...]]:
        """The sender's posting time and each hop's (link server, duration) of one message."""
        key = (stage, transfer_op, src, dst)
        hit = self._routes.get(key)
        if hit is None:
            interface = self.profile.stages[stage] if transfer_op == "SEND_F" else self.profile.stages[stage - 1]
            nbytes = interface.activation_bytes if transfer_op == "SEND_F" else interface.gradient_bytes
            route = self.hardware.route(src, dst)
            post = route[0][1].sender_ns(nbytes) if route else 0
            hops = tuple((self._link(name), spec.transfer_ns(nbytes) - (post if hop == 0 else 0))
                         for hop, (name, spec) in enumerate(route))
            hit = self._routes[key] = (post, hops)
        return hit

    def hop(self, step: int, stage: int, op: str, micro: int, link: str, duration: int, deps=()) -> int:
        """Add a transfer op of ``duration`` ns on the link resource named ``link``; returns its id.

        For collectives (data parallelism's all-reduce) whose messages are not one producer's output.
        """
        return self._add(step, stage, self._code(op), micro, self._link(link), duration, deps)

    def add_deps(self, task: int, *deps: int) -> None:
        """Make ``task`` also wait for ``deps`` (tasks created before or after it)."""
        if not 0 <= task < len(self):
            raise SimError(f"add_deps: task {task} is not in the graph ({len(self)} tasks)")
        self.extra_deps.setdefault(task, []).extend(deps)

    def freeze(self) -> None:
        """Merge :meth:`add_deps`'s dependencies into the flat arrays and check every id (the engine calls it)."""
        n = len(self)
        if self.extra_deps:
            ends = as_numpy(self.dep_end)
            owner = np.repeat(np.arange(n, dtype=np.int64), np.diff(ends, prepend=0))
            added = sorted(self.extra_deps.items())
            extra_owner = np.repeat([t for t, _ in added], [len(d) for _, d in added]).astype(np.int64)
            extra = np.fromiter((d for _, deps in added for d in deps), dtype=np.int64, count=len(extra_owner))
            owners = np.concatenate([owner, extra_owner])
            order = np.argsort(owners, kind="stable")  # a task's own deps first, then the added ones in order
            flat = np.concatenate([as_numpy(self.dep_flat), extra])[order]
            self.dep_flat, self.dep_end = array("q", flat.tobytes()), array("q", np.cumsum(np.bincount(
                owners, minlength=n)).astype(np.int64).tobytes())
            self.extra_deps = {}
        flat = as_numpy(self.dep_flat)
        bad = np.flatnonzero((flat < 0) | (flat >= n))
        if len(bad):
            task = int(np.searchsorted(as_numpy(self.dep_end), bad[0], side="right"))
            raise SimError(f"task {task} waits for task {int(flat[bad[0]])}, which is not in the graph ({n} tasks)")

    def users(self) -> tuple[array, array]:
        """The ops waiting for each op, as CSR: op ``t``'s users are ``users[offsets[t]:offsets[t + 1]]``
        in task order (an op listed twice as a dependency is a user twice). Call after :meth:`freeze`."""
        n = len(self)
        flat, ends = as_numpy(self.dep_flat), as_numpy(self.dep_end)
        owners = np.repeat(np.arange(n, dtype=np.int64), np.diff(ends, prepend=0))
        users = owners[np.argsort(flat, kind="stable")]
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(flat, minlength=n), out=offsets[1:])
        return array("q", offsets.tobytes()), array("q", users.tobytes())

    def column(self, name: str) -> np.ndarray:
        """A task column (``step``, ``stage``, ``micro``, ``server``, ``duration``, ``op_code``) as numpy, no copy."""
        return as_numpy(getattr(self, name))

    def stage_ops(self, stage: int) -> set[str]:
        """The compute ops this run gives ``stage`` (from the costs looked up while building)."""
        return {op for (s, op, _) in self._op_ns if s == stage}

    def _link(self, name: str) -> int:
        server = self._server_ids.get(name)
        if server is None:
            server = self._server_ids[name] = len(self.servers)
            self.servers.append(Server(name, "link", "fifo"))
        return server

    def buffer(self, nbytes: int, alloc: int, free: int, kind: str = "activation") -> None:
        """Memory of ``nbytes`` on ``alloc``'s device from ``alloc``'s start to ``free``'s end."""
        code = self._buffer_codes.get(kind)
        if code is None:
            code = self._buffer_codes[kind] = len(self.buffer_kinds)
            self.buffer_kinds.append(kind)
        self.buffer_alloc.append(alloc)
        self.buffer_free.append(free)
        self.buffer_bytes.append(nbytes)
        self.buffer_kind.append(code)

    def set_order(self, device: int, order: Sequence[int]) -> None:
        """The op sequence of a ``static`` device (kept as an int64 ``array``)."""
        self.servers[device].order = array("q", order)

    def durations(self, seed: int) -> array:
        """Durations (int64 ``array``) after each device's slowdown factors, drawn from ``seed`` (deterministic)."""
        durations = self.column("duration").copy()
        servers = self.column("server")
        for index, device in enumerate(self.hardware.devices):
            if device.slowdown is None:
                continue
            mine = np.flatnonzero(servers == index)
            rng = np.random.default_rng([seed, index])
            factors = device.slowdown.sample(rng, len(mine))
            durations[mine] = np.rint(durations[mine] * factors).astype(np.int64)
        return array("q", durations.tobytes())
