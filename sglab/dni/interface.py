"""A decoupled neural interface between stage ``i`` and stage ``i+1``.

It owns the gradient synthesizer ``M_{i+1}(h_i, c) ≈ δ_i`` (used by stage ``i`` in its S op,
trained in its T op) and, for forward unlocking, the input synthesizer ``I_{i+1}(x, c) ≈ h_i``
(used by stage ``i+1`` in its SI op, trained in its TI op), each with its own optimizer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Interface:
    """The synthesizers that sit between two stages and the optimizers that train them."""

    synthesizer: nn.Module | None = None
    synthesizer_optimizer: torch.optim.Optimizer | None = None
    input_model: nn.Module | None = None
    input_optimizer: torch.optim.Optimizer | None = None

    def modules(self) -> dict[str, nn.Module]:
        """The trainable modules by role, for checkpoints and parameter counts."""
        found = {"synthesizer": self.synthesizer, "input_model": self.input_model}
        return {name: module for name, module in found.items() if module is not None}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimizers by role, for checkpoints and learning-rate schedules."""
        found = {"synthesizer": self.synthesizer_optimizer, "input_model": self.input_optimizer}
        return {name: opt for name, opt in found.items() if opt is not None}

