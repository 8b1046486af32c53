"""Schedules of one stage per rank that flush every step: GPipe, 1F1B and the zero-bubble ZB-H1 and ZB-H2.

Each generator returns rank ``r``'s compute actions for one step of ``microbatches`` over
``ranks`` ranks (stage ``r`` on rank ``r``); ``stages_per_rank`` is there for the common
signature and must be 1.

ZB-H1 and ZB-H2 are the handcrafted schedules of Qi et al., "Zero Bubble Pipeline Parallelism"
(ICLR 2024, section 3): the backward is split into ``I`` (input gradient, on the critical path
to the stage below) and ``W`` (weight gradient, which nothing waits for), and the W's are moved
into what would be idle time. With ``p`` ranks, costs F, I, W (W no dearer than F or I) and
``m >= p`` microbatches (``m >= 2p - 1`` for ZB-H2), and no communication time:

* ZB-H1 takes ``m·(F+I+W) + (p-1)·(F+I-W)`` (1F1B: ``+ (p-1)·(F+I+W)``), every rank keeping at
  most ``p`` microbatches' activations (F done, W not), 1F1B's peak on rank 0;
* ZB-H2 keeps rank ``r`` busy for ``m·(F+I+W) + (p-1-r)·(F+I-2W)`` from its first op to its
  last: no bubble at all when F = I = W, once steps overlap (the paper's "parallelogram"; an
  optimizer step that waits for every rank still sees ``(p-1)·F`` of fill), at up to ``2p - 1``
  microbatches' activations per rank.

The tests check both formulas exactly with a unit-time evaluator.
"""

from __future__ import annotations

from sglab.ops import Action
from sglab.schedules.schedule import NumberedActions, check_sizes


def gpipe_actions(rank: int, num_ranks: int, microbatches: int, stages_per_rank: int = 1) -> list[Action]:
    """GPipe: every forward, then every backward (Huang et al., 2019)."""
    check_sizes(rank, num_ranks, microbatches, stages_per_rank, fixed=1)
    return [Action(rank, "F", j) for j in range(microbatches)] + [Action(rank, "B", j) for j in range(microbatches)]


def one_f_one_b_actions(rank: int, num_ranks: int, microbatches: int, stages_per_rank: int = 1) -> list[Action]:
    """1F1B (PipeDream-Flush): ``ranks - rank - 1`` warm-up forwards, then alternate, then drain.

    Rank ``r`` never holds more than ``ranks - r`` microbatches' activations.
    """
    check_sizes(rank, num_ranks, microbatches, stages_per_rank, fixed=1)
    warmup = min(num_ranks - rank - 1, microbatches)
    actions = [Action(rank, "F", j) for j in range(warmup)]
    for j in range(microbatches - warmup):
        actions += [Action(rank, "F", warmup + j), Action(rank, "B", j)]
    return actions + [Action(rank, "B", j) for j in range(microbatches - warmup, microbatches)]


def zb_h1_actions(rank: int, num_ranks: int, microbatches: int, stages_per_rank: int = 1) -> list[Action]:
    """ZB-H1: 1F1B with the backward split and rank ``r``'s W's each ``r`` backwards late.

    Rank ``r`` warms up with 1F1B's ``ranks - 1 - r`` forwards; the later ranks, which warm up
    less, hold their W's longer, so every rank keeps ``ranks`` microbatches in flight and the W's
    left at the end fill the drain. This is torch's ScheduleInterleavedZeroBubble with one stage
    per rank (its ZB1P), without that class's requirement that rounds divide the microbatches.
    """
    check_sizes(rank, num_ranks, microbatches, stages_per_rank, fixed=1)
    warmup = min(num_ranks - 1 - rank, microbatches)
    out = [Action(rank, "F", j) for j in range(warmup)]
    for j in range(microbatches):
        if warmup + j < microbatches:
            out.append(Action(rank, "F", warmup + j))
        out.append(Action(rank, "I", j))
        if j >= rank:
            out.append(Action(rank, "W", j - rank))
    return out + [Action(rank, "W", j) for j in range(max(0, microbatches - rank), microbatches)]


def _zb_h2_slots(rank: int, num_ranks: int) -> list[str]:
    """The ops ZB-H2's rank ``rank`` means to run after its warm-up, before its steady (I, W, F) cycle."""
    fill = ["I", "F"] * (2 * rank)  # forwards instead of W's: the W's build up for the drain
    return fill + [op for i in range(2 * (num_ranks - 1 - rank)) for op in ("I", "W" if i % 2 == 0 else "F")]


def zb_h2_actions(rank: int, num_ranks: int, microbatches: int, stages_per_rank: int = 1) -> list[Action]:
    """ZB-H2: ``2(ranks - 1 - r) + 1`` warm-up forwards, then I's as soon as they can run, W's deferred.

    After the warm-up, rank ``r`` alternates I with F for ``2r`` steps (so it reaches
    ``2·ranks - 1`` microbatches in flight), then I with W and F in turn for
    ``2(ranks - 1 - r)`` steps, then cycles I, W, F; a forward due when none is left becomes a
    W, and the W's still owed after the last I end the step (``2r + 1`` of them when
    ``m >= 2·ranks - 1``). It is the order a unit-time list scheduler finds when I goes first,
    then F, then W, with activations capped at ``2·ranks - 1`` (checked for 2 to 6 ranks and up
    to ``4·ranks + 1`` microbatches): the parallelogram of the paper's figure 4.
    """
    check_sizes(rank, num_ranks, microbatches, stages_per_rank, fixed=1)
    out = NumberedActions()
    for _ in range(min(2 * (num_ranks - 1 - rank) + 1, microbatches)):
        out.add(rank, "F")
    slots = _zb_h2_slots(rank, num_ranks)
    step = 0
    while out.count(rank, "I") < microbatches:
        op = slots[step] if step < len(slots) else "IWF"[(step - len(slots)) % 3]
        step += 1
        if op == "F" and out.count(rank, "F") == microbatches:
            op = "W"
        if op == "W" and out.count(rank, "W") == out.count(rank, "I"):
            op = "F" if out.count(rank, "F") < microbatches else ""
        if op:
            out.add(rank, op)
    while out.count(rank, "W") < microbatches:
        out.add(rank, "W")
    return out.actions
