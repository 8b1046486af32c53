"""The simulator against reality: predicted and measured step times of the same methods on this machine.

    python benchmarks/sim_vs_real.py --out docs/results/sim_vs_real --figures docs/figures/distributed
    python benchmarks/sim_vs_real.py --quick --out /tmp/svr --figures /tmp/svr    # a minute: 1 round, few steps

One model (FCN-K, one stage per process, K = ``--processes`` = 2 by default: Linear(784, 1024) +
batch norm + ReLU, K − 2 hidden 1024 → 1024 such layers, then Linear(1024, 10); batch 256; linear
synthesizers), one torch thread per process, the embedded digits. Each of ``--rounds`` rounds:

1. **probes** the machine with ``probe_hardware(processes=K)`` (link, contention; the per-op
   overhead is left out of the spec, the in-run profile already holds it);
2. **profiles and runs for real**, in an order rotated by one each round, each run just after an
   in-run profile (:func:`sglab.profiling.profile_training`: a real 1-process ``train`` with an
   ``OpTimer``) of its own ops (``bprop`` for the locked schedules, ``dni``, ``cdni``):
   sequential backprop (``bprop``, ``processes=1``), naive model parallelism (``bprop`` on K processes), ``dni``, ``cdni``, and
   the pipelines ``gpipe``/``1f1b`` with ``--microbatches`` m microbatches of 256 (a step is
   m batches, as the simulator counts it);
3. **predicts** every method's steady step with the simulator from its profile and the round's
   probe: the spec as probed (devices of speed 1 sharing the cores: an op is slowed by
   slowdown(n) while n processes compute, processor sharing) and the profile's measured host
   time per batch (``host_time``: the loop's time between ops, charged to the first stage's
   forward) and the sender's post time of every message (the spec's ``link.sender``). Ablations
   say what each modelled cause contributes: ``no_host_time``, ``no_contention`` (independent
   devices), ``no_sender`` (sending costs the device nothing).

Step times are ``sglab.trace.steady_step_ns`` of the measured and of the simulated trace (mean
interval between step completions over the middle half of the run), so both are read the same
way. The measured value of a method is the median over its rounds, its noise floor the spread
(min–max) of those identical runs; the prediction's error is judged against it.

Writes ``results.csv`` (:func:`analysis.sim_vs_real.error_table`), ``runs.csv`` (every real run
and every prediction), ``ops.csv`` (median op times: profile vs real runs vs simulation),
``provenance.json`` (machine, versions, settings, every round's probe, seeds, command),
``tables.md``, the last round's profiles (``profiles/<method>.json``), probe and traces (``traces/<method>-measured.csv``,
``-simulated.csv``), and side-by-side Gantt figures
(``gantt-<method>.png/.pdf``: measured above, simulated below, a few steady steps) under
``--figures``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere: analysis/ is a top-level package
    sys.path.insert(0, str(ROOT))

from analysis.sim_vs_real import error_table, markdown_table, predicted_trace, save_side_by_side  # noqa: E402
from sglab.io import atomic_write_json, atomic_write_text, provenance  # noqa: E402
from sglab.trace import steady_step_ns  # noqa: E402

#: What runs: (label, registry method); "sequential" (1 process) is the speedup baseline, the rest run on K.
RUNS = [("sequential", "bprop"), ("bprop", "bprop"), ("dni", "dni"), ("cdni", "cdni"), ("gpipe", "gpipe"),
        ("1f1b", "1f1b")]
PIPELINES = ("gpipe", "1f1b")
#: Which profile predicts which method (the ops it runs).
PROFILE_OF = {"sequential": "bprop", "bprop": "bprop", "dni": "dni", "cdni": "cdni", "gpipe": "bprop", "1f1b": "bprop"}


def config_for(args, method: str, steps: int, batch_size: int | None = None):
    """The one model of the benchmark, under ``method``."""
    from sglab.training import ClassifyConfig

    return ClassifyConfig(method=method, layers=args.processes, width=args.width, batch_size=batch_size or args.batch_size,
                          synth_hidden_layers=0, steps=steps, eval_every=steps, log_every=steps, seed=args.seed,
                          device="cpu")


def real_run(args, label: str, method: str, processes: int, dataset) -> pd.DataFrame:
    """One real run's measured trace (every rank on one clock)."""
    from sglab.dist import DistRun, train_distributed

    if method not in PIPELINES:
        result = train_distributed(DistRun(config_for(args, method, args.steps), dataset, processes=processes),
                                   threads=1, run_timeout=600)
        return result.trace()
    config = config_for(args, "bprop", args.steps, args.batch_size * args.microbatches)
    run = DistRun(config, dataset, method=method, microbatches=args.microbatches)
    return train_distributed(run, threads=1, run_timeout=600).trace()


