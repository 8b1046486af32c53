"""Point-to-point tensor messages between ranks, every wait bounded by a deadline.

The protocol is fixed-shape: a message carries one tensor whose shape and dtype the receiver
already knows. That holds for a feed-forward chain, where interface ``i`` always carries
``h_i`` (batch × the stage's output shape) forward and ``δ_i`` (the same shape) backward, so
no header travels and a receive is one ``irecv`` into a preallocated buffer.

Each message is tagged with its step, its direction and, in a pipeline, its microbatch
(:func:`message_tag`), so a receive can never be matched by a message of another step or
microbatch even when several are in flight.

Gloo completes a send only once the peer has posted the matching receive, so sends are posted
(``isend``) and kept pending; :meth:`Transport.send` waits for the oldest pending send to a peer
only once ``max_pending`` are outstanding, which is the bounded queue between an unlocked
stage and the next one (:meth:`sglab.methods.Method.cross_step_edges`' ``max_ahead``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from sglab.errors import SglabError

#: Message kinds: activations go up the chain, gradients come down it.
FORWARD, BACKWARD = 0, 1


class PeerError(SglabError):
    """A message to or from a peer rank failed (the peer is gone, or never answered)."""


class RankTimeout(PeerError, TimeoutError):
    """A rank waited longer than its timeout for a peer; the message names both ranks and the op."""

    def __init__(self, rank: int, peer: int, op: str, step: int, timeout: float, microbatch: int | None = None):
        self.rank, self.peer, self.op, self.step, self.timeout = rank, peer, op, step, timeout
        self.microbatch = microbatch
        where = f"{op} of step {step}" + ("" if microbatch is None else f", microbatch {microbatch}")
        super().__init__(f"rank {rank} timed out after {timeout:g} s in {where}, "
                         f"waiting for rank {peer}; is rank {peer} alive and running the same method and steps?")


def message_tag(step: int, kind: int, microbatch: int = 0, microbatches: int = 1) -> int:
    """The gloo tag of step ``step``'s message of ``kind`` (:data:`FORWARD` or :data:`BACKWARD`) for
    ``microbatch`` of the step's ``microbatches`` (one per step: ``2 * step + kind``)."""
    if not 0 <= microbatch < microbatches:
        raise ValueError(f"microbatch {microbatch} is not one of the step's {microbatches}")
    return 2 * (step * microbatches + microbatch) + kind


@dataclass
class Pending:
    """A posted receive: the buffer it fills and the work to wait for."""

    peer: int
    op: str
    step: int
    buffer: torch.Tensor
    work: dist.Work
    microbatch: int | None = None

    def ready(self) -> bool:
        """Whether the message has arrived (never blocks)."""
        return self.work.is_completed()


class Transport:
    """This rank's sends and receives, each wait bounded by ``timeout`` seconds.

    ``on_wait(peer, op, step)`` is called before every blocking wait, so a launcher can show
    what a rank was waiting for when it was killed. ``microbatches`` is how many microbatches
    a step has (a pipeline's); every message then names its microbatch.
    """

    def __init__(self, rank: int, timeout: float = 60.0, max_pending: int = 2, on_wait=None, microbatches: int = 1):
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        if microbatches < 1:
            raise ValueError(f"microbatches must be >= 1, got {microbatches}")
        self.rank, self.timeout, self.max_pending = rank, timeout, max_pending
        self.microbatches = microbatches
        self.on_wait = on_wait
        # kept until completed: gloo reads the tensor while the send is in flight
        self._sends: dict[int, deque] = {}

    def _wait(self, work: dist.Work, peer: int, op: str, step: int, microbatch: int | None = None) -> None:
        if self.on_wait is not None:
            self.on_wait(peer, op, step)
        try:
            work.wait(timedelta(seconds=self.timeout))
        except RuntimeError as err:
            # gloo says "Timed out waiting ... for recv operation"; a dead peer shows as a closed connection
            if "timed out" in str(err).lower():
                raise RankTimeout(self.rank, peer, op, step, self.timeout, microbatch) from err
            where = f"{op} of step {step}" + ("" if microbatch is None else f", microbatch {microbatch}")
            raise PeerError(f"rank {self.rank}: {where} with rank {peer} failed: {err}") from err

    def _tag(self, step: int, kind: int, microbatch: int | None) -> int:
        return message_tag(step, kind, microbatch or 0, self.microbatches)

    def send(self, tensor: torch.Tensor, peer: int, kind: int, step: int, op: str, microbatch: int | None = None) -> None:
        """Post ``tensor`` to ``peer`` and return; waits only while ``max_pending`` sends to it are outstanding."""
        queue = self._sends.setdefault(peer, deque())
        while queue and queue[0][0].is_completed():
            queue.popleft()
        while len(queue) >= self.max_pending:
            work, old_op, old_step, old_micro, _ = queue.popleft()
            self._wait(work, peer, old_op, old_step, old_micro)
        tensor = tensor.detach().contiguous()
        queue.append((dist.isend(tensor, peer, tag=self._tag(step, kind, microbatch)), op, step, microbatch, tensor))

    def post_recv(self, shape, dtype: torch.dtype, peer: int, kind: int, step: int, op: str,
                  microbatch: int | None = None) -> Pending:
        """Post a receive of a tensor of ``shape`` and ``dtype`` from ``peer``; :meth:`wait` it later."""
        buffer = torch.empty(shape, dtype=dtype)
        work = dist.irecv(buffer, peer, tag=self._tag(step, kind, microbatch))
        return Pending(peer, op, step, buffer, work, microbatch)

    def wait(self, pending: Pending) -> torch.Tensor:
        """The tensor of a posted receive, once it has arrived (raises :class:`RankTimeout` past the deadline)."""
        self._wait(pending.work, pending.peer, pending.op, pending.step, pending.microbatch)
        return pending.buffer

    def recv(self, shape, dtype: torch.dtype, peer: int, kind: int, step: int, op: str,
             microbatch: int | None = None) -> torch.Tensor:
        """Receive a tensor of ``shape`` and ``dtype`` from ``peer``, waiting at most the timeout."""
        return self.wait(self.post_recv(shape, dtype, peer, kind, step, op, microbatch))

    def flush(self) -> None:
        """Wait for every pending send (before leaving the process group, so no message is lost)."""
        for peer, queue in self._sends.items():
            while queue:
                work, op, step, microbatch, _ = queue.popleft()
                self._wait(work, peer, op, step, microbatch)
