"""Datasets stored as ``.npz`` archives holding ``x_train, y_train, x_test, y_test``.

Any layout :func:`sglab.data.dataset.as_images` understands is accepted, so Keras-style
``(N, 28, 28)`` uint8 MNIST and ``(N, 32, 32, 3)`` uint8 CIFAR-10 load as they are.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from sglab.data.dataset import DataError

REQUIRED_KEYS = ("x_train", "y_train", "x_test", "y_test")


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """The four arrays from an ``.npz``; pickled objects are refused (they could run code)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    # np.load is given an open handle so a failed parse cannot leak the file descriptor
    with open(path, "rb") as handle:
        magic = handle.read(4)
        handle.seek(0)
        # np.load would treat any non-zip file as a pickle and give a misleading message
        if magic not in (b"PK\x03\x04", b"PK\x05\x06"):
            raise DataError(
                f"{path}: not an .npz (zip) archive (starts with {magic.hex() or 'nothing'}); "
                "the file is corrupt or of another format"
            )
        try:
            with np.load(handle, allow_pickle=False) as archive:
                found = sorted(archive.files)
                missing = [k for k in REQUIRED_KEYS if k not in archive.files]
                if missing:
                    raise DataError(
                        f"{path}: missing array(s) {', '.join(missing)}; an .npz dataset needs "
                        f"{', '.join(REQUIRED_KEYS)} but this one holds {', '.join(found) or 'nothing'}"
                    )
                return {k: archive[k] for k in REQUIRED_KEYS}
        except DataError:
            raise
        except ValueError as err:
            if "pickle" in str(err):
                raise DataError(f"{path}: holds pickled objects, which are not loaded for safety") from err
            raise DataError(f"{path}: not a valid .npz ({err}); the file is corrupt") from err
        except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as err:
            raise DataError(
                f"{path}: cannot read the .npz ({type(err).__name__}: {err}); "
                "the file is truncated or corrupt"
            ) from err
