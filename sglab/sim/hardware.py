"""Hardware the simulator runs on: devices, links, topology and stage placement.

The classes here are plain, validated values; :mod:`sglab.sim.spec` reads them from JSON or
YAML and says which field is wrong. Time is integer nanoseconds everywhere: a device runs an op
of profiled cost ``c`` in ``round(c / speed) + op_overhead_ns`` ns (times a sampled slowdown
factor, if any), and a link moves ``n`` bytes in ``latency_ns + ceil(n * 1e9 / bandwidth)`` ns.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np

from sglab.sim.errors import HardwareError

#: Topologies a spec may name; see :meth:`Hardware.route` for what each one means.
TOPOLOGIES = ("fully_connected", "chain", "ring", "switch", "bus", "custom")
#: Stage placement policies (a spec may also list one device per stage).
PLACEMENTS = ("blocked", "round_robin")
#: Slowdown distributions and their parameters.
DISTRIBUTIONS = {"constant": ("factor",), "uniform": ("low", "high"), "lognormal": ("sigma",),
                 "bernoulli": ("p", "factor")}


@dataclass(frozen=True)
class Slowdown:
    """A random factor multiplying the duration of each op on a device (stragglers, jitter).

    ``constant(factor)``; ``uniform(low, high)``; ``lognormal(sigma)`` with median 1;
    ``bernoulli(p, factor)``: the op is ``factor`` times slower with probability ``p``.
    """

    distribution: str
    params: tuple[tuple[str, float], ...]

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` factors drawn from ``rng`` (the caller seeds it, so runs repeat exactly)."""
        p = dict(self.params)
        if self.distribution == "constant":
            return np.full(size, p["factor"])
        if self.distribution == "uniform":
            return rng.uniform(p["low"], p["high"], size)
        if self.distribution == "lognormal":
            return rng.lognormal(0.0, p["sigma"], size)
        return np.where(rng.random(size) < p["p"], p["factor"], 1.0)


@dataclass(frozen=True)
class Device:
    """One compute device: ``speed`` relative to the profiled device, memory in bytes (None: unlimited).

    ``op_overhead_ns`` is a fixed cost this device adds to every compute op, not scaled by ``speed``
    (0: none; see :mod:`sglab.sim.spec` for when to set it).
    """

    name: str
    speed: float = 1.0
    memory_bytes: int | None = None
    slowdown: Slowdown | None = None
    op_overhead_ns: int = 0

    def compute_ns(self, cost_ns: int) -> int:
        """Duration of an op that took ``cost_ns`` on the profiled device."""
        return int(round(cost_ns / self.speed)) + self.op_overhead_ns


