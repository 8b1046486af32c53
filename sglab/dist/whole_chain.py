"""The one rank of a 1-process run: every stage, trained by the in-process session's own step.

:class:`WholeChainWorker` runs :meth:`sglab.training.classify.ClassifySession.step` (the
in-process runner's op order, no messages) under :class:`sglab.dist.rank_loop.RankLoop`, so a
1-process run writes the same run directory and measured trace as one rank per stage; every op
is timed through the runner's :class:`~sglab.exec.observe.Observer` hook.
"""

from __future__ import annotations

import contextlib
import time

from sglab.dist.measured_trace import RECORD_FIELDS
from sglab.dist.outputs import MetricValues, owned_names
from sglab.errors import UsageError
from sglab.exec.observe import Observer
from sglab.ops import Action


class _Recorder(Observer):
    """Times every op of a :class:`~sglab.exec.chain.ChainRunner` step as a :data:`RECORD_FIELDS` tuple."""

    def __init__(self, worker: "WholeChainWorker"):
        self.worker, self.step = worker, 0

    @contextlib.contextmanager
    def op(self, action: Action):
        worker = self.worker
        worker.ctx.mark(self.step, action)
        if worker.run.fault is not None:
            worker.run.fault(worker.rank, self.step, action)
        start, start_wall = time.perf_counter_ns(), time.time_ns()
        yield
        worker.records.append((worker.rank, action.stage, action.op, self.step, action.microbatch, start,
                               time.perf_counter_ns(), start_wall, time.time_ns()))


class WholeChainWorker(MetricValues):
    """The one rank of a 1-process run: every stage, trained by the session's own step (no messages)."""

    def __init__(self, ctx, run, session):
        if ctx.world_size != 1:
            raise UsageError(f"a rank holding every stage runs alone, not in a world of {ctx.world_size}")
        self.ctx, self.run, self.session, self.rank = ctx, run, session, ctx.rank
        self.owned = owned_names(session, range(session.runner.num_stages))
        self.records: list[tuple] = []
        self.values: dict[int, dict] = {}
        self._recorder = _Recorder(self)

    def step(self, step: int) -> None:
        """One step of the in-process runner; ``step`` counts from 0 (records and messages), the loop's from 1."""
        self._recorder.step = step
        self.values[step] = self.session.step(step + 1, self._recorder)

    def settle(self) -> None:
        """Nothing waits: every op of a step ran within it."""

    def finish(self) -> None:
        """Nothing is in flight."""


    def result(self) -> dict:
        """This rank's records and final module states (every stage's)."""
        runner = self.session.runner
        return {"rank": self.rank, "records": [dict(zip(RECORD_FIELDS, r)) for r in self.records],
                "loss": [], "error": [], "synth_loss": {},
                "state": {"stages": [{k: v.clone() for k, v in stage.state_dict().items()} for stage in runner.stages]}}
