"""A synthesizer's targets as functions of its input, for the objectives that need more than one value.

The L2 target of interface ``i`` is a single tensor, stage ``i+1``'s input gradient. The
Sobolev objective also needs the target's derivative along a direction, so here the target is
rebuilt as a function of ``h``: a functional copy of the stages the gradient came through,
closed either by the loss (the true gradient) or by the next synthesizer's prediction (the
bootstrapped one). The copies share the real modules' weights, detached, and run on *clones*
of their buffers, so nothing of the real run (parameters, gradients, batch-norm running
statistics) changes. The critic's value target needs per-sample losses: :func:`per_sample_loss`.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call, vmap

from sglab.dni.losses import jacobian_vectors

#: ``close(output) -> (root, gradient)``: where backprop through the copied stages starts (a loss
#: and None, or an output and the gradient injected into it).
Closing = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]]


def frozen_call(module: nn.Module, *args) -> torch.Tensor:
    """``module(*args)`` with its weights detached and its buffers cloned: the real module is untouched."""
    state = {name: p.detach() for name, p in module.named_parameters()}
    state.update({name: b.clone() for name, b in module.named_buffers()})
    return functional_call(module, state, args)


def close_with_loss(criterion: Callable, y: torch.Tensor) -> Closing:
    """End at the loss: the target is the true gradient."""
    return lambda output: (criterion(output, y)[0], None)


def close_with_synthesizer(synthesizer: nn.Module, context: torch.Tensor | None) -> Closing:
    """End at a synthesizer: the target is its prediction backpropagated (bootstrapped)."""
    return lambda output: (output, frozen_call(synthesizer, output, context))


def target_jvps(h: torch.Tensor, stages: Sequence[nn.Module], close: Closing,
                directions: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """``J_δ(h) v`` for each ``v``, where ``δ(h)`` is the gradient at the input ``h`` of ``stages``
    when backprop starts where ``close`` says (detached: a target)."""
    leaf = h.detach().requires_grad_(True)
    with torch.enable_grad():
        out = leaf
        for stage in stages:
            out = frozen_call(stage, out)
        root, grad = close(out)
        (delta,) = torch.autograd.grad(root, leaf, grad, create_graph=True)
        return [product.detach() for product in jacobian_vectors(delta, leaf, directions)]


def per_sample_loss(criterion: Callable, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``ℓ_b``: the criterion on each sample alone (its batch loss must be the mean of these)."""
    return vmap(lambda o, t: criterion(o.unsqueeze(0), t.unsqueeze(0))[0])(output.detach(), y)
