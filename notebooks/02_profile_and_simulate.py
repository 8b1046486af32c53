# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · Profile and simulate: what does unlocking buy in wall-clock time?
#
# DNI removes *update* and *backward* locking: a stage updates as soon as its synthesizer has
# predicted its gradient, without waiting for the stages above. On one device that changes
# nothing (the same ops run one after another, plus the synthesizer's). It pays off only when
# the stages sit on **different devices**, which this machine does not have. So we split the
# question in two:
#
# 1. **Measure** what each op of each stage costs here, with the profiler
#    (`sglab.profiling.profile_model`): a **CostProfile** of a small DNI FCN on the embedded
#    MNIST digits.
# 2. **Simulate** those measured ops on a *hypothetical* multi-device machine with the SimPy
#    simulator (`sglab.sim.simulate`), once per method of the one registry (`sglab.methods`):
#    GPipe, 1F1B, DNI, DDG and DGL, each against sequential backprop (the baseline).
#
# `SGLAB_NOTEBOOK_STEPS` sets the number of timed profiler repeats (CI runs it with a tiny one);
# figures and tables are written under `SGLAB_NOTEBOOK_OUT`. See `docs/profiler.md` and
# `docs/simulator.md` for the full story.

# %%
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import torch
from IPython.display import Image

from analysis.frontier import frontier_summary, frontier_table, measured_synth_ratios
from analysis.frontier_figures import plot_frontier
from analysis.sim_figures import gantt, plot_sweep, save_figure
from sglab.data import load_dataset
from sglab.profiling import profile_model
from sglab.sim import SimOptions, load_hardware, simulate, simulate_baseline
from sglab.sim.sweep import SweepGrid, frontier_grids, locked_methods, run_sweep
from sglab.training import ClassifyConfig

REPEATS = int(os.environ.get("SGLAB_NOTEBOOK_STEPS", 30))
OUT = Path(os.environ.get("SGLAB_NOTEBOOK_OUT", "runs/notebook-02"))
SIM_STEPS = 30  # simulated training steps per method (simulation is cheap: milliseconds per run)
OUT.mkdir(parents=True, exist_ok=True)

# One torch thread and the thread's own CPU clock: a timing is then not inflated when other
# processes preempt us, which matters on a shared machine (see docs/profiler.md, "Clocks").
torch.set_num_threads(1)

# %% [markdown]
# ## 1. Measure a CostProfile
#
# A 4-layer FCN (width 512, ReLU), one layer per stage, with a *linear* synthesizer on each of
# the three interfaces, batch 128. The micro-benchmark runs whole DNI training steps on one
# fixed batch and times every op the trainer executes: `F` forward, `S` synthesizer forward,
# `B` backward (also split into `I`, the gradient w.r.t. the input, and `W`, w.r.t. the
# weights), `U` optimiser update, `T` synthesizer training step. The last stage has no
# interface above it, hence no `S` or `T`.

# %%
data = load_dataset("embedded")
config = ClassifyConfig(method="dni", model="fcn", layers=4, width=512, synth_hidden_layers=0,
                        batch_size=128, device="cpu", seed=0)
profile = profile_model(config, dataset=data, repeats=REPEATS, warmup=3, clock="thread_time", max_seconds=10)
profile.save(OUT / "profile.json")
m = profile.measurement
print(f"{profile.model['name']} / {profile.method}: {m.source} on {m.device_name} ({m.device}), "
      f"batch {m.batch_size}, {m.statistic} of {m.repeats} repeats after {m.warmup} warm-up, clock {m.timer}")

# %% [markdown]
# ### The per-stage op table
#
# Median microseconds per minibatch (the IQR of the repeats is in `profile.json` as
# `spread_ns`), the bytes of the activation `h_i` that crosses the interface above each stage,
# and the stage's parameter bytes. The last two columns set up the simulation below: the
# stage's own work `F+B+U`, and `r`, the synthesizer's work `S+T` relative to it.

# %%
OPS = ["F", "S", "B", "I", "W", "U", "T"]
ops_table = pd.DataFrame(
    [{"stage": s.index, **{op: s.times_ns.get(op, float("nan")) / 1e3 for op in OPS},
      "act KiB": s.activation_bytes / 1024, "param KiB": s.parameter_bytes / 1024}
     for s in profile.stages]
).set_index("stage")
ops_table["F+B+U"] = ops_table[["F", "B", "U"]].sum(axis=1)
ops_table["r = (S+T)/(F+B+U)"] = ops_table[["S", "T"]].sum(axis=1, min_count=2) / ops_table["F+B+U"]
ops_table.to_csv(OUT / "profile_ops_us.csv")
ops_table.round(2)

