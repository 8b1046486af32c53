"""benchmarks/rnn_tasks.py: seeds, presets, the mean ± sd tables and resuming from kept runs."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from analysis.rnn_figures import longest_solved_table
from analysis.tables import mean_sd

SPEC = importlib.util.spec_from_file_location("rnn_tasks", Path(__file__).parents[1] / "benchmarks" / "rnn_tasks.py")
rnn_tasks = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(rnn_tasks)


def test_mean_sd_cells():
    assert mean_sd([2.0, 3.0, 4.0]) == "3.0 ± 1.0"
    assert mean_sd([1.2345], digits=2) == "1.23"
    assert mean_sd([]) == "–"


def test_the_paper_preset_has_the_papers_vectors_and_network_and_seeds_are_innermost(tmp_path):
    configs = rnn_tasks.jobs(["copy"], tmp_path / "none.txt", scale=1.0, seeds=3, preset="paper")
    assert len(configs) == 5 * 3 * 3
    assert {(c.bits, c.hidden) for c in configs} == {(8, 256)}
    assert [c.seed for c in configs[:4]] == [0, 1, 2, 0]
    assert rnn_tasks.run_name(configs[1]) == "copy-nobprop-T2-s1"


def test_the_synthesizer_lr_goes_only_to_methods_with_a_synthesizer(tmp_path):
    configs = rnn_tasks.jobs(["copy", "charlm", "two-rnn"], tmp_path / "none.txt", scale=1.0, preset="paper")
    by_method = {(c.task, c.method): c.synth_lr for c in configs}
    assert by_method[("copy", "dni")] == 3e-3 and by_method[("charlm", "dni-aux")] == 3e-6
    # truncated BPTT's config is the one it had before the preset chose a synthesizer lr
    assert by_method[("copy", "nobprop")] is None and by_method[("charlm", "nobprop")] is None
    assert {c.synth_lr for c in configs if c.task == "two-rnn"} == {None}


def test_longest_solved_cells_are_mean_and_sd_over_seeds():
    rows = pd.DataFrame([{"task": "copy", "method": "dni", "truncation": 3, "longest_solved": v, "seed": s}
                         for s, v in enumerate([4, 6, 8])]
                        + [{"task": "copy", "method": "bptt", "truncation": 3, "longest_solved": 2, "seed": 0}])
    table = longest_solved_table(rows)
    assert "| copy | DNI | 6.0 ± 2.0 |" in table
    assert "| copy | BPTT | 2 |" in table  # one seed: the value alone


def test_two_seeds_write_mean_sd_tables_and_a_rerun_reads_the_kept_runs(tmp_path, monkeypatch):
    out, runs = tmp_path / "out", tmp_path / "runs"
    argv = ["--tasks", "copy", "--scale", "0.002", "--seeds", "2", "--runs", str(runs),
            "--out", str(out), "--figures", str(out)]
    assert rnn_tasks.main(argv) == 0
    results = pd.read_csv(out / "results.csv")
    assert len(results) == 30 and sorted(set(results.seed)) == [0, 1]
    assert "Mean ± sample sd over 2 seeds per cell." in (out / "tables.md").read_text()
    assert (out / "rnn_tables.png").is_file()

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(rnn_tasks, "train", no_training)
    assert rnn_tasks.main(argv) == 0
    pd.testing.assert_frame_equal(pd.read_csv(out / "results.csv"), results)
    with pytest.raises(AssertionError, match="trained again"):  # a changed budget is a new run
        rnn_tasks.main([*argv[:3], "0.004", *argv[4:]])


def test_runs_go_to_a_dask_cluster_when_given_one(tmp_path):
    distributed = pytest.importorskip("distributed")
    out = tmp_path / "out"
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None)
    with cluster:
        assert rnn_tasks.main(["--tasks", "copy", "--scale", "0.001", "--out", str(out), "--figures", str(out),
                               "--scheduler-address", cluster.scheduler_address]) == 0
    results = pd.read_csv(out / "results.csv")
    assert list(results.truncation[:3]) == [2, 2, 2] and len(results) == 15  # table order, whatever finished first


def _synth_lr_script():
    """benchmarks/rnn_synth_lr.py, imported as the script is run (benchmarks/ on sys.path)."""
    benchmarks = str(Path(__file__).parents[1] / "benchmarks")
    if benchmarks not in sys.path:
        sys.path.insert(0, benchmarks)
    return importlib.import_module("rnn_synth_lr")  # by name, so the process pool's workers can unpickle its functions


def test_the_synthesizer_lr_grid_is_bptt_once_and_dni_per_lr_on_a_seed_the_tables_never_use():
    script = _synth_lr_script()
    configs = script.configs(["copy", "repeat-copy"], [1e-4, 1e-3], truncation=3, seed=100, steps=7)
    assert [(c.task_name, c.method, c.synth_lr) for c in configs] == [
        ("copy", "nobprop", None), ("copy", "dni", 1e-4), ("copy", "dni", 1e-3),
        ("repeat-copy", "nobprop", None), ("repeat-copy", "dni", 1e-4), ("repeat-copy", "dni", 1e-3)]
    assert {(c.seed, c.truncation, c.steps, c.bits, c.hidden) for c in configs} == {(100, 3, 7, 8, 256)}


def test_the_synthesizer_lr_selection_ranks_by_length_solved_then_length_reached_then_errors():
    script = _synth_lr_script()
    rows = pd.DataFrame([
        {"task": "copy", "synth_lr": 1e-5, "longest_solved": 2, "final_length": 3, "tail_bit_errors": 0.9},
        {"task": "copy", "synth_lr": 1e-4, "longest_solved": 3, "final_length": 4, "tail_bit_errors": 5.0},
        {"task": "copy", "synth_lr": 1e-3, "longest_solved": 2, "final_length": 3, "tail_bit_errors": 0.4},
        {"task": "copy", "synth_lr": 3e-3, "longest_solved": 2, "final_length": 2, "tail_bit_errors": 0.1},
        {"task": "repeat-copy", "synth_lr": 1e-3, "longest_solved": 0, "final_length": 1, "tail_bit_errors": 1.0},
    ])
    assert list(script.ranked(rows).synth_lr) == [1e-4, 1e-3, 1e-5, 3e-3, 1e-3]


def test_the_synthesizer_lr_selection_writes_its_table_and_reads_kept_runs_back(tmp_path):
    script = _synth_lr_script()
    out = tmp_path / "out"
    argv = ["--tasks", "copy", "--synth-lrs", "1e-4", "1e-3", "--steps", "3", "--runs", str(tmp_path / "runs"),
            "--out", str(out)]
    assert script.main(argv) == 0
    table = pd.read_csv(out / "selection.csv")
    assert len(table) == 3 and set(table.method) == {"nobprop", "dni"}
    assert (table.first_step_per_length.str.startswith("1:1")).all()  # the curriculum starts at N = 1, step 1
    assert "| copy   | dni      |" in (out / "selection.md").read_text()
    assert json.loads((out / "benchmark.json").read_text())["command"].startswith("python benchmarks/rnn_synth_lr.py --tasks")
    assert script.main(argv) == 0  # the kept runs are read back, not trained again
    assert pd.read_csv(out / "selection.csv").equals(table)
