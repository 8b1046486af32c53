"""Pipeline schedules: op for op against torch.distributed.pipelining, well-formed, and the ZB bubbles exactly."""

from __future__ import annotations

import types

import pytest

from sglab.ops import Action
from sglab.schedules import SCHEDULES, with_communication

S = pytest.importorskip("torch.distributed.pipelining.schedules")

#: Our schedule → torch's class (the zb-h1 row: torch's ZB1P with one stage per rank).
TORCH = {"interleaved-1f1b": "ScheduleInterleaved1F1B", "looped-bfs": "ScheduleLoopedBFS",
         "interleaved-zb": "ScheduleInterleavedZeroBubble", "zbv": "ScheduleZBVZeroBubble",
         "dualpipev": "ScheduleDualPipeV"}
OPS = {S.FORWARD: "F", S.FULL_BACKWARD: "B", S.BACKWARD_INPUT: "I", S.BACKWARD_WEIGHT: "W"}


def microbatch_counts(ranks: int) -> list[int]:
    """Multiples of the ranks, odd counts and counts below the ranks."""
    return sorted({1, 2, ranks - 1, ranks, ranks + 1, 2 * ranks - 1, 2 * ranks, 2 * ranks + 1, 3 * ranks, 3 * ranks + 1}
                  - {0})


def grid(name: str) -> list[tuple[int, int, int]]:
    """(ranks, stages per rank, microbatches) to check ``name`` on."""
    fixed = SCHEDULES[name].stages_per_rank
    return [(p, v, m) for p in (2, 3, 4) for v in ((fixed,) if fixed else (1, 2, 3)) for m in microbatch_counts(p)]


def torch_schedule(cls_name: str, ranks: int, v: int, m: int):
    """Torch's schedule object, built on stand-in stages (its constructor only reads their sizes)."""
    stages = [types.SimpleNamespace(group_size=ranks, group_rank=0, num_stages=ranks * v, submod=None)
              for _ in range(v)]
    return getattr(S, cls_name)(stages, m)


def torch_compute(schedule, ranks: int) -> dict[int, list[str]]:
    """Torch's per-rank compute order: idle slots dropped, an overlapped F+B as its two actions."""
    out = {}
    for r in range(ranks):
        subs = [sub for a in schedule.pipeline_order[r] if a is not None for sub in (a.sub_actions or (a,))]
        out[r] = [f"{a.stage_index}{OPS[a.computation_type]}{a.microbatch_index}" for a in subs]
    return out


def ours(name: str, ranks: int, v: int, m: int) -> dict[int, list[Action]]:
    return {r: SCHEDULES[name].actions(r, ranks, m, v) for r in range(ranks)}


def text(per_rank: dict[int, list[Action]]) -> dict[int, list[str]]:
    return {r: [str(a) for a in actions] for r, actions in per_rank.items()}


@pytest.mark.parametrize("name, ranks, v, m", [(n, *size) for n in TORCH for size in grid(n)])
def test_action_lists_match_torch_op_for_op(name, ranks, v, m):
    if not hasattr(S, TORCH[name]):
        pytest.skip(f"this torch has no {TORCH[name]}")
    try:
        theirs = torch_schedule(TORCH[name], ranks, v, m)
    except ValueError:  # a size torch refuses: we refuse it too, on every rank
        for r in range(ranks):
            with pytest.raises(ValueError, match="microbatches"):
                SCHEDULES[name].actions(r, ranks, m, v)
        return
    assert text(ours(name, ranks, v, m)) == torch_compute(theirs, ranks)


