"""Reproduce the MNIST rows of Table 1 of Jaderberg et al. (2016) at a stated budget.

    python benchmarks/paper_table.py --data-dir ../shared/data --steps 5000 --out docs/results/paper_table

trains FCN-{3,4,5,6} (and CNN-3 with ``--cnn``) with No Bprop, Bprop, DNI and cDNI, through a
process pool (one thread per run), and writes ``runs.csv`` (one row per run, with wall time),
``table.md`` (our test errors next to the paper's) and ``provenance.json``. Each finished run
leaves ``runs/<name>/table_row.json``, so an interrupted table resumes where it stopped.
The paper trained 500k steps (Adam, batch 256, lr 3e-5 ÷10 at 300k and 400k); pass
``--steps`` and ``--lr`` to choose the budget, which the outputs record.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

from analysis.learning_curves import load_runs, plot_learning_curves
from sglab.io import atomic_write_json, atomic_write_text, provenance
from sglab.training.config import ClassifyConfig

#: Table 1 of the paper, MNIST % test error (from ../shared/reference, the slides' copy).
PAPER_MNIST = {
    ("fcn", 3): {"nobprop": 9.3, "bprop": 2.0, "dni": 1.9, "cdni": 2.2},
    ("fcn", 4): {"nobprop": 12.6, "bprop": 1.8, "dni": 2.2, "cdni": 1.9},
    ("fcn", 5): {"nobprop": 16.2, "bprop": 1.8, "dni": 3.4, "cdni": 1.7},
    ("fcn", 6): {"nobprop": 21.4, "bprop": 1.8, "dni": 4.3, "cdni": 1.6},
    ("cnn", 3): {"nobprop": 0.9, "bprop": 0.8, "dni": 0.9, "cdni": 1.0},
    ("cnn", 4): {"nobprop": 2.8, "bprop": 0.6, "dni": 0.7, "cdni": 0.8},
}
METHODS = ("nobprop", "bprop", "dni", "cdni")


def run_one(config: ClassifyConfig, out_dir: str) -> dict:
    """Train one configuration in this (worker) process; returns its table row."""
    from sglab.training.loop import train

    torch.set_num_threads(1)
    started = time.perf_counter()
    result = train(config, out_dir, progress=False)
    summary = result.summary
    row = {
        "model": config.model,
        "layers": config.layers,
        "method": config.method,
        "steps": config.steps,
        "test_error_%": 100 * summary["final_test_error"],
        "best_test_error_%": 100 * summary["best_test_error"],
        "train_error_%": 100 * summary["final_train_error"],
        "paper_test_error_%": PAPER_MNIST[(config.model, config.layers)][config.method],
        "train_time_s": summary["train_time_s"],
        "wall_time_s": time.perf_counter() - started,
        "status": summary["status"],
    }
    atomic_write_json(Path(out_dir) / "table_row.json", row)
    return row


def finished_row(config: ClassifyConfig, out_dir: Path) -> dict | None:
    """The row of a run this script already finished at the same budget (so reruns resume)."""
    path = out_dir / "table_row.json"
    if not path.exists():
        return None
    row = json.loads(path.read_text())
    return row if row["steps"] == config.steps and row["status"] == "completed" else None


def configs(args: argparse.Namespace) -> list[ClassifyConfig]:
    """Every run of the table at the requested budget."""
    base = ClassifyConfig(
        dataset=args.dataset,
        data_dir=args.data_dir,
        batch_size=256,
        steps=args.steps,
        lr=args.lr,
        eval_every=max(args.steps // 10, 1),
        log_every=50,
        synth_hidden_layers=args.synth_hidden_layers,
        seed=args.seed,
        device="cpu",
    )
    models = [("fcn", layers) for layers in args.layers] + ([("cnn", 3)] if args.cnn else [])
    return [
        replace(base, model=model, layers=layers, method=method, steps=args.cnn_steps if model == "cnn" else args.steps)
        for model, layers in models
        for method in METHODS
    ]


def markdown_table(runs: pd.DataFrame) -> str:
    """Our % test error beside the paper's, one row per model, as in Table 1."""
    rows = []
    for (model, layers), group in runs.groupby(["model", "layers"], sort=False):
        row = {"model": f"{model.upper()}-{layers}", "steps": int(group["steps"].iloc[0])}
        for _, run in group.iterrows():
            row[run["method"]] = f"{run['test_error_%']:.1f} ({run['paper_test_error_%']:.1f})"
        row["training time (s)"] = f"{group['train_time_s'].sum():.0f}"
        rows.append(row)
    return pd.DataFrame(rows).to_markdown(index=False)


def main(argv: list[str] | None = None) -> None:
    """Run the table and write its files."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None, help="folder with MNIST (IDX .gz files or mnist.npz)")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--cnn", action="store_true", help="also CNN-3 (slow on CPU)")
    parser.add_argument("--cnn-steps", type=int, default=500)
    parser.add_argument("--layers", type=int, nargs="+", default=[3, 4, 5, 6])
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--synth-hidden-layers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("docs/results/paper_table"))
    args = parser.parse_args(argv)

    todo = configs(args)
    started = time.perf_counter()
    results = {}
    with cf.ProcessPoolExecutor(args.workers) as pool:
        futures = {}
        for i, config in enumerate(todo):
            run_dir = args.out / "runs" / f"{config.model}{config.layers}-{config.method}"
            done = finished_row(config, run_dir)
            if done:
                results[i] = done
            else:
                futures[pool.submit(run_one, config, str(run_dir))] = i
        for future in tqdm(cf.as_completed(futures), total=len(futures), desc="paper table", unit="run"):
            results[futures[future]] = future.result()
    runs = pd.DataFrame([results[i] for i in range(len(todo))])
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "runs.csv", runs.to_csv(index=False))
    figure_runs = [args.out / "runs" / f"{c.model}{c.layers}-{c.method}" for c in todo]
    plot_learning_curves(load_runs(figure_runs), args.out / "learning_curves", hue="method", style="layers")
    table = markdown_table(runs)
    atomic_write_text(args.out / "table.md", table + "\n")
    record = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "wall_time_s": time.perf_counter() - started,
        "runs_trained_by_this_invocation": len(futures),
        "runs_reused_from_earlier_invocations": len(todo) - len(futures),
    }
    atomic_write_json(args.out / "provenance.json", {**record, **provenance()})
    print(table)


if __name__ == "__main__":
    main()
