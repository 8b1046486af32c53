"""``sglab train --task copy | repeat-copy | charlm | two-rnn``: run directories and clear errors."""

from __future__ import annotations

import argparse
import json

import pandas as pd
import pytest

from sglab.cli import train as train_cli
from sglab.training import CopyConfig, TwoRNNConfig

TINY = ["--hidden", "8", "--batch-size", "4", "--no-progress"]


def text_file(tmp_path):
    """A small corpus for charlm runs."""
    path = tmp_path / "corpus.txt"
    path.write_text("the quick brown fox jumps over the lazy dog. " * 30)
    return path


def two_rnn_config_file(tmp_path):
    """A --config file with a two-RNN system small enough for tests (its sizes have no flags)."""
    path = tmp_path / "two_rnn.json"
    path.write_text(json.dumps({"hidden_a": 8, "hidden_b": 8, "message_size": 4, "encoder_hidden": 8, "b_ticks": 2,
                                "batch_size": 4, "eval_episodes": 16, "device": "cpu"}))
    return path


def read_run(out):
    """config.json, metrics.csv and summary.json of a run directory."""
    config = json.loads((out / "config.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    return config, pd.read_csv(out / "metrics.csv"), summary


@pytest.mark.parametrize("task, method", [("copy", "nobprop"), ("repeat-copy", "dni-aux")])
def test_copy_tasks_write_a_run_directory(tmp_path, task, method, capsys, sglab_main):
    out = tmp_path / "run"
    argv = ["train", "--task", task, "--method", method, "-T", "2", "--steps", "6", "--bits", "2", "--seed", "3"]
    assert sglab_main(argv + TINY + ["--out", str(out)]) == 0
    config, metrics, summary = read_run(out)
    assert config["task"] == task and config["seed"] == 3 and "versions" in config
    assert config["config"]["method"] == method and config["config"]["truncation"] == 2
    assert config["config"]["repeat"] == (task == "repeat-copy")
    assert list(metrics.kind) == ["train"] * 6 and list(metrics.step) == list(range(1, 7))
    assert {"length", "bit_errors", "loss", "updates", "time_s"} <= set(metrics.columns)
    # 10 batches must average under 0.15 bits wrong before N = 1 counts as solved: 6 steps cannot
    assert (summary["task"], summary["longest_solved"], summary["final_length"]) == (task, 0, 1)
    assert summary["checkpoint_step"] == 6 and (out / "checkpoint.pt").exists()
    assert "longest length solved 0" in capsys.readouterr().out


def test_curriculum_lengthens_and_the_run_stops_once_max_length_is_solved(tmp_path, sglab_main):
    out = tmp_path / "easy"
    # every batch is "solved" under a threshold of 100 bits, so N grows by one per step up to 4
    argv = ["train", "--task", "copy", "--method", "dni", "--bits", "2", "--solved-threshold", "100",
            "--solved-window", "1", "--max-length", "4", "--steps", "50"]
    assert sglab_main(argv + TINY + ["--out", str(out)]) == 0
    _, metrics, summary = read_run(out)
    assert list(metrics.length) == [1, 2, 3, 4] and metrics.solved.all()
    assert (summary["steps"], summary["longest_solved"], summary["reached_max_length"]) == (4, 4, True)
    assert summary["updates"] == int(metrics.updates.sum()) == sum(-(-(2 * n + 1) // 5) for n in (1, 2, 3, 4))


def test_charlm_writes_bits_per_character(tmp_path, sglab_main):
    out = tmp_path / "lm"
    argv = ["train", "--task", "charlm", "--text", str(text_file(tmp_path)), "-T", "3", "--steps", "5",
            "--seq-len", "6"]
    assert sglab_main(argv + TINY + ["--eval-every", "2", "--out", str(out)]) == 0
    config, metrics, summary = read_run(out)
    assert set(metrics.kind) == {"train", "eval"}
    assert list(metrics[metrics.kind == "eval"].step) == [2, 4, 5]
    assert metrics[metrics.kind == "train"].bpc.notna().all()
    assert 0 < summary["valid_bpc"] < 8 and summary["method"] == "dni"  # no --method means dni
    assert summary["valid_bpc"] == metrics[metrics.kind == "eval"].valid_bpc.iloc[-1]
    assert summary["chars_seen"] == 5 * 6 * 4 and config["data"]["vocab_size"] == summary["vocab_size"]


@pytest.mark.parametrize("flags, method", [(["--no-b-gradient"], "nobprop"), (["--no-synth-context"], "dni"),
                                           ([], "cdni"), (["--method", "bprop"], "bprop")])
def test_two_rnn_methods_and_tick_ratio(tmp_path, sglab_main, fake_mnist, flags, method):
    out = tmp_path / "two"
    argv = ["train", "--task", "two-rnn", *flags, "--tick-ratio", "2", "--steps", "3", "--eval-every", "3"]
    assert sglab_main(argv + ["--config", str(two_rnn_config_file(tmp_path)), "--out", str(out), "--no-progress"]) == 0
    config, metrics, summary = read_run(out)
    assert config["config"]["method"] == method and config["config"]["tick_ratio"] == 2
    evals = metrics[metrics.kind == "eval"]
    assert list(evals.step) == [3] and {"test_accuracy_a", "test_accuracy_b", "test_loss_b"} <= set(evals.columns)
    assert summary["chance_b"] == 0.5 and summary["method"] == method
    assert metrics[metrics.kind == "train"].synth_loss.notna().all() == method.endswith("dni")


@pytest.mark.parametrize("argv, message", [
    (["--task", "copy", "--bits", "0"], "'bits' must be >= 1"),
    (["--task", "copy", "--method", "cdni"], "cannot run method 'cdni'"),
    (["--task", "copy", "-T", "0"], "'truncation'"),
    (["--task", "copy", "--min-length", "9", "--max-length", "3"], "'max_length'"),
    (["--task", "repeat-copy", "--max-repeats", "0"], "'max_repeats'"),
    (["--task", "charlm"], "--text"),
    (["--task", "charlm", "--text", "/nonexistent.txt"], "no such text file"),
    (["--task", "two-rnn", "-T", "3"], "--truncation does not apply to --task two-rnn"),
    (["--task", "two-rnn", "--method", "dni-aux"], "cannot run method 'dni-aux'"),
    (["--task", "copy", "--method", "nobprop", "--aux"], "--aux"),
    (["--task", "two-rnn", "--method", "bprop", "--no-b-gradient"], "--no-b-gradient"),
])
def test_bad_task_parameters_exit_with_a_clear_message(tmp_path, capsys, sglab_main, argv, message):
    assert sglab_main(["train", *argv, "--out", str(tmp_path / "bad"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sglab train: error: ") and message in err
    assert not (tmp_path / "bad" / "summary.json").exists()


def test_build_config_from_the_train_subcommand_alone():
    """The train subcommand's own parser is enough to build configs (no other subcommand needed)."""
    parser = argparse.ArgumentParser()
    train_cli.register(parser.add_subparsers())
    parse = lambda *argv: train_cli.build_config(parser.parse_args(["train", *argv]))  # noqa: E731
    config = parse("--task", "repeat-copy", "--aux", "-T", "4", "--clip", "0", "--synth-scale", "0.5")
    assert isinstance(config, CopyConfig) and config.repeat
    assert (config.method, config.truncation, config.clip, config.synth_scale) == ("dni-aux", 4, None, 0.5)
    two = parse("--task", "two-rnn", "--method", "bprop", "--tick-ratio", "3")
    assert isinstance(two, TwoRNNConfig)
    assert (two.method, two.tick_ratio, two.resolved_method().gradient) == ("bprop", 3, "true")
