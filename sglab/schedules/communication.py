"""The pass that adds sends and receives to compute-only per-rank lists, as torch's ``_add_send_recv`` does."""

from __future__ import annotations

from typing import Callable

from sglab.ops import Action


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
