"""The simulator pinned to results known in closed form, to the registry, and to torch's pipelining."""

from __future__ import annotations

from fractions import Fraction
from types import SimpleNamespace

import pytest
from simfixtures import compute_ops, expected_ops

from sglab.methods import METHODS, method_names
from sglab.schedules import with_communication
from sglab.sim import hardware_from_dict, simulate, simulate_baseline
from sglab.sim.pipeline import method_orders


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


TIMES = [{"F": 1100, "B": 2300, "U": 170}, {"F": 900, "B": 1700, "U": 230}, {"F": 3000, "B": 5000, "U": 10}]


def test_the_baseline_runs_every_op_of_a_step_back_to_back_on_one_device(profile_factory, hardware_factory):
    hw = hardware_factory(3, latency_ns=500, bandwidth=10**9)  # links it must not use
    summary = simulate_baseline(profile_factory(3, times=TIMES), hw, steps=7).summary
    assert summary["makespan_ns"] == 7 * sum(sum(t.values()) for t in TIMES)
    assert summary["num_devices"] == 1 and summary["bubble_fraction"] == 0
    assert summary["baseline"] == "bprop on dev0 (every stage on one device)"


def test_bprop_one_stage_per_device_is_naive_model_parallelism(profile_factory, hardware_factory):
    profile = profile_factory(3, times=TIMES)
    result = simulate(profile, hardware_factory(3), "bprop", steps=7)
    # one device busy at a time, except that stages 1 and 2 update while stage 0 runs B and U
    assert result.summary["makespan_ns"] == 7 * (sum(t["F"] + t["B"] for t in TIMES) + TIMES[0]["U"])
    assert result.summary["baseline_makespan_ns"] == 7 * sum(sum(t.values()) for t in TIMES)


def test_bprop_is_gpipe_with_one_microbatch(profile_factory, hardware_factory):
    # the step builder and the pipeline builder, from the same registry graph, agree
    profile, hw = profile_factory(3), hardware_factory(3, latency_ns=50, bandwidth=2_000_000_000)
    bprop = simulate(profile, hw, "bprop", steps=3, baseline=False)
    gpipe = simulate(profile, hw, "gpipe", steps=3, microbatches=1, baseline=False)
    assert bprop.events() == gpipe.events()


@pytest.mark.parametrize("name", method_names("sim"))
def test_the_trace_runs_each_op_of_the_registry_once(profile_factory, hardware_factory, name):
    # schedules of two stages per rank run 4 stages on 2 ranks; DualPipe-V needs a microbatch per stage
    k, steps, m = (4, 6, 4) if METHODS[name].stages_per_rank > 1 else (3, 6, 2)
    result = simulate(profile_factory(k), hardware_factory(k, latency_ns=10, bandwidth=10**9), name, steps=steps,
                      microbatches=m, seed=3, baseline=False)
    wanted = expected_ops(name, k, steps, seed=3, microbatches=m if METHODS[name].pipelined else 1)
    assert compute_ops(result.trace) == wanted


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


def _torch_compute(kind: str, ranks: int, m: int) -> dict[int, list[str]]:
    """torch's own per-rank compute lists (its schedule IR) without REDUCE_GRAD and idle slots."""
    schedules = pytest.importorskip("torch.distributed.pipelining.schedules")
    cls = {"gpipe": schedules.ScheduleGPipe, "1f1b": schedules.Schedule1F1B}[kind]
    order = cls._get_pipeline_order(SimpleNamespace(_num_stages=ranks, _n_microbatches=m))
    return {r: [str(a) for a in actions if a is not None and not str(a).endswith("REDUCE_GRAD")]
            for r, actions in order.items()}


def _ours(per_rank) -> dict[int, list[str]]:
    return {r: [str(a) for a in actions if a.op != "U"] for r, actions in per_rank.items()}


@pytest.mark.parametrize("kind", ["gpipe", "1f1b"])
@pytest.mark.parametrize("ranks, m", [(2, 2), (3, 4), (4, 6), (4, 8)])
def test_pipeline_action_lists_match_torchs_schedules(kind, ranks, m):
    ours = _ours(METHODS[kind].rank_actions(ranks, m))
    theirs = _torch_compute(kind, ranks, m)
    # torch 2.13's Schedule1F1B IR numbers the last rank's forwards from 1 (its runtime loop does
    # not read this list), so that rank is checked against the published order instead
    checked = range(ranks - 1) if kind == "1f1b" else range(ranks)
    assert {r: ours[r] for r in checked} == {r: theirs[r] for r in checked}
    if kind == "1f1b":
        last = ranks - 1
        assert ours[last] == [f"{last}{op}{j}" for j in range(m) for op in "FB"]


def test_pipeline_action_lists_match_the_published_schedules():
    text = lambda kind, ranks, m, rank: " ".join(_ours(METHODS[kind].rank_actions(ranks, m))[rank])  # noqa: E731
    assert text("1f1b", 4, 6, 0) == "0F0 0F1 0F2 0F3 0B0 0F4 0B1 0F5 0B2 0B3 0B4 0B5"
    assert text("1f1b", 4, 6, 3) == "3F0 3B0 3F1 3B1 3F2 3B2 3F3 3B3 3F4 3B4 3F5 3B5"
    assert text("1f1b", 4, 2, 1) == "1F0 1F1 1B0 1B1"
    assert text("gpipe", 4, 3, 2) == "2F0 2F1 2F2 2B0 2B1 2B2"


@pytest.mark.parametrize("kind", ["gpipe", "1f1b"])
@pytest.mark.parametrize("stages, devices, m", [(2, 2, 3), (3, 3, 4), (4, 4, 8), (4, 2, 4), (6, 3, 6)])
def test_sends_and_receives_match_torchs_pass(kind, stages, devices, m):
    schedules = pytest.importorskip("torch.distributed.pipelining.schedules")
    placement = [s * devices // stages for s in range(stages)]  # blocked: contiguous stages per device
    compute = method_orders(METHODS[kind], placement, m)
    rank_of = lambda s: placement[s]  # noqa: E731
    ours = _ours(with_communication(compute, rank_of, stages))
    torch_compute = {r: [schedules._Action.from_str(a) for a in actions] for r, actions in _ours(compute).items()}
    theirs = {r: [str(a) for a in actions]
              for r, actions in schedules._add_send_recv(torch_compute, rank_of, stages).items()}
    assert ours == theirs


@pytest.mark.parametrize("method", ["gpipe", "1f1b"])
def test_pipelines_on_interleaved_placements_run_every_op_once(profile_factory, method):
    hw = hardware_from_dict({"devices": {"count": 2, "speed": 1}, "topology": "bus", "placement": "round_robin",
                             "link": {"latency_ns": 100, "bandwidth_bytes_per_s": "inf"}})
    result = simulate(profile_factory(5), hw, method, steps=2, microbatches=4, baseline=False)
    assert compute_ops(result.trace) == expected_ops(method, 5, 2, microbatches=4)
    assert set(result.trace[result.trace["kind"] == "link"]["op"].astype(str)) == {"SEND_F", "SEND_B"}


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
    assert simulate(profile, hw, "dni", steps=4, unlock_prob=0.0, baseline=False).events() == never.events()
