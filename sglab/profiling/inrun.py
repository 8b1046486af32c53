"""Cost profiles from ops timed inside real training, and the pieces both measuring modes share.

    profile, timer = profile_training(ClassifyConfig(method="dni", steps=200), "runs/dni")

runs :func:`sglab.training.train` with an :class:`~sglab.profiling.timer.OpTimer` as its
observer and turns the timed ops into a :class:`CostProfile`: per ``(stage, op)`` the median
over the kept steps and the interquartile range as spread. Nothing but the ops is timed, so the
overhead is a clock read and a list append per op (measured in ``benchmarks/profiler.py``).
"""

from __future__ import annotations

import socket
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from sglab.allocator import steady_allocator
from sglab.costprofile import REQUIRED_OPS, CostProfile, Measurement, ProfileError, StageCost
from sglab.io import cpu_model
from sglab.ops import COMPUTE_OPS
from sglab.profiling.timer import OpTimer
from sglab.training.config import ClassifyConfig

if TYPE_CHECKING:
    from sglab.data import Dataset
    from sglab.exec.chain import ChainRunner


#: Statistics a profile can report: the median (default), the minimum, or a percentile ``pNN``.
STATISTICS = ("median", "min", "p10", "p25")


def summarize(values: list[int], statistic: str = "median") -> tuple[int, int]:
    """``statistic`` of ``values`` and their interquartile range (p75 − p25), in integer ns.

    The median is the default: it is what a step typically costs. On a machine shared with
    other work, preemptions add whole scheduler slices to a minority of samples; a low
    percentile (``p10``) or ``min`` then estimates the undisturbed cost more repeatably.
    """
    if not values:
        raise ProfileError("no timings to summarise")
    check_statistic(statistic)
    arr = np.asarray(values, dtype=np.float64)
    q25, q75 = np.percentile(arr, [25, 75])
    value = arr.min() if statistic == "min" else np.percentile(arr, 50 if statistic == "median" else int(statistic[1:]))
    return int(round(value)), int(round(q75 - q25))


def check_statistic(statistic: str) -> None:
    """Raise :class:`ProfileError` unless ``statistic`` is one of :data:`STATISTICS`."""
    if statistic not in STATISTICS:
        raise ProfileError(f"statistic must be one of {', '.join(STATISTICS)}, got {statistic!r}")


