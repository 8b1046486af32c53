"""Recurrent DNI at a small, stated budget: copy / repeat-copy / char-LM tables and the two-RNN figure.

    python benchmarks/rnn_tasks.py                         # everything, about 10 minutes of CPU time
    python benchmarks/rnn_tasks.py --jobs 2                # the same runs, two at a time
    python benchmarks/rnn_tasks.py --scale 0.05 --out /tmp/rnn-smoke --figures /tmp/rnn-smoke   # a quick smoke run

For every task in Copy, Repeat Copy and character-level LM, every ``T`` in 2, 3, 4, 5, 8 and
every recurrent method (``nobprop``: truncated BPTT, shown as BPTT; ``dni``; ``dni-aux``,
shown as DNI+Aux) it trains one run (seed 0) at the budget in ``BUDGET`` with
:func:`sglab.training.train` and records the paper's number: the longest sequence length
solved (copy tasks, curriculum on ``N``) or validation bits per character (LM). Then it trains
the two-RNN system four ways (``cdni``: the synthesizer sees B's target; ``dni``: the message
only; ``bprop``: the true gradient from B; ``nobprop``: no gradient from B) and plots both
networks' held-out accuracy over training.

Writes into ``--out`` (default ``docs/results/rnn_tasks``): ``results.csv`` (one row per run:
its summary and its process CPU time), ``two_rnn_metrics.csv`` (the figure's data: the two-RNN
runs' evaluation rows), ``tables.md`` and ``benchmark.json`` (budget, command, provenance, wall
and CPU time), and the figures into ``--figures`` (default ``docs/figures/rnn``). Each run's
directory (config, metrics, checkpoint) is temporary unless ``--runs`` keeps them. Every run
uses one torch thread.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from analysis.rnn_figures import (  # noqa: E402
    METHOD_NAMES,
    bpc_table,
    longest_solved_table,
    plot_rnn_tables,
    plot_two_rnn,
    two_rnn_table,
)
from sglab.io import atomic_write_json, atomic_write_text, provenance  # noqa: E402
from sglab.tasks.two_rnn import majority_rate_b  # noqa: E402
from sglab.training import CharLMConfig, CopyConfig, RunConfig, TwoRNNConfig, train  # noqa: E402

TRUNCATIONS = (2, 3, 4, 5, 8)
#: The single-RNN methods, in table order.
RECURRENT_METHODS = tuple(METHOD_NAMES)
#: How B's gradient reaches A, in table order.
TWO_RNN_METHODS = ("cdni", "dni", "bprop", "nobprop")
DEFAULT_TEXT = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"

#: The budget of every run (steps are multiplied by ``--scale``). The paper trains far longer,
#: with 256-unit LSTMs and 8-bit vectors; here everything is sized to about 10 CPU-core minutes.
BUDGET: dict[str, dict[str, Any]] = {
    "copy": dict(steps=2000, bits=2, hidden=64, batch_size=32, max_length=40, lr=1e-2),
    "repeat-copy": dict(steps=1500, bits=2, max_repeats=3, hidden=64, batch_size=32, max_length=40, lr=1e-2),
    "charlm": dict(steps=150, hidden=128, batch_size=64, seq_len=64, eval_every=50, lr=3e-3),
    "two-rnn": dict(steps=1000, tick_ratio=4, b_ticks=3, batch_size=32, eval_every=50, lr=3e-3),
}


def _budget(task: str, scale: float) -> dict[str, Any]:
    """``BUDGET[task]`` with its steps scaled (at least one)."""
    budget = dict(BUDGET[task])
    budget["steps"] = max(1, int(round(budget["steps"] * scale)))
    return budget


def jobs(tasks: list[str], text: Path, scale: float) -> list[RunConfig]:
    """Every run's config, in table order."""
    found: list[RunConfig] = []
    for task in ("copy", "repeat-copy"):
        if task in tasks:
            budget = _budget(task, scale)
            found += [CopyConfig(method=m, truncation=t, repeat=task == "repeat-copy", device="cpu", **budget)
                      for t in TRUNCATIONS for m in RECURRENT_METHODS]
    if "charlm" in tasks:
        found += [CharLMConfig(method=m, truncation=t, text=str(text), device="cpu", **_budget("charlm", scale))
                  for t in TRUNCATIONS for m in RECURRENT_METHODS]
    if "two-rnn" in tasks:
        found += [TwoRNNConfig(method=m, device="cpu", **_budget("two-rnn", scale)) for m in TWO_RNN_METHODS]
    return found


def run_name(config: RunConfig) -> str:
    """A run's directory name under ``--runs``."""
    if config.task == "two-rnn":
        return f"two-rnn-{config.method}"
    return f"{config.task_name}-{config.method}-T{config.truncation}"


