"""A run's fidelity log: on which steps the probe is attached, and every row it has recorded.

The training loop attaches the probe only at every ``every``-th step (no probe, no cost, on the
others), keeps the rows in its checkpoint so a resumed run ends with the same log, and writes
them as ``fidelity.csv``: one row per (step, interface, microbatch, metric), columns
:data:`~sglab.probes.probe.FIDELITY_COLUMNS`.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from sglab.exec.observe import Observer, Observers
from sglab.probes.probe import FIDELITY_COLUMNS, Probe

#: The run-directory file the log is written to.
FIDELITY_FILE = "fidelity.csv"


class FidelityLog:
    """``probe`` attached every ``every`` steps (None: never) and the rows so far (``rows``: a checkpoint's)."""

    def __init__(self, probe: Probe | None, every: int | None, rows: list[dict[str, Any]] | None = None):
        self.probe, self.every = probe, every
        self.rows = list(rows or [])

    def due(self, step: int) -> bool:
        """Whether ``step`` is probed."""
        return self.probe is not None and self.every is not None and step % self.every == 0

    def observer(self, step: int, observer: Observer | None) -> Observer | None:
        """What step ``step`` runs with: ``observer``, joined by the probe when the step is probed."""
        return Observers(observer, self.probe) if self.due(step) else observer

    def collect(self, step: int) -> None:
        """After step ``step``: the probe's rows, if it watched."""
        if self.due(step):
            self.rows += self.probe.finish(step)

    @property
    def written(self) -> bool:
        """Whether the run has a fidelity file: it probes, or probed before it was resumed."""
        return self.every is not None or bool(self.rows)

    def table(self) -> pd.DataFrame:
        """The rows as a tidy table."""
        return pd.DataFrame(self.rows, columns=list(FIDELITY_COLUMNS))
