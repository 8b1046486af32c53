"""One rank's loop of a locked pipeline baseline (``gpipe``, ``1f1b``): stage ``r``, microbatches of every step.

A pipeline is ``DistRun(config, dataset, method="gpipe", microbatches=m)`` with ``config.method``
``bprop`` (a pipeline is backprop over microbatches); :func:`sglab.dist.run.train_distributed`
runs it through :func:`pipeline_worker`, whose ranks run :class:`sglab.dist.rank_loop.RankLoop`
as a stage run's do: the same run directory (metrics, summary, a checkpoint per rank, resume),
the same meetings at evaluation points and the same result keys (loss, records, clock).

Rank ``r`` builds the in-process trainer's session (:class:`~sglab.training.classify.ClassifySession`:
the chain by :func:`sglab.training.build.build_chain`, so the same seed gives the same initial
weights) and keeps stage ``r`` with its optimizer. Every rank draws the same batches from the
session's seeded :class:`~sglab.tasks.classify.BatchStream` and splits each into ``m`` equal
microbatches (``run.microbatches``; default the method's own, ``4 ×`` the ranks).

Each step runs exactly rank ``r``'s list of :func:`sglab.dist.program.pipeline_program`, the
registry's :meth:`~sglab.methods.Method.rank_actions` with the sends and receives of
:func:`sglab.schedules.with_communication` (the lists the simulator runs):

- ``F`` of microbatch ``j`` reads ``h_{r-1}`` of ``j`` (its ``RECV_F`` earlier in the list), and
  its ``SEND_F`` posts ``h_r`` to rank ``r+1``; the last rank's ``F`` also computes the loss of
  ``j``: the criterion's mean over the microbatch divided by ``m``, so the accumulated gradient
  is that of the mean over the step's batch;
- ``B`` of ``j`` backpropagates the loss (last rank) or ``h_r`` with the gradient received from
  rank ``r+1``; the step's first ``B`` clears the stage's gradients, the others accumulate, in
  microbatch order; its ``SEND_B`` posts the input gradient to rank ``r-1``;
- ``U`` steps the optimizer once, after every ``B`` of the step.

Every receive of a step is posted (``irecv``) when the step begins and waited for right before
the op that reads it (:func:`waits_at_use`). The list puts a ``RECV_*`` where its send happens in
the global order, which can be ops earlier: waiting there held the last rank's ``B`` of ``j`` until
``h`` of ``j+1`` came, which the simulator, whose ops wait only for their inputs, never does.
Sends never wait for the peer unless ``max_pending`` of them are in flight (at least ``m``). Because the lists come from one global order in which each receive follows
its send, no rank ever waits for a message that a later op of a waiting rank would make.

Every op is recorded as in :mod:`sglab.dist.stage_worker` (:data:`RECORD_FIELDS`, the microbatch
filled in), a receive's record being its wait. The step's training loss (the last rank's) is the
mean of its microbatches' losses, as is its training error.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from sglab.dist.measured_trace import RECORD_FIELDS
from sglab.dist.outputs import MetricValues, owned_names
from sglab.dist.program import peer, pipeline_program, runs_pipeline
from sglab.dist.rank_loop import RankLoop
from sglab.dist.run_spec import DistRun
from sglab.dist.stage_worker import stage_worker
from sglab.dist.transport import BACKWARD, FORWARD, Transport
from sglab.errors import UsageError
from sglab.exec import ops
from sglab.methods import Method, get_method
from sglab.models.chains import output_shapes
from sglab.ops import Action


@dataclass
class PipelineRun(DistRun):
    """A :class:`~sglab.dist.run_spec.DistRun` whose ``method`` defaults to ``gpipe`` (from before
    ``DistRun`` had a ``method``; ``DistRun(config, dataset, method="gpipe")`` is the same run)."""

    method: str | Method | None = "gpipe"


def pipeline_method(run) -> Method:
    """The pipeline ``run`` trains: its ``method`` if it names one, else its config's."""
    method = getattr(run, "method", None) or run.config.method
    return method if isinstance(method, Method) else get_method(method)


