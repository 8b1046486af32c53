"""The pure parts of benchmarks/paper_table.py: the paper's cells, run names and the mean ± sd table."""

from __future__ import annotations

import argparse
import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from sglab.training.config import ClassifyConfig

SPEC = importlib.util.spec_from_file_location("paper_table", Path(__file__).parents[1] / "benchmarks" / "paper_table.py")
paper_table = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(paper_table)


def test_the_papers_cells_per_dataset():
    assert paper_table.paper_error("mnist", "fcn", 3, "dni") == 1.9
    assert paper_table.paper_error("embedded", "fcn", 3, "dni") == 1.9
    assert paper_table.paper_error("cifar10", "fcn", 3, "cdni") == 48.5
    assert paper_table.paper_error("cifar10", "cnn", 4, "bprop") == 15.7
    assert paper_table.paper_error("cifar10", "fcn", 7, "dni") is None
    assert paper_table.paper_error("my.npz", "fcn", 3, "dni") is None


def test_run_names_keep_seed_zero_as_before():
    config = ClassifyConfig(method="cdni", layers=4)
    assert paper_table.run_name(config) == "fcn4-cdni"
    assert paper_table.run_name(ClassifyConfig(method="dni", layers=3, seed=2)) == "fcn3-dni-s2"


def test_table_gives_mean_and_sample_sd_over_seeds():
    runs = pd.DataFrame([
        {"model": "fcn", "layers": 3, "method": "dni", "seed": s, "steps": 100, "test_error_%": e,
         "paper_test_error_%": 42.5, "train_time_s": 10.0} for s, e in enumerate([40.0, 42.0, 44.0])
    ] + [{"model": "fcn", "layers": 3, "method": "bprop", "seed": 0, "steps": 100, "test_error_%": 45.04,
          "paper_test_error_%": float("nan"), "train_time_s": 5.0}])
    table = paper_table.markdown_table(runs)
    assert "42.0 ± 2.0 (42.5)" in table
    assert "| 45.0 " in table and "(nan)" not in table
    assert table.splitlines()[-1].rstrip().endswith("| 35                  |")  # time summed over the row's runs


def _table_args(**changes) -> argparse.Namespace:
    """paper_table's command line with its defaults for a 100-step MNIST FCN-3 table, and ``changes``."""
    defaults = dict(dataset="mnist", data_dir=None, steps=100, lr=3e-4, synth_hidden_layers=1, lr_milestones=[],
                    synth_lr=None, validation=0.0, device="cpu", layers=[3], cnn=False, cnn_layers=[3],
                    cnn_steps=10, methods=["bprop", "dni", "cdni"], seeds=[0], selected=False)
    return argparse.Namespace(**{**defaults, **changes})


def test_selected_settings_apply_to_their_cells_only_and_a_finished_run_with_other_settings_is_not_reused(tmp_path):
    args = _table_args(layers=[3, 4], selected=True)
    settings = {(c.layers, c.method): (c.lr, c.synth_hidden_layers, c.synth_lr, c.lr_milestones)
                for c in paper_table.configs(args)}
    assert settings[(3, "dni")] == (3e-4, 1, 1e-3, [60, 80]) and settings[(3, "cdni")] == (3e-4, 0, None, [])
    assert settings[(4, "dni")] == settings[(3, "dni")] and settings[(4, "cdni")] == settings[(3, "cdni")]
    assert settings[(3, "bprop")] == settings[(4, "bprop")] == (3e-4, 1, None, [])
    with_cnn = paper_table.configs(argparse.Namespace(**{**vars(args), "cnn": True, "cnn_steps": 30}))
    assert {(c.model, c.steps, c.eval_every) for c in with_cnn} == {("fcn", 100, 10), ("cnn", 30, 3)}
    config = ClassifyConfig(method="dni", layers=3, steps=100, lr=1e-3)
    (tmp_path / "table_row.json").write_text('{"steps": 100, "lr": 0.0003, "synth_hidden_layers": 1, '
                                             '"status": "completed"}')
    assert paper_table.finished_row(config, tmp_path) is None
    assert paper_table.finished_row(ClassifyConfig(method="dni", layers=3, steps=100, lr=3e-4), tmp_path) is not None


