"""The simulator runs every pipeline schedule of the registry to its published bubble and memory, exactly.

Uniform stages, free links and free updates: F, I and W (B = I + W) cost the same on every stage
and each step's work per rank is ``m · v · (F + B)`` for ``v`` stages per rank; what a step takes
beyond it is the bubble. (The schedules' action lists are checked against torch in
tests/test_schedules.py; here the simulator's times are.)
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from sglab.methods import get_method
from sglab.sim import simulate

COSTS = [(1000, 1000, 1000), (2000, 2000, 1000), (3000, 2000, 1000)]  # (F, I, W), W no dearer than F or I


def run(profile_factory, hardware_factory, name, p, m, costs, steps=1, v=1):
    f, i, w = costs
    times = [{"F": f, "B": i + w, "I": i, "W": w, "U": 0}] * (p * v)
    return simulate(profile_factory(p * v, times=times), hardware_factory(p), name, steps=steps, microbatches=m,
                    baseline=False)


def makespan(*args, **kwargs) -> int:
    return run(*args, **kwargs).summary["makespan_ns"]


@pytest.mark.parametrize("p", [2, 3, 4])
@pytest.mark.parametrize("m_per_p", [2, 3])
@pytest.mark.parametrize("costs", COSTS)
def test_zb_h1_bubble_is_p_minus_1_times_f_plus_i_minus_w_every_step(profile_factory, hardware_factory, p, m_per_p,
                                                                    costs):
    f, i, w = costs
    m = m_per_p * p
    for steps in (1, 3):
        assert makespan(profile_factory, hardware_factory, "zb-h1", p, m, costs, steps) == \
            steps * (m * (f + i + w) + (p - 1) * (f + i - w))


@pytest.mark.parametrize("name, v", [("zb-h2", 1), ("zbv", 2)])
@pytest.mark.parametrize("p", [2, 3, 4])
@pytest.mark.parametrize("costs", COSTS[:2])
def test_zb_h2_and_zbv_fill_the_next_step_so_a_steady_step_idles_p_minus_1_times_f_plus_i_minus_2w(
        profile_factory, hardware_factory, name, v, p, costs):
    # one step still waits (p-1)·F for the last rank to start; later steps start into that time
    f, i, w = costs
    m, work = 2 * p, 2 * p * v * (f + i + w)
    first = makespan(profile_factory, hardware_factory, name, p, m, costs, 1, v)
    assert first == work + (p - 1) * f
    assert makespan(profile_factory, hardware_factory, name, p, m, costs, 3, v) == first + 2 * (work + (p - 1) * (f + i - 2 * w))


@pytest.mark.parametrize("name", ["interleaved-zb", "dualpipev"])
@pytest.mark.parametrize("p", [2, 3, 4])
@pytest.mark.parametrize("costs", COSTS[:2])
def test_two_stage_schedules_idle_as_zb_h1_for_twice_the_work(profile_factory, hardware_factory, name, p, costs):
    f, i, w = costs
    m = 2 * p
    assert makespan(profile_factory, hardware_factory, name, p, m, costs, 2, 2) == \
        2 * (m * 2 * (f + i + w) + (p - 1) * (f + i - w))


@pytest.mark.parametrize("name", ["interleaved-1f1b", "looped-bfs"])
@pytest.mark.parametrize("p", [2, 3, 4])
@pytest.mark.parametrize("v", [2, 3])
def test_interleaving_divides_1f1bs_bubble_by_the_stages_per_rank(profile_factory, hardware_factory, name, p, v):
    # Megatron-LM: the bubble of a rank's whole forward and backward, (p-1)(vF + vB), over v
    f, b = 1000, 2000
    m = 2 * p
    costs = (f, b // 2, b - b // 2)
    method = replace(get_method(name, "sim"), stages_per_rank=v)  # the registry's holds 2
    assert makespan(profile_factory, hardware_factory, method, p, m, costs, 2, v) == 2 * (m * v * (f + b) + (p - 1) * (f + b))
    plain = makespan(profile_factory, hardware_factory, "1f1b", p, m, costs, 2)
    assert plain == 2 * (m + p - 1) * (f + b)


@pytest.mark.parametrize("p", [2, 3, 4])
def test_peak_activations_of_the_one_stage_schedules(profile_factory, hardware_factory, p):
    # held from F to the end of the backward (W where split): 1F1B p - r, ZB-H1 p on every rank
    # (1F1B's rank-0 peak), ZB-H2 up to 2p - 1, GPipe every microbatch
    m, costs = 3 * p, COSTS[0]

    def peaks(name):
        return run(profile_factory, hardware_factory, name, p, m, costs, 2).stages["peak_stash_microbatches"].tolist()

    assert peaks("1f1b") == [p - r for r in range(p)]
    assert peaks("zb-h1") == [p] * p
    assert peaks("zb-h2") == [min(m, 2 * p - 1)] * p
    assert peaks("gpipe") == [m] * p


def test_v_schedules_hold_fewer_microbatches_down_the_v(profile_factory, hardware_factory):
    p, m = 4, 8
    for name in ("zbv", "dualpipev"):
        stash = run(profile_factory, hardware_factory, name, p, m, COSTS[0], 2, 2).stages["peak_stash_microbatches"]
        assert stash.tolist() == [8, 7, 6, 5, 4, 3, 2, 1], name
