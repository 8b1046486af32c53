"""Copy and Repeat Copy with a length curriculum (as in the DNI paper, after Graves et al. 2014).

Every task hands the runner a :class:`~sglab.tasks.sequences.SequenceBatch` laid out
time-major, ``(ticks, batch, ...)``: ``inputs`` (float), ``targets`` and a ``mask``
``(ticks, batch)`` that is 1 where a target counts.

Copy: the network reads ``N`` random binary vectors of ``bits`` bits, then a delimiter, and
must then write the ``N`` vectors back. Repeat Copy: after the vectors it reads a delimiter
carrying the repeat count ``R`` (as ``R / max_repeats``) and must write the ``N`` vectors ``R``
times, then raise an end flag. Both are scored in bits wrong per sequence; a length counts as
solved when the average over a window of batches falls below 0.15 bits, and the curriculum
then moves on to ``N + 1``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch.nn import functional as F

from sglab.tasks.sequences import SequenceBatch, require

# ---- Copy and Repeat Copy --------------------------------------------------------------------


@dataclass
class CopyTask:
    """Copy (``repeat=False``) or Repeat Copy (``repeat=True``) on ``bits``-bit vectors.

    Attributes:
        bits: width of each vector to remember.
        repeat: Repeat Copy instead of Copy.
        max_repeats: Repeat Copy draws ``R`` uniformly from ``1..max_repeats`` per sequence.
    """

    bits: int = 8
    repeat: bool = False
    max_repeats: int = 3

    def __post_init__(self) -> None:
        require(isinstance(self.bits, int) and self.bits >= 1, f"bits must be an integer >= 1, got {self.bits!r}")
        require(
            isinstance(self.max_repeats, int) and self.max_repeats >= 1,
            f"max_repeats must be an integer >= 1, got {self.max_repeats!r}",
        )

    @property
    def name(self) -> str:
        """``copy`` or ``repeat-copy``."""
        return "repeat-copy" if self.repeat else "copy"

    @property
    def input_size(self) -> int:
        """Data bits, a delimiter channel and (Repeat Copy) a repeat-count channel."""
        return self.bits + (2 if self.repeat else 1)

    @property
    def output_size(self) -> int:
        """Data bits and (Repeat Copy) an end flag."""
        return self.bits + (1 if self.repeat else 0)

    def ticks(self, length: int, repeats: int = 1) -> int:
        """Ticks of one sequence of ``length`` vectors (repeated ``repeats`` times)."""
        if self.repeat:
            return length + 1 + repeats * length + 1
        return 2 * length + 1

    def sample(self, length: int, batch: int, generator: torch.Generator | None = None) -> SequenceBatch:
        """A batch of ``batch`` sequences of ``length`` vectors."""
        require(isinstance(length, int) and length >= 1, f"sequence length must be an integer >= 1, got {length!r}")
        require(isinstance(batch, int) and batch >= 1, f"batch size must be an integer >= 1, got {batch!r}")
        data = torch.randint(0, 2, (length, batch, self.bits), generator=generator).float()
        if not self.repeat:
            return self._copy(data)
        repeats = torch.randint(1, self.max_repeats + 1, (batch,), generator=generator)
        return self._repeat_copy(data, repeats)

    def _copy(self, data: torch.Tensor) -> SequenceBatch:
        length, batch, bits = data.shape
        ticks = self.ticks(length)
        inputs = torch.zeros(ticks, batch, self.input_size)
        inputs[:length, :, :bits] = data
        inputs[length, :, bits] = 1.0  # delimiter: "now write it back"
        targets = torch.zeros(ticks, batch, self.output_size)
        targets[length + 1 :] = data
        mask = torch.zeros(ticks, batch)
        mask[length + 1 :] = 1.0
        return SequenceBatch(inputs, targets, mask)

    def _repeat_copy(self, data: torch.Tensor, repeats: torch.Tensor) -> SequenceBatch:
        length, batch, bits = data.shape
        ticks = self.ticks(length, int(repeats.max()))
        inputs = torch.zeros(ticks, batch, self.input_size)
        inputs[:length, :, :bits] = data
        inputs[length, :, bits] = 1.0
        inputs[length, :, bits + 1] = repeats.float() / self.max_repeats
        targets = torch.zeros(ticks, batch, self.output_size)
        mask = torch.zeros(ticks, batch)
        for b, r in enumerate(repeats.tolist()):
            out = slice(length + 1, length + 1 + r * length)
            targets[out, b, :bits] = data[:, b].repeat(r, 1)
            targets[length + 1 + r * length, b, bits] = 1.0  # end flag
            mask[length + 1 : length + 2 + r * length, b] = 1.0  # shorter sequences are padded, unscored
        return SequenceBatch(inputs, targets, mask)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Bernoulli cross-entropy in nats, summed over scored ticks and bits, averaged over the batch."""
        per_bit = F.binary_cross_entropy_with_logits(outputs, targets, reduction="none")
        return (per_bit.sum(-1) * mask).sum() / outputs.shape[1]

    @staticmethod
    def bit_errors(outputs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Wrong bits per sequence ``(batch,)``: thresholded predictions against the targets."""
        wrong = ((outputs > 0).float() != targets).float().sum(-1)
        return (wrong * mask).sum(0)


@dataclass
class Curriculum:
    """Lengthens the sequences once the current length is solved.

    A length is solved when the mean bits-wrong per sequence over the last ``window`` training
    batches is below ``threshold`` (0.15 in the paper); the curriculum then moves to the next
    length, up to ``max_length``.
    """

    min_length: int = 1
    max_length: int = 64
    threshold: float = 0.15
    window: int = 10
    length: int = 0
    longest_solved: int = 0
    _recent: list[float] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        require(isinstance(self.min_length, int) and self.min_length >= 1,
                 f"min_length must be an integer >= 1, got {self.min_length!r}")
        require(
            isinstance(self.max_length, int) and self.max_length >= self.min_length,
            f"max_length must be an integer >= min_length ({self.min_length}), got {self.max_length!r}",
        )
        require(self.threshold > 0, f"threshold must be > 0, got {self.threshold}")
        require(isinstance(self.window, int) and self.window >= 1, f"window must be an integer >= 1, got {self.window!r}")
        self.length = self.length or self.min_length

    @property
    def finished(self) -> bool:
        """True once ``max_length`` itself is solved."""
        return self.longest_solved >= self.max_length

    def record(self, errors_per_sequence: float) -> bool:
        """Log one batch's mean bits wrong; returns True when this solved the current length."""
        self._recent.append(float(errors_per_sequence))
        self._recent = self._recent[-self.window :]
        if len(self._recent) < self.window or sum(self._recent) / self.window >= self.threshold:
            return False
        self.longest_solved = self.length
        self.length = min(self.length + 1, self.max_length)
        self._recent = []
        return True

    def to_dict(self) -> dict[str, Any]:
        """The settings and progress, for config and summary files."""
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}

    def state_dict(self) -> dict[str, Any]:
        """Progress, including the window of recent errors, for checkpoints."""
        return {"length": self.length, "longest_solved": self.longest_solved, "recent": list(self._recent)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`."""
        self.length, self.longest_solved, self._recent = state["length"], state["longest_solved"], list(state["recent"])
