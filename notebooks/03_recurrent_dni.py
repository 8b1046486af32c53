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
# # 03 · Recurrent DNI: synthetic gradients across truncation boundaries
#
# A recurrent network trained with **truncated BPTT** is cut into chunks of `T` ticks and
# updated after each chunk; the gradient from everything after the chunk is simply dropped.
# DNI puts a **synthesizer** `M(s)` at each truncation boundary: it predicts the gradient the
# future would send into the chunk's last state `s`, and it learns from a bootstrapped target
# (the gradient arriving at the *next* chunk's first state, which itself includes that chunk's
# synthetic gradient), like temporal-difference learning. That is backward unlocking *in time*.
#
# This notebook:
#
# 1. trains truncated BPTT (method `nobprop`), DNI (`dni`) and DNI+Aux (`dni-aux`) on the
#    **Copy** task with a length curriculum, and plots the sequence length each reaches;
# 2. trains the **two-RNN system**, where network B's gradient reaches network A only through a
#    DNI (`cdni`), against the ablation where A gets no gradient from B at all (`nobprop`).
#
# `SGLAB_NOTEBOOK_STEPS` sets the training steps of every run (600 by default; CI runs it with
# a tiny budget, at which little is learned). Every statement below about results is computed
# from this notebook's own runs at that budget. Run directories and figures go under
# `SGLAB_NOTEBOOK_OUT`. The full benchmark and what it shows against the paper are in
# `docs/rnn.md`.

# %%
import os
from pathlib import Path

import pandas as pd
import torch
from IPython.display import Image, Markdown

from analysis.rnn_figures import METHOD_NAMES, longest_solved_table, plot_two_rnn
from analysis.style import plt, save_figure, use_paper_style
from sglab.tasks.copy import CopyTask
from sglab.tasks.two_rnn import majority_rate_b
from sglab.training import CopyConfig, TwoRNNConfig, train

STEPS = int(os.environ.get("SGLAB_NOTEBOOK_STEPS", 600))
OUT = Path(os.environ.get("SGLAB_NOTEBOOK_OUT", "runs/notebook-03"))
torch.set_num_threads(1)  # these networks are tiny; more threads only add overhead

# %% [markdown]
# ## The Copy task
#
# The network reads `N` random 2-bit vectors, then a delimiter (the last input channel), and
# must then write the `N` vectors back: `2N + 1` ticks, the last `N` scored. One sequence with
# `N = 3` (rows are ticks):

# %%
task = CopyTask(bits=2)
example = task.sample(length=3, batch=1, generator=torch.Generator().manual_seed(0))
pd.DataFrame({
    "input": [" ".join(str(int(v)) for v in row) for row in example.inputs[:, 0]],
    "target": [" ".join(str(int(v)) for v in row) for row in example.targets[:, 0]],
    "scored": example.mask[:, 0].bool().tolist(),
}).rename_axis("tick")

# %% [markdown]
# **Curriculum.** Training starts at `N = 1`; when the bits wrong per sequence, averaged over
# the last 10 batches, drop below 0.15 (the paper's criterion), length `N` is *solved* and
# training moves on to `N + 1`. The number to compare is the longest length solved.
#
# With truncation `T = 2` a chunk holds 2 ticks. For `N = 2` the network must carry what it read
# at ticks 0–1 to the writes at ticks 3–4, across a truncation boundary; plain truncated BPTT
# never sends a gradient across a boundary, so nothing teaches the network to keep what it read.
# DNI's synthetic gradient carries an estimate of that future gradient across the boundary.
# **DNI+Aux** adds an auxiliary task: from its state after the chunk's first tick, the network
# also predicts the synthetic gradient the chunk's end will receive (our reading of the paper's
# auxiliary task; see `docs/rnn.md`).
#
# A small budget: an LSTM with 64 units, batches of 32 sequences, Adam 1e-2, `STEPS` steps each
# (the docs' benchmark uses 2,000 steps and several `T`; the paper far more). Each run is an
# ordinary run directory, as `sglab train --task copy` writes it.

