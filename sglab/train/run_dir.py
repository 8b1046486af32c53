"""A run directory: config.json, metrics.csv, summary.json and checkpoint.pt, all written atomically."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from sglab.errors import SglabError
from sglab.io import atomic_write_bytes, atomic_write_json, atomic_write_text


class RunDir:
    """Paths and atomic readers/writers of one training run's outputs."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config = self.path / "config.json"
        self.metrics = self.path / "metrics.csv"
        self.summary = self.path / "summary.json"
        self.checkpoint = self.path / "checkpoint.pt"

    def write_config(self, record: dict[str, Any]) -> None:
        """Save the run's config (with seed, versions and device) as config.json."""
        atomic_write_json(self.config, record)

    def read_config(self) -> dict[str, Any]:
        """The saved config.json, with a clear error when there is none."""
        if not self.config.exists():
            raise SglabError(f"{self.config}: no config.json here; is {self.path} a sglab run directory?")
        return json.loads(self.config.read_text())

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        """Save all metric rows as a tidy CSV (one row per logged step or evaluation)."""
        atomic_write_text(self.metrics, pd.DataFrame(rows).to_csv(index=False))

    def write_summary(self, summary: dict[str, Any]) -> None:
        """Save the run's summary.json."""
        atomic_write_json(self.summary, summary)

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Write checkpoint.pt atomically: a crash mid-write leaves the previous one intact."""
        buffer = io.BytesIO()
        torch.save(state, buffer)
        atomic_write_bytes(self.checkpoint, buffer.getvalue())

    def load_checkpoint(self, map_location: str | torch.device = "cpu") -> dict[str, Any]:
        """Read checkpoint.pt, with a clear error when it is missing or unreadable."""
        if not self.checkpoint.exists():
            raise SglabError(f"{self.checkpoint}: no checkpoint to resume from")
        try:
            return torch.load(self.checkpoint, map_location=map_location, weights_only=False)
        except Exception as err:  # torch raises several kinds for corrupt files
            raise SglabError(f"{self.checkpoint}: cannot read checkpoint ({err}); delete it to start afresh") from None
