"""The frontier (analysis.frontier, analysis.frontier_figures, sglab.sim.sweep.frontier_grids): each unlocked
row against the fastest locked row on at most as many devices of the same machine."""

import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import matplotlib.figure
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent / "sim"))

from simfixtures import build_profile  # noqa: E402

from analysis.frontier import (  # noqa: E402
    frontier_summary,
    frontier_table,
    measured_synth_ratio,
    measured_synth_ratios,
    method_role,
)
from analysis.frontier_figures import _rows, frontier_figures, plot_frontier  # noqa: E402
from sglab.methods import METHODS, pipelines  # noqa: E402
from sglab.sim.sweep import SweepGrid, frontier_grids, locked_methods, run_sweep, unlocked_methods  # noqa: E402

BATCH = 10


def row(method, devices, step_ns, microbatches=1, bw=10.0, r=None, mb_requested=None, memory=1000, fits=True,
        hardware="hw", error="", makespan_ns=None, stages=None, replicas=1):
    """One sweep row of one step: ``microbatches * BATCH`` samples per replica in a steady step of ``step_ns``."""
    samples = microbatches * BATCH * replicas
    return {"method": method, "hardware_spec": hardware, "bandwidth_GB_per_s": bw, "stages_requested": stages,
            "synth_cost_ratio": r, "microbatches_requested": mb_requested, "error": error,
            "num_stages": stages or devices, "num_devices": devices, "microbatches": microbatches, "steps": 1,
            "samples": samples, "steady_step_ns": step_ns, "makespan_ns": makespan_ns or step_ns,
            "throughput_samples_per_s": samples * 1e9 / (makespan_ns or step_ns), "speedup": 1.0,
            "steady_speedup": 1.0, "peak_memory_bytes": memory, "fits": fits, "replicas": replicas}


def table(*rows) -> pd.DataFrame:
    return pd.DataFrame(list(rows))


def test_best_locked_is_the_fastest_locked_row_on_at_most_as_many_devices():
    sweep = table(row("dni", 4, 1_000_000, r=0.5), row("dni", 2, 1_000_000, r=0.5),
                  row("bprop", 1, 4_000_000),                     # 2,500 samples/s
                  row("gpipe", 2, 4_000_000, microbatches=4),      # 10,000
                  row("gpipe", 4, 2_000_000, microbatches=4),      # 20,000
                  row("1f1b", 8, 1_000_000, microbatches=4),       # 40,000 but on 8 devices
                  row("ddg", 4, 100_000),                          # no locked baseline
                  row("gpipe", 4, 1_000_000, microbatches=4, bw=1.0))  # another link
    front = frontier_table(sweep)
    assert list(front["devices"]) == [2, 4]
    assert list(front["best_locked"]) == ["gpipe", "gpipe"] and list(front["best_locked_devices"]) == [2, 4]
    assert list(front["ratio"]) == [1.0, 0.5] and list(front["wins"]) == [False, False]
    assert list(front["candidates"]) == [2, 3]  # bprop, gpipe on 2; and gpipe on 4 (1f1b: 8 devices)
    assert list(front["steady_samples_per_s"]) == [10_000.0, 10_000.0]
    assert list(front["best_locked_microbatches"]) == [4, 4]


def test_a_win_and_the_throughput_metric():
    sweep = table(row("dni", 4, 1_000_000, r=0.0, makespan_ns=4_000_000),
                  row("gpipe", 4, 8_000_000, microbatches=4, makespan_ns=8_000_000))
    steady = frontier_table(sweep)
    assert steady["ratio"].tolist() == [2.0] and steady["wins"].tolist() == [True]
    whole = frontier_table(sweep, metric="throughput")
    assert whole["ratio"].tolist() == [0.5] and whole["wins"].tolist() == [False]
    with pytest.raises(ValueError, match="metric must be one of steady, throughput, got 'fast'"):
        frontier_table(sweep, metric="fast")


def test_failed_rows_warn_and_are_no_rivals():
    sweep = table(row("dni", 2, 1_000_000), row("bprop", 1, 4_000_000),
                  row("gpipe", 2, 1, microbatches=4, error="boom"))
    sweep.loc[2, ["num_stages", "num_devices", "microbatches"]] = None  # as a failed row has them
    with pytest.warns(RuntimeWarning, match=r"1 failed sweep rows ignored \(first: gpipe: boom\)"):
        front = frontier_table(sweep)
    assert front["best_locked"].tolist() == ["bprop"] and front["ratio"].tolist() == [4.0]
    assert front["stages"].tolist() == [2] and front["stages"].dtype.kind == "i"  # not 2.0 for the NaN above
    assert frontier_summary(front)[0].startswith("hw, K = 2, 10 GB/s: dni wins")


