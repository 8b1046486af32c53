"""Shadow passes: a module's forward and gradients computed beside the run without touching it.

A shadow pass runs a module through :func:`torch.func.functional_call` on weights it is handed:
parameters detached from the run's (or cloned, to keep them past the run's next update) and
buffers always cloned, so a batch-norm layer updates its running statistics in the clone.
Gradients are taken with :func:`torch.autograd.grad`, which returns them and never writes
``.grad``; nothing here draws random numbers. So the run's parameters, buffers, gradients,
optimizer states and generators are exactly as they would be without the probe.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.func import functional_call

#: A module's weights for a shadow pass: parameters and buffers by name.
Weights = tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]


def current(module: nn.Module) -> Weights:
    """The module's weights as they are now: parameters detached (not copied), buffers cloned.

    Use them before the run's next update of the module: the parameters share its storage.
    """
    return ({name: p.detach() for name, p in module.named_parameters()},
            {name: b.detach().clone() for name, b in module.named_buffers()})


def frozen(module: nn.Module) -> Weights:
    """A copy of the module's weights that no later update of the run reaches."""
    return ({name: p.detach().clone() for name, p in module.named_parameters()},
            {name: b.detach().clone() for name, b in module.named_buffers()})


def learnable(weights: Weights) -> tuple[Weights, list[torch.Tensor]]:
    """``weights`` whose parameters are fresh autograd leaves, and those leaves (to differentiate by)."""
    params, buffers = weights
    leaves = {name: p.detach().requires_grad_(True) for name, p in params.items()}
    return (leaves, buffers), list(leaves.values())


def call(module: nn.Module, weights: Weights, *args):
    """``module(*args)`` with ``weights``; the buffers are cloned again so one copy serves many calls."""
    params, buffers = weights
    return functional_call(module, {**params, **{name: b.clone() for name, b in buffers.items()}}, args)


def leaf(t: torch.Tensor) -> torch.Tensor:
    """A fresh autograd leaf holding ``t``'s values (an observer's tensors are the run's: never mark those)."""
    return t.detach().clone().requires_grad_(True)


def gradient(root: torch.Tensor, wrt: torch.Tensor) -> torch.Tensor:
    """``∂root/∂wrt`` for a scalar ``root`` (zeros where it does not depend on ``wrt``)."""
    (grad,) = torch.autograd.grad(root, [wrt], allow_unused=True)
    return torch.zeros_like(wrt) if grad is None else grad


def parameter_gradients(output: torch.Tensor, params: Sequence[torch.Tensor],
                        grads: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """For each ``g`` of ``grads``: ``J^T g``, the gradient of ``⟨g, output⟩`` in ``params``, as one flat vector."""
    found = []
    for g in grads:
        parts = torch.autograd.grad(output, list(params), g, retain_graph=True, allow_unused=True)
        found.append(torch.cat([(torch.zeros_like(p) if d is None else d).reshape(-1) for p, d in zip(params, parts)]))
    return found