def profile(args, method: str, dataset):
    """The in-run profile of ``method`` on this model (one process, one thread)."""
    from sglab.profiling import profile_training

    with tempfile.TemporaryDirectory() as tmp:
        prof, _ = profile_training(config_for(args, method, args.profile_steps), tmp, dataset=dataset,
                                   skip_steps=args.profile_skip)
    return prof


def probe(args) -> tuple[dict, dict]:
    """This machine as ``sglab hardware probe`` writes it (2 devices of speed 1 sharing the cores), and the report.

    ``op_overhead=False``: an in-run profile already holds each op's launch cost, so adding the
    probe's per-op overhead would count it twice.
    """
    from sglab.dist import probe_hardware

    result = probe_hardware(processes=args.processes, repeats=args.probe_repeats, warmup=2, kernel_repeats=args.probe_repeats,
                            op_overhead=False)
    return result.spec, {k: v for k, v in result.report.items() if k != "spec"}


#: The predictions made of every run: what each one models (the first is the benchmark's prediction).
VARIANTS = {"predicted": {"contention": True, "host_time": True, "sender": True},
            "no_host_time": {"contention": True, "host_time": False, "sender": True},
            "no_contention": {"contention": False, "host_time": True, "sender": True},
            "no_sender": {"contention": True, "host_time": True, "sender": False}}


def simulate_one(prof, spec: dict, label: str, method: str, args, contention: bool = True, host_time: bool = True,
                 sender: bool = True):
    """The simulated trace of ``label`` (renamed to the real ranks' devices), with the modelled causes asked for."""
    spec = {k: v for k, v in spec.items() if contention or k != "contention"}
    if not sender:
        spec["link"] = {k: v for k, v in spec["link"].items() if k != "sender"}
    return predicted_trace(prof, spec, method, args.steps, args.seed, sequential=label == "sequential",
                           microbatches=args.microbatches if method in PIPELINES else None, host_time=host_time)


