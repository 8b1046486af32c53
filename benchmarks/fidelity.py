"""Synthetic-gradient fidelity on full MNIST: which interfaces are faithful, and do Sobolev or critic synthesizers help.

    python benchmarks/fidelity.py --data-dir ../shared/data --out docs/results/fidelity --figures docs/figures/fidelity
    python benchmarks/fidelity.py --smoke --out /tmp/fidelity-smoke --figures /tmp/fidelity-smoke   # embedded data, minutes

1. **Selection** (validation split, never the test set): the critic's value weight and the
   Sobolev weight, on FCN-4 cDNI, seed 0, at ``BUDGET["select_steps"]`` steps; the best validation
   error is used below.
2. **Main grid**: FCN-4 and FCN-6 (the paper's 256-unit layers, batch 256, Adam 3e-4, synthesizers
   with one hidden layer of 1024) with bprop, DNI, cDNI, cDNI with the critic and cDNI with the
   Sobolev objective, and on FCN-4 also linear synthesizers; seeds 0-2; every run probed every
   ``probe_every`` steps (``sglab.probes``: δ̂, its bootstrapped target and the true gradient).
3. **A small CNN** (CNN-3, 16 channels, conv synthesizers) with DNI and cDNI, and the
   **recurrent boundaries**: the copy task's truncation boundary (DNI, T = 3) and the two-RNN
   interface (cDNI), each over the same seeds.
4. **Deep linear vs ReLU** (:mod:`analysis.deep_linear`): with linear synthesizers cDNI reaches
   the least-squares optimum of a deep linear regression, not backprop's loss on a ReLU chain.

Runs go through a process pool, one torch thread each; every run is a run directory under
``--out``/runs, so an interrupted benchmark resumes where it stopped. Writes ``runs.csv`` (one
row per run), ``fidelity.csv.gz`` (every probe row, tagged; ``pd.read_csv`` reads it), ``selection.csv``,
``deep_linear.csv``, ``tables.md`` and ``provenance.json`` into ``--out``, and the figures into
``--figures``.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import gzip
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from analysis.deep_linear import compare
from analysis.fidelity import load_fidelity
from analysis.fidelity_figures import fidelity_table, plot_depth, plot_over_training, plot_variants
from sglab.io import atomic_write_bytes, atomic_write_json, atomic_write_text, provenance
from sglab.training import ClassifyConfig, CopyConfig, TwoRNNConfig, train

BUDGET = {"steps": 1500, "probe_every": 100, "eval_every": 500, "select_steps": 800, "cnn_steps": 400,
          "copy_steps": 1500, "two_rnn_steps": 1000, "recurrent_probe_every": 50}
SMOKE = {"steps": 60, "probe_every": 20, "eval_every": 30, "select_steps": 40, "cnn_steps": 20, "copy_steps": 40,
         "two_rnn_steps": 30, "recurrent_probe_every": 10}
SEEDS = (0, 1, 2)
#: The critic's value targets are shares ℓ_b/B ≈ 0.01 of the batch loss, whose squared errors
#: dwarf the gradient term's unless the value weight is small: the grid spans that range.
CRITIC_WEIGHTS = (1e-3, 1e-4, 1e-5, 0.0)
SOBOLEV_WEIGHTS = (1.0, 0.1, 0.01)


def variants(chosen: dict[str, float]) -> dict[str, dict[str, Any]]:
    """The compared settings, by name: config fields over the base FCN config (``chosen``: the selected weights)."""
    return {
        "bprop": {"method": "bprop"},
        "dni": {"method": "dni"},
        "cdni": {"method": "cdni"},
        "cdni-critic": {"method": "cdni", "synth_loss": "critic", "critic_value_weight": chosen["critic"]},
        "cdni-sobolev": {"method": "cdni", "synth_loss": "sobolev", "sobolev_weight": chosen["sobolev"]},
        "dni-linear": {"method": "dni", "synthesizer": "linear"},
        "cdni-linear": {"method": "cdni", "synthesizer": "linear"},
        "cdni-critic-linear": {"method": "cdni", "synthesizer": "linear", "synth_loss": "critic",
                               "critic_value_weight": chosen["critic-linear"]},
    }


def run_one(job: dict[str, Any]) -> dict[str, Any]:
    """Train one job in this worker (skipped if its run directory finished); returns its row."""
    torch.set_num_threads(1)
    out = Path(job["out"])
    summary_path = out / "summary.json"
    config, dataset = job["config"], None
    if not (summary_path.exists() and json.loads(summary_path.read_text()).get("status") == "completed"):
        shutil.rmtree(out, ignore_errors=True)  # an interrupted run starts over: runs are deterministic
        if job.get("data"):
            from sglab.data import load_dataset

            dataset = load_dataset(job["data"], job.get("data_dir"), validation=job.get("validation", 0.0))
            if job.get("validation"):
                dataset = replace(dataset, x_test=dataset.x_val, y_test=dataset.y_val)  # select on validation, never test
        started = time.perf_counter()
        train(config, out, progress=False, dataset=dataset)
        (out / "wall_time_s").write_text(f"{time.perf_counter() - started:.1f}\n")
    summary = json.loads(summary_path.read_text())
    return {"name": out.name, "group": job["group"], "variant": job["variant"], "seed": config.seed, **job.get("tags", {}),
            "status": summary["status"], "steps": summary["steps"],
            **{k: summary.get(k) for k in ("final_test_error", "best_test_error", "longest_solved", "test_accuracy_b")},
            "train_time_s": summary["train_time_s"]}


def fcn_config(budget: dict, layers: int, seed: int, fields: dict, dataset: str, steps: int | None = None) -> ClassifyConfig:
    """The benchmark's FCN config."""
    return ClassifyConfig(dataset=dataset, layers=layers, seed=seed, steps=steps or budget["steps"],
                          eval_every=budget["eval_every"], probe_every=budget["probe_every"], device="cpu", **fields)


