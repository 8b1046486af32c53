"""Fidelity probes: how good a run's synthetic gradients are, measured while it trains.

A probe is an observer (:mod:`sglab.exec.observe`) that, at the steps it is attached to, records
for every interface the synthetic gradient ``δ̂_i``, the bootstrapped target the synthesizer is
trained on, and the true gradient ``δ_i`` of the current loss through the real network above,
computed by a shadow pass that touches nothing of the run (:mod:`sglab.probes.shadow`), and, per
stage, the parameter gradient from ``δ̂_i`` and from ``δ_i``. What is computed when is in each
runner's probe: :mod:`~sglab.probes.chain`, :mod:`~sglab.probes.recurrent`,
:mod:`~sglab.probes.two_rnn`. The metrics are :mod:`sglab.probes.metrics`.

With ``RunConfig.probe_every`` set, the training loop probes every that many steps and writes the
run's ``fidelity.csv`` (:mod:`sglab.probes.log`). A method with no synthetic gradient (bprop,
nobprop) records the true gradient's norm and the backprop update's: the scale DNI is read against.
"""

from sglab.probes.chain import ChainProbe
from sglab.probes.log import FIDELITY_FILE, FidelityLog
from sglab.probes.metrics import compare, cosine, fidelity_metrics, norm_ratio, per_sample_cosine, relative_error, sign_agreement
from sglab.probes.probe import FIDELITY_COLUMNS, Probe
from sglab.probes.recurrent import RecurrentProbe
from sglab.probes.two_rnn import TwoRNNProbe

__all__ = ["FIDELITY_COLUMNS", "FIDELITY_FILE", "ChainProbe", "FidelityLog", "Probe", "RecurrentProbe", "TwoRNNProbe",
           "compare", "cosine", "fidelity_metrics", "norm_ratio", "per_sample_cosine", "relative_error", "sign_agreement"]
