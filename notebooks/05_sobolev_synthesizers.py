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
# # 05 · Better-trained synthesizers: L2, Sobolev and critic
#
# The paper trains a synthesizer by L2 regression onto its target gradient (`synth_loss="l2"`).
# Two alternatives (Czarnecki et al. 2017):
#
# - **Sobolev** (`"sobolev"`): also match the target's directional derivatives along random
#   directions, `‖J_M v − J_δ v‖²` (weight `sobolev_weight`);
# - **critic** (`"critic"`): learn a loss estimate `L̂(h, c)` and use its gradient as the synthetic
#   one, trained to match both the gradient and the loss value (weight `critic_value_weight`).
#
# This notebook trains FCN-3 cDNI with each on the embedded digits, probed, and compares test
# error and fidelity at equal steps; then it runs the deep-linear check: with linear synthesizers
# that see the target, DNI keeps the critical points of a deep linear regression, but not of a
# ReLU network. `SGLAB_NOTEBOOK_STEPS` sets the budget; the statements are printed from the runs.

# %%
import os
from pathlib import Path

import pandas as pd

from analysis.deep_linear import compare
from analysis.fidelity import load_fidelity
from analysis.fidelity_figures import fidelity_table, plot_variants
from sglab.data import load_dataset
from sglab.training import ClassifyConfig, train

STEPS = int(os.environ.get("SGLAB_NOTEBOOK_STEPS", 600))
OUT = Path(os.environ.get("SGLAB_NOTEBOOK_OUT", "runs/notebook-05"))
OBJECTIVES = {"l2": {}, "sobolev": {"sobolev_weight": 0.01}, "critic": {"critic_value_weight": 1e-4}}

# %%
data = load_dataset(os.environ.get("SGLAB_NOTEBOOK_DATA", "embedded"), os.environ.get("SGLAB_DATA_DIR"))
rows, runs = [], []
for objective, weights in OBJECTIVES.items():
    config = ClassifyConfig(method="cdni", synth_loss=objective, layers=3, steps=STEPS, batch_size=128, eval_every=STEPS,
                            probe_every=max(STEPS // 10, 1), device="cpu", **weights)
    result = train(config, OUT / objective, progress=False, dataset=data)
    runs.append(result.run_dir)
    rows.append({"objective": objective, "test_error": result.summary["final_test_error"],
                 "train_time_s": result.summary["train_time_s"]})
errors = pd.DataFrame(rows)
errors

# %%
table = load_fidelity(runs, config_fields=("synth_loss",))
plot_variants(table, OUT / "figures" / "objectives", by="synth_loss")
late = fidelity_table(table, by=("synth_loss",), metrics=("synthetic_cosine", "update_cosine"))
late

# %%
cosine = late[late["metric"] == "synthetic_cosine"].set_index("synth_loss")["mean"]
winner = errors.loc[errors["test_error"].idxmin(), "objective"]
print(f"At {STEPS} steps the lowest test error is {winner}'s ({errors['test_error'].min():.3f}); the most faithful "
      f"synthetic gradients are {cosine.idxmax()}'s (cosine {cosine.max():.2f}, L2's {cosine['l2']:.2f}).")

# %% [markdown]
# ## The deep-linear check
#
# Full-batch regression with 3 stages and linear synthesizers; `optimum` is the least-squares loss.

# %%
check = pd.DataFrame([{"problem": "deep linear", **compare(False, steps=max(STEPS, 200))},
                      {"problem": "relu", **compare(True, steps=max(STEPS, 200))}])
check

# %%
linear, relu = check.iloc[0], check.iloc[1]
print(f"deep linear: cDNI ends {100 * (linear['cdni'] / linear['optimum'] - 1):+.2f} % from the optimum "
      f"(backprop {100 * (linear['bprop'] / linear['optimum'] - 1):+.2f} %); "
      f"ReLU: cDNI ends at {relu['cdni'] / relu['bprop']:.1f} x backprop's loss.")
