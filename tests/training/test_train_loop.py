"""The one training loop on the classification task: every method learns, runs repeat, resume is bitwise."""

import json
import math

import pandas as pd
import pytest
import torch

from sglab.config import ConfigError
from sglab.errors import SglabError
from sglab.methods import METHODS, method_names
from sglab.training import ClassifyConfig, CopyConfig, TrainingDiverged, train
from sglab.training.run_dir import RunDir


def tiny(method, **overrides):
    base = dict(method=method, layers=3, width=32, synth_width=32, channels=8, batch_size=32, steps=60,
                eval_every=30, log_every=5, lr=3e-3, device="cpu", dataset="patterns")
    return ClassifyConfig(**{**base, **overrides})


def strict_json(path):
    def refuse(name):
        raise ValueError(f"{path} holds {name}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def tensors(state, prefix=""):
    """Every tensor in a nested checkpoint state, by path."""
    if torch.is_tensor(state):
        return {prefix: state}
    items = state.items() if isinstance(state, dict) else enumerate(state) if isinstance(state, (list, tuple)) else []
    found = {}
    for key, value in items:
        found.update(tensors(value, f"{prefix}/{key}"))
    return found


def assert_same_run(a_dir, b_dir):
    """Every metric column but time and every checkpoint tensor bitwise equal."""
    a, b = (pd.read_csv(d / "metrics.csv").drop(columns=["time_s"]) for d in (a_dir, b_dir))
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    ta, tb = (tensors(RunDir(d).load_checkpoint()["session"]) for d in (a_dir, b_dir))
    assert ta.keys() == tb.keys()
    for key in ta:
        assert torch.equal(ta[key], tb[key]), key


@pytest.mark.parametrize("method", method_names("train"))
@pytest.mark.parametrize("model", ["fcn", "cnn"])
def test_every_method_runs_end_to_end_and_lowers_the_loss(method, model, patterns, tmp_path):
    config = tiny(method, model=model, steps=200 if model == "cnn" else 80,
                  update_prob=0.5 if method == "stochastic" else None)
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
    record = strict_json(tmp_path / "config.json")
    assert record["task"] == "classify" and record["seed"] == 0 and record["device"] == "cpu"
    assert record["config"]["method"] == "dni" and "torch" in record["versions"]
    assert record["data"]["input_shape"] == [1, 8, 8]
    summary = strict_json(tmp_path / "summary.json")
    assert 0 <= summary["final_test_error"] <= 1 and summary["checkpoint_step"] == 60
    evals = pd.read_csv(tmp_path / "metrics.csv").query("kind == 'eval'")
    assert list(evals.step) == [30, 60]
    assert RunDir(tmp_path).load_checkpoint()["step"] == 60


def test_same_seed_gives_identical_runs_and_another_seed_does_not(patterns, tmp_path):
    for name in ("a", "b"):
        train(tiny("cdni"), tmp_path / name, progress=False, dataset=patterns)
    assert_same_run(tmp_path / "a", tmp_path / "b")
    other = train(tiny("cdni", seed=1), tmp_path / "other", progress=False, dataset=patterns)
    first = pd.read_csv(tmp_path / "a" / "metrics.csv")
    assert not first.loss.equals(pd.DataFrame(other.metrics).loss)


@pytest.mark.parametrize("method", method_names("train"))
def test_resume_is_bitwise_the_uninterrupted_run(method, patterns, tmp_path):
    config = tiny(method, steps=40, eval_every=10, log_every=3, update_prob=0.5 if method == "stochastic" else None)
    train(config, tmp_path / "full", progress=False, dataset=patterns)
    train(tiny(method, steps=20, eval_every=10, log_every=3, update_prob=config.update_prob), tmp_path / "cut",
          progress=False, dataset=patterns)
    train(config, tmp_path / "cut", progress=False, dataset=patterns, resume=True)
    assert_same_run(tmp_path / "full", tmp_path / "cut")
    record = strict_json(tmp_path / "cut" / "config.json")
    assert record["config"]["steps"] == 40 and record["resumed"][0]["resumed_at_step"] == 20
    assert strict_json(tmp_path / "cut" / "summary.json")["steps"] == 40


def test_resume_without_a_checkpoint_is_an_error(patterns, tmp_path):
    with pytest.raises(SglabError, match="does not exist"):
        train(tiny("dni"), tmp_path / "nowhere", progress=False, dataset=patterns, resume=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SglabError, match="holds no checkpoint.pt"):
        train(tiny("dni"), tmp_path / "empty", progress=False, dataset=patterns, resume=True)


def test_resume_names_every_field_that_differs_and_refuses_fewer_steps(patterns, tmp_path):
    train(tiny("dni", steps=30), tmp_path, progress=False, dataset=patterns)
    with pytest.raises(ConfigError, match=r"lr \(checkpoint 0.003, asked 1.0\), layers \(checkpoint 3, asked 4\)"):
        train(tiny("dni", steps=60, lr=1.0, layers=4), tmp_path, progress=False, dataset=patterns, resume=True)
    with pytest.raises(ConfigError, match="checkpoint is at step 30, past steps=20"):
        train(tiny("dni", steps=20), tmp_path, progress=False, dataset=patterns, resume=True)


def test_nan_loss_stops_keeps_a_finite_checkpoint_and_writes_the_metrics(patterns, tmp_path):
    # Sane until step 25, then the learning rate jumps by 1e7: the run must stop soon after.
    config = tiny("bprop", steps=200, eval_every=10, lr_milestones=[25], lr_gamma=1e7, divergence_loss=50.0)
    with pytest.raises(TrainingDiverged, match=r"at step (\d+).*last good checkpoint \(step (\d+)\)"):
        train(config, tmp_path, progress=False, dataset=patterns)
    summary = strict_json(tmp_path / "summary.json")
    assert summary["status"] == "diverged" and summary["checkpoint_step"] < summary["diverged_at_step"]
    checkpoint = RunDir(tmp_path).load_checkpoint()
    assert checkpoint["step"] == summary["checkpoint_step"] <= 20
    assert all(torch.isfinite(t).all() for t in tensors(checkpoint["session"]["modules"]).values())
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert metrics.step.max() == summary["diverged_at_step"]


def test_a_runaway_synthesizer_stops_the_run_even_while_the_task_loss_is_sane(tmp_path):
    # synth_scale 0 keeps the synthetic gradient out of the network, so only the synthesizer's
    # own regression, at an absurd lr, can go wrong: Adam's first steps overshoot its targets.
    config = CopyConfig(method="dni", truncation=2, bits=2, hidden=8, batch_size=4, steps=50, eval_every=10,
                        synth_scale=0.0, synth_lr=10.0, divergence_loss=50.0, device="cpu")
    with pytest.raises(TrainingDiverged, match=r"synthesizer's loss \(synth_loss\) became .* smaller --synth-lr \(now 10\)"):
        train(config, tmp_path, progress=False)
    summary = strict_json(tmp_path / "summary.json")
    assert summary["status"] == "diverged"
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    last = metrics[metrics.step == summary["diverged_at_step"]].iloc[0]
    assert last.synth_loss > 50.0 and last.loss < 50.0


def test_weights_that_break_after_the_last_loss_are_never_checkpointed(patterns, tmp_path):
    # The jump happens in the update of step 30 itself: step 30's training loss is still sane,
    # but the evaluation at step 30 sees the broken weights, so no checkpoint is written at 30.
    config = tiny("bprop", steps=60, eval_every=10, lr_milestones=[29], lr_gamma=1e8, divergence_loss=50.0)
    with pytest.raises(TrainingDiverged):
        train(config, tmp_path, progress=False, dataset=patterns)
    assert RunDir(tmp_path).load_checkpoint()["step"] == 20


def test_a_crashed_writes_temporary_files_are_removed_on_the_next_start(patterns, tmp_path):
    leftover = tmp_path / ".checkpoint.pt.abc123.tmp"
    tmp_path.mkdir(exist_ok=True)
    leftover.write_bytes(b"half a checkpoint")
    train(tiny("bprop", steps=10, eval_every=10), tmp_path, progress=False, dataset=patterns)
    assert not leftover.exists()


def test_mixed_unlocking_that_always_waits_updates_the_stages_like_backprop(patterns, tmp_path):
    """``unlock_prob=0``: every interface waits for the true gradient, so the stages' weights follow bprop's."""
    train(tiny("bprop", steps=20), tmp_path / "bprop", progress=False, dataset=patterns)
    train(tiny("mixed", steps=20, unlock_prob=0.0), tmp_path / "mixed", progress=False, dataset=patterns)
    modules = {name: RunDir(tmp_path / name).load_checkpoint()["session"]["modules"] for name in ("bprop", "mixed")}
    for stage in ("stage0", "stage1", "stage2"):
        for key, value in modules["bprop"][stage].items():
            assert torch.equal(value, modules["mixed"][stage][key]), (stage, key)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("model", "rnn", "'model' must be one of fcn, cnn"),
        ("method", "magic", "unknown method 'magic'"),
        ("method", "ddg", "cannot run method 'ddg'.*runs in: the simulator"),
        ("layers", 0, "'layers' must be >= 1"),
        ("layers", "3", "'layers' must be an integer, got '3'"),
        ("steps", 2.5, "'steps' must be an integer, got 2.5"),
        ("batch_size", 1, "'batch_size' must be >= 2"),
        ("eval_batch_size", 0, "'eval_batch_size' must be >= 1"),
        ("update_prob", 1.5, "'update_prob' must be <= 1"),
        ("synth_loss_weight", -1.0, "'synth_loss_weight' must be >= 0"),
        ("lr_gamma", 0.0, "'lr_gamma' must be > 0"),
        ("divergence_loss", -1.0, "'divergence_loss' must be > 0"),
        ("device", "tpu", "'device' must be auto, cpu, cuda or cuda:N"),
    ],
)
def test_bad_config_values_name_their_field(field, value, message):
    base = {"method": "stochastic"} if field == "update_prob" else {}
    with pytest.raises(ConfigError, match=message):
        ClassifyConfig(**{**base, field: value})


