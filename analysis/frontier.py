"""The frontier: where an unlocked method (DNI ...) beats the best locked schedule it could replace.

Read from a sweep table (rows of :func:`sglab.sim.sweep.run_sweep`). **Locked** schedules are the
registry's methods whose true gradient crosses every interface on the current weights: bprop and
every pipeline schedule (:func:`sglab.sim.sweep.locked_methods`, so schedules added to the registry
count without a change here). DDG sends true gradients too but runs its forwards on stale weights
so that no stage waits: it is backward-unlocked, not a locked baseline, and is left out, as are
methods that send no gradient (No Bprop, DGL). Every method with synthetic gradients is **unlocked**.

The best locked schedule for an unlocked row on ``d`` devices is the fastest locked row on the same
machine: same hardware and link bandwidth, at most ``d`` devices (a schedule that holds two stages
per device, or sequential backprop on one device, runs on fewer), whatever stage count it split
the model into and, unless the microbatch count is an axis (``by_microbatches``), whatever its
microbatches per step. Locked schedules run no synthesizer, so their rows match every synthesizer
cost; methods that are no pipeline run one batch per step, so their rows match every microbatch count.
Data-parallel replicas are one more way to use the devices: a rival may run any number of replicas
(``replicas``; 1 where a sweep has no such column) as long as all of them together use at most ``d`` devices.
Figures of the table: :mod:`analysis.frontier_figures`.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from sglab.methods import get_method
from sglab.sim.sweep import locked_methods

#: Throughput measures ``frontier_table`` can compare: name -> column. ``steady`` (the default) is the
#: samples per second between step completions in the middle of the run, where a long training run
#: spends its time. ``throughput`` is samples over the whole makespan, which charges a few simulated
#: steps with the one-time fill and drain of an unlocked chain (a flushed pipeline pays its fill every step).
METRICS = {"steady": "steady_samples_per_s", "throughput": "throughput_samples_per_s"}
#: Per-row columns kept for the unlocked method and, prefixed ``best_locked_``, for its best locked rival.
VALUES = ["num_stages", "num_devices", "replicas", "microbatches", "speedup", "steady_speedup", "steady_samples_per_s",
          "throughput_samples_per_s", "peak_memory_bytes", "fits"]
_RENAMED = {"num_stages": "stages", "num_devices": "devices", "_mb": "microbatches_per_step",
            "best_locked_method": "best_locked", "best_locked_num_stages": "best_locked_stages",
            "best_locked_num_devices": "best_locked_devices"}


def method_role(method: str) -> str:
    """``locked`` (bprop, the pipelines), ``unlocked`` (synthetic gradients) or ``other`` (DDG, DGL, No Bprop)."""
    if method in locked_methods():
        return "locked"
    return "unlocked" if get_method(method).synthetic_gradients else "other"


def _usable(sweep: pd.DataFrame) -> pd.DataFrame:
    """The rows that ran and measured a steady step, with ``steady_samples_per_s`` and the machine key
    ``_bw``; a warning names the rows left out and why."""
    failed = sweep["error"].fillna("").astype(str) != ""
    if failed.any():
        first = sweep[failed].iloc[0]
        warnings.warn(f"frontier: {int(failed.sum())} failed sweep rows ignored (first: {first['method']}: "
                      f"{first['error']})", RuntimeWarning, stacklevel=3)
    rows = sweep[~failed].copy()
    # samples per step / steady step: what a long run sustains (a pipeline step is m microbatches)
    rows["steady_samples_per_s"] = rows["samples"] / rows["steps"] * 1e9 / rows["steady_step_ns"]
    unmeasured = rows["steady_samples_per_s"].isna() | rows["throughput_samples_per_s"].isna()
    if unmeasured.any():
        warnings.warn(f"frontier: {int(unmeasured.sum())} rows without a measured throughput ignored "
                      f"(first: {rows[unmeasured]['method'].iloc[0]})", RuntimeWarning, stacklevel=3)
    rows = rows[~unmeasured].copy()
    rows["replicas"] = rows["replicas"].fillna(1) if "replicas" in rows else 1  # sweeps before data parallelism
    rows = rows.astype({c: int for c in ("num_stages", "num_devices", "replicas", "microbatches")})  # failed rows: NaN
    rows["_bw"] = rows["bandwidth_GB_per_s"].astype(float).fillna(-1.0)  # -1: "as the spec says", matches itself
    rows["_role"] = rows["method"].map(method_role)
    return rows


def _microbatch_axis(locked: pd.DataFrame, unlocked: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both tables keyed by the requested microbatch count ``_mb`` (-1: each schedule's default): a
    pipeline's rows keep theirs, the rows of methods that are no pipeline repeat at every count."""
    pipelined = locked["method"].map(lambda m: get_method(m).pipelined).astype(bool)
    locked = locked.assign(_mb=locked["microbatches_requested"].astype(float).fillna(-1.0))
    # no pipeline among the rivals: one count, each schedule's default, rather than no rows at all
    counts = pd.DataFrame({"_mb": sorted(locked.loc[pipelined, "_mb"].unique()) or [-1.0]})
    locked = pd.concat([locked[pipelined], locked[~pipelined].drop(columns="_mb").merge(counts, how="cross")])
    return locked, unlocked.merge(counts, how="cross")


