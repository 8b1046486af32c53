"""Decoupled training with one process per stage: what to run, and the one call that runs it.

    from sglab.dist import DistRun, train_distributed
    result = train_distributed(DistRun(ClassifyConfig(method="dni", layers=2, width=32, steps=50), dataset))
    result.loss        # the last stage's training loss, per step
    result.records     # every op of every rank with its start and end times
    result.trace()     # the same as one measured trace (sglab.trace's schema) on one clock

    train_distributed(DistRun(config, dataset), "runs/dni2")               # the in-process trainer's run directory
    train_distributed(DistRun(config, dataset), "runs/dni2", resume=True)  # continue it, bitwise
    train_distributed(DistRun(config, dataset, processes=1), "runs/one")   # every stage in one process
    train_distributed(DistRun(bprop_config, dataset, method="1f1b", microbatches=8), "runs/1f1b")  # a pipeline

``train_distributed`` starts ``processes`` local processes (gloo): ``config.layers`` (one per
stage, the default) or 1 (one rank holding the whole chain). A pipeline schedule (``method``
``gpipe`` or ``1f1b``, on a ``bprop`` config) runs one rank per stage through
:mod:`sglab.dist.pipeline_worker`, with the same outputs. With ``out_dir`` it writes what
:func:`sglab.training.train` writes (:mod:`sglab.dist.outputs`) plus ``trace.csv`` and
``trace.json``; Ctrl-C stops every rank and leaves the last complete checkpoint to resume.
Under ``torchrun`` call ``run_from_env(worker_for(run.resolved_method()), run)`` on every rank instead
(:mod:`sglab.dist.launch`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from sglab.dist.launch import launch
from sglab.dist.measured_trace import merge_records
from sglab.dist.outputs import DistRunDir, SummaryOf, read_manifest
from sglab.dist.pipeline_worker import check_pipeline, worker_for
from sglab.dist.program import rank_step
from sglab.dist.run_spec import DistRun, FailAt, InjectedFault
from sglab.errors import SglabError, UsageError
from sglab.io import atomic_write_text
from sglab.methods import Method, MethodError, get_method
from sglab.trace import write_chrome_trace
from sglab.training.config import ClassifyConfig
from sglab.training.loop import TrainingDiverged, _summary, check_resumable


@dataclass
class DistResult:
    """What the ranks returned, merged: ``ranks[r]`` is rank ``r``'s own dict."""

    ranks: list[dict] = field(default_factory=list)
    run_dir: Path | None = None

    @property
    def summary(self) -> dict[str, Any]:
        """The run's summary (``summary.json``'s keys)."""
        return self.ranks[0]["summary"]

    @property
    def metrics(self) -> list[dict[str, Any]]:
        """The metric rows (``metrics.csv``'s)."""
        return self.ranks[0]["rows"]

    @property
    def loss(self) -> list[float]:
        """The last stage's training loss at each step."""
        return self.ranks[-1]["loss"]

    @property
    def records(self) -> list[dict]:
        """Every op every rank ran, one dict per op (see :data:`~sglab.dist.measured_trace.RECORD_FIELDS`)."""
        return [record for rank in self.ranks for record in rank["records"]]

    def state(self, module: str = "stage") -> list[dict]:
        """Each rank's final ``state_dict`` of its ``stage`` (or ``synthesizer``, ``input_model``)."""
        return [rank["state"].get(module) for rank in self.ranks]

    def trace(self, align: str = "wall") -> pd.DataFrame:
        """Every op of every rank as one measured trace on one clock (:func:`sglab.dist.measured_trace.merge_records`)."""
        return merge_records(self.records, {rank["rank"]: rank["clock"] for rank in self.ranks}, align)


__all__ = ["DistResult", "DistRun", "FailAt", "InjectedFault", "check_supported", "pipeline_record", "train_distributed"]


def pipeline_record(method: str | Method | None, config, microbatches: int | None) -> dict[str, Any] | None:
    """What a run of ``method`` records as ``pipeline`` in its config, manifest and summary (None: not a pipeline)."""
    method = get_method(method or config.method) if not isinstance(method, Method) else method
    if not method.pipelined:
        return None
    return {"method": method.name, "microbatches": microbatches or method.default_microbatches(config.layers)}


