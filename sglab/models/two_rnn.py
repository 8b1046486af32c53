"""The two talking networks of the two-RNN task: A reads digits and sends a message, B reads only the message."""

from __future__ import annotations

import torch
from torch import nn


class NetworkA(nn.Module):
    """Digit encoder, LSTM core, a count-of-3s readout (``counts`` classes) and a message head."""

    def __init__(self, pixels: int, encoder_hidden: int, hidden: int, counts: int, message_size: int):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(pixels, encoder_hidden), nn.ReLU())
        self.core = nn.LSTMCell(encoder_hidden, hidden)
        self.readout = nn.Linear(hidden, counts)
        self.message = nn.Linear(hidden, message_size)

    def forward(self, digits: torch.Tensor, state):
        """Tick through ``digits`` ``(ticks, batch, pixels)``: (count logits per tick, message, state)."""
        codes = self.encoder(digits)
        logits = []
        for code in codes:
            state = self.core(code, state)
            logits.append(self.readout(state[0]))
        return torch.stack(logits), self.message(state[0]), state


class NetworkB(nn.Module):
    """LSTM core reading A's message, and a count-of-odd-digits readout (``counts`` classes)."""

    def __init__(self, message_size: int, hidden: int, counts: int):
        super().__init__()
        self.core = nn.LSTMCell(message_size, hidden)
        self.readout = nn.Linear(hidden, counts)

    def forward(self, message: torch.Tensor, state):
        """One tick: (odd-count logits, state)."""
        state = self.core(message, state)
        return self.readout(state[0]), state
