"""The `sglab` command line: subcommands exist, train writes a run directory, every error is one line with its exit code."""

import json
import subprocess
import sys

import pandas as pd
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


def test_bad_method_exits_2_with_a_message(tmp_path, capsys):
    assert main(["train", "--method", "magic", "--out", str(tmp_path)]) == 2
    assert "unknown method 'magic'" in capsys.readouterr().err


def test_missing_dataset_exits_1_saying_what_to_do(tmp_path, capsys):
    assert main(["train", "--dataset", "mnist", "--data-dir", str(tmp_path), "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "sglab data download mnist" in err


def test_train_with_profile_writes_a_valid_cost_profile_and_trace(tmp_path):
    from sglab.costprofile import CostProfile

    out = tmp_path / "run"
    code = main(["train", "--method", "dni", "--steps", "8", "--eval-every", "4", "--batch-size", "32",
                 "--synth-width", "32", "--limit-train", "200", "--out", str(out), "--no-progress", "--profile"])
    assert code == 0
    profile = CostProfile.load(out / "profile.json")
    assert profile.measurement.source == "in_run"
    assert all(stage.times_ns["F"] > 0 for stage in profile.stages)
    assert json.loads((out / "trace.json").read_text())["traceEvents"]


def _config_file(tmp_path, text):
    path = tmp_path / "config.json"
    path.write_text(text)
    return str(path)


BAD_TRAIN = [
    (["--steps", "0"], 2, "--steps: must be an integer >= 1, got 0"),
    (["--synth-width", "0"], 2, "'synth_width' must be >= 1"),
    (["--threads", "-1"], 2, "--threads: must be an integer >= 1"),
    (["--threads", "0"], 2, "--threads: must be an integer >= 1"),
    (["--method", "bprop", "--update-prob", "0.5"], 2, "'update_prob' applies to methods with synthetic gradients"),
    (["--bits", "3"], 2, "--bits does not apply to --task classify"),
    (["--task", "copy", "--no-synth-context"], 2, "--no-synth-context applies to --task two-rnn"),
    (["--config", "{missing}"], 2, "no such file"),
    (["--config", "{notjson}"], 2, "not valid JSON"),
    (["--config", "{typed}"], 2, "'layers' must be an integer, got '3'"),
    (["--config", "{unknown}"], 2, "unknown classify config field(s): colour"),
    (["--resume"], 2, "--resume needs --out"),
    (["--resume", "--out", "{nowhere}"], 1, "does not exist"),
    (["--out", "{a_file}"], 1, "is a file, not a run directory"),
]


@pytest.mark.parametrize("args, code, message", BAD_TRAIN, ids=[" ".join(a) for a, _, _ in BAD_TRAIN])
def test_bad_train_input_is_one_line_and_the_right_exit_code(args, code, message, tmp_path, capsys):
    (tmp_path / "a_file").write_text("x")
    files = {"missing": str(tmp_path / "missing.json"), "notjson": _config_file(tmp_path, "{not json"),
             "nowhere": str(tmp_path / "nowhere"), "a_file": str(tmp_path / "a_file")}
    if "{typed}" in args:
        files["typed"] = _config_file(tmp_path, '{"layers": "3"}')
    if "{unknown}" in args:
        files["unknown"] = _config_file(tmp_path, '{"colour": "red"}')
    out = [] if args == ["--resume"] or "--out" in args else ["--out", str(tmp_path / "run")]
    argv = ["train", *out] + [a.format(**files) for a in args]
    try:
        got = main(argv)
    except SystemExit as exit_:  # argparse's own usage errors
        got = exit_.code
    err = capsys.readouterr().err
    assert got == code and "Traceback" not in err
    assert message in err.strip().splitlines()[-1] and err.strip().splitlines()[-1].startswith("sglab")


def test_resume_with_profile_continues_instead_of_restarting(tmp_path):
    out = tmp_path / "run"
    base = ["train", "--eval-every", "4", "--batch-size", "32", "--synth-width", "32", "--limit-train", "200",
            "--out", str(out), "--no-progress"]
    assert main(base + ["--steps", "8"]) == 0
    assert main(["train", "--resume", "--out", str(out), "--steps", "16", "--profile", "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 16 and json.loads((out / "config.json").read_text())["resumed"][0]["resumed_at_step"] == 8
    steps = sorted(set(pd.read_csv(out / "trace.csv")["step"]))
    assert len(steps) == 8  # the profile timed the 8 new steps only
    assert main(["train", "--resume", "--out", str(out), "--lr", "1.0", "--no-progress"]) == 2


def test_demo_with_no_steps_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["demo", "--steps", "0"])
    assert exit_.value.code == 2 and "--steps: must be an integer >= 1" in capsys.readouterr().err
