"""The configs of recurrent runs: one RNN in chunks of T ticks (copy, repeat copy, char-LM), two RNNs
talking through a DNI, and a chain of RNNs on their own clocks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from sglab.config import ConfigError, spec
from sglab.training.run_config import RunConfig


@dataclass
class RecurrentConfig(RunConfig):
    """A recurrent network trained in chunks of ``truncation`` ticks.

    Attributes:
        truncation: ``T``, ticks per chunk (one update per chunk).
        hidden, core: the network's width and cell (lstm, gru, rnn).
        synth_scale: factor on the synthetic gradient entering each chunk (the paper uses 0.1).
        synth_hidden_layers, synth_width: 0 for a linear synthesizer, else an MLP.
        aux_weight: weight of the DNI+Aux regression loss (``dni-aux`` only).
        clip: clip the network's gradient norm per update to this value (None: no clipping).
    """

    runner: ClassVar[str] = "recurrent"

    method: str = "dni"
    steps: int = spec(2000, ge=1)
    batch_size: int = spec(32, ge=1)
    lr: float = spec(1e-3, gt=0)
    log_every: int = spec(1, ge=1)
    eval_every: int = spec(100, ge=1)
    truncation: int = spec(5, ge=1)
    hidden: int = spec(64, ge=1)
    core: str = spec("lstm", choices=("lstm", "gru", "rnn"))
    synth_scale: float = spec(0.1, ge=0)
    synth_hidden_layers: int = spec(0, ge=0)
    synth_width: int = spec(256, ge=1)
    aux_weight: float = spec(1.0, ge=0)
    clip: float | None = spec(1.0, gt=0)


@dataclass
class CopyConfig(RecurrentConfig):
    """Copy or Repeat Copy with a length curriculum.

    Attributes:
        repeat: Repeat Copy instead of Copy.
        bits: bits per vector (the paper uses 8; small budgets learn faster with fewer).
        max_repeats: Repeat Copy's largest repeat count.
        min_length, max_length: the curriculum's first and last sequence length ``N``.
        threshold: bits wrong per sequence under which a length is solved (paper: 0.15).
        window: batches averaged for the solved test.
    """

    task: ClassVar[str] = "copy"

    repeat: bool = False
    bits: int = spec(8, ge=1)
    max_repeats: int = spec(3, ge=1)
    min_length: int = spec(1, ge=1)
    max_length: int = spec(64, ge=1)
    threshold: float = spec(0.15, gt=0)
    window: int = spec(10, ge=1)

    def validate(self) -> "CopyConfig":
        """Also: the curriculum's lengths must be in order."""
        super().validate()
        if self.max_length < self.min_length:
            raise ConfigError(f"config field 'max_length' must be >= min_length ({self.min_length}), got {self.max_length}")
        return self

    @property
    def task_name(self) -> str:
        """``copy`` or ``repeat-copy``."""
        return "repeat-copy" if self.repeat else "copy"


@dataclass
class CharLMConfig(RecurrentConfig):
    """Character-level language modelling over parallel streams whose state carries on.

    Attributes:
        text: the corpus file; ``valid_text``: a separate validation file (else the last
            ``valid_fraction`` of ``text`` validates).
        text_format: ``raw`` text or ``ptb`` (Penn Treebank character files).
        seq_len: ticks per step and stream.
        eval_chars: validate on at most this many validation characters (None: all).
    """

    task: ClassVar[str] = "charlm"

    text: str = ""
    valid_text: str | None = None
    text_format: str = spec("raw", choices=("raw", "ptb"))
    valid_fraction: float = spec(0.1, gt=0, le=0.9)
    seq_len: int = spec(64, ge=1)
    eval_every: int = spec(250, ge=1)
    eval_chars: int | None = spec(None, ge=1)
    hidden: int = spec(128, ge=1)
    steps: int = spec(1000, ge=1)

    def validate(self) -> "CharLMConfig":
        """Also: a text file is needed."""
        super().validate()
        if not self.text:
            raise ConfigError("charlm needs a text file: pass --text PATH (e.g. tinyshakespeare.txt)")
        return self