# %% [markdown]
# ## 2. Simulate every method on a hypothetical machine
#
# The preset `cluster-10gbe` is a **hypothetical** cluster: copies of the device the profile was
# measured on (here: this CPU), one per node, joined by 10 Gb/s Ethernet through a switch
# (10 µs per hop, assumed). We resize it to one node per stage. Each op takes its measured
# time; an activation or gradient that has to reach another node takes
# `latency + bytes / bandwidth` per hop, overlapping compute.
#
# * the **baseline** of every speedup, sequential backprop: `bprop` with every stage on one node
#   (`simulate_baseline`; `bprop` with one stage per node is naive model parallelism);
# * `gpipe`, `1f1b`: backprop pipelines with `4 × K` microbatches per step, flushed at each step;
# * `dni`: synthetic gradients; a stage runs `F S B U` and trains its synthesizer (`T`) when the
#   true gradient from above arrives;
# * `ddg`: delayed gradients (stage `i` uses gradients `K-1-i` steps stale);
# * `dgl`: decoupled greedy learning with local auxiliary heads (here costed by the measured
#   `S`/`T`), nothing travels backwards.
#
# The summary columns: `speedup` (the baseline's makespan for the same samples ÷ this method's),
# `steady_speedup` (the same on the interval between step completions in the middle of the run,
# without pipeline fill and drain), `bubble_fraction` (idle share of the nodes),
# `mean_utilisation`, and the staleness columns: `max_staleness` (updates between the weights a
# forward used and the update applying its gradient) and `max_synthesizer_lag` (targets a
# synthesizer had not yet trained on when it predicted).

# %%
K = profile.num_stages
hardware = load_hardware("cluster-10gbe").resized(K)
print(hardware.name, "-", hardware.description)

METHODS = ["gpipe", "1f1b", "dni", "ddg", "dgl"]
baseline = simulate_baseline(profile, hardware, SimOptions(steps=SIM_STEPS))
results = {name: simulate(profile, hardware, name, SimOptions(steps=SIM_STEPS)) for name in METHODS}
summary = pd.DataFrame([r.summary for r in results.values()]).set_index("method")
print("speedups over", baseline.summary["baseline"])
summary.to_csv(OUT / "sim_summary.csv")
columns = ["microbatches", "speedup", "steady_speedup", "bubble_fraction", "mean_utilisation",
           "max_staleness", "max_synthesizer_lag", "peak_memory_bytes"]
summary[columns].round(3)

# %% [markdown]
# ## Gantt charts: where each node spends its time
#
# One row per node (and per link direction that carried something), one box per op, coloured
# by op (the same colours in every sglab figure), all on the **same time window**: two
# pipeline steps. To keep the boxes legible, GPipe and 1F1B are re-simulated here with `K`
# microbatches per step instead of the table's `4 × K`. What to look for:
#
# * **the baseline** (sequential backprop): one node does everything; the others are idle.
# * **GPipe / 1F1B**: the diagonal fill and drain of the pipeline at each flush is the *bubble*
#   (with `K` microbatches it is large; the table's `4 × K` shrink it, at the cost of stashing
#   activations). Every activation and gradient crosses the switch in two hops.
# * **DNI**: after the first step every node is busy back to back with its own `F S B U T`: no
#   node waits for a gradient (only `T` waits for its target), but every node carries the extra
#   synthesizer work `S` and `T`, and the node with the most work sets the pace.
# * **DDG**: no synthesizer work and no waiting once full, but stale gradients (`max_staleness`).
# * **DGL**: like DNI in cost here (its local heads are costed by the measured `S`/`T`), with no
#   gradient traffic at all.

# %%
shown = {"baseline": baseline, **results}
for name in ("gpipe", "1f1b"):
    shown[name] = simulate(profile, hardware, name, SimOptions(steps=2, microbatches=K))
window_ns = int(shown["gpipe"].trace["end_ns"].max())  # two GPipe steps of K microbatches

fig, axes = plt.subplots(len(shown), 1, figsize=(12, 2.4 * len(shown) + 1))
for ax, name in zip(axes, shown):
    trace = shown[name].trace
    gantt(trace[trace["start_ns"] < window_ns], title=f"{name} on {hardware.name}", ax=ax)
    ax.set_xlim(0, window_ns / 1e6)
fig.tight_layout()
paths = save_figure(fig, OUT / "gantt")
Image(filename=str(paths[0]))

