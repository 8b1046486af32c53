"""Recurrent DNI at a stated budget: copy / repeat-copy / char-LM tables and the two-RNN figure.

    python benchmarks/rnn_tasks.py --jobs 2                # the small preset, about 10 CPU-minutes
    python benchmarks/rnn_tasks.py --preset paper --seeds 3 --tasks copy repeat-copy charlm --jobs 2 \
        --runs runs/rnn-paper --out docs/results/rnn_tasks_paper --figures docs/figures/rnn_paper
    python benchmarks/rnn_tasks.py --scale 0.05 --out /tmp/rnn-smoke --figures /tmp/rnn-smoke   # a quick smoke run

For every task in Copy, Repeat Copy and character-level LM, every ``T`` in 2, 3, 4, 5, 8,
every recurrent method (``nobprop``: truncated BPTT, shown as BPTT; ``dni``; ``dni-aux``,
shown as DNI+Aux) and every seed of ``--seeds`` it trains one run at the preset's budget
(``PRESETS``) with :func:`sglab.training.train` and records the paper's number: the longest
sequence length solved (copy tasks, curriculum on ``N``) or validation bits per character
(LM). Then it trains the two-RNN system four ways (``cdni``: the synthesizer sees B's target;
``dni``: the message only; ``bprop``: the true gradient from B; ``nobprop``: no gradient from B)
and plots both networks' held-out accuracy over training. Presets: ``small`` (2-bit vectors,
64-unit LSTMs; what docs/rnn.md's first tables were made with) and ``paper`` (8-bit vectors and
256-unit LSTMs as in the paper, at a budget a laptop can give).

Runs go to a process pool of ``--jobs`` processes, one torch thread each, or to a
``dask.distributed`` cluster with ``--scheduler-address``. Writes into ``--out``:
``results.csv`` (one row per run: its summary, seed and process CPU time),
``two_rnn_metrics.csv`` (the figure's data), ``tables.md`` (mean ± sample sd over seeds) and
``benchmark.json`` (preset, budget, command, provenance, wall and CPU time), and the figures
into ``--figures``. Each run's directory (config, metrics, checkpoint) is temporary unless
``--runs`` keeps them; a kept run that finished at the same config is not trained again, so an
interrupted benchmark resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import as_completed
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
from sglab.executors import open_executor  # noqa: E402
from sglab.io import atomic_write_json, atomic_write_text, provenance  # noqa: E402
from sglab.methods import get_method  # noqa: E402
from sglab.tasks.two_rnn import majority_rate_b  # noqa: E402
from sglab.training import CharLMConfig, CopyConfig, RunConfig, TwoRNNConfig, train  # noqa: E402

TRUNCATIONS = (2, 3, 4, 5, 8)
#: The single-RNN methods, in table order.
RECURRENT_METHODS = tuple(METHOD_NAMES)
#: How B's gradient reaches A, in table order.
TWO_RNN_METHODS = ("cdni", "dni", "bprop", "nobprop")
DEFAULT_TEXT = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"

#: The small preset: every run sized so that all 49 take about 10 CPU-core minutes.
BUDGET: dict[str, dict[str, Any]] = {
    "copy": dict(steps=2000, bits=2, hidden=64, batch_size=32, max_length=40, lr=1e-2),
    "repeat-copy": dict(steps=1500, bits=2, max_repeats=3, hidden=64, batch_size=32, max_length=40, lr=1e-2),
    "charlm": dict(steps=150, hidden=128, batch_size=64, seq_len=64, eval_every=50, lr=3e-3),
    "two-rnn": dict(steps=1000, tick_ratio=4, b_ticks=3, batch_size=32, eval_every=50, lr=3e-3),
}
#: The paper's data and network size (8-bit vectors, 256-unit LSTMs) at a budget far below its
#: own; steps are what a 2-core machine gives three seeds of every cell in one to two hours.
#: ``synth_lr`` is chosen per task (docs/rnn.md). Char-LM: 3e-6, the best of 3e-6, 1e-5, 3e-5,
#: 1e-4 on validation BPC (T = 3 and 8, seed 0). Adam moves each weight of the linear synthesizer
#: by about its lr per step, so its output moves by about lr x 512 inputs x the state's size: at
#: the network's 3e-3 that overshoots targets of rms 0.01-0.14 many times over, the overshoot
#: drives the cell state up, and the run diverges. Copy 3e-3 and Repeat Copy 1e-3: the best of
#: 3e-6 .. 3e-3 on seed 100, T = 3 (benchmarks/rnn_synth_lr.py, docs/results/rnn_synth_lr); at
#: char-LM's 3e-6 the synthesizer learnt nothing there either.
PAPER_BUDGET: dict[str, dict[str, Any]] = {
    "copy": dict(steps=4000, bits=8, hidden=256, batch_size=32, max_length=64, lr=3e-3, synth_lr=3e-3),
    "repeat-copy": dict(steps=4000, bits=8, max_repeats=3, hidden=256, batch_size=32, max_length=64, lr=3e-3,
                        synth_lr=1e-3),
    "charlm": dict(steps=200, hidden=256, batch_size=32, seq_len=64, eval_every=100, eval_chars=20000, lr=3e-3,
                   synth_lr=3e-6),
    "two-rnn": BUDGET["two-rnn"],
}
PRESETS = {"small": BUDGET, "paper": PAPER_BUDGET}


#: Budget fields that only a method with a synthesizer reads (left out of the others' configs,
#: so that their runs stay the same runs).
SYNTH_FIELDS = ("synth_lr",)


def run_budget(preset: str, task: str, scale: float, method: str) -> dict[str, Any]:
    """The preset's budget of ``task`` for ``method``, its steps scaled (at least one)."""
    budget = dict(PRESETS[preset][task])
    budget["steps"] = max(1, int(round(budget["steps"] * scale)))
    if not get_method(method).synthetic_gradients:
        for name in SYNTH_FIELDS:
            budget.pop(name, None)
    return budget


