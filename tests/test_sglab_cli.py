"""The `sglab` command line: subcommands exist, train writes a run directory, errors exit 1 with a message."""

import json
import subprocess
import sys

import pytest

from sglab.cli import main


def test_help_lists_the_subcommands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("train", "data", "demo"):
        assert command in out


def test_python_dash_m_sglab_is_the_cli():
    done = subprocess.run([sys.executable, "-m", "sglab", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("sglab ")


def test_train_on_embedded_data_writes_a_run_directory(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--method", "cdni", "--steps", "6", "--eval-every", "3", "--batch-size", "32",
                 "--synth-width", "32", "--limit-train", "200", "--out", str(out), "--no-progress", "--device", "cpu"])
    assert code == 0
    assert "test error" in capsys.readouterr().out
    assert json.loads((out / "config.json").read_text())["config"]["method"] == "cdni"
    assert main(["train", "--resume", "--steps", "9", "--out", str(out), "--no-progress"]) == 0
    assert json.loads((out / "summary.json").read_text())["steps"] == 9


def test_bad_method_exits_1_with_a_message(tmp_path, capsys):
    assert main(["train", "--method", "magic", "--out", str(tmp_path)]) == 1
    assert "'method' must be one of" in capsys.readouterr().err


def test_missing_dataset_exits_1_saying_what_to_do(tmp_path, capsys):
    assert main(["train", "--dataset", "mnist", "--data-dir", str(tmp_path), "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "sglab data download mnist" in err


def test_train_with_profile_writes_a_valid_cost_profile_and_trace(tmp_path):
    from sglab.profiling import CostProfile

    out = tmp_path / "run"
    code = main(["train", "--method", "dni", "--steps", "8", "--eval-every", "4", "--batch-size", "32",
                 "--synth-width", "32", "--limit-train", "200", "--out", str(out), "--no-progress", "--profile"])
    assert code == 0
    profile = CostProfile.load(out / "profile.json")
    assert profile.measurement.source == "in_run"
    assert all(stage.times_ns["F"] > 0 for stage in profile.stages)
    assert json.loads((out / "trace.json").read_text())["traceEvents"]
