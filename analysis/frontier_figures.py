"""Figures of the frontier table (:func:`analysis.frontier.frontier_table`): where DNI wins against the
best locked schedule, over synthesizer cost, link bandwidth and stage count, with the memory each needs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.frontier import bandwidth_label, distinct, microbatches_label
from analysis.style import save_figure
from sglab.sim.sweep import locked_methods

#: Marker of each locked schedule (registry order, so a schedule keeps its marker from figure to figure).
MARKERS = "osD^vP*X<>hp8d"
#: Ratios labelled on the log axis (those within its range).
RATIO_TICKS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0)


def _equal(values: pd.Series, value) -> pd.Series:
    """``values == value``, where NaN equals NaN (a swept value "as given")."""
    return values.isna() if pd.isna(value) else values == value


def _ratio_at(measured_ratio, stages: int) -> float:
    """The measured synthesizers' ``r`` at ``stages`` (one number for all, or a mapping per stage count); NaN: none."""
    if isinstance(measured_ratio, dict):
        measured_ratio = measured_ratio.get(int(stages))
    return np.nan if measured_ratio is None else float(measured_ratio)


def _rows(table: pd.DataFrame, method: str, hardware: str | None, microbatches, measured_ratio) -> tuple:
    """The rows one figure draws, with the synthesizer-cost axis ``x``, and its machine and microbatch count."""
    data = table[table["method"] == method]
    if data.empty:
        raise ValueError(f"method {method!r} is not in the frontier table; it has {', '.join(set(table['method']))}")
    hardware = hardware or data["hardware_spec"].iloc[0]
    data = data[data["hardware_spec"] == hardware]
    if data.empty:
        raise ValueError(f"the frontier table has no {method!r} rows on hardware {hardware!r}")
    if "microbatches_per_step" in data:
        microbatches = distinct(data["microbatches_per_step"])[0] if microbatches is None else microbatches
        data = data[_equal(data["microbatches_per_step"], microbatches)]
    # measured synthesizers (no ratio) sit at their stage count's measured ratio, or are not drawn without one
    at = data["stages"].map(lambda k: _ratio_at(measured_ratio, k)).astype(float)
    x = data["synth_cost_ratio"].astype(float).fillna(at)
    return data.assign(x=x).dropna(subset=["x"]).sort_values("x"), hardware, microbatches


