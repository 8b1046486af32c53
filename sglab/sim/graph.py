"""The task graph of a simulated run: every op, the resource it runs on and what it waits for.

The builders (:mod:`sglab.sim.steps`, :mod:`sglab.sim.pipeline`) add compute ops and their
dependencies; whenever an op needs the output of an op on another device, :meth:`TaskGraph.data`
inserts the transfer, one ``SEND_F``/``SEND_B`` op per link hop, the way torch's pipelining
passes turn a compute schedule into one with sends and receives. The engine
(:mod:`sglab.sim.engine`) then runs the graph.

Tasks are parallel lists indexed by task id rather than objects: a million-op run stays small
and fast to build.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sglab.costprofile import CostProfile
from sglab.sim.costs import CostModel
from sglab.sim.hardware import Hardware

#: Producer ops whose output crosses an interface, and the transfer op that carries it.
_TRANSFER_OP = {"F": "SEND_F", "B": "SEND_B", "I": "SEND_B"}


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
    order: list[int] = field(default_factory=list)


class TaskGraph:
    """Ops of one run on one machine; built by a builder, run by the engine."""

    def __init__(self, profile: CostProfile, hardware: Hardware, placement: list[int], costs: CostModel,
                 method: str, device_policy: str) -> None:
        self.profile, self.hardware, self.placement = profile, hardware, placement
        self.costs, self.method = costs, method
        self.servers = [Server(d.name, "device", device_policy) for d in hardware.devices]
        self._server_ids = {s.name: i for i, s in enumerate(self.servers)}
        self.step: list[int] = []
        self.stage: list[int] = []
        self.op: list[str] = []
        self.micro: list[int] = []
        self.server: list[int] = []
        self.duration: list[int] = []
        self.deps: list[tuple[int, ...]] = []
        #: Memory held from ``alloc`` (its start) to ``free`` (its end): device, stage, bytes, kind.
        self.buffers: list[tuple[int, int, int, int, int, str]] = []
        self._transfers: dict[tuple[int, int], int] = {}
        self._routes: dict[tuple[int, int], list] = {}
        self._op_ns: dict[tuple[int, str, int], int] = {}  # (stage, op, device) → duration

    def __len__(self) -> int:
        return len(self.op)

    def _add(self, step: int, stage: int, op: str, micro: int, server: int, duration: int, deps) -> int:
        self.step.append(step)
        self.stage.append(stage)
        self.op.append(op)
        self.micro.append(micro)
        self.server.append(server)
        self.duration.append(duration)
        self.deps.append(tuple(deps))
        return len(self.op) - 1

    def compute(self, step: int, stage: int, op: str, micro: int = 0, deps=(), device: int | None = None) -> int:
        """Add ``op`` of ``stage`` (on its placed device unless ``device`` is given); returns its id."""
        device = self.placement[stage] if device is None else device
        key = (stage, op, device)
        duration = self._op_ns.get(key)
        if duration is None:
            cost = self.costs.cost(self.profile.stages[stage], op, self.method)
            duration = self._op_ns[key] = self.hardware.devices[device].compute_ns(cost)
        return self._add(step, stage, op, micro, device, duration, deps)

    def data(self, producer: int, consumer_stage: int, device: int | None = None) -> int:
        """What an op of ``consumer_stage`` must wait for to have ``producer``'s output.

        The producer itself when both run on one device; otherwise the last hop of a transfer,
        added once per (producer, destination) however many ops read it. Ops whose output is
        not an activation or a gradient (a control dependency) cost no transfer.
        """
        src = self.server[producer]
        dst = self.placement[consumer_stage] if device is None else device
        transfer_op = _TRANSFER_OP.get(self.op[producer])
        if src == dst or transfer_op is None:
            return producer
        hit = self._transfers.get((producer, dst))
        if hit is not None:
            return hit
        stage = self.stage[producer]
        interface = self.profile.stages[stage] if transfer_op == "SEND_F" else self.profile.stages[stage - 1]
        nbytes = interface.activation_bytes if transfer_op == "SEND_F" else interface.gradient_bytes
        route = self._routes.get((src, dst))
        if route is None:
            route = self._routes[(src, dst)] = self.hardware.route(src, dst)
        last = producer
        step, micro = self.step[producer], self.micro[producer]
        post = route[0][1].sender_ns(nbytes) if route else 0
        self.duration[producer] += post  # the sender posts the message before its device is free
        for hop, (name, spec) in enumerate(route):
            duration = spec.transfer_ns(nbytes) - (post if hop == 0 else 0)
            last = self._add(step, stage, transfer_op, micro, self._link(name), duration, (last,))
        self._transfers[(producer, dst)] = last
        return last

    def hop(self, step: int, stage: int, op: str, micro: int, link: str, duration: int, deps=()) -> int:
        """Add a transfer op of ``duration`` ns on the link resource named ``link``; returns its id.

        For collectives (data parallelism's all-reduce) whose messages are not one producer's output.
        """
        return self._add(step, stage, op, micro, self._link(link), duration, deps)

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
        self.buffers.append((self.server[alloc], self.stage[alloc], nbytes, alloc, free, kind))

    def set_order(self, device: int, order: list[int]) -> None:
        """The op sequence of a ``static`` device."""
        self.servers[device].order = order

    def durations(self, seed: int) -> list[int]:
        """Durations after each device's slowdown factors, drawn from ``seed`` (deterministic)."""
        durations = np.asarray(self.duration, dtype=np.int64)
        servers = np.asarray(self.server, dtype=np.int64)
        for index, device in enumerate(self.hardware.devices):
            if device.slowdown is None:
                continue
            mine = np.flatnonzero(servers == index)
            rng = np.random.default_rng([seed, index])
            factors = device.slowdown.sample(rng, len(mine))
            durations[mine] = np.rint(durations[mine] * factors).astype(np.int64)
        return durations.tolist()