def test_unlocked_rows_without_a_rival_warn():
    sweep = table(row("dni", 2, 1_000_000), row("dni", 4, 1_000_000), row("gpipe", 4, 1_000_000, microbatches=2))
    with pytest.warns(RuntimeWarning, match="1 unlocked rows have no locked row on as many devices"):
        front = frontier_table(sweep)
    assert front["devices"].tolist() == [4] and front["ratio"].tolist() == [0.5]


def test_ties_go_to_less_memory_then_registry_order():
    sweep = table(row("dni", 2, 1_000_000), row("1f1b", 2, 2_000_000, microbatches=2, memory=500),
                  row("gpipe", 2, 2_000_000, microbatches=2, memory=900))
    assert frontier_table(sweep)["best_locked"].tolist() == ["1f1b"]
    sweep.loc[1, "peak_memory_bytes"] = 900
    assert frontier_table(sweep)["best_locked"].tolist() == ["gpipe"]  # gpipe comes before 1f1b in the registry


def test_must_fit_leaves_out_locked_rows_that_do_not_fit():
    sweep = table(row("dni", 4, 1_000_000, memory=3000), row("bprop", 1, 4_000_000, memory=5000),
                  row("gpipe", 4, 1_000_000, microbatches=4, memory=9000, fits=False))
    assert frontier_table(sweep)["best_locked"].tolist() == ["gpipe"]
    front = frontier_table(sweep, must_fit=True)
    assert front["best_locked"].tolist() == ["bprop"] and front["ratio"].tolist() == [4.0]
    assert front["best_locked_peak_memory_bytes"].tolist() == [5000] and front["peak_memory_bytes"].tolist() == [3000]


def test_by_microbatches_keys_each_requested_count():
    sweep = table(row("dni", 4, 1_000_000, r=1.0), row("dni", 4, 1_000_000, r=1.0, mb_requested=2),  # a repeat
                  row("bprop", 1, 2_000_000, mb_requested=2),                               # 5,000
                  row("gpipe", 4, 4_000_000, microbatches=2, mb_requested=2),                # 5,000
                  row("gpipe", 4, 4_000_000, microbatches=8, mb_requested=8),                # 20,000
                  row("1f1b", 4, 1_000_000, microbatches=2, mb_requested=2, memory=10))      # 20,000
    front = frontier_table(sweep, by_microbatches=True)
    assert front["microbatches_per_step"].tolist() == [2.0, 8.0]
    assert front["best_locked"].tolist() == ["1f1b", "gpipe"] and front["ratio"].tolist() == [0.5, 0.5]
    single = frontier_table(sweep)
    assert "microbatches_per_step" not in single and single["best_locked"].tolist() == ["1f1b"]
    assert len(single) == 1


def test_by_microbatches_without_a_pipeline_is_one_default_count():
    sweep = table(row("dni", 2, 1_000_000, r=1.0), row("bprop", 1, 2_000_000), row("bprop", 2, 1_500_000))
    front = frontier_table(sweep, by_microbatches=True)
    assert front["microbatches_per_step"].isna().tolist() == [True]
    assert front["best_locked_devices"].tolist() == [2] and front["ratio"].tolist() == [1.5]


def test_machines_and_bandwidths_do_not_mix_and_as_given_matches_itself():
    sweep = table(row("dni", 2, 1_000_000, bw=None), row("gpipe", 2, 4_000_000, microbatches=2, bw=None),
                  row("dni", 2, 1_000_000, hardware="other"), row("bprop", 1, 1_000_000, hardware="other"),
                  row("gpipe", 2, 1_000, microbatches=2))  # the fastest, but on hw at 10 GB/s
    front = frontier_table(sweep)
    assert front["hardware_spec"].tolist() == ["hw", "other"] and front["best_locked"].tolist() == ["gpipe", "bprop"]
    assert front["ratio"].tolist() == [2.0, 1.0] and front["wins"].tolist() == [True, False]
    assert front["bandwidth_GB_per_s"].isna().tolist() == [True, False]