@dataclass
class TwoRNNConfig(RunConfig):
    """Two recurrent networks: A reads digits and sends a message, B must count from the message alone.

    Attributes:
        method: how B's gradient reaches A: ``cdni`` (a synthesizer conditioned on B's target,
            the default), ``dni`` (sees only the message), ``bprop`` (the true gradient, locked)
            or ``nobprop`` (no gradient from B: the ablation).
        tick_ratio: ``N``: B ticks once every ``N`` ticks of A.
        b_ticks: B's ticks per episode (an episode is ``N · b_ticks`` digits).
        hidden_a, hidden_b, message_size, encoder_hidden: network sizes.
        synth_scale: factor on the synthetic gradient A uses.
        eval_episodes: held-out episodes scored at each evaluation.
    """

    task: ClassVar[str] = "two-rnn"
    runner: ClassVar[str] = "two-rnn"

    method: str = "cdni"
    tick_ratio: int = spec(4, ge=1)
    b_ticks: int = spec(3, ge=1)
    hidden_a: int = spec(64, ge=1)
    hidden_b: int = spec(32, ge=1)
    message_size: int = spec(16, ge=1)
    encoder_hidden: int = spec(64, ge=1)
    lr: float = spec(1e-3, gt=0)
    synth_scale: float = spec(1.0, ge=0)
    batch_size: int = spec(32, ge=1)
    steps: int = spec(2000, ge=1)
    eval_every: int = spec(100, ge=1)
    log_every: int = spec(1, ge=1)
    eval_episodes: int = spec(512, ge=1)

    @property
    def episode_ticks(self) -> int:
        """A's ticks per episode."""
        return self.tick_ratio * self.b_ticks


@dataclass
class RNNChainConfig(RunConfig):
    """``K = len(ratios) + 1`` recurrent networks in a chain, each on its own clock (:mod:`sglab.exec.rnn_chain`).

    Attributes:
        method: ``cdni`` (each link's synthesizer also sees the last network's target, the
            default), ``dni`` (the message alone) or ``nobprop`` (every link cut).
        ratios: network ``k`` ticks once every ``ratios[k-1]`` ticks of network ``k-1``.
        last_ticks: the last network's ticks per episode (an episode is ``prod(ratios) · last_ticks`` symbols).
        symbols: network 0's alphabet; the odd symbols are the ones the last network counts.
        hidden, message_size: every network's core width, and the width of every message.
        cut_links: links (``k``: network ``k`` → ``k+1``) whose synthetic gradient is cut: the
            ablations. The networks upstream of a cut link get no gradient.
        synth_scale: factor on every synthetic gradient.
        eval_episodes: held-out episodes scored at each evaluation.
    """

    task: ClassVar[str] = "rnn-chain"
    runner: ClassVar[str] = "rnn-chain"

    method: str = "cdni"
    ratios: list[int] = spec(factory=lambda: [2, 2], ge=1)
    last_ticks: int = spec(3, ge=1)
    symbols: int = spec(6, ge=2)
    hidden: int = spec(32, ge=1)
    message_size: int = spec(8, ge=1)
    cut_links: list[int] = spec(factory=list, ge=0)
    lr: float = spec(3e-3, gt=0)
    synth_scale: float = spec(1.0, ge=0)
    batch_size: int = spec(32, ge=1)
    steps: int = spec(500, ge=1)
    eval_every: int = spec(100, ge=1)
    log_every: int = spec(1, ge=1)
    eval_episodes: int = spec(512, ge=1)

    def validate(self) -> "RNNChainConfig":
        """Also: at least one link, and cut links that exist, each named once, under a method with synthetic gradients."""
        super().validate()
        if not self.ratios:
            raise ConfigError("config field 'ratios' must list at least one ratio (two networks)")
        links = len(self.ratios)
        bad = [k for k in self.cut_links if k >= links]
        if bad or len(set(self.cut_links)) != len(self.cut_links):
            raise ConfigError(f"config field 'cut_links' must name distinct links 0..{links - 1}, got {self.cut_links}")
        if self.probe_every is not None:
            raise ConfigError("config field 'probe_every': rnn-chain has no fidelity probe yet")
        if self.cut_links and not self.resolved_method().synthetic_gradients:
            raise ConfigError(f"config field 'cut_links' applies to methods with synthetic gradients (dni, cdni), "
                              f"not {self.method!r}, which cuts every link")
        return self

    @property
    def num_networks(self) -> int:
        """K."""
        return len(self.ratios) + 1
