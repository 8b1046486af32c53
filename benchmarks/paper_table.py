"""Reproduce the MNIST and CIFAR-10 rows of Table 1 of Jaderberg et al. (2016) at a stated budget.

    python benchmarks/paper_table.py --data-dir ../shared/data --steps 5000 --out docs/results/paper_table
    python benchmarks/paper_table.py --data-dir ../shared/data --dataset cifar10 --layers 3 --seeds 0,1,2 \
        --steps 5000 --out docs/results/paper_table_cifar10

trains FCN-{3,4,5,6} (and CNN-3, or ``--cnn-layers``, with ``--cnn``) with No Bprop, Bprop, DNI and cDNI for each of
``--seeds``, through a process pool (one thread per run; a dask cluster with ``--scheduler-address``),
and writes ``runs.csv`` (one row per run, with wall time), ``table.md`` (our test errors, mean ± sample sd over the seeds, next to
the paper's) and ``provenance.json``; with ``--validation`` each run also scores a held-out
part of the training set (``val_error_%``), on which to choose settings. Each finished run leaves ``runs/<name>/table_row.json``,
so an interrupted table resumes where it stopped. ``--combine a/runs.csv b/runs.csv --out c`` trains nothing
and writes one table from tables run separately (say, one depth at a time).
The paper trained 500k steps (Adam, batch 256, lr 3e-5 ÷10 at 300k and 400k); pass
``--steps``, ``--lr``, ``--lr-milestones`` and ``--synth-lr`` to choose the budget and schedule, which the
outputs record.
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
from analysis.tables import mean_sd
from sglab.executors import open_executor
from sglab.io import atomic_write_json, atomic_write_text, provenance
from sglab.methods import get_method
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
#: The CIFAR-10 half of the same table, % test error.
PAPER_CIFAR10 = {
    ("fcn", 3): {"nobprop": 54.9, "bprop": 43.5, "dni": 42.5, "cdni": 48.5},
    ("fcn", 4): {"nobprop": 57.2, "bprop": 43.0, "dni": 45.0, "cdni": 45.1},
    ("fcn", 5): {"nobprop": 59.6, "bprop": 41.7, "dni": 46.9, "cdni": 43.5},
    ("fcn", 6): {"nobprop": 61.9, "bprop": 42.0, "dni": 49.7, "cdni": 46.8},
    ("cnn", 3): {"nobprop": 28.7, "bprop": 17.9, "dni": 19.5, "cdni": 19.0},
    ("cnn", 4): {"nobprop": 38.1, "bprop": 15.7, "dni": 19.5, "cdni": 16.4},
}
#: The paper's numbers for each dataset (the embedded digits are MNIST's).
PAPER = {"mnist": PAPER_MNIST, "embedded": PAPER_MNIST, "cifar10": PAPER_CIFAR10}
METHODS = ("nobprop", "bprop", "dni", "cdni")
#: Settings chosen on a 10 % validation split of the training set (never the test set), per
#: (dataset, model, layers, method); ``--selected`` applies them (docs/results/table1_selection/,
#: docs/training.md). FCN-3 cDNI: of synthesizer depth 0/1/2 at lr 3e-4 and depth 1 at lr 1e-3
#: (5,000 steps, seed 0), the linear synthesizer (2.12 % validation error). FCN-3 DNI: of depth 1
#: at lr 1e-3 or 3e-4, depth 1 with the synthesizers at lr 1e-3, and depth 2, all ÷10 at 15k and
#: 20k (the paper's drops at 3/5 and 4/5 of its budget), 25,000 steps, seed 0: depth 1, lr 3e-4,
#: synthesizer lr 1e-3 (2.43 %; the others 2.50-2.67 %). ``lr_drops_at`` is that schedule as
#: fractions of the run's steps, so a shorter ``--steps`` drops at the same points of its budget.
SELECTED = {
    ("mnist", "fcn", 3, "cdni"): {"synth_hidden_layers": 0, "lr": 3e-4},
    ("mnist", "fcn", 3, "dni"): {"synth_hidden_layers": 1, "lr": 3e-4, "synth_lr": 1e-3,
                                 "lr_drops_at": (0.6, 0.8)},
}
# FCN-4..6 take FCN-3's choices: a 25,000-step grid per depth did not fit the 2-core budget. cDNI on
# FCN-6 was chosen again (linear synthesizer, constant or ÷10 at 15k/20k, synthesizer lr 1e-3, one
# hidden layer; docs/results/table1_selection/fcn6-cdni-25k-*) and kept FCN-3's setting (1.80 % val).
SELECTED.update({("mnist", "fcn", layers, method): SELECTED[("mnist", "fcn", 3, method)]
                 for layers in (4, 5, 6) for method in ("dni", "cdni")})
# CIFAR-10, FCN-3, 5,000 steps, seed 0, every method on the same grid of stage lr (1e-4/3e-4 constant,
# 3e-4/1e-3 ÷10 at 3/5 and 4/5 of the steps; docs/results/table1_selection/cifar10-fcn3-*, docs/training.md):
# Bprop lr 3e-4 with the drops (43.76 % val; constant 52.48 %), No Bprop lr 1e-3 with the drops (61.66 %);
# DNI and cDNI also on synthesizer depth 0/2 and synthesizer lr 3e-5..1e-3: DNI stages at 1e-4 with the
# synthesizers at 3e-5, constant (53.34 %), cDNI lr 3e-4 constant (49.60 %). FCN-4..6 take FCN-3's choices.
SELECTED.update({("cifar10", "fcn", 3, "bprop"): {"lr": 3e-4, "lr_drops_at": (0.6, 0.8)},
                 ("cifar10", "fcn", 3, "nobprop"): {"lr": 1e-3, "lr_drops_at": (0.6, 0.8)},
                 ("cifar10", "fcn", 3, "dni"): {"synth_hidden_layers": 1, "lr": 1e-4, "synth_lr": 3e-5},
                 ("cifar10", "fcn", 3, "cdni"): {"synth_hidden_layers": 1, "lr": 3e-4}})
SELECTED.update({("cifar10", "fcn", layers, method): SELECTED[("cifar10", "fcn", 3, method)]
                 for layers in (4, 5, 6) for method in METHODS})


def paper_error(dataset: str, model: str, layers: int, method: str) -> float | None:
    """The paper's % test error of one cell, or None where it has none."""
    return PAPER.get(dataset, {}).get((model, layers), {}).get(method)


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
        "dataset": config.dataset,
        "seed": config.seed,
        **recorded_settings(config),
        "test_error_%": 100 * summary["final_test_error"],
        "best_test_error_%": 100 * summary["best_test_error"],
        "train_error_%": 100 * summary["final_train_error"],
        "paper_test_error_%": paper_error(config.dataset, config.model, config.layers, config.method),
        "val_error_%": None if summary.get("final_val_error") is None else 100 * summary["final_val_error"],
        "best_val_error_%": None if summary.get("best_val_error") is None else 100 * summary["best_val_error"],
        "train_time_s": summary["train_time_s"],
        "wall_time_s": time.perf_counter() - started,
        "status": summary["status"],
    }
    atomic_write_json(Path(out_dir) / "table_row.json", row)
    return row


