"""What every runner's probe shares: records per interface, and rows of metrics at the end of a step."""

from __future__ import annotations

from typing import Any

import torch

from sglab.exec.observe import Observer
from sglab.probes.metrics import fidelity_metrics

#: The columns of a probe's rows and of a run's ``fidelity.csv``, in order.
FIDELITY_COLUMNS = ("step", "interface", "microbatch", "metric", "value")


class Probe(Observer):
    """An observer that, for the steps it watches, compares each interface's gradients with the true one.

    Attach it to a runner's step (it wants the tensors), then call :meth:`finish` with the step's
    number: it completes what the runner's ops could not (for the chain, the true gradients) and
    returns the step's metric rows. :attr:`last` keeps the step's records, the tensors behind the
    rows, keyed by ``(interface, microbatch)``: ``true`` (δ), ``synthetic`` (δ̂), ``target`` and
    ``prediction`` (T's), ``update_dni`` and ``update_bprop`` (the stage's parameter gradient
    through the interface from δ̂ and from δ), each in the units of the true gradient.
    """

    wants_tensors = True

    def __init__(self) -> None:
        self.last: dict[tuple[int, int], dict[str, torch.Tensor]] = {}

    def begin_step(self, step: int) -> None:
        """A step starts: forget the last one's records."""
        self.last = {}

    def record(self, interface: int, microbatch: int = 0, **tensors: torch.Tensor) -> None:
        """Keep ``tensors`` in the record of ``(interface, microbatch)``."""
        self.last.setdefault((interface, microbatch), {}).update(tensors)

    def complete(self) -> None:  # noqa: B027 (a probe that measures during the step has nothing left to do)
        """Measure what needs the whole step (called by :meth:`finish`)."""

    def finish(self, step: int) -> list[dict[str, Any]]:
        """The step's rows, one per (interface, microbatch, metric), labelled ``step``."""
        self.complete()
        rows = []
        for (interface, microbatch), record in sorted(self.last.items()):
            if "true" in record:
                rows += [{"step": step, "interface": interface, "microbatch": microbatch, "metric": name, "value": value}
                         for name, value in fidelity_metrics(record).items()]
        return rows
