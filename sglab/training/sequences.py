"""The single-RNN tasks' sessions: Copy / Repeat Copy with a curriculum, and character-level LM.

A step is one batch of sequences: for the copy tasks a batch of episodes (each one sequence,
its state starting at zero, the future after its end empty); for language modelling a window
of ``seq_len`` characters of ``batch_size`` parallel streams whose state carries on. Either
way a step makes one update per chunk of ``T`` ticks (:class:`~sglab.exec.recurrent.RecurrentRunner`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from sglab.exec.observe import Observer
from sglab.probes import RecurrentProbe
from sglab.tasks.charlm import CharCorpus, CharStream, bits_per_character
from sglab.tasks.copy import CopyTask, Curriculum
from sglab.training.build import build_recurrent
from sglab.training.config import CharLMConfig, CopyConfig
from sglab.training.session import Session


class _RecurrentSession(Session):
    """What both single-RNN tasks share: the runner and its checkpointed parts."""

    runner = None

    def modules(self) -> dict[str, torch.nn.Module]:
        """The network and its synthesizer."""
        return self.runner.modules()

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Their optimizers."""
        return self.runner.optimizers()


class CopySession(_RecurrentSession):
    """Copy / Repeat Copy, lengthening ``N`` whenever the current length is solved; stops once ``max_length`` is."""

    def __init__(self, config: CopyConfig, device: torch.device):
        super().__init__(config, device)
        self.task = CopyTask(bits=config.bits, repeat=config.repeat, max_repeats=config.max_repeats)
        self.curriculum = Curriculum(config.min_length, config.max_length, config.threshold, config.window)
        self.runner = build_recurrent(config, self.task.input_size, self.task.output_size, device)
        self.generator = torch.Generator().manual_seed(config.seed + 1)
        self.updates, self.last = 0, None

    @property
    def finished(self) -> bool:
        """Whether the curriculum solved its last length."""
        return self.curriculum.finished

    def step(self, step: int, observer: Observer | None) -> dict[str, Any]:
        """One batch at the curriculum's length; the batch's bit errors drive the curriculum."""
        length = self.curriculum.length
        batch = self.last = self.task.sample(length, self.config.batch_size, self.generator).to(self.device)
        result = self.runner.train_sequence(batch.inputs, batch.targets, batch.mask, self.task.loss, observer=observer)
        errors = float(self.task.bit_errors(result.outputs, batch.targets, batch.mask).mean())
        solved = self.curriculum.record(errors)
        self.updates += result.chunks
        return {"length": length, "loss": result.loss, "bit_errors": errors, "solved": solved,
                "synth_loss": result.synth_loss, "aux_loss": result.aux_loss, "updates": result.chunks}

    def probe(self) -> RecurrentProbe:
        """The recurrent probe, with the copy task's loss."""
        return RecurrentProbe(self.runner, self.task.loss)

    def evaluate(self, step: int) -> list[dict[str, Any]]:
        """Nothing held out: the curriculum scores every training batch."""
        return []

    @torch.no_grad()
    def judge_loss(self, evaluation: list[dict[str, Any]]) -> float:
        """The last batch's loss under the current weights (no generator is drawn from)."""
        if self.last is None:
            return 0.0
        model = self.runner.model
        forward = model(self.last.inputs, model.initial_state(self.last.inputs.shape[1], self.device))
        return float(self.task.loss(forward.outputs, self.last.targets, self.last.mask))

    def extra_state(self) -> dict[str, Any]:
        """The sampler's generator, the curriculum and the update count."""
        return {"generator": self.generator.get_state(), "curriculum": self.curriculum.state_dict(), "updates": self.updates}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`extra_state`."""
        self.generator.set_state(state["generator"])
        self.curriculum.load_state_dict(state["curriculum"])
        self.updates = state["updates"]

    def summary(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """The longest length solved: the number the paper's table reports."""
        return {"truncation": self.config.truncation, "longest_solved": self.curriculum.longest_solved,
                "final_length": self.curriculum.length, "reached_max_length": self.curriculum.finished,
                "updates": self.updates}

    def postfix(self, row: dict[str, Any]) -> dict[str, str]:
        """The length, the longest solved and the batch's bit errors."""
        curriculum = self.curriculum
        return {"N": str(curriculum.length), "solved": str(curriculum.longest_solved), "err": f"{row['bit_errors']:.2f}"}