def frontier_table(sweep: pd.DataFrame, metric: str = "steady", by_microbatches: bool = False,
                   must_fit: bool = False) -> pd.DataFrame:
    """One row per grid point × unlocked method: its best locked rival (see the module docstring) and
    ``ratio`` = unlocked throughput / best locked throughput, ``wins`` = ratio > 1.

    ``metric``: a key of :data:`METRICS`. ``by_microbatches``: the requested microbatch count is a
    key (one row per count the pipelines were asked for, ``microbatches_per_step``; NaN: each
    schedule's default), not something each schedule picks its best of. ``must_fit``: locked rows
    that do not fit the devices' memory are no rivals. Failed rows are left out with a warning, and
    so are unlocked rows with no locked row on as many devices to compare with. Ties go to the rival
    with less memory, then to the one first in the registry.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    column = METRICS[metric]
    rows = _usable(sweep)
    keys = ["hardware_spec", "_bw"]
    locked = rows[rows["_role"] == "locked"]
    if must_fit:
        locked = locked[locked["fits"].astype(bool)]
    locked = locked.assign(_order=locked["method"].map({m: i for i, m in enumerate(locked_methods())}))
    point = ["method", *keys, "num_stages", "replicas", "synth_cost_ratio"]
    unlocked = rows[rows["_role"] == "unlocked"].drop_duplicates(point)  # a non-pipeline repeats per microbatch count
    if by_microbatches:
        locked, unlocked = _microbatch_axis(locked, unlocked)
        keys, point = keys + ["_mb"], point + ["_mb"]
    rivals = locked[keys + VALUES + ["method", "_order"]].rename(columns={c: f"best_locked_{c}"
                                                                         for c in VALUES + ["method"]})
    pairs = unlocked[point + [v for v in VALUES if v not in point]].merge(rivals, on=keys)
    pairs = pairs[pairs["best_locked_num_devices"] <= pairs["num_devices"]]
    pairs["candidates"] = pairs.groupby(point, dropna=False)["best_locked_method"].transform("size")
    best = pairs.sort_values([f"best_locked_{column}", "best_locked_peak_memory_bytes", "_order"],
                             ascending=[False, True, True], kind="stable").drop_duplicates(point)
    if len(unlocked) > len(best):
        warnings.warn(f"frontier: {len(unlocked) - len(best)} unlocked rows have no locked row on as many devices "
                      f"to compare with", RuntimeWarning, stacklevel=2)
    best["ratio"] = best[column] / best[f"best_locked_{column}"]
    best["wins"] = best["ratio"] > 1
    best["bandwidth_GB_per_s"] = best["_bw"].where(best["_bw"] >= 0)
    if by_microbatches:
        best["_mb"] = best["_mb"].where(best["_mb"] >= 0)
    best = best.rename(columns=_RENAMED)
    front = ["method", "hardware_spec", "stages", "replicas", "devices", "bandwidth_GB_per_s", "synth_cost_ratio"]
    front += [k for k in ("microbatches_per_step",) if k in best]
    rest = [c for c in best if c not in front and not c.startswith("_")]
    return best[front + rest].sort_values(front, kind="stable").reset_index(drop=True)


def measured_synth_ratio(profile) -> float | None:
    """Where measured synthesizers sit on the ``synth_cost_ratio`` axis (``S = r·F``, ``T = 2r·F``):
    ``Σ(S + T) / Σ 3F`` over the stages that measured both; None if none did."""
    stages = [s.times_ns for s in profile.stages if "S" in s.times_ns and "T" in s.times_ns]
    forward = sum(3 * t.get("F", 0) for t in stages)
    return sum(t["S"] + t["T"] for t in stages) / forward if forward else None


def measured_synth_ratios(profile, stage_counts) -> dict[int, float]:
    """:func:`measured_synth_ratio` of ``profile`` merged into each of ``stage_counts`` stages (``None``: as
    measured), where defined: merged stages keep the synthesizer of their last layer only, so the ratio
    falls as fewer, heavier stages share the measured synthesizers. A count the profile cannot be split
    into has none (its sweep rows failed)."""
    from sglab.costprofile import ProfileError
    from sglab.partition import regroup

    ratios = {}
    for k in stage_counts:
        try:
            merged = profile if k is None or k == profile.num_stages else regroup(profile, k)
        except ProfileError:
            continue
        ratio = measured_synth_ratio(merged)
        if ratio is not None:
            ratios[merged.num_stages] = ratio
    return ratios


def bandwidth_label(bw: float) -> str:
    """``10 GB/s``, or ``the spec's link`` for a bandwidth swept "as given" (NaN)."""
    return "the spec's link" if pd.isna(bw) else f"{bw:g} GB/s"