def jobs(tasks: list[str], text: Path, scale: float, seeds: int = 1, preset: str = "small") -> list[RunConfig]:
    """Every run's config, in table order (seeds innermost)."""
    found: list[RunConfig] = []
    for task in ("copy", "repeat-copy"):
        if task in tasks:
            found += [CopyConfig(method=m, truncation=t, repeat=task == "repeat-copy", seed=s, device="cpu",
                                 **run_budget(preset, task, scale, m))
                      for t in TRUNCATIONS for m in RECURRENT_METHODS for s in range(seeds)]
    if "charlm" in tasks:
        found += [CharLMConfig(method=m, truncation=t, text=str(text), seed=s, device="cpu",
                               **run_budget(preset, "charlm", scale, m))
                  for t in TRUNCATIONS for m in RECURRENT_METHODS for s in range(seeds)]
    if "two-rnn" in tasks:
        found += [TwoRNNConfig(method=m, seed=s, device="cpu", **run_budget(preset, "two-rnn", scale, m))
                  for m in TWO_RNN_METHODS for s in range(seeds)]
    return found


def run_name(config: RunConfig) -> str:
    """A run's directory name under ``--runs``."""
    name = f"two-rnn-{config.method}" if config.task == "two-rnn" else \
        f"{config.task_name}-{config.method}-T{config.truncation}"
    return f"{name}-s{config.seed}"


ROW_FILE = "benchmark_row.json"


def run_one(job: tuple[RunConfig, Path | None]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Train one run on one thread; its summary row and (two-RNN only) its evaluation rows.

    A kept run directory that already holds this config's finished row is read, not retrained.
    """
    torch.set_num_threads(1)
    config, keep = job
    done = _finished(config, keep)
    if done is not None:
        return done
    # Process CPU time, unlike the runs' wall-clock train_time_s, hardly depends on how busy a
    # shared machine is: it is the number the budget is stated in.
    cpu_start = time.process_time()
    with tempfile.TemporaryDirectory(prefix="sglab-rnn-") as scratch:
        result = train(config, keep or scratch, progress=False)
    row = {**result.summary, "seed": config.seed, "cpu_s": time.process_time() - cpu_start}
    curve = [] if config.task != "two-rnn" else \
        [{**r, "method": config.method, "seed": config.seed} for r in result.metrics if r["kind"] == "eval"]
    if keep is not None:
        atomic_write_json(keep / ROW_FILE, {"config": config.to_dict(), "row": row, "curve": curve})
    return row, curve


def _finished(config: RunConfig, keep: Path | None) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """The row and curve a kept run of exactly this config left, or None."""
    path = keep / ROW_FILE if keep is not None else None
    if path is None or not path.is_file():
        return None
    saved = json.loads(path.read_text())
    same = saved["config"] == json.loads(json.dumps(config.to_dict(), default=str))
    return (saved["row"], saved["curve"]) if same else None


def command_line(argv: list[str], script: str = "rnn_tasks.py") -> str:
    """The command as typed (for the docs and benchmark.json)."""
    return f"python benchmarks/{script}" + "".join(f" {a}" for a in argv)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The benchmark's options."""
    tasks = ["copy", "repeat-copy", "charlm", "two-rnn"]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "rnn_tasks")
    parser.add_argument("--figures", type=Path, default=ROOT / "docs" / "figures" / "rnn")
    parser.add_argument("--runs", type=Path, default=None,
                        help="keep every run's directory under this one (and resume from it)")
    parser.add_argument("--text", type=Path, default=DEFAULT_TEXT,
                        help="char-LM corpus (default: shared tiny Shakespeare)")
    parser.add_argument("--tasks", nargs="+", default=tasks, choices=tasks)
    parser.add_argument("--preset", default="small", choices=sorted(PRESETS),
                        help="small: 2-bit vectors, 64-unit LSTMs; paper: 8-bit vectors, 256-unit LSTMs")
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 of every cell")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every run's steps (0.05 for a smoke run)")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel, one thread each")
    parser.add_argument("--scheduler-address", default=None,
                        help="run on this dask.distributed scheduler instead of a local process pool")
    args = parser.parse_args(argv)
    if "charlm" in args.tasks and not args.text.is_file():
        parser.error(f"{args.text}: no such text file; pass --text or leave out charlm with --tasks")
    if args.seeds < 1 or args.jobs < 1:
        parser.error("--seeds and --jobs must be >= 1")
    return args


