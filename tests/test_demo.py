"""`sglab demo` runs the whole chain on the embedded data and writes its report."""

import json

import pandas as pd
import pytest

from sglab.demo import DemoConfig, run_demo


@pytest.mark.slow
def test_demo_writes_table_figures_profile_simulation_and_report(tmp_path):
    report = run_demo(DemoConfig(out=str(tmp_path), steps=12, batch_size=32, progress=False))
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
