"""Small, fake-but-well-formed dataset files written into tmp_path (no network, no shared data)."""

import io
import tarfile
import types
import urllib.error
import urllib.request

import numpy as np
import pytest

from sglab.data.cifar import write_batch
from sglab.data.idx import write_idx

MNIST_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """Never read the user's data directory, and fail loudly on any real network access."""
    monkeypatch.setenv("SGLAB_DATA_DIR", str(tmp_path / "default-data-dir"))

    def no_network(*args, **kwargs):
        raise AssertionError("a test tried to use the network")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)


def small_mnist(n_train=50, n_test=20, seed=0):
    """uint8 images (N, 28, 28) and uint8 labels with every class present."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for part, n in (("train", n_train), ("test", n_test)):
        arrays[f"{part}_images"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        arrays[f"{part}_labels"] = (np.arange(n) % 10).astype(np.uint8)[rng.permutation(n)]
    return arrays


def write_mnist(directory, arrays, compress=True):
    directory.mkdir(parents=True, exist_ok=True)
    for key, name in MNIST_NAMES.items():
        write_idx(directory / (name + (".gz" if compress else "")), arrays[key], compress=compress)
    return directory


def small_cifar(per_batch=20, seed=1):
    """Six batches of uint8 (N, 3072) channel-major rows with labels 0..9."""
    rng = np.random.default_rng(seed)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    return {
        name: (rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8), np.arange(per_batch) % 10)
        for name in names
    }


def write_cifar_folder(folder, batches):
    folder.mkdir(parents=True, exist_ok=True)
    for name, (data, labels) in batches.items():
        write_batch(folder / name, data, labels)
    return folder


def write_cifar_tar(path, folder):
    with tarfile.open(path, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    return path


@pytest.fixture
def mnist_arrays():
    return small_mnist()


@pytest.fixture
def cifar_batches():
    return small_cifar()


class FakeResponse(io.BytesIO):
    """What urlopen returns, enough for the downloader: read(), headers, context manager."""

    def __init__(self, payload: bytes):
        super().__init__(payload)
        self.headers = {"Content-Length": str(len(payload))}


def offline(*args, **kwargs):
    raise urllib.error.URLError(OSError(-2, "Name or service not known"))


@pytest.fixture
def make():
    """The helpers above as one fixture, so test files need not import conftest by name."""
    return types.SimpleNamespace(
        small_mnist=small_mnist,
        write_mnist=write_mnist,
        small_cifar=small_cifar,
        write_cifar_folder=write_cifar_folder,
        write_cifar_tar=write_cifar_tar,
        FakeResponse=FakeResponse,
        offline=offline,
        MNIST_NAMES=MNIST_NAMES,
    )
