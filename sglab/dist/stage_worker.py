"""One rank's training loop over a feed-forward chain: stage ``r`` and the synthesizer of interface ``r``.

Rank ``r`` builds the in-process trainer's whole session
(:class:`~sglab.training.classify.ClassifySession`: the chain by
:func:`sglab.training.build.build_chain`, same seed, so the same initial weights and the same
generator for stochastic updates and unlocking), trains stage ``r`` with its optimizer, interface
``r``'s gradient synthesizer and interface ``r-1``'s input model, and draws the same batches from
the same seeded :class:`~sglab.tasks.classify.BatchStream` (every rank draws them: rank 0 reads
``x``, the last rank ``y``, and cDNI's synthesizers read the label on every rank).

:class:`~sglab.dist.whole_chain.WholeChainWorker` is the one rank of a 1-process run: it holds
every stage and runs the session's own step (the in-process runner's op order, no messages).

Each step runs :func:`sglab.dist.program.rank_step`'s ops; each compute op is the same call of
:mod:`sglab.exec.ops` that :class:`sglab.exec.chain.ChainRunner` makes, on the same tensors. So
under backprop the ranks end with the in-process runner's parameters, bit for bit.

DNI's ``T_r`` waits for stage ``r+1``'s input gradient (the true one from the last stage, else
bootstrapped through ``δ̂_{r+1}``). The rank does not wait for it in place: it posts the receive
and goes on, running ``T_r`` as soon as the target has arrived, and at the latest before
``S_r`` of the step ``target_lag + 1`` later. With ``target_lag = 0`` every synthesizer sees the
in-process order (``T_r`` of step ``t`` before ``S_r`` of ``t+1``), so results match it exactly;
a larger lag lets stage ``r`` run further ahead on a synthesizer that has not yet learnt from
the latest targets, and a ``T`` whose ``δ̂`` was made before another ``T`` stepped the
synthesizer predicts ``δ̂`` again from the kept ``h_r`` (its graph saw the old weights).

Every op (compute and message) is recorded with its start and end on this process's
``perf_counter_ns`` clock and on the wall clock (``time_ns``, comparable across processes on one
host) for merging the ranks into one :mod:`sglab.trace` (:mod:`sglab.dist.measured_trace`).

A worker is driven by :class:`sglab.dist.rank_loop.RankLoop`: :meth:`step` per step,
:meth:`settle` before the ranks meet (evaluations, checkpoints), :meth:`take_values` for the
metric rows, :attr:`owned` for what its checkpoint holds.
"""

from __future__ import annotations

import time
from collections import deque
from functools import lru_cache
from types import SimpleNamespace

import torch

from sglab.dist.measured_trace import RECORD_FIELDS
from sglab.dist.outputs import MetricValues, owned_names
from sglab.dist.program import peer, rank_step
from sglab.dist.rank_loop import RankLoop
from sglab.dist.transport import BACKWARD, FORWARD, Transport
from sglab.dist.whole_chain import WholeChainWorker
from sglab.errors import UsageError
from sglab.exec import ops
from sglab.exec.chain import label_context
from sglab.models.chains import output_shapes
from sglab.ops import Action

__all__ = ["RECORD_FIELDS", "StageWorker", "WholeChainWorker", "make_worker", "stage_worker"]


