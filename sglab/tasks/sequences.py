"""What every sequence task hands a recurrent runner: a time-major batch, and the error its settings raise."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sglab.errors import UsageError


class TaskError(UsageError):
    """A task parameter that cannot work; the message names it and the allowed values."""


def require(ok: bool, message: str) -> None:
    """Raise :class:`TaskError` with ``message`` unless ``ok``."""
    if not ok:
        raise TaskError(message)


@dataclass
class SequenceBatch:
    """A batch of sequences, time-major.

    Attributes:
        inputs: ``(ticks, batch, input_size)`` float.
        targets: ``(ticks, batch, output_size)`` float bits (copy tasks) or ``(ticks, batch)``
            class indices (language modelling).
        mask: ``(ticks, batch)`` float, 1 where the target is scored.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    mask: torch.Tensor

    def to(self, device: torch.device | str) -> "SequenceBatch":
        """The batch on ``device``."""
        return SequenceBatch(self.inputs.to(device), self.targets.to(device), self.mask.to(device))
