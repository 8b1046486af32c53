"""Test-wide settings: one torch thread (tiny models run faster and steadier that way)."""

import numpy as np
import pytest
import torch

from sglab.data import Dataset

torch.set_num_threads(1)


def pattern_dataset(n_train=512, n_test=128, seed=0) -> Dataset:
    """Ten classes, each a fixed random 1x8x8 pattern plus noise: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    prototypes = rng.random((10, 1, 8, 8)).astype(np.float32)

    def draw(n):
        y = rng.integers(0, 10, n)
        x = np.clip(prototypes[y] + 0.3 * rng.standard_normal((n, 1, 8, 8)), 0, 1).astype(np.float32)
        return x, y.astype(np.int64)

    x_train, y_train = draw(n_train)
    x_test, y_test = draw(n_test)
    return Dataset("patterns", x_train, y_train, x_test, y_test, 10, "made by the test")


@pytest.fixture(scope="session")
def patterns() -> Dataset:
    return pattern_dataset()
