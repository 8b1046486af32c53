"""What the probe tests share: tiny configs, fake digits, and the bitwise comparison of two runs."""

from __future__ import annotations

import pandas as pd
import torch

from sglab.training import ClassifyConfig, CopyConfig, TwoRNNConfig
from sglab.training.run_dir import RunDir


def tiny_classify(method, **overrides) -> ClassifyConfig:
    base = dict(method=method, layers=3, width=32, synth_width=32, channels=8, batch_size=32, steps=12, eval_every=6,
                log_every=2, lr=3e-3, device="cpu", dataset="patterns",
                update_prob=0.5 if method == "stochastic" else None)
    return ClassifyConfig(**{**base, **overrides})


def tiny_copy(method, **overrides) -> CopyConfig:
    base = dict(method=method, bits=3, max_length=6, hidden=16, batch_size=8, steps=12, window=3, truncation=3, lr=3e-3,
                eval_every=6, device="cpu")
    return CopyConfig(**{**base, **overrides})


def tiny_two_rnn(method, **overrides) -> TwoRNNConfig:
    base = dict(method=method, steps=8, batch_size=8, hidden_a=16, hidden_b=8, message_size=4, encoder_hidden=16,
                eval_every=4, eval_episodes=16, device="cpu")
    return TwoRNNConfig(**{**base, **overrides})


def fake_digits(n: int, seed: int, pixels: int = 784) -> tuple[torch.Tensor, torch.Tensor]:
    """Random 'images' whose label is readable from their first pixels, so A has something to learn."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    images = 0.1 * torch.rand(n, pixels, generator=g)
    images[torch.arange(n), labels] += 1.0
    return images, labels


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
    """Every metric column but time and every checkpoint tensor bitwise equal (as tests/training's)."""
    a, b = (pd.read_csv(d / "metrics.csv").drop(columns=["time_s"]) for d in (a_dir, b_dir))
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    ta, tb = (tensors(RunDir(d).load_checkpoint()["session"]) for d in (a_dir, b_dir))
    assert ta.keys() == tb.keys()
    for key in ta:
        assert torch.equal(ta[key], tb[key]), key