def check_pipeline(config, world_size: int, method: Method, microbatches: int | None) -> int:
    """Raise :class:`UsageError` (one line) unless ``world_size`` ranks can run pipeline ``method`` on
    ``config``; the number of microbatches per step (``microbatches``, or the method's default)."""
    if not runs_pipeline(method):
        raise UsageError(f"the pipeline runner runs synchronous pipeline schedules (gpipe, 1f1b), not {method.name!r}")
    if config.method != "bprop":
        raise UsageError(f"a pipeline is backprop over microbatches: its config's method must be 'bprop', "
                         f"got {config.method!r}")
    if world_size != config.layers:
        raise UsageError(f"a pipeline runs one process per stage: {config.layers} stages need {config.layers} "
                         f"processes, got {world_size}")
    m = microbatches or method.default_microbatches(config.layers)
    batch = config.batch_size
    if m < 1 or batch % m or batch // m < 2:
        raise UsageError(f"batch_size {batch} must split into {m} equal microbatches of at least 2 examples "
                         f"(batch norm)")
    return m


class PipelineWorker(MetricValues):
    """Rank ``ctx.rank``'s share of a pipeline run: stage ``ctx.rank`` of ``session``'s chain (see the module docstring)."""

    def __init__(self, ctx, run, session):
        self.ctx, self.run, config, data = ctx, run, run.config, session.data
        self.session, self.runner = session, session.runner
        self.method = pipeline_method(run)
        self.rank, self.num_stages = ctx.rank, self.runner.num_stages
        self.microbatches = m = check_pipeline(config, ctx.world_size, self.method, getattr(run, "microbatches", None))
        r = self.rank
        self.owned = owned_names(session, range(r, r + 1))
        self.stage, self.optimizer = self.runner.stages[r], self.runner.optimizers[r]
        self.micro_size = b = config.batch_size // m
        shapes = [tuple(data.input_shape)] + output_shapes(self.runner.stages, data.input_shape)
        self.in_shape, self.out_shape = (b, *shapes[r]), (b, *shapes[r + 1])
        self.x_train, self.y_train, self.batches = session.x_train, session.y_train, session.batches
        self.transport = Transport(r, ctx.timeout, max(run.max_pending, m), on_wait=lambda p, op, step: ctx.waiting_for(p),
                                   microbatches=m)
        self.program = pipeline_program(self.method, self.num_stages, m)[r]
        self.order = waits_at_use(self.program)
        self.records: list[tuple] = []
        self.losses: list[float] = []
        self.errors: list[float] = []
        self.values: dict[int, dict] = {}  # step -> this rank's fields of its metric row, until taken

    # ---- the loop ----------------------------------------------------------------------

    def settle(self) -> None:
        """Nothing is deferred: after :meth:`step` the stage is that of the step's end."""

    def finish(self) -> None:
        """Wait for every send to be received (before leaving the process group)."""
        self.transport.flush()

    def describe(self) -> dict:
        """The schedule, for the run's ``config.json``, manifest and summary (whose ``method`` is ``bprop``)."""
        return {"pipeline": {"method": self.method.name, "microbatches": self.microbatches}}

    def result(self) -> dict:
        """This rank's records, losses, lists and final stage state (the keys of the stage worker's result)."""
        return {"rank": self.rank, "records": [dict(zip(RECORD_FIELDS, r)) for r in self.records],
                "loss": self.losses, "error": self.errors, "synth_loss": {},
                "program": [str(a) for a in self.program], "microbatches": self.microbatches,
                "state": {"stage": {k: v.clone() for k, v in self.stage.state_dict().items()}}}

    def step(self, step: int) -> None:
        """One step: the batch every rank draws, its microbatches, then this rank's pipeline actions."""
        index = self.batches.next()
        self.values.setdefault(step, {})["epoch"] = self.batches.epoch
        x, y = self.x_train[index], self.y_train[index]
        b, m = self.micro_size, self.microbatches
        s = _Step(step, [x[j * b:(j + 1) * b] for j in range(m)], [y[j * b:(j + 1) * b] for j in range(m)])
        dtype = torch.get_default_dtype()
        for action in self.program:  # post every receive of the step now; the RECV_* actions wait for them
            if action.op == "RECV_F":
                s.pending[action] = self.transport.post_recv(self.in_shape, dtype, peer(action), FORWARD, step,
                                                             "RECV_F", action.microbatch)
            elif action.op == "RECV_B":
                s.pending[action] = self.transport.post_recv(self.out_shape, dtype, peer(action), BACKWARD, step,
                                                             "RECV_B", action.microbatch)
        for action in self.order:
            self._timed(step, action, getattr(self, "_" + action.op), s, action.microbatch)
        if self.rank == self.num_stages - 1:
            self.losses.append(sum(s.losses) / m)
            self.errors.append(sum(s.errors) / m)
            self.values[step].update(loss=self.losses[-1], train_error=self.errors[-1])

    def _timed(self, step: int, action: Action, op, *args) -> None:
        self.ctx.mark(step, action)
        if self.run.fault is not None:
            self.run.fault(self.rank, step, action)
        start, start_wall = time.perf_counter_ns(), time.time_ns()
        op(*args)
        self.records.append((self.rank, action.stage, action.op, step, action.microbatch, start,
                             time.perf_counter_ns(), start_wall, time.time_ns()))

    # ---- the ops: ChainRunner's calls of sglab.exec.ops, per microbatch -------------------

    def _RECV_F(self, s, j: int) -> None:
        s.below[j] = self.transport.wait(s.pending.pop(Action(self.rank, "RECV_F", j)))

    def _RECV_B(self, s, j: int) -> None:
        s.above[j] = self.transport.wait(s.pending.pop(Action(self.rank, "RECV_B", j)))

    def _SEND_F(self, s, j: int) -> None:
        self.transport.send(s.h[j], peer(Action(self.rank, "SEND_F")), FORWARD, s.step, "SEND_F", j)

    def _SEND_B(self, s, j: int) -> None:
        self.transport.send(s.inp.pop(j).grad, peer(Action(self.rank, "SEND_B")), BACKWARD, s.step, "SEND_B", j)

    def _F(self, s, j: int) -> None:
        inp = s.x[j] if self.rank == 0 else ops.input_leaf(s.below.pop(j), True)
        s.inp[j] = inp
        h = s.h[j] = ops.forward(self.stage, inp, learns=True)
        if self.rank == self.num_stages - 1:
            loss, error = self.runner.criterion(h, s.y[j])
            s.losses.append(float(loss.detach()))
            s.errors.append(float(error))
            s.loss[j] = loss / self.microbatches if self.microbatches > 1 else loss

    def _B(self, s, j: int) -> None:
        if self.rank == self.num_stages - 1:
            roots, grads = [s.loss.pop(j)], None
        else:
            roots, grads = [s.h[j]], [s.above.pop(j)]
        ops.backward(roots, grads, None if s.accumulating else self.optimizer)  # the first B clears the gradients
        s.accumulating = True
        s.h.pop(j)
        if self.rank == 0:
            s.inp.pop(j)

    def _U(self, s, j: int) -> None:
        ops.update(self.optimizer)


