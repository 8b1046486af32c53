"""Summaries, memory, staleness, synthesizer costs, regrouping and the files a result writes."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from sglab.sim import SimError, chrome_trace, demo_simulation, hardware_from_dict, regroup, simulate


def test_trace_is_tidy(profile_factory, hardware_factory):
    result = simulate(profile_factory(2), hardware_factory(2, latency_ns=10, bandwidth=10**9), "gpipe", steps=2,
                      microbatches=2, baseline=False)
    assert list(result.trace.columns) == ["stage", "op", "step", "microbatch", "device", "start_ns", "end_ns", "kind"]
    assert set(result.trace["kind"].astype(str)) == {"device", "link"}
    assert set(result.trace["microbatch"]) == {0, 1}
    assert set(result.devices["device"]) == {"dev0", "dev1", "dev0->dev1", "dev1->dev0"}


def test_missing_synthesizer_costs_are_an_error_unless_a_ratio_is_given(profile_factory, hardware_factory):
    profile = profile_factory(3, F=1000, S=None, T=None)
    hw = hardware_factory(3)
    with pytest.raises(SimError, match=r"method 'dni' needs op S \(synthetic-gradient forward\) of stage 0.*"
                                       r"measured: F, B, U.*synth_cost_ratio"):
        simulate(profile, hw, "dni", steps=2)
    with pytest.raises(SimError, match="needs op S"):
        simulate(profile, hw, "dgl", steps=2)
    trace = simulate(profile, hw, "dni", steps=2, synth_cost_ratio=0.25, baseline=False).trace
    durations = trace[trace["kind"] == "device"].groupby(trace["op"].astype(str))["end_ns"].apply(
        lambda e: set(e - trace.loc[e.index, "start_ns"]))
    assert durations["S"] == {250} and durations["T"] == {500}  # S = r·F, T = 2r·F
    simulate(profile, hw, "gpipe", steps=2)  # pipelines need no synthesizer


def test_ratio_overrides_measured_costs_only_when_asked(profile_factory, hardware_factory):
    profile = profile_factory(2, F=1000, S=123)
    keep = simulate(profile, hardware_factory(2), "dni", steps=1, synth_cost_ratio=0.5, baseline=False).trace
    override = simulate(profile, hardware_factory(2), "dni", steps=1, synth_cost_ratio=0.5, override_synth=True,
                        baseline=False).trace
    s = lambda t: int((t["end_ns"] - t["start_ns"])[t["op"].astype(str) == "S"].iloc[0])  # noqa: E731
    assert (s(keep), s(override)) == (123, 500)


def test_memory_peaks_and_fit(profile_factory):
    profile = profile_factory(2, act=1_000_000, params=1_000_000)
    small = hardware_from_dict({"devices": {"count": 2, "speed": 1, "memory_bytes": 5_000_000}, "topology": "bus",
                                "link": {"latency_ns": 0, "bandwidth_bytes_per_s": "inf"}})
    gpipe = simulate(profile, small, "gpipe", steps=1, microbatches=3, baseline=False)
    row = gpipe.devices.set_index("device").loc["dev0"]
    assert row["peak_activation_bytes"] == 3_000_000  # three microbatches stashed at once
    assert row["resident_bytes"] == 4_000_000  # weights, gradients, two Adam moments
    assert not row["fits"] and not gpipe.summary["fits"]
    naive = simulate(profile, small, "naive", steps=1, param_copies=2, baseline=False)
    assert naive.summary["fits"] and naive.summary["peak_memory_bytes"] == 3_000_000


def test_dni_keeps_the_synthesizer_input_until_its_target_arrives(profile_factory, hardware_factory):
    profile = profile_factory(2, act=1000, S=0, T=0)
    slow_link = hardware_factory(2, latency_ns=100_000, bandwidth="inf")
    result = simulate(profile, slow_link, "dni", steps=6, baseline=False)
    dev0 = result.devices.set_index("device").loc["dev0"]
    assert dev0["peak_activation_bytes"] > 1000  # h_0 of several steps waits for its gradient
    assert result.summary["max_synthesizer_lag"] >= 1


def test_regroup_merges_layers(profile_factory):
    times = [{"F": 10, "B": 20, "U": 1, "S": 5, "T": 7}, {"F": 10, "B": 20, "U": 1, "S": 6, "T": 8},
             {"F": 100, "B": 200, "U": 10, "S": 9, "T": 9}]
    profile = profile_factory(3, times=times)
    two = regroup(profile, 2)  # cost-balanced: the heavy last layer alone
    assert [s.name for s in two.stages] == ["fc0+fc1", "fc2"]
    assert two.stages[0].times_ns == {"F": 20, "B": 40, "U": 2, "S": 6, "T": 8}
    assert two.stages[0].parameter_bytes == 2 * profile.stages[0].parameter_bytes
    assert [s.name for s in regroup(profile, 2, balance="count").stages] == ["fc0", "fc1+fc2"]
    assert regroup(profile, 3) is profile
    with pytest.raises(SimError, match=r"cannot split a 3-stage profile into 4 stages"):
        regroup(profile, 4)


def test_chrome_trace_and_saved_files(profile_factory, hardware_factory, tmp_path):
    result = simulate(profile_factory(2), hardware_factory(2, latency_ns=5, bandwidth=10**9), "1f1b", steps=1,
                      microbatches=2)
    trace = chrome_trace(result.trace)
    complete = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert len(complete) == len(result.trace)
    first = min(complete, key=lambda e: (e["ts"], e["tid"]))
    assert first["name"] == "0F0" and first["ts"] == 0 and first["dur"] == 1.0  # 1000 ns = 1 µs
    threads = {e["args"]["name"] for e in trace["traceEvents"] if e["name"] == "thread_name"}
    assert threads == set(result.trace["device"].astype(str))
    paths = result.save(tmp_path)
    assert json.loads(paths["chrome_trace"].read_text()) == json.loads(json.dumps(trace))
    saved = json.loads(paths["summary"].read_text())
    assert saved["summary"]["makespan_ns"] == result.summary["makespan_ns"]
    assert saved["config"]["hardware"]["name"] == "test2"
    assert pd.read_csv(paths["trace"]).shape == result.trace.shape


def test_demo_simulation_writes_its_files(profile_factory, tmp_path):
    out = demo_simulation(profile_factory(3, S=None, T=None), tmp_path, steps=6)
    assert out["num_devices"] == 3 and out["speedups"]["sequential"] == 1.0
    assert {"gpipe", "1f1b", "ddg"} <= set(out["speedups"])
    assert "needs op S" in out["skipped"]["dni"]  # no synthesizer costs measured, none invented
    for name in ("sim_summary.csv", "sim_gantt.png", "sim_gantt.pdf", "sim_trace.json", "sim_speedups.png"):
        assert (tmp_path / name).is_file(), name
    full = demo_simulation(profile_factory(3), tmp_path / "full", steps=6)
    assert not full["skipped"] and full["speedups"]["dni"] > 0
    assert {row["method"] for row in full["summary"]} == set(full["speedups"])


def test_gantt_figure(profile_factory, hardware_factory, tmp_path):
    from analysis.sim_figures import gantt, save_figure

    result = simulate(profile_factory(3), hardware_factory(3, latency_ns=300, bandwidth=10**9), "dni", steps=3)
    files = save_figure(gantt(result.trace, max_steps=2, title="dni"), tmp_path / "g")
    assert [f.suffix for f in files] == [".png", ".pdf"] and all(f.stat().st_size > 1000 for f in files)
