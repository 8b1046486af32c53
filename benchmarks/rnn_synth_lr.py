"""Choose the copy tasks' synthesizer learning rate on a seed the tables never use.

    python benchmarks/rnn_synth_lr.py --tasks copy repeat-copy --synth-lrs 3e-6 3e-5 3e-4 1e-3 3e-3 \
        --jobs 2 --out docs/results/rnn_synth_lr

For every task, it trains BPTT once and DNI once per synthesizer learning rate at the paper
preset's budget (``benchmarks/rnn_tasks.py``'s ``PAPER_BUDGET``: 8-bit vectors, 256-unit LSTM)
with one truncation ``-T`` (3) and one ``--seed`` (100: the tables report seeds 0, 1, 2, so the
choice is not made on the runs it is reported with). The copy tasks draw fresh sequences every
step, so a run's own curriculum is its validation. Ranked by the longest length solved, then the
length it was training on at the end, then the mean bit errors per sequence over its last 500
steps (lower: closer to solving it); the step each length was first trained at is listed too.
Writes ``selection.csv``, ``selection.md`` and ``benchmark.json`` (command, budget, provenance)
into ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
from rnn_tasks import PAPER_BUDGET, ROOT, command_line, run_budget, run_name, run_one  # benchmarks/ is this script's sys.path[0]

# rnn_tasks put the checkout on sys.path, so sglab imports without being installed
from sglab.executors import open_executor
from sglab.io import atomic_write_json, atomic_write_text, provenance
from sglab.training import CopyConfig

#: Steps averaged for the tie-breaking bit errors.
TAIL_STEPS = 500


def configs(tasks: list[str], synth_lrs: list[float], truncation: int, seed: int,
            steps: int | None = None) -> list[CopyConfig]:
    """BPTT and DNI at every synthesizer learning rate, per task (``steps``: the preset's unless given)."""
    found = []
    for task in tasks:
        base = CopyConfig(method="nobprop", truncation=truncation, repeat=task == "repeat-copy", seed=seed,
                          device="cpu", **run_budget("paper", task, 1.0, "nobprop"))
        base = replace(base, steps=steps or base.steps)
        dni = replace(base, method="dni")
        found += [base] + [replace(dni, synth_lr=lr) for lr in synth_lrs]
    return found


def learning_record(run_dir: Path) -> dict:
    """The step each length was first trained at and the mean bit errors of the last steps."""
    metrics = pd.read_csv(run_dir / "metrics.csv")
    train = metrics[metrics.kind == "train"]
    first = train.groupby("length").step.min()
    return {"reached_last_length_at": int(first.iloc[-1]),
            "tail_bit_errors": float(train.bit_errors.tail(TAIL_STEPS).mean()),
            "first_step_per_length": " ".join(f"{n}:{s}" for n, s in first.items())}


def select_one(job: tuple[CopyConfig, Path]) -> dict:
    """Train (or read back) one run of the grid, in the worker that holds its directory; its table row."""
    config, run_dir = job
    row, _ = run_one(job)
    return {"task": config.task_name, "method": config.method,
            "synth_lr": config.synth_lr if config.method == "dni" else None,
            "longest_solved": row["longest_solved"], "final_length": row["final_length"],
            **learning_record(run_dir), "cpu_s": round(row["cpu_s"], 1)}


def ranked(table: pd.DataFrame) -> pd.DataFrame:
    """Each task's runs, best first: longest length solved, then length reached, then fewest tail bit errors."""
    return table.sort_values(["task", "longest_solved", "final_length", "tail_bit_errors"],
                             ascending=[True, False, False, True])


def main(argv: list[str] | None = None) -> int:
    """Train the grid and write the ranked table."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["copy", "repeat-copy"], choices=["copy", "repeat-copy"])
    parser.add_argument("--synth-lrs", nargs="+", type=float, default=[3e-6, 3e-5, 3e-4, 1e-3, 3e-3])
    parser.add_argument("-T", "--truncation", type=int, default=3)
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--steps", type=int, default=None, help="steps per run (default: the paper preset's)")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel, one thread each")
    parser.add_argument("--scheduler-address", default=None,
                        help="run on this dask.distributed scheduler instead of a local process pool")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "rnn-synth-lr",
                        help="run directories (kept: a rerun reuses the finished ones)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "rnn_synth_lr")
    args = parser.parse_args(argv)
    todo = [(config, args.runs / _dir_name(config)) for config in
            configs(args.tasks, args.synth_lrs, args.truncation, args.seed, args.steps)]
    with open_executor(args.jobs, args.scheduler_address) as pool:
        table = ranked(pd.DataFrame(list(pool.map(select_one, todo))))
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "selection.csv", table.to_csv(index=False))
    atomic_write_text(args.out / "selection.md", table.to_markdown(index=False, floatfmt="g") + "\n")
    atomic_write_json(args.out / "benchmark.json", {
        "command": command_line(argv, "rnn_synth_lr.py"), "truncation": args.truncation,
        "seed": args.seed, "budget": {task: PAPER_BUDGET[task] for task in args.tasks}, "provenance": provenance()})
    print(table.to_string(index=False))
    return 0


def _dir_name(config: CopyConfig) -> str:
    """A run's directory: the benchmark's name, and the synthesizer's lr where it has one."""
    return run_name(config) + (f"-slr{config.synth_lr:g}" if config.method == "dni" else "")


if __name__ == "__main__":
    sys.exit(main())
