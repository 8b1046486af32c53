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
# # 04 · How faithful are synthetic gradients?
#
# A DNI stage updates from its synthesizer's `δ̂_i = M(h_i, c)` instead of the true gradient
# `δ_i = ∂L/∂h_i`. A **probe** (`probe_every` in any training config) computes, every few steps
# and for every interface, the true gradient through the real network above by a shadow pass
# that changes nothing the run computes, and logs how `δ̂_i` compares: cosine (over the batch,
# and per sample), relative error, norm ratio, sign agreement; the same for the bootstrapped target
# the synthesizer trains on (bootstrapping error against regression error); and the cosine between
# each stage's DNI update and the backprop update it stands in for.
#
# This notebook trains FCN-4s with DNI and cDNI on the embedded digits (or on full MNIST with
# `SGLAB_NOTEBOOK_DATA=mnist` and `SGLAB_DATA_DIR`), a recurrent copy task and the two talking RNNs,
# all probed, and reads their fidelity. `SGLAB_NOTEBOOK_STEPS` sets the budget (CI runs a tiny one);
# every statement below is printed from what this notebook computed.

# %%
import os
from pathlib import Path

import pandas as pd

from analysis.fidelity import load_fidelity
from analysis.fidelity_figures import fidelity_table, plot_over_training
from sglab.data import load_dataset
from sglab.training import ClassifyConfig, CopyConfig, TwoRNNConfig, train

STEPS = int(os.environ.get("SGLAB_NOTEBOOK_STEPS", 600))
DATA = os.environ.get("SGLAB_NOTEBOOK_DATA", "embedded")
OUT = Path(os.environ.get("SGLAB_NOTEBOOK_OUT", "runs/notebook-04"))
PROBE = max(STEPS // 10, 1)

# %% [markdown]
# ## Train with probes on

# %%
data = load_dataset(DATA, os.environ.get("SGLAB_DATA_DIR"))
runs = []
for method in ("dni", "cdni"):
    for seed in (0, 1):
        config = ClassifyConfig(method=method, layers=4, seed=seed, steps=STEPS, batch_size=128, eval_every=STEPS,
                                probe_every=PROBE, device="cpu")
        result = train(config, OUT / f"{method}-s{seed}", progress=False, dataset=data)
        runs.append(result.run_dir)
        print(f"{method} seed {seed}: test error {result.summary['final_test_error']:.3f} after {STEPS} steps")

# %% [markdown]
# Each run directory now holds `fidelity.csv`: one row per probed step, interface and metric.

# %%
table = load_fidelity(runs, config_fields=("method", "seed"))
print(table.head())
print("metrics:", ", ".join(sorted(table["metric"].unique())))

# %% [markdown]
# ## Cosine of δ̂ and the true δ, per interface (bands: the two seeds)

# %%
plot_over_training(table, OUT / "figures" / "cosine", metric="synthetic_cosine", col="method")
plot_over_training(table, OUT / "figures" / "update_cosine", metric="update_cosine", col="method")
summary = fidelity_table(table, by=("method", "interface"))
summary

# %%
late = summary.pivot_table(index=["method", "interface"], columns="metric", values="mean")
best = late["synthetic_cosine"].idxmax()
worst = late["synthetic_cosine"].idxmin()
print(f"At this budget ({STEPS} steps) the most faithful interface is {best[0]} interface {best[1]} "
      f"(cosine {late['synthetic_cosine'].max():.2f} over the second half of training), the least {worst[0]} "
      f"interface {worst[1]} ({late['synthetic_cosine'].min():.2f}).")
gap = (late["target_cosine"] - late["synthetic_cosine"]).mean()
print(f"The bootstrapped targets are {'closer to' if gap > 0 else 'no closer to'} the true gradient than the "
      f"synthetic gradients are (mean cosine difference {gap:+.2f}): "
      f"{'regression error' if gap > 0 else 'bootstrapping error'} dominates here.")

# %% [markdown]
# ## The recurrent boundary and the two-RNN interface
#
# In time, interface `i` is the state after chunk `i`; the true gradient there is full BPTT's
# gradient of the rest of the sequence's loss. Between two RNNs it is B's true gradient at A's
# message.

# %%
copy = train(CopyConfig(method="dni", truncation=3, bits=4, steps=STEPS, probe_every=PROBE, eval_every=STEPS,
                        device="cpu"), OUT / "copy-dni", progress=False)
two = train(TwoRNNConfig(method="cdni", steps=STEPS, probe_every=PROBE, eval_every=STEPS, eval_episodes=128, device="cpu"),
            OUT / "two-rnn-cdni", progress=False)
recurrent = load_fidelity([copy.run_dir, two.run_dir])
rows = recurrent[recurrent["metric"].isin(["synthetic_cosine", "target_cosine"])]
pd.pivot_table(rows, index=["task", "interface"], columns="metric", values="value", aggfunc="mean")