@dataclass(frozen=True)
class LinkSpec:
    """Latency and bandwidth of a link; ``bandwidth_bytes_per_s`` None means infinitely fast.

    ``sender`` (itself latency + bytes / bandwidth) is the sending device's own busy time per
    message, where sending is not offloaded (gloo on a CPU copies into the socket in the caller):
    the producing op holds its device that much longer, and the link carries the rest.
    """

    latency_ns: int = 0
    bandwidth_bytes_per_s: int | None = None
    duplex: bool = True
    sender: "LinkSpec | None" = None

    def sender_ns(self, nbytes: int) -> int:
        """The sender's busy time for a message of ``nbytes`` (0 without ``sender``), at most the transfer."""
        return 0 if self.sender is None else min(self.sender.transfer_ns(nbytes), self.transfer_ns(nbytes))

    def transfer_ns(self, nbytes: int) -> int:
        """Time to move ``nbytes`` over the link (integer ns, rounded up)."""
        if self.bandwidth_bytes_per_s is None or nbytes == 0:
            return self.latency_ns
        return self.latency_ns + -(-nbytes * 1_000_000_000 // self.bandwidth_bytes_per_s)


@dataclass(frozen=True)
class Link:
    """A link of a ``custom`` topology between devices ``a`` and ``b`` (indices)."""

    a: int
    b: int
    spec: LinkSpec


@dataclass(frozen=True)
class Hardware:
    """A (usually hypothetical) machine: devices, how they are connected and where stages go.

    ``link`` is the spec of every link of a generated topology; ``links`` lists the links of a
    ``custom`` one. ``placement`` is a policy name or one device index per stage.
    """

    name: str
    devices: tuple[Device, ...]
    topology: str = "fully_connected"
    link: LinkSpec = field(default_factory=LinkSpec)
    links: tuple[Link, ...] = ()
    placement: str | tuple[int, ...] = "blocked"
    description: str = ""
    hypothetical: bool = True
    sources: tuple[str, ...] = ()
    #: Slowdown of every compute op while n devices compute at once (entry n-1; the last entry beyond):
    #: devices sharing cores or memory bandwidth (processes on one CPU). Empty: devices are independent.
    contention: tuple[float, ...] = ()

    def contention_factor(self, busy: int) -> float:
        """The slowdown while ``busy`` devices compute at once (1 without ``contention``)."""
        if not self.contention or busy < 1:
            return 1.0
        return self.contention[min(busy, len(self.contention)) - 1]

    @property
    def num_devices(self) -> int:
        """Number of devices."""
        return len(self.devices)

    def placement_for(self, num_stages: int, num_devices: int | None = None) -> list[int]:
        """The device index of each of ``num_stages`` stages, on the first ``num_devices`` devices (default all).

        ``blocked`` gives contiguous runs of stages to devices in order (one stage per device
        when there are enough); ``round_robin`` deals stages out like cards. An explicit
        placement is used as listed and must name only devices among the first ``num_devices``.
        """
        n = self.num_devices if num_devices is None else num_devices
        if not 1 <= n <= self.num_devices:
            raise HardwareError(f"hardware {self.name!r}: num_devices must be 1..{self.num_devices} "
                                f"(the devices it has), got {n}")
        if isinstance(self.placement, tuple):
            if len(self.placement) != num_stages:
                raise HardwareError(
                    f"hardware {self.name!r}: placement lists {len(self.placement)} devices "
                    f"but the profile has {num_stages} stages"
                )
            if max(self.placement) >= n:
                raise HardwareError(f"hardware {self.name!r}: placement uses device {max(self.placement)}, "
                                    f"but only the first {n} devices are available here")
            return list(self.placement)
        if self.placement == "round_robin":
            return [i % n for i in range(num_stages)]
        return [i * n // num_stages if num_stages > n else i for i in range(num_stages)]

    def route(self, src: int, dst: int) -> list[tuple[str, LinkSpec]]:
        """The hops a message from device ``src`` to ``dst`` takes: (link resource name, spec).

        ``fully_connected``: one dedicated link per pair (an NVSwitch-like crossbar).
        ``chain``/``ring``/``custom``: shortest path over the listed links, store-and-forward.
        ``switch``: the sender's port to the switch, then the switch's port to the receiver.
        ``bus``: one medium shared by every transfer. A full-duplex link is two resources,
        one per direction, so traffic both ways does not queue.
        """
        if src == dst:
            return []
        names = [d.name for d in self.devices]
        if self.topology == "bus":
            return [("bus", self.link)]
        if self.topology == "switch":
            return [(_hop(names[src], "switch", self.link.duplex), self.link),
                    (_hop("switch", names[dst], self.link.duplex), self.link)]
        if self.topology == "fully_connected":
            return [(_hop(names[src], names[dst], self.link.duplex), self.link)]
        path = self._shortest_path(src, dst)
        specs = {frozenset((link.a, link.b)): link.spec for link in self._graph_links()}
        hops = []
        for a, b in zip(path, path[1:]):
            spec = specs[frozenset((a, b))]
            hops.append((_hop(names[a], names[b], spec.duplex), spec))
        return hops

    def _graph_links(self) -> tuple[Link, ...]:
        if self.topology == "custom":
            return self.links
        n = self.num_devices
        chain = tuple(Link(i, i + 1, self.link) for i in range(n - 1))
        return chain + ((Link(n - 1, 0, self.link),) if self.topology == "ring" and n > 2 else ())

    def _shortest_path(self, src: int, dst: int) -> list[int]:
        neighbours: dict[int, list[int]] = {i: [] for i in range(self.num_devices)}
        for link in self._graph_links():
            neighbours[link.a].append(link.b)
            neighbours[link.b].append(link.a)
        parent = {src: src}
        queue = deque([src])
        while queue:
            node = queue.popleft()
            for nxt in sorted(neighbours[node]):  # sorted: the same path every run
                if nxt not in parent:
                    parent[nxt] = node
                    queue.append(nxt)
        if dst not in parent:
            names = [d.name for d in self.devices]
            raise HardwareError(f"hardware {self.name!r}: no route from {names[src]} to {names[dst]} over its links")
        path = [dst]
        while path[-1] != src:
            path.append(parent[path[-1]])
        return path[::-1]

    def with_link(self, bandwidth_bytes_per_s: int | None | str = "keep", latency_ns: int | None = None) -> "Hardware":
        """A copy with every link's bandwidth and/or latency replaced (for sweeps)."""

        def change(spec: LinkSpec) -> LinkSpec:
            if bandwidth_bytes_per_s != "keep":
                bandwidth = None if bandwidth_bytes_per_s is None else int(bandwidth_bytes_per_s)
                spec = replace(spec, bandwidth_bytes_per_s=bandwidth)
            return spec if latency_ns is None else replace(spec, latency_ns=int(latency_ns))

        links = tuple(replace(link, spec=change(link.spec)) for link in self.links)
        return replace(self, link=change(self.link), links=links)

    def resized(self, num_devices: int) -> "Hardware":
        """The same machine with ``num_devices`` copies of its first device (homogeneous machines only)."""
        first = self.devices[0]
        if any(replace(d, name=first.name) != first for d in self.devices):
            raise HardwareError(f"hardware {self.name!r}: only a machine of identical devices can be resized")
        if self.topology == "custom" or isinstance(self.placement, tuple):
            raise HardwareError(f"hardware {self.name!r}: a custom topology or explicit placement cannot be resized")
        stem = first.name.rstrip("0123456789") or "dev"
        devices = tuple(replace(first, name=f"{stem}{i}") for i in range(num_devices))
        return replace(self, name=f"{self.name}[{num_devices}]", devices=devices)


def _hop(a: str, b: str, duplex: bool) -> str:
    """Resource name of the link direction a→b; a half-duplex link is one resource both ways."""
    return f"{a}->{b}" if duplex else "<->".join(sorted((a, b)))