def plot_frontier(table: pd.DataFrame, method: str | None = None, hardware: str | None = None,
                  microbatches: float | None = None, measured_ratio: float | dict[int, float] | None = None,
                  title: str | None = None):
    """Ratio to the best locked schedule (log, line at 1) against synthesizer cost, one line per link
    bandwidth, one column per stage count (and data-parallel replica count), a marker per best locked
    schedule; below, the peak memory per device of the unlocked method (solid) and of its best locked
    rival (dashed). Rows of measured
    synthesizers are drawn at ``measured_ratio`` (one ``r``, or one per stage count as
    :func:`analysis.frontier.measured_synth_ratios` gives), or not at all without it.

    ``method`` defaults to DNI (or the table's first); ``hardware`` to the method's first machine; rows
    of a table with ``microbatches_per_step`` are drawn at ``microbatches`` (default: the first count).
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    method = method or ("dni" if "dni" in set(table["method"]) else table["method"].iloc[0])
    data, hardware, microbatches = _rows(table, method, hardware, microbatches, measured_ratio)
    replicas = data["replicas"] if "replicas" in data else pd.Series(1, index=data.index)
    columns = sorted(set(zip(data["stages"], replicas)))  # one per stage count (and replica count)
    bandwidths = distinct(data["bandwidth_GB_per_s"])
    colors = dict(zip(map(str, bandwidths), sns.color_palette("colorblind", len(bandwidths))))
    names = list(dict.fromkeys(locked_methods() + sorted(set(table["best_locked"]))))
    markers = {m: MARKERS[i % len(MARKERS)] for i, m in enumerate(names)}
    with sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(2, max(len(columns), 1), figsize=(3.6 * max(len(columns), 1) + 2.2, 5.6),
                                 squeeze=False, sharex=True, sharey="row", gridspec_kw={"height_ratios": [2, 1]})
    for col, (k, n) in enumerate(columns):
        column = data[(data["stages"] == k) & (replicas == n)]
        for bw in bandwidths:
            _draw_line(axes[0, col], axes[1, col], column[_equal(column["bandwidth_GB_per_s"], bw)],
                       colors[str(bw)], markers)
        copies = f" × {n} replicas" if n > 1 else ""
        axes[0, col].set_title(f"K = {k} stages{copies} ({int(column['devices'].iloc[0])} devices)")
    _decorate(axes, method, [_ratio_at(measured_ratio, k) for k, _ in columns])
    _legend(fig, bandwidths, colors, sorted(set(data["best_locked"]), key=names.index), markers, method,
            bool(data["synth_cost_ratio"].isna().any()))
    suffix = f", {microbatches_label(microbatches)} per pipeline step" if "microbatches_per_step" in table else ""
    fig.suptitle(title or f"{method} against the best locked schedule on {hardware}{suffix}")
    fig.tight_layout()
    return fig


def _draw_line(top, bottom, line: pd.DataFrame, color, markers: dict) -> None:
    """One bandwidth's line: the ratio (a marker per best locked schedule) on top, memory below. Measured
    synthesizers (no ``synth_cost_ratio``) are hollow markers off the line: their S/F and T/F differ per stage
    and from the ``S = r·F, T = 2r·F`` the line models."""
    swept = line[line["synth_cost_ratio"].notna()]
    top.plot(swept["x"], swept["ratio"], color=color, linewidth=1.2)
    bottom.plot(swept["x"], swept["peak_memory_bytes"] / 1e6, color=color, linewidth=1.2)
    bottom.plot(swept["x"], swept["best_locked_peak_memory_bytes"] / 1e6, color=color, linewidth=1, linestyle="--")
    for (best, measured), points in line.groupby(["best_locked", line["synth_cost_ratio"].isna()]):
        top.scatter(points["x"], points["ratio"], marker=markers[best], color="white" if measured else color,
                    edgecolor=color if measured else "black", linewidth=1.2 if measured else 0.4, s=36, zorder=3)


def _decorate(axes, method: str, measured: list[float]) -> None:
    """Axes labels, the break-even line at 1, log ratios and the measured synthesizers' cost in each column."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    for top, bottom in zip(axes[0], axes[1]):
        top.axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
        top.set_yscale("log")
        bottom.set_xlabel("synthesizer cost r (S = r·F, T = 2r·F)")
        bottom.set_ylim(bottom=0)
    low, high = axes[0, 0].get_ylim()  # one range: the top row shares its y axis
    axes[0, 0].yaxis.set_major_locator(FixedLocator([t for t in RATIO_TICKS if low <= t <= high] or [1.0]))
    axes[0, 0].yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 0.5, 2 rather than 5×10⁻¹
    axes[0, 0].yaxis.set_minor_formatter(NullFormatter())
    axes[0, 0].set_ylabel(f"{method} / best locked\nthroughput (> 1: {method} wins)")
    axes[1, 0].set_ylabel("peak memory per\ndevice (MB)")
    for col, r in enumerate(measured):
        if not np.isnan(r):
            for ax in axes[:, col]:
                ax.axvline(r, color="grey", linewidth=0.6, linestyle="-.")
            axes[0, col].annotate("measured", (r, 1.0), xytext=(3, 3), textcoords="offset points", fontsize=7)


def _legend(fig, bandwidths: list, colors: dict, shown: list[str], markers: dict, method: str,
            measured: bool) -> None:
    """Colours (bandwidths), markers (best locked schedules) and line styles (memory) in one legend."""
    from matplotlib.lines import Line2D

    handles = ([Line2D([], [], color=colors[str(bw)], label=bandwidth_label(bw)) for bw in bandwidths]
               + [Line2D([], [], linestyle="", marker=markers[m], color="grey", markeredgecolor="black",
                         label=f"best locked: {m}") for m in shown]
               + [Line2D([], [], linestyle="", marker="o", color="white", markeredgecolor="grey",
                         label="hollow: measured synthesizers")] * measured
               + [Line2D([], [], color="black", label=f"memory: {method}"),
                  Line2D([], [], color="black", linestyle="--", label="memory: best locked")])
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=8)


def frontier_figures(table: pd.DataFrame, out: str | Path, measured_ratio: float | dict[int, float] | None = None,
                     formats: tuple[str, ...] = ("png", "pdf")) -> list[Path]:
    """:func:`plot_frontier` for every unlocked method, machine (and microbatch count) of ``table``, saved in
    ``out`` as ``frontier`` (DNI, or the first method) or ``frontier-<method>``, with ``-<hardware>`` when
    there are several machines and ``-m<count>`` (``-mdefault``) for a table by microbatches."""
    if table.empty:
        return []
    out, files = Path(out), []
    methods = list(dict.fromkeys(table["method"]))
    first = "dni" if "dni" in methods else methods[0]
    machines = list(dict.fromkeys(table["hardware_spec"]))
    by_count = "microbatches_per_step" in table
    for method in methods:
        for hardware in (h for h in machines if ((table["method"] == method) & (table["hardware_spec"] == h)).any()):
            for count in distinct(table["microbatches_per_step"]) if by_count else [None]:
                parts = [method if method != first else "", hardware if len(machines) > 1 else "",
                         ("mdefault" if pd.isna(count) else f"m{count:g}") if by_count else ""]
                fig = plot_frontier(table, method, hardware, count, measured_ratio)
                files += save_figure(fig, out / "-".join(["frontier", *filter(None, parts)]), formats)
    return files
