"""The simulator's worked example in docs/simulator.md: measured profile → simulated speedups.

    python benchmarks/sim_worked_example.py --out docs/results/simulator --figures docs/figures/simulator

1. measures a CostProfile of a 6-layer FCN (width 1024, batch 256, linear synthesizers, every
   DNI op) with ``sglab profile`` on this machine's CPU, unless ``--out`` already holds one;
2. runs ``sglab simulate`` with every method on two hypothetical machines (8 copies of the
   profiled device on 10 GbE, and on HDR InfiniBand), saving the printed tables;
3. runs ``sglab sweep`` over stages, link bandwidth and synthesizer cost;
4. draws the speedup bars and Gantt charts the docs show.

Every number in the docs comes from the files this writes; the commands are printed as run.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shlex
from pathlib import Path

import pandas as pd

from sglab.cli import main as sglab
from sglab.io import atomic_write_json, atomic_write_text, provenance

MACHINES = ("cluster-10gbe", "cluster-ib-hdr")
PROFILE_ARGS = ["profile", "--model", "fcn", "--layers", "6", "--width", "1024", "--synth-hidden-layers", "0",
                "--method", "unlocked", "--batch-size", "256", "--threads", "1", "--clock", "thread_time",
                "--repeats", "30", "--warmup", "5", "--device", "cpu", "--no-progress"]


def run(args: list[str], log: list[dict] | None) -> str:
    """Run ``sglab ARGS`` in-process, echo it and (with a ``log``) record the command and its output."""
    command = "sglab " + shlex.join(args)
    print(f"$ {command}", flush=True)
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = sglab(args)
    if code:
        raise SystemExit(f"{command} failed with exit code {code}")
    if log is not None:
        log.append({"command": command, "output": buffer.getvalue()})
        print(buffer.getvalue(), flush=True)
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    """Run the example; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/results/simulator"))
    parser.add_argument("--figures", type=Path, default=Path("docs/figures/simulator"))
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--reprofile", action="store_true", help="measure the profile again")
    args = parser.parse_args(argv)
    out, log = args.out, []
    profile = out / "profile-fcn6-w1024-unlocked.json"
    if args.reprofile or not profile.is_file():
        run(PROFILE_ARGS + ["--out", str(profile)], log)
    steps = ["--steps", str(args.steps)]
    for machine in MACHINES:
        text = run(["simulate", "--profile", str(profile), "--hardware", machine, *steps], log)
        atomic_write_text(out / f"simulate-{machine}.txt", text)
        data = run(["simulate", "--profile", str(profile), "--hardware", machine, *steps, "--json"], None)
        atomic_write_text(out / f"simulate-{machine}.json", data)
    sweeps = {
        "stages": ["--stages", "1,2,3,6"],
        "bandwidth": ["--bandwidth", "0.01,0.03,0.1,0.3,1,3,10,30"],
        "synth": ["--synth-cost-ratios", "0,0.25,0.5,1,2,4", "--hardware", "cluster-ib-hdr"],
    }
    methods = ["--methods", "bprop,gpipe,1f1b,dni,unlocked,ddg,dgl"]
    for name, extra in sweeps.items():
        hardware = [] if "--hardware" in extra else ["--hardware", ",".join(MACHINES)]
        run(["sweep", "--profile", str(profile), *methods, *hardware, *extra, *steps, "--workers", "2",
             "--no-progress", "--out", str(out / f"sweep-{name}")], log)
    _figures(profile, out, args.figures, args.steps)
    atomic_write_json(out / "commands.json", {"provenance": provenance(), "commands": log})
    return 0


def _figures(profile_path: Path, out: Path, figures: Path, steps: int) -> None:
    from analysis.sim_figures import gantt, plot_speedups, save_figure
    from sglab.costprofile import CostProfile
    from sglab.sim import load_hardware, simulate, simulate_baseline

    rows = []
    for machine in MACHINES:
        rows += json.loads((out / f"simulate-{machine}.json").read_text())
    table = pd.DataFrame(rows)
    table["hardware"] = table["hardware"].str.replace(r"\[\d+\]$", "", regex=True)
    # cdni/cunlocked have dni's/unlocked's dependencies; nobprop and stochastic skip most of the work
    shown = table[~table["method"].isin(["cdni", "cunlocked", "nobprop", "stochastic"])]
    save_figure(plot_speedups(shown, y="steady_speedup", title="steady-state speedup over sequential backprop "
                                                              "(simulated, 6 stages on 6 nodes)"), figures / "speedups")
    profile = CostProfile.load(profile_path)
    hw = load_hardware("cluster-10gbe").resized(profile.num_stages)
    import matplotlib.pyplot as plt

    runs = {"sequential backprop (the baseline)": simulate_baseline(profile, hw, steps=4)}
    runs.update({m: simulate(profile, hw, m, steps=4, microbatches=6, baseline=False)
                 for m in ("gpipe", "1f1b", "dni", "unlocked")})
    fig, axes = plt.subplots(len(runs), 1, figsize=(12, 15))
    for ax, (name, result) in zip(axes, runs.items()):
        gantt(result.trace, ax=ax, labels=False, max_steps=2 if result.summary["microbatches"] > 1 else 3,
              title=f"{name} on {hw.name}")
    fig.tight_layout()
    save_figure(fig, figures / "gantt")
    for name, column in (("stages", "speedup_vs_stages"), ("bandwidth", "speedup_vs_bandwidth_GB_per_s"),
                         ("synth", "speedup_vs_synth_cost_ratio")):
        source = out / f"sweep-{name}" / f"{column}.png"
        if source.is_file():
            (figures / f"{column}.png").write_bytes(source.read_bytes())


if __name__ == "__main__":
    raise SystemExit(main())
