"""Properties every simulation must have, over random profiles, machines and methods (hypothesis)."""

from __future__ import annotations

import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from simfixtures import build_profile, compute_ops, expected_ops

from sglab.methods import METHODS, method_names
from sglab.sim import hardware_from_dict, simulate, simulate_baseline

OPS = ("F", "B", "I", "W", "U", "S", "T", "SI", "TI")
#: Examples per property; raise it (SGLAB_SIM_EXAMPLES=5000) for a longer hunt.
EXAMPLES = int(os.environ.get("SGLAB_SIM_EXAMPLES", "120"))
#: Every method the simulator runs, and its speedup baseline.
CHOICES = [*method_names("sim"), "baseline"]


@st.composite
def profiles(draw, per_rank: int = 1):
    k = per_rank * draw(st.integers(1, 4 // per_rank))
    times = [{op: draw(st.integers(0, 5000)) for op in OPS} for _ in range(k)]
    act = draw(st.sampled_from([0, 1, 1000, 10**6]))
    return build_profile(k, times=times, act=act, params=draw(st.integers(0, 10**6)))


@st.composite
def machines(draw, num_stages, fewest: int = 1):
    n = draw(st.integers(fewest, 4))
    devices = []
    for i in range(n):
        device = {"name": f"d{i}", "speed": draw(st.sampled_from([0.5, 1.0, 1.5, 3.0]))}
        if draw(st.booleans()):
            device["slowdown"] = draw(st.sampled_from([
                {"distribution": "lognormal", "sigma": 0.3},
                {"distribution": "bernoulli", "p": 0.3, "factor": 5.0},
                {"distribution": "uniform", "low": 1.0, "high": 2.0},
            ]))
        devices.append(device)
    topology = draw(st.sampled_from(["fully_connected", "chain", "ring", "switch", "bus"]))
    link = {"latency_ns": draw(st.integers(0, 2000)),
            "bandwidth_bytes_per_s": draw(st.sampled_from(["inf", 10**8, 10**9, 10**10])),
            "duplex": draw(st.booleans())}
    placement = draw(st.one_of(st.sampled_from(["blocked", "round_robin"]),
                               st.lists(st.integers(0, n - 1), min_size=num_stages, max_size=num_stages)))
    return hardware_from_dict({"name": "random", "devices": devices, "topology": topology, "link": link,
                               "placement": placement})


@st.composite
def cases(draw):
    method = draw(st.sampled_from(CHOICES))
    per_rank = 1 if method == "baseline" else METHODS[method].stages_per_rank
    profile = draw(profiles(per_rank))
    fewest = profile.num_stages if method == "dualpipev" else 1  # DualPipe-V: a microbatch per stage at least
    ranks = profile.num_stages // per_rank if per_rank > 1 else 1  # such schedules need a device per rank
    return (profile, draw(machines(profile.num_stages, ranks)), method, draw(st.integers(1, 4)),
            draw(st.integers(fewest, fewest + 2)), draw(st.integers(0, 3)))


def longest_path(durations: list[int], deps: list[tuple[int, ...]]) -> int:
    """Critical path length; tasks are numbered after their dependencies."""
    finish = [0] * len(durations)
    for task, waits in enumerate(deps):
        finish[task] = durations[task] + max((finish[d] for d in waits), default=0)
    return max(finish, default=0)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_every_simulation_is_a_valid_schedule(case):
    profile, hw, method, steps, microbatches, seed = case
    if method == "baseline":
        result = simulate_baseline(profile, hw, steps=steps, seed=seed)
    else:
        result = simulate(profile, hw, method, steps=steps, microbatches=microbatches, seed=seed, baseline=False)
    graph, trace = result.graph, result.trace
    start, end = trace["start_ns"].to_numpy(), trace["end_ns"].to_numpy()
    durations = graph.durations(seed)
    # the compute ops are the registry's, each once, and each ran for exactly its duration
    name = "bprop" if method == "baseline" else method
    m = microbatches if METHODS[name].pipelined else 1
    assert compute_ops(trace) == expected_ops(name, profile.num_stages, steps, seed, m)
    assert (start >= 0).all() and np.array_equal(end - start, np.asarray(durations, dtype=np.int64))
    # ... and after everything it depends on
    for task, waits in enumerate(graph.deps):
        for dep in waits:
            assert start[task] >= end[dep], (task, dep)
    # no device or link runs two things at once
    for _, rows in trace.groupby("device", observed=True):
        rows = rows.sort_values(["start_ns", "end_ns"], kind="stable")
        assert (rows["start_ns"].to_numpy()[1:] >= rows["end_ns"].to_numpy()[:-1]).all()
    # static devices run exactly their order
    for index, server in enumerate(graph.servers):
        if server.policy == "static":
            ran = [t for t in np.argsort(start, kind="stable") if graph.server[t] == index]
            assert [start[t] for t in ran] == [start[t] for t in server.order]
    makespan = result.summary["makespan_ns"]
    assert makespan >= longest_path(durations, graph.deps)
    assert makespan >= int(result.devices["busy_ns"].max())
    assert 0.0 <= result.summary["bubble_fraction"] <= 1.0
    assert result.summary["max_staleness"] >= 0


@settings(max_examples=max(EXAMPLES // 5, 10), deadline=None)
@given(st.sampled_from(method_names("sim")).flatmap(
    lambda m: st.tuples(profiles(METHODS[m].stages_per_rank), st.just(m))), st.integers(0, 100))
def test_same_seed_gives_the_same_trace(case, seed):
    profile, method = case
    a = simulate(profile, "cluster-10gbe-stragglers", method, steps=3, seed=seed, baseline=False)
    b = simulate(profile, "cluster-10gbe-stragglers", method, steps=3, seed=seed, baseline=False)
    assert a.trace.equals(b.trace) and a.summary == b.summary
