"""The standalone micro-benchmark: a model and method timed op by op on one fixed batch.

    profile = profile_model(ClassifyConfig(model="fcn", layers=3, method="dni", batch_size=128),
                            dataset=load_dataset("embedded"), repeats=20, warmup=5)

The measured code is the code that trains: whole training steps of the
:class:`~sglab.exec.chain.ChainRunner` run with an :class:`OpTimer` as observer, so F, B, U, S, T,
SI and TI are the runner's own ops. Each repeat also times one whole-model forward with the same
clock, interleaved with the steps, so the sum of the stages' F can be checked against it
(``totals``). B is then split into its two halves, timed in isolation with
``torch.utils.benchmark``: I is ``autograd.grad`` of the stage's output w.r.t. its input only,
W w.r.t. its parameters only (stage 0's input needs no gradient in training; its I is what it
would cost). Every number is the median over ``repeats`` after ``warmup`` untimed repeats, with
the interquartile range as spread.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch.nn import functional as F

from sglab.costprofile import CostProfile, ProfileError
from sglab.profiling.backward_split import fixed_batch, time_split_backward
from sglab.profiling.inrun import check_statistic, make_measurement, model_record, stage_costs, stage_sizes, summarize
from sglab.profiling.timer import OpTimer, Stopwatch
from sglab.training.config import ClassifyConfig

if TYPE_CHECKING:
    from sglab.data import Dataset
    from sglab.exec.chain import ChainRunner

#: Repeats and warm-up of the demo's profile: enough for a stable median, well under 30 s on a CPU.
DEMO_REPEATS, DEMO_WARMUP = 15, 2
#: Time budget of the demo's timed steps (I/W and the rest take about as long again at most).
DEMO_BUDGET_S = 10.0
#: Fewest repeats a time budget may cut a measurement to.
MIN_REPEATS = 5


def profile_model(
    config: ClassifyConfig,
    *,
    dataset: Dataset | None = None,
    input_shape: tuple[int, ...] | None = None,
    num_classes: int | None = None,
    repeats: int = 20,
    warmup: int = 5,
    split_backward: bool = True,
    track_memory: bool | None = None,
    timer: OpTimer | None = None,
    statistic: str = "median",
    clock: str = "perf_counter",
    max_seconds: float | None = None,
) -> CostProfile:
    """Micro-benchmark ``config``'s model and method; see the module docstring.

    Args:
        config: model, method, batch size, device (``config.device``) and seed.
        dataset: supplies the input shape, the classes and the batch (its first examples);
            without it, ``input_shape`` and ``num_classes`` are needed and the batch is random
            (values do not change the cost of these dense ops).
        repeats, warmup: timed and untimed repeats of every measurement.
        split_backward: also time I and W separately.
        track_memory: record each stage's peak extra memory (default: on where the device
            reports it, i.e. CUDA).
        timer: an :class:`OpTimer` to use; afterwards it holds the timed steps (for a trace).
        statistic: ``median`` (default), ``min``, ``p10`` or ``p25`` of the repeats.
        clock: CPU clock, ``perf_counter`` (wall, default) or ``thread_time`` (this thread's CPU
            time: immune to preemption on shared machines; needs one torch thread).
        max_seconds: a time budget for the timed steps: once spent, stop after at least
            :data:`MIN_REPEATS` repeats (``measurement.repeats`` records how many ran).
    """
    from sglab.config import resolve_device

    config.validate()
    check_statistic(statistic)
    if repeats < 1 or warmup < 0:
        raise ProfileError(f"repeats must be >= 1 and warmup >= 0, got {repeats} and {warmup}")
    if config.method == "nobprop":
        raise ProfileError("method 'nobprop' runs no B or U on stages 0..K-2; profile 'bprop' for the same model")
    if dataset is not None:
        input_shape, num_classes = tuple(dataset.input_shape), dataset.num_classes
    if input_shape is None or num_classes is None:
        raise ProfileError("profile_model needs a dataset or both input_shape and num_classes")
    device = resolve_device(config.device)
    if timer is None:
        memory = device.type == "cuda" if track_memory is None else track_memory
        timer = OpTimer(device, track_memory=memory, clock=clock)
    # Building the model seeds torch's global generator; the caller's random stream is kept.
    cuda_ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_ids):
        return _measure(config, device, dataset, tuple(input_shape), num_classes, repeats, warmup, split_backward,
                        timer, statistic, max_seconds)


def _measure(config, device, dataset, input_shape, num_classes, repeats, warmup, split_backward, timer,
             statistic, max_seconds) -> CostProfile:
    from sglab.training.build import build_chain

    runner = build_chain(config, input_shape, num_classes, device)
    # Stochastic methods draw which stages run B/U; an op costs the same whether drawn or not,
    # so every stage runs every op and each gets `repeats` samples.
    runner.sample_active = lambda: (True,) * runner.num_stages
    runner.sample_locked = lambda: (False,) * runner.num_stages
    x, y = fixed_batch(dataset, input_shape, num_classes, config.batch_size, device, config.seed)
    watch = Stopwatch(device, clock=timer.timer_name if device.type == "cpu" else "perf_counter")
    deadline = None if max_seconds is None else time.perf_counter() + max_seconds
    planned, repeats = repeats, 0
    for repeat in range(warmup + planned):
        if repeat == warmup:
            timer.reset()
            watch.reset()
        with watch.section("forward"):
            _whole_forward(runner, x, y)
        timer.next_step()
        with watch.section("step"):
            runner.step(x, y, timer)
        repeats += repeat >= warmup
        if deadline is not None and time.perf_counter() > deadline and repeats >= min(MIN_REPEATS, planned):
            break
    samples = timer.durations()
    if split_backward:
        seconds = None if device.type == "cuda" else {"thread_time": time.thread_time}.get(timer.timer_name, time.perf_counter)
        samples.update(time_split_backward(runner, x, y, repeats, warmup, seconds))
    peaks = timer.peak_memory() if timer.track_memory else None
    stages = stage_costs(samples, stage_sizes(runner, input_shape, config.batch_size), config.method, peaks, statistic)
    totals = {}
    for name in ("forward", "step"):
        totals[f"{name}_ns"], totals[f"{name}_spread_ns"] = summarize(watch.samples(name), statistic)
    totals["sum_stage_forward_ns"] = sum(stage.times_ns["F"] for stage in stages)
    dtype = next(runner.stages.parameters()).dtype
    notes = "whole training steps timed op by op; I and W timed in isolation with torch.utils.benchmark"
    if repeats < planned:
        notes += f"; stopped after {repeats} of {planned} repeats at the {max_seconds:g} s budget"
    measurement = make_measurement("microbenchmark", device, config.batch_size, repeats, warmup, timer.timer_name,
                                   dtype, notes, statistic)
    model = model_record(config, input_shape, num_classes, len(stages))
    return CostProfile(model=model, method=config.method, measurement=measurement, stages=stages, totals=totals)


def _whole_forward(runner: ChainRunner, x: torch.Tensor, y: torch.Tensor) -> None:
    """All stages' forwards as one call, doing what the stages' F ops do (loss and error read)."""
    h = x
    for stage in runner.stages:
        h = stage(h)
    loss = F.cross_entropy(h, y)
    float(loss.detach())
    float((h.detach().argmax(1) != y).float().mean())


def demo_profile(config: ClassifyConfig, out_dir: str | Path, dataset: Dataset | None = None) -> CostProfile:
    """The demo's profiling step: micro-benchmark ``config`` briefly, save ``out_dir/profile.json``."""
    if dataset is None:
        from sglab.data import load_dataset

        dataset = load_dataset(config.dataset, config.data_dir, config.download, config.limit_train, config.limit_test)
    profile = profile_model(config, dataset=dataset, repeats=DEMO_REPEATS, warmup=DEMO_WARMUP, max_seconds=DEMO_BUDGET_S)
    profile.save(Path(out_dir) / "profile.json")
    return profile