class CharLMSession(_RecurrentSession):
    """Character-level language modelling; training and validation bits per character."""

    def __init__(self, config: CharLMConfig, device: torch.device):
        super().__init__(config, device)
        self.corpus = CharCorpus.from_files(Path(config.text), config.valid_text, config.text_format, config.valid_fraction)
        self.train_stream = CharStream(self.corpus, self.corpus.train, config.batch_size, config.seq_len)
        # Fewer validation streams than training ones when the validation text is tiny.
        valid_streams = min(config.batch_size, max(1, (len(self.corpus.valid) - 1) // 2))
        self.valid_stream = CharStream(self.corpus, self.corpus.valid, valid_streams, config.seq_len)
        self.runner = build_recurrent(config, self.corpus.vocab_size, self.corpus.vocab_size, device)
        self.state, self.steps_done = None, 0

    def step(self, step: int, observer: Observer | None) -> dict[str, Any]:
        """The next window of every stream, the state carried on from the last."""
        batch = self.train_stream.next().to(self.device)
        if self.train_stream.restarted:
            self.state = None  # the streams jumped back to their beginnings
        result = self.runner.train_sequence(batch.inputs, batch.targets, batch.mask, self.corpus.loss, state=self.state,
                                            ends=False, observer=observer)
        self.state, self.steps_done = result.end_state, self.steps_done + 1
        return {"loss": result.loss, "bpc": bits_per_character(result.loss / batch.inputs.shape[0]),
                "synth_loss": result.synth_loss, "aux_loss": result.aux_loss}

    def probe(self) -> RecurrentProbe:
        """The recurrent probe, with the corpus's loss."""
        return RecurrentProbe(self.runner, self.corpus.loss)

    @torch.no_grad()
    def evaluate(self, step: int) -> list[dict[str, Any]]:
        """Bits per character over one pass of the validation streams (state carried, no updates)."""
        model, stream, limit = self.runner.model, self.valid_stream, self.config.eval_chars
        was_training = model.training
        model.eval()
        state = model.initial_state(stream.inputs.shape[1], self.device)
        nats, count = 0.0, 0
        for batch in stream.one_pass():
            batch = batch.to(self.device)
            forward = model(batch.inputs, state)
            state = forward.last_state
            nats += float(CharCorpus.loss(forward.outputs, batch.targets, batch.mask)) * batch.mask.shape[1]
            count += int(batch.mask.sum())
            if limit is not None and count >= limit:
                break
        model.train(was_training)
        return [{"valid_bpc": bits_per_character(nats / count)}]

    def judge_loss(self, evaluation: list[dict[str, Any]]) -> float:
        """The validation bits per character, computed with the current weights."""
        return evaluation[-1]["valid_bpc"]

    def extra_state(self) -> dict[str, Any]:
        """Where the streams are, and the state carried into the next window."""
        return {"position": self.train_stream.position, "restarted": self.train_stream.restarted, "state": self.state,
                "steps_done": self.steps_done}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`extra_state`."""
        self.train_stream.position, self.train_stream.restarted = state["position"], state["restarted"]
        self.state = None if state["state"] is None else tuple(s.to(self.device) for s in state["state"])
        self.steps_done = state["steps_done"]

    def describe(self) -> dict[str, Any]:
        """The corpus."""
        return {"data": {"text": self.config.text, "vocab_size": self.corpus.vocab_size,
                         "train_chars": int(len(self.corpus.train)), "valid_chars": int(len(self.corpus.valid))}}

    def summary(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """Validation bits per character (last and best) and the training bpc of the last 50 logged steps."""
        valid = [row["valid_bpc"] for row in rows if row["kind"] == "eval"]
        recent = [row["bpc"] for row in rows if row["kind"] == "train"][-50:]
        config = self.config
        return {"truncation": config.truncation, "valid_bpc": valid[-1] if valid else None,
                "best_valid_bpc": min(valid, default=None),
                "train_bpc_last50": sum(recent) / len(recent) if recent else None,
                "vocab_size": self.corpus.vocab_size, "train_chars": int(len(self.corpus.train)),
                "valid_chars": int(len(self.corpus.valid)),
                "chars_seen": self.steps_done * config.seq_len * config.batch_size}

    def postfix(self, row: dict[str, Any]) -> dict[str, str]:
        """Training bits per character."""
        return {"train_bpc": f"{row['bpc']:.3f}"}
