"""The RNN-chain task: a stream of symbols that only the first network sees, a count that only the last must give.

Network 0 reads one symbol per tick (one-hot). Network ``k`` ticks once every ``ratios[k-1]``
ticks of network ``k-1``, so the last network ticks once every ``prod(ratios)`` symbols; at
each of its ticks it must say how many *marked* symbols (the odd ones: 1, 3, 5 ...) arrived
since its previous tick. Nothing but network 0 sees a symbol, and each network sees only the
message of the one before, so the count can be learnt only if every network upstream learns
to pass it on: only through every link of the chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb, prod

import torch


@dataclass
class ChainEpisodes:
    """A batch of symbol streams, time-major, and the last network's targets."""

    inputs: torch.Tensor  # (ticks, batch, symbols): one-hot, network 0's input
    symbols: torch.Tensor  # (ticks, batch): the symbols themselves
    counts: torch.Tensor  # (last_ticks, batch): marked symbols per window of the last network


def window(ratios: tuple[int, ...]) -> int:
    """Ticks of network 0 per tick of the last network."""
    return prod(ratios)


def make_chain_episodes(symbols: int, ratios: tuple[int, ...], last_ticks: int, batch: int,
                        generator: torch.Generator, device: torch.device | str = "cpu") -> ChainEpisodes:
    """Sample ``batch`` episodes of ``window(ratios) · last_ticks`` uniform symbols from ``0..symbols-1``."""
    span = window(ratios)
    drawn = torch.randint(0, symbols, (span * last_ticks, batch), generator=generator)
    counts = (drawn % 2 == 1).long().view(last_ticks, span, batch).sum(1)
    inputs = torch.nn.functional.one_hot(drawn, symbols).float()
    return ChainEpisodes(inputs.to(device), drawn.to(device), counts.to(device))


def marked_probability(symbols: int) -> float:
    """The chance that a uniform symbol is marked (odd)."""
    return (symbols // 2) / symbols


def majority_rate(symbols: int, ratios: tuple[int, ...]) -> float:
    """The last network's accuracy from always answering the most likely count (Binomial(window, p))."""
    n, p = window(ratios), marked_probability(symbols)
    return max(comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1))
