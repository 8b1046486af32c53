"""What the one training loop needs of a task: a :class:`Session` per run.

A session holds a task's data, model and runner for one run and does one step, one
evaluation, and the bookkeeping around them; the loop (:mod:`sglab.training.loop`) owns the
order, the run directory, checkpoints, resume, divergence and progress. Everything a session
changes while training is in its :meth:`state_dict`, so a resumed run continues bitwise.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import torch

from sglab.exec.observe import Observer
from sglab.probes import Probe
from sglab.training.config import RunConfig


class Session(ABC):
    """A task's run, as the loop drives it. Subclasses implement the abstract methods."""

    #: True once the task has nothing left to learn (a curriculum that solved its last length).
    finished: bool = False

    def __init__(self, config: RunConfig, device: torch.device):
        self.config, self.device = config, device

    # ---- what every task implements ----------------------------------------------------

    @abstractmethod
    def step(self, step: int, observer: Observer | None) -> dict[str, Any]:
        """Train on one batch; returns the training row's fields (``loss`` among them)."""

    @abstractmethod
    def evaluate(self, step: int) -> list[dict[str, Any]]:
        """Evaluation rows at ``step`` (may be empty)."""

    @abstractmethod
    def judge_loss(self, evaluation: list[dict[str, Any]]) -> float:
        """A loss computed with the current weights, which decides whether they may be checkpointed."""

    @abstractmethod
    def modules(self) -> dict[str, torch.nn.Module]:
        """Every trained module by name."""

    @abstractmethod
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Every optimizer by name."""

    @abstractmethod
    def summary(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """The task's own summary fields, from the metric rows."""

    @abstractmethod
    def probe(self) -> Probe:
        """The fidelity probe of this task's runner (:mod:`sglab.probes`), for the steps the loop probes."""

    # ---- what a task may add -----------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """What the run trains on, for config.json."""
        return {}

    def extra_state(self) -> dict[str, Any]:
        """State beyond modules and optimizers (data streams, generators, curricula)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:  # noqa: B027 (a task without extra state has nothing to restore)
        """Restore :meth:`extra_state`."""

    def postfix(self, row: dict[str, Any]) -> dict[str, str]:
        """What the progress bar shows after a step."""
        return {"loss": f"{row['loss']:.3f}"}

    # ---- shared ------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Modules, optimizers, extra state and torch's global generator."""
        return {"modules": {k: m.state_dict() for k, m in self.modules().items()},
                "optimizers": {k: o.state_dict() for k, o in self.optimizers().items()},
                "extra": self.extra_state(), "torch_rng": torch.get_rng_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`."""
        for key, module in self.modules().items():
            module.load_state_dict(state["modules"][key])
        for key, optimizer in self.optimizers().items():
            optimizer.load_state_dict(state["optimizers"][key])
        self.load_extra_state(state["extra"])
        torch.set_rng_state(state["torch_rng"])

    def weights_finite(self) -> bool:
        """Whether every parameter and optimizer state is finite."""
        for module in self.modules().values():
            if not all(torch.isfinite(p).all() for p in module.parameters()):
                return False
        for optimizer in self.optimizers().values():
            for state in optimizer.state.values():
                if not all(torch.isfinite(v).all() for v in state.values() if torch.is_tensor(v) and v.is_floating_point()):
                    return False
        return True

    def scale_learning_rates(self, factor: float) -> None:
        """Multiply every learning rate by ``factor``."""
        for optimizer in self.optimizers().values():
            for group in optimizer.param_groups:
                group["lr"] *= factor


class EpisodeSession(Session):
    """A session whose runner holds its modules and optimizers and samples fresh episodes from
    ``self.generator`` (seeded ``config.seed + 1``), its only extra state. Subclasses set ``self.runner``."""

    def __init__(self, config: RunConfig, device: torch.device):
        super().__init__(config, device)
        self.generator = torch.Generator().manual_seed(config.seed + 1)

    def modules(self) -> dict[str, torch.nn.Module]:
        """The runner's modules by role."""
        return self.runner.modules()

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The runner's optimizers by role."""
        return self.runner.optimizers()

    def extra_state(self) -> dict[str, Any]:
        """The episode sampler's generator."""
        return {"generator": self.generator.get_state()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`extra_state`."""
        self.generator.set_state(state["generator"])


def finite(value: float | None) -> bool:
    """Whether ``value`` is a finite number."""
    return value is not None and math.isfinite(value)
