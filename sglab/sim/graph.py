"""The task graph of a simulated run: every op, the resource it runs on and what it waits for.

The builders (:mod:`sglab.sim.steps`, :mod:`sglab.sim.pipeline`) add compute ops and their
dependencies; whenever an op needs the output of an op on another device, :meth:`TaskGraph.data`
inserts the transfer, one ``SEND_F``/``SEND_B`` op per link hop, the way torch's pipelining
passes turn a compute schedule into one with sends and receives. The engine
(:mod:`sglab.sim.engine`) then runs the graph.

Tasks are typed columns indexed by task id rather than objects (``array`` of machine integers,
ops as small codes into :attr:`TaskGraph.op_names`, dependencies as one flat array with an end
offset per task), so that ten million ops take a few hundred MB and every column reads as a
numpy array without a copy (:meth:`TaskGraph.column`). Building is the hot path, so a new task
is only its step, microbatch and *kind* (stage, op, server and duration, which few tasks do not
share) appended to a Python list; the pending tasks move to the arrays every :data:`CHUNK` tasks
and whenever a column is read.
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
#: The task columns and their numpy dtypes.
COLUMNS = {"step": np.int32, "stage": np.int32, "op_code": np.uint8, "micro": np.int32, "server": np.int32,
           "duration": np.int64, "dep_flat": np.int64, "dep_end": np.int64}
_TYPECODES = {np.int64: "q", np.int32: "i", np.uint8: "B"}
#: Tasks held in Python lists before they move to the arrays.
CHUNK = 1 << 14


class _Frozen:
    """Stands in for the pending lists and the transfer memo of a frozen graph: adding refuses clearly."""

    def __len__(self) -> int:
        return 0

    def _refuse(self, *_args) -> None:
        raise SimError("the task graph is frozen (an engine has run it): build a new graph to add ops")

    extend = append = get = _refuse


_FROZEN = _Frozen()


def as_numpy(values: array) -> np.ndarray:
    """A read-only numpy view of an ``array`` (no copy)."""
    dtype = next(d for d, code in _TYPECODES.items() if code == values.typecode)
    view = np.frombuffer(values, dtype=dtype) if len(values) else np.empty(0, dtype=dtype)
    view.flags.writeable = False
    return view


def _int64(values: list, where) -> np.ndarray:
    """``values`` as int64 (floats and other objects refused, not truncated); ``where(i)`` names entry ``i``."""
    packed = array("q")
    try:
        packed.fromlist(values)
    except (TypeError, OverflowError) as err:
        bad = next(i for i, v in enumerate(values) if not _is_int64(v))
        raise SimError(f"{where(bad)} is {values[bad]!r}, not an int64 integer ({err})") from None
    return as_numpy(packed)


def _is_int64(value) -> bool:
    try:
        array("q", [value])
    except (TypeError, OverflowError):
        return False
    return True


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
        return len(self._graph)

    def __getitem__(self, task: int) -> str:
        return self._graph.op_names[self._graph.op_code[task]]


class Dependencies(Sequence):
    """``graph.deps[task]``: the tuple of tasks ``task`` waits for, read from the flat arrays."""

    def __init__(self, graph: TaskGraph) -> None:
        self._graph = graph

    def __len__(self) -> int:
        return len(self._graph)

    def __getitem__(self, task: int) -> tuple[int, ...]:
        g = self._graph
        ends = g.dep_end
        first = ends[task - 1] if task > 0 else 0
        return tuple(g.dep_flat[first:ends[task]]) + tuple(g.extra_deps.get(task, ()))


def _column(name: str) -> property:
    """A task column, read after moving every pending task to the arrays."""
    return property(lambda self: self._flushed()._columns[name], doc=f"The ``{name}`` of each task (an ``array``).")


class TaskGraph:
    """Ops of one run on one machine; built by a builder, run by the engine.

    Columns (one ``array`` entry per task, :data:`COLUMNS`): ``step``, ``stage``, ``micro``,
    ``server`` (int32), ``duration`` (int64 ns), ``op_code`` (uint8 into ``op_names``; ``op``
    reads names). Task ``t`` waits for ``dep_flat[dep_end[t-1]:dep_end[t]]`` and for
    ``extra_deps[t]`` (added later by :meth:`add_deps`, merged by :meth:`freeze`).
    """

    step, stage, op_code, micro, server, duration, dep_flat, dep_end = (_column(name) for name in COLUMNS)

    def __init__(self, profile: CostProfile, hardware: Hardware, placement: list[int], costs: CostModel,
                 method: str, device_policy: str) -> None:
        self.profile, self.hardware, self.placement = profile, hardware, placement
        self.costs, self.method = costs, method
        self.servers = [Server(d.name, "device", device_policy) for d in hardware.devices]
        self._server_ids = {s.name: i for i, s in enumerate(self.servers)}
        self._columns = {name: array(_TYPECODES[dtype]) for name, dtype in COLUMNS.items()}
        self._rows: list[int] = []  # pending tasks: step, micro, kind, end of its deps in _flat
        self._flat: list[int] = []  # their dependencies
        self._base = 0  # id of the first pending task
        self._kinds: dict[tuple[int, int, int, int], int] = {}  # (stage, op code, server, ns) → kind
        self._kind_rows: list[tuple[int, int, int, int]] = []
        self.op_names: list[str] = []
        self._op_codes: dict[str, int] = {}
        self.extra_deps: dict[int, list[int]] = {}
        self.op, self.deps = OpNames(self), Dependencies(self)
        #: Memory held from ``alloc``'s start to ``free``'s end (pending: alloc, free, bytes, kind code).
        self._buffer_columns = {name: array("q") for name in ("buffer_alloc", "buffer_free", "buffer_bytes",
                                                              "buffer_kind")}
        self._buffers: list[int] = []
        self.buffer_kinds: list[str] = []
        self._buffer_codes: dict[str, int] = {}
        # transfers made, producer << 32 | destination → last hop: the recent ones in a dict, the
        # older ones (moved at each flush) as sorted keys and values, which take 16 bytes each
        self._transfers: dict[int, int] = {}
        self._old_keys, self._old_hops = array("q"), array("q")
        self._routes: dict[int, tuple] = {}  # producer kind << 32 | destination → (post, hop kinds) or ()
        self._op_kind: dict[tuple[int, str, int], int] = {}  # (stage, op, device) → kind

    def __len__(self) -> int:
        return self._base + (len(self._rows) >> 2)

    def _code(self, op: str) -> int:
        code = self._op_codes.get(op)
        if code is None:
            if len(self.op_names) == 256:
                raise SimError(f"op {op!r}: a task graph holds at most 256 op names")
            code = self._op_codes[op] = len(self.op_names)
            self.op_names.append(op)
        return code

    def _kind(self, stage: int, code: int, server: int, duration: int) -> int:
        """The kind of a task: its stage, op code, server and duration, each checked once here."""
        key = (stage, code, server, duration)
        kind = self._kinds.get(key)
        if kind is None:
            for name, value in (("stage", stage), ("server", server), ("duration", duration)):
                info = np.iinfo(COLUMNS[name])
                if not _is_int64(value) or not info.min <= value <= info.max:
                    raise SimError(f"{self.op_names[code]} of stage {stage}: {name} {value!r} is not an integer "
                                   f"in {info.min}..{info.max}")
            kind = self._kinds[key] = len(self._kind_rows)
            self._kind_rows.append(key)
        return kind

    def _add(self, step: int, micro: int, kind: int, deps) -> int:
        flat, rows = self._flat, self._rows
        flat.extend(deps)
        rows.extend((step, micro, kind, len(flat)))
        entries = len(rows)
        task = self._base + (entries >> 2) - 1
        if entries >= CHUNK << 2:
            self._flush()
        return task

    def _flushed(self) -> TaskGraph:
        if self._rows:
            self._flush()
        return self

    def _flush(self) -> None:
        """Move the pending tasks to the arrays; :class:`SimError` names a value that does not fit."""
        rows, flat, columns, base = self._rows, self._flat, self._columns, self._base
        fields = ("step", "microbatch", "kind", "end")
        table = _int64(rows, lambda i: f"task {base + i // 4}'s {fields[i % 4]}").reshape(-1, 4)
        ends = table[:, 3]
        deps = _int64(flat, lambda i: f"a dependency of task {base + int(np.searchsorted(ends, i, side='right'))}")
        for name, values in (("step", table[:, 0]), ("micro", table[:, 1])):
            info = np.iinfo(np.int32)
            wrong = np.flatnonzero((values < info.min) | (values > info.max))
            if len(wrong):
                raise SimError(f"task {base + int(wrong[0])} has {name} {int(values[wrong[0]])}, not an int32")
        kinds = np.asarray(self._kind_rows, dtype=np.int64).reshape(-1, 4)[table[:, 2]]
        for name, values in (("step", table[:, 0]), ("stage", kinds[:, 0]), ("op_code", kinds[:, 1]),
                             ("micro", table[:, 1]), ("server", kinds[:, 2]), ("duration", kinds[:, 3]),
                             ("dep_end", ends + len(columns["dep_flat"])), ("dep_flat", deps)):
            columns[name].frombytes(values.astype(COLUMNS[name]).tobytes())
        self._base += len(table)
        rows.clear()
        flat.clear()
        self._age_transfers()

    def _age_transfers(self) -> None:
        """Move the memo of transfers from the dict to the sorted arrays."""
        if not self._transfers:
            return
        keys = np.fromiter(self._transfers, dtype=np.int64, count=len(self._transfers))
        hops = np.fromiter(self._transfers.values(), dtype=np.int64, count=len(keys))
        order = np.argsort(keys)
        keys, hops = keys[order], hops[order]
        if len(self._old_keys) and keys[0] < self._old_keys[-1]:  # an old producer sent again: merge
            keys, hops = np.concatenate([as_numpy(self._old_keys), keys]), np.concatenate([as_numpy(self._old_hops),
                                                                                          hops])
            order = np.argsort(keys, kind="stable")
            keys, hops = keys[order], hops[order]
            self._old_keys, self._old_hops = array("q"), array("q")
        self._old_keys.frombytes(keys.tobytes())
        self._old_hops.frombytes(hops.tobytes())
        self._transfers.clear()

    def _old_transfer(self, key: int) -> int | None:
        """The last hop of a transfer made before the last flush, if any."""
        keys = as_numpy(self._old_keys)
        at = int(np.searchsorted(keys, key))
        return self._old_hops[at] if at < len(keys) and keys[at] == key else None

    def _lengthen(self, task: int, ns: int) -> None:
        """Add ``ns`` to a task's duration, pending or not."""
        i = (task - self._base) << 2
        if i >= 0:
            stage, code, server, duration = self._kind_rows[self._rows[i + 2]]
            self._rows[i + 2] = self._kind(stage, code, server, duration + ns)
        else:
            self._columns["duration"][task] += ns

    def compute(self, step: int, stage: int, op: str, micro: int = 0, deps=(), device: int | None = None) -> int:
        """Add ``op`` of ``stage`` (on its placed device unless ``device`` is given); returns its id."""
        device = self.placement[stage] if device is None else device
        key = (stage, op, device)
        kind = self._op_kind.get(key)
        if kind is None:
            ns = self.hardware.devices[device].compute_ns(self.costs.cost(self.profile.stages[stage], op, self.method))
            kind = self._op_kind[key] = self._kind(stage, self._code(op), device, ns)
        flat, rows = self._flat, self._rows  # _add, inlined: building is the simulator's hot path
        flat.extend(deps)
        rows.extend((step, micro, kind, len(flat)))
        entries = len(rows)
        task = self._base + (entries >> 2) - 1
        if entries >= CHUNK << 2:
            self._flush()
        return task

    def data(self, producer: int, consumer_stage: int, device: int | None = None) -> int:
        """What an op of ``consumer_stage`` must wait for to have ``producer``'s output.

        The producer itself when both run on one device; otherwise the last hop of a transfer,
        added once per (producer, destination) however many ops read it. Ops whose output is
        not an activation or a gradient (a control dependency) cost no transfer.
        """
        dst = self.placement[consumer_stage] if device is None else device
        rows, i = self._rows, (producer - self._base) << 2
        if i >= 0:
            step, micro, kind = rows[i], rows[i + 1], rows[i + 2]
        else:
            step, micro, kind = self._flushed_task(producer)
        route = self._routes.get(kind << 32 | dst)
        if route is None:
            route = self._routes[kind << 32 | dst] = self._route(kind, dst)
        if not route:
            return producer
        key = producer << 32 | dst
        last = self._transfers.get(key)
        if last is None and producer < self._base:
            last = self._old_transfer(key)
        if last is not None:
            return last
        post, hops = route
        if post:
            self._lengthen(producer, post)  # the sender posts the message before its device is free
        last, flat = producer, self._flat
        for kind in hops:  # _add, inlined
            flat.append(last)
            rows.extend((step, micro, kind, len(flat)))
            last = self._base + (len(rows) >> 2) - 1
            if len(rows) >= CHUNK << 2:
                self._flush()
        self._transfers[key] = last
        return last

    def _flushed_task(self, task: int) -> tuple[int, int, int]:
        """``(step, micro, kind)`` of a task already in the arrays."""
        c = self._columns
        kind = self._kind(c["stage"][task], c["op_code"][task], c["server"][task], c["duration"][task])
        return c["step"][task], c["micro"][task], kind

    def _route(self, kind: int, dst: int) -> tuple[int, tuple[int, ...]] | tuple[()]:
        """How an output of a task of ``kind`` reaches device ``dst``: the sender's posting time and
        the kind (link and duration) of each hop; ``()`` if it needs no transfer."""
        stage, code, src, _ = self._kind_rows[kind]
        transfer_op = _TRANSFER_OP.get(self.op_names[code])
        if src == dst or transfer_op is None:
            return ()
        interface = self.profile.stages[stage] if transfer_op == "SEND_F" else self.profile.stages[stage - 1]
        nbytes = interface.activation_bytes if transfer_op == "SEND_F" else interface.gradient_bytes
        route = self.hardware.route(src, dst)
        post = route[0][1].sender_ns(nbytes) if route else 0
        code = self._code(transfer_op)
        return post, tuple(self._kind(stage, code, self._link(name), spec.transfer_ns(nbytes) - (post if hop == 0 else 0))
                           for hop, (name, spec) in enumerate(route))

    def hop(self, step: int, stage: int, op: str, micro: int, link: str, duration: int, deps=()) -> int:
        """Add a transfer op of ``duration`` ns on the link resource named ``link``; returns its id.

        For collectives (data parallelism's all-reduce) whose messages are not one producer's output.
        """
        return self._add(step, micro, self._kind(stage, self._code(op), self._link(link), duration), deps)

    def add_deps(self, task: int, *deps: int) -> None:
        """Make ``task`` also wait for ``deps`` (tasks created before or after it)."""
        if not 0 <= task < len(self):
            raise SimError(f"add_deps: task {task} is not in the graph ({len(self)} tasks)")
        self.extra_deps.setdefault(task, []).extend(deps)

    def freeze(self) -> None:
        """Move every task to the arrays, merge :meth:`add_deps`'s dependencies and check every id.

        The engine calls it. A frozen graph takes no new ops (its transfer memo is dropped, which
        at ten million ops is a few hundred MB); :meth:`add_deps` still works.
        """
        self._flushed()._flush_buffers()
        self._rows = self._flat = self._buffers = self._transfers = _FROZEN
        self._old_keys = self._old_hops = array("q")
        n, columns = len(self), self._columns
        if self.extra_deps:
            added = sorted(self.extra_deps.items())
            extra = _int64([d for _, deps in added for d in deps], lambda i: "a dependency given to add_deps")
            owners = np.concatenate([np.repeat(np.arange(n, dtype=np.int64), np.diff(self.column("dep_end"),
                                                                                     prepend=0)),
                                     np.repeat([t for t, _ in added], [len(d) for _, d in added]).astype(np.int64)])
            order = np.argsort(owners, kind="stable")  # a task's own deps first, then the added ones in order
            columns["dep_flat"] = array("q", np.concatenate([self.column("dep_flat"), extra])[order].tobytes())
            columns["dep_end"] = array("q", np.cumsum(np.bincount(owners, minlength=n)).astype(np.int64).tobytes())
            self.extra_deps = {}
        flat = self.column("dep_flat")
        bad = np.flatnonzero((flat < 0) | (flat >= n))
        if len(bad):
            task = int(np.searchsorted(self.column("dep_end"), bad[0], side="right"))
            raise SimError(f"task {task} waits for task {int(flat[bad[0]])}, which is not in the graph ({n} tasks)")

    def users(self) -> tuple[array, array]:
        """The ops waiting for each op, as CSR: op ``t``'s users are ``users[offsets[t]:offsets[t + 1]]``
        in task order (an op listed twice as a dependency is a user twice). Call after :meth:`freeze`."""
        n = len(self)
        flat = self.column("dep_flat")
        small = max(n, len(flat)) < 2**31  # then int32 ids and offsets: half the memory
        dtype, code = (np.int32, "i") if small else (np.int64, "q")
        owners = np.repeat(np.arange(n, dtype=dtype), np.diff(self.column("dep_end"), prepend=0))
        users = owners[np.argsort(flat, kind="stable")]
        offsets = np.zeros(n + 1, dtype=dtype)
        np.cumsum(np.bincount(flat, minlength=n), out=offsets[1:])
        return array(code, offsets.tobytes()), array(code, users.tobytes())

    def column(self, name: str) -> np.ndarray:
        """A column as read-only numpy, no copy: a task column (:data:`COLUMNS`) or a buffer column
        (``buffer_alloc``, ``buffer_free``, ``buffer_bytes``, ``buffer_kind`` into ``buffer_kinds``)."""
        if name.startswith("buffer_"):
            return as_numpy(self._flush_buffers()[name])
        return as_numpy(self._flushed()._columns[name])

    def stage_ops(self, stage: int) -> set[str]:
        """The compute ops this run gives ``stage`` (from the costs looked up while building)."""
        return {op for (s, op, _) in self._op_kind if s == stage}

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
        pending = self._buffers
        pending.extend((alloc, free, nbytes, code))
        if len(pending) >= CHUNK << 2:
            self._flush_buffers()

    def _flush_buffers(self) -> dict[str, array]:
        """Move the pending buffers to their arrays; returns the buffer columns."""
        pending, columns = self._buffers, self._buffer_columns
        if pending:
            first = len(columns["buffer_alloc"])
            table = _int64(pending, lambda i: f"buffer {first + i // 4}'s {('alloc', 'free', 'nbytes')[i % 4]}")
            for k, name in enumerate(("buffer_alloc", "buffer_free", "buffer_bytes", "buffer_kind")):
                columns[name].frombytes(table[k::4].tobytes())
            pending.clear()
        return columns

    def set_order(self, device: int, order: Sequence[int]) -> None:
        """The op sequence of a ``static`` device (kept as an int64 ``array``)."""
        self.servers[device].order = array("q", np.asarray(order, dtype=np.int64).tobytes())

    def extend(self, tasks: dict[str, np.ndarray], buffers: dict[str, np.ndarray]) -> None:
        """Append whole columns of tasks (every name of :data:`COLUMNS`; ``dep_end`` absolute) and
        of buffers, as :mod:`sglab.sim.periodic` copies steps. The transfer memo is not extended:
        :meth:`data` on an appended task adds its transfer anew."""
        self._flushed()._flush_buffers()
        for name in ("step", "micro"):
            values, info = tasks[name], np.iinfo(COLUMNS[name])
            if len(values) and (values.min() < info.min or values.max() > info.max):
                raise SimError(f"extend: a {name} outside {info.min}..{info.max}")
        for name, dtype in COLUMNS.items():
            self._columns[name].frombytes(np.ascontiguousarray(tasks[name], dtype=dtype).tobytes())
        for name, values in buffers.items():
            self._buffer_columns[name].frombytes(np.ascontiguousarray(values, dtype=np.int64).tobytes())
        self._base = len(self._columns["step"])

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
