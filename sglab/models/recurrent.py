"""A recurrent network: a core (LSTM, GRU or vanilla RNN cell) and a linear readout, ticked step by step.

The network is ticked one step at a time (rather than with the fused ``nn.LSTM``) because DNI
needs the state at chunk boundaries as separate leaves: the synthetic gradient enters at the
chunk's last state and the bootstrapped target is read at its first.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sglab.dni.synthesizers import State, flatten_state

#: Recurrent cores a network can be built on.
CORES = ("lstm", "gru", "rnn")


@dataclass
class ChunkForward:
    """What a forward over a run of ticks produced.

    Attributes:
        outputs: readout per tick, ``(ticks, batch, output_size)``.
        first_state: the state after the first tick (the earliest one in this graph; DNI+Aux
            predicts the chunk-end synthetic gradient from it).
        last_state: the state after the last tick.
    """

    outputs: torch.Tensor
    first_state: State
    last_state: State


class RecurrentNet(nn.Module):
    """Core + readout; with ``aux=True`` also a zero-initialised linear head on the state.

    The aux head is the DNI+Aux auxiliary task: from the state early in a chunk it predicts the
    synthetic gradient that will stand in for the future at the chunk's end. It belongs to the
    network (its gradient shapes the core) and is updated with it.
    """

    def __init__(self, input_size: int, hidden: int, output_size: int, core: str = "lstm", aux: bool = False):
        super().__init__()
        if core not in CORES:
            raise ValueError(f"unknown core {core!r}; choose one of: {', '.join(CORES)}")
        if min(input_size, hidden, output_size) < 1:
            raise ValueError(f"sizes must be >= 1, got input {input_size}, hidden {hidden}, output {output_size}")
        self.core_name, self.hidden = core, hidden
        cell = {"lstm": nn.LSTMCell, "gru": nn.GRUCell, "rnn": nn.RNNCell}[core]
        self.core = cell(input_size, hidden)
        self.readout = nn.Linear(hidden, output_size)
        self.aux_head: nn.Linear | None = None
        if aux:
            width = sum(self.state_sizes)
            self.aux_head = nn.Linear(width, width)
            nn.init.zeros_(self.aux_head.weight)
            nn.init.zeros_(self.aux_head.bias)

    @property
    def state_sizes(self) -> tuple[int, ...]:
        """Widths of the state tensors: ``(hidden, hidden)`` for an LSTM, ``(hidden,)`` otherwise."""
        return (self.hidden, self.hidden) if self.core_name == "lstm" else (self.hidden,)

    def initial_state(self, batch: int, device: torch.device | str | None = None) -> State:
        """The all-zero state a sequence starts from."""
        return tuple(torch.zeros(batch, size, device=device) for size in self.state_sizes)

    def tick(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One step: ``(output, new state)`` from input ``x`` ``(batch, input_size)``."""
        if self.core_name == "lstm":
            new_state = self.core(x, state)
        else:
            new_state = (self.core(x, state[0]),)
        return self.readout(new_state[0]), new_state

    def forward(self, inputs: torch.Tensor, state: State) -> ChunkForward:
        """Tick through ``inputs`` ``(ticks, batch, input_size)`` from ``state``."""
        if inputs.shape[0] < 1:
            raise ValueError("need at least one tick")
        outputs, first = [], None
        for x in inputs:
            y, state = self.tick(x, state)
            outputs.append(y)
            first = state if first is None else first
        return ChunkForward(torch.stack(outputs), first, state)

    def predict_future(self, state: State) -> torch.Tensor:
        """The aux head's prediction of a later synthetic gradient (flat, per sequence)."""
        if self.aux_head is None:
            raise ValueError("this network was built without an aux head (aux=False)")
        return self.aux_head(flatten_state(state))
