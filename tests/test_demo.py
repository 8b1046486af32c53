"""`sglab demo` runs the whole chain on the embedded data and writes its report."""

import json

import pytest

from sglab.demo import DemoConfig, run_demo


@pytest.mark.slow
def test_demo_writes_table_figures_profile_simulation_and_report(tmp_path):
    report = run_demo(DemoConfig(out=str(tmp_path), steps=12, batch_size=32, progress=False))
    assert {row["method"] for row in report["training"]["table"]} == {"bprop", "dni", "cdni"}
    for name in ["comparison.md", "figures/learning_curves.png", "figures/learning_curves.pdf", "profile.json",
                 "simulation/sim_summary.csv", "report.md", "demo.json"]:
        assert (tmp_path / name).is_file(), name
    assert report["simulation"]["speedups"]["sequential"] == pytest.approx(1.0)
    text = (tmp_path / "report.md").read_text()
    assert "Does DNI learn like backprop?" in text and "synth_over_stage" in text
    assert json.loads((tmp_path / "demo.json").read_text())["training"]["table"]
