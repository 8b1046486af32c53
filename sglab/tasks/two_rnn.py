"""The two-RNN task: episodes of MNIST digits, A's target (3s so far) and B's (odd digits per window).

Network A reads a stream of digits, one per tick, and must say at every tick how many 3s it has
seen so far in the episode. Network B ticks once every ``N`` ticks of A, sees nothing but A's
message, and must say how many odd digits A saw since B's previous tick. Only A sees digits, so
B can succeed only if A learns to put "odd" into its message, and the only reason A has to do
that is the gradient of B's loss with respect to the message.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb

import numpy as np
import torch


@dataclass
class Episodes:
    """A batch of digit streams and both networks' targets, time-major."""

    digits: torch.Tensor  # (ticks, batch, 784)
    threes_so_far: torch.Tensor  # (ticks, batch): A's target
    odd_in_window: torch.Tensor  # (b_ticks, batch): B's target


def make_episodes(images: torch.Tensor, labels: torch.Tensor, tick_ratio: int, b_ticks: int, batch: int,
                  generator: torch.Generator) -> Episodes:
    """Sample ``batch`` episodes of ``tick_ratio · b_ticks`` digits drawn uniformly from ``images`` (on its device)."""
    picks = torch.randint(0, len(labels), (tick_ratio * b_ticks, batch), generator=generator)
    digits = labels[picks]
    threes = (digits == 3).long().cumsum(0)
    odd = (digits % 2 == 1).long().view(b_ticks, tick_ratio, batch).sum(1)
    device = images.device
    return Episodes(images[picks.to(device)], threes.to(device), odd.to(device))


def digit_arrays(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Images flattened to ``(n, pixels)`` float32 and labels as int64 tensors."""
    return torch.from_numpy(np.asarray(x, dtype=np.float32).reshape(len(y), -1)), torch.from_numpy(np.asarray(y, dtype=np.int64))


def majority_rate_b(tick_ratio: int) -> float:
    """B's accuracy from always answering the most likely count (odd digits ~ Binomial(N, 1/2))."""
    return max(comb(tick_ratio, k) for k in range(tick_ratio + 1)) / 2**tick_ratio
