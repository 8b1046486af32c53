"""Tables and figures of the recurrent-DNI benchmark (``benchmarks/rnn_tasks.py``).

    results = pd.read_csv(out / "results.csv")      # what the benchmark wrote into --out
    print(longest_solved_table(results))            # the paper's Table 2 layout, copy tasks
    print(bpc_table(results))                       # bits per character against T
    plot_two_rnn(pd.read_csv(out / "two_rnn_metrics.csv"), "figures/two_rnn")

``results`` has one row per run: the run's summary (``task``, ``method``, ``truncation``,
``longest_solved`` for the copy tasks, ``valid_bpc`` for language modelling, the held-out
accuracies for two-rnn). Methods are the registry's names (:mod:`sglab.methods`); an alias
such as ``bptt`` (for ``nobprop``) is shown as the method it names.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.style import plt, save_figure, use_paper_style
from analysis.tables import mean_sd
from sglab.methods import ALIASES

#: Column order and display names of the three recurrent methods (``nobprop`` is truncated BPTT).
METHOD_NAMES = {"nobprop": "BPTT", "dni": "DNI", "dni-aux": "DNI+Aux"}
#: Display names of the ways B's gradient reaches A in the two-RNN system.
TWO_RNN_NAMES = {
    "cdni": "DNI (synthesizer sees message + B's target)",
    "dni": "DNI (synthesizer sees message only)",
    "bprop": "true gradient from B (locked)",
    "nobprop": "no gradient from B (ablation)",
}


def _canonical(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with every method alias replaced by the method it names."""
    return rows.assign(method=rows.method.map(lambda m: ALIASES.get(m, m)))


def _wide(results: pd.DataFrame, tasks: list[str], value: str, digits: int, single_digits: int | None = None) -> str:
    """Markdown table: one row per (task, method), one column per truncation T; a cell is the
    mean ± sample sd over the seeds that ran it, to ``digits`` decimals (one seed's value alone, to
    ``single_digits``, default ``digits``)."""
    rows = _canonical(results[results.task.isin(tasks)])
    methods = [m for m in METHOD_NAMES if m in set(rows.method)]
    truncations = sorted(int(t) for t in rows.truncation.unique())
    seeds = rows.groupby(["task", "method", "truncation"]).size()
    header = ["task", "method"] + [f"T={t}" for t in truncations]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for task in tasks:
        for method in methods:
            cells = [task, METHOD_NAMES[method]]
            for t in truncations:
                hit = rows[(rows.task == task) & (rows.method == method) & (rows.truncation == t)]
                cells.append(mean_sd(hit[value], digits if len(hit) > 1 or single_digits is None else single_digits))
            lines.append("| " + " | ".join(cells) + " |")
    counts = sorted(set(seeds))
    if counts != [1]:
        lines.append(f"\nMean ± sample sd over {', '.join(map(str, counts))} seeds per cell.")
    return "\n".join(lines)


def longest_solved_table(results: pd.DataFrame) -> str:
    """Copy / Repeat Copy: the longest sequence length solved, per method and T (higher is better)."""
    return _wide(results, [t for t in ("copy", "repeat-copy") if t in set(results.task)], "longest_solved", 1, single_digits=0)


def bpc_table(results: pd.DataFrame) -> str:
    """Character-level LM: validation bits per character, per method and T (lower is better)."""
    return _wide(results, ["charlm"], "valid_bpc", 3)


def two_rnn_table(results: pd.DataFrame) -> str:
    """Final held-out accuracy of A and B for each two-RNN method (mean ± sd over seeds)."""
    rows = results[results.task == "two-rnn"]
    lines = ["| variant | A: count of 3s | B: odd digits | B's majority guess |", "|---|---|---|---|"]
    for method, runs in rows.groupby("method", sort=False):
        name = TWO_RNN_NAMES.get(method, method)
        lines.append(f"| {name} | {mean_sd(runs.test_accuracy_a, 3)} | {mean_sd(runs.test_accuracy_b, 3)} "
                     f"| {runs.chance_b.iloc[0]:.3f} |")
    return "\n".join(lines)


def plot_two_rnn(metrics: pd.DataFrame, stem: str | Path, chance_b: float | None = None) -> list[Path]:
    """Held-out accuracy of network A and network B over training, one line per method.

    ``metrics`` holds the runs' metric rows (``sglab.training``'s tidy rows) with a ``method``
    column; only the ``kind == "eval"`` rows are drawn. ``chance_b`` draws B's majority-guess
    accuracy as a dashed line.
    """
    use_paper_style()
    evals = metrics[metrics.kind == "eval"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
    panels = (("test_accuracy_a", "A: how many 3s so far (every tick)"),
              ("test_accuracy_b", "B: how many odd digits A saw (every N ticks)"))
    for ax, (column, title) in zip(axes, panels):
        for method, rows in evals.groupby("method", sort=False):
            mean = rows.groupby("step")[column].mean()  # over seeds, when several ran
            ax.plot(mean.index, mean.values, label=TWO_RNN_NAMES.get(method, method))
        if column == "test_accuracy_b" and chance_b is not None:
            ax.axhline(chance_b, color="grey", linestyle="--", linewidth=1, label="majority guess")
        ax.set_title(title)
        ax.set_xlabel("training step")
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("held-out accuracy")
    handles, labels = axes[1].get_legend_handles_labels()
    axes[0].legend(handles, labels, loc="lower right", fontsize="small")  # A's panel is empty down there
    fig.tight_layout()
    return save_figure(fig, stem)


def plot_rnn_tables(results: pd.DataFrame, stem: str | Path) -> list[Path]:
    """Longest copy length solved and validation BPC against T, one line per method (mean ± sd over seeds)."""
    use_paper_style()
    results = _canonical(results)
    panels = [(t, "longest_solved", "longest length solved") for t in ("copy", "repeat-copy") if t in set(results.task)]
    panels += [("charlm", "valid_bpc", "validation bits per character")] if "charlm" in set(results.task) else []
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, (task, value, label) in zip(axes[0], panels):
        rows = results[results.task == task]
        for method, name in METHOD_NAMES.items():
            line = rows[rows.method == method].groupby("truncation")[value].agg(["mean", "std"])
            if len(line):
                ax.errorbar(line.index, line["mean"], yerr=line["std"].fillna(0), marker="o", capsize=3, label=name)
        ax.set_title(task)
        ax.set_xlabel("truncation T")
        ax.set_ylabel(label)
    axes[0][0].legend(fontsize="small")
    fig.tight_layout()
    return save_figure(fig, stem)
