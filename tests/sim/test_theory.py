"""The simulator pinned to results known in closed form."""

from __future__ import annotations

from fractions import Fraction

import pytest

from sglab.sim import simulate


@pytest.mark.parametrize("p", [2, 3, 4])
@pytest.mark.parametrize("m", [1, 2, 5, 8])
@pytest.mark.parametrize("steps", [1, 3])
def test_gpipe_bubble_fraction_is_exact(profile_factory, hardware_factory, p, m, steps):
    # uniform stages, free links, free updates: the GPipe paper's (p-1)/(m+p-1)
    profile = profile_factory(p, F=1000, B=2000, U=0)
    summary = simulate(profile, hardware_factory(p), "gpipe", steps=steps, microbatches=m, baseline=False).summary
    idle = summary["capacity_ns"] - summary["busy_ns"]
    assert Fraction(idle, summary["capacity_ns"]) == Fraction(p - 1, m + p - 1)
    assert summary["makespan_ns"] == steps * (m + p - 1) * 3000


@pytest.mark.parametrize("m", [1, 2, 4, 8, 12])
def test_1f1b_holds_at_most_p_minus_i_microbatches_on_stage_i(profile_factory, hardware_factory, m):
    p = 4
    profile = profile_factory(p, F=1000, B=2000, U=100)
    one_f_one_b = simulate(profile, hardware_factory(p), "1f1b", steps=2, microbatches=m, baseline=False)
    assert one_f_one_b.stages["peak_stash_microbatches"].tolist() == [min(m, p - i) for i in range(p)]
    gpipe = simulate(profile, hardware_factory(p), "gpipe", steps=2, microbatches=m, baseline=False)
    assert gpipe.stages["peak_stash_microbatches"].tolist() == [m] * p
    assert one_f_one_b.summary["max_staleness"] == gpipe.summary["max_staleness"] == 0


@pytest.mark.parametrize("k", [2, 3, 4, 6])
@pytest.mark.parametrize("update", [0, 300])
def test_dni_with_free_synthesizers_and_links_reaches_k_times_throughput(profile_factory, hardware_factory, k, update):
    profile = profile_factory(k, F=1000, B=2000, U=update, S=0, T=0)
    summary = simulate(profile, hardware_factory(k), "dni", steps=40).summary
    assert summary["steady_speedup"] == k
    assert summary["steady_step_ns"] == 3000 + update


def test_completely_unlocked_runs_every_device_back_to_back(profile_factory, hardware_factory):
    profile = profile_factory(3, F=1000, B=2000, U=300, S=0, T=0)
    summary = simulate(profile, hardware_factory(3), "unlocked", steps=10).summary
    assert summary["makespan_ns"] == 10 * 3300  # not even the forward pass waits
    assert summary["bubble_fraction"] == 0


@pytest.mark.parametrize("method", ["sequential", "naive"])
def test_sequential_makespan_is_the_sum_of_its_costs(profile_factory, hardware_factory, method):
    times = [{"F": 1100, "B": 2300, "U": 170}, {"F": 900, "B": 1700, "U": 230}, {"F": 3000, "B": 5000, "U": 10}]
    profile = profile_factory(3, times=times)
    summary = simulate(profile, hardware_factory(3), method, steps=7).summary
    if method == "sequential":
        assert summary["makespan_ns"] == 7 * sum(sum(t.values()) for t in times)
        assert summary["speedup"] == 1.0 and summary["bubble_fraction"] == 0
    else:  # one device busy at a time, except that stages 1 and 2 update while stage 0 runs B and U
        assert summary["makespan_ns"] == 7 * (sum(t["F"] + t["B"] for t in times) + times[0]["U"])


def test_naive_is_gpipe_with_one_microbatch(profile_factory, hardware_factory):
    profile, hw = profile_factory(3), hardware_factory(3, latency_ns=50, bandwidth=2_000_000_000)
    naive = simulate(profile, hw, "naive", steps=3, baseline=False)
    gpipe = simulate(profile, hw, "gpipe", steps=3, microbatches=1, baseline=False)
    assert naive.summary["makespan_ns"] == gpipe.summary["makespan_ns"]