# %%
TRUNCATION = 2
copy_runs, copy_metrics = [], []
for method in METHOD_NAMES:  # nobprop, dni, dni-aux
    config = CopyConfig(method=method, truncation=TRUNCATION, bits=2, hidden=64, batch_size=32, steps=STEPS,
                        max_length=40, lr=1e-2, seed=0, device="cpu")
    result = train(config, OUT / f"copy-{method}-T{TRUNCATION}", progress=False)
    copy_runs.append(result.summary)
    copy_metrics.append(pd.DataFrame(result.metrics).assign(method=method))

copy_results = pd.DataFrame(copy_runs)
copy_metrics = pd.concat(copy_metrics, ignore_index=True)
copy_results[["method", "truncation", "longest_solved", "steps", "updates", "train_time_s"]]

# %%
Markdown(longest_solved_table(copy_results))

# %% [markdown]
# ## Curriculum length reached against training step
#
# Left: the length `N` each method is training on at each step (it steps up by one each time a
# length is solved). Right: bits wrong per sequence (a 10-step running mean) against the
# solved threshold; a length is solved once the mean over its last 10 batches drops below the
# dashed line, after which the next, longer length usually makes the error jump back up.

# %%
use_paper_style()
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
for method, rows in copy_metrics[copy_metrics.kind == "train"].groupby("method", sort=False):
    left.step(rows.step, rows.length, where="post", label=METHOD_NAMES[method])
    right.plot(rows.step, rows.bit_errors.rolling(10, min_periods=1).mean(), label=METHOD_NAMES[method])
left.set(xlabel="training step", ylabel="curriculum length N", title=f"Copy, T = {TRUNCATION}")
left.yaxis.get_major_locator().set_params(integer=True)
right.axhline(0.15, color="grey", linestyle="--", linewidth=1, label="solved threshold")
right.set(xlabel="training step", ylabel="bits wrong per sequence", title="error (10-step mean)")
left.legend(fontsize="small")
right.legend(fontsize="small")
fig.tight_layout()
paths = save_figure(fig, OUT / "copy_curriculum")
Image(filename=str(paths[0]))


# %% [markdown]
# What these runs show, computed from them (one seed, so a difference of one length is within
# what another seed could change; `docs/rnn.md` has the table over `T ∈ {2, 3, 4, 5, 8}` and
# both copy tasks):

# %%
def copy_findings(results: pd.DataFrame) -> str:
    """The longest lengths solved and the cost per update, in words, from this notebook's copy runs."""
    by = results.set_index("method")
    solved = {m: int(by.longest_solved[m]) for m in METHOD_NAMES}
    ahead = [METHOD_NAMES[m] for m in ("dni", "dni-aux") if solved[m] > solved["nobprop"]]
    behind = [METHOD_NAMES[m] for m in ("dni", "dni-aux") if solved[m] < solved["nobprop"]]
    lines = [f"At this budget ({STEPS} steps, seed 0, T = {TRUNCATION}) the longest length solved was "
             + ", ".join(f"{METHOD_NAMES[m]} {n}" for m, n in solved.items()) + "."]
    if ahead:
        lines.append(f"{' and '.join(ahead)} got further than plain truncation.")
    if behind:
        lines.append(f"{' and '.join(behind)} stayed behind plain truncation.")
    if not ahead and not behind:
        lines.append("No synthetic-gradient method got further than plain truncation: this budget is too small "
                     "to tell them apart.")
    per_update = by.train_time_s / by.updates * 1e3
    lines.append("With DNI every chunk's update also runs the synthesizer (S) and trains it (T); the wall time per "
                 "update here was "
                 + ", ".join(f"{METHOD_NAMES[m]} {per_update[m]:.2f} ms" for m in METHOD_NAMES)
                 + ".")
    return " ".join(lines)