def test_probabilities_of_other_methods_are_refused():
    with pytest.raises(ConfigError, match="'update_prob' applies to methods with synthetic gradients"):
        ClassifyConfig(method="bprop", update_prob=0.5)


def test_unknown_config_field_is_named():
    from sglab.training import make_config

    with pytest.raises(ConfigError, match="unknown classify config field.*colour"):
        make_config("classify", {"colour": "red"})


def test_batch_larger_than_dataset_is_a_clear_error(patterns, tmp_path):
    with pytest.raises(ConfigError, match="batch_size 4096 is larger than the 512 training examples"):
        train(tiny("bprop", batch_size=4096), tmp_path, progress=False, dataset=patterns)


def test_cuda_request_without_cuda_is_a_clear_error(patterns, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="no CUDA device"):
        train(tiny("bprop", device="cuda"), tmp_path, progress=False, dataset=patterns)


def test_out_naming_a_file_is_one_clear_error(patterns, tmp_path):
    target = tmp_path / "a-file"
    target.write_text("not a directory")
    with pytest.raises(SglabError, match="is a file, not a run directory"):
        train(tiny("bprop"), target, progress=False, dataset=patterns)
    assert math.isfinite(1.0)


def test_mixed_unlocking_with_stochastic_updates_runs(patterns, tmp_path):
    """A locked interface whose upper stage skips its update that step uses the synthetic gradient."""
    result = train(tiny("mixed", layers=4, update_prob=0.5, steps=30), tmp_path, progress=False, dataset=patterns)
    assert result.summary["status"] == "completed"


def test_a_validation_split_is_held_out_and_scored_at_every_evaluation(tmp_path):
    from sglab.data import load_dataset
    from sglab.training.classify import ClassifySession

    config = tiny("dni", dataset="embedded", validation=0.2, steps=20, eval_every=10)
    session = ClassifySession(config, torch.device("cpu"))
    full = load_dataset("embedded")
    assert len(session.x_val) + len(session.x_train) == len(full.x_train)
    assert len(session.x_val) == round(0.2 * len(full.x_train))
    assert len(session.x_test) == len(full.x_test)  # the test set is untouched
    result = train(config, tmp_path, progress=False)
    evals = pd.read_csv(tmp_path / "metrics.csv").query("kind == 'eval'")
    assert len(evals) == 2 and evals["val_error"].between(0, 1).all()
    assert result.summary["final_val_error"] == evals["val_error"].iloc[-1]
    assert "final_val_error" not in train(tiny("dni", dataset="embedded", steps=10), tmp_path / "none",
                                          progress=False).summary
