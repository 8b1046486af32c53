"""A run directory: config.json, metrics.csv, summary.json and checkpoint.pt, all written atomically.

Every file is written to a temporary name and renamed over the old one, so a crash (even
``kill -9``) leaves the previous version whole; the temporaries a crash leaves behind are
removed when the directory is next opened. OS errors (a file where the directory should be,
no permission, a full disk) become one :class:`~sglab.errors.SglabError` naming the path.
"""

from __future__ import annotations

import errno
import io
import json
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from sglab.errors import SglabError
from sglab.io import atomic_write_bytes, atomic_write_json, atomic_write_text, remove_temporaries


def _os_error(path: Path, err: OSError, doing: str) -> SglabError:
    reason = {errno.ENOSPC: "the disk is full", errno.EFBIG: "the file size limit is reached",
              errno.EACCES: "permission denied", errno.EROFS: "the file system is read-only",
              errno.ENOTDIR: "a path component is a file, not a directory",
              errno.EEXIST: "a file stands where the directory should be"}.get(err.errno, err.strerror or str(err))
    return SglabError(f"{path}: cannot {doing}: {reason}")


class RunDir:
    """Paths and atomic readers/writers of one training run's outputs."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config = self.path / "config.json"
        self.metrics = self.path / "metrics.csv"
        self.summary = self.path / "summary.json"
        self.checkpoint = self.path / "checkpoint.pt"

    def open(self) -> "RunDir":
        """Make the directory (naming what is in the way if it cannot) and remove a crash's leftovers."""
        if self.path.exists() and not self.path.is_dir():
            raise SglabError(f"{self.path}: is a file, not a run directory; choose another --out")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise _os_error(self.path, err, "create the run directory") from None
        remove_temporaries(self.path)
        return self

    def _write(self, path: Path, write, *args) -> None:
        try:
            write(path, *args)
        except OSError as err:
            raise _os_error(path, err, "write") from None

    def write_config(self, record: dict[str, Any]) -> None:
        """Save the run's config (with seed, versions and device) as config.json."""
        self._write(self.config, atomic_write_json, record)

    def read_config(self) -> dict[str, Any]:
        """The saved config.json, with a clear error when there is none."""
        if not self.config.exists():
            raise SglabError(f"{self.config}: no config.json here; is {self.path} a sglab run directory?")
        try:
            return json.loads(self.config.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise SglabError(f"{self.config}: cannot read it ({err})") from None

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        """Save all metric rows as a tidy CSV (one row per logged step or evaluation)."""
        self._write(self.metrics, atomic_write_text, pd.DataFrame(rows).to_csv(index=False))

    def write_table(self, name: str, table: pd.DataFrame) -> None:
        """Save another tidy table of the run (e.g. ``fidelity.csv``) next to its metrics."""
        self._write(self.path / name, atomic_write_text, table.to_csv(index=False))

    def write_summary(self, summary: dict[str, Any]) -> None:
        """Save the run's summary.json (strict JSON: a missing or undefined number is null)."""
        self._write(self.summary, atomic_write_json, summary)

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Write checkpoint.pt atomically: a crash mid-write leaves the previous one intact."""
        buffer = io.BytesIO()
        torch.save(state, buffer)
        self._write(self.checkpoint, atomic_write_bytes, buffer.getvalue())

    def load_checkpoint(self, map_location: str | torch.device = "cpu") -> dict[str, Any]:
        """Read checkpoint.pt, with a clear error when it is missing or unreadable."""
        if not self.checkpoint.exists():
            where = "does not exist" if not self.path.exists() else "holds no checkpoint.pt"
            raise SglabError(f"cannot resume: {self.path} {where}; start a run there without --resume first")
        try:
            return torch.load(self.checkpoint, map_location=map_location, weights_only=False)
        except Exception as err:  # torch raises several kinds for corrupt files
            raise SglabError(f"{self.checkpoint}: cannot read checkpoint ({err}); delete it to start afresh") from None
