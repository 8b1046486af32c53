"""Where a registry pipeline puts its stages, and what each device runs in one step.

A pipeline rank holds the stages its schedule's layout gives it (:class:`sglab.schedules.Schedule`):
one per rank for GPipe, 1F1B and the zero-bubble schedules ZB-H1/ZB-H2, ``v`` of them looped
(``s % ranks``) for interleaved 1F1B, looped BFS and interleaved zero bubble, two in a V for
ZBV and DualPipe-V. Schedules of one stage per rank follow the hardware's placement rule (a
device with a block of stages runs the rank's actions on each of them); the others lay the
stages out themselves, rank ``r`` on the hardware's device ``r``.
"""

from __future__ import annotations

from sglab.methods import Graph, Method, get_method
from sglab.ops import Action
from sglab.schedules import SCHEDULES, with_communication
from sglab.sim.errors import SimUsageError
from sglab.sim.hardware import Hardware

#: The op each stage runs once per step, after all its microbatches.
UPDATE = "U"


def _laid_out(method) -> bool:
    """Whether a registry pipeline lays out its own stages (more than one stage per rank)."""
    if isinstance(method, str):
        method = get_method(method, "sim")
    if not isinstance(method, Method) or not method.pipelined:
        return False
    return method.stages_per_rank > 1 or SCHEDULES[method.schedule].layout != "loop"


def devices_for(method: Method | str, num_stages: int) -> int:
    """Devices one replica of ``method`` uses for ``num_stages`` stages (a sweep resizes machines to it)."""
    return num_stages // method_of(method).stages_per_rank if _laid_out(method) else num_stages


def method_of(method: Method | str) -> Method:
    """The registry method ``method`` names (or ``method`` itself)."""
    return get_method(method, "sim") if isinstance(method, str) else method


def stage_placement(method, hardware: Hardware, num_stages: int, num_devices: int | None = None) -> list[int]:
    """The device of each stage for ``method`` on ``hardware`` (or on its first ``num_devices`` devices).

    The hardware's placement rule, except for pipelines that lay out their own stages: then
    ``num_stages`` must be a multiple of the stages per rank and the machine must have a device
    per rank.
    """
    available = hardware.num_devices if num_devices is None else num_devices
    if not _laid_out(method):
        if num_devices is None:
            return hardware.placement_for(num_stages)
        return hardware.placement_for(num_stages, num_devices=num_devices)
    v = method.stages_per_rank
    schedule = SCHEDULES[method.schedule]
    if num_stages % v:
        raise SimUsageError(f"{method.name} puts {v} stages on each rank, so it needs a multiple of {v} stages; "
                            f"the profile has {num_stages} (regroup it, e.g. sglab simulate --stages)")
    ranks = num_stages // v
    if available < ranks:
        raise SimUsageError(f"{method.name} with {num_stages} stages, {v} per rank, needs {ranks} devices; "
                            f"hardware {hardware.name!r} has {available}")
    return [schedule.stage_rank(s, ranks) for s in range(num_stages)]


def microbatch_graph(method: Method, num_stages: int) -> Graph:
    """One microbatch's ops and dependencies: ``method.step_graph(K)`` without its updates."""
    graph = method.step_graph(num_stages)
    return {a: deps for a, deps in graph.items() if a.op != UPDATE}


def _expand(per_rank: dict[int, list[Action]], blocks: list[list[int]]) -> list[list[Action]]:
    """Rank ``r``'s actions on its block of contiguous stages: forwards up the chain, the rest down it."""
    return [[Action(s, a.op, a.microbatch) for a in per_rank[r] for s in (block if a.op == "F" else block[::-1])]
            for r, block in enumerate(blocks)]


def _ideal_starts(lists: list[list[Action]], graph: Graph) -> dict[Action, int]:
    """Start times of every stage's actions with one device per stage, F costing 1 and B 2."""
    done: dict[Action, int] = {}
    start: dict[Action, int] = {}
    free, head = [0] * len(lists), [0] * len(lists)
    progress = True
    while progress:
        progress = False
        for s, actions in enumerate(lists):
            while head[s] < len(actions):
                action = actions[head[s]]
                deps = [Action(d.stage, d.op, action.microbatch) for d in graph[Action(s, action.op)]]
                if any(d not in done for d in deps):
                    break
                start[action] = max([free[s]] + [done[d] for d in deps])
                done[action] = free[s] = start[action] + (2 if action.op == "B" else 1)
                head[s] += 1
                progress = True
    return start


def method_orders(method: Method, placement: list[int], microbatches: int) -> dict[int, list[Action]]:
    """Each device's actions for one step of registry pipeline ``method``.

    A schedule that lays out its own stages gives each rank's list as it is. Otherwise a device
    holding one contiguous block of stages is one pipeline rank; a device with scattered stages
    runs each stage's rank list merged in the order of their start times in the ideal schedule
    with one device per stage and unit costs (a global topological order, so the merged
    schedule cannot deadlock), then its updates.
    """
    devices = list(dict.fromkeys(placement))  # in order of their first stage
    stages_of = {d: [s for s, where in enumerate(placement) if where == d] for d in devices}
    if _laid_out(method):
        ranks, schedule = len(devices), SCHEDULES[method.schedule]
        lists = method.rank_actions(ranks, microbatches)
        return {placement[schedule.rank_stages(r, ranks, method.stages_per_rank)[0]]: actions
                for r, actions in lists.items()}
    blocks = [stages_of[d] for d in devices]
    if all(block == list(range(block[0], block[-1] + 1)) for block in blocks):
        return dict(zip(devices, _expand(method.rank_actions(len(devices), microbatches), blocks)))
    lists = method.rank_actions(len(placement), microbatches)
    work = [[a for a in lists[s] if a.op != UPDATE] for s in range(len(placement))]
    start = _ideal_starts(work, microbatch_graph(method, len(placement)))
    return {d: sorted((a for s in stages_of[d] for a in work[s]), key=lambda a: (start[a], a.stage))
            + [Action(s, UPDATE) for s in reversed(stages_of[d])] for d in devices}


def rank_schedule(method: Method, placement: list[int], microbatches: int) -> dict[int, tuple[int, list[Action]]]:
    """Per pipeline rank, its device and the actions it runs in one step, with the sends and receives
    torch's pipelining would add (:func:`~sglab.schedules.with_communication`)."""
    devices = list(dict.fromkeys(placement))
    orders = method_orders(method, placement, microbatches)
    per_rank = with_communication({r: orders[d] for r, d in enumerate(devices)},
                                  lambda s: devices.index(placement[s]), len(placement))
    return {r: (devices[r], actions) for r, actions in per_rank.items()}
