"""``.npz`` datasets: by path, and as the fallback for a named dataset in the data directory."""

import numpy as np
import pytest

from sglab.data import DataError, load_dataset


def save(path, **arrays):
    np.savez_compressed(path, **arrays)
    return path


def mnist_like(n_train=30, n_test=10):
    rng = np.random.default_rng(3)
    return dict(
        x_train=rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        y_train=(np.arange(n_train) % 10).astype(np.uint8),
        x_test=rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        y_test=(np.arange(n_test) % 10).astype(np.uint8),
    )


def test_npz_by_path_uint8_hw(tmp_path):
    arrays = mnist_like()
    path = save(tmp_path / "digits.npz", **arrays)
    data = load_dataset(str(path))
    assert data.name == "digits" and data.source == str(path)
    assert data.x_train.shape == (30, 1, 28, 28) and data.x_train.dtype == np.float32
    np.testing.assert_array_equal(data.x_train[:, 0], arrays["x_train"] / np.float32(255))
    assert data.y_train.dtype == np.int64 and data.num_classes == 10


def test_npz_channels_last_cifar_layout(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    path = save(tmp_path / "c.npz", x_train=x, y_train=np.arange(12) % 10, x_test=x[:4],
                y_test=(np.arange(4) % 10).reshape(4, 1))  # Keras stores labels as (N, 1)
    data = load_dataset(path)
    assert data.input_shape == (3, 32, 32)
    np.testing.assert_array_equal(data.x_train[5, 2, 7, 9] * 255, x[5, 7, 9, 2])
    assert data.y_test.shape == (4,)


def test_npz_float_images_already_in_unit_range_are_kept(tmp_path):
    x = np.linspace(0, 1, 8 * 3 * 4 * 4, dtype=np.float64).reshape(8, 3, 4, 4)
    y = np.arange(8) % 2
    data = load_dataset(save(tmp_path / "f.npz", x_train=x, y_train=y, x_test=x, y_test=y))
    np.testing.assert_allclose(data.x_train, x.astype(np.float32))
    assert data.num_classes == 2


def test_named_dataset_falls_back_to_npz_in_data_dir(tmp_path):
    save(tmp_path / "mnist.npz", **mnist_like())
    data = load_dataset("mnist", data_dir=tmp_path)
    assert data.name == "mnist" and data.source == str(tmp_path / "mnist.npz")
    assert data.num_classes == 10


def test_download_flag_uses_a_present_npz_instead_of_the_network(tmp_path):
    # conftest fails the test on any network access
    save(tmp_path / "mnist.npz", **mnist_like())
    assert load_dataset("mnist", data_dir=tmp_path, download=True).source.endswith("mnist.npz")


def test_bare_npz_name_is_looked_up_in_the_data_dir(tmp_path, monkeypatch):
    save(tmp_path / "mine.npz", **mnist_like())
    monkeypatch.chdir(tmp_path.parent)
    assert load_dataset("mine.npz", data_dir=tmp_path).source == str(tmp_path / "mine.npz")


def test_bad_keys_are_listed(tmp_path):
    path = save(tmp_path / "bad.npz", X=np.zeros((2, 28, 28)), y=np.zeros(2))
    with pytest.raises(DataError) as err:
        load_dataset(path)
    message = str(err.value)
    assert str(path) in message
    assert "missing array(s) x_train, y_train, x_test, y_test" in message
    assert "holds X, y" in message


def test_wrong_shape_for_a_named_dataset(tmp_path):
    arrays = mnist_like()
    arrays["x_train"] = np.zeros((30, 32, 32, 3), np.uint8)
    arrays["x_test"] = np.zeros((10, 32, 32, 3), np.uint8)
    save(tmp_path / "mnist.npz", **arrays)
    with pytest.raises(DataError, match=r"\(3, 32, 32\) but mnist images are \(1, 28, 28\)"):
        load_dataset("mnist", data_dir=tmp_path)


def test_labels_out_of_range_for_a_named_dataset(tmp_path):
    arrays = mnist_like()
    arrays["y_test"][0] = 10
    save(tmp_path / "mnist.npz", **arrays)
    with pytest.raises(DataError, match="label 10 found but mnist has 10 classes"):
        load_dataset("mnist", data_dir=tmp_path)


def test_missing_npz_path(tmp_path):
    with pytest.raises(DataError, match="file not found") as err:
        load_dataset(str(tmp_path / "nope.npz"))
    assert str(tmp_path / "nope.npz") in str(err.value)


def test_not_a_zip_and_truncated_npz(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"this is not a zip archive")
    with pytest.raises(DataError, match="not an .npz"):
        load_dataset(junk)
    path = save(tmp_path / "cut.npz", **mnist_like())
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(DataError, match="truncated or corrupt") as err:
        load_dataset(path)
    assert str(path) in str(err.value)


def test_pickled_object_arrays_are_refused(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, x_train=np.array([object()], dtype=object), y_train=np.zeros(1),
             x_test=np.zeros(1), y_test=np.zeros(1))
    with pytest.raises(DataError, match="pickled"):
        load_dataset(path)


@pytest.mark.parametrize(
    "x, message",
    [
        (np.full((4, 28, 28), 300, np.int32), "0-255"),
        (np.full((4, 28, 28), -0.5, np.float32), r"\[0, 1\] or \[0, 255\]"),
        (np.zeros((4, 5, 7, 7), np.uint8), "channel axis"),
        (np.zeros((4, 10), np.uint8), "flat rows of 10"),
        (np.zeros((4, 28, 28), bool), "dtype bool"),
    ],
)
def test_bad_pixels_or_layouts(tmp_path, x, message):
    y = np.arange(4) % 2
    path = save(tmp_path / "x.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    with pytest.raises(DataError, match=message):
        load_dataset(path)


def test_bad_labels(tmp_path):
    x = np.zeros((4, 28, 28), np.uint8)
    for y, message in [(np.array([0, 1, 0.5, 1]), "whole numbers"), (np.array([0, -1, 0, 1]), ">= 0"),
                       (np.zeros((4, 2), int), "shape"), (np.arange(3), "4 train images but 3")]:
        path = save(tmp_path / "y.npz", x_train=x, y_train=y, x_test=x, y_test=np.arange(4))
        with pytest.raises(DataError, match=message):
            load_dataset(path)


def test_labels_far_beyond_the_examples_are_refused_before_any_allocation(tmp_path):
    x = np.zeros((4, 28, 28), np.uint8)
    path = save(tmp_path / "huge.npz", x_train=x, y_train=np.array([0, 1, 2, 10**9]), x_test=x, y_test=np.arange(4))
    with pytest.raises(DataError, match="labels reach 1000000000.*relabel them 0..K-1"):
        load_dataset(path)


def test_a_dataset_whose_labels_exceed_its_classes_is_refused():
    from sglab.data import Dataset

    x = np.zeros((3, 1, 2, 2), np.float32)
    with pytest.raises(DataError, match="train labels span 0..9 but the dataset has num_classes=5"):
        Dataset("bad", x, np.array([0, 9, 1]), x, np.array([0, 1, 2]), 5, "made by the test")
    with pytest.raises(DataError, match="num_classes must be an integer >= 1"):
        Dataset("bad", x, np.array([0, 1, 1]), x, np.array([0, 1, 1]), 0, "made by the test")