def check_supported(config, processes: int, method: str | Method | None = None, microbatches: int | None = None) -> None:
    """Raise :class:`UsageError` (one line) unless the multi-process runner can train ``config`` on ``processes``
    ranks, with pipeline schedule ``method`` if given (None: ``config.method``) in ``microbatches`` per step."""
    if not isinstance(config, ClassifyConfig):
        raise UsageError(f"the multi-process runner trains the classify task only, not {config.task_name!r}")
    if processes not in (1, config.layers):
        raise UsageError(f"processes must be 1 (every stage in one process) or the number of layers ({config.layers}: "
                         f"one per stage), got {processes}")
    if config.device not in ("auto", "cpu"):
        raise UsageError(f"the multi-process runner trains on the CPU (gloo), not on device {config.device!r}")
    if config.probe_every is not None:
        raise UsageError("the multi-process runner has no fidelity probes: leave probe_every unset")
    if method is not None:
        method = method if isinstance(method, Method) else get_method(method)  # MethodError is a UsageError
        if method.pipelined:
            check_pipeline(config, processes, method, microbatches)
            return
        if method.name != config.resolved_method().name:
            raise UsageError(f"DistRun's method is for pipeline schedules (gpipe, 1f1b); set {method.name!r} as the "
                             f"config's method instead (it is {config.method!r})")
    if microbatches is not None:
        raise UsageError("microbatches apply to a pipeline schedule (method gpipe or 1f1b) only")
    if processes == 1:
        return
    method = config.resolved_method()
    try:
        for rank in range(processes):
            rank_step(method, processes, rank)
    except MethodError as err:
        raise UsageError(str(err)) from None
    if method.synthetic_gradients and config.synth_loss != "l2":
        raise UsageError(f"the multi-process runner trains synthesizers by l2 only, not {config.synth_loss!r} "
                         "(or use processes=1)")


def train_distributed(run: DistRun, out_dir: str | Path | None = None, resume: bool = False, *, timeout: float = 60.0,
                      run_timeout: float | None = None, threads: int = 1, progress: bool = False) -> DistResult:
    """Train ``run`` on ``run.world_size`` local processes; raises :class:`~sglab.dist.launch.RankFailed` if a rank fails.

    With ``out_dir``, write the in-process trainer's run directory there (and ``trace.csv``,
    ``trace.json``); ``resume`` continues it from its last complete checkpoint. A diverged run
    raises :class:`~sglab.training.TrainingDiverged` as the in-process trainer does; Ctrl-C
    stops every rank, writes an ``interrupted`` summary and raises :class:`KeyboardInterrupt`.
    ``timeout`` bounds each wait for a peer, ``run_timeout`` the whole run.
    """
    config = run.config
    config.validate()
    processes = run.world_size
    check_supported(config, processes, run.method, run.microbatches)
    worker = worker_for(run.resolved_method())
    pipeline = pipeline_record(run.method, config, run.microbatches)
    run_dir = None if out_dir is None else DistRunDir(out_dir)
    if resume:
        if run_dir is None:
            raise UsageError("resume needs the run directory (out_dir) to continue")
        manifest = read_manifest(run_dir, processes)
        check_resumable(config, manifest)
        if manifest.get("pipeline") != pipeline:
            raise UsageError(f"cannot resume: the run in {run_dir.path} was trained as {_schedule(manifest.get('pipeline'))}, "
                             f"not as {_schedule(pipeline)}")
    if run_dir is not None:
        run_dir.open()
        # a fresh run keeps an old run's last checkpoint until its own first one, as the in-process trainer does
        run_dir.prune(keep=run_dir.load_checkpoint().get("step") if run_dir.checkpoint.exists() else None)
    try:
        results = launch(worker, processes, run, None if run_dir is None else str(run_dir.path), resume, progress,
                         timeout=timeout, run_timeout=run_timeout, threads=threads)
    except KeyboardInterrupt:
        raise KeyboardInterrupt(_interrupted(config, run_dir, {} if pipeline is None else {"pipeline": pipeline})) from None
    result = DistResult(results, None if run_dir is None else run_dir.path)
    if run_dir is not None:
        trace = result.trace()
        atomic_write_text(run_dir.trace, trace.to_csv(index=False))
        write_chrome_trace(run_dir.chrome_trace, trace, f"sglab train {config.task_name} {run.label()} "
                           f"({processes} processes)", metadata={"clock": "perf_counter_ns aligned by time_ns after a "
                                                                "barrier (sglab.dist.measured_trace)"})
    if result.ranks[0]["status"] == "diverged":
        raise TrainingDiverged(result.ranks[0]["message"])
    return result


def _schedule(pipeline: dict[str, Any] | None) -> str:
    """``gpipe of 4 microbatches``, or ``no pipeline``: how a run's ``pipeline`` record reads in an error."""
    return "no pipeline" if pipeline is None else f"{pipeline['method']} of {pipeline['microbatches']} microbatches"


def _interrupted(config, run_dir: DistRunDir | None, extra: dict[str, Any]) -> str:
    """Write an interrupted run's summary (as the in-process trainer does) and say how to continue."""
    if run_dir is None:
        return "interrupted (no run directory, nothing to resume)"
    try:
        manifest = run_dir.load_checkpoint()
    except SglabError:
        manifest = {"step": 0, "elapsed_s": 0.0, "metrics": []}
    last_good = manifest["step"]
    kept = [r for r in manifest["metrics"] if r["step"] <= last_good]
    run_dir.write_summary(_summary(config, SummaryOf(config, extra), kept, last_good, manifest["elapsed_s"], "interrupted",
                                   last_good))
    if not last_good:
        return f"interrupted before the first checkpoint; {run_dir.path} has nothing to resume"
    return f"interrupted; the checkpoint of step {last_good} in {run_dir.checkpoint} continues with --resume"
