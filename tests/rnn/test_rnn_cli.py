"""``sglab train --task copy | repeat-copy | charlm | two-rnn``: run directories and clear errors."""

from __future__ import annotations

import argparse
import json

import pandas as pd
import pytest

from sglab.cli import main
from sglab.rnn import cli as rnn_cli
from sglab.rnn.runs import CopyRunConfig
from sglab.rnn.two_rnn import TwoRNNConfig


def _text(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("the quick brown fox jumps over the lazy dog. " * 30)
    return path


def _read(out):
    config = json.loads((out / "config.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    return config, pd.read_csv(out / "metrics.csv"), summary


@pytest.mark.parametrize("task, method", [("copy", "bptt"), ("repeat-copy", "dni-aux")])
def test_copy_tasks_write_a_run_directory(tmp_path, task, method, capsys):
    out = tmp_path / "run"
    code = main(["train", "--task", task, "--method", method, "-T", "2", "--steps", "6", "--bits", "2", "--hidden", "8", "--batch-size", "4", "--seed", "3", "--out", str(out), "--no-progress"])
    assert code == 0
    config, metrics, summary = _read(out)
    assert config["task"] == task and config["seed"] == 3 and "versions" in config["provenance"]
    assert config["config"]["training"]["method"] == method and config["config"]["training"]["truncation"] == 2
    assert list(metrics.step) == list(range(1, 7)) and {"length", "bit_errors", "loss"} <= set(metrics.columns)
    assert summary["task"] == task and summary["longest_solved"] >= 0
    assert "longest length solved" in capsys.readouterr().out


def test_charlm_writes_bits_per_character(tmp_path):
    out = tmp_path / "lm"
    argv = ["train", "--task", "charlm", "--text", str(_text(tmp_path)), "-T", "3", "--steps", "5", "--seq-len", "6"]
    assert main(argv + ["--hidden", "8", "--batch-size", "4", "--eval-every", "2", "--out", str(out), "--no-progress"]) == 0
    _, metrics, summary = _read(out)
    assert set(metrics.split) == {"train", "valid"}
    assert list(metrics[metrics.split == "valid"].step) == [2, 4, 5]
    assert 0 < summary["valid_bpc"] < 8 and summary["method"] == "dni"  # no --method means dni


def test_two_rnn_method_none_and_tick_ratio(tmp_path, monkeypatch):
    import torch

    from sglab.rnn import two_rnn

    images = torch.rand(40, 784)
    labels = torch.arange(40) % 10
    monkeypatch.setattr(two_rnn, "_digits", lambda split: (images, labels))  # no dataset needed
    out = tmp_path / "two"
    argv = ["train", "--task", "two-rnn", "--no-b-gradient", "--tick-ratio", "2", "--steps", "3", "--eval-every", "3"]
    assert main(argv + ["--batch-size", "4", "--hidden", "8", "--out", str(out), "--no-progress"]) == 0
    config, metrics, summary = _read(out)
    assert config["config"]["method"] == "none" and config["config"]["tick_ratio"] == 2
    assert set(metrics.network) == {"A", "B"} and summary["chance_b"] == 0.5


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--task", "copy", "--bits", "0"], "bits must be"),
        (["--task", "copy", "--method", "cdni"], "no method 'cdni'"),
        (["--task", "copy", "-T", "0"], "truncation"),
        (["--task", "copy", "--min-length", "9", "--max-length", "3"], "max_length"),
        (["--task", "repeat-copy", "--max-repeats", "0"], "max_repeats"),
        (["--task", "charlm"], "--text"),
        (["--task", "charlm", "--text", "/nonexistent.txt"], "no such text file"),
        (["--task", "two-rnn", "-T", "3"], "--tick-ratio"),
        (["--task", "two-rnn", "--method", "dni-aux"], "no method 'dni-aux'"),
        (["--task", "copy", "--method", "bptt", "--aux"], "--aux"),
    ],
)
def test_bad_task_parameters_exit_with_a_clear_message(tmp_path, capsys, argv, message):
    assert main(["train", *argv, "--out", str(tmp_path / "bad"), "--no-progress"]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "bad" / "summary.json").exists()


def test_build_config_without_the_lead_parser():
    """The module's own options are enough to build configs (a tiny harness, no sglab train)."""
    parser = argparse.ArgumentParser()
    for flag in ("--task", "--method", "--out", "--device"):
        parser.add_argument(flag)
    for flag in ("--steps", "--batch-size", "--seed", "--eval-every", "--synth-hidden-layers", "--synth-width"):
        parser.add_argument(flag, type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--no-progress", action="store_true")
    rnn_cli.add_arguments(parser)
    config = rnn_cli.build_config(parser.parse_args(["--task", "repeat-copy", "--aux", "-T", "4", "--clip", "0", "--synth-scale", "0.5"]))
    assert isinstance(config, CopyRunConfig) and config.repeat
    assert (config.training.method, config.training.truncation, config.training.clip, config.training.synth_scale) == ("dni-aux", 4, None, 0.5)
    two = rnn_cli.build_config(parser.parse_args(["--task", "two-rnn", "--method", "bptt", "--hidden", "12"]))
    assert isinstance(two, TwoRNNConfig) and (two.method, two.hidden_a, two.synth_context) == ("bptt", 12, True)
