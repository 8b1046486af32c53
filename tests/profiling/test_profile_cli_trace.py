"""Chrome-trace export and the ``sglab profile`` command."""

import json

import pytest
from profile_helpers import tiny_config
from test_profile_graphtxt import GRAPH

from sglab.cli import main
from sglab.costprofile import CostProfile
from sglab.methods import get_method
from sglab.ops import Action
from sglab.profiling import OpTimer, profile_model
from sglab.trace import TRACE_COLUMNS, write_chrome_trace


def test_measured_trace_has_every_op_of_every_step_once_in_the_trace_schema(dataset, tmp_path):
    timer = OpTimer("cpu")
    profile_model(tiny_config("dni"), dataset=dataset, repeats=3, warmup=1, split_backward=False, timer=timer)
    trace = timer.trace("test cpu")
    assert list(trace.columns) == TRACE_COLUMNS and set(trace["source"]) == {"measured"}
    expected = {str(a) for a in get_method("dni").step_order(3)}
    for step, rows in trace.groupby("step"):
        names = [f"{s}{o}{m}" for s, o, m in zip(rows["stage"], rows["op"], rows["microbatch"])]
        assert sorted(names) == sorted(expected), step  # every op of the step, exactly once
    assert sorted(trace["step"].unique()) == [0, 1, 2]
    assert (trace["end_ns"] > trace["start_ns"]).all() and trace["start_ns"].is_monotonic_increasing
    durations = timer.durations()
    assert sum(map(len, durations.values())) == len(trace)


def test_chrome_trace_of_a_measured_run_opens_as_one_device_thread(dataset, tmp_path):
    timer = OpTimer("cpu")
    profile_model(tiny_config("dni"), dataset=dataset, repeats=2, warmup=1, split_backward=False, timer=timer)
    path = write_chrome_trace(tmp_path / "trace.json", timer.trace("test cpu"), "sglab profile")
    events = json.loads(path.read_text())["traceEvents"]
    ops = [e for e in events if e["ph"] == "X"]
    assert len(ops) == 2 * 13  # dni on 3 stages: 13 ops per step
    for event in ops:
        action = Action.parse(event["name"])  # the shared op names
        assert event["args"]["stage"] == action.stage and event["cat"] == action.op and event["tid"] == 0
        assert event["dur"] > 0 and event["ts"] >= 0 and event["args"]["source"] == "measured"
    names = {(e["name"], e["args"]["name"]) for e in events if e["ph"] == "M" and e["name"] != "thread_sort_index"}
    assert ("process_name", "sglab profile") in names and ("thread_name", "test cpu") in names


def test_cli_measures_writes_and_shows(tmp_path, capsys):
    out, trace = tmp_path / "p.json", tmp_path / "t.json"
    code = main(["profile", "--layers", "2", "--width", "16", "--synth-width", "16", "--batch-size", "8",
                 "--repeats", "2", "--warmup", "1", "--device", "cpu", "--out", str(out), "--trace", str(trace)])
    assert code == 0
    text = capsys.readouterr().out
    assert "fcn-2 / dni: microbenchmark" in text and "whole forward" in text
    profile = CostProfile.load(out)
    assert set(profile.stages[0].times_ns) == {"F", "S", "B", "I", "W", "U", "T"}
    assert json.loads(trace.read_text())["traceEvents"]
    assert main(["profile", "--show", str(out)]) == 0
    assert "F µs" in capsys.readouterr().out


def test_cli_imports_a_graph(tmp_path, capsys):
    graph = tmp_path / "graph.txt"
    graph.write_text(GRAPH)
    out = tmp_path / "g.json"
    assert main(["profile", "--from-graph", str(graph), "--stages", "2", "--batch-size", "32", "--out", str(out)]) == 0
    assert CostProfile.load(out).measurement.batch_size == 32


def test_cli_reports_errors_by_name(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema": "sglab.cost_profile", "version": 9}))
    assert main(["profile", "--show", str(bad)]) == 1
    assert "unknown version 9" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["profile", "--mode", "sideways"])
