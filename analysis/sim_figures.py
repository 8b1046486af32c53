"""Figures of simulations: Gantt charts of op traces, speedup bars and the speedup curves of sweeps.

A Gantt chart draws the same trace the simulator returns (and a measured run writes): one row
per device or link, one box per op, coloured by op with the same colours everywhere.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are written to files; no display needed

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from analysis.style import save_figure  # noqa: E402,F401  (re-exported: figure callers import it from here)
from sglab.ops import ALL_OPS, OP_MEANING  # noqa: E402

#: One colour per op, shared by every figure.
OP_COLORS = dict(zip(ALL_OPS, [
    "#a6cee3", "#1f78b4", "#fdbf6f", "#e31a1c", "#fb9a99", "#b15928", "#33a02c", "#cab2d6", "#ff7f00",
    "#b2df8a", "#b2df8a", "#6a3d9a", "#6a3d9a", "#ffff99",
], strict=True))  # I (input gradient, light red) and W (weight gradients, brown) apart: zero-bubble charts show both


def gantt(trace: pd.DataFrame, max_steps: int | None = None, title: str | None = None,
          ax: plt.Axes | None = None, labels: bool = True) -> plt.Figure:
    """A Gantt chart of ``trace`` (first ``max_steps`` steps only, if given); time in ms."""
    if max_steps is not None:
        trace = trace[trace["step"] < max_steps]
    rows = list(dict.fromkeys(trace.sort_values("kind", key=lambda k: k.astype(str) != "device",
                                                kind="stable")["device"].astype(str)))
    if ax is None:
        fig, ax = plt.subplots(figsize=(11, 0.45 * len(rows) + 1.4))
    else:
        fig = ax.figure
    span = max(int(trace["end_ns"].max()) if len(trace) else 1, 1)
    for op, group in trace.groupby("op", observed=True):
        for y, row in enumerate(rows):
            mine = group[group["device"].astype(str) == row]
            if len(mine):
                bars = list(zip(mine["start_ns"] / 1e6, (mine["end_ns"] - mine["start_ns"]) / 1e6))
                ax.broken_barh(bars, (y - 0.4, 0.8), facecolors=OP_COLORS.get(str(op), "grey"),
                               edgecolor="black", linewidth=0.3)
    if labels:
        _label_boxes(ax, trace, rows, span)
    ax.set_yticks(range(len(rows)), rows)
    ax.invert_yaxis()
    ax.set_xlabel("time (ms)")
    ax.set_title(title or "simulated op trace")
    present = set(trace["op"].astype(str))
    handles = [Patch(facecolor=OP_COLORS[op], edgecolor="black", linewidth=0.3, label=f"{op}: {OP_MEANING[op]}")
               for op in ALL_OPS if op in present]
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    return fig


def _label_boxes(ax: plt.Axes, trace: pd.DataFrame, rows: list[str], span: int) -> None:
    """Write ``stage op microbatch`` inside boxes wide enough to hold it."""
    wide = trace[(trace["end_ns"] - trace["start_ns"]) > span / 60]
    if len(wide) > 400:  # unreadable anyway
        return
    y_of = {row: y for y, row in enumerate(rows)}
    for r in wide.itertuples(index=False):
        middle = (r.start_ns + r.end_ns) / 2e6
        text = f"{r.stage}{r.op}{r.microbatch}" if "SEND" not in str(r.op) else str(r.stage)
        ax.text(middle, y_of[str(r.device)], text, ha="center", va="center", fontsize=6)


def plot_sweep(table: pd.DataFrame, x: str, y: str = "speedup", hue: str = "method", col: str | None = "hardware",
               logx: bool = False, title: str | None = None) -> plt.Figure:
    """One line per ``hue`` of ``y`` against ``x``, one panel per ``col`` (seaborn relplot)."""
    import seaborn as sns

    cols = col if col and col in table and table[col].nunique() > 1 else None
    grid = sns.relplot(data=table, x=x, y=y, hue=hue, col=cols, kind="line", marker="o",
                       height=3.4, aspect=1.25, facet_kws={"sharey": False})
    for ax in grid.axes.flat:
        if logx:
            ax.set_xscale("log")
        if y in ("speedup", "steady_speedup"):
            ax.axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
    if title:
        grid.figure.suptitle(title, y=1.03)
    return grid.figure


def plot_speedups(table: pd.DataFrame, y: str = "speedup", title: str | None = None) -> plt.Figure:
    """Bars of ``y`` per method, one group per hardware (the worked example's summary figure)."""
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(9, 3.6))
    sns.barplot(data=table, x="method", y=y, hue="hardware", ax=ax)
    ax.axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
    ax.set_ylabel(f"{y} vs sequential backprop")
    ax.tick_params(axis="x", rotation=30)
    ax.set_title(title or f"{y} per method")
    return fig


def sweep_figures(table: pd.DataFrame, grid, out: Path) -> list[Path]:
    """Speedup against each swept dimension of ``grid`` (a :class:`sglab.sim.sweep.SweepGrid`), the
    other swept dimensions held at their first value; returns the files written under ``out``."""
    from sglab.sim.sweep import DIMENSIONS

    ok = table[table["error"] == ""]
    files: list[Path] = []
    for name, (column, xlabel, logx) in DIMENSIONS.items():
        if len(getattr(grid, name)) < 2:
            continue
        subset = ok[ok[column].notna()]
        for other, (other_column, _, _) in DIMENSIONS.items():
            values = getattr(grid, other)
            if other != name and len(values) > 1:
                keep = subset[other_column].isna() if values[0] is None else subset[other_column] == values[0]
                subset = subset[keep]
        if subset.empty:
            continue
        fig = plot_sweep(subset, x=column, col="hardware_spec", logx=logx, title=f"speedup vs {xlabel}")
        for ax in fig.axes:
            ax.set_xlabel(xlabel)
        files += save_figure(fig, out / f"speedup_vs_{column.removesuffix('_requested')}")
    return files
