"""Every figure and table of a set of run directories, regenerated from what the runs wrote.

    build_report(["runs/dni-s0", "runs/dni-s1", "runs/cdni-s0"], "report/")

writes into ``report/``: for classification runs the learning curves and the comparison table;
for runs trained with ``probe_every`` the fidelity figures (over training per interface, the
synthesizer objectives side by side, fidelity against depth) and the fidelity table; and
``report.md`` tying them together. ``sglab report`` is the command line of it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from analysis.fidelity import load_fidelity
from analysis.fidelity_figures import fidelity_table, plot_depth, plot_over_training, plot_variants
from analysis.learning_curves import comparison_table, load_runs, plot_learning_curves
from sglab.io import atomic_write_text

#: Config fields that tell runs apart in the fidelity figures.
FIELDS = ("method", "synth_loss", "synthesizer", "layers", "model", "seed")


def _task(run_dir: Path) -> str:
    record = json.loads((run_dir / "config.json").read_text())
    return record.get("task", "classify")


def _rel(paths: list[Path], out: Path) -> list[str]:
    return [str(p.relative_to(out)) for p in paths]


def _learning(runs: list[Path], out: Path) -> list[str]:
    classify = [r for r in runs if _task(r) == "classify"]
    if not classify:
        return []
    metrics = load_runs(classify)
    table = comparison_table(metrics)
    atomic_write_text(out / "comparison.csv", table.to_csv(index=False))
    lines = ["## Learning", "", table.to_markdown(index=False, floatfmt=".2f"), ""]
    return lines + [f"![learning curves]({p})" for p in _rel(plot_learning_curves(metrics, out / "learning_curves"), out)
                    if p.endswith(".png")]


def _fidelity(runs: list[Path], out: Path) -> list[str]:
    probed = [r for r in runs if (r / "fidelity.csv").exists()]
    if not probed:
        return []
    table = load_fidelity(probed, config_fields=FIELDS)
    atomic_write_text(out / "fidelity.csv", table.to_csv(index=False))
    summary = fidelity_table(table, by=tuple(c for c in ("task", "method", "synth_loss", "interface") if table[c].notna().any()))
    atomic_write_text(out / "fidelity_table.csv", summary.to_csv(index=False))
    figures = plot_over_training(table, out / "fidelity_over_training")
    if table["synth_loss"].nunique() > 1:
        figures += plot_variants(table, out / "fidelity_variants", by="synth_loss")
    if table["layers"].nunique() > 1:
        figures += plot_depth(table, out / "fidelity_depth")
    lines = ["## Synthetic-gradient fidelity", "",
             "Means over the second half of each run's probed steps; ± is the spread over runs (seeds).", "",
             summary.to_markdown(index=False, floatfmt=".3f"), ""]
    return lines + [f"![fidelity]({p})" for p in _rel(figures, out) if p.endswith(".png")]


def build_report(run_dirs: list[str | Path], out: str | Path) -> Path:
    """Write every figure and table of ``run_dirs`` and ``report.md`` into ``out``; returns report.md's path."""
    out = Path(out)
    runs = [Path(r) for r in run_dirs]
    missing = [str(r) for r in runs if not (r / "config.json").exists()]
    if missing:
        raise FileNotFoundError(f"not sglab run directories (no config.json): {', '.join(missing)}")
    names = pd.DataFrame({"run": [r.name for r in runs], "task": [_task(r) for r in runs]})
    lines = ["# sglab report", "", f"{len(runs)} runs:", "", names.to_markdown(index=False), ""]
    lines += _learning(runs, out) + [""] + _fidelity(runs, out)
    return atomic_write_text(out / "report.md", "\n".join(lines) + "\n")
