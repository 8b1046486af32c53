"""The per-stage ops on explicit tensors: what F, S, B, I, W, U, T, SI and TI do.

Every runner (the feed-forward chain, the recurrent chunks, the two talking networks, a
process per stage) calls these and only orders them; each takes the tensors it works on and
returns what it makes, so the same op runs wherever its inputs come from (the stage below,
a synthesizer, another process).

==========  =================================================================================
``F``       :func:`forward`: the stage's module on its input (a leaf from :func:`input_leaf`)
``S``       :func:`synthesize`: a synthesizer's ``δ̂`` for the stage's output
``B``       :func:`backward`: backpropagate roots (a loss, outputs) with their gradients
``I``/``W`` :func:`backward_input`, :func:`backward_weight`: ``B`` in two halves
``U``       :func:`update`: the optimizer step (optionally clipping the gradient norm first)
``T``/``TI`` :func:`train_synthesizer`: one regression step of a synthesizer on its target
``SI``      :func:`synthetic_input`: an input synthesizer's ``ĥ`` and the leaf the stage reads
==========  =================================================================================
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from sglab.dni.losses import regression_step


def input_leaf(h: torch.Tensor, requires_grad: bool) -> torch.Tensor:
    """``h`` cut from the graph that made it, as the input of the next stage (its ``.grad`` is the input gradient)."""
    return h.detach().requires_grad_(requires_grad)


def forward(module: nn.Module, *inputs, learns: bool = True):
    """F: ``module(*inputs)``, keeping the graph only if the stage ``learns``."""
    with torch.set_grad_enabled(learns):
        return module(*inputs)


def synthesize(synthesizer: nn.Module, h: torch.Tensor | tuple[torch.Tensor, ...], context: torch.Tensor | None = None,
               keep_graph: bool = True):
    """S: ``δ̂ = M(h, c)`` for the stage's output ``h`` (a tensor, or a recurrent state's tuple).

    With ``keep_graph`` the synthesizer's graph is kept for a T that trains on this very
    prediction; without, ``δ̂`` is only a gradient to inject.
    """
    cut = tuple(t.detach() for t in h) if isinstance(h, tuple) else h.detach()
    with torch.set_grad_enabled(keep_graph):
        return synthesizer(cut, context)


def backward(roots: Sequence[torch.Tensor], grads: Sequence[torch.Tensor | None] | None = None,
             optimizer: torch.optim.Optimizer | None = None) -> None:
    """B: backpropagate ``roots`` (a loss: gradient None; an output: its gradient) into ``.grad``.

    With ``optimizer`` its gradients are cleared first; without, they accumulate.
    """
    if optimizer is not None:
        optimizer.zero_grad(set_to_none=True)
    torch.autograd.backward(list(roots), None if grads is None else list(grads))


def backward_input(roots: Sequence[torch.Tensor], grads, inputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """I: the gradient with respect to the stage's inputs only; the graph is kept for :func:`backward_weight`."""
    return torch.autograd.grad(list(roots), list(inputs), None if grads is None else list(grads), retain_graph=True)


def backward_weight(roots: Sequence[torch.Tensor], grads, params: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """W: the gradient with respect to the stage's parameters only (after :func:`backward_input`)."""
    return torch.autograd.grad(list(roots), list(params), None if grads is None else list(grads), retain_graph=True)


def update(optimizer: torch.optim.Optimizer, clip: float | None = None, params=None) -> None:
    """U: one optimizer step; with ``clip``, the gradient norm of ``params`` is clipped to it first."""
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(params, clip)
    optimizer.step()


def train_synthesizer(prediction: torch.Tensor, target: torch.Tensor, optimizer: torch.optim.Optimizer | None,
                      weight: float = 1.0) -> float:
    """T (and TI): one L2 regression step of ``prediction`` towards ``target``; returns the loss.

    The feed-forward runner's other objectives (:mod:`sglab.dni.losses`) step through
    :func:`sglab.dni.losses.optimizer_step` in its own T op.
    """
    return regression_step(prediction, target, optimizer, weight)


def synthetic_input(model: nn.Module, x: torch.Tensor, context: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """SI: ``ĥ = I(x, c)`` (with its graph, for TI) and the leaf the stage reads in its place."""
    predicted = model(x, context)
    return predicted, predicted.detach().requires_grad_(True)