def op_medians(trace: pd.DataFrame) -> pd.Series:
    """Median duration (ms) per (device, stage, op) of a trace, its first quarter of steps left out (warm-up)."""
    steps = trace["step"].max() + 1
    part = trace[trace["step"] >= steps // 4]
    return (part["end_ns"] - part["start_ns"]).groupby([part["device"].astype(str), part["stage"],
                                                        part["op"].astype(str)]).median() / 1e6


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The benchmark's options, with the quick defaults filled in."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/results/sim_vs_real"))
    parser.add_argument("--figures", type=Path, default=Path("docs/figures/distributed"))
    parser.add_argument("--quick", action="store_true", help="1 round of few steps (a check, not a measurement)")
    parser.add_argument("--rounds", type=int, default=None, help="repeats of every real run (default 3; quick 1)")
    parser.add_argument("--steps", type=int, default=None, help="steps per real run (default 60; quick 12)")
    parser.add_argument("--profile-steps", type=int, default=None, help="steps of each in-run profile (default 60)")
    parser.add_argument("--microbatches", type=int, default=4, help="microbatches of 256 per pipeline step")
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--probe-repeats", type=int, default=None, help="ping-pongs and kernels per probe (default 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--processes", type=int, default=2, help="K: an FCN-K, one stage per process (default 2)")
    parser.add_argument("--methods", default=",".join(label for label, _ in RUNS),
                        help="labels to run (sequential is always run: it is the baseline)")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.steps = args.steps or (12 if args.quick else 60)
    args.profile_steps = args.profile_steps or (12 if args.quick else 60)
    args.profile_skip = 3 if args.quick else 5
    args.probe_repeats = args.probe_repeats or (5 if args.quick else 20)
    wanted = {"sequential", *args.methods.split(",")}
    unknown = wanted - {label for label, _ in RUNS}
    if unknown:
        parser.error(f"unknown --methods {', '.join(sorted(unknown))}")
    if args.processes < 2:
        parser.error("--processes must be >= 2")
    args.runs = [(label, method, 1 if label == "sequential" else args.processes) for label, method in RUNS
                 if label in wanted]
    return args


class Rounds:
    """What the rounds measured: one row per real run and its predictions, op medians, specs, the last traces."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.ops: list[dict] = []
        self.probes: list[dict] = []
        self.profiles: dict = {}
        self.last: dict = {}

    def run(self, args, round_: int, dataset) -> None:
        """One round: probe, then every real run in an order rotated by ``round_``, each profiled just before.

        The machine's speed drifts by more than the effects measured here (a memory-bound op's
        median moved 3x between repeats of one process), so each prediction uses a profile taken
        seconds before the run it predicts.
        """
        runs = args.runs
        spec, report = probe(args)
        self.probes.append({"round": round_, "spec": spec, "report": report})
        for label, method, processes in runs[round_ % len(runs):] + runs[:round_ % len(runs)]:
            prof = self.profiles[label] = profile(args, PROFILE_OF[label], dataset)
            started = time.monotonic()
            measured = real_run(args, label, method, processes, dataset)
            row = {"round": round_, "method": label, "processes": processes,
                   "samples_per_step": args.microbatches if method in PIPELINES else 1,
                   "measured_step_ns": steady_step_ns(measured), "wall_s": time.monotonic() - started,
                   "profile_host_ns_per_step": prof.totals.get("host_ns_per_step")}
            for name, variant in VARIANTS.items():
                simulated = simulate_one(prof, spec, label, method, args, **variant)
                row[f"{name}_step_ns"] = steady_step_ns(simulated)
                if name == "predicted":
                    self.last[label] = (measured, simulated)
                    self._op_rows(round_, label, measured, simulated)
            self._op_rows(round_, label, profile=prof)
            self.rows.append(row)
            print(f"  {label:10s} measured {row['measured_step_ns'] / 1e6:8.2f} ms  predicted "
                  f"{row['predicted_step_ns'] / 1e6:8.2f} ms  ({row['wall_s']:.1f} s)", flush=True)

    def _op_rows(self, round_: int, label: str, measured=None, simulated=None, profile=None) -> None:
        for source, trace in (("measured", measured), ("simulated", simulated)):
            if trace is not None:
                self.ops += [{"round": round_, "method": label, "source": source, "device": device, "stage": stage,
                              "op": op, "median_ms": ms} for (device, stage, op), ms in op_medians(trace).items()]
        for stage in profile.stages if profile is not None else ():
            self.ops += [{"round": round_, "method": label, "source": "profile", "device": "1 process",
                          "stage": stage.index, "op": op, "median_ms": ns / 1e6} for op, ns in stage.times_ns.items()]

    def table(self, args) -> pd.DataFrame:
        """The error table of the benchmark's prediction, with each variant's step and error beside it."""
        runs = pd.DataFrame(self.rows)
        samples = dict(zip(runs["method"], runs["samples_per_step"]))
        measured = {m: list(g["measured_step_ns"]) for m, g in runs.groupby("method", sort=False)}

        def variant(name):
            predicted = {m: list(g[f"{name}_step_ns"]) for m, g in runs.groupby("method", sort=False)}
            return error_table(measured, predicted, samples, "sequential", {label: p for label, _, p in args.runs})

        table = variant("predicted")
        for name in VARIANTS:
            if name != "predicted":
                other = variant(name)
                table[f"{name}_step_ms"], table[f"{name}_error_pct"] = other["predicted_step_ms"], other["error_pct"]
        return table


def write_results(args, rounds: Rounds, table: pd.DataFrame, elapsed: float, argv) -> str:
    """Every output file of the benchmark; returns the table's header line."""
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "results.csv", table.to_csv(index=False))
    atomic_write_text(out / "runs.csv", pd.DataFrame(rounds.rows).to_csv(index=False))
    atomic_write_text(out / "ops.csv", pd.DataFrame(rounds.ops).to_csv(index=False))
    for label, prof in rounds.profiles.items():
        prof.save(out / "profiles" / f"{label}.json")
    atomic_write_json(out / "probe.json", rounds.probes[-1])
    figures = write_traces_and_figures(args, rounds.last)
    noise = table["spread_pct"]
    header = (f"FCN-{args.processes} width {args.width}, batch {args.batch_size}, linear synthesizers, {args.rounds} rounds x "
              f"{args.steps} steps, pipelines m = {args.microbatches} x {args.batch_size}; "
              f"noise floor (spread of repeated runs) {noise.min():.1f}–{noise.max():.1f} %, "
              f"|error| median {table['error_pct'].abs().median():.1f} %, max {table['error_pct'].abs().max():.1f} %; "
              f"run took {elapsed:.0f} s{' (QUICK: a check, not a measurement)' if args.quick else ''}")
    others = [name for name in VARIANTS if name != "predicted"]
    variants = "\n".join(f"| {r['method']} | {r['predicted_step_ms']:.2f} ({r['error_pct']:+.1f} %) | "
                         + " | ".join(f"{r[name + '_step_ms']:.2f} ({r[name + '_error_pct']:+.1f} %)" for name in others)
                         + " |" for r in table.to_dict(orient="records"))
    atomic_write_text(out / "tables.md", f"# Simulator against reality\n\n{header}\n\n{markdown_table(table)}\n"
                      "What each modelled cause contributes (predicted step ms and error; the prediction models all):"
                      "\n\n| method | predicted | " + " | ".join(name.replace("_", " ") for name in others) + " |\n|"
                      + "---|" * (2 + len(others)) + f"\n{variants}\n")
    atomic_write_json(out / "provenance.json", {
        "command": "python " + shlex.join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "model": config_for(args, "dni", args.steps).to_dict(), "variants": VARIANTS,
        "torch_threads_per_process": 1, "seeds": {"config": args.seed, "sim": args.seed},
        "machine": rounds.probes[-1]["report"]["machine"], "load_average": _loadavg(), "elapsed_s": round(elapsed, 1),
        "probes": rounds.probes, "figures": [str(f) for f in figures], **provenance()})
    return header


