"""End-to-end training runs on tiny data: every method learns, runs are reproducible, bad input is caught."""

import json
import math

import pandas as pd
import pytest

from sglab.methods import METHODS
from sglab.train import ConfigError, TrainConfig, TrainingDiverged, train
from sglab.train.run_dir import RunDir


def tiny(method, **overrides):
    base = dict(method=method, layers=3, width=32, synth_width=32, channels=8, batch_size=32, steps=60,
                eval_every=30, log_every=5, lr=3e-3, device="cpu", dataset="patterns")
    return TrainConfig(**{**base, **overrides})


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("model", ["fcn", "cnn"])
def test_every_method_runs_end_to_end_and_lowers_the_loss(method, model, patterns, tmp_path):
    config = tiny(method, model=model, steps=200 if model == "cnn" else 80, update_prob=0.5 if method == "stochastic" else None)
    result = train(config, tmp_path, progress=False, dataset=patterns)
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    losses = metrics[metrics.kind == "train"].loss.to_numpy()
    assert result.summary["status"] == "completed"
    # Completely unlocked networks learn slowest (every stage starts from a synthetic input).
    factor = 0.97 if METHODS[method].synthetic_inputs else 0.9
    assert losses[-3:].mean() < factor * losses[:3].mean(), f"{method} did not lower its training loss: {losses}"
    if METHODS[method].synthetic_gradients:
        assert {"synth_loss_0", "synth_loss_1"} <= set(metrics.columns)


def test_run_directory_holds_config_metrics_summary_and_checkpoint(patterns, tmp_path):
    train(tiny("dni"), tmp_path, progress=False, dataset=patterns)
    record = json.loads((tmp_path / "config.json").read_text())
    assert record["seed"] == 0 and record["device"] == "cpu"
    assert record["config"]["method"] == "dni" and "torch" in record["versions"]
    assert (tmp_path / "checkpoint.pt").exists()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert 0 <= summary["final_test_error"] <= 1
    evals = pd.read_csv(tmp_path / "metrics.csv").query("kind == 'eval'")
    assert list(evals.step) == [30, 60]


def test_same_seed_gives_identical_metrics(patterns, tmp_path):
    columns = ["step", "loss", "train_error", "synth_loss_0", "synth_loss_1"]
    runs = [train(tiny("cdni"), tmp_path / str(i), progress=False, dataset=patterns) for i in range(2)]
    a, b = (pd.DataFrame(r.metrics)[columns] for r in runs)
    pd.testing.assert_frame_equal(a, b)
    other = train(tiny("cdni", seed=1), tmp_path / "other", progress=False, dataset=patterns)
    assert not pd.DataFrame(other.metrics)[columns].equals(a)


def test_resume_continues_exactly_where_the_uninterrupted_run_would_be(patterns, tmp_path):
    full = train(tiny("dni", steps=60), tmp_path / "full", progress=False, dataset=patterns)
    train(tiny("dni", steps=30), tmp_path / "cut", progress=False, dataset=patterns)
    resumed = train(tiny("dni", steps=60), tmp_path / "cut", progress=False, dataset=patterns, resume=True)
    columns = ["step", "loss", "synth_loss_0"]
    pd.testing.assert_frame_equal(pd.DataFrame(full.metrics)[columns], pd.DataFrame(resumed.metrics)[columns])


def test_resume_with_a_different_config_names_the_field(patterns, tmp_path):
    train(tiny("dni", steps=30), tmp_path, progress=False, dataset=patterns)
    with pytest.raises(ConfigError, match="differs from the checkpoint in lr"):
        train(tiny("dni", steps=60, lr=1.0), tmp_path, progress=False, dataset=patterns, resume=True)


def test_nan_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(patterns, tmp_path):
    # Sane until step 25, then the learning rate jumps by 1e7: the run must stop there.
    config = tiny("bprop", steps=200, eval_every=10, lr_milestones=[25], lr_gamma=1e7, divergence_loss=50.0)
    with pytest.raises(TrainingDiverged, match=r"at step (\d+).*last good checkpoint \(step (\d+)\)"):
        train(config, tmp_path, progress=False, dataset=patterns)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "diverged"
    checkpoint = RunDir(tmp_path).load_checkpoint()
    assert checkpoint["step"] < summary["diverged_at_step"]
    assert all(math.isfinite(p.abs().sum().item()) for p in checkpoint["stages"].values())


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("model", "rnn", "'model' must be 'fcn' or 'cnn'"),
        ("method", "magic", "'method' must be one of"),
        ("layers", 0, "'layers' must be >= 1"),
        ("batch_size", 1, "batch norm needs 2 examples"),
        ("update_prob", 1.5, "'update_prob' must be in"),
        ("device", "tpu", "'device' must be auto, cpu or cuda"),
    ],
)
def test_bad_config_values_name_their_field(field, value, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**{field: value}).validate()


def test_unknown_config_field_is_named():
    with pytest.raises(ConfigError, match="unknown config field.*colour"):
        TrainConfig.from_dict({"colour": "red"})


def test_batch_larger_than_dataset_is_a_clear_error(patterns, tmp_path):
    with pytest.raises(ConfigError, match="batch_size 4096 is larger than the 512 training examples"):
        train(tiny("bprop", batch_size=4096), tmp_path, progress=False, dataset=patterns)


def test_cuda_request_without_cuda_is_a_clear_error(patterns, tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="no CUDA device"):
        train(tiny("bprop", device="cuda"), tmp_path, progress=False, dataset=patterns)
