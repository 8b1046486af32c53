"""The networks of an RNN chain: an LSTM core per network, and a head on its state after a chunk."""

from __future__ import annotations

import torch
from torch import nn


class ChainNetwork(nn.Module):
    """An LSTM core over its inputs and a linear head on the state the chunk ends in.

    For every network but the last the head's output is the message to the next network; for
    the last it is the logits of its target.
    """

    def __init__(self, input_size: int, hidden: int, output_size: int):
        super().__init__()
        self.core = nn.LSTMCell(input_size, hidden)
        self.head = nn.Linear(hidden, output_size)

    @property
    def hidden(self) -> int:
        """The core's width."""
        return self.core.hidden_size

    def forward(self, inputs: torch.Tensor, state):
        """Tick through ``inputs`` ``(ticks, batch, input_size)``: (the head's output after the last tick, state)."""
        for x in inputs:
            state = self.core(x, state)
        return self.head(state[0]), state


def chain_networks(symbols: int, hidden: tuple[int, ...], message_size: int, classes: int) -> nn.ModuleList:
    """Networks ``0..K-1`` (``K = len(hidden)``): the first reads symbols, each later one a message."""
    k = len(hidden)
    sizes_in = [symbols] + [message_size] * (k - 1)
    sizes_out = [message_size] * (k - 1) + [classes]
    return nn.ModuleList(ChainNetwork(i, h, o) for i, h, o in zip(sizes_in, hidden, sizes_out))
