"""Run a worker function once per rank on torch.distributed (gloo), locally or under torchrun.

:func:`launch` starts ``world_size`` processes with the ``spawn`` method on this machine, each
joining a gloo process group on a free local port, and returns what each rank's worker
returned, in rank order. It never hangs on a broken run: a rank that raises or dies makes it
terminate the others at once and raise :class:`RankFailed` naming the rank and the last op it
began (each rank writes its last op into a small shared array, so even a rank killed by a
signal can be named), and the whole run is bounded by ``run_timeout``.

Ctrl-C (SIGINT) is the launcher's to handle: the ranks ignore it, and the launcher, interrupted,
terminates every rank before it raises :class:`KeyboardInterrupt` (a terminal sends SIGINT to
the whole process group; a rank stopped in the middle of an op could otherwise leave the others
waiting for it).

:func:`run_from_env` is the same worker under ``torchrun``, which sets ``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``; it returns this rank's result.

A worker is ``worker(ctx, *args)`` with ``ctx`` a :class:`RankContext`; it must be importable
by name (a module-level function), as ``spawn`` pickles it by reference.
"""

from __future__ import annotations

import io
import os
import queue as queues
import signal
import socket
import sys
import time
import traceback
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sglab.allocator import steady_allocator
from sglab.dist.transport import PeerError
from sglab.errors import SglabError, UsageError
from sglab.ops import ALL_OPS, Action

_SLOTS = 5  # per rank in the shared array: step, stage, op index, microbatch, peer waited for (-1: none)
_SILENT = 0.3  # seconds a rank may be gone before its message, if any, is given up on
_GRACE = 1.5  # seconds to listen after a first failure for the one that caused it


class RankFailed(SglabError):
    """A rank raised, died, or ran past the run's timeout; names the rank and the last op it began.

    ``traceback`` holds the rank's own traceback when it raised (empty when it was killed).
    """

    def __init__(self, rank: int, where: str, detail: str, traceback_text: str = ""):
        self.rank, self.where, self.detail, self.traceback = rank, where, detail, traceback_text
        super().__init__(f"rank {rank} failed {where}: {detail}")


@dataclass
class RankContext:
    """What a worker knows about its place in the run, and where it reports its last op."""

    rank: int
    world_size: int
    timeout: float
    last_op: Any = None  # the launcher's shared array, or None under torchrun

    def mark(self, step: int, action: Action) -> None:
        """Record that ``action`` of ``step`` has begun (read by the launcher if this rank fails)."""
        if self.last_op is not None:
            base = _SLOTS * self.rank
            self.last_op[base:base + _SLOTS] = [step, action.stage, ALL_OPS.index(action.op), action.microbatch, -1]

    def waiting_for(self, peer: int) -> None:
        """Record that the current op is blocked on ``peer``."""
        if self.last_op is not None:
            self.last_op[_SLOTS * self.rank + 4] = peer


def describe_last_op(values) -> str:
    """``in 1B3 of step 2, waiting for rank 0`` (op ``B`` of stage 1 on microbatch 3) from one rank's slots
    of the shared array."""
    step, stage, op, microbatch, peer = values
    if step < 0:
        return "before its first op (while starting up)"
    text = f"in {Action(stage, ALL_OPS[op], microbatch)} of step {step}"
    return text + (f", waiting for rank {peer}" if peer >= 0 else "")