def device_name(device: torch.device) -> str:
    """Human-readable name of the device the costs were measured on."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model()


def stage_sizes(runner: ChainRunner, input_shape: tuple[int, ...], batch_size: int) -> list[dict[str, int]]:
    """Per stage: bytes of its output activation (= its output gradient) and of its parameters.

    The shapes come from a 2-example forward in eval mode (so batch norm's running statistics
    are left alone) on the runner's own device; bytes are scaled to ``batch_size``.
    """
    first = next(runner.stages.parameters())
    modes = [stage.training for stage in runner.stages]
    sizes = []
    with torch.no_grad():
        h = torch.zeros(2, *input_shape, device=first.device, dtype=first.dtype)
        for stage in runner.stages:
            stage.eval()
            h = stage(h)
            sizes.append({"activation_bytes": h[0].numel() * h.element_size() * batch_size})
    for stage, mode in zip(runner.stages, modes):
        stage.train(mode)
    for i, stage in enumerate(runner.stages):
        sizes[i]["gradient_bytes"] = sizes[i]["activation_bytes"]
        sizes[i]["parameter_bytes"] = _param_bytes(stage)
        after = runner.interfaces[i] if i < len(runner.interfaces) else None
        before = runner.interfaces[i - 1] if 0 < i <= len(runner.interfaces) else None
        sizes[i]["synthesizer_parameter_bytes"] = _param_bytes(after.synthesizer if after else None)
        sizes[i]["input_model_parameter_bytes"] = _param_bytes(before.input_model if before else None)
    return sizes


def _param_bytes(module: torch.nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() * p.element_size() for p in module.parameters())


def stage_costs(
    samples: dict[tuple[int, str], list[int]],
    sizes: list[dict[str, int]],
    method: str,
    peaks: dict[int, int] | None = None,
    statistic: str = "median",
) -> list[StageCost]:
    """Summarise timings per stage; a stage missing F, B or U is an error naming the op."""
    stages = []
    for i, size in enumerate(sizes):
        times, spread, counts = {}, {}, {}
        # ops in their usual run order (COMPUTE_OPS), so the JSON reads like a step
        for (stage, op), values in sorted(samples.items(), key=lambda item: (item[0][0], COMPUTE_OPS.index(item[0][1]))):
            if stage == i and values:
                times[op], spread[op] = summarize(values, statistic)
                counts[op] = len(values)
        missing = [op for op in REQUIRED_OPS if op not in times]
        if missing:
            hint = " (nobprop trains only the last stage: profile bprop for the same model)" if method == "nobprop" else ""
            raise ProfileError(f"stage {i} never ran {', '.join(missing)} under method {method!r}{hint}")
        stages.append(
            StageCost(
                index=i,
                name=f"stage{i}",
                times_ns=times,
                spread_ns=spread,
                samples=counts,
                peak_memory_bytes=(peaks or {}).get(i),
                **size,
            )
        )
    return stages


def make_measurement(
    source: str,
    device: torch.device,
    batch_size: int,
    repeats: int,
    warmup: int,
    timer: str,
    dtype: torch.dtype = torch.float32,
    notes: str = "",
    statistic: str = "median",
) -> Measurement:
    """How a profile was measured: device, versions, host and time stamped automatically."""
    from sglab import __version__

    return Measurement(
        source=source,
        device=device.type,
        device_name=device_name(device),
        torch_version=torch.__version__,
        dtype=str(dtype).replace("torch.", ""),
        batch_size=batch_size,
        repeats=repeats,
        warmup=warmup,
        statistic=statistic,
        timer=timer,
        host=socket.gethostname(),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        spread="iqr",
        threads=torch.get_num_threads() if device.type == "cpu" else None,
        sglab_version=__version__,
        notes=notes,
    )


def model_record(config: ClassifyConfig, input_shape: tuple[int, ...], num_classes: int, num_stages: int) -> dict[str, Any]:
    """The ``model`` block of a profile: what was measured, enough to rebuild it."""
    return {
        "name": f"{config.model}-{config.layers}",
        "num_stages": num_stages,
        "input_shape": list(input_shape),
        "num_classes": num_classes,
        "config": config.to_dict(),
    }


def host_totals(timer: OpTimer, skip_steps: int = 0) -> dict[str, int]:
    """``step_ns`` (median interval between step starts) and ``host_ns_per_step`` (its median part outside ops).

    The host part is what the loop does between the timed ops: drawing the batch, metrics,
    Python. Each interval counts the ops that start inside it whatever step they belong to, so
    a deferred ``T`` still counts as op time. Empty with fewer than three kept steps, or on CUDA
    (kernels overlap the host there, so a gap is not host-only time).
    """
    if timer.cuda:
        return {}
    trace = timer.trace(skip_steps=skip_steps)
    starts = trace.groupby("step")["start_ns"].min().sort_values().to_numpy()
    if len(starts) < 3:
        return {}
    op_starts = trace["start_ns"].to_numpy()
    durations = (trace["end_ns"] - trace["start_ns"]).to_numpy()
    cumulative = np.concatenate([[0], np.cumsum(durations)])  # trace rows are in start order
    cuts = np.searchsorted(op_starts, starts)
    intervals = np.diff(starts)
    host = intervals - np.diff(cumulative[cuts])
    return {"step_ns": int(np.median(intervals)), "host_ns_per_step": max(0, int(np.median(host)))}


def profile_from_timer(
    timer: OpTimer,
    config: ClassifyConfig,
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    skip_steps: int = 0,
    runner: ChainRunner | None = None,
    source: str = "in_run",
    totals: dict[str, int] | None = None,
    notes: str = "",
    statistic: str = "median",
    extra_samples: dict[tuple[int, str], list[int]] | None = None,
) -> CostProfile:
    """A :class:`CostProfile` from the ops ``timer`` saw, leaving out the first ``skip_steps``.

    ``extra_samples`` (``(stage, op) -> ns samples``) adds ops timed outside the run (I and W).

    Byte sizes come from ``runner`` if given, else from a freshly built CPU copy of the model
    (shapes and parameter counts do not depend on the device or on training).
    """
    if runner is None:
        from sglab.training.build import build_chain

        with torch.random.fork_rng(devices=[]):  # building seeds the global generator; keep the caller's
            runner = build_chain(config, input_shape, num_classes, "cpu")
    used = timer.num_steps - skip_steps
    if used < 1:
        raise ProfileError(f"the timer saw {timer.num_steps} steps; none left after skipping {skip_steps} for warm-up")
    sizes = stage_sizes(runner, input_shape, config.batch_size)
    peaks = timer.peak_memory(skip_steps) if timer.track_memory else None
    samples = {**timer.durations(skip_steps), **(extra_samples or {})}
    stages = stage_costs(samples, sizes, config.method, peaks, statistic)
    dtype = next(runner.stages.parameters()).dtype
    measurement = make_measurement(
        source, timer.device, config.batch_size, used, skip_steps, timer.timer_name, dtype, notes, statistic
    )
    model = model_record(config, input_shape, num_classes, len(stages))
    totals = {**host_totals(timer, skip_steps), **(totals or {})}
    return CostProfile(model=model, method=config.method, measurement=measurement, stages=stages, totals=totals)


def profile_training(
    config: ClassifyConfig,
    out_dir: str | Path,
    *,
    dataset: Dataset | None = None,
    skip_steps: int = 5,
    progress: bool = False,
    track_memory: bool = False,
    statistic: str = "median",
    clock: str = "perf_counter",
    split_backward: bool = True,
    split_repeats: int = 10,
) -> tuple[CostProfile, OpTimer]:
    """Train ``config`` into ``out_dir`` with every op timed; returns the profile and the timer.

    The first ``skip_steps`` steps (allocator warm-up, lazy initialisation) are left out. With
    ``split_backward``, each stage's I and W (``B = I + W``, for zero-bubble schedules) are then
    timed ``split_repeats`` times in isolation (:mod:`sglab.profiling.backward_split`): training
    runs whole backwards, so the run itself never splits one.
    ``clock`` is the CPU clock (see :class:`OpTimer`). Fixes glibc's malloc thresholds for this
    process first (:func:`sglab.allocator.steady_allocator`), as every rank of ``sglab.dist`` does.
    """
    from sglab.config import resolve_device
    from sglab.data import load_dataset
    from sglab.training.loop import train

    config.validate()
    check_statistic(statistic)
    steady_allocator()  # op times independent of this process's allocation history (sglab.allocator)
    if config.steps <= skip_steps:
        raise ProfileError(f"steps ({config.steps}) must exceed the {skip_steps} warm-up steps left out")
    data = dataset or load_dataset(config.dataset, config.data_dir, config.download, config.limit_train, config.limit_test)
    timer = OpTimer(resolve_device(config.device), track_memory=track_memory, clock=clock)
    train(config, out_dir, progress=progress, dataset=data, observer=timer)
    notes = f"timed inside sglab train: {config.steps} steps, first {skip_steps} left out"
    split = None
    if split_backward:
        split = _time_split(config, data, timer, split_repeats)
        notes += f"; I and W timed in isolation after training ({split_repeats} repeats)"
    profile = profile_from_timer(timer, config, data.input_shape, data.num_classes, skip_steps=skip_steps, notes=notes,
                                 statistic=statistic, extra_samples=split)
    return profile, timer


def _time_split(config: ClassifyConfig, data: Dataset, timer: OpTimer, repeats: int) -> dict[tuple[int, str], list[int]]:
    """I and W of every stage of a fresh copy of ``config``'s model, on the run's device and clock."""
    from sglab.profiling.backward_split import fixed_batch, time_split_backward
    from sglab.training.build import build_chain

    if repeats < 1:
        raise ProfileError(f"split_repeats must be >= 1, got {repeats}")
    device = timer.device
    with torch.random.fork_rng(devices=[]):  # leave the caller's generator as training left it
        runner = build_chain(config, data.input_shape, data.num_classes, device)
    x, y = fixed_batch(data, data.input_shape, data.num_classes, config.batch_size, device, config.seed)
    clock = None if device.type == "cuda" else {"thread_time": time.thread_time}.get(timer.timer_name, time.perf_counter)
    return time_split_backward(runner, x, y, repeats, min(2, repeats), clock)
