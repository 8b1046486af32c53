"""Schedules with two stages per rank in a V: rank ``r`` holds stages ``r`` and ``2·ranks - 1 - r``.

The first and the last stage share rank 0, so the loss's gradient starts back where the input
came in, and a microbatch's two visits to a rank sit at the two ends of its path.

ZBV (Qi et al., "Zero Bubble Pipeline Parallelism", ICLR 2024, section 6) splits the backward
into I and W and has no bubble when F, I and W cost the same. DualPipe-V (the V-shaped half of
DualPipe, DeepSeek-V3 technical report, 2024) pairs the forward of one stage with the backward of
the other in its steady state, so that one's computation hides the other's communication.

The orders are those of ``torch.distributed.pipelining``'s ScheduleZBVZeroBubble and
ScheduleDualPipeV (tests compare them action for action).
"""

from __future__ import annotations

from sglab.ops import Action
from sglab.schedules.schedule import NumberedActions, check_sizes


def _v_stages(rank: int, num_ranks: int, microbatches: int, stages_per_rank: int) -> tuple[int, int]:
    check_sizes(rank, num_ranks, microbatches, stages_per_rank, fixed=2)
    return rank, 2 * num_ranks - 1 - rank


def zbv_actions(rank: int, num_ranks: int, microbatches: int, stages_per_rank: int = 2) -> list[Action]:
    """ZBV: warm-up forwards down and back up the V, then F, I, W on each stage in turn, then the
    I's of the drain with their W's filling its bubbles.

    Fewer than ``2·ranks - 1`` microbatches run the order of ``2·ranks - 1`` without the missing ones.
    """
    down, up = _v_stages(rank, num_ranks, microbatches, stages_per_rank)
    planned = max(2 * num_ranks - 1, microbatches)
    out = NumberedActions()
    for _ in range(2 * (num_ranks - rank) - 1):
        out.add(down, "F")
    for _ in range(rank):
        out.add(up, "F")
        out.add(down, "F")
    for _ in range(num_ranks - rank):
        for op in "FIW":
            out.add(up, op)
    while out.count(up, "F") < out.count(down, "F") or out.count(down, "F") < planned:
        if out.count(down, "F") < planned:
            out.add(down, "F")
        for stage, op in ((down, "I"), (down, "W"), (up, "F"), (up, "I"), (up, "W")):
            out.add(stage, op)
    for _ in range(rank):
        out.add(down, "I")
        out.add(up, "I")
    for _ in range(num_ranks - rank):
        out.add(down, "I")
        out.add(down, "W")
    for stage in (up, down):
        while out.count(stage, "W") < out.count(stage, "I"):
            out.add(stage, "W")
    return [a for a in out.actions if a.microbatch < microbatches]


class _DualPipe(NumberedActions):
    """DualPipe-V's bookkeeping: a whole B takes the microbatch of its stage's next I; an I owes its W."""

    def __init__(self) -> None:
        super().__init__()
        self._owed: list[Action] = []

    def backward(self, stage: int, split: bool) -> None:
        """The stage's next backward: an I whose W is owed, or a whole B."""
        action = self.add(stage, "I")
        if split:
            self._owed.append(Action(stage, "W", action.microbatch))
        else:
            self.actions[-1] = Action(stage, "B", action.microbatch)

    def weight(self) -> None:
        """The oldest owed W, if any."""
        if self._owed:
            self.actions.append(self._owed.pop(0))

    def pair(self, forward: int, backward: int) -> None:
        """Torch's overlapped forward of one stage and whole backward of the other, as F then B."""
        self.add(forward, "F")
        self.backward(backward, split=False)


def dualpipev_actions(rank: int, num_ranks: int, microbatches: int, stages_per_rank: int = 2) -> list[Action]:
    """DualPipe-V: forwards down and up the V, then pairs of one stage's F with the other's B, then the
    drain, whose later backwards split off their W's to fill its bubbles. Needs ``microbatches >= 2·ranks``.

    Torch runs each pair as one overlapped action (OVERLAP_F_B), the backward's communication
    hidden behind the forward's computation. Here a device has one compute stream, so two
    computations cannot overlap on it: the pair is its forward then its backward, and what the
    pairing buys, computation overlapping communication, the simulator models anyway, as links
    carry messages while devices compute.
    """
    down, up = _v_stages(rank, num_ranks, microbatches, stages_per_rank)
    if microbatches < 2 * num_ranks:
        raise ValueError(f"DualPipe-V needs microbatches >= the number of stages ({2 * num_ranks}), "
                         f"got {microbatches}")
    out = _DualPipe()
    for _ in range(2 * (num_ranks - rank - 1)):
        out.add(down, "F")
    for _ in range(rank + 1):
        out.add(down, "F")
        out.add(up, "F")
    for _ in range(num_ranks - rank - 1):
        out.backward(up, split=True)
        out.weight()
        out.add(up, "F")
    for _ in range(microbatches - 2 * num_ranks + rank + 1):
        out.pair(down, up)
        out.pair(up, down)
    for _ in range(num_ranks - rank - 1):
        out.backward(up, split=False)
        out.pair(up, down)
    split = False  # the drain's second half splits its backwards, so their W's can fill its bubbles
    for i in range(rank + 1):
        split = split or (i == (rank + 1) // 2 and rank % 2 == 1)
        out.backward(up, split)
        split = split or (i == (rank + 1) // 2 and rank % 2 == 0)
        out.backward(down, split)
    for _ in range(num_ranks - rank - 1):
        out.weight()
        out.backward(down, split)
    for _ in range(rank + 1):
        out.weight()
    return out.actions