def test_cifar10_cells_take_their_own_selection_not_mnists():
    args = _table_args(dataset="cifar10", steps=5000, layers=[3, 6], methods=list(paper_table.METHODS), selected=True)
    settings = {(c.layers, c.method): (c.lr, c.synth_hidden_layers, c.synth_lr, c.lr_milestones)
                for c in paper_table.configs(args)}
    assert settings[(3, "bprop")] == (3e-4, 1, None, [3000, 4000])
    assert settings[(3, "nobprop")] == (1e-3, 1, None, [3000, 4000])
    assert settings[(3, "dni")] == (1e-4, 1, 3e-5, [])  # MNIST's DNI has lr 3e-4, synthesizers 1e-3, drops
    assert settings[(3, "cdni")] == (3e-4, 1, None, [])  # MNIST's cDNI has a linear synthesizer
    assert all(settings[(6, m)] == settings[(3, m)] for m in paper_table.METHODS)


def test_the_schedule_and_synthesizer_lr_reach_the_runs_and_decide_reuse(tmp_path):
    args = _table_args(lr=1e-3, lr_milestones=[40, 80], synth_lr=1e-4)
    runs = {c.method: c for c in paper_table.configs(args)}
    assert all(c.lr_milestones == [40, 80] for c in runs.values())
    assert runs["dni"].synth_lr == runs["cdni"].synth_lr == 1e-4 and runs["bprop"].synth_lr is None
    selected = {c.method: c for c in paper_table.configs(argparse.Namespace(**{**vars(args), "selected": True}))}
    assert selected["dni"].synth_lr == 1e-3 and selected["cdni"].synth_lr == 1e-4  # a selected cell's setting wins
    assert selected["dni"].lr_milestones == [60, 80] and selected["cdni"].lr_milestones == [40, 80]
    old_row = '{"steps": 100, "lr": 0.001, "synth_hidden_layers": 1, "status": "completed"}'
    (tmp_path / "table_row.json").write_text(old_row)  # written before the schedule was recorded: constant lr
    assert paper_table.finished_row(runs["bprop"], tmp_path) is None
    assert paper_table.finished_row(ClassifyConfig(method="bprop", steps=100, lr=1e-3), tmp_path) is not None
    (tmp_path / "table_row.json").write_text(old_row[:-1] + ', "lr_milestones": "40 80", "synth_lr": 0.0001}')
    assert paper_table.finished_row(runs["dni"], tmp_path) is not None
    assert paper_table.finished_row(replace(runs["dni"], synth_lr=3e-4), tmp_path) is None


def _rows(method, layers, steps=100, seeds=(0, 1)):
    return pd.DataFrame([{"dataset": "mnist", "model": "fcn", "layers": layers, "method": method, "seed": s,
                          "steps": steps, "test_error_%": 2.0 + s, "paper_test_error_%": 1.9, "train_time_s": 1.0}
                         for s in seeds])


def test_combine_writes_one_table_in_table_1_order_and_refuses_duplicate_runs_and_mixed_budgets(tmp_path):
    paths = [tmp_path / f"{name}.csv" for name in ("a", "b", "c", "d")]
    pd.concat([_rows("dni", 5), _rows("bprop", 4)]).to_csv(paths[0], index=False)
    _rows("bprop", 5).to_csv(paths[1], index=False)
    (tmp_path / "provenance.json").write_text(json.dumps({"cpu_model": "Test CPU", "created": "2026-12-01"}))
    paper_table.main(["--combine", str(paths[0]), str(paths[1]), "--out", str(tmp_path / "out")])
    sources = json.loads((tmp_path / "out" / "provenance.json").read_text())["combined_from"]
    assert [(s["runs_csv"], s["cpu_model"]) for s in sources] == [(str(p), "Test CPU") for p in paths[:2]]
    runs = pd.read_csv(tmp_path / "out" / "runs.csv")
    assert list(zip(runs["layers"], runs["method"])) == [(4, "bprop")] * 2 + [(5, "bprop")] * 2 + [(5, "dni")] * 2
    table = (tmp_path / "out" / "table.md").read_text().splitlines()
    assert table[0].index("bprop") < table[0].index("dni") and "FCN-5" in table[-1] and "2.5 ± 0.7 (1.9)" in table[-1]
    _rows("dni", 5, seeds=(1,)).to_csv(paths[2], index=False)
    with pytest.raises(SystemExit, match="more than one file"):
        paper_table.main(["--combine", str(paths[0]), str(paths[2]), "--out", str(tmp_path / "x")])
    _rows("bprop", 5, steps=200).to_csv(paths[3], index=False)
    with pytest.raises(SystemExit, match="mix budgets"):
        paper_table.main(["--combine", str(paths[0]), str(paths[3]), "--out", str(tmp_path / "x")])
    assert not (tmp_path / "x").exists()
