"""The simulator against reality: the error table and the side-by-side Gantt figure of ``benchmarks/sim_vs_real.py``.

Both are pure functions of numbers and traces, so they are tested on small synthetic inputs:

    table = error_table(measured, predicted, samples_per_step, baseline="sequential")
    table.to_csv("results.csv"); markdown_table(table)
    side_by_side_gantt(measured_trace, simulated_trace, steps=range(10, 13), title="dni, 2 processes")

``measured[method]`` lists the step times (ns) of repeated identical real runs, ``predicted[method]``
the simulator's step times (ns, one per profile/probe round); every step time is per step as run
(a pipeline step is ``samples_per_step[method]`` profiled batches). The error is the prediction's
median against the measurement's median; the **noise floor** of a method is the spread of its
repeated real runs ((max − min) / median), the least difference a prediction can be judged by.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from analysis.sim_figures import gantt
from analysis.style import save_figure, use_paper_style

#: Columns of :func:`error_table`, in order.
COLUMNS = ["method", "processes", "samples_per_step", "predicted_step_ms", "predicted_min_ms", "predicted_max_ms",
           "measured_step_ms", "measured_min_ms", "measured_max_ms", "repeats", "spread_pct", "error_pct",
           "within_noise", "predicted_speedup", "measured_speedup"]


def _spread(values: Sequence[float]) -> tuple[float, float, float]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"step times must be a non-empty list of finite times > 0, got {list(values)}")
    return float(np.median(arr)), float(arr.min()), float(arr.max())


def error_table(measured: Mapping[str, Sequence[float]], predicted: Mapping[str, Sequence[float]],
                samples_per_step: Mapping[str, int] | None = None, baseline: str = "sequential",
                processes: Mapping[str, int] | None = None) -> pd.DataFrame:
    """One row per method: predicted and measured step (ms: median, min, max), error and speedups.

    ``error_pct`` = 100 (predicted − measured) / measured, of the medians. ``spread_pct`` is the
    noise floor: 100 (max − min) / median of the repeated measurements; ``within_noise`` says
    whether the predicted median lies inside the measured min–max. Speedups are per sample over
    ``baseline`` (a step of ``samples_per_step`` batches counts that many times), predicted over
    predicted and measured over measured.
    """
    if baseline not in measured or baseline not in predicted:
        raise ValueError(f"the baseline {baseline!r} needs a measured and a predicted step time")
    missing = sorted(set(measured) ^ set(predicted))
    if missing:
        raise ValueError(f"methods need both a measured and a predicted step time: {', '.join(missing)}")
    samples = dict(samples_per_step or {})
    per_sample = {}
    rows = []
    for method in measured:
        n = int(samples.get(method, 1))
        if n < 1:
            raise ValueError(f"samples_per_step of {method!r} must be >= 1, got {n}")
        m_med, m_min, m_max = _spread(measured[method])
        p_med, p_min, p_max = _spread(predicted[method])
        per_sample[method] = (p_med / n, m_med / n)
        rows.append({"method": method, "processes": (processes or {}).get(method), "samples_per_step": n,
                     "predicted_step_ms": p_med / 1e6, "predicted_min_ms": p_min / 1e6, "predicted_max_ms": p_max / 1e6,
                     "measured_step_ms": m_med / 1e6, "measured_min_ms": m_min / 1e6, "measured_max_ms": m_max / 1e6,
                     "repeats": len(measured[method]), "spread_pct": 100 * (m_max - m_min) / m_med,
                     "error_pct": 100 * (p_med - m_med) / m_med, "within_noise": bool(m_min <= p_med <= m_max)})
    base_pred, base_meas = per_sample[baseline]
    for row in rows:
        pred, meas = per_sample[row["method"]]
        row["predicted_speedup"] = base_pred / pred
        row["measured_speedup"] = base_meas / meas
    return pd.DataFrame(rows, columns=COLUMNS)


def markdown_table(table: pd.DataFrame, digits: int = 2) -> str:
    """The error table as a Markdown table (times in ms as median [min–max], errors in %)."""
    lines = ["| method | processes | batches/step | predicted step ms | measured step ms [min–max] | noise floor | "
             "error | predicted speedup | measured speedup |", "|" + "---|" * 9]
    for r in table.itertuples(index=False):
        pred = f"{r.predicted_step_ms:.{digits}f}"
        if r.predicted_max_ms > r.predicted_min_ms:
            pred += f" [{r.predicted_min_ms:.{digits}f}–{r.predicted_max_ms:.{digits}f}]"
        procs = "" if r.processes is None or (isinstance(r.processes, float) and np.isnan(r.processes)) else int(r.processes)
        lines.append(f"| {r.method} | {procs} | {r.samples_per_step} | {pred} | {r.measured_step_ms:.{digits}f} "
                     f"[{r.measured_min_ms:.{digits}f}–{r.measured_max_ms:.{digits}f}] | {r.spread_pct:.1f} % | "
                     f"{r.error_pct:+.1f} %{'' if r.within_noise else ' *'} | {r.predicted_speedup:.3f} | "
                     f"{r.measured_speedup:.3f} |")
    lines.append("")
    lines.append("`*`: the predicted median lies outside the measured min–max (the noise floor).")
    return "\n".join(lines) + "\n"


def window(trace: pd.DataFrame, steps: Iterable[int], devices_only: bool = True) -> pd.DataFrame:
    """Every op that runs within the time span of ``steps`` (device rows only, unless asked), from 0 ns.

    The span runs from the first op of the first step to the last op of the last one; ops of
    other steps inside it are kept (a rank that runs ahead, or a deferred ``T``, interleaves
    steps), so the window shows what each device did in that time.
    """
    steps = list(steps)
    rows = trace[trace["kind"].astype(str) == "device"] if devices_only else trace
    mine = rows[rows["step"].isin(steps)]
    if mine.empty:
        raise ValueError(f"the trace has no {'device ' if devices_only else ''}rows in steps {steps}")
    first, last = int(mine["start_ns"].min()), int(mine["end_ns"].max())
    part = rows[(rows["start_ns"] >= first) & (rows["end_ns"] <= last)].copy()
    part["start_ns"] -= first
    part["end_ns"] -= first
    return part


def rename_devices(trace: pd.DataFrame, names: Mapping[str, str]) -> pd.DataFrame:
    """``trace`` with device names replaced (``proc0`` → ``rank0``; links ``proc0->proc1`` likewise)."""
    def rename(name: str) -> str:
        return "->".join(names.get(part, part) for part in str(name).split("->"))
    out = trace.copy()
    out["device"] = pd.Categorical([rename(d) for d in out["device"].astype(str)])
    return out


def predicted_trace(profile, spec: Mapping, method: str, steps: int, seed: int = 0, sequential: bool = False,
                    microbatches: int | None = None, host_time: bool = True) -> pd.DataFrame:
    """The simulated trace of a real run, its devices named as the ranks are (``proc0`` → ``rank0``).

    ``spec`` is a hardware spec mapping (as ``sglab hardware probe`` writes it); ``sequential``
    simulates backprop with every stage on the first device (the 1-process baseline), else
    ``method`` (with ``microbatches`` for a pipeline) one stage per device. ``host_time`` charges
    the profile's measured host time per batch (``SimOptions.host_time``).
    """
    from sglab.sim import load_hardware, simulate, simulate_baseline

    hardware = load_hardware(dict(spec))
    if sequential:
        result = simulate_baseline(profile, hardware, steps=steps, seed=seed, host_time=host_time)
    else:
        extra = {"microbatches": microbatches} if microbatches else {}
        result = simulate(profile, hardware, method, steps=steps, seed=seed, baseline=False, host_time=host_time,
                          **extra)
    return rename_devices(result.trace, {d.name: f"rank{i}" for i, d in enumerate(hardware.devices)})


def side_by_side_gantt(measured: pd.DataFrame, simulated: pd.DataFrame, steps: Iterable[int],
                       title: str = "", devices_only: bool = True) -> plt.Figure:
    """Measured (top) and simulated (bottom) Gantt charts of the same steps, one row per device, one time axis.

    Each panel's time starts at its window's first op; the device names of ``simulated`` should
    already be the measured ones (:func:`rename_devices`).
    """
    use_paper_style()
    steps = list(steps)
    parts = [window(measured, steps, devices_only), window(simulated, steps, devices_only)]
    rows = max(part["device"].nunique() for part in parts)
    fig, axes = plt.subplots(2, 1, figsize=(11, 2 * (0.5 * rows + 1.0) + 0.6), sharex=True)
    span = max(int(part["end_ns"].max()) for part in parts)
    for ax, part, name in zip(axes, parts, ("measured", "simulated")):
        makespan = (part["end_ns"].max() - part["start_ns"].min()) / 1e6
        gantt(part, title=f"{name}: steps {steps[0]}–{steps[-1]} in {makespan:.1f} ms", ax=ax)
        ax.set_xlim(0, span / 1e6 * 1.01)
        ax.grid(False, axis="y")
    axes[0].set_xlabel("")
    if axes[1].get_legend() is not None:  # one legend is enough (the ops are the same)
        axes[1].get_legend().remove()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def save_side_by_side(measured: pd.DataFrame, simulated: pd.DataFrame, steps: Iterable[int], stem: str | Path,
                      title: str = "") -> list[Path]:
    """:func:`side_by_side_gantt` saved as ``stem.png`` and ``stem.pdf``."""
    return save_figure(side_by_side_gantt(measured, simulated, steps, title), stem)