def write_traces_and_figures(args, last: dict) -> list[Path]:
    """The last round's measured and simulated traces (CSV) and a side-by-side Gantt figure per method."""
    figures = []
    for label, (meas, sim) in last.items():
        atomic_write_text(args.out / "traces" / f"{label}-measured.csv", meas.to_csv(index=False))
        atomic_write_text(args.out / "traces" / f"{label}-simulated.csv", sim.to_csv(index=False))
        if label == "sequential" and len(last) > 1:
            continue
        steps = max(1, args.steps // 2 - 1)
        window = range(steps, steps + (2 if label in PIPELINES else 3))
        figures += save_side_by_side(meas, sim, window, args.figures / f"gantt-{label}",
                                     title=f"{label}: measured (top) and simulated (bottom), FCN-{args.processes} "
                                           f"w{args.width}, batch {args.batch_size}, {args.processes} processes")
    return figures


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    args = parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    from sglab.data import load_dataset

    dataset = load_dataset("embedded")
    began = time.monotonic()
    rounds = Rounds()
    for round_ in range(args.rounds):
        print(f"round {round_ + 1}/{args.rounds} ({time.monotonic() - began:.0f} s)", flush=True)
        rounds.run(args, round_, dataset)
    table = rounds.table(args)
    header = write_results(args, rounds, table, time.monotonic() - began, argv)
    print(header)
    print(table.round(3).to_string(index=False))
    return 0


def _loadavg() -> list[float] | None:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None


if __name__ == "__main__":
    raise SystemExit(main())
