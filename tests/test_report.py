"""`sglab report` regenerates every figure and table from run directories."""

import pandas as pd
import pytest

from analysis.fidelity import load_fidelity
from analysis.fidelity_figures import fidelity_table
from analysis.report import build_report
from sglab.cli import main
from sglab.training import ClassifyConfig, train


@pytest.fixture(scope="module")
def probed_runs(patterns, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    runs = []
    for method, seed in (("dni", 0), ("dni", 1), ("cdni", 0)):
        config = ClassifyConfig(method=method, seed=seed, layers=3, width=16, synth_width=16, batch_size=32, steps=20,
                                eval_every=10, probe_every=5, device="cpu", dataset="patterns")
        runs.append(train(config, root / f"{method}-s{seed}", progress=False, dataset=patterns).run_dir)
    return runs


def test_report_writes_learning_and_fidelity_figures_and_tables(probed_runs, tmp_path):
    report = build_report(probed_runs, tmp_path)
    text = report.read_text()
    assert "## Learning" in text and "## Synthetic-gradient fidelity" in text
    for name in ("learning_curves.png", "learning_curves.pdf", "fidelity_over_training.png", "fidelity_table.csv",
                 "comparison.csv", "fidelity.csv"):
        assert (tmp_path / name).is_file(), name
    table = pd.read_csv(tmp_path / "fidelity_table.csv")
    dni = table[(table["method"] == "dni") & (table["metric"] == "synthetic_cosine")]
    assert list(dni["count"]) == [2, 2]  # two seeds per interface, each counted once


def test_the_fidelity_table_averages_runs_over_the_second_half_of_training(probed_runs):
    table = load_fidelity(probed_runs)
    summary = fidelity_table(table, by=("method", "interface"), metrics=("synthetic_cosine",))
    rows = table[(table["metric"] == "synthetic_cosine") & (table["method"] == "cdni") & (table["interface"] == 0)]
    late = rows[rows["step"] >= 5 + 0.5 * (20 - 5)]["value"].mean()
    got = summary[(summary["method"] == "cdni") & (summary["interface"] == 0)]["mean"].item()
    assert got == pytest.approx(late)


def test_report_of_something_that_is_not_a_run_is_one_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nothing"), "--out", str(tmp_path / "r")]) == 1
    assert "not sglab run directories" in capsys.readouterr().err
