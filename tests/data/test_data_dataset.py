"""Data directory resolution, subsets, validation split and the Dataset summary."""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sglab.data import DATASETS, DataError, Dataset, load_dataset, resolve_data_dir
from sglab.data.dataset import build_dataset, split_validation, stratified_take


def test_data_dir_flag_beats_env_beats_default(monkeypatch, tmp_path):
    monkeypatch.setenv("SGLAB_DATA_DIR", str(tmp_path / "from-env"))
    assert resolve_data_dir() == tmp_path / "from-env"
    assert resolve_data_dir(tmp_path / "flag") == tmp_path / "flag"
    assert resolve_data_dir(str(tmp_path / "flag")) == tmp_path / "flag"
    monkeypatch.setenv("SGLAB_DATA_DIR", "")
    assert resolve_data_dir() == Path.home() / ".cache" / "sglab" / "data"
    monkeypatch.delenv("SGLAB_DATA_DIR")
    assert resolve_data_dir() == Path.home() / ".cache" / "sglab" / "data"
    monkeypatch.setenv("SGLAB_DATA_DIR", "~/elsewhere")
    assert resolve_data_dir() == Path.home() / "elsewhere"


def test_load_uses_the_env_data_dir(monkeypatch, tmp_path, make):
    make.write_mnist(tmp_path / "env-dir", make.small_mnist(n_train=20, n_test=10), compress=False)
    monkeypatch.setenv("SGLAB_DATA_DIR", str(tmp_path / "env-dir"))
    assert load_dataset("mnist").source == str(tmp_path / "env-dir")
    assert not list(tmp_path.glob("default-data-dir")), "looking must not create directories"


def test_names_and_errors_for_unknown_ones():
    assert set(DATASETS) == {"embedded", "mnist", "cifar10"}
    assert DATASETS["cifar10"].input_shape == (3, 32, 32)
    with pytest.raises(DataError, match="unknown dataset 'imagenet'.*embedded, mnist, cifar10"):
        load_dataset("imagenet")


@settings(max_examples=60, deadline=None)
@given(labels=st.lists(st.integers(0, 4), min_size=1, max_size=60), frac=st.floats(0, 1.5))
def test_stratified_take_properties(labels, frac):
    y = np.array(labels)
    n = int(frac * len(y))
    idx = stratified_take(y, n)
    assert len(idx) == min(n, len(y))
    assert np.all(np.diff(idx) > 0)  # original order, no repeats
    for c in np.unique(y):
        share = n * np.sum(y == c) / len(y) if n < len(y) else np.sum(y == c)
        got = np.sum(y[idx] == c)
        assert abs(got - share) < 1 + 1e-9
        np.testing.assert_array_equal(idx[y[idx] == c], np.flatnonzero(y == c)[:got])  # first ones


def test_validation_split_is_stratified_from_the_end_and_disjoint():
    y = np.tile(np.arange(4), 25)
    train, val = split_validation(y, 0.2)
    assert len(val) == 20 and len(train) == 80
    assert np.bincount(y[val]).tolist() == [5] * 4
    assert not set(train) & set(val)
    assert val.min() >= 80  # the last examples of each class
    with pytest.raises(DataError, match=r"\[0, 1\)"):
        split_validation(y, 1.0)


def raw(n_train=40, n_test=20):
    rng = np.random.default_rng(0)
    return dict(
        x_train=rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        y_train=np.arange(n_train) % 4,
        x_test=rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        y_test=np.arange(n_test) % 4,
    )


def test_validation_then_limit_never_overlap():
    arrays = raw()
    data = build_dataset("t", "test", **arrays, validation=0.25, limit_train=8, limit_test=6)
    assert data.y_val is not None and len(data.y_val) == 10 and len(data.y_train) == 8
    val_rows = {r.tobytes() for r in data.x_val}
    assert not val_rows & {r.tobytes() for r in data.x_train}
    assert np.bincount(data.y_test, minlength=4).tolist() == [2, 2, 1, 1]
    summary = data.describe()
    assert summary["n_val"] == 10 and summary["val_class_counts"] == [3, 3, 2, 2]
    assert summary["input_shape"] == [1, 28, 28] and summary["train_class_counts"] == [2, 2, 2, 2]


def test_limits_larger_than_the_set_keep_everything_and_bad_limits_fail():
    data = build_dataset("t", "test", **raw(), limit_train=10_000)
    assert len(data.y_train) == 40
    for bad in (0, -1, 2.5, True):
        with pytest.raises(DataError, match="limit_train"):
            build_dataset("t", "test", **raw(), limit_train=bad)


def test_dataset_constructed_positionally_and_repr_is_short():
    x = np.zeros((2, 1, 4, 4), np.float32)
    y = np.zeros(2, np.int64)
    data = Dataset("d", x, y, x, y, 10, "here")
    assert data.input_shape == (1, 4, 4) and data.x_val is None
    assert len(repr(data)) < 200
    assert data.describe()["n_val"] == 0
