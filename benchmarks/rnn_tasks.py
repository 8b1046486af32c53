"""Recurrent DNI at a small, stated budget: copy / repeat-copy / char-LM tables and the two-RNN figure.

    python benchmarks/rnn_tasks.py                         # everything, ~20 min of one CPU core
    python benchmarks/rnn_tasks.py --jobs 2                # the same runs, two at a time
    python benchmarks/rnn_tasks.py --scale 0.05 --out /tmp/rnn-smoke   # a quick smoke run

For every task in Copy, Repeat Copy and character-level LM, every ``T`` in 2, 3, 4, 5, 8 and
every method in BPTT, DNI, DNI+Aux it trains one run (seed 0) at the budget in ``BUDGET`` and
records the paper's number: the longest sequence length solved (copy tasks, curriculum on
``N``) or validation bits per character (LM). Then it trains the two-RNN system four ways (DNI
with and without the target as synthesizer context, the true gradient from B, no gradient from
B) and plots both networks' held-out accuracy over training.

Writes into ``--out`` (default ``docs/results/rnn_tasks``): ``results.csv`` (one row per run),
``two_rnn_metrics.csv`` (the figure's data: held-out accuracy over training), ``tables.md`` and ``benchmark.json`` (budget,
commands, provenance, wall and CPU time), and the figures into ``--figures``
(default ``docs/figures/rnn``). Every run uses one torch thread.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from analysis.rnn_figures import bpc_table, longest_solved_table, plot_rnn_tables, plot_two_rnn, two_rnn_table  # noqa: E402
from sglab.io import atomic_write_json, atomic_write_text, provenance  # noqa: E402
from sglab.rnn.bptt import METHODS, BPTTConfig  # noqa: E402
from sglab.rnn.runs import CharLMRunConfig, CopyRunConfig, train_charlm, train_copy  # noqa: E402
from sglab.rnn.two_rnn import TwoRNNConfig, majority_rate_b, train_two_rnn  # noqa: E402

TRUNCATIONS = (2, 3, 4, 5, 8)
DEFAULT_TEXT = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"

#: The budget of every run (steps are multiplied by ``--scale``). The paper trains far longer,
#: with 256-unit LSTMs and 8-bit vectors; here everything is sized to fit ~20 CPU-core minutes.
BUDGET: dict[str, dict[str, Any]] = {
    "copy": dict(steps=2000, bits=2, hidden=64, batch_size=32, max_length=40, lr=1e-2),
    "repeat-copy": dict(steps=1500, bits=2, max_repeats=3, hidden=64, batch_size=32, max_length=40, lr=1e-2),
    "charlm": dict(steps=150, hidden=128, batch_size=64, seq_len=64, eval_every=50, lr=3e-3),
    "two-rnn": dict(steps=1000, tick_ratio=4, b_ticks=3, batch_size=32, eval_every=50, lr=3e-3),
}
#: The two-RNN variants: (label, method, synthesizer sees B's target).
TWO_RNN_VARIANTS = (("dni", "dni", True), ("dni-nocontext", "dni", False), ("bptt", "bptt", True), ("none", "none", True))


def _steps(budget: dict[str, Any], scale: float) -> int:
    return max(1, int(round(budget["steps"] * scale)))


def jobs(tasks: list[str], text: Path, scale: float) -> list[tuple[str, str, Any]]:
    """Every run: ``(task, label, config)``."""
    found = []
    for task in ("copy", "repeat-copy"):
        if task in tasks:
            b = BUDGET[task]
            for t in TRUNCATIONS:
                for method in METHODS:
                    training = BPTTConfig(method=method, truncation=t, lr=b["lr"])
                    config = CopyRunConfig(
                        repeat=task == "repeat-copy",
                        bits=b["bits"],
                        max_repeats=b.get("max_repeats", 3),
                        max_length=b["max_length"],
                        hidden=b["hidden"],
                        batch_size=b["batch_size"],
                        steps=_steps(b, scale),
                        training=training,
                    )
                    found.append((task, method, config))
    if "charlm" in tasks:
        b = BUDGET["charlm"]
        for t in TRUNCATIONS:
            for method in METHODS:
                config = CharLMRunConfig(
                    text=str(text),
                    seq_len=b["seq_len"],
                    eval_every=b["eval_every"],
                    hidden=b["hidden"],
                    batch_size=b["batch_size"],
                    steps=_steps(b, scale),
                    training=BPTTConfig(method=method, truncation=t, lr=b["lr"]),
                )
                found.append(("charlm", method, config))
    if "two-rnn" in tasks:
        b = BUDGET["two-rnn"]
        base = TwoRNNConfig(tick_ratio=b["tick_ratio"], b_ticks=b["b_ticks"], batch_size=b["batch_size"], eval_every=b["eval_every"], lr=b["lr"], steps=_steps(b, scale))
        for label, method, context in TWO_RNN_VARIANTS:
            found.append(("two-rnn", label, replace(base, method=method, synth_context=context)))
    return found


def run_one(job: tuple[str, str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Train one run on one thread; its summary row and (two-RNN only) its metric rows."""
    torch.set_num_threads(1)
    task, label, config = job
    # Process CPU time, unlike the runs' wall-clock train_time_s, hardly depends on how busy a
    # shared machine is: it is the number the budget is stated in.
    cpu_start = time.process_time()
    if task == "two-rnn":
        output = train_two_rnn(config)
        metrics = [{**row, "variant": label} for row in output.metrics if row["split"] == "test"]  # the figure's rows
        return {**output.summary, "variant": label, "truncation": None, "cpu_s": time.process_time() - cpu_start}, metrics
    train = train_charlm if task == "charlm" else train_copy
    output = train(config)
    return {**output.summary, "variant": label, "cpu_s": time.process_time() - cpu_start}, []


