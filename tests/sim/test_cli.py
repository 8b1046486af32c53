"""``sglab simulate`` and ``sglab sweep`` (process pool, thread pool, dask)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest

from sglab.cli import main
from sglab.sim.sweep import SweepGrid, run_sweep, write_sweep


@pytest.fixture
def profile_path(profile_factory, tmp_path):
    return profile_factory(4, F=200_000, B=400_000, U=50_000, S=30_000, T=60_000, act=65536).save(tmp_path / "p.json")


def test_simulate_prints_a_summary(profile_path, capsys):
    assert main(["simulate", "--profile", str(profile_path), "--hardware", "cluster-ib-hdr", "--method", "dni,gpipe",
                 "--steps", "6"]) == 0
    out = capsys.readouterr().out
    assert "on cluster-ib-hdr" in out and "speedup" in out
    rows = [line.split()[0] for line in out.splitlines()[2:4]]
    assert rows == ["dni", "gpipe"]


def test_simulate_writes_files_and_json(profile_path, tmp_path, capsys):
    out_dir = tmp_path / "sim"
    assert main(["simulate", "--profile", str(profile_path), "--method", "1f1b", "--steps", "3",
                 "--out", str(out_dir), "--json"]) == 0
    assert '"method": "1f1b"' in capsys.readouterr().out
    for name in ("summary.csv", "1f1b/trace.csv", "1f1b/trace.json", "1f1b/gantt.png", "1f1b/summary.json"):
        assert (out_dir / name).is_file(), name


def test_simulate_errors_are_clean(profile_path, tmp_path, capsys):
    bad = tmp_path / "hw.json"
    bad.write_text('{"devices": [{"name": "a", "speed": 0}], "topology": "bus"}')
    assert main(["simulate", "--profile", str(profile_path), "--hardware", str(bad)]) == 1
    assert "devices[0].speed must be > 0, got 0" in capsys.readouterr().err
    assert main(["simulate", "--profile", str(profile_path), "--method", "magic"]) == 1
    assert "unknown method 'magic'" in capsys.readouterr().err
    assert main(["simulate", "--list"]) == 0
    assert "cluster-10gbe" in capsys.readouterr().out


def test_sweep_grid_on_a_thread_pool(profile_factory, tmp_path):
    profile = profile_factory(4, F=200_000, B=400_000, U=50_000, S=30_000, T=60_000, act=65536)
    grid = SweepGrid(methods=("dni", "gpipe"), hardware=("cluster-10gbe",), stages=(2, 4), bandwidths=(1.0, 10.0),
                     synth_cost_ratios=(None,), steps=4)
    with ThreadPoolExecutor(2) as pool:
        table = run_sweep(profile, grid, executor=pool, progress=False)
    assert len(table) == 8 and (table["error"] == "").all()
    assert sorted(set(table["num_stages"])) == [2, 4] and sorted(set(table["num_devices"])) == [2, 4]
    files = write_sweep(table, grid, tmp_path)
    names = {f.name for f in files}
    assert {"sweep.csv", "sweep.json", "speedup_vs_stages.png", "speedup_vs_bandwidth_GB_per_s.png"} <= names


def test_sweep_records_failures_instead_of_stopping(profile_factory):
    profile = profile_factory(2, S=None, T=None)
    grid = SweepGrid(methods=("dni", "naive"), steps=2)
    with ThreadPoolExecutor(1) as pool:
        table = run_sweep(profile, grid, executor=pool, progress=False)
    errors = dict(zip(table["method"], table["error"]))
    assert "needs op S" in errors["dni"] and errors["naive"] == ""


def test_sweep_command_process_pool(profile_path, tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", "--profile", str(profile_path), "--methods", "dni,1f1b", "--synth-cost-ratios", "0.1,1",
                 "--steps", "3", "--workers", "2", "--out", str(out), "--no-progress"]) == 0
    table = pd.read_csv(out / "sweep.csv")
    assert len(table) == 4 and set(table["synth_cost_ratio"]) == {0.1, 1.0}
    assert (out / "speedup_vs_synth_cost_ratio.png").is_file()
    assert "wrote" in capsys.readouterr().out


def test_sweep_on_a_dask_cluster(profile_factory):
    distributed = pytest.importorskip("distributed")
    profile = profile_factory(3)
    grid = SweepGrid(methods=("dni", "sequential"), steps=2)
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None)
    with cluster:
        table = run_sweep(profile, grid, scheduler_address=cluster.scheduler_address, progress=False)
    assert list(table["method"]) == ["dni", "sequential"] and (table["error"] == "").all()
