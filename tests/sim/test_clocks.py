"""Stages on their own clocks (sglab.sim.clocks): exact event logs worked out by hand, and clear refusals."""

from __future__ import annotations

from dataclasses import replace

import pytest
from simfixtures import build_hardware, build_profile

from sglab.costprofile import CostProfile, ProfileError
from sglab.sim import SimUsageError, simulate, simulate_baseline

#: Stage 0 runs two chunks per step, stage 1 one chunk reading both of stage 0's messages.
TIMES = [{"F": 10, "S": 1, "B": 20, "U": 3, "T": 4}, {"F": 100, "B": 200, "U": 30}]


def clocked_profile(chunks=(2, 1), times=TIMES) -> CostProfile:
    profile = build_profile(len(times), times=times, act=1000)
    return replace(profile, stages=[replace(s, chunks=n) for s, n in zip(profile.stages, chunks)])


def compute_events(result):
    """The event log without the (free, zero-length) transfers."""
    return [event for event in result.events() if "->" not in event[0]]


def test_dni_each_chunk_updates_before_the_next_and_t_waits_for_the_chunk_that_read_the_message():
    events = compute_events(simulate(clocked_profile(), build_hardware(2), "dni", steps=1, baseline=False))
    assert events == [
        ("dev0", "0F0@0", 0, 10),
        ("dev0", "0S0@0", 10, 11),
        ("dev0", "0B0@0", 11, 31),
        ("dev0", "0U0@0", 31, 34),
        ("dev0", "0F1@0", 34, 44),  # waits for chunk 0's update
        ("dev0", "0S1@0", 44, 45),
        ("dev1", "1F0@0", 44, 144),  # reads both messages (free links)
        ("dev0", "0B1@0", 45, 65),
        ("dev0", "0U1@0", 65, 68),
        ("dev1", "1B0@0", 144, 344),
        ("dev0", "0T0@0", 344, 348),  # both of the link's targets come from stage 1's one backward
        ("dev1", "1U0@0", 344, 374),
        ("dev0", "0T1@0", 348, 352),
    ]


def test_bprop_runs_the_episodes_forwards_first_and_each_chunk_backward_after_the_gradient_of_its_reader():
    events = compute_events(simulate(clocked_profile(), build_hardware(2), "bprop", steps=1, baseline=False))
    assert events == [
        ("dev0", "0F0@0", 0, 10),
        ("dev0", "0F1@0", 10, 20),  # an episode's forwards use the weights of the last episode
        ("dev1", "1F0@0", 20, 120),
        ("dev1", "1B0@0", 120, 320),
        ("dev0", "0B0@0", 320, 340),
        ("dev1", "1U0@0", 320, 350),
        ("dev0", "0U0@0", 340, 343),
        ("dev0", "0B1@0", 343, 363),
        ("dev0", "0U1@0", 363, 366),
    ]


def test_a_message_per_chunk_crosses_the_link_and_one_gradient_per_chunk_of_the_reader_comes_back():
    # 1000-byte messages over 100 ns + 1 byte/ns
    result = simulate(clocked_profile(), build_hardware(2, latency_ns=100, bandwidth=1_000_000_000), "dni",
                      steps=1, baseline=False)
    sends = [(device, name) for device, name, _, _ in result.events() if "SEND" in name]
    assert sends == [("dev0->dev1", "0SEND_F0@0"), ("dev0->dev1", "0SEND_F1@0"), ("dev1->dev0", "1SEND_B0@0")]


def test_the_baseline_is_every_chunk_of_every_stage_in_turn_on_one_device():
    summary = simulate(clocked_profile(), build_hardware(2), "dni", steps=20).summary
    assert simulate_baseline(clocked_profile(), build_hardware(2), steps=1).summary["makespan_ns"] == 2 * 33 + 330
    # steady state: stage 1 (F B U: 330 ns) is busier than stage 0 (2 chunks of F S B U T: 76 ns)
    assert summary["steady_step_ns"] == 330 and summary["steady_speedup"] == pytest.approx(396 / 330)


def test_clocks_that_do_not_divide_and_methods_without_one_clock_are_refused():
    with pytest.raises(SimUsageError, match=r"stages\[0\].chunks is 3 and stages\[1\].chunks 2"):
        simulate(clocked_profile((3, 2)), build_hardware(2), "dni", steps=1)
    with pytest.raises(SimUsageError, match="method gpipe needs every stage on one clock"):
        simulate(clocked_profile(), build_hardware(2), "gpipe", steps=1)
    with pytest.raises(SimUsageError, match="stochastic updates"):
        simulate(clocked_profile(), build_hardware(2), "dni", steps=1, update_prob=0.5)


def test_a_profile_with_a_bad_clock_names_the_field(tmp_path):
    raw = clocked_profile().to_dict()
    assert CostProfile.from_dict(raw).stages[0].chunks == 2
    raw["stages"][1]["chunks"] = 0
    with pytest.raises(ProfileError, match=r"stages\[1\]\.chunks.*must be >= 1"):
        CostProfile.from_dict(raw)