def test_data_parallel_rivals_count_every_replicas_devices():
    sweep = table(row("dni", 2, 1_000_000), row("dni", 4, 1_000_000, stages=2, replicas=2),
                  row("bprop", 1, 4_000_000),                          # 2,500 samples/s
                  row("bprop", 2, 4_000_000, stages=1, replicas=2),    # 5,000 on 2 devices
                  row("bprop", 4, 4_000_000, stages=1, replicas=4))    # 10,000 on 4 devices
    front = frontier_table(sweep)
    assert list(zip(front["stages"], front["replicas"], front["devices"])) == [(2, 1, 2), (2, 2, 4)]
    assert front["best_locked_replicas"].tolist() == [2, 4] and front["best_locked_devices"].tolist() == [2, 4]
    assert front["ratio"].tolist() == [2.0, 2.0]
    assert frontier_summary(front) == ["hw, K = 2, 10 GB/s, 1 replica: dni wins at r = measured "
                                       "(best 2.00× bprop at r = measured)",
                                       "hw, K = 2, 10 GB/s, 2 replicas: dni wins at r = measured "
                                       "(best 2.00× bprop at r = measured)"]
    assert "replicas" in frontier_table(sweep.drop(columns="replicas"))  # a sweep from before: 1 replica


def test_summary_lines():
    sweep = table(row("dni", 2, 1_000_000, r=0.0), row("dni", 2, 4_000_000, r=1.0), row("dni", 2, 2_000_000, r=None),
                  row("gpipe", 2, 4_000_000, microbatches=2))
    lines = frontier_summary(frontier_table(sweep))
    assert lines == ["hw, K = 2, 10 GB/s: dni wins at r = 0 (best 2.00× gpipe at r = 0); "
                     "loses at r = 1, measured (worst 0.50× gpipe at r = 1)"]


def test_a_new_pipeline_schedule_in_the_registry_is_a_locked_rival(monkeypatch):
    monkeypatch.setitem(METHODS, "fake-pipe", replace(METHODS["1f1b"], name="fake-pipe"))
    assert locked_methods()[-1] == "fake-pipe" and method_role("fake-pipe") == "locked"
    sweep = table(row("dni", 2, 1_000_000), row("fake-pipe", 2, 500_000, microbatches=2))
    assert frontier_table(sweep)["best_locked"].tolist() == ["fake-pipe"]


def test_locked_and_unlocked_methods_come_from_the_registry():
    locked = locked_methods()
    assert locked[0] == "bprop" and set(locked) == {"bprop", *pipelines()}
    assert unlocked_methods() == ["dni", "cdni", "unlocked", "cunlocked"]  # stochastic and mixed do less or wait
    assert [method_role(m) for m in ("bprop", "gpipe", "dni", "mixed", "ddg", "dgl", "nobprop")] == [
        "locked", "locked", "unlocked", "unlocked", "other", "other", "other"]


def test_frontier_grids_drop_redundant_points_and_add_one_stage_bprop():
    grid = SweepGrid(methods=("backprop", "gpipe", "dni", "ddg", "dgl"), stages=(2, 4), synth_cost_ratios=(0.0, 1.0),
                     microbatches=(2, 4), steps=3)
    grids = frontier_grids(grid)
    assert [(g.methods, g.stages, g.synth_cost_ratios, g.microbatches, g.override_synth) for g in grids] == [
        (("bprop", "ddg"), (2, 4), (None,), (None,), False),
        (("gpipe",), (2, 4), (None,), (2, 4), False),
        (("dni", "dgl"), (2, 4), (0.0, 1.0), (None,), True),
        (("bprop",), (1,), (None,), (None,), False)]
    assert all(g.steps == 3 for g in grids)
    assert {g.replicas for g in frontier_grids(replace(grid, replicas=(1, 2)))} == {(1, 2)}  # DP bprop on 1 stage too
    assert len(frontier_grids(replace(grid, stages=(1, 2)))) == 3  # one stage is on the grid already
    assert len(frontier_grids(replace(grid, methods=("gpipe", "dni")))) == 2  # no bprop, none added