def free_port() -> int:
    """A TCP port that was free on this host a moment ago (another process could still take it first)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(worker: Callable, world_size: int, *args, timeout: float = 60.0, run_timeout: float | None = None,
           threads: int = 1) -> list[Any]:
    """Run ``worker(ctx, *args)`` on ranks ``0..world_size-1``, one process each; their results in rank order.

    ``timeout`` bounds every blocking wait inside the ranks (joining the group, each message);
    ``run_timeout`` the whole run (None: no bound beyond the ranks' own). ``threads`` is each
    rank's torch thread count. Raises :class:`RankFailed` for the first rank that fails.
    """
    if world_size < 1:
        raise UsageError(f"world_size must be >= 1, got {world_size}")
    ctx = mp.get_context("spawn")
    last_op = ctx.Array("q", [-1] * (_SLOTS * world_size), lock=False)  # each rank writes only its own slots
    messages = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_entry, args=(rank, world_size, port, timeout, threads, last_op, messages, worker, args),
                         name=f"sglab-rank{rank}", daemon=True) for rank in range(world_size)]
    for proc in procs:
        proc.start()
    try:
        return _collect(procs, messages, last_op, run_timeout)
    finally:
        _stop(procs)


def run_from_env(worker: Callable, *args, timeout: float = 60.0, threads: int = 1) -> Any:
    """Run ``worker(ctx, *args)`` as the rank that ``torchrun`` started; this rank's result."""
    missing = [name for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing:
        raise UsageError(f"run_from_env needs the environment torchrun sets; missing: {', '.join(missing)}")
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    steady_allocator()  # as the profile that predicts this run allocates
    torch.set_num_threads(threads)
    dist.init_process_group("gloo", init_method="env://", rank=rank, world_size=world_size,
                            timeout=timedelta(seconds=timeout))
    try:
        return worker(RankContext(rank, world_size, timeout), *args)
    finally:
        dist.destroy_process_group()


def _entry(rank, world_size, port, timeout, threads, last_op, messages, worker, args) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the launcher stops the ranks (module docstring)
    steady_allocator()  # as the profile that predicts this run allocates
    torch.set_num_threads(threads)
    try:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size,
                                timeout=timedelta(seconds=timeout))
        result = worker(RankContext(rank, world_size, timeout, last_op), *args)
        dist.destroy_process_group()
        buffer = io.BytesIO()
        torch.save(result, buffer)  # bytes, not tensors: shared-memory handles die with this process
        messages.put((rank, "ok", buffer.getvalue()))
    except BaseException as err:  # noqa: BLE001 - every failure must reach the launcher, as text
        messages.put((rank, "error", f"{type(err).__name__}: {err}", traceback.format_exc(), isinstance(err, PeerError)))
        messages.close()
        messages.join_thread()  # the message must be out before this process goes
        sys.exit(1)


def _where(last_op, rank: int) -> str:
    return describe_last_op(list(last_op[_SLOTS * rank:_SLOTS * (rank + 1)]))


def _collect(procs, messages, last_op, run_timeout: float | None) -> list[Any]:
    """Every rank's result, or raise for the rank that failed first.

    A rank that dies takes its connections with it, so its peers soon fail too, waiting for it;
    a failure that is only a lost peer (:class:`~sglab.dist.transport.PeerError`) or the run's
    timeout makes the launcher listen a little longer (``_GRACE``) for the rank that caused it.
    """
    world_size, now = len(procs), time.monotonic
    deadline = None if run_timeout is None else now() + run_timeout
    results: dict[int, Any] = {}
    failures: list[tuple[int, int, RankFailed]] = []  # (priority, order, error): lowest is to blame
    exited: dict[int, float] = {}  # rank -> when it was first seen gone without a message
    grace_end = None
    while True:
        try:
            rank, status, *payload = messages.get(timeout=0.05)
        except queues.Empty:
            pass
        else:
            if status == "ok":
                results[rank] = torch.load(io.BytesIO(payload[0]), weights_only=False)
            else:
                detail, text, peer_error = payload
                failures.append((int(peer_error), len(failures), RankFailed(rank, _where(last_op, rank), detail, text)))
            exited.pop(rank, None)
        blamed = {f[2].rank for f in failures}
        for rank, proc in enumerate(procs):
            if rank in results or rank in blamed or proc.exitcode is None:
                continue
            if now() - exited.setdefault(rank, now()) > _SILENT:  # gone, and its last message never came
                code = proc.exitcode
                how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code} without a result"
                failures.append((0, len(failures), RankFailed(rank, _where(last_op, rank), how)))
        if len(results) == world_size:
            return [results[rank] for rank in range(world_size)]
        if deadline is not None and now() > deadline and not failures:
            late = min(set(range(world_size)) - set(results))
            failures.append((2, 0, RankFailed(late, _where(last_op, late), f"the run passed its timeout of {run_timeout:g} s "
                                              f"(ranks still running: {sorted(set(range(world_size)) - set(results))})")))
        if failures:
            grace_end = grace_end or now() + _GRACE
            first = min(failures, key=lambda f: f[:2])
            # a rank's own failure is the cause; a lost peer or a timeout may be a consequence of one still to come
            if first[0] == 0 or now() >= grace_end or len(results) + len({f[2].rank for f in failures}) == world_size:
                raise first[2]


def _stop(procs) -> None:
    """Terminate every rank still running, then kill what does not go within a few seconds."""
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join(timeout=3)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=3)