def command_line(argv: list[str]) -> str:
    """The command as typed (for the docs and benchmark.json)."""
    return "python benchmarks/rnn_tasks.py" + "".join(f" {a}" for a in argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write its tables, figures and records."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "rnn_tasks")
    parser.add_argument("--figures", type=Path, default=ROOT / "docs" / "figures" / "rnn")
    parser.add_argument("--text", type=Path, default=DEFAULT_TEXT, help="char-LM corpus (default: shared tiny Shakespeare)")
    parser.add_argument("--tasks", nargs="+", default=["copy", "repeat-copy", "charlm", "two-rnn"], choices=["copy", "repeat-copy", "charlm", "two-rnn"])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every run's steps (0.05 for a smoke run)")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel, one thread each")
    args = parser.parse_args(argv)
    if "charlm" in args.tasks and not args.text.is_file():
        parser.error(f"{args.text}: no such text file; pass --text or leave out charlm with --tasks")
    todo = jobs(args.tasks, args.text, args.scale)
    print(f"{len(todo)} runs, {args.jobs} at a time")
    start = time.perf_counter()
    rows, curves = [], []
    if args.jobs > 1:
        with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
            outputs = pool.imap(run_one, todo)
            for job, (row, metrics) in zip(todo, outputs):
                rows.append(row)
                curves.extend(metrics)
                print(_line(row), flush=True)
    else:
        for job in todo:
            row, metrics = run_one(job)
            rows.append(row)
            curves.extend(metrics)
            print(_line(row), flush=True)
    wall = time.perf_counter() - start
    results = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "results.csv", results.to_csv(index=False))
    figures = []
    tables = []
    if {"copy", "repeat-copy", "charlm"} & set(results.task):
        single = results[results.task != "two-rnn"]
        figures += plot_rnn_tables(single, args.figures / "rnn_tables")
        if {"copy", "repeat-copy"} & set(single.task):
            tables += ["Longest sequence length solved (higher is better):", "", longest_solved_table(single), ""]
        if "charlm" in set(single.task):
            tables += ["Validation bits per character (lower is better):", "", bpc_table(single), ""]
    if curves:
        two = pd.DataFrame(curves)
        atomic_write_text(args.out / "two_rnn_metrics.csv", two.to_csv(index=False))
        chance = majority_rate_b(TwoRNNConfig(tick_ratio=BUDGET["two-rnn"]["tick_ratio"]))
        figures += plot_two_rnn(two, args.figures / "two_rnn", chance_b=chance)
        tables += ["Two RNNs, held-out accuracy at the end of training:", "", two_rnn_table(results), ""]
    cpu, busy = float(results.cpu_s.sum()), float(results.train_time_s.sum())
    tables += [
        f"{len(rows)} runs: {cpu / 60:.1f} minutes of process CPU time in all (one thread per run); "
        f"{busy / 60:.1f} minutes of per-run wall time; {wall / 60:.1f} minutes end to end with --jobs {args.jobs}."
    ]
    atomic_write_text(args.out / "tables.md", "\n".join(tables) + "\n")
    atomic_write_json(
        args.out / "benchmark.json",
        {
            "command": command_line(argv),
            "budget": BUDGET,
            "scale": args.scale,
            "truncations": TRUNCATIONS,
            "text": str(args.text),
            "runs": len(rows),
            "cpu_time_s_total": cpu,
            "train_time_s_total": busy,
            "wall_time_s": wall,
            "jobs": args.jobs,
            "figures": [str(p) for p in figures],
            "provenance": provenance(),
        },
    )
    print("\n".join(tables))
    return 0


def _line(row: dict[str, Any]) -> str:
    task = row["task"]
    if task == "two-rnn":
        return f"two-rnn {row['variant']:14s} A {row['test_accuracy_a']:.3f}  B {row['test_accuracy_b']:.3f}  ({row['train_time_s']:.0f} s, {row['cpu_s']:.0f} s CPU)"
    value = f"longest solved {row['longest_solved']}" if task != "charlm" else f"valid BPC {row['valid_bpc']:.3f}"
    return f"{task:11s} {row['method']:7s} T={row['truncation']}  {value}  ({row['train_time_s']:.0f} s, {row['cpu_s']:.0f} s CPU)"


if __name__ == "__main__":
    sys.exit(main())
