"""Cells of the markdown tables the benchmarks write: a mean over seeds with its spread."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd


def mean_sd(values: Sequence[float] | pd.Series, digits: int = 1) -> str:
    """``mean ± sample sd`` of ``values`` to ``digits`` decimals; the value alone for one; ``–`` for none."""
    series = pd.Series(values, dtype=float).dropna()
    if series.empty:
        return "–"
    if len(series) == 1:
        return f"{series.iloc[0]:.{digits}f}"
    return f"{series.mean():.{digits}f} ± {series.std(ddof=1):.{digits}f}"
