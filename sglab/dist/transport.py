"""Point-to-point tensor messages between ranks, every wait bounded by a deadline.

The protocol is fixed-shape: a message carries one tensor whose shape and dtype the receiver
already knows. That holds for a feed-forward chain, where interface ``i`` always carries
``h_i`` (batch × the stage's output shape) forward and ``δ_i`` (the same shape) backward, so
no header travels and a receive is one ``irecv`` into a preallocated buffer.

Each message is tagged with its step and its direction (:func:`message_tag`), so a receive can
never be matched by a message of another step even when several are in flight.

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

    def __init__(self, rank: int, peer: int, op: str, step: int, timeout: float):
        self.rank, self.peer, self.op, self.step, self.timeout = rank, peer, op, step, timeout
        super().__init__(f"rank {rank} timed out after {timeout:g} s in {op} of step {step}, "
                         f"waiting for rank {peer}; is rank {peer} alive and running the same method and steps?")


def message_tag(step: int, kind: int) -> int:
    """The gloo tag of step ``step``'s message of ``kind`` (:data:`FORWARD` or :data:`BACKWARD`)."""
    return 2 * step + kind


@dataclass
class Pending:
    """A posted receive: the buffer it fills and the work to wait for."""

    peer: int
    op: str
    step: int
    buffer: torch.Tensor
    work: dist.Work

    def ready(self) -> bool:
        """Whether the message has arrived (never blocks)."""
        return self.work.is_completed()


class Transport:
    """This rank's sends and receives, each wait bounded by ``timeout`` seconds.

    ``on_wait(peer, op, step)`` is called before every blocking wait, so a launcher can show
    what a rank was waiting for when it was killed.
    """

    def __init__(self, rank: int, timeout: float = 60.0, max_pending: int = 2, on_wait=None):
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self.rank, self.timeout, self.max_pending = rank, timeout, max_pending
        self.on_wait = on_wait
        # kept until completed: gloo reads the tensor while the send is in flight
        self._sends: dict[int, deque] = {}

    def _wait(self, work: dist.Work, peer: int, op: str, step: int) -> None:
        if self.on_wait is not None:
            self.on_wait(peer, op, step)
        try:
            work.wait(timedelta(seconds=self.timeout))
        except RuntimeError as err:
            # gloo says "Timed out waiting ... for recv operation"; a dead peer shows as a closed connection
            if "timed out" in str(err).lower():
                raise RankTimeout(self.rank, peer, op, step, self.timeout) from err
            raise PeerError(f"rank {self.rank}: {op} of step {step} with rank {peer} failed: {err}") from err

    def send(self, tensor: torch.Tensor, peer: int, kind: int, step: int, op: str) -> None:
        """Post ``tensor`` to ``peer`` and return; waits only while ``max_pending`` sends to it are outstanding."""
        queue = self._sends.setdefault(peer, deque())
        while queue and queue[0][0].is_completed():
            queue.popleft()
        while len(queue) >= self.max_pending:
            work, old_op, old_step, _ = queue.popleft()
            self._wait(work, peer, old_op, old_step)
        tensor = tensor.detach().contiguous()
        queue.append((dist.isend(tensor, peer, tag=message_tag(step, kind)), op, step, tensor))

    def post_recv(self, shape, dtype: torch.dtype, peer: int, kind: int, step: int, op: str) -> Pending:
        """Post a receive of a tensor of ``shape`` and ``dtype`` from ``peer``; :meth:`wait` it later."""
        buffer = torch.empty(shape, dtype=dtype)
        return Pending(peer, op, step, buffer, dist.irecv(buffer, peer, tag=message_tag(step, kind)))

    def wait(self, pending: Pending) -> torch.Tensor:
        """The tensor of a posted receive, once it has arrived (raises :class:`RankTimeout` past the deadline)."""
        self._wait(pending.work, pending.peer, pending.op, pending.step)
        return pending.buffer

    def recv(self, shape, dtype: torch.dtype, peer: int, kind: int, step: int, op: str) -> torch.Tensor:
        """Receive a tensor of ``shape`` and ``dtype`` from ``peer``, waiting at most the timeout."""
        return self.wait(self.post_recv(shape, dtype, peer, kind, step, op))

    def flush(self) -> None:
        """Wait for every pending send (before leaving the process group, so no message is lost)."""
        for peer, queue in self._sends.items():
            while queue:
                work, op, step, _ = queue.popleft()
                self._wait(work, peer, op, step)
