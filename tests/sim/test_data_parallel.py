"""Data parallelism (``SimOptions.replicas``): all-reduce closed forms, DDP buckets, DP × PP, DNI with DP."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from simfixtures import compute_ops, expected_ops

from sglab.cli import main
from sglab.sim import SimOptions, SimUsageError, simulate, simulate_baseline
from sglab.sim.data_parallel import replica_placements

L, BW = 500, 10**9  # ns of latency per message, bytes per second


def allreduce_alone(profile_factory, hardware_factory, n: int, nbytes: int, algorithm: str, bw: int = BW) -> int:
    """The makespan of one step of a 1-stage model whose ops cost nothing: the all-reduce alone."""
    profile = profile_factory(1, F=0, B=0, U=0, S=None, T=None, params=nbytes)
    hw = hardware_factory(n, latency_ns=L, bandwidth=bw)
    result = simulate(profile, hw, "bprop", steps=1, replicas=n, allreduce=algorithm, bucket_bytes=nbytes,
                      baseline=False)
    return result.summary["makespan_ns"]


@pytest.mark.parametrize("n", range(2, 9))
def test_ring_allreduce_takes_2_n_minus_1_over_n_bytes_over_bw_plus_2_n_minus_1_latencies(
        profile_factory, hardware_factory, n):
    nbytes = 840_000  # divisible by 2..8, so every chunk is bytes / n and a whole number of ns
    assert allreduce_alone(profile_factory, hardware_factory, n, nbytes, "ring") == \
        2 * (n - 1) * nbytes * 10**9 // (n * BW) + 2 * (n - 1) * L
    odd, bw = 1_000_003, 3 * 10**9  # chunks of ceil(bytes / n), each message's time rounded up to whole ns
    chunk_ns = -(-math.ceil(odd / n) * 10**9 // bw)
    assert allreduce_alone(profile_factory, hardware_factory, n, odd, "ring", bw) == 2 * (n - 1) * (L + chunk_ns)


@pytest.mark.parametrize("n", range(2, 9))
def test_tree_allreduce_takes_2_floor_log2_n_levels_of_whole_messages(profile_factory, hardware_factory, n):
    # reduce up floor(log2 n) levels, broadcast down as many; a parent's two children use two links at once
    nbytes, bw = 1_000_003, 3 * 10**9
    levels = math.floor(math.log2(n))
    assert allreduce_alone(profile_factory, hardware_factory, n, nbytes, "tree", bw) == \
        2 * levels * (L + -(-nbytes * 10**9 // bw))


def test_buckets_of_the_last_stage_travel_during_the_backward_of_the_first(profile_factory, hardware_factory):
    # 400 B of gradients per stage in 200 B buckets; ring of 2: 2 rounds of 100 B chunks (100 ns) per bucket
    profile = profile_factory(2, F=100, B=200, U=10, S=None, T=None, act=50, params=400)
    result = simulate(profile, hardware_factory(4, bandwidth=BW), "bprop", steps=1, replicas=2, bucket_bytes=200,
                      baseline=False)
    both = lambda a, b, action, start, end: [(a, action, start, end), (b, action, start, end)]  # noqa: E731
    assert result.events() == [
        *both("dev0", "dev2", "0F0@0", 0, 100), *both("dev0->dev1", "dev2->dev3", "0SEND_F0@0", 100, 150),
        *both("dev1", "dev3", "1F0@0", 150, 250), *both("dev1", "dev3", "1B0@0", 250, 450),
        *both("dev1->dev0", "dev3->dev2", "1SEND_B0@0", 450, 500),
        *both("dev1->dev3", "dev3->dev1", "1AR0@0", 450, 550),  # bucket 0, round 0: starts as 1B ends
        *both("dev0", "dev2", "0B0@0", 500, 700),
        *both("dev1->dev3", "dev3->dev1", "1AR0@0", 550, 650),  # round 1, with the chunk received in round 0
        *both("dev1->dev3", "dev3->dev1", "1AR1@0", 650, 750),  # bucket 1 after bucket 0: one collective at a time
        *both("dev0->dev2", "dev2->dev0", "0AR0@0", 700, 800),  # stage 0's devices reduce at the same time
        *both("dev1->dev3", "dev3->dev1", "1AR1@0", 750, 850),
        *both("dev0->dev2", "dev2->dev0", "0AR0@0", 800, 900),
        *both("dev1", "dev3", "1U0@0", 850, 860),  # after its stage's last bucket
        *both("dev0->dev2", "dev2->dev0", "0AR1@0", 900, 1000),
        *both("dev0->dev2", "dev2->dev0", "0AR1@0", 1000, 1100),
        *both("dev0", "dev2", "0U0@0", 1100, 1110),
    ]
    summary = result.summary
    assert (summary["replicas"], summary["num_stages"], summary["num_devices"]) == (2, 2, 4)
    assert summary["samples"] == 2 * profile.measurement.batch_size
    assert result.stages[["replica", "stage", "device"]].values.tolist() == \
        [[0, 0, "dev0"], [0, 1, "dev1"], [1, 0, "dev2"], [1, 1, "dev3"]]


def test_one_replica_is_the_plain_simulation(profile_factory, hardware_factory):
    profile, hw = profile_factory(3), hardware_factory(3, latency_ns=10, bandwidth=BW)
    for name in ("bprop", "1f1b", "dni"):
        plain = simulate(profile, hw, name, steps=5)
        one = simulate(profile, hw, name, SimOptions(steps=5, replicas=1, allreduce="tree", bucket_bytes=1))
        assert one.events() == plain.events() and one.summary == plain.summary
        assert "AR" not in set(plain.trace["op"].astype(str)) and plain.summary["replicas"] == 1


def twice(ops: Counter) -> Counter:
    """Each op counted once per replica of two."""
    return Counter({op: 2 * count for op, count in ops.items()})


def _allreduce_waits(result) -> list[tuple]:
    """Per U: its start, the end of the last AR message of its stage and step into its device, the start of the
    stage's first AR message and the end of the stage's last B on any replica."""
    t = result.trace.assign(op=result.trace["op"].astype(str), device=result.trace["device"].astype(str))
    rows = []
    for _, ops in t.groupby(["step", "stage"]):
        ar, grads = ops[ops["op"] == "AR"], ops[ops["op"].isin(["B", "W"])]
        for u in ops[ops["op"] == "U"].itertuples():
            into = ar[ar["device"].str.endswith(f"->{u.device}")]
            rows.append((u.start_ns, into["end_ns"].max(), ar["start_ns"].min(), grads["end_ns"].max()))
    return rows


def test_dp_times_pp_each_replicas_update_waits_its_allreduce(profile_factory, hardware_factory):
    k, m, steps = 3, 4, 2
    profile = profile_factory(k, params=3000)
    hw = hardware_factory(6, latency_ns=10, bandwidth=BW)
    result = simulate(profile, hw, "1f1b", steps=steps, microbatches=m, replicas=2, bucket_bytes=1000, baseline=False)
    assert compute_ops(result.trace) == twice(expected_ops("1f1b", k, steps, microbatches=m))  # every op on each replica
    ar = result.trace[result.trace["op"].astype(str) == "AR"]
    assert len(ar) == steps * k * 3 * 2 * 2  # buckets x rounds 2(n-1) x one message per replica (n = 2)
    waits = _allreduce_waits(result)
    assert len(waits) == steps * k * 2
    for u_start, ar_end, ar_start, grads_end in waits:
        assert u_start == ar_end and ar_start == grads_end  # U right after its all-reduce, which waits every B
    devices = result.devices.set_index("device")["stages"]  # the model's stages, replica after replica
    assert devices[["dev0", "dev1", "dev2", "dev3", "dev4", "dev5"]].tolist() == ["0", "1", "2", "0", "1", "2"]


def test_dni_with_two_replicas_all_reduces_before_each_update(profile_factory, hardware_factory):
    k, steps = 3, 4
    profile, hw = profile_factory(k, params=2000), hardware_factory(6, latency_ns=10, bandwidth=BW)
    result = simulate(profile, hw, "dni", steps=steps, replicas=2, allreduce="tree", baseline=False)
    assert compute_ops(result.trace) == twice(expected_ops("dni", k, steps))
    waits = _allreduce_waits(result)
    assert len(waits) == steps * k * 2
    for u_start, ar_end, ar_start, grads_end in waits:
        assert u_start >= ar_end and ar_start == grads_end  # the device may be busy when its all-reduce ends
    assert sum(u_start == ar_end for u_start, ar_end, _, _ in waits) > len(waits) // 2
    # a tree of 2 is one reduce and one broadcast of the whole 2000 B bucket: 10 + 2000 ns each
    assert sorted(set((result.trace["end_ns"] - result.trace["start_ns"])[result.trace["op"] == "AR"])) == [2010]
    assert result.summary["max_synthesizer_lag"] >= 0 and result.summary["replicas"] == 2


def test_two_replicas_on_free_links_have_twice_the_throughput(profile_factory, hardware_factory):
    profile, hw = profile_factory(2), hardware_factory(4)  # latency 0, infinite bandwidth: every AR takes 0 ns
    for name in ("gpipe", "dni"):
        one = simulate(profile, hw, name, steps=8)
        two = simulate(profile, hw, name, steps=8, replicas=2)
        assert two.summary["makespan_ns"] == one.summary["makespan_ns"]
        assert two.summary["samples"] == 2 * one.summary["samples"]
        assert two.summary["throughput_samples_per_s"] == 2 * one.summary["throughput_samples_per_s"]
        assert two.summary["speedup"] == pytest.approx(2 * one.summary["speedup"], rel=1e-12)
        first = two.trace[two.trace["device"].astype(str).isin(["dev0", "dev1"]) & (two.trace["kind"] == "device")]
        mine = one.trace[one.trace["kind"] == "device"]
        assert first[["stage", "op", "step", "start_ns", "end_ns"]].astype(str).values.tolist() == \
            mine[["stage", "op", "step", "start_ns", "end_ns"]].astype(str).values.tolist()


def test_a_stage_that_skips_its_update_still_all_reduces(profile_factory, hardware_factory):
    k, steps = 3, 6  # DDP reduces from the backward's hooks, whether or not the optimizer steps
    result = simulate(profile_factory(k, params=1000), hardware_factory(6), "bprop", steps=steps, replicas=2,
                      update_prob=0.5, seed=1, baseline=False)
    ops = result.trace.assign(op=result.trace["op"].astype(str))
    per_step = ops.groupby(["step", "stage"])["op"].agg(list)
    assert all(ops.count("AR") == 4 and ops.count("B") == 2 for ops in per_step)  # 1 bucket, 2 rounds of 2 messages
    assert 0 < (ops["op"] == "U").sum() < steps * k * 2


def test_explicit_replica_devices(profile_factory, hardware_factory):
    result = simulate(profile_factory(2), hardware_factory(4), "1f1b", steps=2, replicas=2,
                      replica_devices=[[3, 2], [0, 1]], baseline=False)
    assert result.stages[["replica", "stage", "device"]].values.tolist() == \
        [[0, 0, "dev3"], [0, 1, "dev2"], [1, 0, "dev0"], [1, 1, "dev1"]]
    assert result.devices["stages"].tolist()[:4] == ["0", "1", "1", "0"]
    with pytest.raises(SimUsageError, match="replica_devices needs SimOptions field 'replicas' > 1"):
        simulate(profile_factory(2), hardware_factory(4), "1f1b", replica_devices=[[0, 1]])


def test_replica_placements_offset_or_grouped(profile_factory, hardware_factory):
    hw = hardware_factory(8)
    assert replica_placements("gpipe", hw, 3, 2) == [[0, 1, 2], [4, 5, 6]]
    assert replica_placements("gpipe", hw, 6, 2) == [[0, 0, 1, 2, 2, 3], [4, 4, 5, 6, 6, 7]]
    assert replica_placements("dni", hw, 2, 2, groups=[[7, 6], [1, 0]]) == [[7, 6], [1, 0]]
    with pytest.raises(SimUsageError, match="groups must name distinct devices 0..7"):
        replica_placements("dni", hw, 2, 2, groups=[[0, 1], [1, 2]])


def test_bad_options_raise_naming_the_field(profile_factory, hardware_factory):
    for bad, message in (({"replicas": 0}, "'replicas' must be >= 1, got 0"),
                         ({"allreduce": "star"}, "'allreduce' must be one of ring, tree, got 'star'"),
                         ({"bucket_bytes": 0}, "'bucket_bytes' must be >= 1, got 0")):
        with pytest.raises(SimUsageError, match=message):
            SimOptions(**bad)
    profile = profile_factory(2)
    with pytest.raises(SimUsageError, match="3 replicas × 1 device per replica = 3 devices, more than the 2 of "
                                            "hardware 'test2'"):
        simulate(profile, hardware_factory(2), "dni", replicas=3)
    with pytest.raises(SimUsageError, match="'replicas' must be 1 here, got 2"):
        simulate_baseline(profile, hardware_factory(4), replicas=2)


def test_cli_replicas_flags(profile_factory, tmp_path, capsys):
    path = profile_factory(2, params=1 << 20).save(tmp_path / "p.json")
    assert main(["simulate", "--profile", str(path), "--method", "dni", "--steps", "4", "--replicas", "2",
                 "--allreduce", "tree", "--bucket-mb", "0.5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "2 stages, batch 32, 2 data-parallel replicas (tree all-reduce, 0.5 MiB buckets)" in lines[0]
    assert lines[1].split()[-1] == "replicas" and lines[2].split()[-1] == "2"
    assert main(["simulate", "--profile", str(path), "--replicas", "0"]) == 2
    assert "--replicas must be >= 1, got 0" in capsys.readouterr().err
