"""`sglab demo` runs the whole chain on the embedded data and writes its report."""

import json
import math
import sys
from pathlib import Path

import pandas as pd
import pytest

from sglab.cli import main
from sglab.config import ConfigError
from sglab.demo import DemoConfig, _frontier_section, run_demo
from sglab.demo.real_run import demo_real_run, render_section, summary_line
from sglab.demo.simulation import FRONTIER_BANDWIDTHS, FRONTIER_SYNTH_COSTS, demo_frontier
from sglab.dist import RankFailed
from sglab.sim.sweep import locked_methods

sys.path.insert(0, str(Path(__file__).parent / "sim"))

from simfixtures import build_profile  # noqa: E402


@pytest.mark.slow
def test_demo_writes_table_figures_profile_simulation_and_report(tmp_path):
    report = run_demo(DemoConfig(out=str(tmp_path), steps=12, batch_size=32, real_steps=10, chain_steps=8,
                                 progress=False))
    assert {row["method"] for row in report["training"]["table"]} == {"bprop", "dni", "cdni"}
    for name in ["comparison.md", "figures/learning_curves.png", "figures/learning_curves.pdf", "profile.json",
                 "simulation/sim_summary.csv", "report.md", "demo.json"]:
        assert (tmp_path / name).is_file(), name
    table = pd.read_csv(tmp_path / "simulation" / "sim_summary.csv")
    assert set(table["method"]) == set(report["simulation"]["speedups"]) and "dni" in set(table["method"])
    assert table["speedup"].to_numpy() == pytest.approx((table["baseline_makespan_ns"] / table["makespan_ns"]).to_numpy())
    text = (tmp_path / "report.md").read_text()
    assert "Does DNI learn like backprop?" in text and "synth_over_stage" in text
    assert "How faithful are the synthetic gradients?" in text and (tmp_path / "figures" / "fidelity.png").is_file()
    fidelity = pd.read_csv(tmp_path / "fidelity.csv")
    assert set(fidelity["method"]) == {"dni", "cdni"} and set(fidelity["interface"]) == {0, 1}
    assert json.loads((tmp_path / "demo.json").read_text())["training"]["table"]
    check_frontier_section(tmp_path, text)
    check_real_run_section(tmp_path, text)
    assert "## 6. Networks on their own clocks" in text and "chunks_per_episode" in text


def test_demo_rnn_chain_profiles_each_network_on_its_clock_and_simulates_it(tmp_path):
    from sglab.costprofile import CostProfile
    from sglab.demo.rnn_chain import demo_rnn_chain, render_section

    section = demo_rnn_chain(8, 0, tmp_path)
    profile = CostProfile.load(tmp_path / "rnn_chain_profile.json")
    assert [s.chunks for s in profile.stages] == [n["chunks_per_episode"] for n in section["networks"]] == [6, 3, 3]
    assert [row["method"] for row in section["simulation"]] == ["cdni", "bprop"]
    assert all(row["steady_speedup"] > 0 for row in section["simulation"])
    assert "one network per node, each on its own clock" in render_section(section)


def check_frontier_section(out, text):
    """Section 4's frontier: DNI against the best locked schedule on the demo's own profile, with its figure."""
    section = text.split("### Where DNI wins against the best locked schedule")[1].split("## 5.")[0]
    assert "![frontier](simulation/frontier.png)" in section and "cluster-10gbe, K = 3" in section
    for name in ("frontier.csv", "frontier.png", "frontier.pdf"):
        assert (out / "simulation" / name).is_file(), name
    front = pd.read_csv(out / "simulation" / "frontier.csv")
    assert len(front) == len(FRONTIER_SYNTH_COSTS) * len(FRONTIER_BANDWIDTHS) and set(front["method"]) == {"dni"}
    assert set(front["best_locked"]) <= set(locked_methods()) and (front["best_locked_devices"] <= 3).all()
    assert front["ratio"].tolist() == pytest.approx(
        (front["steady_samples_per_s"] / front["best_locked_steady_samples_per_s"]).tolist())


def test_demo_frontier_and_its_report_section(tmp_path):
    profile = build_profile(3, F=200_000, B=400_000, U=50_000, S=30_000, T=60_000, act=65536)
    frontier = demo_frontier(profile, tmp_path, steps=6)
    assert [(r["bandwidth_GB_per_s"], r["synth_cost_ratio"]) for r in frontier["table"]] == [
        ("0.1", "0"), ("0.1", "0.5"), ("0.1", "1"), ("0.1", "measured"),
        ("preset", "0"), ("preset", "0.5"), ("preset", "1"), ("preset", "measured")]
    assert frontier["measured_synth_cost"] == pytest.approx(90_000 / 600_000)
    assert frontier["locked"] == locked_methods() and (tmp_path / "frontier.png").is_file()
    # schedules this profile cannot run (an I/W split it did not measure, 2 stages per rank on 3) are notes
    assert all("failed sweep rows ignored" in note for note in frontier["notes"]), frontier["notes"]
    text = _frontier_section(frontier)
    assert "(r = 0.15 here)" in text and "![frontier](simulation/frontier.png)" in text
    assert all(f"- note: {note}" in text for note in frontier["notes"])
    assert "- cluster-10gbe, K = 3, 0.1 GB/s: dni " in text and "- cluster-10gbe, K = 3, the spec's link: dni " in text


