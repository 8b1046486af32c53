"""Training runs of the single-RNN tasks: Copy / Repeat Copy with a curriculum, and character-level LM.

Each ``train_*`` function takes a dataclass config, trains, and returns a :class:`RunOutput`
(tidy metric rows and a summary); :mod:`sglab.rnn.cli` writes them into a run directory and
``benchmarks/rnn_tasks.py`` collects the summaries into tables.

A step is one batch of sequences: for the copy tasks a batch of episodes (each episode one
sequence, its state starting at zero, the future after its end empty); for language
modelling a window of ``seq_len`` characters of ``batch_size`` parallel streams whose state carries
on. Either way a step makes one update per chunk of ``T`` ticks.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from sglab.rnn.bptt import BPTTConfig, RecurrentTrainer
from sglab.rnn.model import CORES, RecurrentNet
from sglab.rnn.tasks import TEXT_FORMATS, CharCorpus, CharStream, CopyTask, Curriculum, TaskError, bits_per_character


@dataclass
class RunOutput:
    """What a run produced: one metric row per logged step / evaluation, and a summary."""

    metrics: list[dict[str, Any]]
    summary: dict[str, Any]


def _check_common(hidden: int, core: str, batch_size: int, steps: int) -> None:
    if core not in CORES:
        raise TaskError(f"core must be one of {', '.join(CORES)}, got {core!r}")
    for name, value in (("hidden", hidden), ("batch_size", batch_size), ("steps", steps)):
        if not isinstance(value, int) or value < 1:
            raise TaskError(f"{name} must be an integer >= 1, got {value!r}")


@dataclass
class CopyRunConfig:
    """A Copy or Repeat Copy run with a length curriculum.

    Attributes:
        repeat: Repeat Copy instead of Copy.
        bits: bits per vector (the paper uses 8; small budgets learn faster with fewer).
        max_repeats: Repeat Copy's largest repeat count.
        min_length, max_length: the curriculum's first and last sequence length ``N``.
        threshold: bits wrong per sequence under which a length is solved (paper: 0.15).
        window: batches averaged for the solved test.
        hidden, core: network size and recurrent cell.
        batch_size, steps, seed, device: the usual.
        training: method, truncation ``T`` and optimiser settings.
    """

    repeat: bool = False
    bits: int = 8
    max_repeats: int = 3
    min_length: int = 1
    max_length: int = 64
    threshold: float = 0.15
    window: int = 10
    hidden: int = 64
    core: str = "lstm"
    batch_size: int = 32
    steps: int = 2000
    seed: int = 0
    device: str = "cpu"
    training: BPTTConfig = field(default_factory=BPTTConfig)

    def validate(self) -> "CopyRunConfig":
        """Raise a clear :class:`~sglab.rnn.tasks.TaskError` for a bad setting; returns self."""
        _check_common(self.hidden, self.core, self.batch_size, self.steps)
        self.task()
        self.curriculum()
        self.training.validate()
        return self

    def task(self) -> CopyTask:
        """The task generator."""
        return CopyTask(bits=self.bits, repeat=self.repeat, max_repeats=self.max_repeats)

    def curriculum(self) -> Curriculum:
        """A fresh curriculum."""
        return Curriculum(self.min_length, self.max_length, self.threshold, self.window)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for config.json."""
        return asdict(self)


def train_copy(config: CopyRunConfig, progress: bool = False) -> RunOutput:
    """Train on Copy / Repeat Copy, lengthening ``N`` whenever the current length is solved.

    Stops early once ``max_length`` is solved. The summary's ``longest_solved`` is the number
    the paper's table reports.
    """
    config.validate()
    torch.manual_seed(config.seed)
    device = torch.device(config.device)
    task, curriculum = config.task(), config.curriculum()
    model = RecurrentNet(task.input_size, config.hidden, task.output_size, config.core, aux=config.training.aux).to(device)
    trainer = RecurrentTrainer(model, config.training)
    generator = torch.Generator().manual_seed(config.seed + 1)
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    bar = tqdm(total=config.steps, disable=not progress, desc=f"{task.name} {config.training.method} T={config.training.truncation}")
    for step in range(1, config.steps + 1):
        length = curriculum.length
        batch = task.sample(length, config.batch_size, generator).to(device)
        result = trainer.train_sequence(batch.inputs, batch.targets, batch.mask, task.loss)
        errors = float(task.bit_errors(result.outputs, batch.targets, batch.mask).mean())
        solved = curriculum.record(errors)
        rows.append(
            {
                "step": step,
                "length": length,
                "loss": result.loss,
                "bit_errors": errors,
                "solved": solved,
                "synth_loss": result.synth_loss,
                "aux_loss": result.aux_loss,
                "updates": result.chunks,
                "elapsed_s": time.perf_counter() - start,
            }
        )
        bar.update(1)
        bar.set_postfix(N=curriculum.length, solved=curriculum.longest_solved, err=f"{errors:.2f}")
        if curriculum.finished:
            break
    bar.close()
    summary = {
        "task": task.name,
        "method": config.training.method,
        "truncation": config.training.truncation,
        "longest_solved": curriculum.longest_solved,
        "final_length": curriculum.length,
        "reached_max_length": curriculum.finished,
        "steps": len(rows),
        "updates": sum(row["updates"] for row in rows),
        "train_time_s": time.perf_counter() - start,
        "seed": config.seed,
    }
    return RunOutput(rows, summary)


