"""MNIST: the IDX parser and loading MNIST from a data directory."""

import gzip

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sglab.data import DataError, load_dataset
from sglab.data.idx import parse_idx, read_idx, write_idx
from sglab.data.sources import MNIST_FILES
from sglab.errors import SglabError

IDX_DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


@settings(max_examples=40, deadline=None)
@given(
    array=st.sampled_from(IDX_DTYPES).flatmap(
        lambda dt: arrays(dt, st.lists(st.integers(0, 5), min_size=1, max_size=3).map(tuple),
                          elements={"allow_nan": False} if np.dtype(dt).kind == "f" else None)
    ),
    compress=st.booleans(),
)
def test_idx_round_trip_any_dtype_and_shape(tmp_path_factory, array, compress):
    path = tmp_path_factory.mktemp("idx") / "a.idx"
    write_idx(path, array, compress=compress)
    back = read_idx(path)
    assert back.dtype == array.dtype.newbyteorder("=")
    assert back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def test_idx_header_is_the_published_format(tmp_path):
    path = write_idx(tmp_path / "x", np.arange(6, dtype=np.uint8).reshape(2, 3))
    assert path.read_bytes()[:12] == bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3])


def test_idx_multibyte_values_are_big_endian():
    data = bytes([0, 0, 0x0C, 1, 0, 0, 0, 2]) + (258).to_bytes(4, "big") + (7).to_bytes(4, "big")
    np.testing.assert_array_equal(parse_idx(data), [258, 7])


def test_idx_truncated_payload_names_dims_and_path(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    write_idx(path, np.zeros((10, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"truncated.*\(10, 28, 28\)") as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_idx_truncated_header_and_bad_magic():
    with pytest.raises(DataError, match="header"):
        parse_idx(bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(DataError, match="not an IDX file"):
        parse_idx(b"<html>not found</html>")
    with pytest.raises(DataError, match="unexpected bytes"):
        parse_idx(bytes([0, 0, 8, 1, 0, 0, 0, 1, 5, 6]))


def test_truncated_gzip_is_a_clear_error_not_a_zlib_traceback(tmp_path):
    path = write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(1000, dtype=np.uint8) % 10)
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(DataError, match="truncated") as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_corrupt_gzip_is_a_clear_error(tmp_path):
    path = write_idx(tmp_path / "a.gz", np.arange(1000, dtype=np.uint8))
    raw = bytearray(path.read_bytes())
    raw[20:40] = b"\xff" * 20
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="corrupt|truncated") as err:
        read_idx(path)
    assert str(path) in str(err.value)


# ------------------------------------------------------------------------------- load MNIST

@pytest.mark.parametrize("compress", [True, False])
def test_load_mnist_idx_values_layout_and_scaling(tmp_path, make, mnist_arrays, compress):
    make.write_mnist(tmp_path, mnist_arrays, compress=compress)
    data = load_dataset("mnist", data_dir=tmp_path, verify=False)
    assert data.name == "mnist" and data.num_classes == 10 and data.input_shape == (1, 28, 28)
    assert data.x_train.dtype == np.float32 and data.x_train.flags["C_CONTIGUOUS"]
    assert data.y_train.dtype == np.int64
    assert data.x_train.shape == (50, 1, 28, 28) and data.x_test.shape == (20, 1, 28, 28)
    np.testing.assert_array_equal(data.x_train[:, 0] * 255, mnist_arrays["train_images"].astype(np.float32))
    np.testing.assert_array_equal(data.y_test, mnist_arrays["test_labels"])
    assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0
    assert data.source == str(tmp_path)


def test_load_mnist_finds_torchvision_layout_and_mixed_compression(tmp_path, make, mnist_arrays):
    raw = tmp_path / "MNIST" / "raw"
    make.write_mnist(raw, mnist_arrays, compress=False)
    (raw / "t10k-labels-idx1-ubyte").unlink()
    write_idx(raw / "t10k-labels-idx1-ubyte.gz", mnist_arrays["test_labels"])
    data = load_dataset("MNIST", data_dir=tmp_path, verify=False)
    np.testing.assert_array_equal(data.y_test, mnist_arrays["test_labels"])


def test_missing_mnist_names_the_directory_and_what_to_do(tmp_path):
    with pytest.raises(SglabError) as err:
        load_dataset("mnist", data_dir=tmp_path / "empty")
    message = str(err.value)
    assert isinstance(err.value, DataError)
    assert str(tmp_path / "empty") in message
    assert "train-images-idx3-ubyte.gz" in message and "mnist.npz" in message
    assert f"sglab data download mnist --data-dir {tmp_path / 'empty'}" in message
    assert "https://ossci-datasets.s3.amazonaws.com/mnist/" in message


def test_partial_mnist_says_which_files_were_found(tmp_path, make, mnist_arrays):
    make.write_mnist(tmp_path, mnist_arrays)
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError, match="found only") as err:
        load_dataset("mnist", data_dir=tmp_path, verify=False)
    assert "train-images-idx3-ubyte.gz" in str(err.value)


def test_checksum_mismatch_of_a_published_name_names_expected_sha256(tmp_path, make, mnist_arrays):
    make.write_mnist(tmp_path, mnist_arrays)
    with pytest.raises(DataError) as err:
        load_dataset("mnist", data_dir=tmp_path)  # verify=True by default
    message = str(err.value)
    expected = MNIST_FILES["train_images"].sha256
    assert expected in message
    assert str(tmp_path / "train-images-idx3-ubyte.gz") in message
    assert "sglab data download mnist" in message


def test_same_size_but_wrong_bytes_is_a_checksum_mismatch(tmp_path, make, mnist_arrays, monkeypatch):
    make.write_mnist(tmp_path, mnist_arrays)
    remote = MNIST_FILES["train_images"]
    path = tmp_path / remote.name
    # pin the fake file's size so only the sha256 can tell it apart
    same_size = type(remote)(remote.name, path.stat().st_size, remote.sha256, remote.urls)
    monkeypatch.setitem(MNIST_FILES, "train_images", same_size)
    with pytest.raises(DataError, match=f"sha256 .* does not match the expected {remote.sha256}"):
        load_dataset("mnist", data_dir=tmp_path)


def test_truncated_uncompressed_mnist_fails_with_fix(tmp_path, make, mnist_arrays):
    make.write_mnist(tmp_path, mnist_arrays, compress=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DataError, match="truncated") as err:
        load_dataset("mnist", data_dir=tmp_path)
    assert str(path) in str(err.value) and "sglab data download mnist" in str(err.value)


def test_swapped_image_and_label_files_are_caught(tmp_path, make, mnist_arrays):
    make.write_mnist(tmp_path, mnist_arrays, compress=False)
    images, labels = tmp_path / "t10k-images-idx3-ubyte", tmp_path / "t10k-labels-idx1-ubyte"
    a, b = images.read_bytes(), labels.read_bytes()
    images.write_bytes(b)
    labels.write_bytes(a)
    with pytest.raises(DataError, match="swapped"):
        load_dataset("mnist", data_dir=tmp_path)


def test_count_mismatch_between_images_and_labels(tmp_path, make, mnist_arrays):
    mnist_arrays["train_labels"] = mnist_arrays["train_labels"][:-1]
    make.write_mnist(tmp_path, mnist_arrays, compress=False)
    with pytest.raises(DataError, match="50 train images but 49 train labels"):
        load_dataset("mnist", data_dir=tmp_path)


def test_gzip_detected_by_content_not_name(tmp_path):
    path = tmp_path / "plain-name"
    path.write_bytes(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 2, 3, 4])))
    np.testing.assert_array_equal(read_idx(path), [3, 4])