def selection_jobs(args, budget: dict) -> list[dict]:
    """Critic (MLP and quadratic) and Sobolev weights on FCN-4 cDNI, seed 0, scored on a validation split."""
    jobs = []
    grid = [("critic", "critic_value_weight", w, {"synth_loss": "critic"}) for w in CRITIC_WEIGHTS]
    grid += [("critic-linear", "critic_value_weight", w, {"synth_loss": "critic", "synthesizer": "linear"})
             for w in CRITIC_WEIGHTS]
    grid += [("sobolev", "sobolev_weight", w, {"synth_loss": "sobolev"}) for w in SOBOLEV_WEIGHTS]
    for kind, field, weight, fields in grid:
        config = replace(fcn_config(budget, 4, 0, {"method": "cdni", **fields, field: weight}, args.dataset,
                                    budget["select_steps"]), probe_every=None)
        name = f"select-{kind}-{weight:g}"
        jobs.append({"out": str(args.out / "runs" / name), "config": config, "group": "selection", "variant": name,
                     "tags": {"kind": kind, "field": field, "weight": weight}, "data": args.dataset,
                     "data_dir": args.data_dir, "validation": 0.1})
    return jobs


def main_jobs(args, budget: dict, chosen: dict[str, float]) -> list[dict]:
    """FCN-4 / FCN-6 × variants × seeds, the CNN, the copy boundary and the two-RNN interface."""
    jobs, table = [], variants(chosen)
    for layers, names in ((4, list(table)), (6, ["bprop", "dni", "cdni", "cdni-critic", "cdni-sobolev"])):
        for name in names:
            for seed in args.seeds:
                run = f"fcn{layers}-{name}-s{seed}"
                jobs.append({"out": str(args.out / "runs" / run), "config": fcn_config(budget, layers, seed, table[name],
                                                                                        args.dataset),
                             "group": f"fcn{layers}", "variant": name, "tags": {"layers": layers},
                             "data": args.dataset, "data_dir": args.data_dir})
    for method in ("dni", "cdni", "bprop"):
        for seed in args.seeds:
            config = ClassifyConfig(dataset=args.dataset, model="cnn", layers=3, channels=16, batch_size=64, seed=seed,
                                    method=method, steps=budget["cnn_steps"], eval_every=budget["cnn_steps"],
                                    probe_every=budget["recurrent_probe_every"], device="cpu")
            jobs.append({"out": str(args.out / "runs" / f"cnn3-{method}-s{seed}"), "config": config, "group": "cnn3",
                         "variant": method, "data": args.dataset, "data_dir": args.data_dir})
    for seed in args.seeds:
        copy = CopyConfig(method="dni", truncation=3, bits=8, steps=budget["copy_steps"], seed=seed, device="cpu",
                          probe_every=budget["recurrent_probe_every"], eval_every=budget["copy_steps"])
        jobs.append({"out": str(args.out / "runs" / f"copy-dni-T3-s{seed}"), "config": copy, "group": "copy",
                     "variant": "dni"})
        two = TwoRNNConfig(method="cdni", steps=budget["two_rnn_steps"], seed=seed, device="cpu",
                           probe_every=budget["recurrent_probe_every"], eval_every=budget["two_rnn_steps"])
        jobs.append({"out": str(args.out / "runs" / f"two-rnn-cdni-s{seed}"), "config": two, "group": "two-rnn",
                     "variant": "cdni"})
    return jobs


