"""Schedules with ``v`` stages per rank laid out in a loop (stage ``s`` on rank ``s % ranks``).

Interleaved 1F1B (Narayanan et al., Megatron-LM, SC 2021) runs the microbatches depth first, a
round of ``ranks`` microbatches through one local stage before the next; its zero-bubble
variant (Qi et al., ICLR 2024) sends only the input gradient ``I`` on and runs each weight
gradient ``W`` a few backwards later, into what would be idle time. Looped BFS (Lamy-Poirier,
2023) runs every microbatch through a local stage before the next stage: breadth first.

The orders are those of ``torch.distributed.pipelining``'s ScheduleInterleaved1F1B,
ScheduleInterleavedZeroBubble and ScheduleLoopedBFS (tests compare them action for action),
including torch's relaxation of Megatron's rule that the microbatches be a multiple of the ranks:
they need only be a multiple of the rounds, ``max(1, microbatches // ranks)``.
"""

from __future__ import annotations

from sglab.ops import Action
from sglab.schedules.schedule import NumberedActions, check_sizes


def _round_size(num_ranks: int, microbatches: int) -> int:
    """Microbatches per round; raises ValueError unless they divide evenly into rounds."""
    rounds = max(1, microbatches // num_ranks)
    if microbatches % rounds:
        raise ValueError(f"microbatches must split into {rounds} rounds of equal size "
                         f"(rounds = max(1, microbatches // ranks)), got {microbatches}")
    return microbatches // rounds


def _depth_first(rank: int, num_ranks: int, microbatches: int, v: int, zero_bubble: bool) -> list[Action]:
    """The interleaved order: warm-up forwards, then one forward and one backward, then the rest.

    A rank's forwards go through its local stages a round at a time, its backwards the other way;
    warm-up covers ``v - 1`` rounds plus two slots (one with zero bubble, whose backward is only
    I) per rank below the last. With zero bubble, rank ``r`` runs the W of its ``b``-th backward
    after its ``(b + r)``-th, and the W's still owed at the end.
    """
    check_sizes(rank, num_ranks, microbatches, v)
    per_round = _round_size(num_ranks, microbatches)
    slots = microbatches * v
    warmup = min((v - 1) * per_round + (1 if zero_bubble else 2) * (num_ranks - 1 - rank), slots)
    forward_stage = [rank + num_ranks * ((k // per_round) % v) for k in range(slots)]
    backward_stage = [rank + num_ranks * (v - 1 - (b // per_round) % v) for b in range(slots)]
    out, backward_op = NumberedActions(), "I" if zero_bubble else "B"
    for k in range(warmup):
        out.add(forward_stage[k], "F")
    weights = 0
    for b in range(slots):
        if warmup + b < slots:
            out.add(forward_stage[warmup + b], "F")
        out.add(backward_stage[b], backward_op)
        if zero_bubble and b >= rank:
            out.add(backward_stage[weights], "W")
            weights += 1
    for b in range(weights if zero_bubble else slots, slots):
        out.add(backward_stage[b], "W")
    return out.actions


def interleaved_1f1b_actions(rank: int, num_ranks: int, microbatches: int, stages_per_rank: int = 2) -> list[Action]:
    """Interleaved 1F1B: 1F1B over ``stages_per_rank`` looped stages per rank, depth first.

    Its bubble is that of 1F1B divided by the stages per rank, for ``v`` times the messages.
    """
    return _depth_first(rank, num_ranks, microbatches, stages_per_rank, zero_bubble=False)


def interleaved_zero_bubble_actions(rank: int, num_ranks: int, microbatches: int,
                                    stages_per_rank: int = 2) -> list[Action]:
    """Interleaved zero bubble: interleaved 1F1B with the backward split, each W delayed ``rank`` backwards."""
    return _depth_first(rank, num_ranks, microbatches, stages_per_rank, zero_bubble=True)


def looped_bfs_actions(rank: int, num_ranks: int, microbatches: int, stages_per_rank: int = 2) -> list[Action]:
    """Looped BFS: every microbatch's forward on each local stage in turn, then the backwards the
    other way round, the last microbatch first (as torch orders them)."""
    check_sizes(rank, num_ranks, microbatches, stages_per_rank)
    stages = range(rank, num_ranks * stages_per_rank, num_ranks)
    forwards = [Action(s, "F", j) for s in stages for j in range(microbatches)]
    return forwards + [Action(s, "B", j) for s in reversed(stages) for j in reversed(range(microbatches))]
