"""Synthesizers: models that predict a stage's output gradient (or its input) from local information.

A gradient synthesizer ``M_{i+1}(h_i, c) ≈ δ_i`` returns a tensor shaped like ``h_i``. Its last
layer is zero-initialised (weights and bias), so the first synthetic gradient is exactly zero and
DNI starts as "no update" rather than as noise (Jaderberg et al. 2016, Sec. 3). A critic
(:class:`CriticSynthesizer`) predicts the loss instead and returns its gradient, also zero at first.

An input synthesizer ``I_{i+1}(x, c) ≈ h_i`` predicts a stage's input from the network input,
which is what removes forward locking.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

SYNTHESIZER_KINDS = ("linear", "mlp", "conv")


def _zero_init(layer: nn.Module) -> nn.Module:
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def _mlp(fan_in: int, hidden_layers: int, width: int, features: int, per_sample: bool = False) -> nn.Sequential:
    """``hidden_layers`` × (Linear, BatchNorm, ReLU), then a zero-initialised Linear to ``features``.

    ``per_sample``: each output depends on its own sample only (no BatchNorm) and smoothly
    (Softplus), as a critic's gradient field must: through batch statistics ``∂(Σ_b L̂_b)/∂h_b``
    would depend on the other samples.
    """
    layers: list[nn.Module] = []
    for _ in range(hidden_layers):
        layers += [nn.Linear(fan_in, width), nn.Softplus()] if per_sample else \
                  [nn.Linear(fan_in, width), nn.BatchNorm1d(width), nn.ReLU()]
        fan_in = width
    return nn.Sequential(*layers, _zero_init(nn.Linear(fan_in, features)))


def _convs(fan_in: int, hidden_layers: int, hidden_channels: int, kernel_size: int, channels: int,
           per_sample: bool = False) -> nn.Sequential:
    """``hidden_layers`` × (Conv, BatchNorm, ReLU), then a zero-initialised Conv to ``channels``; size-preserving.

    ``per_sample`` as for :func:`_mlp` (Conv, Softplus).
    """
    pad = kernel_size // 2
    layers: list[nn.Module] = []
    for _ in range(hidden_layers):
        conv = nn.Conv2d(fan_in, hidden_channels, kernel_size, padding=pad)
        layers += [conv, nn.Softplus()] if per_sample else [conv, nn.BatchNorm2d(hidden_channels), nn.ReLU()]
        fan_in = hidden_channels
    return nn.Sequential(*layers, _zero_init(nn.Conv2d(fan_in, channels, kernel_size, padding=pad)))


def _with_context(h: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
    """Concatenate a one-hot context to ``h``: as features for vectors, as constant channels for maps."""
    if context is None:
        return h
    if h.dim() == 2:
        return torch.cat([h, context], dim=1)
    planes = context[:, :, None, None].expand(-1, -1, h.shape[2], h.shape[3])
    return torch.cat([h, planes], dim=1)


class MLPSynthesizer(nn.Module):
    """``hidden_layers`` × (Linear, BatchNorm, ReLU) then a zero-initialised Linear.

    With ``hidden_layers=0`` this is the linear synthesizer. Inputs of any shape are flattened
    and the output is reshaped back, so it also serves convolutional feature maps.
    """

    def __init__(self, shape: tuple[int, ...], hidden_layers: int = 0, width: int = 1024, context_dim: int = 0):
        super().__init__()
        self.shape = tuple(shape)
        self.context_dim = context_dim
        features = math.prod(self.shape)
        self.net = _mlp(features + context_dim, hidden_layers, width, features)

    def forward(self, h: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """Predict ``δ̂`` shaped like ``h``."""
        flat = _with_context(h.flatten(1), context)
        return self.net(flat).view(h.shape)


class ConvSynthesizer(nn.Module):
    """``hidden_layers`` × (Conv k×k, BatchNorm, ReLU) then a zero-initialised Conv, size-preserving.

    The paper's CNN synthesizers are of this kind; the label context enters as constant planes.
    """

    def __init__(
        self,
        channels: int,
        hidden_layers: int = 2,
        hidden_channels: int = 128,
        kernel_size: int = 5,
        context_dim: int = 0,
    ):
        super().__init__()
        self.net = _convs(channels + context_dim, hidden_layers, hidden_channels, kernel_size, channels)

    def forward(self, h: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """Predict ``δ̂`` shaped like ``h`` (N, C, H, W)."""
        return self.net(_with_context(h, context))


def make_synthesizer(
    kind: str,
    shape: tuple[int, ...],
    hidden_layers: int = 0,
    width: int = 1024,
    context_dim: int = 0,
) -> nn.Module:
    """Build a gradient synthesizer for an activation of per-example ``shape``.

    ``kind`` is ``linear`` (no hidden layer), ``mlp`` or ``conv`` (feature maps only).
    """
    if kind == "linear":
        return MLPSynthesizer(shape, 0, width, context_dim)
    if kind == "mlp":
        return MLPSynthesizer(shape, hidden_layers, width, context_dim)
    if kind == "conv":
        if len(shape) != 3:
            raise ValueError(f"a conv synthesizer needs (C, H, W) feature maps, got shape {shape}")
        return ConvSynthesizer(shape[0], hidden_layers, width, context_dim=context_dim)
    raise ValueError(f"unknown synthesizer kind {kind!r}; choose one of: {', '.join(SYNTHESIZER_KINDS)}")


class CriticSynthesizer(nn.Module):
    """A learned loss ``L̂(h, c)``, one scalar per sample estimating its share ``ℓ_b/B`` of the batch
    loss; its synthetic gradient is the autograd gradient ``δ̂ = ∂(Σ_b L̂(h_b, c_b))/∂h``, in the
    same batch-mean units (and at the same weight scale) as a direct synthesizer's ``δ̂``.

    Without hidden layers (``linear``) it is the quadratic critic ``L̂ = ½⟨z, M z⟩ + a`` in
    ``z = [h, c]`` with ``M`` affine (a zero-initialised Linear, one conv for maps): its ``δ̂`` is
    affine in ``(h, c)`` as the linear synthesizer's is (with a symmetric ``h`` block), and its
    value can hold any quadratic of ``(h, c)``, such as a squared error against a regression
    target. A critic linear in ``h`` would have a constant ``δ̂``.

    With hidden layers it is that quadratic critic plus a per-sample, smooth body (``mlp``:
    Linear, Softplus on the flattened ``[h, c]``; ``conv``: Conv, Softplus on ``h`` with label
    planes; no batch norm, whose statistics would mix the samples' gradients) ending in a
    zero-initialised scalar head (for maps a convolution to one channel, averaged over
    positions). The quadratic part is there because a body alone learnt almost nothing: the
    gradient of a scalar MLP is ``W_1ᵀ(σ(W_1 z) ⊙ w_2)``, which varies with ``h`` only through
    the Softplus curvature, so from a zero head its ``δ̂`` stayed nearly constant over samples
    (measured on MNIST FCN-4 cDNI: norm ratio 0.002-0.2, cosine about 0, 24 % test error
    at 1,500 steps; with the quadratic part 5.3 % validation error at 800 steps).
    Either way the output layer starts at zero, so the first ``δ̂`` is exactly zero.
    """

    def __init__(self, shape: tuple[int, ...], hidden_layers: int = 1, width: int = 1024, context_dim: int = 0,
                 conv: bool = False, kernel_size: int = 5):
        super().__init__()
        self.shape, self.conv, self.quadratic = tuple(shape), conv, hidden_layers == 0
        fan_in = shape[0] + context_dim if conv else math.prod(self.shape) + context_dim
        # M maps z = [h, c] to a tensor like z
        self.hessian = ConvSynthesizer(fan_in, 0, width, kernel_size) if conv else MLPSynthesizer((fan_in,), 0, width)
        self.offset = nn.Parameter(torch.zeros(()))
        self.body = None
        if not self.quadratic:
            self.body = (_convs(fan_in, hidden_layers, width, kernel_size, 1, per_sample=True) if conv
                         else _mlp(fan_in, hidden_layers, width, 1, per_sample=True))

    def value(self, h: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """``L̂(h_b, c_b)`` for each sample, shape ``(batch,)``."""
        z = _with_context(h if self.conv else h.flatten(1), context)
        value = 0.5 * (z * self.hessian(z)).flatten(1).sum(1) + self.offset
        if self.body is not None:
            value = value + self.body(z).flatten(1).mean(1)
        return value

    def value_and_gradient(self, h: torch.Tensor, context: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(L̂, δ̂)``. With grad mode on both keep their graphs (``δ̂`` by ``create_graph``) so a
        T op can train through them; a leaf is made of ``h`` unless it already requires grad."""
        keep = torch.is_grad_enabled()
        with torch.enable_grad():
            leaf = h if h.requires_grad else h.detach().requires_grad_(True)
            value = self.value(leaf, context)
            (gradient,) = torch.autograd.grad(value.sum(), leaf, create_graph=keep)
        return (value, gradient) if keep else (value.detach(), gradient)

    def forward(self, h: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """The synthetic gradient ``δ̂`` shaped like ``h``."""
        return self.value_and_gradient(h, context)[1]


def make_critic(kind: str, shape: tuple[int, ...], hidden_layers: int = 1, width: int = 1024,
                context_dim: int = 0) -> CriticSynthesizer:
    """Build a critic for an activation of per-example ``shape``; ``kind`` as for :func:`make_synthesizer`."""
    if kind not in SYNTHESIZER_KINDS:
        raise ValueError(f"unknown synthesizer kind {kind!r}; choose one of: {', '.join(SYNTHESIZER_KINDS)}")
    if kind == "conv" and len(shape) != 3:
        raise ValueError(f"a conv synthesizer needs (C, H, W) feature maps, got shape {shape}")
    return CriticSynthesizer(shape, 0 if kind == "linear" else hidden_layers, width, context_dim, conv=kind == "conv")


class InputSynthesizer(nn.Module):
    """``I(x, c) ≈ h``: predicts a stage's input from the network input (forward unlocking).

    Vector targets use an MLP on the flattened input; feature-map targets use a small conv net
    followed by adaptive average pooling to the target's resolution.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        target_shape: tuple[int, ...],
        hidden_layers: int = 1,
        width: int = 1024,
        context_dim: int = 0,
    ):
        super().__init__()
        self.target_shape = tuple(target_shape)
        self.maps = len(target_shape) == 3 and len(input_shape) == 3
        layers: list[nn.Module] = []
        if self.maps:
            fan_in = input_shape[0] + context_dim
            for _ in range(hidden_layers):
                layers += [nn.Conv2d(fan_in, width, 5, padding=2), nn.BatchNorm2d(width), nn.ReLU()]
                fan_in = width
            layers += [nn.AdaptiveAvgPool2d(target_shape[1:]), nn.Conv2d(fan_in, target_shape[0], 1)]
        else:
            fan_in = math.prod(input_shape) + context_dim
            for _ in range(hidden_layers):
                layers += [nn.Linear(fan_in, width), nn.BatchNorm1d(width), nn.ReLU()]
                fan_in = width
            layers.append(nn.Linear(fan_in, math.prod(target_shape)))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """Predict ``ĥ`` with per-example shape ``target_shape``."""
        if self.maps:
            return self.net(_with_context(x, context))
        out = self.net(_with_context(x.flatten(1), context))
        return out.view(x.shape[0], *self.target_shape)


def one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Float one-hot context ``c`` for cDNI."""
    return F.one_hot(labels, num_classes).to(torch.get_default_dtype())


#: A recurrent state: ``(h, c)`` for an LSTM, ``(h,)`` for a GRU or a vanilla RNN.
State = tuple[torch.Tensor, ...]


def flatten_state(state: State) -> torch.Tensor:
    """The state's tensors side by side, ``(batch, sum of sizes)``."""
    return torch.cat(state, dim=1) if len(state) > 1 else state[0]


def split_state(flat: torch.Tensor, sizes: Sequence[int]) -> State:
    """Inverse of :func:`flatten_state` for tensors of widths ``sizes``."""
    return tuple(torch.split(flat, list(sizes), dim=1))


class StateSynthesizer(nn.Module):
    """``M(s) ≈ ∂L_future/∂s`` for a recurrent state ``s``: an :class:`MLPSynthesizer` on the
    state's tensors side by side (zero-initialised, so the first synthetic gradient is exactly 0),
    its output split back into one gradient per tensor.

    Args:
        state_sizes: width of each state tensor, e.g. ``(hidden, hidden)`` for an LSTM.
        hidden_layers: 0 for the linear synthesizer (the paper's choice for RNNs); more gives
            an MLP with ``width`` units per hidden layer.
        width: hidden-layer width of the MLP variant.
    """

    def __init__(self, state_sizes: Sequence[int], hidden_layers: int = 0, width: int = 256):
        super().__init__()
        if not state_sizes or any(size < 1 for size in state_sizes):
            raise ValueError(f"state_sizes must be positive widths, got {tuple(state_sizes)}")
        self.state_sizes = tuple(int(size) for size in state_sizes)
        self.net = MLPSynthesizer((sum(self.state_sizes),), hidden_layers=hidden_layers, width=width)

    def forward_flat(self, state: State) -> torch.Tensor:
        """The prediction as one ``(batch, sum of sizes)`` tensor (the regression's output)."""
        return self.net(flatten_state(state))

    def forward(self, state: State, context: torch.Tensor | None = None) -> State:
        """Predicted per-sequence gradient, one tensor per state tensor (a state synthesizer has no context)."""
        return split_state(self.forward_flat(state), self.state_sizes)
