"""Helpers of the profiler tests (a unique module name: several test folders have a conftest)."""

import numpy as np

from sglab.data import Dataset
from sglab.training.config import ClassifyConfig


def tiny_dataset(n_train=256, n_test=64, seed=0) -> Dataset:
    """Ten noisy 1x8x8 patterns: enough for shapes and a few training steps."""
    rng = np.random.default_rng(seed)
    prototypes = rng.random((10, 1, 8, 8)).astype(np.float32)

    def draw(n):
        y = rng.integers(0, 10, n)
        return (prototypes[y] + 0.3 * rng.standard_normal((n, 1, 8, 8))).astype(np.float32), y.astype(np.int64)

    x_train, y_train = draw(n_train)
    x_test, y_test = draw(n_test)
    return Dataset("tiny", x_train, y_train, x_test, y_test, 10, "made by the test")


def tiny_config(method="dni", **overrides) -> ClassifyConfig:
    """A 3-stage FCN small enough to profile in about a second on a CPU."""
    base = dict(method=method, model="fcn", layers=3, width=32, channels=4, synth_width=32, batch_size=16,
                steps=12, eval_every=6, log_every=2, train_eval_examples=64, eval_batch_size=64, device="cpu")
    return ClassifyConfig(**{**base, **overrides})