Markdown(copy_findings(copy_results))

# %% [markdown]
# ## Two RNNs talking through a DNI
#
# Network **A** reads a stream of MNIST digits (the embedded digits), one per tick, and must say
# at every tick how many 3s it has seen so far. Network **B** ticks once every 4 ticks of A, sees
# only A's 16-wide *message*, and must say how many odd digits A saw since B's last tick. Only A
# sees the digits, so B can succeed only if A puts "odd" into its message, and the only reason A
# has to is the gradient of B's loss. Two ways for that gradient (not) to reach A:
#
# * `cdni`: A owns a synthesizer `M_B(m, c) ≈ ∂L_B/∂m` (conditioned on B's target `c`, like
#   cDNI). A updates at once with its own loss plus the synthetic gradient; B's true gradient
#   only trains `M_B`. Neither network waits for the other.
# * `nobprop` (the ablation): A gets no gradient from B.
#
# Both runs have the same budget (`STEPS` steps of 32 episodes of 12 digits, Adam 3e-3). B's
# accuracy should be compared with its *majority guess* (always answering the most likely count),
# drawn dashed.

# %%
TICK_RATIO = 4
two_rnn_runs, two_rnn_metrics = [], []
for method in ("cdni", "nobprop"):
    config = TwoRNNConfig(method=method, tick_ratio=TICK_RATIO, b_ticks=3, batch_size=32, lr=3e-3, steps=STEPS,
                          eval_every=max(STEPS // 10, 1), eval_episodes=256, seed=0, device="cpu")
    result = train(config, OUT / f"two-rnn-{method}", progress=False)
    two_rnn_runs.append(result.summary)
    two_rnn_metrics.append(pd.DataFrame(result.metrics).assign(method=method))

two_rnn_results = pd.DataFrame(two_rnn_runs)
two_rnn_metrics = pd.concat(two_rnn_metrics, ignore_index=True)
two_rnn_results[["method", "steps", "test_accuracy_a", "test_accuracy_b", "chance_b", "train_time_s"]]

# %%
chance = majority_rate_b(TICK_RATIO)
paths = plot_two_rnn(two_rnn_metrics, OUT / "two_rnn", chance_b=chance)
Image(filename=str(paths[0]))


# %% [markdown]
# Held-out accuracy over training. What these two runs show, computed from them:

# %%
def two_rnn_findings(results: pd.DataFrame) -> str:
    """Both networks' final held-out accuracies against B's majority guess, in words."""
    by = results.set_index("method")
    a, b = by.test_accuracy_a, by.test_accuracy_b
    lines = [f"At this budget ({STEPS} steps, seed 0) A counted its 3s with held-out accuracy {a['cdni']:.3f} "
             f"through the DNI and {a['nobprop']:.3f} without a gradient from B.",
             f"B's held-out accuracy was {b['cdni']:.3f} through the DNI and {b['nobprop']:.3f} without, against "
             f"a majority guess of {chance:.3f}."]
    margin = 0.05  # a few held-out episodes either way is noise, not learning
    if b["cdni"] > chance + margin and b["cdni"] > b["nobprop"] + margin:
        lines.append("Only through the DNI did B learn to count beyond guessing: A put \"odd\" into its message.")
    elif b["cdni"] <= chance + margin:
        lines.append(f"B did not get more than {margin} above its majority guess through the DNI: this budget is "
                     "too small for A to learn to talk.")
    else:
        lines.append("B beat its majority guess without a gradient from B as well, so A's message carried "
                     "\"odd\" without being taught to.")
    return " ".join(lines)


Markdown(two_rnn_findings(two_rnn_results))

# %% [markdown]
# `docs/rnn.md` trains these networks for 1,000 steps and also compares the locked true
# gradient (`bprop`: A waits for B's backward) and a synthesizer that sees the message alone
# (`dni`); the doc explains why that one fails.
