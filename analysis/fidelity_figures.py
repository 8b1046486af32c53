"""Figures of synthetic-gradient fidelity, from the tidy table of :func:`analysis.fidelity.load_fidelity`.

Every function takes that table (run, step, interface, microbatch, metric, value and the runs'
config fields), draws one paper-style figure (seaborn, colour-blind palette) and saves it as PNG
and PDF next to ``stem``; bands are the spread over the runs of a group (seeds).

    table = load_fidelity(run_dirs, config_fields=("method", "synth_loss", "layers", "seed"))
    plot_over_training(table, "figures/cosine")                     # per interface, bands over seeds
    plot_variants(table, "figures/variants", by="synth_loss")       # L2 vs critic vs Sobolev
    plot_depth(table, "figures/depth")                              # fidelity against depth
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from analysis.style import save_figure, use_paper_style

#: What each metric is called on an axis.
LABELS = {
    "synthetic_cosine": "cos(δ̂, δ)",
    "target_cosine": "cos(bootstrapped target, δ)",
    "regression_cosine": "cos(δ̂, its target)",
    "update_cosine": "cos(DNI update, backprop update)",
    "synthetic_rel_error": "‖δ̂ − δ‖ / ‖δ‖",
    "synthetic_norm_ratio": "‖δ̂‖ / ‖δ‖",
    "synthetic_sign_agreement": "sign agreement of δ̂ and δ",
}


def _per_step(table: pd.DataFrame, metric: str, keys: list[str]) -> pd.DataFrame:
    """The rows of ``metric``, a two-RNN run's chunks averaged so that every step counts once."""
    rows = table[table["metric"] == metric]
    if rows.empty:
        raise ValueError(f"the table has no metric {metric!r}; it has {sorted(table['metric'].unique())}")
    keys = [k for k in dict.fromkeys(["run", *keys, "step"]) if k in rows.columns]
    return rows.groupby(keys, dropna=False)["value"].mean().reset_index()


def plot_over_training(table: pd.DataFrame, stem: str | Path, metric: str = "synthetic_cosine",
                       hue: str = "interface", col: str | None = "method") -> list[Path]:
    """``metric`` against the training step, one line per ``hue`` (bands: spread over the runs), a panel per ``col``."""
    use_paper_style()
    col = col if col in table.columns and table[col].nunique() > 1 else None
    data = _per_step(table, metric, [hue] + ([col] if col else []))
    data[hue] = data[hue].astype(str)
    grid = sns.relplot(data=data, x="step", y="value", hue=hue, col=col, kind="line", errorbar="sd",
                       height=3.2, aspect=1.3, facet_kws={"sharey": True})
    grid.set_axis_labels("training step", LABELS.get(metric, metric))
    grid.figure.tight_layout()
    return save_figure(grid.figure, stem)


def plot_variants(table: pd.DataFrame, stem: str | Path, by: str = "synth_loss",
                  metrics: tuple[str, ...] = ("synthetic_cosine", "update_cosine")) -> list[Path]:
    """Each of ``metrics`` over training, one line per value of ``by`` (e.g. L2 vs critic vs Sobolev), all interfaces pooled."""
    use_paper_style()
    shown = [m for m in metrics if (table["metric"] == m).any()]
    fig, axes = plt.subplots(1, len(shown), figsize=(4.8 * len(shown), 3.4), squeeze=False)
    for ax, metric in zip(axes[0], shown):
        data = _per_step(table, metric, [by, "interface"])
        data[by] = data[by].astype(str)
        sns.lineplot(data=data, x="step", y="value", hue=by, errorbar="sd", ax=ax)
        ax.set(xlabel="training step", ylabel=LABELS.get(metric, metric))
    fig.tight_layout()
    return save_figure(fig, stem)


def plot_depth(table: pd.DataFrame, stem: str | Path, metric: str = "synthetic_cosine", depth: str = "layers",
               hue: str = "method", last: float = 0.5) -> list[Path]:
    """Mean ``metric`` over the last ``last`` share of training against the interface, a panel per network ``depth``."""
    use_paper_style()
    data = _per_step(table, metric, [depth, hue, "interface"])
    late = data[data["step"] >= data.groupby("run")["step"].transform(lambda s: s.min() + (1 - last) * (s.max() - s.min()))]
    late = late.groupby(["run", depth, hue, "interface"], dropna=False)["value"].mean().reset_index()
    grid = sns.catplot(data=late, x="interface", y="value", hue=hue, col=depth, kind="point", errorbar="sd",
                       height=3.2, aspect=1.1, dodge=0.3)
    grid.set_axis_labels("interface (0 = after the first stage)", f"{LABELS.get(metric, metric)}, late in training")
    grid.figure.tight_layout()
    return save_figure(grid.figure, stem)


def fidelity_table(table: pd.DataFrame, by: tuple[str, ...] = ("method", "interface"),
                   metrics: tuple[str, ...] = ("synthetic_cosine", "target_cosine", "update_cosine"),
                   last: float = 0.5) -> pd.DataFrame:
    """Mean ± sd over runs of each metric's mean over the last ``last`` share of training, per ``by`` group."""
    frames = []
    for metric in metrics:
        if not (table["metric"] == metric).any():
            continue
        data = _per_step(table, metric, list(by))
        span = data.groupby("run")["step"].transform(lambda s: s.min() + (1 - last) * (s.max() - s.min()))
        per_run = data[data["step"] >= span].groupby(["run", *by], dropna=False)["value"].mean().reset_index()
        stats = per_run.groupby(list(by), dropna=False)["value"].agg(["mean", "std", "count"]).reset_index()
        frames.append(stats.assign(metric=metric))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
