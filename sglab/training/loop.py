"""Train any task with a method: the loop a newcomer can read top to bottom.

    result = train(ClassifyConfig(method="dni", steps=500), "runs/dni")
    result = train(CopyConfig(method="dni", truncation=3), "runs/copy")

writes ``config.json`` (config, seed, versions, device, data), ``metrics.csv`` (one row per
logged step and per evaluation), ``checkpoint.pt`` (at every evaluation) and ``summary.json``,
all atomically; with ``probe_every`` set, also ``fidelity.csv`` (:mod:`sglab.probes`: every that
many steps, how close each interface's synthetic gradient is to the true one; its rows are kept
in the checkpoint). A task is a :class:`~sglab.training.session.Session`; the loop is the same
for every one:

- a non-finite or exploding training loss, or a synthesizer's exploding regression loss, stops
  the run with a message, keeping the last good checkpoint and writing the metrics so far;
- a checkpoint is written only when the weights are finite and a loss computed with them
  (:meth:`Session.judge_loss`) is finite and below the divergence limit;
- ``resume=True`` continues from the checkpoint and gives the uninterrupted run's result
  bitwise; it is an error without a checkpoint, or when the config differs from the
  checkpoint's in anything but :attr:`RunConfig.RESUMABLE` (steps, eval_every, log_every,
  probe_every).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from sglab.allocator import steady_allocator
from sglab.config import ConfigError, resolve_device
from sglab.errors import SglabError
from sglab.exec.observe import Observer
from sglab.io import provenance
from sglab.probes import FIDELITY_FILE, FidelityLog
from sglab.training.config import CharLMConfig, ClassifyConfig, CopyConfig, RNNChainConfig, RunConfig, TwoRNNConfig, make_config
from sglab.training.run_dir import RunDir
from sglab.training.session import Session, finite

if TYPE_CHECKING:
    from sglab.data import Dataset


class TrainingDiverged(SglabError):
    """The loss became non-finite or exploded; the last good checkpoint was kept."""


@dataclass
class TrainResult:
    """What :func:`train` returns: the run directory, the summary and the metric rows."""

    run_dir: Path
    summary: dict[str, Any]
    metrics: list[dict[str, Any]]


def make_session(config: RunConfig, device, dataset: Dataset | None = None) -> Session:
    """The session of ``config``'s task (``dataset`` replaces a classification config's data)."""
    from sglab.training.classify import ClassifySession
    from sglab.training.rnn_chain import RNNChainSession
    from sglab.training.sequences import CharLMSession, CopySession
    from sglab.training.two_rnn import TwoRNNSession

    if isinstance(config, ClassifyConfig):
        return ClassifySession(config, device, dataset)
    if isinstance(config, CopyConfig):
        return CopySession(config, device)
    if isinstance(config, CharLMConfig):
        return CharLMSession(config, device)
    if isinstance(config, TwoRNNConfig):
        return TwoRNNSession(config, device)
    if isinstance(config, RNNChainConfig):
        return RNNChainSession(config, device)
    raise ConfigError(f"no task runs a {type(config).__name__}")


def train(config: RunConfig, out_dir: str | Path, *, resume: bool = False, progress: bool = True,
          dataset: Dataset | None = None, observer: Observer | None = None) -> TrainResult:
    """Train ``config`` and write its run directory; see the module docstring."""
    config.validate()
    steady_allocator()  # else large tensors are page-faulted in afresh every step (sglab/allocator.py)
    device = resolve_device(config.device)
    run = RunDir(out_dir)
    checkpoint = run.load_checkpoint(device) if resume else None
    run.open()
    if checkpoint is not None:
        check_resumable(config, checkpoint)
    session = make_session(config, device, dataset)
    start, elapsed, rows, history, probed = 0, 0.0, [], [], []
    if checkpoint is not None:
        session.load_state_dict(checkpoint["session"])
        start, elapsed = checkpoint["step"], checkpoint["elapsed_s"]
        rows = [r for r in checkpoint["metrics"] if not _only_because_it_ended(r, start, config)]
        probed = checkpoint.get("fidelity", [])
        history = checkpoint.get("history", []) + [{"resumed_at_step": start, "steps": config.steps,
                                                    "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}]
    run.write_config(_config_record(config, session, device, history))
    probes = FidelityLog(session.probe() if config.probe_every else None, config.probe_every, probed)

    bar = tqdm(total=config.steps, initial=start, disable=not progress, unit="step",
               desc=f"{config.task_name} {config.method}")
    last_good, step = start, start
    try:
        for step in range(start + 1, config.steps + 1):
            if session.finished:
                step -= 1
                break
            if step - 1 in config.lr_milestones:
                session.scale_learning_rates(config.lr_gamma)
            tick = time.perf_counter()
            row = session.step(step, probes.observer(step, observer))
            probes.collect(step)
            elapsed += time.perf_counter() - tick
            final = step == config.steps or session.finished
            runaway = _runaway_synthesizer(row, config)
            if step % config.log_every == 0 or final or not _sane(row["loss"], config) or runaway:
                rows.append({"kind": "train", "step": step, "time_s": elapsed, **row})
            if not _sane(row["loss"], config):
                _stop(run, config, session, rows, probes, step, elapsed, last_good, f"loss became {row['loss']}", bar)
            if runaway:
                _stop(run, config, session, rows, probes, step, elapsed, last_good, runaway, bar,
                      hint=f"Try a smaller --synth-lr (now {config.synth_lr or config.lr:g}).")
            if step % config.eval_every == 0 or final:
                evaluation = session.evaluate(step)
                rows += [{"kind": "eval", "step": step, "time_s": elapsed, **r} for r in evaluation]
                judged, finite_weights = session.judge_loss(evaluation), session.weights_finite()
                if not _sane(judged, config) or not finite_weights:
                    what = f"the evaluated loss became {judged}" if finite_weights else "the weights became non-finite"
                    _stop(run, config, session, rows, probes, step, elapsed, last_good, what, bar)
                _save(run, config, session, step, elapsed, rows, probes, history)
                last_good = step
            bar.update(1)
            bar.set_postfix(session.postfix(row))
    except KeyboardInterrupt:
        bar.close()
        # Ctrl-C may land between a checkpoint's rename and the line that records it: ask the disk.
        last_good = run.load_checkpoint()["step"] if run.checkpoint.exists() else last_good
        kept = [r for r in rows if r["step"] <= last_good]
        run.write_summary(_summary(config, session, kept, last_good, elapsed, "interrupted", last_good))
        raise KeyboardInterrupt(f"interrupted at step {step}; the checkpoint of step {last_good} in {run.checkpoint} "
                                "continues with --resume") from None
    bar.close()
    summary = _summary(config, session, rows, step, elapsed, "completed", last_good)
    _write_rows(run, rows, probes)
    run.write_summary(summary)
    return TrainResult(run.path, summary, rows)


def check_resumable(config: RunConfig, checkpoint: dict[str, Any]) -> None:
    """Raise :class:`ConfigError` naming every field where ``config`` differs from the checkpoint's."""
    if checkpoint.get("task") != config.task_name:
        raise ConfigError(f"cannot resume: the checkpoint is of task {checkpoint.get('task')!r}, not {config.task_name!r}")
    saved = make_config(checkpoint["task"], checkpoint["config"]).to_dict()
    asked = config.to_dict()
    differ = [f"{k} (checkpoint {saved[k]!r}, asked {asked[k]!r})" for k in asked
              if k not in config.RESUMABLE and asked[k] != saved[k]]
    if differ:
        raise ConfigError(f"cannot resume: the config differs from the checkpoint in {', '.join(differ)}; only "
                          f"{', '.join(config.RESUMABLE)} may change on resume (or start a new run elsewhere)")
    if config.steps < checkpoint["step"]:
        raise ConfigError(f"cannot resume: the checkpoint is at step {checkpoint['step']}, past steps={config.steps}; "
                          f"ask for at least {checkpoint['step']} steps")