def run_all(jobs: list[dict], workers: int) -> pd.DataFrame:
    """Every job through a process pool; one row per job, in job order."""
    with cf.ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(run_one, job): i for i, job in enumerate(jobs)}
        rows: list[dict | None] = [None] * len(jobs)
        for done, future in enumerate(cf.as_completed(futures), 1):
            rows[futures[future]] = row = future.result()
            print(f"[{done}/{len(jobs)}] {row['name']}: {row['status']} "
                  f"(test error {row['final_test_error']}, {row['train_time_s']:.0f} s)", flush=True)
    return pd.DataFrame(rows)


def choose(selection: pd.DataFrame) -> dict[str, float]:
    """Per kind (critic, critic-linear, sobolev) the weight with the lowest validation error."""
    best = selection.sort_values("final_test_error", kind="stable").groupby("kind").first()
    return {kind: float(weight) for kind, weight in best["weight"].items()}


def deep_linear_table(steps: int, seeds) -> pd.DataFrame:
    """Final losses of bprop, cDNI and DNI (linear synthesizers) on the deep linear and the ReLU problem."""
    rows = []
    for objective in ("l2", "sobolev", "critic"):
        for nonlinear in (False, True):
            for seed in seeds:
                found = compare(nonlinear, seed=seed, steps=steps, objective=objective)
                rows.append({"problem": "relu" if nonlinear else "deep linear", "objective": objective, "seed": seed, **found})
    return pd.DataFrame(rows)


def figures(runs: pd.DataFrame, out: Path, figure_dir: Path) -> tuple[pd.DataFrame, list[Path]]:
    """The fidelity table of every probed run and the figures."""
    probed = runs[runs["group"] != "selection"]
    table = load_fidelity([out / "runs" / n for n in probed["name"]], config_fields=("method", "seed"))
    table = table.merge(probed[["name", "group", "variant"]].rename(columns={"name": "run"}), on="run")
    table["layers"] = table["group"].str.extract(r"fcn(\d)")[0].astype("Int64")
    files = []
    fcn4 = table[table["group"] == "fcn4"]
    files += plot_over_training(fcn4[fcn4["variant"].isin(["dni", "cdni"])], figure_dir / "fcn4_cosine", col="variant")
    files += plot_variants(fcn4[fcn4["variant"].isin(["cdni", "cdni-critic", "cdni-sobolev"])], figure_dir / "objectives",
                           by="variant")
    files += plot_variants(fcn4[fcn4["variant"].isin(["dni", "dni-linear", "cdni", "cdni-linear"])],
                           figure_dir / "linear_vs_mlp", by="variant")
    files += plot_variants(fcn4[fcn4["variant"].isin(["cdni-linear", "cdni-critic-linear"])], figure_dir / "critic_linear",
                           by="variant")
    fcn = table[table["group"].isin(["fcn4", "fcn6"]) & table["variant"].isin(["dni", "cdni", "cdni-critic", "cdni-sobolev"])]
    files += plot_depth(fcn, figure_dir / "depth", hue="variant")
    files += plot_over_training(table[table["group"].isin(["copy", "two-rnn", "cnn3"]) & (table["variant"] != "bprop")],
                                figure_dir / "cnn_rnn_boundaries", col="group")
    return table, files


