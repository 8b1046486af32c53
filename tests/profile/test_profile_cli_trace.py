"""Chrome-trace export and the ``sglab profile`` command."""

import json

import pytest

from sglab.cli import main
from sglab.ops import Action
from sglab.profile import CostProfile, OpTimer, chrome_trace_events, profile_model, write_chrome_trace

from profile_helpers import tiny_config
from test_profile_graphtxt import GRAPH


def test_chrome_trace_of_a_measured_run(dataset, tmp_path):
    timer = OpTimer("cpu")
    profile_model(tiny_config("dni"), dataset=dataset, repeats=3, warmup=1, split_backward=False, timer=timer)
    path = write_chrome_trace(tmp_path / "trace.json", timer, "test cpu")
    trace = json.loads(path.read_text())
    ops = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert len(ops) == len(timer.records) == 3 * 13  # dni on 3 stages: 13 ops per step
    for event in ops:
        action = Action.parse(event["name"])  # the shared op names
        assert event["tid"] == action.stage == event["args"]["stage"] and event["cat"] == action.op
        assert event["dur"] > 0 and event["ts"] >= 0 and event["pid"] == 0
    assert {e["args"]["step"] for e in ops} == {0, 1, 2}
    names = {(e["name"], e["args"]["name"]) for e in trace["traceEvents"] if e["ph"] == "M" and e["name"] != "thread_sort_index"}
    assert ("process_name", "test cpu") in names and ("thread_name", "stage 2") in names


def test_chrome_trace_accepts_plain_rows():
    rows = [{"name": "1B0", "start_ns": 2000, "duration_ns": 500, "step": 4, "device": 1, "device_name": "gpu1"},
            {"name": "checkpoint", "stage": 0, "start_ns": 0, "duration_ns": 1000}]
    events = [e for e in chrome_trace_events(rows) if e["ph"] == "X"]
    assert events[0] == {"name": "1B0", "cat": "B", "ph": "X", "ts": 2.0, "dur": 0.5, "pid": 1, "tid": 1,
                         "args": {"step": 4, "stage": 1, "op": "B"}}
    assert events[1]["name"] == "checkpoint" and events[1]["cat"] == "other"


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
