"""Recurrent tasks: Copy and Repeat Copy with a length curriculum, and character-level language modelling.

Every task hands the trainer a :class:`SequenceBatch` laid out time-major, ``(ticks, batch, ...)``:
``inputs`` (float), ``targets`` and a ``mask`` ``(ticks, batch)`` that is 1 where a target counts.

Copy (as in the DNI paper, after Graves et al. 2014): the network reads ``N`` random binary
vectors of ``bits`` bits, then a delimiter, and must then write the ``N`` vectors back.
Repeat Copy: after the vectors it reads a delimiter carrying the repeat count ``R`` (as
``R / max_repeats``) and must write the ``N`` vectors ``R`` times, then raise an end flag.
Both are scored in bits wrong per sequence; a length counts as solved when the average over a
window of batches falls below 0.15 bits, and the curriculum then moves on to ``N + 1``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch.nn import functional as F

from sglab.errors import SglabError

#: The copy-style tasks.
COPY_TASKS = ("copy", "repeat-copy")


class TaskError(SglabError, ValueError):
    """A task parameter that cannot work; the message names it and the allowed values."""


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise TaskError(message)


@dataclass
class SequenceBatch:
    """A batch of sequences, time-major.

    Attributes:
        inputs: ``(ticks, batch, input_size)`` float.
        targets: ``(ticks, batch, output_size)`` float bits (copy tasks) or ``(ticks, batch)``
            class indices (language modelling).
        mask: ``(ticks, batch)`` float, 1 where the target is scored.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    mask: torch.Tensor

    def to(self, device: torch.device | str) -> "SequenceBatch":
        """The batch on ``device``."""
        return SequenceBatch(self.inputs.to(device), self.targets.to(device), self.mask.to(device))


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
        _require(isinstance(self.bits, int) and self.bits >= 1, f"bits must be an integer >= 1, got {self.bits!r}")
        _require(
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
        _require(isinstance(length, int) and length >= 1, f"sequence length must be an integer >= 1, got {length!r}")
        _require(isinstance(batch, int) and batch >= 1, f"batch size must be an integer >= 1, got {batch!r}")
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
        _require(isinstance(self.min_length, int) and self.min_length >= 1, f"min_length must be an integer >= 1, got {self.min_length!r}")
        _require(
            isinstance(self.max_length, int) and self.max_length >= self.min_length,
            f"max_length must be an integer >= min_length ({self.min_length}), got {self.max_length!r}",
        )
        _require(self.threshold > 0, f"threshold must be > 0, got {self.threshold}")
        _require(isinstance(self.window, int) and self.window >= 1, f"window must be an integer >= 1, got {self.window!r}")
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


# ---- character-level language modelling ------------------------------------------------------

#: Text formats :meth:`CharCorpus.from_files` reads.
TEXT_FORMATS = ("raw", "ptb")


def _symbols(text: str, fmt: str) -> list[str]:
    if fmt == "raw":
        return list(text)
    # Penn Treebank character files: one sentence per line, characters separated by spaces, '_'
    # for a space between words; a line end is a symbol of its own.
    out: list[str] = []
    for line in text.splitlines():
        out.extend(line.split())
        out.append("\n")
    return out


@dataclass
class CharCorpus:
    """A character vocabulary and the train / validation symbol streams as index tensors."""

    vocab: list[str]
    train: torch.Tensor
    valid: torch.Tensor

    @property
    def vocab_size(self) -> int:
        """Number of distinct symbols."""
        return len(self.vocab)

    @classmethod
    def from_text(cls, text: str, valid_fraction: float = 0.1, fmt: str = "raw") -> "CharCorpus":
        """Split one text deterministically: the first ``1 - valid_fraction`` trains, the rest validates."""
        _require(fmt in TEXT_FORMATS, f"text format must be one of {', '.join(TEXT_FORMATS)}, got {fmt!r}")
        _require(0 < valid_fraction < 1, f"valid_fraction must be in (0, 1), got {valid_fraction}")
        symbols = _symbols(text, fmt)
        cut = int(round(len(symbols) * (1 - valid_fraction)))
        return cls._build(symbols[:cut], symbols[cut:])

    @classmethod
    def from_files(cls, path: str | Path, valid_path: str | Path | None = None, fmt: str = "raw", valid_fraction: float = 0.1) -> "CharCorpus":
        """Read a text file (and optionally a separate validation file, as Penn Treebank has)."""
        _require(fmt in TEXT_FORMATS, f"text format must be one of {', '.join(TEXT_FORMATS)}, got {fmt!r}")
        text = _read(path)
        if valid_path is None:
            return cls.from_text(text, valid_fraction, fmt)
        return cls._build(_symbols(text, fmt), _symbols(_read(valid_path), fmt))

    @classmethod
    def _build(cls, train: list[str], valid: list[str]) -> "CharCorpus":
        _require(len(train) >= 2 and len(valid) >= 2, f"text too short: {len(train)} training and {len(valid)} validation characters; need at least 2 of each")
        vocab = sorted(set(train) | set(valid))
        index = {symbol: i for i, symbol in enumerate(vocab)}
        encode = lambda symbols: torch.from_numpy(np.fromiter((index[s] for s in symbols), dtype=np.int64, count=len(symbols)))  # noqa: E731
        return cls(vocab, encode(train), encode(valid))

    def one_hot(self, indices: torch.Tensor) -> torch.Tensor:
        """Float one-hot inputs for symbol indices."""
        return F.one_hot(indices, self.vocab_size).float()

    @staticmethod
    def loss(outputs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Cross-entropy in nats, summed over scored ticks, averaged over the batch."""
        per_tick = F.cross_entropy(outputs.flatten(0, 1), targets.flatten(), reduction="none").view_as(mask)
        return (per_tick * mask).sum() / outputs.shape[1]


def _read(path: str | Path) -> str:
    path = Path(path)
    if not path.is_file():
        raise TaskError(f"{path}: no such text file; pass --text with a plain-text corpus (e.g. tinyshakespeare.txt)")
    return path.read_text(encoding="utf-8", errors="replace")


class CharStream:
    """``batch`` parallel streams over a symbol sequence, served in windows of ``seq_len`` ticks.

    The data is cut into ``batch`` contiguous stretches read side by side, so the recurrent
    state carries over from one window to the next. When the stretches run out the streams
    start again from their beginnings and :attr:`restarted` is set (the caller resets state).
    """

    def __init__(self, corpus: CharCorpus, data: torch.Tensor, batch: int, seq_len: int):
        _require(isinstance(batch, int) and batch >= 1, f"batch size must be an integer >= 1, got {batch!r}")
        _require(isinstance(seq_len, int) and seq_len >= 1, f"sequence length must be an integer >= 1, got {seq_len!r}")
        per_stream = (len(data) - 1) // batch
        _require(
            per_stream >= 1,
            f"text too short for {batch} parallel streams: {len(data)} characters; use a smaller batch size",
        )
        self.corpus, self.seq_len = corpus, seq_len
        self.inputs = data[: per_stream * batch].view(batch, per_stream).t()
        self.targets = data[1 : per_stream * batch + 1].view(batch, per_stream).t()
        self.position, self.restarted = 0, False

    @property
    def ticks_per_pass(self) -> int:
        """Ticks to read every stream once."""
        return self.inputs.shape[0]

    def next(self) -> SequenceBatch:
        """The next window (shorter at the end of a pass)."""
        self.restarted = self.position >= self.ticks_per_pass
        if self.restarted:
            self.position = 0
        window = slice(self.position, min(self.position + self.seq_len, self.ticks_per_pass))
        self.position = window.stop
        inputs, targets = self.inputs[window], self.targets[window]
        return SequenceBatch(self.corpus.one_hot(inputs), targets, torch.ones(targets.shape))

    def one_pass(self) -> Iterator[SequenceBatch]:
        """Every window of one pass from the start (for evaluation)."""
        self.position = 0
        while self.position < self.ticks_per_pass:
            yield self.next()


def bits_per_character(nats_per_symbol: float) -> float:
    """Convert a mean cross-entropy in nats to bits per character."""
    return nats_per_symbol / math.log(2)
