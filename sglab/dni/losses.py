"""What a synthesizer is trained to match (its T op): one loss function per objective.

Units. ``L`` is the batch loss, the mean over the batch of per-sample losses ``ℓ_b``, and the
gradient targets are ``δ = ∂L/∂h`` of that batch mean (so ``1/B`` times a per-sample gradient),
as in the paper's L2 synthesizer. Every gradient term is the mean squared error over all
elements, exactly today's L2 loss. The critic works in the same units: ``δ_b`` is the gradient of
``ℓ_b/B``, sample ``b``'s share of ``L``, so the critic predicts that share, ``L̂_b ≈ ℓ_b/B``, and
``δ̂_b = ∂L̂_b/∂h_b``. (Predicting ``ℓ_b`` itself and dividing its gradient by ``B`` is the same
function class, but its weights must grow ``B`` times larger than a direct synthesizer's from a
zero start, which Adam's bounded steps make ``B`` times slower: measured, a quadratic critic then
reached cosine 0.42 with the true gradient where the linear L2 synthesizer reached 0.88.)

==========  =================================================================================
``l2``      :func:`l2_loss`: ``mean((M(h, c) − δ)²)`` (Jaderberg et al. 2016)
``sobolev`` :func:`sobolev_loss`: a direct synthesizer ``M(h, c) ≈ δ`` that also matches the
            directional derivatives of the target along random directions ``v_1..v_k``:
            ``mean((M − δ)²) + λ · (1/k) Σ_j mean((J_M v_j − J_δ v_j)²)``
``critic``  :func:`critic_loss`: a learned loss ``L̂(h, c)``, one scalar per sample predicting its
            share ``ℓ_b/B`` of the batch loss, whose synthetic gradient is ``δ̂ = ∂(Σ_b L̂_b)/∂h``,
            fitted in value and gradient (a Sobolev loss of order 1):
            ``mean((δ̂ − δ)²) + μ · mean_b((L̂_b − V_b)²)`` with ``V`` a share too
==========  =================================================================================

What ``δ``, ``J_δ v`` and ``V`` are for each interface (the true loss for the last one, the
next synthesizer's prediction, bootstrapped, for deeper ones) is defined by the runner that
builds them (:mod:`sglab.exec.chain`) with the functions of :mod:`sglab.dni.targets`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch.nn import functional as F

#: The objectives a synthesizer can be trained with.
SYNTH_LOSSES = ("l2", "sobolev", "critic")
#: The distributions the Sobolev objective draws its directions from.
DISTRIBUTIONS = ("rademacher", "gaussian")


@dataclass(frozen=True)
class SynthObjective:
    """Which objective trains the synthesizers, and its weights.

    Attributes:
        kind: ``l2``, ``sobolev`` or ``critic`` (:data:`SYNTH_LOSSES`).
        sobolev_weight: ``λ``, the weight of the directional-derivative term (``sobolev``).
        directions: ``k``, random directions per T op (``sobolev``).
        distribution: ``rademacher`` (entries ±1) or ``gaussian`` (standard normal) directions.
        value_weight: ``μ``, the weight of the critic's value term (``critic``).
    """

    kind: str = "l2"
    sobolev_weight: float = 1.0
    directions: int = 1
    distribution: str = "rademacher"
    value_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in SYNTH_LOSSES:
            raise ValueError(f"unknown synthesizer loss {self.kind!r}; choose one of: {', '.join(SYNTH_LOSSES)}")
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(f"unknown direction distribution {self.distribution!r}; choose one of: {', '.join(DISTRIBUTIONS)}")
        if self.directions < 1 or self.sobolev_weight < 0 or self.value_weight < 0:
            raise ValueError(f"need directions >= 1 and weights >= 0, got {self}")


def l2_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The paper's synthesizer loss: the mean squared error to a detached target."""
    return F.mse_loss(prediction, target.detach())


def sobolev_loss(prediction: torch.Tensor, target: torch.Tensor, prediction_jvps: Sequence[torch.Tensor],
                 target_jvps: Sequence[torch.Tensor], weight: float) -> torch.Tensor:
    """L2 on the values plus ``weight`` times the mean over directions of L2 on the directional derivatives."""
    derivatives = torch.stack([l2_loss(p, t) for p, t in zip(prediction_jvps, target_jvps, strict=True)]).mean()
    return l2_loss(prediction, target) + weight * derivatives


def critic_loss(gradient: torch.Tensor, target: torch.Tensor, value: torch.Tensor, target_value: torch.Tensor,
                weight: float) -> torch.Tensor:
    """L2 on the critic's gradient plus ``weight`` times L2 on its per-sample values (shares of the batch loss)."""
    return l2_loss(gradient, target) + weight * l2_loss(value, target_value)


def optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer | None, weight: float = 1.0) -> float:
    """One gradient step of ``weight · loss``; returns the unweighted loss.

    Synthesizers without parameters (e.g. an oracle) are evaluated but not stepped.
    """
    if optimizer is not None:
        optimizer.zero_grad(set_to_none=True)
        (weight * loss).backward()
        optimizer.step()
    return float(loss.detach())


def regression_step(prediction: torch.Tensor, target: torch.Tensor, optimizer: torch.optim.Optimizer | None,
                    weight: float = 1.0) -> float:
    """One L2 regression step of a synthesizer towards ``target``; returns the (unweighted) loss."""
    return optimizer_step(l2_loss(prediction, target), optimizer, weight)


def random_directions(like: torch.Tensor, count: int, distribution: str, generator: torch.Generator) -> list[torch.Tensor]:
    """``count`` random tensors shaped like ``like``, drawn from ``generator`` (a CPU generator, so runs repeat)."""
    shape = (count, *like.shape)
    if distribution == "rademacher":
        draws = torch.randint(0, 2, shape, generator=generator).to(like.dtype) * 2 - 1
    elif distribution == "gaussian":
        draws = torch.randn(shape, generator=generator, dtype=like.dtype)
    else:
        raise ValueError(f"unknown direction distribution {distribution!r}; choose one of: {', '.join(DISTRIBUTIONS)}")
    return list(draws.to(like.device).unbind(0))


def jacobian_vectors(output: torch.Tensor, inputs: torch.Tensor, directions: Sequence[torch.Tensor],
                     create_graph: bool = False) -> list[torch.Tensor]:
    """``J v`` for each direction ``v``: the derivative of ``output`` with respect to ``inputs`` along it.

    Two reverse passes: ``u ↦ Jᵀu`` is linear in a dummy ``u``, so differentiating ``⟨Jᵀu, v⟩``
    by ``u`` gives ``J v``. Reverse mode on the graph already built leaves batch norm's running
    statistics alone, which ``torch.func.jvp`` (a second, forward-mode pass through the
    modules) would update. With ``create_graph`` the products can themselves be
    differentiated (to train a synthesizer on them).
    """
    dummy = torch.zeros_like(output, requires_grad=True)
    (transposed,) = torch.autograd.grad(output, inputs, dummy, create_graph=True)
    return [torch.autograd.grad(transposed, dummy, v, create_graph=create_graph, retain_graph=True)[0] for v in directions]