def run_one(job: tuple[RunConfig, Path | None]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Train one run on one thread; its summary row and (two-RNN only) its evaluation rows."""
    torch.set_num_threads(1)
    config, keep = job
    # Process CPU time, unlike the runs' wall-clock train_time_s, hardly depends on how busy a
    # shared machine is: it is the number the budget is stated in.
    cpu_start = time.process_time()
    with tempfile.TemporaryDirectory(prefix="sglab-rnn-") as scratch:
        result = train(config, keep or scratch, progress=False)
    row = {**result.summary, "cpu_s": time.process_time() - cpu_start}
    if config.task != "two-rnn":
        return row, []
    return row, [{**r, "method": config.method} for r in result.metrics if r["kind"] == "eval"]


def command_line(argv: list[str]) -> str:
    """The command as typed (for the docs and benchmark.json)."""
    return "python benchmarks/rnn_tasks.py" + "".join(f" {a}" for a in argv)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The benchmark's options."""
    tasks = ["copy", "repeat-copy", "charlm", "two-rnn"]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "rnn_tasks")
    parser.add_argument("--figures", type=Path, default=ROOT / "docs" / "figures" / "rnn")
    parser.add_argument("--runs", type=Path, default=None, help="keep every run's directory under this one")
    parser.add_argument("--text", type=Path, default=DEFAULT_TEXT,
                        help="char-LM corpus (default: shared tiny Shakespeare)")
    parser.add_argument("--tasks", nargs="+", default=tasks, choices=tasks)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every run's steps (0.05 for a smoke run)")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel, one thread each")
    args = parser.parse_args(argv)
    if "charlm" in args.tasks and not args.text.is_file():
        parser.error(f"{args.text}: no such text file; pass --text or leave out charlm with --tasks")
    return args


def run_all(todo: list[tuple[RunConfig, Path | None]], processes: int) -> tuple[list[dict], list[dict]]:
    """Every run's summary row and the two-RNN evaluation rows, printing a line per finished run."""
    rows, curves = [], []
    with contextlib.ExitStack() as stack:
        if processes > 1:
            pool = stack.enter_context(multiprocessing.get_context("spawn").Pool(processes))
            outputs = pool.imap(run_one, todo)
        else:
            outputs = map(run_one, todo)
        for row, curve in outputs:
            rows.append(row)
            curves.extend(curve)
            print(_line(row), flush=True)
    return rows, curves


def write_tables(results: pd.DataFrame, curves: list[dict], args: argparse.Namespace) -> tuple[list[str], list[Path]]:
    """The markdown tables and the figures of whatever tasks ran; writes two_rnn_metrics.csv."""
    figures, tables = [], []
    single = results[results.task != "two-rnn"]
    if len(single):
        figures += plot_rnn_tables(single, args.figures / "rnn_tables")
        if {"copy", "repeat-copy"} & set(single.task):
            tables += ["Longest sequence length solved (higher is better):", "", longest_solved_table(single), ""]
        if "charlm" in set(single.task):
            tables += ["Validation bits per character (lower is better):", "", bpc_table(single), ""]
    if curves:
        two = pd.DataFrame(curves)
        atomic_write_text(args.out / "two_rnn_metrics.csv", two.to_csv(index=False))
        chance = majority_rate_b(BUDGET["two-rnn"]["tick_ratio"])
        figures += plot_two_rnn(two, args.figures / "two_rnn", chance_b=chance)
        tables += ["Two RNNs, held-out accuracy at the end of training:", "", two_rnn_table(results), ""]
    return tables, figures


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write its tables, figures and records."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    configs = jobs(args.tasks, args.text, args.scale)
    todo = [(config, args.runs / run_name(config) if args.runs else None) for config in configs]
    print(f"{len(todo)} runs, {args.jobs} at a time")
    start = time.perf_counter()
    rows, curves = run_all(todo, args.jobs)
    wall = time.perf_counter() - start
    results = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "results.csv", results.to_csv(index=False))
    tables, figures = write_tables(results, curves, args)
    cpu, busy = float(results.cpu_s.sum()), float(results.train_time_s.sum())
    tables += [
        f"{len(rows)} runs: {cpu / 60:.1f} minutes of process CPU time in all (one thread per run); "
        f"{busy / 60:.1f} minutes of per-run wall time; {wall / 60:.1f} minutes end to end with --jobs {args.jobs}."
    ]
    atomic_write_text(args.out / "tables.md", "\n".join(tables) + "\n")
    atomic_write_json(args.out / "benchmark.json", {
        "command": command_line(argv), "budget": BUDGET, "scale": args.scale, "truncations": TRUNCATIONS,
        "text": str(args.text), "runs": len(rows), "cpu_time_s_total": cpu, "train_time_s_total": busy,
        "wall_time_s": wall, "jobs": args.jobs, "figures": [str(p) for p in figures], "provenance": provenance(),
    })
    print("\n".join(tables))
    return 0


def _line(row: dict[str, Any]) -> str:
    task, times = row["task"], f"({row['train_time_s']:.0f} s, {row['cpu_s']:.0f} s CPU)"
    if task == "two-rnn":
        return f"two-rnn {row['method']:8s} A {row['test_accuracy_a']:.3f}  B {row['test_accuracy_b']:.3f}  {times}"
    value = f"longest solved {row['longest_solved']}" if task != "charlm" else f"valid BPC {row['valid_bpc']:.3f}"
    return f"{task:11s} {METHOD_NAMES[row['method']]:7s} T={row['truncation']}  {value}  {times}"


if __name__ == "__main__":
    sys.exit(main())
