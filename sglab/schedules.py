"""Pipeline schedules as per-rank action lists, and the pass that adds their communication.

A schedule maps (rank, ranks, microbatches) to that rank's compute actions, written as torch's
``torch.distributed.pipelining`` writes them (``2F0`` = stage 2, forward, microbatch 0);
:func:`with_communication` turns a compute-only schedule into one with ``SEND_F``/``RECV_F``/
``SEND_B``/``RECV_B``, as torch's ``_add_send_recv`` does. The method registry
(:mod:`sglab.methods`) names the schedule a pipelined method runs.
"""

from __future__ import annotations

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
            the update. Backward actions are ``B`` or, split, ``I`` then later ``W``.
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


def gpipe_actions(rank: int, num_ranks: int, microbatches: int, stages_per_rank: int = 1) -> list[Action]:
    """GPipe: every forward, then every backward (Huang et al., 2019)."""
    return [Action(rank, "F", j) for j in range(microbatches)] + [Action(rank, "B", j) for j in range(microbatches)]


def one_f_one_b_actions(rank: int, num_ranks: int, microbatches: int, stages_per_rank: int = 1) -> list[Action]:
    """1F1B (PipeDream-Flush): ``ranks - rank - 1`` warm-up forwards, then alternate, then drain.

    Rank ``r`` never holds more than ``ranks - r`` microbatches' activations.
    """
    warmup = min(num_ranks - rank - 1, microbatches)
    actions = [Action(rank, "F", j) for j in range(warmup)]
    for j in range(microbatches - warmup):
        actions += [Action(rank, "F", warmup + j), Action(rank, "B", j)]
    return actions + [Action(rank, "B", j) for j in range(microbatches - warmup, microbatches)]


#: Pipeline schedule name → :class:`Schedule`.
SCHEDULES: dict[str, Schedule] = {s.name: s for s in [
    Schedule("gpipe", gpipe_actions, paper="Huang et al., GPipe, NeurIPS 2019"),
    Schedule("1f1b", one_f_one_b_actions, paper="Narayanan et al., PipeDream-Flush / Megatron-LM, 2021"),
]}


def with_communication(per_rank: dict[int, list[Action]], stage_rank: Callable[[int], int],
                       num_stages: int) -> dict[int, list[Action]]:
    """The per-rank lists with ``SEND_F``/``RECV_F``/``SEND_B``/``RECV_B`` added, as torch's pass does.

    A forward whose output goes to another rank is followed by its send, and the receiving rank
    gets the matching receive in the order the sends happen; likewise for backward input
    gradients. A list that can never be ordered (a B before the F it needs) raises naming the
    stuck actions.
    """
    todo = {rank: list(actions) for rank, actions in per_rank.items()}
    out: dict[int, list[Action]] = {rank: [] for rank in per_rank}
    done: dict[int, set[Action]] = {rank: set() for rank in per_rank}

    def crosses(a: Action) -> int | None:
        if a.op == "F" and a.stage + 1 < num_stages:
            other = a.stage + 1
        elif a.op in ("B", "I") and a.stage > 0:
            other = a.stage - 1
        else:
            return None
        return other if stage_rank(other) != stage_rank(a.stage) else None

    def ready(a: Action, seen: set[Action]) -> bool:
        if a.op == "F" and a.stage > 0:
            return Action(a.stage, "RECV_F", a.microbatch) in seen or Action(a.stage - 1, "F", a.microbatch) in seen
        if a.op in ("B", "I") and a.stage + 1 < num_stages:
            return any(x in seen for x in (Action(a.stage, "RECV_B", a.microbatch), Action(a.stage + 1, "B", a.microbatch),
                                           Action(a.stage + 1, "I", a.microbatch)))
        return True

    while any(todo.values()):
        progress = False
        for rank in sorted(todo):
            if not todo[rank] or not ready(todo[rank][0], done[rank]):
                continue
            action = todo[rank].pop(0)
            out[rank].append(action)
            done[rank].add(action)
            other = crosses(action)
            if other is not None:
                kind = "F" if action.op == "F" else "B"
                send = Action(action.stage, "SEND_" + kind, action.microbatch)
                recv = Action(other, "RECV_" + kind, action.microbatch)
                out[rank].append(send)
                done[rank].add(send)
                out[stage_rank(other)].append(recv)
                done[stage_rank(other)].add(recv)
            progress = True
        if not progress:
            stuck = [f"rank {r}: {todo[r][0]}" for r in sorted(todo) if todo[r]]
            raise ValueError(f"schedule can never run: {'; '.join(stuck)} wait for actions no rank will run first")
    return out
