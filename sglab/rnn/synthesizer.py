"""The state synthesizer: ``M(s) ≈ ∂L_future/∂s`` for a recurrent state ``s`` (``(h, c)`` for an LSTM).

It is the feed-forward gradient synthesizer (:class:`sglab.dni.synthesizers.MLPSynthesizer`,
zero-initialised last layer, so the first synthetic gradient is exactly 0) applied to the
concatenation of the state's tensors, with its output split back into one gradient per tensor.

Units: a synthesizer predicts the gradient of *one sequence's* loss with respect to that
sequence's state. The trainer divides by the batch size when it injects the prediction into a
batch-mean loss and multiplies its regression target back, so a synthesizer does not depend on
the batch size it was trained with.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from sglab.dni.synthesizers import MLPSynthesizer

#: A recurrent state: ``(h, c)`` for an LSTM, ``(h,)`` for a GRU or a vanilla RNN.
State = tuple[torch.Tensor, ...]


def flatten_state(state: State) -> torch.Tensor:
    """The state's tensors side by side, ``(batch, sum of sizes)``."""
    return torch.cat(state, dim=1) if len(state) > 1 else state[0]


def split_state(flat: torch.Tensor, sizes: Sequence[int]) -> State:
    """Inverse of :func:`flatten_state` for tensors of widths ``sizes``."""
    return tuple(torch.split(flat, list(sizes), dim=1))


class StateSynthesizer(nn.Module):
    """Predicts the future-loss gradient with respect to a recurrent state.

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

    def forward(self, state: State) -> State:
        """Predicted per-sequence gradient, one tensor per state tensor."""
        return split_state(self.forward_flat(state), self.state_sizes)