def test_measured_synth_ratio():
    assert measured_synth_ratio(build_profile(3, F=1000, S=200, T=400)) == pytest.approx(0.2)
    assert measured_synth_ratio(build_profile(3, S=None, T=None)) is None
    # merged stages keep their last layer's synthesizer: 600 / (3 * 2000) on two stages of two layers
    assert measured_synth_ratios(build_profile(4, F=1000, S=200, T=400), (2, None, 1)) == pytest.approx(
        {2: 0.1, 4: 0.2, 1: 0.05})
    assert measured_synth_ratios(build_profile(4, S=None, T=None), (2,)) == {}
    assert measured_synth_ratios(build_profile(4, F=1000, S=200, T=400), (8, 0, 4)) == pytest.approx({4: 0.2})


def test_measured_rows_sit_at_their_stage_counts_ratio_or_are_not_drawn():
    sweep = table(*[row("dni", k, 1_000_000, r=r) for k in (2, 4) for r in (0.5, None)],
                  row("gpipe", 2, 1_000_000, microbatches=2), row("gpipe", 4, 1_000_000, microbatches=2))
    front = frontier_table(sweep)
    def drawn(measured):
        rows = _rows(front, "dni", None, None, measured)[0]
        return sorted(zip(rows["stages"], rows["x"]))

    assert drawn({2: 0.1, 4: 0.2}) == [(2, 0.1), (2, 0.5), (4, 0.2), (4, 0.5)]
    assert drawn(0.3) == [(2, 0.3), (2, 0.5), (4, 0.3), (4, 0.5)]
    assert drawn(None) == [(2, 0.5), (4, 0.5)]


@pytest.fixture(scope="module")
def small_sweep():
    profile = build_profile(4, F=200_000, B=400_000, U=50_000, S=30_000, T=60_000, act=65536)
    grid = SweepGrid(methods=("bprop", "gpipe", "1f1b", "dni"), stages=(2, 4), bandwidths=(0.01, 10.0),
                     synth_cost_ratios=(0.0, 1.0), steps=4)  # a steady step needs 4
    with ThreadPoolExecutor(1) as pool:
        return run_sweep(profile, frontier_grids(grid), executor=pool, progress=False)


def test_a_real_sweep_against_every_locked_row_by_hand(small_sweep):
    assert (small_sweep["error"] == "").all() and len(small_sweep) == 4 + 8 + 8 + 2
    front = frontier_table(small_sweep)
    assert len(front) == 8
    rate = small_sweep["samples"] / small_sweep["steps"] * 1e9 / small_sweep["steady_step_ns"]
    for r in front.itertuples():
        rivals = small_sweep[small_sweep["method"].isin(locked_methods())
                             & (small_sweep["bandwidth_GB_per_s"] == r.bandwidth_GB_per_s)
                             & (small_sweep["num_devices"] <= r.devices)]
        own = (small_sweep["method"] == "dni") & (small_sweep["num_stages"] == r.stages) & (
            small_sweep["bandwidth_GB_per_s"] == r.bandwidth_GB_per_s) & (small_sweep["synth_cost_ratio"] == r.synth_cost_ratio)
        assert r.ratio == pytest.approx(rate[own].item() / rate[rivals.index].max())
    slow = front[front["bandwidth_GB_per_s"] == 0.01]
    assert set(slow["best_locked"]) == {"bprop"} and set(slow["best_locked_devices"]) == {1}  # don't split
    fast = front[(front["bandwidth_GB_per_s"] == 10.0) & (front["stages"] == 4)]
    assert fast["wins"].tolist() == [True, False]  # free synthesizers win, r = 1 loses


def test_figures_of_a_real_sweep(small_sweep, tmp_path):
    front = frontier_table(small_sweep)
    fig = plot_frontier(front, measured_ratio=0.15)
    assert isinstance(fig, matplotlib.figure.Figure) and len(fig.axes) == 4  # ratio and memory for K = 2, 4
    two = pd.concat([front, front.assign(method="cdni"), front.assign(hardware_spec="b")])
    files = frontier_figures(two, tmp_path, formats=("png",))
    assert sorted(f.name for f in files) == ["frontier-b.png", "frontier-cdni-cluster-10gbe.png",
                                             "frontier-cluster-10gbe.png"]
    assert all(f.stat().st_size > 0 for f in files)
    assert frontier_figures(front.iloc[:0], tmp_path) == []
    with pytest.raises(ValueError, match="method 'cunlocked' is not in the frontier table"):
        plot_frontier(front, "cunlocked")
