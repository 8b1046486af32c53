"""Summaries (the one trace summary for measured and simulated runs), memory, staleness, costs and files."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from sglab.costprofile import ProfileError
from sglab.partition import regroup
from sglab.sim import SimError, hardware_from_dict, simulate
from sglab.trace import TRACE_COLUMNS, chrome_trace, make_trace, summarize_trace


def test_trace_has_the_one_schema(profile_factory, hardware_factory):
    result = simulate(profile_factory(2), hardware_factory(2, latency_ns=10, bandwidth=10**9), "gpipe", steps=2,
                      microbatches=2, baseline=False)
    assert list(result.trace.columns) == TRACE_COLUMNS
    assert set(result.trace["kind"].astype(str)) == {"device", "link"}
    assert set(result.trace["source"].astype(str)) == {"simulated"}
    assert set(result.trace["microbatch"]) == {0, 1}
    assert set(result.devices["device"]) == {"dev0", "dev1", "dev0->dev1", "dev1->dev0"}


def test_a_measured_trace_is_summarised_like_a_simulated_one(profile_factory, hardware_factory):
    # by hand: cpu0 busy 0-30 and 40-100, cpu1 busy 10-60, a link 30-40: makespan 100, bubble 1 - 140/200
    measured = make_trace(stage=[0, 0, 1, 0], op=["F", "B", "F", "SEND_F"], step=[0, 0, 0, 0], microbatch=[0] * 4,
                          device=["cpu0", "cpu0", "cpu1", "cpu0->cpu1"], start_ns=[0, 40, 10, 30],
                          end_ns=[30, 100, 60, 40], kind=["device", "device", "device", "link"], source="measured")
    summary = summarize_trace(measured)
    assert summary.makespan_ns == 100 and summary.bubble_fraction == pytest.approx(0.3)
    assert dict(zip(summary.devices["device"], summary.devices["busy_ns"])) == {"cpu0": 90, "cpu1": 50,
                                                                                "cpu0->cpu1": 10}
    # a simulated run's summary is that same function's reading of its trace
    result = simulate(profile_factory(3), hardware_factory(3, latency_ns=300, bandwidth=10**9), "dni", steps=8,
                      baseline=False)
    read = summarize_trace(result.trace)
    assert (result.summary["makespan_ns"], result.summary["bubble_fraction"], result.summary["steady_step_ns"]) == \
        (read.makespan_ns, read.bubble_fraction, read.steady_step_ns)
    busy = result.devices.set_index("device")["busy_ns"]
    assert all(busy[d] == b for d, b in zip(read.devices["device"], read.devices["busy_ns"]))
    # ... and relabelled as measured, it reads the same
    columns = {c: result.trace[c] for c in TRACE_COLUMNS if c != "source"}
    relabelled = summarize_trace(make_trace(**columns, source="measured"))
    assert relabelled.as_dict() == read.as_dict()


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
    bprop = simulate(profile, small, "bprop", steps=1, param_copies=2, baseline=False)
    assert bprop.summary["fits"] and bprop.summary["peak_memory_bytes"] == 3_000_000


def test_dni_keeps_the_synthesizer_input_until_its_target_arrives(profile_factory, hardware_factory):
    profile = profile_factory(2, act=1000, S=0, T=0)
    slow_link = hardware_factory(2, latency_ns=100_000, bandwidth="inf")
    result = simulate(profile, slow_link, "dni", steps=6, baseline=False)
    dev0 = result.devices.set_index("device").loc["dev0"]
    assert dev0["peak_activation_bytes"] > 1000  # h_0 of several steps waits for its gradient
    assert result.summary["max_synthesizer_lag"] >= 1


def test_an_all_zero_profile_has_no_speedup_rather_than_zero(profile_factory, hardware_factory):
    profile = profile_factory(3, F=0, B=0, U=0, S=0, T=0, act=0)
    summary = simulate(profile, hardware_factory(3), "dni", steps=4).summary
    assert summary["makespan_ns"] == summary["baseline_makespan_ns"] == 0
    assert summary["speedup"] is None and summary["steady_speedup"] is None
    assert summary["throughput_samples_per_s"] is None


def test_regroup_merges_layers(profile_factory):
    times = [{"F": 10, "B": 20, "U": 1, "S": 5, "T": 7}, {"F": 10, "B": 20, "U": 1, "S": 6, "T": 8},
             {"F": 100, "B": 200, "U": 10, "S": 9, "T": 9}]
    profile = profile_factory(3, times=times)
    two = regroup(profile, 2)  # cost-balanced: the heavy last layer alone
    assert [s.name for s in two.stages] == ["fc0+fc1", "fc2"]
    assert two.stages[0].times_ns == {"F": 20, "B": 40, "U": 2, "S": 6, "T": 8}
    assert simulate(two, "cluster-10gbe", "dni", steps=2).summary["num_stages"] == 2
    with pytest.raises(ProfileError, match=r"cannot split a 3-stage profile into 4 stages"):
        regroup(profile, 4)


def test_chrome_trace_and_saved_files(profile_factory, hardware_factory, tmp_path):
    result = simulate(profile_factory(2), hardware_factory(2, latency_ns=5, bandwidth=10**9), "1f1b", steps=1,
                      microbatches=2)
    paths = result.save(tmp_path)
    saved = json.loads(paths["chrome_trace"].read_text())
    expected = chrome_trace(result.trace, "1f1b on test2 (simulated)")
    assert saved["traceEvents"] == json.loads(json.dumps(expected["traceEvents"]))
    complete = [e for e in saved["traceEvents"] if e["ph"] == "X"]
    first = min(complete, key=lambda e: (e["ts"], e["tid"]))
    assert first["name"] == "0F0" and first["ts"] == 0 and first["dur"] == 1.0  # 1000 ns = 1 µs
    assert first["args"]["source"] == "simulated"
    assert saved["otherData"]["summary"]["makespan_ns"] == result.summary["makespan_ns"]
    summary = json.loads(paths["summary"].read_text())
    assert summary["summary"]["speedup"] == result.summary["speedup"]
    assert summary["config"]["hardware"]["name"] == "test2" and summary["config"]["method"]["name"] == "1f1b"
    assert pd.read_csv(paths["trace"]).shape == result.trace.shape


def test_demo_simulation_writes_its_files(profile_factory, tmp_path):
    from sglab.demo.simulation import demo_simulation
    from sglab.methods import method_names

    out = demo_simulation(profile_factory(3, S=None, T=None), tmp_path, steps=6)
    assert out["num_devices"] == 3 and out["baseline"].startswith("bprop on node0")
    assert {"bprop", "gpipe", "1f1b", "ddg"} <= set(out["speedups"]) and "sequential" not in out["speedups"]
    assert "needs op S" in out["skipped"]["dni"]  # no synthesizer costs measured, none invented
    for name in ("sim_summary.csv", "sim_gantt.png", "sim_gantt.pdf", "sim_trace.json", "sim_speedups.png"):
        assert (tmp_path / name).is_file(), name
    full = demo_simulation(profile_factory(4), tmp_path / "full", steps=6)
    assert not full["skipped"] and set(full["speedups"]) == set(method_names("sim"))
    assert {row["method"] for row in full["summary"]} == set(full["speedups"])
    pids = {e["pid"] for e in json.loads((tmp_path / "full" / "sim_trace.json").read_text())["traceEvents"]}
    assert pids == set(range(len(method_names("sim"))))


def test_gantt_figure(profile_factory, hardware_factory, tmp_path):
    from analysis.sim_figures import gantt, save_figure

    result = simulate(profile_factory(3), hardware_factory(3, latency_ns=300, bandwidth=10**9), "dni", steps=3)
    files = save_figure(gantt(result.trace, max_steps=2, title="dni"), tmp_path / "g")
    assert [f.suffix for f in files] == [".png", ".pdf"] and all(f.stat().st_size > 1000 for f in files)