def recorded_settings(config: ClassifyConfig) -> dict:
    """The settings a table row records, which must match for a finished run to be reused."""
    return {"steps": config.steps, "lr": config.lr, "synth_hidden_layers": config.synth_hidden_layers,
            "lr_milestones": " ".join(map(str, config.lr_milestones)), "synth_lr": config.synth_lr}


def finished_row(config: ClassifyConfig, out_dir: Path) -> dict | None:
    """The row of a run this script already finished at the same budget (so reruns resume)."""
    path = out_dir / "table_row.json"
    if not path.exists():
        return None
    row = json.loads(path.read_text())
    # Rows written before a setting was recorded ran at that setting's default.
    wanted = recorded_settings(config)
    recorded_default = {"lr_milestones": "", "synth_lr": None}
    same = all(row.get(key, recorded_default.get(key, value)) == value for key, value in wanted.items())
    return row if same and row["status"] == "completed" else None


def configs(args: argparse.Namespace) -> list[ClassifyConfig]:
    """Every run of the table at the requested budget."""
    base = ClassifyConfig(
        dataset=args.dataset,
        data_dir=args.data_dir,
        batch_size=256,
        steps=args.steps,
        lr=args.lr,
        lr_milestones=list(args.lr_milestones),
        log_every=50,
        synth_hidden_layers=args.synth_hidden_layers,
        validation=args.validation,
        device=args.device,
    )
    models = [("fcn", layers) for layers in args.layers] + ([("cnn", n) for n in args.cnn_layers] if args.cnn else [])
    chosen = SELECTED if args.selected else {}
    runs = []
    for model, layers in models:
        steps = args.cnn_steps if model == "cnn" else args.steps
        for method in args.methods:
            cell = _cell_settings(chosen.get((args.dataset, model, layers, method), {}), steps)
            runs += [replace(base, model=model, layers=layers, method=method, seed=seed, steps=steps,
                             eval_every=max(steps // 10, 1), **{**_synth_lr(args.synth_lr, method), **cell})
                     for seed in args.seeds]
    return runs


def _cell_settings(chosen: dict, steps: int) -> dict:
    """A selected cell's settings as config fields: drops at fractions of the budget become milestone steps."""
    settings = dict(chosen)
    drops = settings.pop("lr_drops_at", None)
    if drops:
        settings["lr_milestones"] = [round(fraction * steps) for fraction in drops]
    return settings


def _synth_lr(synth_lr: float | None, method: str) -> dict:
    """``synth_lr`` for a method that has synthesizers; nothing for one that has none (so its runs stay reusable)."""
    return {"synth_lr": synth_lr} if synth_lr is not None and get_method(method).synthetic_gradients else {}


def run_name(config: ClassifyConfig) -> str:
    """A run's folder under ``runs/`` (seed 0 keeps the name of single-seed tables)."""
    name = f"{config.model}{config.layers}-{config.method}"
    return name if config.seed == 0 else f"{name}-s{config.seed}"


def markdown_table(runs: pd.DataFrame) -> str:
    """Our % test error beside the paper's, one row per model, as in Table 1: ``mean ± sd (paper)``
    over the seeds (the mean alone for one seed)."""
    rows = []
    for (model, layers), group in runs.groupby(["model", "layers"], sort=False):
        row = {"model": f"{model.upper()}-{layers}", "steps": int(group["steps"].iloc[0]),
               "seeds": group["seed"].nunique() if "seed" in group else 1}
        for method, cell in group.groupby("method", sort=False):
            errors, paper = cell["test_error_%"], cell["paper_test_error_%"].iloc[0]
            row[method] = mean_sd(errors) + ("" if pd.isna(paper) else f" ({paper:.1f})")
        row["training time (s)"] = f"{group['train_time_s'].sum():.0f}"
        rows.append(row)
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)


def combined_runs(csvs: list[Path]) -> pd.DataFrame:
    """The rows of several tables' ``runs.csv`` as one table's, in Table 1's order. Refuses what one
    table cannot show: a run that appears twice, or one model trained for different numbers of steps."""
    runs = pd.concat([pd.read_csv(csv) for csv in csvs], ignore_index=True)
    key = ["dataset", "model", "layers", "method", "seed"]
    twice = runs[runs.duplicated(key, keep=False)]
    if len(twice):
        raise ValueError(f"--combine: these runs appear in more than one file: {twice[key].to_dict('records')}")
    steps = runs.groupby(["model", "layers"])["steps"].nunique()
    if (steps > 1).any():
        raise ValueError(f"--combine: one table row cannot mix budgets; {list(steps[steps > 1].index)} "
                         "were trained for different --steps")
    order = runs["method"].map({m: i for i, m in enumerate(METHODS)})
    return runs.assign(_order=order).sort_values(["model", "layers", "_order", "seed"]).drop(columns="_order")


def main(argv: list[str] | None = None) -> None:
    """Run the table and write its files."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None, help="folder with the dataset (MNIST IDX .gz or mnist.npz; "
                                                         "CIFAR-10 python batches or cifar10.npz)")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--cnn", action="store_true", help="also the CNN rows (slow on CPU)")
    parser.add_argument("--cnn-layers", type=int, nargs="+", default=[3], help="CNN depths with --cnn")
    parser.add_argument("--cnn-steps", type=int, default=500)
    parser.add_argument("--layers", type=int, nargs="*", default=[3, 4, 5, 6], help="FCN depths (none: no FCN rows)")
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--lr-milestones", type=lambda text: [int(v) for v in text.split(",") if v], default=[],
                        help="comma-separated steps after which every learning rate is divided by 10")
    parser.add_argument("--synth-lr", type=float, default=None,
                        help="the synthesizers' learning rate (default: --lr); methods without one ignore it")
    parser.add_argument("--synth-hidden-layers", type=int, default=1)
    parser.add_argument("--methods", type=lambda text: text.split(","), default=list(METHODS),
                        help=f"comma-separated, of {', '.join(METHODS)}")
    parser.add_argument("--seeds", type=lambda text: [int(v) for v in text.split(",")], default=[0],
                        help="comma-separated seeds (one run per cell and seed)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--validation", type=float, default=0.0,
                        help="fraction of the training set held out; runs.csv gets its error (select on it)")
    parser.add_argument("--selected", action="store_true",
                        help="use the settings chosen on validation (SELECTED) where a cell has them")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--scheduler-address", default=None,
                        help="train on this dask.distributed scheduler instead of a local process pool")
    parser.add_argument("--combine", type=Path, nargs="+", default=None, metavar="RUNS_CSV",
                        help="train nothing: write one table from the runs.csv of earlier invocations")
    parser.add_argument("--out", type=Path, default=Path("docs/results/paper_table"))
    args = parser.parse_args(argv)
    if args.combine:
        write_combined(args)
        return
    unknown = sorted(set(args.methods) - set(METHODS))
    if unknown:
        parser.error(f"--methods: unknown {', '.join(unknown)}; Table 1 has {', '.join(METHODS)}")

    todo = configs(args)
    started = time.perf_counter()
    results = {}
    with open_executor(args.workers, args.scheduler_address) as pool:
        futures = {}
        for i, config in enumerate(todo):
            run_dir = args.out / "runs" / run_name(config)
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
    figure_runs = [args.out / "runs" / run_name(c) for c in todo]
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


def write_combined(args: argparse.Namespace) -> None:
    """``--combine``: one ``runs.csv`` and ``table.md`` from earlier tables' rows, and which files they came from."""
    try:
        runs = combined_runs(args.combine)
    except (OSError, ValueError) as error:
        raise SystemExit(str(error)) from None
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "runs.csv", runs.to_csv(index=False))
    table = markdown_table(runs)
    atomic_write_text(args.out / "table.md", table + "\n")
    atomic_write_json(args.out / "provenance.json",
                      {"combined_from": [source_record(csv) for csv in args.combine], **provenance()})
    print(table)


def source_record(csv: Path) -> dict:
    """Where a combined table's rows came from: the file, and the machine and date of the table that wrote
    it (its ``provenance.json`` beside it), since the rows of one combined table may come from different CPUs."""
    record = {"runs_csv": str(csv)}
    beside = csv.parent / "provenance.json"
    if beside.exists():
        made = json.loads(beside.read_text())
        record.update({key: made.get(key) for key in ("cpu_model", "cpu_count", "created", "versions")})
    return record


if __name__ == "__main__":
    main()
