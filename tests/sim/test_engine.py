"""The engine, checked against exact event logs worked out by hand, and its refusal to stop early."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from sglab.errors import UsageError
from sglab.methods import METHODS, get_method
from sglab.sim import (
    SimError,
    SimOptions,
    SimUsageError,
    build_graph,
    hardware_from_dict,
    pipeline_schedule,
    simulate,
    simulate_baseline,
)
from sglab.sim import graph as graph_module
from sglab.sim.engine import Engine, label

# F=1000 S=200 B=2000 U=300 T=400 ns; 1000-byte activations over a link of 100 ns + 1 byte/ns.
COSTS = dict(F=1000, B=2000, U=300, S=200, T=400, act=1000)


@pytest.fixture
def two(profile_factory, hardware_factory):
    return profile_factory(2, **COSTS), hardware_factory(2, latency_ns=100, bandwidth=1_000_000_000)


def test_sequential_backprop_baseline_event_log(two):
    profile, hw = two
    assert simulate_baseline(profile, hw, steps=1).events() == [
        ("dev0", "0F0@0", 0, 1000),
        ("dev0", "1F0@0", 1000, 2000),
        ("dev0", "1B0@0", 2000, 4000),
        ("dev0", "0B0@0", 4000, 6000),
        ("dev0", "0U0@0", 6000, 6300),
        ("dev0", "1U0@0", 6300, 6600),
    ]


@pytest.mark.parametrize("name", ["bprop", "naive"])  # naive model parallelism is bprop, one stage per device
def test_bprop_on_one_device_per_stage_event_log_with_transfers(two, name):
    profile, hw = two
    assert simulate(profile, hw, name, steps=1, baseline=False).events() == [
        ("dev0", "0F0@0", 0, 1000),
        ("dev0->dev1", "0SEND_F0@0", 1000, 2100),  # 100 ns latency + 1000 bytes at 1 byte/ns
        ("dev1", "1F0@0", 2100, 3100),
        ("dev1", "1B0@0", 3100, 5100),
        ("dev1", "1U0@0", 5100, 5400),
        ("dev1->dev0", "1SEND_B0@0", 5100, 6200),
        ("dev0", "0B0@0", 6200, 8200),
        ("dev0", "0U0@0", 8200, 8500),
    ]


#: DNI on two devices, two steps: the event log worked out by hand.
DNI_TWO_STEPS = [
    ("dev0", "0F0@0", 0, 1000),
    ("dev0", "0S0@0", 1000, 1200),
    ("dev0->dev1", "0SEND_F0@0", 1000, 2100),
    ("dev0", "0B0@0", 1200, 3200),
    ("dev1", "1F0@0", 2100, 3100),
    ("dev1", "1B0@0", 3100, 5100),
    ("dev0", "0U0@0", 3200, 3500),  # updated long before the true gradient exists
    ("dev0", "0F0@1", 3500, 4500),
    ("dev0", "0S0@1", 4500, 4700),
    ("dev0->dev1", "0SEND_F0@1", 4500, 5600),
    ("dev0", "0B0@1", 4700, 6700),
    ("dev1", "1U0@0", 5100, 5400),
    ("dev1->dev0", "1SEND_B0@0", 5100, 6200),
    ("dev1", "1F0@1", 5600, 6600),
    ("dev1", "1B0@1", 6600, 8600),
    ("dev0", "0T0@0", 6700, 7100),  # target of step 0 arrived at 6200; the oldest step runs first
    ("dev0", "0U0@1", 7100, 7400),
    ("dev1", "1U0@1", 8600, 8900),
    ("dev1->dev0", "1SEND_B0@1", 8600, 9700),
    ("dev0", "0T0@1", 9700, 10100),
]


def test_dni_event_log_stage_updates_before_its_target_arrives(two):
    profile, hw = two
    assert simulate(profile, hw, "dni", steps=2, baseline=False).events() == DNI_TWO_STEPS


@pytest.mark.parametrize("chunk", [1, 2, 3])
def test_tasks_moved_to_the_arrays_in_any_chunks_give_the_same_log(two, monkeypatch, chunk):
    # chunk 1: every producer a transfer reads is already in the arrays, every memo entry aged
    monkeypatch.setattr(graph_module, "CHUNK", chunk)
    profile, hw = two
    assert simulate(profile, hw, "dni", steps=2, baseline=False).events() == DNI_TWO_STEPS


def test_user_pipeline_schedule_in_torch_grammar_runs_like_gpipe(two):
    profile, hw = two
    mine = pipeline_schedule("mine", {0: ["0F0", "0F1", "0B0", "0B1"], 1: ["1F0", "1F1", "1B0", "1B1"]})
    ours = simulate(profile, hw, mine, steps=2, baseline=False)
    gpipe = simulate(profile, hw, "gpipe", steps=2, microbatches=2, baseline=False)
    assert ours.events() == gpipe.events()
    assert ours.summary["method"] == "mine" and ours.summary["microbatches"] == 2


def test_deadlocking_schedule_names_the_stuck_ops(two):
    profile, hw = two
    bad = pipeline_schedule("bad", {0: ["0B0", "0F0"], 1: ["1F0", "1B0"]})
    with pytest.raises(SimError) as err:
        simulate(profile, hw, bad, steps=1, baseline=False)
    message = str(err.value)
    assert "schedule cannot finish: 8 of 8 ops never ran (method bad)" in message
    assert "dev0 waits to run 0B0@0, which needs 0F0@0, 1SEND_B0@0" in message
    assert "dev1 waits to run 1F0@0, which needs 0SEND_F0@0" in message


def test_dependency_cycle_in_a_ready_queue_is_reported_not_dropped(two):
    profile, hw = two
    graph = build_graph(profile, hw, get_method("dni", "sim"), SimOptions(steps=1))
    first_forward = list(graph.op).index("F")
    graph.add_deps(first_forward, len(graph) - 1)  # F of stage 0 now waits for the last op
    with pytest.raises(SimError, match=r"ops never ran .*\n.*stuck ops: 0F0@0"):
        Engine(graph, graph.durations(0)).run()


def test_static_order_must_hold_each_op_once(two):
    profile, hw = two
    graph = build_graph(profile, hw, get_method("bprop", "sim"), SimOptions(steps=1))
    graph.servers[0].order.pop()
    with pytest.raises(SimError, match=r"0U0@0 appears 0 times in dev0's order"):
        Engine(graph, graph.durations(0))


def test_bad_user_schedules_are_usage_errors(two):
    profile, hw = two
    with pytest.raises(SimUsageError, match="cannot parse action 'X0'"):
        pipeline_schedule("x", {0: ["X0"]})
    with pytest.raises(SimUsageError, match="0I0 is not one of the ops a schedule may list"):
        pipeline_schedule("x", {0: ["0I0"]})
    short = pipeline_schedule("short", {0: ["0F0", "0B0"]})
    with pytest.raises(SimUsageError, match="missing: 1F0, 1B0"):
        simulate(profile, hw, short, steps=1, baseline=False)
    twice = pipeline_schedule("twice", {0: ["0F0", "0B0", "0F0"], 1: ["1F0", "1B0"]})
    with pytest.raises(SimUsageError, match="listed twice: 0F0"):
        simulate(profile, hw, twice, steps=1, baseline=False)
    split = pipeline_schedule("split", {0: ["0F0", "1F0", "1B0", "0B0"]})
    with pytest.raises(SimUsageError, match=r"rank 0 lists stages \[0, 1\], which the hardware places on 2 devices"):
        simulate(profile, hw, split, steps=1, baseline=False)


def test_a_method_that_is_not_a_method_is_a_usage_error(two):
    profile, hw = two
    with pytest.raises(UsageError, match=r"method must be a method name \(bprop, .*\), .* got int 42"):
        simulate(profile, hw, 42)
    with pytest.raises(UsageError, match="cannot run method 'dni-aux'"):
        simulate(profile, hw, "dni-aux")
    with pytest.raises(UsageError, match="the simulator cannot run method 'dni-aux'"):
        simulate(profile, hw, METHODS["dni-aux"])
    with pytest.raises(UsageError, match="unknown SimOptions field"):
        simulate(profile, hw, "dni", stepz=3)
    with pytest.raises(UsageError, match="'steps' must be >= 1, got 0"):
        SimOptions(steps=0)
    with pytest.raises(UsageError, match="'max_ahead' must be an integer or null, got 1.5"):
        SimOptions(max_ahead=1.5)
    with pytest.raises(UsageError, match="update_prob does not apply"):
        simulate(profile, hw, "gpipe", update_prob=0.5)


def test_a_registry_method_object_runs_like_its_name(two):
    profile, hw = two
    by_object = simulate(profile, hw, replace(METHODS["dni"], unlock_prob=0.0), steps=3)
    by_name = simulate(profile, hw, "dni", steps=3, unlock_prob=0.0)
    assert by_object.events() == by_name.events() and by_object.summary == by_name.summary


def test_same_seed_same_trace_other_seed_other_trace(profile_factory):
    profile = profile_factory(4)
    a = simulate(profile, "cluster-10gbe-stragglers", "dni", steps=30, seed=1, baseline=False)
    b = simulate(profile, "cluster-10gbe-stragglers", "dni", steps=30, seed=1, baseline=False)
    c = simulate(profile, "cluster-10gbe-stragglers", "dni", steps=30, seed=2, baseline=False)
    assert a.trace.equals(b.trace)
    assert not a.trace.equals(c.trace)


def test_times_are_integer_nanoseconds(profile_factory):
    result = simulate(profile_factory(3), "cluster-ib-hdr", "1f1b", steps=2, baseline=False)
    assert str(result.trace["start_ns"].dtype) == "int64" and str(result.trace["end_ns"].dtype) == "int64"
    assert isinstance(result.summary["makespan_ns"], int)


def _dni_graph(two):
    profile, hw = two
    return build_graph(profile, hw, get_method("dni", "sim"), SimOptions(steps=1))


def test_graph_reads_back_what_the_builder_added(two):
    graph = _dni_graph(two)
    assert [label(graph, t) for t in range(len(graph))] == [
        "0F0@0", "0S0@0", "0B0@0", "0U0@0", "0SEND_F0@0", "1F0@0", "1B0@0", "1SEND_B0@0", "0T0@0", "1U0@0"]
    assert list(graph.deps) == [(), (0,), (1,), (2,), (0,), (4,), (5,), (6,), (1, 7), (6,)]
    assert list(graph.server) == [0, 0, 0, 0, 2, 1, 1, 3, 0, 1]
    assert [graph.servers[i].name for i in (2, 3)] == ["dev0->dev1", "dev1->dev0"]
    assert list(graph.duration) == [1000, 200, 2000, 300, 1100, 1000, 2000, 1100, 400, 300]
    assert graph.column("step").dtype == np.int32 and graph.column("duration").dtype == np.int64


def test_added_dependencies_are_waited_for(two):
    graph = _dni_graph(two)
    graph.add_deps(1, 5)  # 0S0 now also waits for 1F0, which ends at 3100
    assert graph.deps[1] == (0, 5)
    engine = Engine(graph, graph.durations(0)).run()
    assert graph.deps[1] == (0, 5) and graph.deps[2] == (1,)  # merged into the arrays by freeze
    assert [(engine.start[t], engine.end[t]) for t in (1, 2, 3)] == [(3100, 3300), (3300, 5300), (5300, 5600)]


def test_a_dependency_outside_the_graph_is_an_error(two):
    graph = _dni_graph(two)
    graph.add_deps(3, 99)
    with pytest.raises(SimError, match=r"task 3 waits for task 99, which is not in the graph \(10 tasks\)"):
        Engine(graph, graph.durations(0))
    with pytest.raises(SimError, match=r"add_deps: task 10 is not in the graph"):
        graph.add_deps(10, 0)


def test_a_frozen_graph_takes_no_new_ops(two):
    graph = _dni_graph(two)
    Engine(graph, graph.durations(0)).run()
    for add in (lambda: graph.compute(1, 0, "F"), lambda: graph.data(0, 1), lambda: graph.hop(0, 0, "AR", 0, "x", 5),
                lambda: graph.buffer(8, 0, 1)):
        with pytest.raises(SimError, match="the task graph is frozen"):
            add()


def test_values_that_are_not_integers_are_named(two):
    graph = _dni_graph(two)
    graph.compute(1.5, 0, "F")
    with pytest.raises(SimError, match=r"task 10's step is 1.5, not an int64 integer"):
        len(graph.step)
    graph = _dni_graph(two)
    with pytest.raises(SimError, match=r"AR of stage 0: duration 2.5 is not an integer"):
        graph.hop(0, 0, "AR", 0, "ring", 2.5)
    graph.compute(0, 0, "F", deps=[0, "x"])
    with pytest.raises(SimError, match=r"a dependency of task 10 is 'x'"):
        graph.freeze()


@pytest.mark.parametrize("chunk", [1, 16384])
def test_a_sending_op_holds_its_device_for_the_post_in_any_chunks(profile_factory, monkeypatch, chunk):
    monkeypatch.setattr(graph_module, "CHUNK", chunk)
    link = {"latency_ns": 100, "bandwidth_bytes_per_s": 10**9, "sender": {"latency_ns": 50, "bandwidth_bytes_per_s": 4 * 10**9}}
    hw = hardware_from_dict({"name": "posting", "devices": {"count": 2, "name": "dev", "speed": 1.0}, "link": link})
    # the post: min(50 + 1000 bytes at 4 bytes/ns, the 1100 ns transfer) = 300 ns on the sender, 800 on the link
    assert simulate(profile_factory(2, **COSTS), hw, "bprop", steps=1, baseline=False).events() == [
        ("dev0", "0F0@0", 0, 1300),
        ("dev0->dev1", "0SEND_F0@0", 1300, 2100),
        ("dev1", "1F0@0", 2100, 3100),
        ("dev1", "1B0@0", 3100, 5400),
        ("dev1", "1U0@0", 5400, 5700),
        ("dev1->dev0", "1SEND_B0@0", 5400, 6200),
        ("dev0", "0B0@0", 6200, 8200),
        ("dev0", "0U0@0", 8200, 8500),
    ]