def check_real_run_section(out, text):
    """Section 5: a real 2-process DNI run's measured step beside its prediction, with figure and traces."""
    real = json.loads((out / "demo.json").read_text())["real_run"]
    assert real["status"] == "ok", real.get("error")
    dni = real["runs"]["dni"]
    assert dni["processes"] == 2 and real["runs"]["sequential"]["processes"] == 1
    for run in real["runs"].values():
        for key in ("predicted_step_ms", "measured_step_ms"):
            assert math.isfinite(run[key]) and run[key] > 0, (key, run)
        assert run["error_pct"] == pytest.approx(100 * (run["predicted_step_ms"] - run["measured_step_ms"])
                                                 / run["measured_step_ms"])
    assert real["machine"]["cpu_model"] and math.isfinite(real["speedup"]["measured"])
    section = text.split("## 5. Real 2-process DNI run against its prediction")[1]
    assert f"{dni['predicted_step_ms']:.2f}" in section and f"{dni['measured_step_ms']:.2f}" in section
    assert real["machine"]["cpu_model"] in section and "one short run on a shared CPU" in section
    assert "real_run/gantt-dni.png" in section
    for name in ["gantt-dni.png", "gantt-dni.pdf", "machine.yaml", "machine.probe.json", "profile-dni.json",
                 "traces/dni-measured.csv", "traces/dni-simulated.csv", "runs/dni/trace.csv"]:
        assert (out / "real_run" / name).is_file(), name
    measured = pd.read_csv(out / "real_run" / "traces" / "dni-measured.csv")
    simulated = pd.read_csv(out / "real_run" / "traces" / "dni-simulated.csv")
    assert {"rank0", "rank1"} <= set(measured["device"]) and {"rank0", "rank1"} <= set(simulated["device"])


def test_real_run_off_is_skipped_and_says_so(tmp_path):
    section = demo_real_run(DemoConfig(out=str(tmp_path), real_run=False), None, tmp_path)
    assert section["status"] == "skipped" and not (tmp_path / "real_run").exists()
    assert "Skipped" in render_section(section) and "--no-real-run" in render_section(section)
    assert summary_line(section).endswith("skipped")


def test_no_real_run_flag_turns_the_stage_off(tmp_path, monkeypatch, capsys):
    seen = []

    def fake_run_demo(config):
        seen.append(config)
        return {"wall_time_s": 0.0, "real_run": demo_real_run(config, None, tmp_path)}

    monkeypatch.setattr("sglab.demo.run_demo", fake_run_demo)
    assert main(["demo", "--out", str(tmp_path), "--no-real-run", "--no-progress"]) == 0
    assert seen[0].real_run is False and "real 2-process DNI run: skipped" in capsys.readouterr().out
    assert DemoConfig().real_run is True


@pytest.mark.parametrize("field, value", [("real_steps", 7), ("real_steps", 1.5), ("real_run", "yes")])
def test_bad_real_run_settings_are_named(field, value):
    with pytest.raises(ConfigError, match=field):
        DemoConfig(**{field: value})


def test_a_failed_real_run_is_recorded_and_warned_about_not_raised(tmp_path, monkeypatch):
    def no_processes(*args, **kwargs):
        raise RankFailed(0, "before its first op (while starting up)", "exited with code 1 without a result")

    monkeypatch.setattr("sglab.dist.probe_hardware", no_processes)
    config = DemoConfig(out=str(tmp_path), batch_size=32, real_steps=8, progress=False)
    with pytest.warns(RuntimeWarning, match="real 2-process run failed while probing this machine"):
        section = demo_real_run(config, None, tmp_path)
    assert section["status"] == "failed" and section["failed_while"] == "probing this machine with two processes"
    assert section["error"].startswith("RankFailed: rank 0 failed before its first op") and "__main__" in section["error"]
    assert "no_processes" in section["traceback"] and (tmp_path / "real_run" / "profile-dni.json").is_file()
    text = render_section(section)
    assert "did not complete" in text and "RankFailed" in text and "--no-real-run" in text
    assert "FAILED while probing" in summary_line(section)
