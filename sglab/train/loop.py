"""Train a chain of stages with a method: the loop a newcomer can read top to bottom.

    run = train(TrainConfig(method="dni", steps=500), "runs/dni")

writes ``runs/dni/{config.json, metrics.csv, summary.json, checkpoint.pt}``. A non-finite or
exploding loss stops the run with a clear message and keeps the last good checkpoint.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from sglab.errors import SglabError
from sglab.io import provenance
from sglab.train.build import build_runner
from sglab.train.config import ConfigError, TrainConfig
from sglab.train.run_dir import RunDir
from sglab.train.step import StepRunner

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


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available; asking for CUDA without it is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but torch sees no CUDA device; use --device cpu or auto")
    return torch.device(name)


class BatchStream:
    """Seeded minibatches: a fresh permutation each epoch, resumable from its state dict."""

    def __init__(self, num_examples: int, batch_size: int, seed: int):
        if num_examples < batch_size:
            raise ConfigError(f"batch_size {batch_size} is larger than the {num_examples} training examples")
        self.num_examples, self.batch_size = num_examples, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch, self.position = 0, 0
        self.order = torch.randperm(num_examples, generator=self.generator)

    def next(self) -> torch.Tensor:
        """Indices of the next batch (incomplete final batches are dropped, as BatchNorm prefers)."""
        if self.position + self.batch_size > self.num_examples:
            self.epoch, self.position = self.epoch + 1, 0
            self.order = torch.randperm(self.num_examples, generator=self.generator)
        batch = self.order[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        return batch

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the same sequence of batches."""
        return {"epoch": self.epoch, "position": self.position, "order": self.order, "rng": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`."""
        self.epoch, self.position, self.order = state["epoch"], state["position"], state["order"]
        self.generator.set_state(state["rng"])


@torch.no_grad()
def evaluate(stages: torch.nn.ModuleList, x: torch.Tensor, y: torch.Tensor, batch_size: int, device) -> dict[str, float]:
    """Loss and error of the real forward chain (eval mode) on ``(x, y)``."""
    stages.eval()
    wrong, loss_sum = 0, 0.0
    for start in range(0, len(x), batch_size):
        h = x[start : start + batch_size].to(device)
        target = y[start : start + batch_size].to(device)
        for stage in stages:
            h = stage(h)
        loss_sum += float(torch.nn.functional.cross_entropy(h, target, reduction="sum"))
        wrong += int((h.argmax(1) != target).sum())
    stages.train()
    return {"loss": loss_sum / len(x), "error": wrong / len(x)}


def train(
    config: TrainConfig,
    out_dir: str | Path,
    *,
    progress: bool = True,
    resume: bool = False,
    dataset: Dataset | None = None,
    recorder=None,
) -> TrainResult:
    """Train ``config`` and write its run directory; see the module docstring."""
    config.validate()
    run = RunDir(out_dir)
    device = resolve_device(config.device)
    from sglab.data import load_dataset  # imported here: data loading pulls in heavier modules

    data = dataset or load_dataset(
        config.dataset, config.data_dir, config.download, config.limit_train, config.limit_test
    )
    x_train, y_train = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    x_test, y_test = torch.from_numpy(data.x_test), torch.from_numpy(data.y_test)
    runner = build_runner(config, data.input_shape, data.num_classes, device)
    batches = BatchStream(len(x_train), config.batch_size, config.seed)
    metrics: list[dict[str, Any]] = []
    start_step, elapsed = 0, 0.0
    if resume and run.checkpoint.exists():
        start_step, elapsed, metrics = _restore(run, config, runner, batches, device)
    else:
        run.write_config(_config_record(config, data, device))

    eval_x, eval_y = x_train[: config.train_eval_examples], y_train[: config.train_eval_examples]
    bar = tqdm(total=config.steps, initial=start_step, disable=not progress, desc=f"{config.method} {config.model}", unit="step")
    last_good = start_step
    for step in range(start_step + 1, config.steps + 1):
        _apply_lr_schedule(config, runner, step)
        index = batches.next()
        tick = time.perf_counter()
        result = runner.step(x_train[index].to(device), y_train[index].to(device), recorder)
        elapsed += time.perf_counter() - tick
        if not math.isfinite(result.loss) or result.loss > config.divergence_loss:
            _stop_diverged(run, config, metrics, step, result.loss, last_good, bar)
        if step % config.log_every == 0 or step == config.steps:
            metrics.append(_train_row(step, batches.epoch, elapsed, result))
        if step % config.eval_every == 0 or step == config.steps:
            metrics.append(_eval_row(runner, step, batches.epoch, elapsed, eval_x, eval_y, x_test, y_test, config, device))
            _save(run, config, runner, batches, step, elapsed, metrics)
            last_good = step
            bar.set_postfix(loss=f"{result.loss:.3f}", test_err=f"{metrics[-1]['test_error']:.3f}")
        bar.update(1)
    bar.close()
    summary = _summary(config, metrics, elapsed, "completed")
    run.write_metrics(metrics)
    run.write_summary(summary)
    return TrainResult(run.path, summary, metrics)


def _apply_lr_schedule(config: TrainConfig, runner: StepRunner, step: int) -> None:
    """Multiply every learning rate by ``lr_gamma`` at each milestone (the paper's ÷10 drops)."""
    if step - 1 not in config.lr_milestones:
        return
    optimizers = list(runner.optimizers)
    for interface in runner.interfaces:
        optimizers += interface.optimizers().values()
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group["lr"] *= config.lr_gamma


def _train_row(step: int, epoch: int, elapsed: float, result) -> dict[str, Any]:
    row = {"kind": "train", "step": step, "epoch": epoch, "time_s": elapsed, "loss": result.loss, "train_error": result.error}
    row.update({f"synth_loss_{i}": v for i, v in sorted(result.synth_loss.items())})
    row.update({f"input_loss_{i}": v for i, v in sorted(result.input_loss.items())})
    return row


def _eval_row(runner, step, epoch, elapsed, eval_x, eval_y, x_test, y_test, config, device) -> dict[str, Any]:
    train_eval = evaluate(runner.stages, eval_x, eval_y, config.eval_batch_size, device)
    test_eval = evaluate(runner.stages, x_test, y_test, config.eval_batch_size, device)
    return {
        "kind": "eval",
        "step": step,
        "epoch": epoch,
        "time_s": elapsed,
        "loss": train_eval["loss"],
        "train_error": train_eval["error"],
        "test_loss": test_eval["loss"],
        "test_error": test_eval["error"],
    }


def _config_record(config: TrainConfig, data: Dataset, device: torch.device) -> dict[str, Any]:
    return {"config": config.to_dict(), "seed": config.seed, "device": str(device), "data": data.describe(), **provenance()}


def _checkpoint_state(config, runner, batches, step, elapsed, metrics) -> dict[str, Any]:
    return {
        "config": config.to_dict(),
        "step": step,
        "elapsed_s": elapsed,
        "metrics": metrics,
        "stages": runner.stages.state_dict(),
        "optimizers": [opt.state_dict() for opt in runner.optimizers],
        "interfaces": [
            {
                "modules": {k: m.state_dict() for k, m in itf.modules().items()},
                "optimizers": {k: o.state_dict() for k, o in itf.optimizers().items()},
            }
            for itf in runner.interfaces
        ],
        "batches": batches.state_dict(),
        "runner_rng": runner.generator.get_state(),
        "torch_rng": torch.get_rng_state(),
    }


def _save(run: RunDir, config, runner, batches, step, elapsed, metrics) -> None:
    run.save_checkpoint(_checkpoint_state(config, runner, batches, step, elapsed, metrics))
    run.write_metrics(metrics)


def _restore(run: RunDir, config, runner, batches, device) -> tuple[int, float, list]:
    state = run.load_checkpoint(device)
    saved = TrainConfig.from_dict(state["config"])
    differ = [k for k, v in saved.to_dict().items() if k != "steps" and getattr(config, k) != v]
    if differ:
        raise ConfigError(f"cannot resume {run.path}: config differs from the checkpoint in {', '.join(differ)}")
    runner.stages.load_state_dict(state["stages"])
    for opt, opt_state in zip(runner.optimizers, state["optimizers"]):
        opt.load_state_dict(opt_state)
    for itf, itf_state in zip(runner.interfaces, state["interfaces"]):
        for key, module in itf.modules().items():
            module.load_state_dict(itf_state["modules"][key])
        for key, opt in itf.optimizers().items():
            opt.load_state_dict(itf_state["optimizers"][key])
    batches.load_state_dict(state["batches"])
    runner.generator.set_state(state["runner_rng"])
    torch.set_rng_state(state["torch_rng"])
    return state["step"], state["elapsed_s"], state["metrics"]


def _stop_diverged(run, config, metrics, step, loss, last_good, bar) -> None:
    bar.close()
    run.write_summary({**_summary(config, metrics, float("nan"), "diverged"), "diverged_at_step": step, "loss": loss})
    kept = f"the last good checkpoint (step {last_good}) is kept in {run.checkpoint}" if last_good else "no checkpoint was written yet"
    raise TrainingDiverged(
        f"loss became {loss} at step {step} (limit {config.divergence_loss}); training stopped and {kept}. "
        f"Try a smaller --lr (now {config.lr}) or a smaller --synth-loss-weight."
    )


def _summary(config: TrainConfig, metrics: list[dict[str, Any]], elapsed: float, status: str) -> dict[str, Any]:
    evals = [row for row in metrics if row["kind"] == "eval"]
    final = evals[-1] if evals else {}
    return {
        "status": status,
        "method": config.method,
        "model": config.model,
        "layers": config.layers,
        "dataset": config.dataset,
        "steps": config.steps,
        "seed": config.seed,
        "train_time_s": elapsed,
        "final_test_error": final.get("test_error"),
        "final_train_error": final.get("train_error"),
        "best_test_error": min((row["test_error"] for row in evals), default=None),
    }
