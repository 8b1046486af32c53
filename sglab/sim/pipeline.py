"""Pipeline-parallel schedules with a flush per step: naive model parallel, GPipe and 1F1B.

A step splits into ``m`` microbatches of the profiled batch each; every stage runs F and B of
each microbatch and one U at the end of the step, so weights never go stale. Each device (a
pipeline rank) runs a static list of actions, written as in ``torch.distributed.pipelining``
(``F3`` = forward of microbatch 3); a rank holding several contiguous stages expands ``Fj`` into
their forwards in chain order and ``Bj`` into their backwards in reverse.
"""

from __future__ import annotations

import re
from typing import Callable

from sglab.sim.errors import SimError
from sglab.sim.graph import TaskGraph


def gpipe_actions(rank: int, ranks: int, microbatches: int) -> list[tuple[str, int]]:
    """GPipe: every forward, then every backward (Huang et al., 2019)."""
    return [("F", j) for j in range(microbatches)] + [("B", j) for j in range(microbatches)]


def one_f_one_b_actions(rank: int, ranks: int, microbatches: int) -> list[tuple[str, int]]:
    """1F1B (PipeDream-Flush): ``ranks - rank - 1`` warm-up forwards, then alternate, then drain.

    Rank ``r`` never holds more than ``ranks - r`` microbatches' activations.
    """
    warmup = min(ranks - rank - 1, microbatches)
    actions = [("F", j) for j in range(warmup)]
    for j in range(microbatches - warmup):
        actions += [("F", warmup + j), ("B", j)]
    return actions + [("B", j) for j in range(microbatches - warmup, microbatches)]


ACTION_LISTS = {"gpipe": gpipe_actions, "1f1b": one_f_one_b_actions, "naive": gpipe_actions}
ActionList = Callable[[int, int, int], list[tuple[str, int]]]


def parse_actions(texts: list[str]) -> list[tuple[str, int]]:
    """Read a rank's actions written like torch's without the stage: ``["F0", "F1", "B0", "B1"]``."""
    actions = []
    for text in texts:
        match = re.fullmatch(r"\s*([FB])(\d+)\s*", text)
        if not match:
            raise SimError(f"cannot read pipeline action {text!r}; expected F<microbatch> or B<microbatch>, e.g. 'F0'")
        actions.append((match.group(1), int(match.group(2))))
    return actions


def fixed_actions(per_rank: dict[int, list[str]]) -> ActionList:
    """An action-list function from explicit per-rank lists (a user-written schedule)."""
    parsed = {rank: parse_actions(texts) for rank, texts in per_rank.items()}

    def actions(rank: int, ranks: int, microbatches: int) -> list[tuple[str, int]]:
        if rank not in parsed:
            raise SimError(f"the schedule lists ranks {sorted(parsed)} but the machine uses {ranks} ranks")
        bad = [f"{op}{j}" for op, j in parsed[rank] if j >= microbatches]
        if bad:
            raise SimError(f"rank {rank} runs {', '.join(bad)} but a step has only {microbatches} microbatches")
        return parsed[rank]

    return actions


def device_templates(placement: list[int], actions_of: ActionList, microbatches: int,
                     merge_stages: bool = True) -> dict[int, list[tuple[str, int, int]]]:
    """Each device's ``(op, stage, microbatch)`` sequence for one step (updates excluded).

    A device holding one contiguous block of stages is one pipeline rank. Otherwise (with
    ``merge_stages``) every stage gets its own rank's action list and a device runs its stages'
    actions in the order of their start times in the ideal schedule with one device per stage
    and unit costs: a global topological order, so the merged schedule cannot deadlock.
    """
    ranks = list(dict.fromkeys(placement))  # devices in order of their first stage
    stages_of = {d: [s for s in range(len(placement)) if placement[s] == d] for d in ranks}
    contiguous = all(block == list(range(block[0], block[-1] + 1)) for block in stages_of.values())
    if contiguous or not merge_stages:
        templates = {}
        for r, d in enumerate(ranks):
            block = stages_of[d]
            templates[d] = [(op, i, j) for op, j in actions_of(r, len(ranks), microbatches)
                            for i in (block if op == "F" else block[::-1])]
        return templates
    start = _ideal_starts([actions_of(s, len(placement), microbatches) for s in range(len(placement))])
    return {d: sorted(((op, i, j) for i in stages_of[d] for op, j in actions_of(i, len(placement), microbatches)),
                      key=lambda a: (start[a], a[1])) for d in ranks}


def _ideal_starts(lists: list[list[tuple[str, int]]]) -> dict[tuple[str, int, int], int]:
    """Start times of every stage's actions with one device per stage, F costing 1 and B 2."""
    num_stages = len(lists)
    done: dict[tuple[str, int, int], int] = {}
    start: dict[tuple[str, int, int], int] = {}
    free, head = [0] * num_stages, [0] * num_stages
    progress = True
    while progress:
        progress = False
        for s in range(num_stages):
            while head[s] < len(lists[s]):
                op, j = lists[s][head[s]]
                deps = ([("F", s - 1, j)] if s else []) if op == "F" else \
                    [("F", s, j)] + ([("B", s + 1, j)] if s + 1 < num_stages else [])
                if any(d not in done for d in deps):
                    break
                begin = max([free[s]] + [done[d] for d in deps])
                start[(op, s, j)] = begin
                done[(op, s, j)] = free[s] = begin + (1 if op == "F" else 2)
                head[s] += 1
                progress = True
    return start


def build_pipeline(g: TaskGraph, actions_of: str | ActionList, steps: int, microbatches: int) -> None:
    """Add ``steps`` flushed pipeline steps of ``microbatches`` each to ``g`` with static device orders.

    ``actions_of`` names a schedule of :data:`ACTION_LISTS` or maps (rank, ranks, microbatches)
    to that rank's action list (a user's lists are used as written, never merged).
    """
    builtin = isinstance(actions_of, str)
    actions_of = ACTION_LISTS[actions_of] if builtin else actions_of
    num_stages = len(g.placement)
    templates = device_templates(g.placement, actions_of, microbatches, merge_stages=builtin)
    orders: dict[int, list[int]] = {d: [] for d in templates}
    last_update: list[int | None] = [None] * num_stages
    for step in range(steps):
        fwd = [[0] * microbatches for _ in range(num_stages)]
        bwd = [[0] * microbatches for _ in range(num_stages)]
        for j in range(microbatches):
            for i in range(num_stages):
                deps = [g.data(fwd[i - 1][j], i)] if i else []
                if last_update[i] is not None:
                    deps.append(last_update[i])
                fwd[i][j] = g.compute(step, i, "F", j, deps)
        for j in range(microbatches):
            for i in reversed(range(num_stages)):
                above = [g.data(bwd[i + 1][j], i)] if i + 1 < num_stages else []
                bwd[i][j] = g.compute(step, i, "B", j, [fwd[i][j], *above])
                g.buffer(g.profile.stages[i].activation_bytes, fwd[i][j], bwd[i][j])
        for i in reversed(range(num_stages)):
            last_update[i] = g.compute(step, i, "U", 0, bwd[i])
        for d, template in templates.items():
            orders[d].extend((fwd if op == "F" else bwd)[i][j] for op, i, j in template)
            orders[d].extend(last_update[i] for i in reversed(range(num_stages)) if g.placement[i] == d)
    for d, order in orders.items():
        g.set_order(d, order)
