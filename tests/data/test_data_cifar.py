"""CIFAR-10: python batches from the folder or the tarball."""

import os
import pickle

import numpy as np
import pytest

from sglab.data import DataError, load_dataset
from sglab.data.cifar import read_batch
from sglab.data.sources import CIFAR10_ARCHIVE, CIFAR10_BATCH_MD5


def expected_train(batches):
    data = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
    labels = np.concatenate([batches[f"data_batch_{i}"][1] for i in range(1, 6)])
    return data, labels


def test_folder_layout_is_channel_major_and_scaled(tmp_path, make, cifar_batches):
    make.write_cifar_folder(tmp_path / "cifar-10-batches-py", cifar_batches)
    data = load_dataset("cifar10", data_dir=tmp_path, verify=False)
    flat, labels = expected_train(cifar_batches)
    assert data.x_train.shape == (100, 3, 32, 32) and data.x_test.shape == (20, 3, 32, 32)
    assert data.input_shape == (3, 32, 32) and data.num_classes == 10
    # row = 1024 red, 1024 green, 1024 blue values, each plane row-major
    first = flat[0]
    assert data.x_train[0, 1, 0, 0] * 255 == first[1024]
    assert data.x_train[0, 2, 31, 30] * 255 == first[2048 + 31 * 32 + 30]
    np.testing.assert_array_equal(np.rint(data.x_train * 255).reshape(100, -1), flat)
    np.testing.assert_array_equal(data.y_train, labels)
    assert data.y_train.dtype == np.int64 and data.x_train.dtype == np.float32
    assert data.source == str(tmp_path / "cifar-10-batches-py")


def test_tarball_gives_the_same_arrays_as_the_folder(tmp_path, make, cifar_batches):
    folder = make.write_cifar_folder(tmp_path / "src" / "cifar-10-batches-py", cifar_batches)
    from_folder = load_dataset("cifar10", data_dir=tmp_path / "src", verify=False)
    (tmp_path / "dir").mkdir()
    make.write_cifar_tar(tmp_path / "dir" / "cifar-10-python.tar.gz", folder)
    from_tar = load_dataset("cifar10", data_dir=tmp_path / "dir", verify=False)
    np.testing.assert_array_equal(from_tar.x_train, from_folder.x_train)
    np.testing.assert_array_equal(from_tar.y_test, from_folder.y_test)
    assert from_tar.source.endswith("cifar-10-python.tar.gz")


def test_truncated_tarball_is_a_clear_error(tmp_path, make, cifar_batches):
    folder = make.write_cifar_folder(tmp_path / "src" / "cifar-10-batches-py", cifar_batches)
    archive = make.write_cifar_tar(tmp_path / "cifar-10-python.tar.gz", folder)
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DataError, match="truncated") as err:
        load_dataset("cifar10", data_dir=tmp_path, verify=False)
    assert str(archive) in str(err.value) and "sglab data download cifar10" in str(err.value)


def test_tarball_checksum_mismatch_names_size_and_expected_sha256(tmp_path, make, cifar_batches):
    folder = make.write_cifar_folder(tmp_path / "src" / "cifar-10-batches-py", cifar_batches)
    archive = make.write_cifar_tar(tmp_path / "cifar-10-python.tar.gz", folder)
    with pytest.raises(DataError) as err:
        load_dataset("cifar10", data_dir=tmp_path)
    message = str(err.value)
    assert CIFAR10_ARCHIVE.sha256 in message and str(archive) in message
    assert "truncated" in message  # smaller than the published 170,498,071 bytes
    assert CIFAR10_ARCHIVE.home in message


def test_extracted_batches_are_checked_against_published_md5(tmp_path, make, cifar_batches):
    make.write_cifar_folder(tmp_path / "cifar-10-batches-py", cifar_batches)
    with pytest.raises(DataError, match=CIFAR10_BATCH_MD5["data_batch_1"]):
        load_dataset("cifar10", data_dir=tmp_path)


def test_missing_batch_in_folder(tmp_path, make, cifar_batches):
    folder = make.write_cifar_folder(tmp_path / "cifar-10-batches-py", cifar_batches)
    os.remove(folder / "test_batch")
    with pytest.raises(DataError, match="missing CIFAR-10 batch file.*test_batch"):
        load_dataset("cifar10", data_dir=tmp_path, verify=False)


def test_corrupt_batch_and_wrong_keys(tmp_path, make, cifar_batches):
    folder = make.write_cifar_folder(tmp_path / "cifar-10-batches-py", cifar_batches)
    batch = folder / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:1000])
    with pytest.raises(DataError, match="data_batch_3.*truncated or corrupt"):
        load_dataset("cifar10", data_dir=tmp_path, verify=False)
    with open(batch, "wb") as handle:
        pickle.dump({b"images": 1}, handle, protocol=2)
    with pytest.raises(DataError, match="b'data' and b'labels'"):
        load_dataset("cifar10", data_dir=tmp_path, verify=False)


class Boom:
    def __reduce__(self):
        return (os.system, ("echo should-never-run",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    path = tmp_path / "evil"
    path.write_bytes(pickle.dumps({b"data": Boom(), b"labels": []}, protocol=2))
    with open(path, "rb") as handle, pytest.raises(DataError, match="refusing to load"):
        read_batch(handle, str(path))


def test_numpy1_style_pickles_are_accepted(tmp_path):
    # the published batches reference numpy.core.multiarray._reconstruct (numpy 1 names)
    payload = pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 2]}, protocol=2)
    payload = payload.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    path = tmp_path / "old"
    path.write_bytes(payload)
    with open(path, "rb") as handle:
        data, labels = read_batch(handle, str(path))
    assert data.shape == (2, 3072) and list(labels) == [1, 2]


def test_missing_cifar_says_what_to_do(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset("cifar-10", data_dir=tmp_path)
    message = str(err.value)
    assert "cifar-10-python.tar.gz" in message and "cifar10.npz" in message
    assert f"sglab data download cifar10 --data-dir {tmp_path}" in message
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in message