def waits_at_use(program: list[Action]) -> list[Action]:
    """``program`` with each ``RECV_F``/``RECV_B`` moved to just before the ``F``/``B`` (or ``I``) that reads it."""
    consumer = {"RECV_F": ("F",), "RECV_B": ("B", "I")}
    order = [a for a in program if a.op not in consumer]
    for recv in (a for a in program if a.op in consumer):
        at = next(i for i, a in enumerate(order) if a.op in consumer[recv.op] and a.microbatch == recv.microbatch)
        order.insert(at, recv)
    return order


class _Step:
    """The tensors of one step's microbatches on this rank, by microbatch."""

    def __init__(self, step: int, x: list, y: list):
        self.step, self.x, self.y = step, x, y
        self.pending: dict[Action, Any] = {}
        self.below: dict[int, torch.Tensor] = {}  # received h_{r-1}
        self.above: dict[int, torch.Tensor] = {}  # received gradient of h_r
        self.inp: dict[int, torch.Tensor] = {}  # the stage's input (a leaf whose grad goes down)
        self.h: dict[int, torch.Tensor] = {}
        self.loss: dict[int, torch.Tensor] = {}
        self.losses: list[float] = []
        self.errors: list[float] = []
        self.accumulating = False


def pipeline_worker(ctx, run, out_dir=None, resume: bool = False, progress: bool = False) -> dict:
    """The launcher's worker (:func:`sglab.dist.launch.launch`) for a pipeline: train this rank's stage
    through :class:`~sglab.dist.rank_loop.RankLoop` (the run directory, if any); its results."""
    return RankLoop(ctx, run, out_dir, resume, progress, PipelineWorker).train()


def worker_for(method: str | Method) -> Callable:
    """The launcher's worker for ``method``: :func:`pipeline_worker` for a pipeline schedule, else
    :func:`sglab.dist.stage_worker.stage_worker`."""
    method = method if isinstance(method, Method) else get_method(method)
    if method.pipelined:
        if not runs_pipeline(method):
            raise UsageError(f"the multi-process runner runs synchronous pipelines only, not {method.name!r}")
        return pipeline_worker
    return stage_worker
