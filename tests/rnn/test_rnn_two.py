"""Two RNNs talking through a DNI: targets, op order (who waits for whom), learning on a tiny setting."""

from __future__ import annotations

import contextlib

import pytest
import torch

from sglab.errors import SglabError
from sglab.rnn.two_rnn import TwoRNNConfig, TwoRNNSystem, make_episodes, majority_rate_b, train_two_rnn


def _fake_digits(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ten fixed random "digit" patterns plus noise: learnable in seconds, no MNIST needed."""
    prototypes = (torch.rand(10, 784, generator=torch.Generator().manual_seed(99)) > 0.5).float()
    labels = torch.arange(n) % 10
    return prototypes[labels] + 0.3 * torch.rand(n, 784, generator=torch.Generator().manual_seed(seed)), labels


TINY = dict(tick_ratio=2, b_ticks=3, hidden_a=16, hidden_b=8, message_size=4, encoder_hidden=16, lr=3e-3, batch_size=16, eval_every=100, eval_episodes=128)


def test_episode_targets():
    config = TwoRNNConfig(tick_ratio=3, b_ticks=2)
    images = torch.arange(10, dtype=torch.float32)[:, None].expand(10, 784)
    labels = torch.arange(10)
    episodes = make_episodes(images, labels, config, 5, torch.Generator().manual_seed(0))
    digits = episodes.digits[:, :, 0].long()  # each image carries its label as its pixels
    assert episodes.digits.shape == (6, 5, 784)
    for b in range(5):
        seq = digits[:, b].tolist()
        assert episodes.threes_so_far[:, b].tolist() == [sum(d == 3 for d in seq[: t + 1]) for t in range(6)]
        assert episodes.odd_in_window[:, b].tolist() == [sum(d % 2 for d in seq[0:3]), sum(d % 2 for d in seq[3:6])]


class _Trace:
    def __init__(self):
        self.actions = []

    def op(self, action):
        self.actions.append(str(action))
        return contextlib.nullcontext()


@pytest.mark.parametrize(
    "method, expected",
    [
        # DNI: A runs F S B U at once; B's true gradient only trains A's synthesizer afterwards (T).
        ("dni", ["0F0", "0S0", "0B0", "0U0", "1F0", "1B0", "1U0", "0T0"]),
        # Backprop: A's backward waits for B's forward and backward.
        ("bptt", ["0F0", "1F0", "1B0", "1U0", "0B0", "0U0"]),
        ("none", ["0F0", "1F0", "1B0", "1U0", "0B0", "0U0"]),
    ],
)
def test_op_order_shows_who_waits(method, expected):
    config = TwoRNNConfig(method=method, **{**TINY, "b_ticks": 1})
    system = TwoRNNSystem(config)
    images, labels = _fake_digits(20, 0)
    trace = _Trace()
    system.train_step(make_episodes(images, labels, config, 4, torch.Generator().manual_seed(0)), recorder=trace)
    assert trace.actions == expected


def test_b_learns_through_the_dni_and_fails_without_gradient_from_b():
    data = {"train": _fake_digits(200, 0), "test": _fake_digits(100, 1)}
    results = {}
    for method in ("dni", "none"):
        output = train_two_rnn(TwoRNNConfig(method=method, steps=200, **TINY), data=data)
        results[method] = output.summary
        tests = [row for row in output.metrics if row["split"] == "test"]
        assert {row["network"] for row in tests} == {"A", "B"} and tests[0]["step"] == 0
    majority = majority_rate_b(TwoRNNConfig(**TINY))
    assert majority == 0.5
    assert results["dni"]["test_accuracy_a"] > 0.8  # A counts its 3s either way
    assert results["dni"]["test_accuracy_b"] > 0.8
    assert results["none"]["test_accuracy_b"] < results["dni"]["test_accuracy_b"] - 0.2


@pytest.mark.parametrize(
    "changes, words",
    [({"method": "dni-aux"}, "method"), ({"tick_ratio": 0}, "tick_ratio"), ({"lr": -1.0}, "learning rates"), ({"synth_scale": -1.0}, "synth_scale")],
)
def test_bad_two_rnn_settings_are_rejected_clearly(changes, words):
    with pytest.raises(SglabError, match=words):
        TwoRNNConfig(**changes).validate()