class StageWorker(MetricValues):
    """Rank ``ctx.rank``'s share of training ``run.config`` on ``run.dataset``, stage ``ctx.rank`` of ``session``'s chain."""

    def __init__(self, ctx, run, session):
        self.ctx, self.run, config, data = ctx, run, run.config, session.data
        self.session, self.runner = session, session.runner
        runner = self.runner
        self.method, self.rank, self.num_stages = runner.method, ctx.rank, runner.num_stages
        self._check(config)
        r = self.rank
        self.owned = owned_names(session, range(r, r + 1))
        self.stage, self.optimizer = runner.stages[r], runner.optimizers[r]
        self.interface = runner.interfaces[r] if runner.interfaces and r < self.num_stages - 1 else None
        self.below = runner.interfaces[r - 1] if runner.interfaces and r > 0 else None  # holds the input model
        self.learns = self.method.learns(r, runner.chain)
        self.input_grad = self.method.gradient in ("true", "synthetic")  # as ChainRunner: someone reads it
        shapes = [tuple(data.input_shape)] + output_shapes(runner.stages, data.input_shape)
        self.in_shape = (config.batch_size, *shapes[r])  # h_{r-1}, and the gradient sent down
        self.out_shape = (config.batch_size, *shapes[r + 1])  # h_r, and the gradient received from above
        self.x_train, self.y_train, self.batches = session.x_train, session.y_train, session.batches
        self.transport = Transport(r, ctx.timeout, run.max_pending, on_wait=lambda p, op, step: ctx.waiting_for(p))
        self.program = lru_cache(maxsize=None)(lambda active, locked: rank_step(
            self.method, self.num_stages, r, active, locked))
        self.records: list[tuple] = []
        # awaiting their T: (step, posted receive, δ̂ with its graph, h_r, c, synthesizer version at S)
        self.deferred: deque = deque()
        self.synth_version = 0  # T ops run so far: a δ̂ made at another version has a stale graph
        self.losses: list[float] = []
        self.errors: list[float] = []
        self.synth_losses: dict[int, float] = {}
        self.values: dict[int, dict] = {}  # step -> this rank's fields of its metric row, until taken

    def _check(self, config) -> None:
        if self.ctx.world_size != self.num_stages:
            raise UsageError(f"one rank per stage: {self.num_stages} stages need world_size {self.num_stages}, "
                             f"got {self.ctx.world_size}")
        if self.method.synthetic_gradients and self.runner.objective.kind != "l2":
            raise UsageError(f"the multi-process runner trains synthesizers by l2 only, not {self.runner.objective.kind!r}")
        if self.run.target_lag < 0:
            raise UsageError(f"target_lag must be >= 0, got {self.run.target_lag}")

    # ---- the loop ----------------------------------------------------------------------

    def settle(self) -> None:
        """Run every deferred ``T`` (waiting for its target): the state is then that after the last step."""
        self._drain(until=None)

    def finish(self) -> None:
        """:meth:`settle`, and wait for every send to be received (before leaving the process group)."""
        self._drain(until=None)
        self.transport.flush()


    def result(self) -> dict:
        """This rank's records, losses and final module states."""
        modules = {"stage": self.stage}
        if self.interface is not None and self.interface.synthesizer is not None:
            modules["synthesizer"] = self.interface.synthesizer
        if self.below is not None and self.below.input_model is not None:
            modules["input_model"] = self.below.input_model
        return {"rank": self.rank, "records": [dict(zip(RECORD_FIELDS, r)) for r in self.records],
                "loss": self.losses, "error": self.errors, "synth_loss": self.synth_losses,
                "state": {name: {k: v.clone() for k, v in m.state_dict().items()} for name, m in modules.items()}}

    def step(self, step: int) -> None:
        """One step: the batch every rank draws, then this rank's ops of the registry's step order."""
        index = self.batches.next()
        self.values.setdefault(step, {})["epoch"] = self.batches.epoch
        x, y = self.x_train[index], self.y_train[index]
        context = label_context(y, self.runner.num_classes) if self.method.context else None
        active = self.runner.sample_active()  # every rank draws the same, from the same seeded generator
        locked = self.method.waiting(active, self.runner.sample_locked())
        plan = self.program(active, locked)
        s = SimpleNamespace(step=step, x=x, y=y, context=context, locked=locked,
                            inp=None, below=None, h=None, loss=None, synth=None, synth_input=None, above=None)
        for action in plan.actions:
            self._drain(until=step - 1 - self.run.target_lag if action.op == "S" else None, poll=True)
            if plan.deferred and action.op in ("RECV_B", "T"):
                if action.op == "RECV_B":  # only posted now; the wait and T are timed when they run (_drain)
                    self._post_target(s)
                continue
            self._timed(step, action, getattr(self, "_" + action.op), s)

    def _timed(self, step: int, action: Action, op, *args):
        self.ctx.mark(step, action)
        if self.run.fault is not None:
            self.run.fault(self.rank, step, action)
        start, start_wall = time.perf_counter_ns(), time.time_ns()
        made = op(*args)
        self.records.append((self.rank, action.stage, action.op, step, action.microbatch, start,
                             time.perf_counter_ns(), start_wall, time.time_ns()))
        return made

    def _drain(self, until: int | None, poll: bool = False) -> None:
        """Run the deferred ``T`` ops in step order: those whose target has arrived, and (blocking) every
        one of a step ``<= until`` (``poll`` without ``until``: only arrived ones; neither: all)."""
        while self.deferred:
            step, pending, synth, h, context, version = self.deferred[0]
            must = (until is not None and step <= until) or (until is None and not poll)
            if not (must or pending.ready()):
                return
            self.deferred.popleft()
            target = self._timed(step, Action(self.rank, "RECV_B"), self.transport.wait, pending)
            self._timed(step, Action(self.rank, "T"), self._train_deferred, step, synth, h, context, version, target)

    def _train_deferred(self, step, synth, h, context, version, target) -> None:
        if version != self.synth_version:
            # a T since this S stepped the synthesizer in place, so the graph of δ̂ is stale: predict anew
            synth = ops.synthesize(self.interface.synthesizer, h, context)
        self._train_synthesizer(step, synth, target)

    # ---- the ops: as ChainRunner's, on tensors that come from other ranks ------------------

    def _RECV_F(self, s) -> None:
        a = Action(self.rank, "RECV_F")
        s.below = self.transport.recv(self.in_shape, torch.get_default_dtype(), peer(a), FORWARD, s.step, "RECV_F")

    def _SEND_F(self, s) -> None:
        self.transport.send(s.h, peer(Action(self.rank, "SEND_F")), FORWARD, s.step, "SEND_F")

    def _RECV_B(self, s) -> None:
        a = Action(self.rank, "RECV_B")
        s.above = self.transport.recv(self.out_shape, torch.get_default_dtype(), peer(a), BACKWARD, s.step, "RECV_B")

    def _post_target(self, s) -> None:
        """Post the receive of ``T_r``'s target; nothing else this step reads it, so ``T_r`` waits in the queue."""
        pending = self.transport.post_recv(self.out_shape, torch.get_default_dtype(), peer(Action(self.rank, "RECV_B")),
                                           BACKWARD, s.step, "RECV_B")
        self.deferred.append((s.step, pending, s.synth, s.h.detach(), s.context, self.synth_version))

    def _SEND_B(self, s) -> None:
        self.transport.send(s.inp.grad, peer(Action(self.rank, "SEND_B")), BACKWARD, s.step, "SEND_B")

    def _SI(self, s) -> None:
        s.synth_input, s.inp = ops.synthetic_input(self.below.input_model, s.x, s.context)

    def _F(self, s) -> None:
        if self.rank == 0:
            s.inp = s.x
        elif s.inp is None:  # not already a synthetic input from SI
            s.inp = ops.input_leaf(s.below, self.input_grad)
        s.h = ops.forward(self.stage, s.inp, learns=self.learns)
        if self.rank == self.num_stages - 1:
            s.loss, error = self.runner.criterion(s.h, s.y)
            self.losses.append(float(s.loss.detach()))
            self.errors.append(float(error))
            self.values[s.step].update(loss=self.losses[-1], train_error=self.errors[-1])

    def _S(self, s) -> None:
        s.synth = ops.synthesize(self.interface.synthesizer, s.h, s.context)

    def _B(self, s) -> None:
        if self.rank == self.num_stages - 1:
            roots, grad = [s.loss], None
        elif self.method.synthetic_gradients and not s.locked[self.rank]:
            roots, grad = [s.h], s.synth.detach()
        else:
            roots, grad = [s.h], s.above
        ops.backward(roots, None if grad is None else [grad], self.optimizer)

    def _U(self, s) -> None:
        ops.update(self.optimizer)

    def _T(self, s) -> None:
        self._train_synthesizer(s.step, s.synth, s.above)

    def _train_synthesizer(self, step: int, prediction, target) -> None:
        weight = self.run.config.synth_loss_weight
        loss = ops.train_synthesizer(prediction, target, self.interface.synthesizer_optimizer, weight)
        self.synth_losses[step] = loss
        self.values.setdefault(step, {})[f"synth_loss_{self.rank}"] = loss
        self.synth_version += 1

    def _TI(self, s) -> None:
        loss = ops.train_synthesizer(s.synth_input, s.below, self.below.input_optimizer)
        self.values[s.step][f"input_loss_{self.rank - 1}"] = loss


def make_worker(ctx, run, session):
    """The worker of rank ``ctx.rank``: all stages in a world of one, else stage ``ctx.rank``."""
    return WholeChainWorker(ctx, run, session) if ctx.world_size == 1 else StageWorker(ctx, run, session)


def stage_worker(ctx, run, out_dir=None, resume: bool = False, progress: bool = False) -> dict:
    """The launcher's worker (:func:`sglab.dist.launch.launch`): train this rank's stages; its results."""
    return RankLoop(ctx, run, out_dir, resume, progress, make_worker).train()
