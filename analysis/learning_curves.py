"""Learning curves and comparison tables of training runs (the demo's and the notebooks')."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from analysis.style import save_figure, use_paper_style


def load_runs(run_dirs: list[str | Path]) -> pd.DataFrame:
    """Concatenate the metrics.csv of several runs, tagged with each run's method and model."""
    frames = []
    for run_dir in run_dirs:
        run_dir = Path(run_dir)
        frame = pd.read_csv(run_dir / "metrics.csv")
        summary = pd.read_json(run_dir / "summary.json", typ="series")
        frame["method"], frame["model"], frame["layers"] = summary["method"], summary["model"], summary["layers"]
        frame["run"] = run_dir.name
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def plot_learning_curves(
    metrics: pd.DataFrame, stem: str | Path, hue: str = "method", style: str | None = None
) -> list[Path]:
    """Training loss (left) and test error (right) against step, one line per ``hue`` (and ``style``)."""
    use_paper_style()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    train_rows = metrics[metrics["kind"] == "train"]
    eval_rows = metrics[metrics["kind"] == "eval"]
    sns.lineplot(data=train_rows, x="step", y="loss", hue=hue, style=style, ax=left, legend=False)
    sns.lineplot(data=eval_rows, x="step", y="test_error", hue=hue, style=style, marker="o", ax=right)
    left.set(title="training loss", ylabel="cross-entropy", yscale="log")
    right.set(title="test error", ylabel="error rate")
    right.yaxis.set_major_formatter(plt.matplotlib.ticker.PercentFormatter(1.0))
    sns.move_legend(right, "upper left", bbox_to_anchor=(1.02, 1), frameon=False)
    fig.tight_layout()
    return save_figure(fig, stem)


def comparison_table(metrics: pd.DataFrame, by: tuple[str, ...] = ("model", "layers", "method")) -> pd.DataFrame:
    """Final and best test error and training time per run group (one row per group)."""
    evals = metrics[metrics["kind"] == "eval"].sort_values("step")
    grouped = evals.groupby(list(by), sort=False)
    return pd.DataFrame(
        {
            "steps": grouped["step"].max(),
            "final_test_error_%": 100 * grouped["test_error"].last(),
            "best_test_error_%": 100 * grouped["test_error"].min(),
            "final_train_error_%": 100 * grouped["train_error"].last(),
            "train_time_s": grouped["time_s"].max(),
        }
    ).reset_index()
