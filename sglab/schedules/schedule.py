"""The record of a pipeline schedule, and helpers its generators share.

A generator maps ``(rank, ranks, microbatches, stages_per_rank)`` to that rank's compute actions
in order, stages numbered globally; :class:`Schedule` adds how the stages sit on ranks.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable

from sglab.ops import Action

#: How a schedule lays its stages on ranks: ``loop`` puts stage ``s`` on rank ``s % ranks`` (one
#: stage per rank, or Megatron's interleaving); ``v`` gives rank ``r`` stages ``r`` and
#: ``2·ranks - 1 - r`` (ZBV, DualPipe-V), so the first and the last stage share rank 0.
LAYOUTS = ("loop", "v")


@dataclass(frozen=True)
class Schedule:
    """A pipeline schedule: each rank's compute actions for one step, over the stages it holds.

    Attributes:
        name: registry key of the pipeline method that runs it.
        actions: ``(rank, ranks, microbatches, stages_per_rank) -> [Action]``, the rank's compute
            actions in order, stages numbered globally (``0..ranks·stages_per_rank - 1``), without
            the update. Backward actions are ``B`` or, split, ``I`` then later ``W``. Sizes the
            schedule does not support raise ValueError.
        layout: :data:`LAYOUTS`.
        stages_per_rank: stages each rank holds; None: any number ``v >= 1`` (interleaved).
        split_backward: the lists use ``I``/``W`` (some microbatches may still use a whole ``B``).
        paper: where the schedule comes from.
    """

    name: str
    actions: Callable[[int, int, int, int], list[Action]]
    layout: str = "loop"
    stages_per_rank: int | None = 1
    split_backward: bool = False
    paper: str = ""

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")

    def stage_rank(self, stage: int, ranks: int) -> int:
        """The rank holding ``stage``."""
        if self.layout == "loop":
            return stage % ranks
        return stage if stage < ranks else 2 * ranks - 1 - stage

    def rank_stages(self, rank: int, ranks: int, stages_per_rank: int) -> list[int]:
        """The stages ``rank`` holds, lowest first."""
        return [s for s in range(ranks * stages_per_rank) if self.stage_rank(s, ranks) == rank]


def check_sizes(rank: int, num_ranks: int, microbatches: int, stages_per_rank: int,
                fixed: int | None = None) -> None:
    """Raise ValueError naming the first size a generator cannot take (``fixed``: the only stages per rank)."""
    if num_ranks < 1:
        raise ValueError(f"ranks must be >= 1, got {num_ranks}")
    if not 0 <= rank < num_ranks:
        raise ValueError(f"rank must be in 0..{num_ranks - 1}, got {rank}")
    if microbatches < 1:
        raise ValueError(f"microbatches must be >= 1, got {microbatches}")
    if stages_per_rank < 1 or fixed not in (None, stages_per_rank):
        want = f"exactly {fixed}" if fixed is not None else ">= 1"
        raise ValueError(f"stages_per_rank must be {want} for this schedule, got {stages_per_rank}")


class NumberedActions:
    """A rank's action list under construction, numbering each (stage, op)'s microbatches in turn.

    Torch's generators keep one counter per (stage, op) the same way, so a schedule written as
    "the next forward of this stage" numbers its microbatches as torch does.
    """

    def __init__(self) -> None:
        self.actions: list[Action] = []
        self._next: Counter = Counter()

    def add(self, stage: int, op: str) -> Action:
        """Append the next microbatch's ``op`` on ``stage`` and return it."""
        action = Action(stage, op, self._next[stage, op])
        self._next[stage, op] += 1
        self.actions.append(action)
        return action

    def count(self, stage: int, op: str) -> int:
        """How many ``op`` of ``stage`` have been added."""
        return self._next[stage, op]
