"""The CIFAR-10 "python version": pickled batches, read from the folder or straight from the tarball.

Each batch is a pickled dict with ``b'data'`` (uint8 ``(10000, 3072)``, each row the red, green
then blue 32x32 planes, row-major) and ``b'labels'`` (a list of ints). The batches were pickled
by Python 2, hence ``encoding='bytes'``. Unpickling can run arbitrary code, so only the few numpy
constructors an array needs are allowed: a stray or hostile file fails instead of executing.
"""

from __future__ import annotations

import io
import pickle
import tarfile
import zlib
from pathlib import Path
from typing import IO, Any

import numpy as np

from sglab.data.dataset import DataError
from sglab.data.sources import CIFAR10_FOLDER, CIFAR10_TEST_BATCH, CIFAR10_TRAIN_BATCHES

BATCH_NAMES = (*CIFAR10_TRAIN_BATCHES, CIFAR10_TEST_BATCH)

# What an ndarray pickle refers to, under numpy 1 (numpy.core) and numpy 2 (numpy._core) names.
_ALLOWED = {
    (module, name)
    for module in ("numpy.core.multiarray", "numpy._core.multiarray")
    for name in ("_reconstruct", "scalar")
} | {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    # how Python 3 spells bytes under protocol 2 (test fixtures, re-pickled batches)
    ("_codecs", "encode"),
    ("builtins", "bytes"),
    ("builtins", "bytearray"),
}


class _ArrayUnpickler(pickle.Unpickler):
    """An unpickler that builds dicts, lists, strings and numpy arrays, and nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")


def read_batch(handle: IO[bytes], where: str) -> tuple[np.ndarray, np.ndarray]:
    """``(data uint8 (N, 3072), labels (N,))`` from one pickled batch."""
    try:
        batch = _ArrayUnpickler(handle, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise DataError(
            f"{where}: not a readable CIFAR batch ({err}); the file is truncated or corrupt"
        ) from err
    except (OSError, zlib.error) as err:  # from a damaged gzip stream underneath a tar member
        raise DataError(f"{where}: read error ({err}); the archive is truncated or corrupt") from err
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise DataError(f"{where}: expected a dict with b'data' and b'labels', found {keys}")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{where}: b'data' should be uint8 (N, 3072), got {data.dtype} {data.shape}")
    if labels.shape != (len(data),):
        raise DataError(f"{where}: {len(data)} images but labels of shape {labels.shape}")
    return data, labels


def _combine(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    data = np.concatenate([d for d, _ in parts]).reshape(-1, 3, 32, 32)  # already CHW
    return data, np.concatenate([y for _, y in parts])


def read_folder(folder: str | Path) -> dict[str, np.ndarray]:
    """Raw ``x_train, y_train, x_test, y_test`` (uint8 CHW) from an extracted batches folder."""
    folder = Path(folder)
    missing = [n for n in BATCH_NAMES if not (folder / n).is_file()]
    if missing:
        raise DataError(f"{folder}: missing CIFAR-10 batch file(s) {', '.join(missing)}")
    parts = {}
    for name in BATCH_NAMES:
        with open(folder / name, "rb") as handle:
            parts[name] = read_batch(handle, str(folder / name))
    return _arrays(parts)


def read_archive(archive: str | Path) -> dict[str, np.ndarray]:
    """Raw arrays read from ``cifar-10-python.tar.gz`` in memory, without unpacking to disk."""
    archive = Path(archive)
    parts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                base = member.name.rsplit("/", 1)[-1]
                if base in BATCH_NAMES and member.isfile():
                    handle = tar.extractfile(member)
                    assert handle is not None  # a regular file always has a handle
                    # read fully first so a damaged stream fails here, not inside pickle
                    parts[base] = read_batch(io.BytesIO(handle.read()), f"{archive}:{member.name}")
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        raise DataError(
            f"{archive}: cannot read the archive ({type(err).__name__}: {err}); "
            "it is truncated or corrupt, probably an interrupted download"
        ) from err
    missing = [n for n in BATCH_NAMES if n not in parts]
    if missing:
        raise DataError(
            f"{archive}: archive lacks {', '.join(missing)} (expected {CIFAR10_FOLDER}/<batch>); "
            "it is truncated or not the CIFAR-10 python version"
        )
    return _arrays(parts)


def _arrays(parts: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    x_train, y_train = _combine([parts[n] for n in CIFAR10_TRAIN_BATCHES])
    x_test, y_test = _combine([parts[CIFAR10_TEST_BATCH]])
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def write_batch(path: str | Path, data: np.ndarray, labels: list[int] | np.ndarray) -> Path:
    """Write a batch in the published layout (``data`` uint8 (N, 3072) channel-major); for tests."""
    path = Path(path)
    batch = {b"batch_label": b"written by sglab", b"data": np.asarray(data, np.uint8),
             b"labels": [int(v) for v in labels], b"filenames": [b"x.png"] * len(labels)}
    with open(path, "wb") as handle:
        pickle.dump(batch, handle, protocol=2)
    return path
