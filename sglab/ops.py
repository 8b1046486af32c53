"""The op vocabulary shared by training, profiling, simulation and figures.

A network is a chain of stages ``0..K-1``. Per stage and per minibatch the work is a handful
of ops, named as in ``torch.distributed.pipelining`` and extended for synthetic gradients:

==========  ==================================================================================
``F``       forward of the stage (the last stage's forward includes the loss)
``B``       backward of the stage: input gradient and weight gradients
``I``       the input-gradient half of ``B`` (when split)
``W``       the weight-gradient half of ``B`` (when split)
``U``       optimizer update of the stage's parameters
``S``       synthesizer forward: predict the gradient ``δ̂_i`` of the stage's output
``T``       synthesizer training step on its target (true or bootstrapped gradient)
``SI``      synthetic-input forward: predict the stage's input ``ĥ_{i-1}`` from ``x`` (and ``c``)
``TI``      synthetic-input model training step on the real ``h_{i-1}``
``SEND_F``  / ``RECV_F``: move an activation between devices
``SEND_B``  / ``RECV_B``: move a gradient between devices
``AR``      one message of a gradient all-reduce between data-parallel replicas
==========  ==================================================================================

An :class:`Action` is written like torch's: ``2F0`` is stage 2, forward, microbatch 0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Compute ops, in the order a stage usually runs them (used to break ties deterministically).
COMPUTE_OPS = ("SI", "F", "S", "B", "I", "W", "U", "TI", "T")
#: Communication ops.
COMM_OPS = ("SEND_F", "RECV_F", "SEND_B", "RECV_B", "AR")
#: Every op name, compute first.
ALL_OPS = COMPUTE_OPS + COMM_OPS

#: One-line meaning of each op, for docs, legends and error messages.
OP_MEANING = {
    "F": "forward",
    "B": "backward (input and weight gradients)",
    "I": "backward, input gradient only",
    "W": "backward, weight gradients only",
    "U": "optimizer update",
    "S": "synthetic-gradient forward",
    "T": "synthesizer training step",
    "SI": "synthetic-input forward",
    "TI": "synthetic-input model training step",
    "SEND_F": "send activation",
    "RECV_F": "receive activation",
    "SEND_B": "send gradient",
    "RECV_B": "receive gradient",
    "AR": "all-reduce message (data parallelism)",
}

_ACTION_RE = re.compile(r"^(\d+)(" + "|".join(sorted(ALL_OPS, key=len, reverse=True)) + r")(\d+)$")


@dataclass(frozen=True, order=True)
class Action:
    """One op of one stage on one microbatch (or step), e.g. ``Action(2, "F", 0)`` = ``2F0``."""

    stage: int
    op: str
    microbatch: int = 0

    def __post_init__(self) -> None:
        if self.op not in OP_MEANING:
            raise ValueError(f"unknown op {self.op!r}; known ops: {', '.join(ALL_OPS)}")
        if self.stage < 0 or self.microbatch < 0:
            raise ValueError(f"stage and microbatch must be >= 0, got {self.stage}, {self.microbatch}")

    def __str__(self) -> str:
        return f"{self.stage}{self.op}{self.microbatch}"

    @classmethod
    def parse(cls, text: str) -> "Action":
        """Parse torch-style text such as ``"2F0"`` or ``"1SEND_B3"``."""
        match = _ACTION_RE.match(text.strip())
        if not match:
            raise ValueError(f"cannot parse action {text!r}; expected e.g. '2F0' (stage, op, microbatch)")
        return cls(int(match.group(1)), match.group(2), int(match.group(3)))

    @property
    def rank(self) -> int:
        """Position of the op in :data:`ALL_OPS`, for stable ordering."""
        return ALL_OPS.index(self.op)

    @property
    def key(self) -> tuple[int, int, int]:
        """``(stage, op rank, microbatch)``: the order in which ties between ready ops are broken."""
        return (self.stage, ALL_OPS.index(self.op), self.microbatch)
