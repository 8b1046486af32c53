"""The one trace schema: a measured run and its simulation are read by the same summary."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from sglab.methods import METHODS
from sglab.profiling.inrun import profile_from_timer
from sglab.profiling.timer import OpTimer
from sglab.sim import simulate_baseline
from sglab.trace import TRACE_COLUMNS, TraceError, chrome_trace, make_trace, read_trace, summarize_trace
from sglab.training import ClassifyConfig
from sglab.training.build import build_chain

STEPS = 6


@pytest.fixture(scope="module")
def measured_and_simulated(patterns):
    config = ClassifyConfig(method="bprop", layers=3, width=16, batch_size=32, device="cpu")
    runner = build_chain(config, patterns.input_shape, 10)
    timer = OpTimer("cpu")
    x, y = torch.from_numpy(patterns.x_train[:32]), torch.from_numpy(patterns.y_train[:32])
    for _ in range(STEPS):
        runner.step(x, y, timer)
    profile = profile_from_timer(timer, config, patterns.input_shape, 10, runner=runner)
    simulated = simulate_baseline(profile, "cluster-10gbe", steps=STEPS).trace
    return timer.trace("cpu"), simulated, profile


def test_a_measured_and_a_simulated_run_of_the_same_steps_are_summarised_alike(measured_and_simulated):
    measured, simulated, profile = measured_and_simulated
    assert list(measured.columns) == list(simulated.columns) == TRACE_COLUMNS
    a, b = summarize_trace(measured), summarize_trace(simulated)
    ops = ["stage", "op", "count"]
    pd.testing.assert_frame_equal(a.ops[ops].sort_values(ops).reset_index(drop=True),
                                  b.ops[ops].sort_values(ops).reset_index(drop=True))
    assert set(a.ops["count"]) == {STEPS}  # every op of every step, once
    expected = {str(x) for x in METHODS["bprop"].step_order(3)}
    assert {f"{s}{o}0" for s, o in zip(a.ops["stage"], a.ops["op"])} == expected
    # one device each: the busy time is the sum of the ops, and the simulated ops cost the profile's medians
    assert a.devices["busy_ns"].sum() == (measured["end_ns"] - measured["start_ns"]).sum()
    per_step = sum(stage.times_ns[op] for stage in profile.stages for op in ("F", "B", "U"))
    assert b.makespan_ns == STEPS * per_step and b.bubble_fraction == 0.0
    assert 0 < a.makespan_ns and 0 <= a.bubble_fraction < 1


def test_chrome_export_of_either_has_one_event_per_row(measured_and_simulated, tmp_path):
    measured, simulated, _ = measured_and_simulated
    for trace in (measured, simulated):
        events = [e for e in chrome_trace(trace)["traceEvents"] if e["ph"] == "X"]
        assert len(events) == len(trace)
        assert json.dumps(events)  # plain JSON
    path = tmp_path / "trace.csv"
    measured.to_csv(path, index=False)
    assert read_trace(path)["op"].astype(str).tolist() == measured["op"].astype(str).tolist()


def test_malformed_traces_name_the_column():
    good = dict(stage=[0], op=["F"], step=[0], microbatch=[0], device=["cpu"], start_ns=[0], end_ns=[5], kind="device")
    make_trace(**good, source="measured")
    with pytest.raises(TraceError, match="'source' holds \\['guessed'\\]"):
        make_trace(**good, source="guessed")
    with pytest.raises(TraceError, match="row 0 ends before it starts"):
        make_trace(**{**good, "end_ns": [-1]}, source="measured")
    frame = make_trace(**good, source="measured").drop(columns=["kind"])
    with pytest.raises(TraceError, match="lacks column\\(s\\) kind"):
        summarize_trace(frame)
    with pytest.raises(TraceError, match="must hold integers"):
        summarize_trace(make_trace(**good, source="measured").assign(start_ns=np.array([0.5])))


def test_categorical_columns_pass_through_and_are_checked():
    rows = dict(stage=[0, 0], op=pd.Categorical(["F", "SEND_F"]), step=[0, 0], microbatch=[0, 0],
                device=pd.Categorical(["cpu", "cpu->gpu"]), start_ns=[0, 5], end_ns=[5, 9])
    trace = make_trace(**rows, kind=pd.Categorical.from_codes([0, 1], categories=["device", "link"]), source="simulated")
    assert trace["kind"].astype(str).tolist() == ["device", "link"]
    assert list(trace["kind"].cat.categories) == ["device", "link"]
    assert trace["source"].astype(str).tolist() == ["simulated", "simulated"]
    assert list(trace["source"].cat.categories) == ["measured", "simulated"]
    assert trace["op"].astype(str).tolist() == ["F", "SEND_F"]
    with pytest.raises(TraceError, match=r"'kind' holds \['wire'\]; allowed: device, link"):
        make_trace(**rows, kind=pd.Categorical(["device", "wire"]), source="simulated")