def tables_md(runs: pd.DataFrame, fidelity: pd.DataFrame, selection: pd.DataFrame, linear: pd.DataFrame) -> str:
    """The Markdown tables docs/fidelity.md shows."""
    main = runs[runs["group"].isin(["fcn4", "fcn6", "cnn3"])]
    errors = (main.assign(err=100 * main["final_test_error"]).groupby(["group", "variant"])["err"]
              .agg(["mean", "std", "count"]).round(2).reset_index())
    late = fidelity_table(fidelity[fidelity["variant"] != "bprop"], by=("group", "variant", "interface"),
                          metrics=("synthetic_cosine", "target_cosine", "regression_cosine", "update_cosine",
                                   "synthetic_norm_ratio")).round(3)
    pivot = late.pivot_table(index=["group", "variant", "interface"], columns="metric", values="mean").round(3).reset_index()
    spread = late.pivot_table(index=["group", "variant", "interface"], columns="metric", values="std").round(3).reset_index()
    parts = ["## Test error (%), mean and sd over seeds", errors.to_markdown(index=False),
             "## Fidelity over the second half of training (mean over seeds)", pivot.to_markdown(index=False),
             "## ... and its sd over seeds", spread.to_markdown(index=False),
             "## Selection on the validation split", selection[["variant", "kind", "field", "weight", "final_test_error"]]
             .to_markdown(index=False),
             "## Deep linear vs ReLU (final training loss)", linear.groupby(["problem", "objective"]).mean(numeric_only=True)
             .drop(columns="seed").round(6).reset_index().to_markdown(index=False)]
    return "\n\n".join(parts) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None, help="folder with MNIST (IDX .gz files or mnist.npz)")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="the embedded digits and a tiny budget (minutes)")
    parser.add_argument("--out", type=Path, default=Path("docs/results/fidelity"))
    parser.add_argument("--figures", type=Path, default=Path("docs/figures/fidelity"))
    args = parser.parse_args()
    budget = SMOKE if args.smoke else BUDGET
    if args.smoke:
        args.dataset = "embedded"
    started = time.perf_counter()
    selection = run_all(selection_jobs(args, budget), args.workers)
    chosen = choose(selection)
    print(f"chosen on validation: {chosen}", flush=True)
    runs = run_all(main_jobs(args, budget, chosen), args.workers)
    linear = deep_linear_table(200 if args.smoke else 800, args.seeds)
    fidelity, files = figures(runs, args.out, args.figures)
    atomic_write_text(args.out / "runs.csv", pd.concat([selection, runs]).to_csv(index=False))
    atomic_write_text(args.out / "selection.csv", selection.to_csv(index=False))
    atomic_write_bytes(args.out / "fidelity.csv.gz", gzip.compress(fidelity.to_csv(index=False).encode(), mtime=0))
    atomic_write_text(args.out / "deep_linear.csv", linear.to_csv(index=False))
    atomic_write_text(args.out / "tables.md", tables_md(runs, fidelity, selection, linear))
    atomic_write_json(args.out / "provenance.json", {
        "command": "python benchmarks/fidelity.py " + " ".join(f"{k}={v}" for k, v in vars(args).items()),
        "budget": budget, "seeds": args.seeds, "chosen": chosen,
        "wall_time_s": time.perf_counter() - started, "figures": [str(f) for f in files], **provenance()})
    print(f"wrote {args.out} and {len(files)} figures in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