def _only_because_it_ended(row: dict[str, Any], start: int, config: RunConfig) -> bool:
    """A row the interrupted run logged at its last step only because it ended there: the
    uninterrupted run has no such row, so a resumed run drops it to end up the same."""
    every = config.log_every if row["kind"] == "train" else config.eval_every
    return row["step"] == start and start % every != 0 and start != config.steps


def _sane(loss: float, config: RunConfig) -> bool:
    return finite(loss) and loss <= config.divergence_loss


def _runaway_synthesizer(row: dict[str, Any], config: RunConfig) -> str | None:
    """What a synthesizer's regression loss above the divergence limit says, or None.

    A synthesizer can diverge while the task's loss still looks sane (its overshoot feeds the
    network a large but bounded gradient); NaN means no synthesizer trained this step.
    """
    for name, value in row.items():
        if name.startswith("synth_loss") and value is not None and value > config.divergence_loss:
            return f"the synthesizer's loss ({name}) became {value:g}"
    return None


def _config_record(config: RunConfig, session: Session, device, history: list) -> dict[str, Any]:
    return {"task": config.task_name, "config": config.to_dict(), "seed": config.seed, "device": str(device),
            **session.describe(), "resumed": history, **provenance()}


def _write_rows(run: RunDir, rows: list, probes: FidelityLog) -> None:
    run.write_metrics(rows)
    if probes.written:
        run.write_table(FIDELITY_FILE, probes.table())


def _save(run: RunDir, config: RunConfig, session: Session, step: int, elapsed: float, rows: list, probes: FidelityLog,
          history: list) -> None:
    run.save_checkpoint({"task": config.task_name, "config": config.to_dict(), "step": step, "elapsed_s": elapsed,
                         "metrics": rows, "fidelity": probes.rows, "history": history, "session": session.state_dict()})
    _write_rows(run, rows, probes)


def _stop(run: RunDir, config: RunConfig, session: Session, rows: list, probes: FidelityLog, step: int, elapsed: float,
          last_good: int, what: str, bar, hint: str | None = None) -> None:
    bar.close()
    _write_rows(run, rows, probes)
    run.write_summary({**_summary(config, session, rows, step, elapsed, "diverged", last_good), "diverged_at_step": step})
    kept = (f"the last good checkpoint (step {last_good}) is kept in {run.checkpoint}" if last_good
            else "no checkpoint was written yet")
    raise TrainingDiverged(f"{what} at step {step} (limit {config.divergence_loss:g}); training stopped and {kept}. "
                           + (hint or f"Try a smaller --lr (now {config.lr:g})."))


def _summary(config: RunConfig, session: Session, rows: list, step: int, elapsed: float, status: str,
             checkpoint_step: int) -> dict[str, Any]:
    return {"status": status, "task": config.task_name, "method": config.method, "steps": step, "seed": config.seed,
            "train_time_s": elapsed, "checkpoint_step": checkpoint_step, **session.summary(rows)}
