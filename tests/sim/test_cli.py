"""``sglab simulate`` and ``sglab sweep`` (process pool, thread pool, dask), and their one-line errors."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest

from sglab.cli import main
from sglab.sim.sweep import SweepGrid, run_sweep, write_sweep


@pytest.fixture
def profile_path(profile_factory, tmp_path):
    return profile_factory(4, F=200_000, B=400_000, U=50_000, S=30_000, T=60_000, act=65536).save(tmp_path / "p.json")


def fails(capsys, argv: list[str], code: int, message: str) -> None:
    """``sglab ARGV`` exits ``code`` with ``message`` on one stderr line (no traceback)."""
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith(f"sglab {argv[0]}: error: "), err
    assert message in err, err


def test_simulate_prints_a_summary_with_the_baseline_in_the_header(profile_path, capsys):
    assert main(["simulate", "--profile", str(profile_path), "--hardware", "cluster-ib-hdr", "--method", "dni,gpipe",
                 "--steps", "6"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "on cluster-ib-hdr" in lines[0] and "speedup over bprop on node0 (every stage on one device)" in lines[0]
    assert "speedup" in lines[1]
    assert [line.split()[0] for line in lines[2:4]] == ["dni", "gpipe"]


def test_method_all_is_every_method_the_simulator_runs(profile_path, capsys):
    from sglab.methods import method_names

    assert main(["simulate", "--profile", str(profile_path), "--steps", "2", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["method"] for r in rows] == method_names("sim") and "sequential" not in method_names("sim")


def test_simulate_writes_files_and_json(profile_path, tmp_path, capsys):
    out_dir = tmp_path / "sim"
    assert main(["simulate", "--profile", str(profile_path), "--method", "1f1b", "--steps", "3",
                 "--out", str(out_dir), "--json"]) == 0
    assert '"method": "1f1b"' in capsys.readouterr().out
    for name in ("summary.csv", "1f1b/trace.csv", "1f1b/trace.json", "1f1b/gantt.png", "1f1b/summary.json"):
        assert (out_dir / name).is_file(), name


def test_schedule_prints_each_ranks_actions_with_communication(capsys):
    assert main(["simulate", "--method", "1f1b", "--schedule", "--stages", "2", "--microbatches", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "1f1b: 2 stages on 2 ranks of cluster-10gbe, 2 microbatches per step"
    assert out[1] == "rank 0 (node0): 0F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 0RECV_B1 0B1 0U0"
    assert out[2] == "rank 1 (node1): 1RECV_F0 1F0 1RECV_F1 1B0 1SEND_B0 1F1 1B1 1SEND_B1 1U0"  # as torch orders it


def test_simulate_errors_are_one_line(profile_path, tmp_path, capsys):
    p = str(profile_path)
    bad = tmp_path / "hw.json"
    bad.write_text('{"devices": [{"name": "a", "speed": 0}], "topology": "bus"}')
    fails(capsys, ["simulate", "--profile", p, "--hardware", str(bad)], 1, "devices[0].speed must be > 0, got 0")
    fails(capsys, ["simulate", "--profile", p, "--method", "magic"], 2, "unknown method 'magic'")
    fails(capsys, ["simulate", "--profile", p, "--method", ","], 2, "names no method")
    fails(capsys, ["simulate", "--profile", p, "--bandwidth", "0"], 2, "--bandwidth must be a number > 0, got 0")
    fails(capsys, ["simulate", "--profile", p, "--bandwidth", "-3"], 2, "--bandwidth must be a number > 0, got -3")
    fails(capsys, ["simulate", "--profile", p, "--reference-flops", "0"], 2, "--reference-flops must be a number > 0")
    fails(capsys, ["simulate", "--profile", p, "--stages", "0"], 2, "--stages must be >= 1, got 0")
    fails(capsys, ["simulate", "--profile", p, "--stages", "9"], 2, "--stages must be 1..4")
    fails(capsys, ["simulate", "--profile", p, "--steps", "0"], 2, "'steps' must be >= 1, got 0")
    fails(capsys, ["simulate", "--profile", p, "--method", "bprop", "--unlock-prob", "0.5"], 2,
          "--unlock-prob applies to the methods that have synthetic gradients")
    fails(capsys, ["simulate", "--method", "dni", "--schedule", "--stages", "3"], 2, "needs one pipeline method")
    fails(capsys, ["simulate", "--method", "gpipe", "--schedule"], 2, "give --profile or --stages")
    fails(capsys, ["simulate"], 2, "--profile is required")
    assert main(["simulate", "--list"]) == 0
    listed = capsys.readouterr().out
    assert "cluster-10gbe" in listed and "  ddg " in listed and "naive=bprop" in listed


def test_a_profile_whose_stage_count_disagrees_is_one_line(profile_path, tmp_path, capsys):
    data = json.loads(profile_path.read_text())
    data["model"]["num_stages"] = 7
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(data))
    fails(capsys, ["simulate", "--profile", str(wrong)], 1, "model.num_stages")


def test_an_all_zero_profile_prints_an_undefined_speedup(profile_factory, tmp_path, capsys):
    path = profile_factory(3, F=0, B=0, U=0, S=0, T=0, act=0).save(tmp_path / "zero.json")
    assert main(["simulate", "--profile", str(path), "--method", "dni,gpipe", "--steps", "4"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[2:4]]
    header = ["method", "makespan_ms", "samples/s", "speedup"]
    assert [dict(zip(header, row))["speedup"] for row in rows] == ["NaN", "NaN"]


def test_sweep_errors_are_one_line(profile_path, profile_factory, tmp_path, capsys):
    p, out = str(profile_path), str(tmp_path / "sweep")
    fails(capsys, ["sweep", "--profile", p, "--out", out, "--workers", "0"], 2, "--workers must be >= 1, got 0")
    fails(capsys, ["sweep", "--profile", p, "--out", out, "--methods", " , "], 2, "names no method")
    fails(capsys, ["sweep", "--profile", p, "--out", out, "--bandwidth", "1,0"], 2, "every value must be > 0, got 0")
    fails(capsys, ["sweep", "--profile", p, "--out", out, "--hardware", ","], 1, "the grid is empty")
    fails(capsys, ["sweep", "--profile", p, "--out", out, "--methods", "dni", "--scheduler-address",
                   "tcp://127.0.0.1:9", "--connect-timeout", "0.5", "--no-progress"], 1,
          "cannot reach the dask scheduler at tcp://127.0.0.1:9")
    no_synth = str(profile_factory(2, S=None, T=None).save(tmp_path / "no-synth.json"))
    fails(capsys, ["sweep", "--profile", no_synth, "--out", out, "--methods", "dni,dgl", "--steps", "2",
                   "--workers", "1", "--no-progress", "--no-figures"], 1, "every one of the 2 grid points failed")


def test_sweep_grid_on_a_thread_pool(profile_factory, tmp_path):
    from analysis.sim_figures import sweep_figures

    profile = profile_factory(4, F=200_000, B=400_000, U=50_000, S=30_000, T=60_000, act=65536)
    grid = SweepGrid(methods=("dni", "gpipe"), hardware=("cluster-10gbe",), stages=(2, 4), bandwidths=(1.0, 10.0),
                     synth_cost_ratios=(None,), steps=4)
    with ThreadPoolExecutor(2) as pool:
        table = run_sweep(profile, grid, executor=pool, progress=False)
    assert len(table) == 8 and (table["error"] == "").all()
    assert sorted(set(table["num_stages"])) == [2, 4] and sorted(set(table["num_devices"])) == [2, 4]
    files = write_sweep(table, grid, tmp_path) + sweep_figures(table, grid, tmp_path)
    names = {f.name for f in files}
    assert {"sweep.csv", "sweep.json", "speedup_vs_stages.png", "speedup_vs_bandwidth_GB_per_s.png"} <= names


def test_sweep_records_failures_instead_of_stopping(profile_factory):
    profile = profile_factory(2, S=None, T=None)
    grid = SweepGrid(methods=("dni", "bprop"), stages=(None, 3), steps=2)
    with ThreadPoolExecutor(1) as pool:
        table = run_sweep(profile, grid, executor=pool, progress=False)
    errors = dict(zip(zip(table["method"], table["stages_requested"].fillna(0)), table["error"]))
    assert "needs op S" in errors["dni", 0] and errors["bprop", 0] == ""
    assert "cannot split a 2-stage profile into 3 stages" in errors["bprop", 3]


def test_sweep_command_process_pool(profile_path, tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", "--profile", str(profile_path), "--methods", "dni,1f1b", "--synth-cost-ratios", "0,1",
                 "--steps", "3", "--workers", "2", "--out", str(out), "--no-progress"]) == 0
    table = pd.read_csv(out / "sweep.csv")
    assert len(table) == 4 and set(table["synth_cost_ratio"]) == {0.0, 1.0}
    assert (out / "speedup_vs_synth_cost_ratio.png").is_file()
    assert "wrote" in capsys.readouterr().out


def test_sweep_on_a_dask_cluster(profile_factory):
    distributed = pytest.importorskip("distributed")
    profile = profile_factory(3)
    grid = SweepGrid(methods=("dni", "bprop"), steps=2)
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None)
    with cluster:
        table = run_sweep(profile, grid, scheduler_address=cluster.scheduler_address, progress=False)
    assert list(table["method"]) == ["dni", "bprop"] and (table["error"] == "").all()


def test_sweep_frontier_writes_the_table_and_prints_it(profile_path, tmp_path, capsys):
    out = tmp_path / "frontier"
    assert main(["sweep", "--profile", str(profile_path), "--frontier", "--methods", "backprop,gpipe,dni",
                 "--stages", "4", "--bandwidth", "10", "--synth-cost-ratios", "0,1", "--steps", "4", "--workers", "1",
                 "--no-figures", "--no-progress", "--out", str(out)]) == 0
    sweep = pd.read_csv(out / "sweep.csv")
    # bprop and gpipe once (no synthesizer), dni per synthesizer cost, and bprop on one device
    assert list(zip(sweep["method"], sweep["num_stages"])) == [("bprop", 4), ("gpipe", 4), ("dni", 4), ("dni", 4),
                                                               ("bprop", 1)]
    front = pd.read_csv(out / "frontier.csv")
    assert front["synth_cost_ratio"].tolist() == [0.0, 1.0] and set(front["best_locked"]) == {"gpipe"}
    text = capsys.readouterr().out
    assert "frontier: steady throughput of each unlocked method over the best locked schedule" in text
    assert "best_locked" in text and "ratio" in text
    assert "cluster-10gbe, K = 4, 10 GB/s: dni wins at r = 0" in text and "loses at r = 1" in text
    assert not (out / "frontier.png").exists() and not (out / "speedup_vs_synth_cost_ratio.png").exists()


def test_sweep_frontier_errors(profile_path, tmp_path, capsys):
    p, out = str(profile_path), str(tmp_path / "frontier")
    fails(capsys, ["sweep", "--profile", p, "--out", out, "--frontier", "--methods", "dni,cdni"], 2,
          "--methods 'dni,cdni' needs at least one of each")
    fails(capsys, ["sweep", "--profile", p, "--out", out, "--frontier", "--methods", "bprop,gpipe"], 2,
          "needs at least one of each")
    fails(capsys, ["sweep", "--profile", p, "--out", out, "--frontier", "--steps", "3"], 2,
          "--frontier-metric steady measures the middle half of at least 4 steps; --steps is 3")
    fails(capsys, ["sweep", "--profile", p, "--out", out, "--frontier", "--methods", "magic"], 2,
          "unknown method 'magic'")


def test_method_all_leaves_out_what_the_profile_cannot_drive(profile_factory, tmp_path, capsys):
    from sglab.methods import get_method, method_names

    path = profile_factory(3, split=False).save(tmp_path / "whole-backward.json")
    assert main(["simulate", "--profile", str(path), "--steps", "2", "--json"]) == 0
    captured = capsys.readouterr()
    ran = [row["method"] for row in json.loads(captured.out)]
    left_out = [m for m in method_names("sim")
                if get_method(m).split_backward or get_method(m).stages_per_rank > 1]
    assert ran == [m for m in method_names("sim") if m not in left_out]
    assert "note: --method all leaves out zb-h1: it needs I and W" in captured.err
    assert "note: --method all leaves out looped-bfs: it holds 2 stages per rank, and 3 stages" in captured.err


def test_sweep_frontier_with_data_parallel_replicas(profile_path, tmp_path, capsys):
    out = tmp_path / "frontier-dp"
    assert main(["sweep", "--profile", str(profile_path), "--frontier", "--methods", "bprop,dni", "--stages", "2",
                 "--bandwidth", "10", "--synth-cost-ratios", "0", "--replicas", "1,2", "--steps", "4", "--workers", "1",
                 "--no-figures", "--no-progress", "--out", str(out)]) == 0
    sweep = pd.read_csv(out / "sweep.csv")
    assert list(zip(sweep["method"], sweep["num_stages"], sweep["replicas"], sweep["num_devices"])) == [
        ("bprop", 2, 1, 2), ("bprop", 2, 2, 4), ("dni", 2, 1, 2), ("dni", 2, 2, 4), ("bprop", 1, 1, 1), ("bprop", 1, 2, 2)]
    front = pd.read_csv(out / "frontier.csv")
    assert front["replicas"].tolist() == [1, 2] and (front["best_locked_devices"] <= front["devices"]).all()
    text = capsys.readouterr().out
    assert "best_locked_replicas" in text and "cluster-10gbe, K = 2, 10 GB/s, 2 replicas: dni" in text
    fails(capsys, ["sweep", "--profile", str(profile_path), "--out", str(out), "--replicas", "0"], 2,
          "--replicas: every value must be > 0, got 0")


def test_sweep_frontier_past_stage_counts_the_profile_cannot_make(profile_path, tmp_path, capsys):
    out = tmp_path / "frontier-k"
    assert main(["sweep", "--profile", str(profile_path), "--frontier", "--methods", "bprop,dni", "--stages", "2,8",
                 "--bandwidth", "10", "--synth-cost-ratios", "0", "--microbatches-grid", "2,4", "--steps", "4",
                 "--workers", "1", "--no-figures", "--no-progress", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "failed: dni on cluster-10gbe: cannot split a 4-stage profile into 8 stages (1..4)" in text
    front = pd.read_csv(out / "frontier.csv")
    assert front["stages"].tolist() == [2] and front["best_locked"].tolist() == ["bprop"]
    assert not (out / "frontier-microbatches.csv").exists()  # no pipeline: microbatches are no axis
