"""Fidelity tables: how good runs' synthetic gradients were, read from their ``fidelity.csv``.

A run trained with ``probe_every`` writes one row per (step, interface, microbatch, metric); the
metrics are defined in :mod:`sglab.probes.metrics` (the library computes them while it trains,
so a probe never imports this package). Here the runs' rows become one tidy table, tagged with
the run and its config, and are summarised:

    table = load_fidelity(["runs/dni", "runs/cdni"])          # run, step, interface, metric, value, method ...
    fidelity_summary(table)                                    # per run, interface and metric: first, last, mean
    wide_fidelity(table.query("metric.str.startswith('synthetic')"))
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import pandas as pd

from sglab.probes import FIDELITY_COLUMNS, FIDELITY_FILE
from sglab.probes.metrics import compare, fidelity_metrics

__all__ = ["compare", "fidelity_metrics", "fidelity_summary", "load_fidelity", "read_fidelity", "wide_fidelity"]

#: Config fields each run's rows are tagged with by default.
CONFIG_FIELDS = ("method",)


def read_fidelity(run_dir: str | Path, config_fields: Sequence[str] = CONFIG_FIELDS) -> pd.DataFrame:
    """One run's ``fidelity.csv`` with a ``run`` column (the directory's name), ``task`` and ``config_fields``."""
    run_dir = Path(run_dir)
    path = run_dir / FIDELITY_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no fidelity log here; train with probe_every set to write one")
    table = pd.read_csv(path)
    if tuple(table.columns) != FIDELITY_COLUMNS:
        raise ValueError(f"{path}: columns {list(table.columns)}, expected {list(FIDELITY_COLUMNS)}")
    record = json.loads((run_dir / "config.json").read_text())
    table.insert(0, "run", run_dir.name)
    table["task"] = record["task"]
    for name in config_fields:
        table[name] = record["config"].get(name)
    return table


def load_fidelity(run_dirs: Sequence[str | Path], config_fields: Sequence[str] = CONFIG_FIELDS) -> pd.DataFrame:
    """The fidelity rows of several runs as one tidy table (see :func:`read_fidelity`)."""
    return pd.concat([read_fidelity(d, config_fields) for d in run_dirs], ignore_index=True)


def fidelity_summary(table: pd.DataFrame, by: Sequence[str] = ("run", "interface", "metric")) -> pd.DataFrame:
    """Per group: the steps probed, the value at the first and last probed step and the mean over steps.

    Microbatches (a two-RNN run's chunks) of one step are averaged first, so every step counts once.
    """
    per_step = table.groupby([*by, "step"], sort=False)["value"].mean().reset_index().sort_values("step")
    grouped = per_step.groupby(list(by), sort=False)["value"]
    return pd.DataFrame({"steps": grouped.size(), "first": grouped.agg(lambda v: v.iloc[0]),
                         "last": grouped.agg(lambda v: v.iloc[-1]), "mean": grouped.mean()}).reset_index()


def wide_fidelity(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, step, interface, microbatch) and one column per metric."""
    index = [c for c in ("run", "step", "interface", "microbatch") if c in table.columns]
    return table.pivot_table(index=index, columns="metric", values="value", aggfunc="first").reset_index()
