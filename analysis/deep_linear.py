"""Deep linear networks keep their critical points under synthetic gradients; a ReLU network does not.

Czarnecki et al. 2017 ("Understanding Synthetic Gradients and Decoupled Neural Interfaces",
Sec. 3) show that for linear and deep linear models trained with linear synthesizers
``SG(h, y)`` the critical points are those of the original problem, and the system converges.
Their synthesizers see the target ``y``: cDNI, whose context for a regression is the target
itself. Then the true gradient at every interface, ``δ_1 = (2/(N·d)) W_2ᵀ(W_2 h_1 − y)`` and its
bootstrapped image ``W_1ᵀ δ̂_1`` one interface down, is affine in ``(h, y)``: a linear
synthesizer can be exact, and DNI reaches the least-squares optimum as backprop does.

Without the target (plain DNI) ``SG(h)`` has to track ``T (W_1 W_0)⁻¹``, which moves with every
update, and with ReLU stages the true gradient is not affine in ``(h, y)`` at all: there
DNI settles at a loss above backprop's. :func:`compare` gives both cases (the test
``tests/dni/test_deep_linear.py`` holds the deep linear one to the optimum;
``benchmarks/fidelity.py`` reports both)::

    python -m analysis.deep_linear 800 l2 sobolev critic
"""

from __future__ import annotations

import math
import sys

import torch
from torch import nn
from torch.nn import functional as F

from sglab.dni.interface import Interface
from sglab.dni.losses import SynthObjective
from sglab.dni.synthesizers import make_critic, make_synthesizer
from sglab.exec.chain import ChainRunner
from sglab.methods import get_method

DIM, SAMPLES = 8, 64


def regression(seed: int = 0, relu_teacher: bool = False, noise: float = 0.3) -> tuple[torch.Tensor, torch.Tensor]:
    """Whitened inputs (``xᵀx/N = I``) and targets of a fixed random teacher: linear plus noise, or a ReLU net."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(SAMPLES, DIM, generator=g))
    x = q * math.sqrt(SAMPLES)
    if relu_teacher:
        a, b = torch.randn(32, DIM, generator=g) / math.sqrt(DIM), torch.randn(DIM, 32, generator=g) / 4
        return x, torch.relu(x @ a.T) @ b.T
    teacher = torch.randn(DIM, DIM, generator=g) / math.sqrt(DIM)
    return x, x @ teacher.T + noise * torch.randn(SAMPLES, DIM, generator=g)


def least_squares_loss(x: torch.Tensor, y: torch.Tensor) -> float:
    """The best loss of any linear map: every deep linear chain of full width can reach it."""
    return float(F.mse_loss(x @ torch.linalg.lstsq(x, y).solution, y))


def mse(output: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The runner's criterion for a regression (no error rate: zero)."""
    return F.mse_loss(output, y), torch.zeros(())


def chain_loss(method: str, x: torch.Tensor, y: torch.Tensor, relu: bool = False, steps: int = 800, seed: int = 0,
               width: int = DIM, lr: float = 1e-2, synth_lr: float = 1e-3, objective: str = "l2") -> float:
    """Train a 3-stage chain (linear without bias, or Linear+ReLU) full-batch with Adam; its final loss.

    Synthesizers are linear (``make_synthesizer("linear")``; the quadratic critic for
    ``objective="critic"``), seeing ``y`` for ``cdni``. Their learning rate is below the stages':
    their weights are in batch-mean gradient units (``~1/(N·d)``), so a larger Adam step would
    make them jitter around their target.
    """
    torch.manual_seed(seed)
    widths = [DIM, width, width, DIM]
    stages = nn.ModuleList(nn.Sequential(nn.Linear(a, b, bias=relu), *([nn.ReLU()] if relu and k < 2 else []))
                           for k, (a, b) in enumerate(zip(widths, widths[1:])))
    context = DIM if get_method(method).context else 0
    make = make_critic if objective == "critic" else make_synthesizer
    synthesizers = [make("linear", (width,), context_dim=context) for _ in range(2)]
    interfaces = [Interface(s, torch.optim.Adam(s.parameters(), lr=synth_lr)) for s in synthesizers]
    runner = ChainRunner(stages, get_method(method), [torch.optim.Adam(s.parameters(), lr=lr) for s in stages],
                         interfaces, criterion=mse, objective=SynthObjective(objective))
    for _ in range(steps):
        runner.step(x, y)
    with torch.no_grad():
        h = x
        for stage in stages:
            h = stage(h)
        return float(F.mse_loss(h, y))


def compare(nonlinear: bool = False, seed: int = 0, steps: int = 800, objective: str = "l2") -> dict[str, float]:
    """Final losses of bprop, cDNI and DNI with linear synthesizers on one problem (for a benchmark).

    ``nonlinear``: a ReLU teacher and ReLU stages of width 16 instead of the deep linear chain;
    ``objective``: what trains the synthesizers (:mod:`sglab.dni.losses`).
    """
    x, y = regression(seed, relu_teacher=nonlinear)
    found = {"initial": float(y.pow(2).mean())}
    if not nonlinear:
        found["optimum"] = least_squares_loss(x, y)
    for method in ("bprop", "cdni", "dni"):
        found[method] = chain_loss(method, x, y, relu=nonlinear, steps=steps, seed=seed, width=16 if nonlinear else DIM,
                                   objective=objective)
    return found


if __name__ == "__main__":
    torch.set_num_threads(1)
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 800
    for objective in sys.argv[2:] or ["l2"]:
        for nonlinear in (False, True):
            found = compare(nonlinear, steps=steps, objective=objective)
            print(objective, "relu" if nonlinear else "deep linear", {k: round(v, 6) for k, v in found.items()})