def run_all(todo: list[tuple[RunConfig, Path | None]], processes: int,
            scheduler_address: str | None = None) -> tuple[list[dict], list[dict]]:
    """Every run's summary row (in ``todo``'s order) and the two-RNN evaluation rows, printing a
    line per finished run."""
    results: dict[int, tuple[dict, list[dict]]] = {}
    if processes == 1 and not scheduler_address:  # in this process: no pool to start (and tests can patch it)
        for i, job in enumerate(todo):
            results[i] = run_one(job)
            print(_line(results[i][0]), flush=True)
    else:
        with open_executor(processes, scheduler_address) as pool:
            futures = {pool.submit(run_one, job): i for i, job in enumerate(todo)}
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                print(_line(results[futures[future]][0]), flush=True)
    rows = [results[i][0] for i in range(len(todo))]
    curves = [r for i in range(len(todo)) for r in results[i][1]]
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
        chance = majority_rate_b(PRESETS[args.preset]["two-rnn"]["tick_ratio"])
        figures += plot_two_rnn(two, args.figures / "two_rnn", chance_b=chance)
        tables += ["Two RNNs, held-out accuracy at the end of training:", "", two_rnn_table(results), ""]
    return tables, figures


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write its tables, figures and records."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    configs = jobs(args.tasks, args.text, args.scale, args.seeds, args.preset)
    todo = [(config, args.runs / run_name(config) if args.runs else None) for config in configs]
    print(f"{len(todo)} runs, {args.jobs} at a time" if not args.scheduler_address
          else f"{len(todo)} runs on the dask scheduler at {args.scheduler_address}")
    start = time.perf_counter()
    rows, curves = run_all(todo, args.jobs, args.scheduler_address)
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
        "command": command_line(argv), "preset": args.preset, "budget": PRESETS[args.preset], "scale": args.scale,
        "seeds": list(range(args.seeds)), "truncations": TRUNCATIONS,
        "text": str(args.text), "runs": len(rows), "cpu_time_s_total": cpu, "train_time_s_total": busy,
        "wall_time_s": wall, "jobs": args.jobs, "figures": [str(p) for p in figures], "provenance": provenance(),
    })
    print("\n".join(tables))
    return 0


def _line(row: dict[str, Any]) -> str:
    task, times = row["task"], f"({row['train_time_s']:.0f} s, {row['cpu_s']:.0f} s CPU)"
    if task == "two-rnn":
        accuracies = f"A {row['test_accuracy_a']:.3f}  B {row['test_accuracy_b']:.3f}"
        return f"two-rnn {row['method']:8s} seed {row['seed']} {accuracies}  {times}"
    value = f"longest solved {row['longest_solved']}" if task != "charlm" else f"valid BPC {row['valid_bpc']:.3f}"
    return f"{task:11s} {METHOD_NAMES[row['method']]:7s} T={row['truncation']} seed {row['seed']}  {value}  {times}"


if __name__ == "__main__":
    sys.exit(main())
