"""Character-level language modelling: a corpus, parallel streams over it, bits per character."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.nn import functional as F

from sglab.tasks.sequences import SequenceBatch, TaskError, require

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
        require(fmt in TEXT_FORMATS, f"text format must be one of {', '.join(TEXT_FORMATS)}, got {fmt!r}")
        require(0 < valid_fraction < 1, f"valid_fraction must be in (0, 1), got {valid_fraction}")
        symbols = _symbols(text, fmt)
        cut = int(round(len(symbols) * (1 - valid_fraction)))
        return cls._build(symbols[:cut], symbols[cut:])

    @classmethod
    def from_files(cls, path: str | Path, valid_path: str | Path | None = None, fmt: str = "raw",
                   valid_fraction: float = 0.1) -> "CharCorpus":
        """Read a text file (and optionally a separate validation file, as Penn Treebank has)."""
        require(fmt in TEXT_FORMATS, f"text format must be one of {', '.join(TEXT_FORMATS)}, got {fmt!r}")
        text = _read(path)
        if valid_path is None:
            return cls.from_text(text, valid_fraction, fmt)
        return cls._build(_symbols(text, fmt), _symbols(_read(valid_path), fmt))

    @classmethod
    def _build(cls, train: list[str], valid: list[str]) -> "CharCorpus":
        require(len(train) >= 2 and len(valid) >= 2, f"text too short: {len(train)} training and {len(valid)} "
                                                      "validation characters; need at least 2 of each")
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
        require(isinstance(batch, int) and batch >= 1, f"batch size must be an integer >= 1, got {batch!r}")
        require(isinstance(seq_len, int) and seq_len >= 1, f"sequence length must be an integer >= 1, got {seq_len!r}")
        per_stream = (len(data) - 1) // batch
        require(
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