def microbatches_label(count: float) -> str:
    """``8 microbatches``, or each schedule's default for a count swept "as given" (NaN)."""
    return "each schedule's default microbatches" if pd.isna(count) else f"{count:g} microbatches"


def distinct(column: pd.Series) -> list:
    """The distinct values of ``column``, sorted, NaN (once) last."""
    return sorted(column.dropna().unique()) + ([np.nan] if column.isna().any() else [])


def frontier_summary(table: pd.DataFrame, method: str = "dni", measured: str = "measured") -> list[str]:
    """One line per machine, stage count and bandwidth (and replica and microbatch count): the synthesizer costs at
    which ``method`` beats the best locked schedule and those at which it loses, with the best and worst ratio."""

    def cost(r) -> str:
        return measured if pd.isna(r) else f"{r:g}"

    def extreme(rows: pd.DataFrame, pick) -> str:
        row = rows.loc[pick(rows["ratio"])]
        return f"{row['ratio']:.2f}× {row['best_locked']} at r = {cost(row['synth_cost_ratio'])}"

    lines = []
    data = table[table["method"] == method]
    copies = "replicas" in data and data["replicas"].nunique() > 1
    keys = ["hardware_spec", "stages", "bandwidth_GB_per_s", *(["replicas"] if copies else []),
            *[k for k in ("microbatches_per_step",) if k in data]]
    for key, rows in data.groupby(keys, dropna=False, sort=True):
        wins, loses = rows[rows["wins"]], rows[~rows["wins"]]
        where = f"{key[0]}, K = {key[1]}, {bandwidth_label(key[2])}"
        where += f", {key[3]} replica{'s' * (key[3] > 1)}" if copies else ""
        where += f", {microbatches_label(key[-1])}" if "microbatches_per_step" in data else ""
        parts = []
        if len(wins):
            parts.append(f"wins at r = {', '.join(map(cost, wins['synth_cost_ratio']))} "
                         f"(best {extreme(wins, pd.Series.idxmax)})")
        if len(loses):
            parts.append(f"loses at r = {', '.join(map(cost, loses['synth_cost_ratio']))} "
                         f"(worst {extreme(loses, pd.Series.idxmin)})")
        lines.append(f"{where}: {method} {'; '.join(parts)}")
    return lines
