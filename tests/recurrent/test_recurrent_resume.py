"""``sglab train ... --resume`` continues a recurrent run and ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from test_recurrent_cli import text_file, two_rnn_config_file

from sglab.exec.observe import Observer
from sglab.training import CopyConfig, train

COPY = ["--bits", "2", "--hidden", "8", "--batch-size", "4", "-T", "2", "--solved-window", "2", "--max-length", "20"]
#: Thresholds under which these tiny runs solve a length every few batches, so the curriculum's
#: window and length are part of what resumes (repeat-copy makes more errors per sequence).
THRESHOLD = {"copy": "2.5", "repeat-copy": "6"}


def _task_flags(task, tmp_path):
    if task in ("copy", "repeat-copy"):
        return COPY + ["--solved-threshold", THRESHOLD[task]]
    if task == "charlm":
        return ["--text", str(text_file(tmp_path)), "--seq-len", "5", "--hidden", "8", "--batch-size", "3", "-T", "2"]
    return ["--tick-ratio", "2", "--config", str(two_rnn_config_file(tmp_path))]


def _assert_same(got, want, where: str = "checkpoint") -> None:
    """Equal structures, tensors equal bitwise (dtype and values)."""
    if torch.is_tensor(want):
        assert torch.is_tensor(got) and got.dtype == want.dtype and torch.equal(got, want), where
    elif isinstance(want, dict):
        assert got.keys() == want.keys(), where
        for key in want:
            _assert_same(got[key], want[key], f"{where}[{key!r}]")
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            _assert_same(g, w, f"{where}[{i}]")
    else:
        assert got == want or (got != got and want != want), f"{where}: {got!r} != {want!r}"  # NaN == NaN here


def _without_times(rows):
    return [{k: v for k, v in row.items() if k != "time_s"} for row in rows]


@pytest.mark.parametrize("task, method", [
    ("copy", "dni"), ("copy", "nobprop"), ("repeat-copy", "dni"), ("repeat-copy", "dni-aux"),
    ("charlm", "dni"), ("charlm", "nobprop"), ("two-rnn", "cdni"), ("two-rnn", "bprop"),
])
def test_resume_gives_the_uninterrupted_result_bitwise(tmp_path, sglab_main, fake_mnist, task, method):
    flags = ["train", "--task", task, "--method", method, *_task_flags(task, tmp_path), "--eval-every", "2",
             "--no-progress"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert sglab_main(flags + ["--steps", "6", "--out", str(whole)]) == 0
    # stopped at step 3, off the evaluation grid: its last rows exist only because it ended there
    assert sglab_main(flags + ["--steps", "3", "--out", str(parts)]) == 0
    assert sglab_main(["train", "--resume", "--steps", "6", "--out", str(parts), "--no-progress"]) == 0

    metrics = {name: pd.read_csv(path / "metrics.csv").drop(columns="time_s")
               for name, path in (("whole", whole), ("parts", parts))}
    pd.testing.assert_frame_equal(metrics["parts"], metrics["whole"], check_exact=True)
    summaries = [json.loads((path / "summary.json").read_text()) for path in (parts, whole)]
    _assert_same(*[{k: v for k, v in s.items() if k != "train_time_s"} for s in summaries], where="summary")
    got, want = (torch.load(path / "checkpoint.pt", weights_only=False) for path in (parts, whole))
    _assert_same(got["session"], want["session"], "checkpoint['session']")
    _assert_same(_without_times(got["metrics"]), _without_times(want["metrics"]), "checkpoint['metrics']")
    assert (got["step"], got["config"]) == (want["step"], want["config"])
    assert [h["resumed_at_step"] for h in json.loads((parts / "config.json").read_text())["resumed"]] == [3]
    # the run did learn something between the checkpoints, so equal tensors are not equal by accident
    assert metrics["whole"].loss.nunique() > 1
    if task in THRESHOLD:
        assert metrics["whole"].length.nunique() > 1  # the curriculum moved


class _CtrlC(Observer):
    """Interrupts training as the runner starts its ``at``-th step (counted from 0), like Ctrl-C would."""

    def __init__(self, at: int):
        self.at = at

    def begin_step(self, step: int) -> None:
        if step == self.at:
            raise KeyboardInterrupt


def test_a_run_interrupted_mid_way_resumes_from_its_last_checkpoint_bitwise(tmp_path):
    config = CopyConfig(method="dni", truncation=2, bits=2, hidden=8, batch_size=4, steps=6, eval_every=2,
                        threshold=2.5, window=2, device="cpu")
    whole = train(config, tmp_path / "whole", progress=False)
    with pytest.raises(KeyboardInterrupt):  # during step 5, after step 4's checkpoint
        train(config, tmp_path / "parts", progress=False, observer=_CtrlC(at=4))
    assert torch.load(tmp_path / "parts" / "checkpoint.pt", weights_only=False)["step"] == 4
    resumed = train(config, tmp_path / "parts", resume=True, progress=False)
    _assert_same(_without_times(resumed.metrics), _without_times(whole.metrics), "metrics")
    got, want = (torch.load(tmp_path / name / "checkpoint.pt", weights_only=False)["session"]
                 for name in ("parts", "whole"))
    _assert_same(got, want, "checkpoint['session']")