@pytest.mark.parametrize("ranks, m", [(p, m) for p in (2, 3, 4) for m in microbatch_counts(p)])
def test_zb_h1_is_torchs_zero_bubble_with_one_stage_per_rank(ranks, m):
    try:
        theirs = torch_schedule("ScheduleInterleavedZeroBubble", ranks, 1, m)
    except ValueError:
        # deliberate difference: torch requires rounds of max(1, m // ranks) microbatches even with
        # one stage per rank, where rounds mean nothing; ZB-H1 takes any m
        assert m % max(1, m // ranks)
        assert len(ours("zb-h1", ranks, 1, m)[0]) == 3 * m
        return
    assert text(ours("zb-h1", ranks, 1, m)) == torch_compute(theirs, ranks)


def test_published_orders():
    line = lambda name, p, v, m, r: " ".join(map(str, SCHEDULES[name].actions(r, p, m, v)))  # noqa: E731
    assert line("zb-h1", 4, 1, 6, 0) == "0F0 0F1 0F2 0F3 0I0 0W0 0F4 0I1 0W1 0F5 0I2 0W2 0I3 0W3 0I4 0W4 0I5 0W5"
    assert line("zb-h1", 4, 1, 6, 3) == "3F0 3I0 3F1 3I1 3F2 3I2 3F3 3I3 3W0 3F4 3I4 3W1 3F5 3I5 3W2 3W3 3W4 3W5"
    assert line("zb-h2", 4, 1, 8, 0) == ("0F0 0F1 0F2 0F3 0F4 0F5 0F6 0I0 0W0 0I1 0F7 0I2 0W1 0I3 0W2 0I4 0W3 0I5 "
                                         "0W4 0I6 0W5 0W6 0I7 0W7")
    assert line("zb-h2", 4, 1, 8, 3) == ("3F0 3I0 3F1 3I1 3F2 3I2 3F3 3I3 3F4 3I4 3F5 3I5 3F6 3I6 3W0 3F7 3I7 "
                                         "3W1 3W2 3W3 3W4 3W5 3W6 3W7")
    assert line("looped-bfs", 2, 2, 2, 1) == "1F0 1F1 3F0 3F1 3B1 3B0 1B1 1B0"
    assert line("dualpipev", 2, 2, 4, 1) == "1F0 2F0 1F1 2F1 1F2 2B0 2F2 1B0 1F3 2B1 2F3 1B1 2B2 1B2 2I3 1I3 2W3 1W3"


# ---- well-formedness, for every schedule -------------------------------------------------------------------

def all_sizes() -> list[tuple[str, int, int, int]]:
    return [(n, *size) for n in SCHEDULES for size in grid(n)]


def built(name, ranks, v, m):
    """Our per-rank lists, or None for a size the schedule refuses."""
    try:
        return ours(name, ranks, v, m)
    except ValueError:
        return None


@pytest.mark.parametrize("name, ranks, v, m", all_sizes())
def test_every_rank_runs_each_op_of_its_stages_once_in_dependency_order(name, ranks, v, m):
    per_rank = built(name, ranks, v, m)
    if per_rank is None:
        return
    schedule = SCHEDULES[name]
    for r, actions in per_rank.items():
        assert len(set(actions)) == len(actions)
        at = {a: i for i, a in enumerate(actions)}
        assert {a.stage for a in actions} == set(schedule.rank_stages(r, ranks, v))
        for s in schedule.rank_stages(r, ranks, v):
            for j in range(m):
                ops = {a.op for a in actions if (a.stage, a.microbatch) == (s, j)}
                assert ops in ({"F", "B"}, {"F", "I", "W"}), (s, j, ops)
                first_backward = at.get(Action(s, "B", j), at.get(Action(s, "I", j)))
                assert at[Action(s, "F", j)] < first_backward
                if "W" in ops:
                    assert at[Action(s, "I", j)] < at[Action(s, "W", j)]
        assert schedule.split_backward or {a.op for a in actions} == {"F", "B"}


@pytest.mark.parametrize("name, ranks, v, m", all_sizes())
def test_with_communication_orders_every_schedule(name, ranks, v, m):
    per_rank = built(name, ranks, v, m)
    if per_rank is None:
        return
    schedule = SCHEDULES[name]
    out = with_communication(per_rank, lambda s: schedule.stage_rank(s, ranks), ranks * v)
    sends = [a for acts in out.values() for a in acts if a.op.startswith("SEND")]
    crossing = [a for acts in per_rank.values() for a in acts
                if (a.op == "F" and a.stage + 1 < ranks * v
                    and schedule.stage_rank(a.stage + 1, ranks) != schedule.stage_rank(a.stage, ranks))
                or (a.op in "BI" and a.stage > 0
                    and schedule.stage_rank(a.stage - 1, ranks) != schedule.stage_rank(a.stage, ranks))]
    assert len(sends) == len(crossing)  # W never crosses; a V's turn at the last rank needs no send
    assert {r: [a for a in acts if "SEND" not in a.op and "RECV" not in a.op] for r, acts in out.items()} == per_rank


@pytest.mark.parametrize("name, ranks, v, m", [("interleaved-1f1b", 3, 2, 6), ("interleaved-1f1b", 4, 3, 5),
                                               ("zbv", 3, 2, 6), ("zbv", 4, 2, 5), ("interleaved-zb", 2, 3, 4),
                                               ("looped-bfs", 3, 2, 3), ("zb-h1", 4, 1, 8)])
def test_sends_and_receives_match_torchs_pass(name, ranks, v, m):
    schedule = SCHEDULES[name]
    rank_of = lambda s: schedule.stage_rank(s, ranks)  # noqa: E731
    compute = ours(name, ranks, v, m)
    theirs = S._add_send_recv({r: [S._Action.from_str(str(a)) for a in acts] for r, acts in compute.items()},
                              rank_of, ranks * v)
    assert text(with_communication(compute, rank_of, ranks * v)) == {r: list(map(str, a)) for r, a in theirs.items()}


@pytest.mark.parametrize("name, rank, ranks, m, v, field", [
    ("zbv", 0, 2, 4, 3, "stages_per_rank"), ("zb-h1", 0, 2, 4, 2, "stages_per_rank"),
    ("interleaved-1f1b", 2, 2, 4, 2, "rank"), ("looped-bfs", 0, 2, 0, 2, "microbatches"),
    ("dualpipev", 0, 3, 5, 2, "microbatches"), ("interleaved-zb", 0, 4, 9, 2, "microbatches"),
    ("gpipe", 0, 0, 4, 1, "ranks")])
def test_unsupported_sizes_raise_naming_the_field(name, rank, ranks, m, v, field):
    with pytest.raises(ValueError, match=field):
        SCHEDULES[name].actions(rank, ranks, m, v)


# ---- ZB-H1 / ZB-H2 against the paper's bubbles, with an exact unit-time evaluator --------------------------

def run(per_rank: dict[int, list[Action]], cost: dict[str, int]) -> tuple[list[int], list[int]]:
    """Each rank runs its list in order, an op as soon as its rank is free and its inputs exist, no
    communication time (one stage per rank). Returns each rank's first start and last end."""
    p = len(per_rank)
    done: dict[tuple[int, str, int], int] = {}
    free, first, pos = [0] * p, [None] * p, [0] * p

    def inputs(a: Action) -> list[tuple[int, str, int]] | None:
        keys = {"F": [(a.stage - 1, "F")] if a.stage else [], "W": [(a.stage, "I")],
                "I": [(a.stage, "F")] + ([(a.stage + 1, "I")] if a.stage + 1 < p else []),
                "B": [(a.stage, "F")] + ([(a.stage + 1, "B")] if a.stage + 1 < p else [])}[a.op]
        needed = [(s, op, a.microbatch) for s, op in keys]
        return needed if all(k in done for k in needed) else None

    while any(pos[r] < len(per_rank[r]) for r in range(p)):
        moved = False
        for r in range(p):
            while pos[r] < len(per_rank[r]) and (needed := inputs(a := per_rank[r][pos[r]])) is not None:
                start = max([free[r]] + [done[k] for k in needed])
                first[r] = start if first[r] is None else first[r]
                free[r] = done[a.stage, a.op, a.microbatch] = start + cost[a.op]
                pos[r] += 1
                moved = True
        assert moved, "the schedule deadlocks"
    return first, free


def peak(actions: list[Action], freed_by: str) -> int:
    """Most microbatches whose F has run and whose op in ``freed_by`` has not."""
    held = best = 0
    for a in actions:
        held += (a.op == "F") - (a.op in freed_by)
        best = max(best, held)
    return best


COSTS = [dict(F=1, I=1, W=1), dict(F=2, I=2, W=1), dict(F=1, I=2, W=1), dict(F=2, I=1, W=1), dict(F=3, I=3, W=2),
         dict(F=3, I=2, W=1)]  # W no dearer than F or I: where the paper's formulas hold


@pytest.mark.parametrize("ranks", [2, 3, 4, 5])
@pytest.mark.parametrize("cost", COSTS)
def test_1f1b_bubble_checks_the_evaluator(ranks, cost):
    for m in (ranks, 2 * ranks + 1, 3 * ranks):
        f, b = cost["F"], cost["I"] + cost["W"]
        _, end = run(ours("1f1b", ranks, 1, m), {"F": f, "B": b})
        assert max(end) == m * (f + b) + (ranks - 1) * (f + b)


@pytest.mark.parametrize("ranks", [2, 3, 4, 5])
@pytest.mark.parametrize("cost", COSTS)
def test_zb_h1_bubble_is_p_minus_1_times_f_plus_i_minus_w(ranks, cost):
    f, i, w = cost["F"], cost["I"], cost["W"]
    for m in (ranks, ranks + 1, 2 * ranks + 1, 3 * ranks):
        _, end = run(ours("zb-h1", ranks, 1, m), cost)
        assert max(end) == m * (f + i + w) + (ranks - 1) * (f + i - w)
    _, end = run(ours("zb-h1", ranks, 1, ranks - 1), cost)  # too few microbatches to fill the drain
    assert max(end) > (ranks - 1) * (f + i + w) + (ranks - 1) * (f + i - w)


@pytest.mark.parametrize("ranks", [2, 3, 4, 5])
@pytest.mark.parametrize("cost", COSTS)
def test_zb_h2_keeps_rank_r_busy_but_for_p_minus_1_minus_r_times_f_plus_i_minus_2w(ranks, cost):
    f, i, w = cost["F"], cost["I"], cost["W"]
    for m in (2 * ranks - 1, 2 * ranks, 3 * ranks, 3 * ranks + 1):
        first, end = run(ours("zb-h2", ranks, 1, m), cost)
        assert [end[r] - first[r] for r in range(ranks)] == [m * (f + i + w) + (ranks - 1 - r) * (f + i - 2 * w)
                                                             for r in range(ranks)]
        assert first == [r * f for r in range(ranks)]  # a parallelogram: each rank starts with the first input
        assert max(end) == m * (f + i + w) + (ranks - 1) * f


@pytest.mark.parametrize("ranks", [2, 3, 4, 5])
def test_zb_peak_activations(ranks):
    for m in (ranks, 2 * ranks, 3 * ranks + 1):
        one_f_one_b = [peak(ours("1f1b", ranks, 1, m)[r], "B") for r in range(ranks)]
        assert one_f_one_b == [ranks - r for r in range(ranks)]
        h1 = ours("zb-h1", ranks, 1, m)
        assert [peak(h1[r], "I") for r in range(ranks)] == one_f_one_b  # inputs gradients as early as 1F1B's
        assert [peak(h1[r], "W") for r in range(ranks)] == [ranks] * ranks  # 1F1B's rank-0 peak, on every rank
        h2 = ours("zb-h2", ranks, 1, m)
        assert [peak(h2[r], "W") for r in range(ranks)] == [min(m, 2 * ranks - 1)] * ranks