@dataclass
class CharLMRunConfig:
    """A character-level language-modelling run.

    Attributes:
        text: the corpus file; ``valid_text``: a separate validation file (else the last
            ``valid_fraction`` of ``text`` validates).
        text_format: ``raw`` text or ``ptb`` (Penn Treebank character files: space-separated
            symbols, ``_`` between words).
        seq_len: ticks per step and stream; the state carries from window to window.
        eval_every: steps between validation passes (and one at the end).
        eval_chars: validate on at most this many validation characters (None: all).
        hidden, core, batch_size, steps, seed, device, training: as for :class:`CopyRunConfig`.
    """

    text: str = ""
    valid_text: str | None = None
    text_format: str = "raw"
    valid_fraction: float = 0.1
    seq_len: int = 64
    eval_every: int = 250
    eval_chars: int | None = None
    hidden: int = 128
    core: str = "lstm"
    batch_size: int = 32
    steps: int = 1000
    seed: int = 0
    device: str = "cpu"
    training: BPTTConfig = field(default_factory=BPTTConfig)

    def validate(self) -> "CharLMRunConfig":
        """Raise a clear :class:`~sglab.rnn.tasks.TaskError` for a bad setting; returns self."""
        _check_common(self.hidden, self.core, self.batch_size, self.steps)
        if not self.text:
            raise TaskError("charlm needs a text file: pass --text PATH (e.g. tinyshakespeare.txt)")
        if self.text_format not in TEXT_FORMATS:
            raise TaskError(f"text format must be one of {', '.join(TEXT_FORMATS)}, got {self.text_format!r}")
        for name in ("seq_len", "eval_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise TaskError(f"{name} must be an integer >= 1, got {value!r}")
        if self.eval_chars is not None and self.eval_chars < 1:
            raise TaskError(f"eval_chars must be >= 1 or None, got {self.eval_chars}")
        self.training.validate()
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for config.json."""
        return asdict(self)


def evaluate_bpc(model: RecurrentNet, stream: CharStream, device: torch.device, max_chars: int | None = None) -> float:
    """Bits per character of ``model`` over one pass of ``stream`` (state carried, no updates)."""
    was_training = model.training
    model.eval()
    state = model.initial_state(stream.inputs.shape[1], device)
    nats, count = 0.0, 0
    with torch.no_grad():
        for batch in stream.one_pass():
            batch = batch.to(device)
            forward = model(batch.inputs, state)
            state = forward.last_state
            nats += float(CharCorpus.loss(forward.outputs, batch.targets, batch.mask)) * batch.mask.shape[1]
            count += int(batch.mask.sum())
            if max_chars is not None and count >= max_chars:
                break
    model.train(was_training)
    return bits_per_character(nats / count)


def train_charlm(config: CharLMRunConfig, progress: bool = False) -> RunOutput:
    """Train a character-level LM; report training and validation bits per character."""
    config.validate()
    torch.manual_seed(config.seed)
    device = torch.device(config.device)
    corpus = CharCorpus.from_files(Path(config.text), config.valid_text, config.text_format, config.valid_fraction)
    train_stream = CharStream(corpus, corpus.train, config.batch_size, config.seq_len)
    # Fewer validation streams than training ones when the validation text is tiny.
    valid_streams = min(config.batch_size, max(1, (len(corpus.valid) - 1) // 2))
    valid_stream = CharStream(corpus, corpus.valid, valid_streams, config.seq_len)
    model = RecurrentNet(corpus.vocab_size, config.hidden, corpus.vocab_size, config.core, aux=config.training.aux).to(device)
    trainer = RecurrentTrainer(model, config.training)
    rows: list[dict[str, Any]] = []
    state = None
    start = time.perf_counter()
    bar = tqdm(total=config.steps, disable=not progress, desc=f"charlm {config.training.method} T={config.training.truncation}")
    valid_bpc = float("nan")
    for step in range(1, config.steps + 1):
        batch = train_stream.next().to(device)
        if train_stream.restarted:
            state = None  # the streams jumped back to their beginnings
        result = trainer.train_sequence(batch.inputs, batch.targets, batch.mask, corpus.loss, state=state, ends=False)
        state = result.end_state
        train_bpc = bits_per_character(result.loss / batch.inputs.shape[0])
        row = {"step": step, "split": "train", "bpc": train_bpc, "synth_loss": result.synth_loss, "aux_loss": result.aux_loss}
        rows.append({**row, "elapsed_s": time.perf_counter() - start})
        if step % config.eval_every == 0 or step == config.steps:
            valid_bpc = evaluate_bpc(model, valid_stream, device, config.eval_chars)
            rows.append({"step": step, "split": "valid", "bpc": valid_bpc, "elapsed_s": time.perf_counter() - start})
        if not math.isfinite(train_bpc):
            raise TaskError(f"training diverged at step {step} (loss {result.loss}); try a smaller --lr")
        bar.update(1)
        bar.set_postfix(train_bpc=f"{train_bpc:.3f}", valid_bpc=f"{valid_bpc:.3f}")
    bar.close()
    valid = [row["bpc"] for row in rows if row["split"] == "valid"]
    recent = [row["bpc"] for row in rows if row["split"] == "train"][-50:]
    summary = {
        "task": "charlm",
        "method": config.training.method,
        "truncation": config.training.truncation,
        "valid_bpc": valid[-1],
        "best_valid_bpc": min(valid),
        "train_bpc_last50": sum(recent) / len(recent),
        "vocab_size": corpus.vocab_size,
        "train_chars": int(len(corpus.train)),
        "valid_chars": int(len(corpus.valid)),
        "chars_seen": config.steps * config.seq_len * config.batch_size,
        "steps": config.steps,
        "train_time_s": time.perf_counter() - start,
        "seed": config.seed,
    }
    return RunOutput(rows, summary)
