"""The pure parts of benchmarks/sim_vs_real.py: the error table, the side-by-side Gantt figure, and the
simulator's contention model (processor sharing) that its prediction uses."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "sim"))

from simfixtures import build_hardware, build_profile  # noqa: E402

from analysis.sim_vs_real import error_table, markdown_table, rename_devices, save_side_by_side, window  # noqa: E402
from sglab.sim import HardwareError, hardware_from_dict, hardware_to_dict, simulate  # noqa: E402
from sglab.trace import make_trace, steady_step_ns  # noqa: E402


def test_error_table_takes_medians_spreads_errors_and_per_sample_speedups():
    measured = {"sequential": [20e6, 22e6, 21e6], "dni": [10e6, 12e6, 11e6], "gpipe": [40e6, 44e6, 42e6]}
    predicted = {"sequential": [21e6], "dni": [13.2e6, 12e6], "gpipe": [42e6]}
    table = error_table(measured, predicted, {"gpipe": 4}, "sequential", {"sequential": 1, "dni": 2, "gpipe": 2})
    row = table.set_index("method")
    assert row.loc["dni", "measured_step_ms"] == pytest.approx(11.0)
    assert row.loc["dni", "predicted_step_ms"] == pytest.approx(12.6)  # median of two
    assert row.loc["dni", "error_pct"] == pytest.approx(100 * 1.6 / 11)
    assert row.loc["dni", "spread_pct"] == pytest.approx(100 * 2 / 11)
    assert not row.loc["dni", "within_noise"] and row.loc["sequential", "within_noise"]
    assert row.loc["dni", "measured_speedup"] == pytest.approx(21 / 11)
    assert row.loc["gpipe", "measured_speedup"] == pytest.approx(21 / (42 / 4))  # a step of 4 batches
    assert row.loc["gpipe", "predicted_speedup"] == pytest.approx(2.0)
    assert row.loc["sequential", "predicted_speedup"] == 1.0
    text = markdown_table(table)
    assert "| dni | 2 | 1 | 12.60 [12.00–13.20] | 11.00 [10.00–12.00] | 18.2 % | +14.5 % * |" in text


def test_error_table_refuses_missing_methods_and_bad_times():
    with pytest.raises(ValueError, match="baseline"):
        error_table({"dni": [1.0]}, {"dni": [1.0]})
    with pytest.raises(ValueError, match="both"):
        error_table({"sequential": [1.0], "dni": [1.0]}, {"sequential": [1.0]})
    with pytest.raises(ValueError, match="finite"):
        error_table({"sequential": [np.nan]}, {"sequential": [1.0]})


def _trace(source, ops, link=True):
    """A tiny trace: (device, stage, op, step, start, end) rows."""
    rows = list(ops) + ([("rank0->rank1", 0, "SEND_F", 0, 5, 6)] if link else [])
    cols = list(zip(*rows))
    return make_trace(device=list(cols[0]), stage=list(cols[1]), op=list(cols[2]), step=list(cols[3]),
                      microbatch=[0] * len(rows), start_ns=list(cols[4]), end_ns=list(cols[5]),
                      kind=["link" if "->" in d else "device" for d in cols[0]], source=source)


def test_window_and_side_by_side_gantt(tmp_path):
    measured = _trace("measured", [("rank0", 0, "F", s, 100 + 10 * s, 105 + 10 * s) for s in range(4)]
                      + [("rank1", 1, "F", s, 106 + 10 * s, 109 + 10 * s) for s in range(4)])
    simulated = _trace("simulated", [("proc0", 0, "F", s, 10 * s, 4 + 10 * s) for s in range(4)]
                       + [("proc1", 1, "F", s, 5 + 10 * s, 9 + 10 * s) for s in range(4)])
    simulated = rename_devices(simulated, {"proc0": "rank0", "proc1": "rank1"})
    assert set(simulated["device"].astype(str)) == {"rank0", "rank1", "rank0->rank1"}
    part = window(measured, [1, 2])
    assert part["start_ns"].min() == 0 and set(part["step"]) == {1, 2} and set(part["kind"].astype(str)) == {"device"}
    files = save_side_by_side(measured, simulated, [1, 2], tmp_path / "gantt", title="tiny")
    assert [f.suffix for f in files] == [".png", ".pdf"] and all(f.stat().st_size > 0 for f in files)
    with pytest.raises(ValueError, match="no device rows"):
        window(measured, [7])


def test_contention_slows_ops_only_while_devices_compute_at_once():
    profile = build_profile(2, F=1000, B=2000, U=300, S=0, T=0)
    free, shared = build_hardware(2), build_hardware(2, contention={"slowdown": [1.0, 2.0]})
    dni = [steady_step_ns(simulate(profile, hw, "dni", steps=20, baseline=False).trace) for hw in (free, shared)]
    assert dni[1] == pytest.approx(2 * dni[0])  # both devices always busy: everything twice as slow
    base = [simulate(profile, hw, "bprop", steps=4, baseline=False) for hw in (free, shared)]
    # naive model parallelism: only U_1 (300 ns) overlaps B_0, and runs at half speed while it does
    assert base[1].summary["makespan_ns"] - base[0].summary["makespan_ns"] == 4 * 300
    seq = [simulate(profile, hw, "dni", steps=4).summary for hw in (free, shared)]
    assert seq[0]["speedup"] != seq[1]["speedup"]


def test_contention_processor_sharing_is_exact():
    # two ops start together: 1000 and 3000 ns of work at half speed while both run
    import simpy

    from sglab.sim.engine import _SharedCores

    env = simpy.Environment()
    cores = _SharedCores(env, lambda n: [1.0, 2.0][min(n, 2) - 1])
    ends = {}
    for name, work in (("a", 1000), ("b", 3000)):
        cores.hold(work, lambda _event, name=name: ends.__setitem__(name, env.now))
    env.run()
    assert ends == {"a": 2000, "b": 4000}


def test_contention_spec_round_trips_and_names_bad_fields():
    spec = {"name": "m", "devices": {"count": 2, "speed": 1.0}, "link": {"latency_ns": 0, "bandwidth_bytes_per_s": "inf"},
            "contention": {"slowdown": [1.0, 1.5]}}
    hw = hardware_from_dict(spec)
    assert hw.contention == (1.0, 1.5) and hw.contention_factor(3) == 1.5 and hw.contention_factor(1) == 1.0
    assert hardware_from_dict(hardware_to_dict(hw)) == hw
    with pytest.raises(HardwareError, match=r"contention.slowdown\[1\]"):
        hardware_from_dict({**spec, "contention": {"slowdown": [1.0, -2]}})
    with pytest.raises(HardwareError, match="contention"):
        hardware_from_dict({**spec, "contention": [1.0]})


def test_host_time_is_charged_to_the_first_stage_forward_of_every_batch():
    from sglab.sim import SimUsageError

    profile = build_profile(2, F=1000, B=2000, U=300, S=0, T=0)
    with pytest.raises(SimUsageError, match="host_ns_per_step"):
        simulate(profile, build_hardware(2), "bprop", steps=3, host_time=True)
    profile.totals["host_ns_per_step"] = 500
    plain = simulate(profile, build_hardware(2), "bprop", steps=3, baseline=False)
    hosted = simulate(profile, build_hardware(2), "bprop", steps=3, baseline=False, host_time=True)
    # naive model parallelism is sequential: each step gains exactly the host time, on F of stage 0
    assert hosted.summary["makespan_ns"] - plain.summary["makespan_ns"] == 3 * 500
    durations = (hosted.trace["end_ns"] - hosted.trace["start_ns"]).groupby([hosted.trace["stage"],
                                                                             hosted.trace["op"].astype(str)]).max()
    assert durations[(0, "F")] == 1500 and durations[(1, "F")] == 1000
    gpipe = [simulate(profile, build_hardware(2), "gpipe", steps=1, microbatches=4, baseline=False, host_time=h)
             for h in (False, True)]
    f0 = [g.trace[(g.trace["op"].astype(str) == "F") & (g.trace["stage"] == 0)] for g in gpipe]
    assert ((f0[1]["end_ns"] - f0[1]["start_ns"]) == 1500).all() and len(f0[1]) == 4  # every microbatch draws


def test_host_totals_measure_the_time_between_ops():
    import time

    from sglab.ops import Action
    from sglab.profiling.inrun import host_totals
    from sglab.profiling.timer import OpTimer

    timer = OpTimer("cpu")
    for step in range(6):
        timer.begin_step(step)
        with timer.op(Action(0, "F")):
            pass
        time.sleep(0.004)  # the host part: between the two ops
        with timer.op(Action(0, "B")):
            time.sleep(0.001)
    totals = host_totals(timer, skip_steps=1)
    assert 4_000_000 <= totals["host_ns_per_step"] <= totals["step_ns"] - 1_000_000
    assert totals["step_ns"] >= 5_000_000
    assert host_totals(OpTimer("cpu")) == {}


def test_a_sender_link_holds_the_producing_device_and_the_link_carries_the_rest():
    profile = build_profile(2, F=1000, B=2000, U=300, S=0, T=0, act=1000)
    link = {"latency_ns": 100, "bandwidth_bytes_per_s": 1_000_000_000}
    plain = build_hardware(2, latency_ns=100, bandwidth=1_000_000_000)
    sending = hardware_from_dict({**hardware_to_dict(plain),
                                  "link": {**link, "sender": {"latency_ns": 50, "bandwidth_bytes_per_s": 2_000_000_000}}})
    assert sending.link.sender_ns(1000) == 50 + 500 and sending.link.transfer_ns(1000) == 1100
    runs = [simulate(profile, hw, "bprop", steps=1, baseline=False).trace for hw in (plain, sending)]
    rows = [t.assign(d=t["end_ns"] - t["start_ns"], op=t["op"].astype(str)).set_index(["stage", "op"])["d"] for t in runs]
    # F0 holds its device 550 ns longer; its SEND_F takes 550 ns less, so F1 starts at the same time
    assert rows[1][(0, "F")] == 1550 and rows[1][(0, "SEND_F")] == 550 and rows[0][(0, "SEND_F")] == 1100
    f1 = [t[(t["op"].astype(str) == "F") & (t["stage"] == 1)]["start_ns"].item() for t in runs]
    assert f1[0] == f1[1] == 1000 + 1100
    assert hardware_from_dict(hardware_to_dict(sending)) == sending
    with pytest.raises(HardwareError, match=r"link.sender"):
        hardware_from_dict({**hardware_to_dict(sending), "link": {**link, "sender": 5}})
