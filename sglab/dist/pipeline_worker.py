"""One rank's loop of a locked pipeline baseline (``gpipe``, ``1f1b``): stage ``r``, microbatches of every step.

Rank ``r`` builds the whole chain exactly as the in-process trainer does
(:func:`sglab.training.build.build_chain` on ``run.config``, whose method is ``bprop``: a pipeline
is backprop over microbatches, so the same seed gives the same initial weights) and keeps stage
``r`` with its optimizer. Every rank draws the same batches from the same seeded
:class:`~sglab.tasks.classify.BatchStream` and splits each into ``m`` equal microbatches
(``run.microbatches``; default the method's own, ``4 ×`` the ranks).

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

Every receive of a step is posted (``irecv``) when the step begins and waited for at its
``RECV_*`` action; sends never wait for the peer unless ``max_pending`` of them are in flight
(at least ``m``). Because the lists come from one global order in which each receive follows
its send, no rank ever waits for a message that a later op of a waiting rank would make.

Every op is recorded as in :mod:`sglab.dist.stage_worker` (:data:`RECORD_FIELDS`, the microbatch
filled in), a receive's record being its wait.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from sglab.dist.program import peer, pipeline_program, runs_pipeline
from sglab.dist.stage_worker import RECORD_FIELDS, stage_worker
from sglab.dist.transport import BACKWARD, FORWARD, Transport
from sglab.errors import UsageError
from sglab.exec import ops
from sglab.methods import Method, get_method
from sglab.models.chains import output_shapes
from sglab.ops import Action
from sglab.tasks.classify import BatchStream
from sglab.training.build import build_chain


@dataclass
class PipelineRun:
    """A pipeline baseline of ``config`` (method ``bprop``) on ``dataset``, one rank per stage.

    The fields of :class:`sglab.dist.run.DistRun` plus ``method`` (the pipeline, ``gpipe`` or
    ``1f1b``) and ``microbatches`` per step (None: the method's default). :func:`pipeline_worker`
    reads a ``DistRun`` as well, taking ``method`` and ``microbatches`` from it where it has them.
    """

    config: Any
    dataset: Any
    method: str | Method = "gpipe"
    microbatches: int | None = None
    target_lag: int = 0
    max_pending: int = 2
    fault: Callable[[int, int, Action], None] | None = None


def pipeline_method(run) -> Method:
    """The pipeline ``run`` trains: its ``method`` if it names one, else its config's."""
    method = getattr(run, "method", None) or run.config.method
    return method if isinstance(method, Method) else get_method(method)


class PipelineWorker:
    """Rank ``ctx.rank``'s share of a pipeline run; :meth:`train` runs it."""

    def __init__(self, ctx, run):
        self.ctx, self.run, config, data = ctx, run, run.config, run.dataset
        self.method = pipeline_method(run)
        self.runner = runner = build_chain(config, data.input_shape, data.num_classes, "cpu")
        self.rank, self.num_stages = ctx.rank, runner.num_stages
        self.microbatches = m = getattr(run, "microbatches", None) or self.method.default_microbatches(self.num_stages)
        self._check(config)
        r = self.rank
        self.stage, self.optimizer = runner.stages[r], runner.optimizers[r]
        self.micro_size = b = config.batch_size // m
        shapes = [tuple(data.input_shape)] + output_shapes(runner.stages, data.input_shape)
        self.in_shape, self.out_shape = (b, *shapes[r]), (b, *shapes[r + 1])
        self.x_train, self.y_train = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
        self.batches = BatchStream(len(self.x_train), config.batch_size, config.seed)
        self.transport = Transport(r, ctx.timeout, max(run.max_pending, m), on_wait=lambda p, op, step: ctx.waiting_for(p),
                                   microbatches=m)
        self.program = pipeline_program(self.method, self.num_stages, m)[r]
        self.records: list[tuple] = []
        self.losses: list[float] = []
        self.errors: list[float] = []

    def _check(self, config) -> None:
        if not runs_pipeline(self.method):
            raise UsageError(f"the pipeline runner runs synchronous pipeline schedules (gpipe, 1f1b), "
                             f"not {self.method.name!r}")
        if config.method != "bprop":
            raise UsageError(f"a pipeline is backprop over microbatches: its config's method must be 'bprop', "
                             f"got {config.method!r}")
        if self.ctx.world_size != self.num_stages:
            raise UsageError(f"one rank per stage: {self.num_stages} stages need world_size {self.num_stages}, "
                             f"got {self.ctx.world_size}")
        m, batch = self.microbatches, config.batch_size
        if m < 1 or batch % m or batch // m < 2:
            raise UsageError(f"batch_size {batch} must split into {m} equal microbatches of at least 2 examples "
                             f"(batch norm)")
        if config.lr_milestones:
            raise UsageError("the multi-process runner has no learning-rate schedule: leave lr_milestones empty")

    # ---- the loop ----------------------------------------------------------------------

    def train(self) -> dict:
        """Run ``config.steps`` steps; this rank's records, losses and final stage state."""
        for step in range(self.run.config.steps):
            self.step(step)
        self.finish()
        return self.result()

    def settle(self) -> None:
        """Nothing is deferred: after :meth:`step` the stage is that of the step's end."""

    def finish(self) -> None:
        """Wait for every send to be received (before leaving the process group)."""
        self.transport.flush()

    def result(self) -> dict:
        """This rank's records, losses, lists and final stage state (the keys of the stage worker's result)."""
        return {"rank": self.rank, "records": [dict(zip(RECORD_FIELDS, r)) for r in self.records],
                "loss": self.losses, "error": self.errors, "synth_loss": {},
                "program": [str(a) for a in self.program], "microbatches": self.microbatches,
                "state": {"stage": {k: v.clone() for k, v in self.stage.state_dict().items()}}}

    def step(self, step: int) -> None:
        """One step: the batch every rank draws, its microbatches, then this rank's pipeline actions."""
        index = self.batches.next()
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
        for action in self.program:
            self._timed(step, action, getattr(self, "_" + action.op), s, action.microbatch)
        if self.rank == self.num_stages - 1:
            self.losses.append(sum(s.losses) / m)
            self.errors.append(sum(s.errors) / m)

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


def pipeline_worker(ctx, run) -> dict:
    """The launcher's worker (:func:`sglab.dist.launch.launch`) for a pipeline: train this rank's stage."""
    return PipelineWorker(ctx, run).train()


def worker_for(method: str | Method) -> Callable:
    """The launcher's worker for ``method``: :func:`pipeline_worker` for a pipeline schedule, else
    :func:`sglab.dist.stage_worker.stage_worker`."""
    method = method if isinstance(method, Method) else get_method(method)
    if method.pipelined:
        if not runs_pipeline(method):
            raise UsageError(f"the multi-process runner runs synchronous pipelines only, not {method.name!r}")
        return pipeline_worker
    return stage_worker