def test_ddg_staleness_is_k_minus_1_minus_stage(profile_factory, hardware_factory):
    k = 4
    result = simulate(profile_factory(k, U=300), hardware_factory(k), "ddg", steps=20)
    assert result.stages["max_staleness"].tolist() == [k - 1 - i for i in range(k)]
    assert result.stages["peak_stash_microbatches"].tolist() == [k - i for i in range(k)]


def test_dgl_sends_no_gradients_and_dni_does(profile_factory, hardware_factory):
    profile, hw = profile_factory(3), hardware_factory(3, latency_ns=10, bandwidth=10**9)
    dgl = simulate(profile, hw, "dgl", steps=3, baseline=False).trace
    dni = simulate(profile, hw, "dni", steps=3, baseline=False).trace
    assert "SEND_B" not in set(dgl["op"].astype(str)) and "SEND_B" in set(dni["op"].astype(str))


def test_stochastic_updates_each_stage_with_probability_p(profile_factory, hardware_factory):
    profile = profile_factory(4)
    trace = simulate(profile, hardware_factory(4), "stochastic", steps=400, update_prob=0.25, baseline=False).trace
    updates = (trace["op"].astype(str) == "U").sum()
    assert 0.2 * 1600 < updates < 0.3 * 1600
    forwards = (trace["op"].astype(str) == "F").sum()
    assert forwards == 1600  # forwards always run


def test_throughput_and_speedup_count_the_same_samples(profile_factory, hardware_factory):
    profile = profile_factory(2, F=1000, B=1000, U=0, batch=50)
    summary = simulate(profile, hardware_factory(2), "gpipe", steps=2, microbatches=4).summary
    assert summary["samples"] == 2 * 4 * 50
    assert summary["baseline_makespan_ns"] == 2 * 4 * 2 * 2000  # 8 batches, sequentially
    assert summary["speedup"] == summary["baseline_makespan_ns"] / summary["makespan_ns"]
    assert summary["throughput_samples_per_s"] == pytest.approx(400 * 1e9 / summary["makespan_ns"])


def test_pipeline_action_lists_match_the_published_schedules():
    from sglab.sim.pipeline import gpipe_actions, one_f_one_b_actions

    text = lambda actions: " ".join(f"{op}{j}" for op, j in actions)  # noqa: E731
    assert text(one_f_one_b_actions(0, 4, 6)) == "F0 F1 F2 F3 B0 F4 B1 F5 B2 B3 B4 B5"
    assert text(one_f_one_b_actions(3, 4, 6)) == "F0 B0 F1 B1 F2 B2 F3 B3 F4 B4 F5 B5"
    assert text(one_f_one_b_actions(1, 4, 2)) == "F0 F1 B0 B1"
    assert text(gpipe_actions(2, 4, 3)) == "F0 F1 F2 B0 B1 B2"


@pytest.mark.parametrize("method", ["gpipe", "1f1b"])
def test_pipelines_on_interleaved_placements_finish(profile_factory, method):
    from sglab.sim import hardware_from_dict

    hw = hardware_from_dict({"devices": {"count": 2, "speed": 1}, "topology": "bus", "placement": "round_robin",
                             "link": {"latency_ns": 100, "bandwidth_bytes_per_s": "inf"}})
    result = simulate(profile_factory(5), hw, method, steps=2, microbatches=4, baseline=False)
    assert len(result.trace) == result.summary["num_ops"]


def test_mixed_unlocking_interpolates_between_dni_and_locked_backward(profile_factory, hardware_factory):
    profile, hw = profile_factory(3), hardware_factory(3, latency_ns=100, bandwidth=10**9)
    dni = simulate(profile, hw, "dni", steps=4, baseline=False)
    always = simulate(profile, hw, "mixed", steps=4, unlock_prob=1.0, baseline=False)
    assert always.events() == dni.events()
    never = simulate(profile, hw, "mixed", steps=4, unlock_prob=0.0, baseline=False)
    t = never.trace.assign(op=never.trace["op"].astype(str))
    for step in range(4):
        for i in range(2):  # each B waits for the gradient from the stage above
            b_above = t[(t.op == "B") & (t.stage == i + 1) & (t.step == step)]["end_ns"].item()
            b_mine = t[(t.op == "B") & (t.stage == i) & (t.step == step)]["start_ns"].item()
            assert b_mine >= b_above + 100 + 4096  # + the transfer: 100 ns latency, 4096 bytes at 1 byte/ns
    assert never.summary["makespan_ns"] > dni.summary["makespan_ns"]
