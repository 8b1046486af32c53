"""Fetching the published dataset files and checking the ones already on disk.

A download streams into a hidden temporary file next to its destination, is checked against the
pinned size and sha256, and only then renamed into place: an interrupted or wrong download can
never sit under the canonical name where a later load would trust it.
"""

from __future__ import annotations

import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from sglab.data.dataset import DataError
from sglab.data.sources import (
    ALIASES,
    CIFAR10_BATCH_MD5,
    CIFAR10_FOLDER,
    DATASETS,
    DatasetSpec,
    RemoteFile,
    file_digest,
    resolve_data_dir,
)

#: Seconds to wait for a server to answer or send the next chunk.
TIMEOUT_S = 60
CHUNK = 1 << 20

# Failures of the connection rather than of the local disk (both are OSError subclasses).
_NETWORK_ERRORS = (
    urllib.error.URLError,
    http.client.HTTPException,
    TimeoutError,
    ConnectionError,
)


def get_spec(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` for a dataset name (case-insensitive, aliases allowed)."""
    key = ALIASES.get(name.lower(), name.lower())
    if key not in DATASETS:
        raise DataError(
            f"unknown dataset {name!r}: use one of {', '.join(DATASETS)} or a path to an .npz file"
        )
    return DATASETS[key]


def verify_file(path: Path, remote: RemoteFile, spec: DatasetSpec, data_dir: Path) -> None:
    """Raise :class:`DataError` unless ``path`` is byte-identical to the published ``remote``.

    The size is compared first: it is free, and a short file is by far the usual failure (an
    interrupted download), which deserves its own plain message.
    """
    size = path.stat().st_size
    fix = (
        f"Delete it and {spec.instructions(data_dir)}. If you made this file yourself on purpose, "
        "load it with verify=False (or `--no-verify`)"
    )
    if size != remote.size:
        hint = (
            "truncated, probably an interrupted download" if size < remote.size
            else "larger than published, so not the published file"
        )
        raise DataError(
            f"{path}: {size} bytes, but the published {remote.name} has {remote.size} "
            f"(sha256 {remote.sha256}): the file is {hint} (or a re-compressed copy). {fix}."
        )
    actual = file_digest(path)
    if actual != remote.sha256:
        raise DataError(
            f"{path}: sha256 {actual} does not match the expected {remote.sha256}: "
            f"the file is corrupt or a different version. {fix}."
        )


def verify_md5(path: Path, expected: str, spec: DatasetSpec, data_dir: Path) -> None:
    """Like :func:`verify_file` for the unpacked CIFAR-10 batches, whose published sums are md5."""
    actual = file_digest(path, "md5")
    if actual != expected:
        raise DataError(
            f"{path}: md5 {actual} does not match the expected {expected}: the batch is corrupt "
            f"or from a different release. Delete the {CIFAR10_FOLDER} folder and "
            f"{spec.instructions(data_dir)}."
        )


def _stream(url: str, out, remote: RemoteFile, progress: bool) -> None:
    from sglab import __version__

    request = urllib.request.Request(url, headers={"User-Agent": f"sglab/{__version__}"})
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        total = int(response.headers.get("Content-Length") or remote.size)
        from tqdm import tqdm

        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                  desc=remote.name, disable=not progress, leave=False) as bar:
            while chunk := response.read(CHUNK):
                out.write(chunk)
                bar.update(len(chunk))
                if out.tell() > remote.size:  # an error page or a different file: stop early
                    break


def fetch(remote: RemoteFile, directory: str | Path, spec: DatasetSpec,
          progress: bool | None = None) -> Path:
    """Make ``directory/remote.name`` the verified published file, downloading it if needed.

    Mirrors are tried in order; the first copy with the right size and sha256 wins. ``progress``
    (default: only when stderr is a terminal) shows a tqdm bar.
    """
    directory = Path(directory)
    dest = directory / remote.name
    if dest.is_file() and dest.stat().st_size == remote.size and file_digest(dest) == remote.sha256:
        return dest
    if progress is None:
        progress = sys.stderr.isatty()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"cannot create the data directory {directory}: {err}") from err

    failures: list[str] = []
    unreachable = 0
    for url in remote.urls:
        fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{remote.name}.", suffix=".part")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                _stream(url, out, remote, progress)
                out.flush()
                os.fsync(out.fileno())
            size = tmp.stat().st_size
            if size != remote.size:
                failures.append(f"{url}: got {size} bytes, expected {remote.size}")
                continue
            digest = file_digest(tmp)
            if digest != remote.sha256:
                failures.append(f"{url}: sha256 {digest}, expected {remote.sha256}")
                continue
            os.replace(tmp, dest)
            return dest
        except urllib.error.HTTPError as err:  # the server answered: not an offline problem
            failures.append(f"{url}: HTTP {err.code} {err.reason}")
        except _NETWORK_ERRORS as err:
            # URLError (DNS, refused, no route), timeouts and resets are what "offline" looks like
            unreachable += 1
            reason = getattr(err, "reason", err)
            failures.append(f"{url}: {type(err).__name__}: {reason}")
        except OSError as err:  # the local side: disk full, permissions
            raise DataError(f"cannot write {tmp} while downloading {remote.name}: {err}") from err
        finally:
            tmp.unlink(missing_ok=True)

    tried = "\n".join(f"  - {line}" for line in failures)
    if unreachable == len(remote.urls):
        headline = (
            f"cannot download {remote.name}: no mirror could be reached, "
            "this machine looks offline (or a firewall blocks it)"
        )
    else:
        headline = f"cannot download {remote.name}: no mirror gave the published file"
    raise DataError(
        f"{headline}\n{tried}\n  expected sha256 {remote.sha256} ({remote.size} bytes)\n"
        f"To fix: {spec.instructions(directory)}."
    )


def download_dataset(name: str, data_dir: str | Path | None = None,
                     progress: bool | None = None) -> list[Path]:
    """Fetch every published file of dataset ``name`` into the data directory; return the paths."""
    spec = get_spec(name)
    directory = resolve_data_dir(data_dir)
    return [fetch(remote, directory, spec, progress) for remote in spec.files]


def file_status(name: str, data_dir: str | Path | None = None,
                check: bool = True) -> list[dict[str, Any]]:
    """One row per published file (and unpacked CIFAR batch): where it is and if it checks out.

    ``status`` is ``ok``, ``missing``, ``size mismatch``, ``checksum mismatch``, ``present``
    (found uncompressed, which has no published checksum; checked on load by its header) or
    ``not checked`` (when ``check`` is False).
    """
    spec = get_spec(name)
    directory = resolve_data_dir(data_dir)
    rows: list[dict[str, Any]] = []
    for remote in spec.files:
        row: dict[str, Any] = {"file": remote.name, "expected_sha256": remote.sha256, "path": None}
        found = [p for p in spec.candidates(directory, remote.name) if p.is_file()]
        plain = remote.name[:-3] if remote.name.endswith(".gz") and ".tar." not in remote.name else None
        plain_found = [p for p in spec.candidates(directory, plain) if p.is_file()] if plain else []
        if found:
            path = found[0]
            row["path"] = str(path)
            if not check:
                row["status"] = "not checked"
            elif path.stat().st_size != remote.size:
                row["status"] = "size mismatch"
            elif file_digest(path) != remote.sha256:
                row["status"] = "checksum mismatch"
            else:
                row["status"] = "ok"
        elif plain_found:
            row.update(file=plain, path=str(plain_found[0]), status="present", expected_sha256=None)
        else:
            row["status"] = "missing"
        rows.append(row)
    if spec.name == "cifar10":
        for sub in spec.candidates(directory, CIFAR10_FOLDER):
            if sub.is_dir():
                for batch, md5 in CIFAR10_BATCH_MD5.items():
                    path = sub / batch
                    status = "missing"
                    if path.is_file():
                        status = "not checked" if not check else (
                            "ok" if file_digest(path, "md5") == md5 else "checksum mismatch")
                    rows.append({"file": f"{CIFAR10_FOLDER}/{batch}", "expected_md5": md5,
                                 "path": str(path), "status": status})
                break
    if spec.npz_name:
        npz = [p for p in spec.candidates(directory, spec.npz_name) if p.is_file()]
        rows.append({"file": spec.npz_name, "path": str(npz[0]) if npz else None,
                     "status": "present" if npz else "missing"})
    return rows
