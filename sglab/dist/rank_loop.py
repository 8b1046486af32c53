"""Every rank's training loop: :func:`sglab.training.train`'s order, run directory and checkpoints, over ranks.

The loop is the in-process loop (:mod:`sglab.training.loop`) with the session split over ranks.
Ranks run their steps on their own, meeting only at evaluation points (``eval_every`` and the
last step), where they:

1. **settle**: each rank runs its deferred ``T`` ops, so its state is that after the step;
2. **gather** to rank 0: each rank's fields of the metric rows since the last meeting (the
   loss and batch error come from the last rank, ``synth_loss_i`` from rank ``i``,
   ``input_loss_i`` from rank ``i+1``), whether its weights are finite, and its stages'
   weights; rank 0 loads those into its own copy of the chain and evaluates, exactly as the
   in-process session does (so ``eval`` rows are the in-process rows bitwise);
3. rank 0 makes the rows the in-process loop makes (``train`` rows at ``log_every``, at the
   last step and at a loss that is not sane), judges the evaluation, and **decides**: save a
   checkpoint, or stop because the run diverged; it broadcasts the decision;
4. on **save**, every rank writes its own checkpoint file of the step
   (:class:`~sglab.dist.outputs.DistRunDir`), the ranks pass a barrier, and rank 0 writes the
   manifest (``checkpoint.pt``) and ``metrics.csv`` and removes older step directories.

The loop is the same for every worker (:class:`RankLoop`): a stage run's, a 1-process run's and a
pipeline's (:mod:`sglab.dist.pipeline_worker`, whose ranks defer nothing and whose step is every
microbatch of the batch), so all three write the same run directory and resume the same way.

The ranks do not meet between evaluation points, so a training loss that diverges at step
``t`` is noticed at the next one: the run stops there with the in-process trainer's rows,
summary and kept checkpoint (of the last good evaluation), having computed a few wasted steps.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from sglab.dist.measured_trace import read_clock_reference
from sglab.dist.outputs import MANIFEST_FORMAT, DistRunDir, NoRunDir, SummaryOf, load_owned_state, owned_state
from sglab.probes import FidelityLog
from sglab.training.classify import ClassifySession
from sglab.training.loop import (
    TrainingDiverged,
    _config_record,
    _only_because_it_ended,
    _sane,
    _stop,
    _summary,
    _write_rows,
)

#: At least this long (s) for collective waits: the ranks wait there while rank 0 evaluates the test set.
MEETING_TIMEOUT = 600.0


def row_of(values: list[dict[str, Any]]) -> tuple[dict[str, Any], float]:
    """One step's training row from every rank's fields, in the in-process session's key order, and its time.

    The time is the largest rank's training time up to the step (the step is done when its last rank is).
    """
    merged: dict[str, Any] = {}
    for part in values:
        merged.update(part)
    row = {"epoch": merged["epoch"], "loss": merged["loss"], "train_error": merged["train_error"]}
    for prefix in ("synth_loss_", "input_loss_"):
        keys = sorted((k for k in merged if k.startswith(prefix)), key=lambda k: int(k[len(prefix):]))
        row.update({k: merged[k] for k in keys})
    return row, max(part.get("time_s", 0.0) for part in values)


class RankLoop:
    """Rank ``ctx.rank`` of a distributed run of ``run``; :meth:`train` runs it and returns this rank's result.

    ``make_worker(ctx, run, session)`` makes the rank's worker: what runs its ops of each step
    (:func:`sglab.dist.stage_worker.make_worker`, or :class:`~sglab.dist.pipeline_worker.PipelineWorker`).
    A worker has ``step(step)``, ``settle()``, ``finish()``, ``take_values()``, ``values`` (this
    rank's metric fields by step), ``owned`` (its modules' names), ``describe()`` (what the run's
    config, manifest and summary record beyond the in-process trainer's) and ``result()``.
    """

    def __init__(self, ctx, run, out_dir, resume: bool, progress: bool, make_worker):
        self.ctx, self.run, self.config = ctx, run, run.config
        self.rank, self.coordinator = ctx.rank, ctx.rank == 0
        self.device = torch.device("cpu")
        self.session = ClassifySession(self.config, self.device, run.dataset)
        self.worker = make_worker(ctx, run, self.session)
        self.described = self.worker.describe()
        # the in-process summary, plus what the worker adds (a pipeline's schedule): what _summary reads of a session
        self.summary_of = SummaryOf(self.config, self.described)
        self.run_dir = DistRunDir(out_dir) if out_dir is not None else NoRunDir()
        self.resume, self.progress = resume, progress
        self.group = dist.new_group(backend="gloo", timeout=timedelta(seconds=max(ctx.timeout, MEETING_TIMEOUT)))
        dist.barrier(group=self.group)
        self.clock = read_clock_reference()  # just after the barrier: see sglab.dist.measured_trace
        self.probes = FidelityLog(None, None, [])

    # ---- the loop ----------------------------------------------------------------------

    def train(self) -> dict[str, Any]:
        """Run the steps from the start (or the checkpoint), meeting at each evaluation point; this rank's result."""
        config, worker, session = self.config, self.worker, self.session
        start, elapsed, rows, history = self._start()
        last_good, step, self.outcome = start, start, None
        bar = tqdm(total=config.steps, initial=start, disable=not (self.progress and self.coordinator), unit="step",
                   desc=f"{config.task_name} {self.run.label()} ({self.ctx.world_size} process"
                   f"{'es' if self.ctx.world_size > 1 else ''})")
        self.bar = bar
        for step in range(start + 1, config.steps + 1):
            tick = time.perf_counter()
            if step - 1 in config.lr_milestones:
                worker.settle()  # every T of the steps before runs at the old rates, as in process
                session.scale_learning_rates(config.lr_gamma)
            worker.step(step - 1)
            meeting = step % config.eval_every == 0 or step == config.steps
            if meeting:
                worker.settle()
            elapsed += time.perf_counter() - tick
            worker.values[step - 1]["time_s"] = elapsed
            bar.update(1)
            if meeting:
                decision = self._meet(step, rows, last_good, history)
                if decision["stop"]:
                    break
                last_good = step
        worker.finish()
        bar.close()
        result = {**worker.result(), "clock": self.clock, "owned": worker.owned}
        if self.coordinator:
            if self.outcome is None:
                summary = _summary(config, self.summary_of, rows, step, self.elapsed, "completed", last_good)
                _write_rows(self.run_dir, rows, self.probes)
                self.run_dir.write_summary(summary)
                self.outcome = {"status": "completed", "summary": summary}
            result.update(rows=rows, **self.outcome)
        return result

    def _start(self) -> tuple[int, float, list, list]:
        """Step, training time, rows and history to start from: a fresh run's, or the manifest's (``resume``)."""
        start, elapsed, rows, history = 0, 0.0, [], []
        if self.resume:
            manifest = self.run_dir.load_checkpoint()
            start, elapsed = manifest["step"], manifest["elapsed_s"]
            load_owned_state(self.session, self.run_dir.load_rank_checkpoint(start, self.rank))
            rows = [r for r in manifest["metrics"] if not _only_because_it_ended(r, start, self.config)]
            history = manifest.get("history", []) + [{"resumed_at_step": start, "steps": self.config.steps,
                                                      "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}]
        if self.coordinator:
            record = _config_record(self.config, self.session, self.device, history)
            self.run_dir.write_config({**record, "processes": self.ctx.world_size, **self.described})
        self.elapsed = elapsed  # rank 0: the training time up to the last meeting (its slowest rank's)
        return start, elapsed, rows, history

    def _meet(self, step: int, rows: list, last_good: int, history: list) -> dict[str, Any]:
        """The ranks' meeting at evaluation point ``step`` (see the module docstring)."""
        stages = {} if self.coordinator else {name: self.session.modules()[name].state_dict()
                                              for name in self.worker.owned if name.startswith("stage")}
        payload = {"values": self.worker.take_values(), "finite": self.session.weights_finite(), "stages": stages}
        gathered = [None] * self.ctx.world_size if self.coordinator else None
        dist.gather_object(payload, gathered, dst=0, group=self.group)
        decision = [self._decide(step, gathered, rows, last_good) if self.coordinator else None]
        dist.broadcast_object_list(decision, src=0, group=self.group)
        decision = decision[0]
        if not decision["stop"]:
            self._save(step, self.elapsed, rows, history)
        return decision

    def _decide(self, step: int, gathered: list[dict], rows: list, last_good: int) -> dict[str, Any]:
        """Rank 0: the rows up to ``step``, the evaluation, and whether to save or stop (as the in-process loop)."""
        config, session, modules = self.config, self.session, self.session.modules()
        for part in gathered:
            for name, state in part["stages"].items():
                modules[name].load_state_dict(state)
        steps = sorted(set().union(*(part["values"] for part in gathered)))
        time_s = self.elapsed
        for index in steps:
            s = index + 1
            row, time_s = row_of([part["values"].get(index, {}) for part in gathered])
            if s % config.log_every == 0 or s == config.steps or not _sane(row["loss"], config):
                rows.append({"kind": "train", "step": s, "time_s": time_s, **row})
            if not _sane(row["loss"], config):
                return self._diverged(rows, s, time_s, last_good, f"loss became {row['loss']}")
        self.elapsed = time_s  # the training time up to this step: its slowest rank's
        evaluation = session.evaluate(step)
        rows += [{"kind": "eval", "step": step, "time_s": time_s, **r} for r in evaluation]
        judged, finite_weights = session.judge_loss(evaluation), all(part["finite"] for part in gathered)
        if not _sane(judged, config) or not finite_weights:
            what = f"the evaluated loss became {judged}" if finite_weights else "the weights became non-finite"
            return self._diverged(rows, step, time_s, last_good, what)
        return {"stop": False}

    def _diverged(self, rows: list, step: int, elapsed: float, last_good: int, what: str) -> dict[str, Any]:
        try:
            _stop(self.run_dir, self.config, self.summary_of, rows, self.probes, step, elapsed, last_good, what, self.bar)
        except TrainingDiverged as err:
            summary = _summary(self.config, self.summary_of, rows, step, elapsed, "diverged", last_good)
            self.outcome = {"status": "diverged", "message": str(err), "summary": {**summary, "diverged_at_step": step}}
        return {"stop": True}

    def _save(self, step: int, elapsed: float, rows: list, history: list) -> None:
        """Every rank writes its checkpoint file of ``step``; once all have, rank 0 writes the manifest."""
        self.run_dir.save_rank_checkpoint(step, self.rank, {"step": step, "rank": self.rank, "owned": self.worker.owned,
                                                            **owned_state(self.session, self.worker.owned)})
        dist.barrier(group=self.group)
        if self.coordinator:
            processes = self.ctx.world_size
            self.run_dir.save_checkpoint({
                "format": MANIFEST_FORMAT, "task": self.config.task_name, "config": self.config.to_dict(), "step": step,
                "elapsed_s": elapsed, "metrics": rows, "fidelity": [], "history": history, "processes": processes,
                "rank_files": [str(self.run_dir.rank_checkpoint(step, r).relative_to(self.run_dir.path))
                               for r in range(processes)], **self.described})
            _write_rows(self.run_dir, rows, self.probes)
            self.run_dir.prune(keep=step)