# %% [markdown]
# ## Why DNI's speedup depends on the synthesizer-to-stage cost ratio
#
# In steady state a DNI step is as slow as its **slowest node**, and node `i` does its stage's
# work plus its synthesizer's: `(F+B+U)_i + (S+T)_i`. The baseline does every stage's
# `F+B+U` on one node. Ignoring transfers (they overlap compute), that gives
#
#     speedup_DNI ≈ Σ_i (F+B+U)_i / max_i [(F+B+U)_i + (S+T)_i].
#
# For `K` uniform stages whose synthesizer work is `r` times the stage's own
# (`S+T = r·(F+B+U)`) this is **`K / (1 + r)`**: the synthesizer's work comes straight off the
# ideal `K×`. A backprop pipeline has no `r` (it pays with its bubble instead), so once `r` is
# large, GPipe/1F1B win; with a cheap synthesizer, DNI approaches `K` and needs no flush.
# Our stages are not uniform (the 10-way output layer is far lighter than the others), so
# the general form is the one to compare with. The uniform formula over-estimates here: the
# light last stage adds almost nothing to the numerator, so it does not count as a whole stage.

# %%
fbu = ops_table["F+B+U"]
st = ops_table[["S", "T"]].sum(axis=1)
predicted = fbu.sum() / (fbu + st).max()
r_mean = (st / fbu)[:-1].mean()
print(f"K = {K}, mean r over stages with a synthesizer = {r_mean:.2f}")
print(f"predicted DNI speedup  Σ(F+B+U) / max(F+B+U+S+T) = {predicted:.2f}")
print(f"uniform-stage estimate K / (1 + r)              = {K / (1 + r_mean):.2f}")
print(f"simulated DNI steady speedup                     = {summary.loc['dni', 'steady_speedup']:.2f}")

# %% [markdown]
# ## Sweeps: link bandwidth and synthesizer cost
#
# `sglab.sim.sweep` runs a grid of simulations through any `concurrent.futures.Executor` (a
# process pool, or a dask cluster, for big grids); these grids are a handful of points, so a
# single thread will do.
#
# **Speedup against link bandwidth** (every link's bandwidth replaced, latency kept). With a
# slow network, transfers of `h_i` and `δ_i` become the bottleneck. Backprop pipelines and DDG
# have both directions on their critical path. A DNI stage never waits for a gradient (only its
# synthesizer's `T` does), and DGL sends no gradients at all, so they keep their speedup down to
# lower bandwidths. At the lowest bandwidth even they slow down: DNI removes update and backward
# locking, not *forward* locking, so every `F` still waits for the activation from below.

# %%
SWEEP_METHODS = ("gpipe", "1f1b", "dni", "ddg", "dgl")
bandwidth_grid = SweepGrid(methods=SWEEP_METHODS, hardware=("cluster-10gbe",),
                           bandwidths=(0.03, 0.1, 0.3, 1.0, 10.0), steps=SIM_STEPS)
with ThreadPoolExecutor(max_workers=1) as pool:
    by_bandwidth = run_sweep(profile, bandwidth_grid, executor=pool, progress=False)
by_bandwidth.to_csv(OUT / "sweep_bandwidth.csv", index=False)
fig = plot_sweep(by_bandwidth, x="bandwidth_GB_per_s", y="steady_speedup", col=None, logx=True,
                 title="steady speedup vs link bandwidth (cluster-10gbe, one node per stage)")
fig.axes[0].set_xlabel("link bandwidth (GB/s per direction)")
paths = save_figure(fig, OUT / "speedup_vs_bandwidth")
Image(filename=str(paths[0]))

# %% [markdown]
# **Speedup against synthesizer cost.** Here the measured `S` and `T` are replaced by a stated
# cost (the simulator's convention: `S = ρ·F`, `T = 2ρ·F`, a training step taken as twice a
# forward), on the default 10 GbE links. The dashed line is the estimate above,
# `Σ(F+B+U) / max(F+B+U+S+T)`, evaluated with those replaced costs: DNI follows it, falling
# from about `K×` at `ρ = 0` (limited by the heaviest stage) while the methods without
# synthesizers stay flat. GPipe/1F1B/DDG pay only for their bubble and staleness.

# %%
ratios = (0.0, 0.25, 0.5, 1.0, 2.0)
synth_grid = SweepGrid(methods=("gpipe", "1f1b", "dni", "ddg"), hardware=("cluster-10gbe",),
                       synth_cost_ratios=ratios, steps=SIM_STEPS)
