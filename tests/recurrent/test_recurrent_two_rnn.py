"""Two RNNs talking through a DNI: targets, op order (who waits for whom), learning on a tiny setting."""

from __future__ import annotations

import pytest
import torch
from recurrent_helpers import TINY_TWO_RNN, OpRecorder, fake_digits

from sglab.config import ConfigError
from sglab.tasks.two_rnn import majority_rate_b, make_episodes
from sglab.training import TwoRNNConfig, train
from sglab.training.build import build_two_rnn


def test_episode_targets():
    images = torch.arange(10, dtype=torch.float32)[:, None].expand(10, 784)
    labels = torch.arange(10)
    episodes = make_episodes(images, labels, 3, 2, 5, torch.Generator().manual_seed(0))
    digits = episodes.digits[:, :, 0].long()  # each image carries its label as its pixels
    assert episodes.digits.shape == (6, 5, 784)
    for b in range(5):
        seq = digits[:, b].tolist()
        assert episodes.threes_so_far[:, b].tolist() == [sum(d == 3 for d in seq[: t + 1]) for t in range(6)]
        assert episodes.odd_in_window[:, b].tolist() == [sum(d % 2 for d in seq[0:3]), sum(d % 2 for d in seq[3:6])]


@pytest.mark.parametrize("method, expected", [
    # DNI (with or without B's target as context): A runs F S B U at once; B's true gradient only
    # trains A's synthesizer afterwards (0T0, after 1B0).
    ("cdni", "0F0 0S0 0B0 0U0 1F0 1B0 0T0 1U0"),
    ("dni", "0F0 0S0 0B0 0U0 1F0 1B0 0T0 1U0"),
    # Backprop: A's backward waits for B's forward and backward.
    ("bprop", "0F0 1F0 1B0 0B0 0U0 1U0"),
    # No gradient from B: A has nothing to wait for.
    ("nobprop", "0F0 0B0 0U0 1F0 1B0 1U0"),
])
def test_op_order_shows_who_waits(method, expected):
    runner = build_two_rnn(TwoRNNConfig(method=method, **{**TINY_TWO_RNN, "b_ticks": 1}), 784)
    images, labels = fake_digits(20, 0)
    recorder = OpRecorder()
    runner.train_step(make_episodes(images, labels, 2, 1, 4, torch.Generator().manual_seed(0)), observer=recorder)
    assert recorder.actions == expected.split()
    order = recorder.actions.index
    assert (order("0B0") > order("1B0")) == (method == "bprop")


def test_only_cdni_shows_the_synthesizer_b_s_target():
    runners = {m: build_two_rnn(TwoRNNConfig(method=m, **TINY_TWO_RNN), 784) for m in ("cdni", "dni")}
    widths = {m: runner.synthesizer.context_dim for m, runner in runners.items()}
    assert widths == {"cdni": TINY_TWO_RNN["tick_ratio"] + 1, "dni": 0}
    assert build_two_rnn(TwoRNNConfig(method="bprop", **TINY_TWO_RNN), 784).synthesizer is None


@pytest.mark.slow
def test_b_learns_through_the_dni_and_fails_without_gradient_from_b(tmp_path, fake_mnist):
    results = {}
    for method in ("cdni", "nobprop"):
        output = train(TwoRNNConfig(method=method, steps=200, **TINY_TWO_RNN), tmp_path / method, progress=False)
        results[method] = output.summary
        evals = [row for row in output.metrics if row["kind"] == "eval"]
        assert [row["step"] for row in evals] == [100, 200]
        assert output.summary["test_accuracy_b"] == evals[-1]["test_accuracy_b"]
    assert majority_rate_b(TINY_TWO_RNN["tick_ratio"]) == results["cdni"]["chance_b"] == 0.5
    assert results["cdni"]["test_accuracy_a"] > 0.8  # A counts its 3s either way
    assert results["nobprop"]["test_accuracy_a"] > 0.8
    assert results["cdni"]["test_accuracy_b"] > 0.8
    assert results["nobprop"]["test_accuracy_b"] < results["cdni"]["test_accuracy_b"] - 0.2


@pytest.mark.parametrize("changes, field", [
    ({"method": "dni-aux"}, "method"), ({"tick_ratio": 0}, "tick_ratio"), ({"lr": -1.0}, "lr"),
    ({"synth_scale": -1.0}, "synth_scale"), ({"b_ticks": 0}, "b_ticks"),
])
def test_bad_two_rnn_settings_are_rejected_clearly(changes, field):
    with pytest.raises(ConfigError, match=f"'{field}'"):
        TwoRNNConfig(**changes)
