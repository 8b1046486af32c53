"""The IDX format MNIST is published in, read without third-party code.

An IDX file is: two zero bytes, a type code, the number of dimensions, then each dimension as a
big-endian uint32, then the values in big-endian row-major order. The header fixes the size of
the payload exactly, which is how a truncated file is caught even when it decompresses cleanly.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from sglab.data.dataset import DataError

#: IDX type code -> big-endian numpy dtype.
IDX_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

GZIP_MAGIC = b"\x1f\x8b"


def read_bytes(path: str | Path) -> bytes:
    """The file's content, gunzipped when it is gzip (by its magic bytes, whatever its name).

    A cut-off or damaged gzip stream becomes a :class:`DataError` naming the file instead of a
    zlib/EOFError traceback.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read: {err}") from err
    if not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except EOFError as err:
        raise DataError(
            f"{path}: gzip stream ends early ({len(raw)} bytes): the file is truncated, "
            "probably an interrupted download"
        ) from err
    except (OSError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: not a valid gzip file ({err}): the file is corrupt") from err


def parse_idx(data: bytes, where: str = "IDX data") -> np.ndarray:
    """Decode an IDX byte string into a native-endian numpy array, checking it is complete."""
    if len(data) < 4:
        raise DataError(f"{where}: only {len(data)} bytes, too short for an IDX header")
    zero, code, ndim = data[0:2], data[2], data[3]
    if zero != b"\x00\x00" or code not in IDX_TYPES or ndim == 0:
        raise DataError(
            f"{where}: not an IDX file (magic {data[:4].hex()}; expected 0000 then a type code "
            f"in {sorted(hex(c) for c in IDX_TYPES)} and a non-zero dimension count)"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{where}: truncated inside the header ({len(data)} of {header} bytes)")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_TYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - header
    if actual < expected:
        raise DataError(
            f"{where}: truncated: header says {dims} ({expected} data bytes) but only "
            f"{actual} bytes follow"
        )
    if actual > expected:
        raise DataError(
            f"{where}: {actual - expected} unexpected bytes after the {dims} array; "
            "the file is corrupt or not what its header says"
        )
    array = np.frombuffer(data, dtype=dtype, count=expected // dtype.itemsize, offset=header)
    return array.reshape(dims).astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file, gzipped or plain."""
    return parse_idx(read_bytes(path), str(path))


def write_idx(path: str | Path, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write ``array`` as IDX (gzipped when ``compress`` or the name ends in ``.gz``).

    The inverse of :func:`read_idx`; used to make test fixtures and to export subsets.
    """
    path = Path(path)
    array = np.asarray(array)
    codes = {dtype.newbyteorder("="): code for code, dtype in IDX_TYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        raise DataError(f"IDX cannot store dtype {array.dtype}")
    header = bytes([0, 0, codes[native], array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    payload = header + array.astype(IDX_TYPES[codes[native]]).tobytes()
    if compress is None:
        compress = path.suffix == ".gz"
    path.write_bytes(gzip.compress(payload, mtime=0) if compress else payload)
    return path
