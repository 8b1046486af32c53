"""What a multi-process run trains: :class:`DistRun` (config, data, schedule, faults to inject).

Kept apart from :mod:`sglab.dist.run` so that the rank workers (:mod:`sglab.dist.stage_worker`,
:mod:`sglab.dist.pipeline_worker`), which :mod:`sglab.dist.run` imports, can read it too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

from sglab.errors import SglabError
from sglab.methods import Method, get_method
from sglab.ops import Action


class InjectedFault(SglabError):
    """The failure that :class:`FailAt` raises on purpose (to test that a broken run stops and says where)."""


@dataclass(frozen=True)
class FailAt:
    """Make rank ``rank`` fail as it begins ``op`` of step ``step`` (of microbatch ``microbatch``; None: the
    first such op): raise, or with ``hard`` die without a word."""

    rank: int
    step: int
    op: str
    hard: bool = False
    microbatch: int | None = None

    def __call__(self, rank: int, step: int, action: Action) -> None:
        """Called by a rank before each op; fails at the chosen one."""
        if (rank, step, action.op) == (self.rank, self.step, self.op) and self.microbatch in (None, action.microbatch):
            if self.hard:
                os._exit(3)  # no exception, no message: only the launcher's shared last op can name it
            raise InjectedFault(f"injected failure at {action} of step {step}")


@dataclass
class DistRun:
    """A classification run of ``config`` on ``dataset``, one rank per stage (``config.layers`` ranks) or one rank.

    Attributes:
        config: a :class:`~sglab.training.config.ClassifyConfig`; the chain, optimizers, seed and
            batches are built from it exactly as the in-process trainer builds them.
        dataset: a :class:`~sglab.data.Dataset` (sent to every rank).
        target_lag: DNI's ``T_r`` of step ``t`` runs at the latest before ``S_r`` of step
            ``t + 1 + target_lag`` (0: the in-process order, identical results).
        max_pending: sends to one peer that may be in flight before a rank waits (how far an
            unlocked stage runs ahead of the next).
        fault: called before every op as ``fault(rank, step, action)`` (tests: :class:`FailAt`).
        processes: ranks: ``config.layers`` (None, the default: one per stage) or 1 (every stage
            in one process, running the in-process runner's step through the same loop and outputs).
        method: a pipeline schedule of the registry (``gpipe``, ``1f1b``; a name or a
            :class:`~sglab.methods.Method`) to train ``config`` with, whose method is then
            ``bprop`` (a pipeline is backprop over microbatches, and the config's method must
            be one the in-process trainer knows). None, the default: ``config.method``.
        microbatches: microbatches per step of a pipeline (None: the schedule's default).
    """

    config: Any
    dataset: Any
    target_lag: int = 0
    max_pending: int = 2
    fault: Callable[[int, int, Action], None] | None = None
    processes: int | None = None
    method: str | Method | None = None
    microbatches: int | None = None

    @property
    def world_size(self) -> int:
        """How many ranks the run has."""
        return self.config.layers if self.processes is None else self.processes

    def resolved_method(self) -> Method:
        """The method the ranks run: :attr:`method` if given, else the config's."""
        method = self.method or self.config.method
        return method if isinstance(method, Method) else get_method(method)

    @property
    def pipelined(self) -> bool:
        """Whether the run is a pipeline schedule (run by :mod:`sglab.dist.pipeline_worker`)."""
        return self.resolved_method().pipelined

    def label(self) -> str:
        """The method's name for people: ``dni``, or ``gpipe`` for a pipeline."""
        return self.resolved_method().name
