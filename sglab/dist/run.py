"""Decoupled training with one process per stage: what to run, and the one call that runs it.

    from sglab.dist import DistRun, train_distributed
    result = train_distributed(DistRun(ClassifyConfig(method="dni", layers=2, width=32, steps=50), dataset))
    result.loss        # the last stage's training loss, per step
    result.records     # every op of every rank with its start and end times

``train_distributed`` starts ``config.layers`` local processes (gloo); under ``torchrun`` call
``run_from_env(stage_worker, run)`` on every rank instead (:mod:`sglab.dist.launch`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

from sglab.dist.launch import launch
from sglab.dist.stage_worker import stage_worker
from sglab.errors import SglabError
from sglab.ops import Action


class InjectedFault(SglabError):
    """The failure that :class:`FailAt` raises on purpose (to test that a broken run stops and says where)."""


@dataclass(frozen=True)
class FailAt:
    """Make rank ``rank`` fail as it begins ``op`` of step ``step``: raise, or with ``hard`` die without a word."""

    rank: int
    step: int
    op: str
    hard: bool = False

    def __call__(self, rank: int, step: int, action: Action) -> None:
        """Called by a rank before each op; fails at the chosen one."""
        if (rank, step, action.op) == (self.rank, self.step, self.op):
            if self.hard:
                os._exit(3)  # no exception, no message: only the launcher's shared last op can name it
            raise InjectedFault(f"injected failure at {action} of step {step}")


@dataclass
class DistRun:
    """A classification run of ``config`` on ``dataset``, one rank per stage (``config.layers`` ranks).

    Attributes:
        config: a :class:`~sglab.training.config.ClassifyConfig`; the chain, optimizers, seed and
            batches are built from it exactly as the in-process trainer builds them.
        dataset: a :class:`~sglab.data.Dataset` (sent to every rank).
        target_lag: DNI's ``T_r`` of step ``t`` runs at the latest before ``S_r`` of step
            ``t + 1 + target_lag`` (0: the in-process order, identical results).
        max_pending: sends to one peer that may be in flight before a rank waits (how far an
            unlocked stage runs ahead of the next).
        fault: called before every op as ``fault(rank, step, action)`` (tests: :class:`FailAt`).
    """

    config: Any
    dataset: Any
    target_lag: int = 0
    max_pending: int = 2
    fault: Callable[[int, int, Action], None] | None = None


@dataclass
class DistResult:
    """What the ranks returned, merged: ``ranks[r]`` is rank ``r``'s own dict."""

    ranks: list[dict] = field(default_factory=list)

    @property
    def loss(self) -> list[float]:
        """The last stage's training loss at each step."""
        return self.ranks[-1]["loss"]

    @property
    def records(self) -> list[dict]:
        """Every op every rank ran, one dict per op (see :data:`~sglab.dist.stage_worker.RECORD_FIELDS`)."""
        return [record for rank in self.ranks for record in rank["records"]]

    def state(self, module: str = "stage") -> list[dict]:
        """Each rank's final ``state_dict`` of its ``stage`` (or ``synthesizer``, ``input_model``)."""
        return [rank["state"].get(module) for rank in self.ranks]


def train_distributed(run: DistRun, *, timeout: float = 60.0, run_timeout: float | None = None,
                      threads: int = 1) -> DistResult:
    """Train ``run`` with one local process per stage; raises :class:`~sglab.dist.launch.RankFailed` if a rank fails.

    ``timeout`` bounds each wait for a peer, ``run_timeout`` the whole run.
    """
    results = launch(stage_worker, run.config.layers, run, timeout=timeout, run_timeout=run_timeout, threads=threads)
    return DistResult(results)