with ThreadPoolExecutor(max_workers=1) as pool:
    by_synth = run_sweep(profile, synth_grid, executor=pool, progress=False)
by_synth.to_csv(OUT / "sweep_synth_cost.csv", index=False)

has_synth = ops_table["S"].notna()
estimate = [fbu.sum() / (fbu + has_synth * 3 * rho * ops_table["F"]).max() for rho in ratios]
fig = plot_sweep(by_synth, x="synth_cost_ratio", y="steady_speedup", col=None,
                 title="steady speedup vs synthesizer cost (cluster-10gbe)")
ax = fig.axes[0]
ax.plot(ratios, estimate, color="black", linestyle="--", linewidth=1, label="DNI estimate")
for legend in fig.legends:  # one legend, inside, with the estimate in it
    legend.remove()
ax.set_xlabel("synthesizer cost ρ (S = ρ·F, T = 2ρ·F)")
ax.legend(fontsize="small")
paths = save_figure(fig, OUT / "speedup_vs_synth_cost")
Image(filename=str(paths[0]))

# %%
r_per_rho = 3 * (ops_table["F"] / fbu)[has_synth].mean()
print(f"on these stages S + T = 3ρ·F is r = {r_per_rho:.2f}·ρ times F+B+U")
by_synth.pivot(index="method", columns="synth_cost_ratio", values="steady_speedup").round(2)

# %% [markdown]
# ## Where DNI wins
#
# A speedup over sequential backprop is not the decision. The decision is DNI against the **best
# locked schedule** the same machine could run instead: backprop or any pipeline schedule of the
# registry (`locked_methods()`), on **at most** as many nodes (a 2-stage GPipe on 2 of the 4 nodes,
# or backprop on one node, counts), with whatever stage count is fastest. `frontier_grids` runs
# the locked schedules once per point (no synthesizer cost to sweep) and adds backprop on one node;
# `frontier_table` pairs every DNI run with its best locked rival: `ratio` is DNI's steady
# throughput over the rival's (> 1: DNI wins), with both peak memories beside it.
#
# The grid is small (two stage counts, a slow and a fast link, three synthesizer costs and the
# measured synthesizers). On the fast link the flushed pipelines add no work, so DNI wins only
# with nearly free synthesizers; on the slow link transfers dominate every locked schedule, and
# DNI, whose stages never wait for a gradient, can come out ahead. The hollow markers are the
# measured synthesizers, at their own `ρ` for each stage count (`measured_synth_ratios`).

# %%
frontier_grid = SweepGrid(methods=(*locked_methods(), "dni"), hardware=("cluster-10gbe",), stages=(2, K),
                          bandwidths=(0.03, 10.0), synth_cost_ratios=(0.0, 0.5, 1.0, None), steps=SIM_STEPS)
with ThreadPoolExecutor(max_workers=1) as pool:
    frontier_sweep = run_sweep(profile, frontier_grids(frontier_grid), executor=pool, progress=False)
front = frontier_table(frontier_sweep)
front.to_csv(OUT / "frontier.csv", index=False)
print("\n".join(frontier_summary(front)))
paths = save_figure(plot_frontier(front, measured_ratio=measured_synth_ratios(profile, frontier_grid.stages)),
                    OUT / "frontier")
Image(filename=str(paths[0]))

# %%
front.assign(MB=front["peak_memory_bytes"] / 1e6, best_locked_MB=front["best_locked_peak_memory_bytes"] / 1e6)[
    ["stages", "bandwidth_GB_per_s", "synth_cost_ratio", "best_locked", "best_locked_stages",
     "best_locked_steady_speedup", "steady_speedup", "ratio", "wins", "best_locked_MB", "MB"]].round(3)

# %% [markdown]
# ## What this says, and what it does not
#
# * The profile is a real measurement on this machine; the machines the ops are scheduled on
#   are **hypothetical** (copies of this CPU on a network from a data sheet). The simulator
#   models no per-microbatch efficiency loss and no contention between compute and communication
#   (see `docs/simulator.md`, "Not modelled"); this notebook runs one replica (no data parallelism).
# * On a tiny FCN the ops take about a millisecond, so 10 GbE transfers are not free; with
#   `SGLAB_NOTEBOOK_STEPS` small the timings are noisy. For the numbers in the docs, see
#   `benchmarks/sim_worked_example.py`.
# * Whether a synthetic gradient trains as well as the true one is a separate question: see
#   notebook 01 and `docs/training.md`.
