"""Two RNNs ticking at different rates that learn to talk through a DNI.

Network A (stage 0) reads a stream of MNIST digits, one per tick, and must say at every tick
how many 3s it has seen so far in the episode. Network B (stage 1) ticks once every ``N`` ticks
of A, sees nothing but A's message, and must say how many odd digits A saw since B's previous
tick. Only A sees digits, so B can succeed only if A learns to put "odd" into its message, and
the only reason A has to do that is the gradient of B's loss with respect to the message.

How that gradient reaches A is the method:

- ``dni``: A owns a synthesizer ``M(m, c) ≈ ∂L_B/∂m`` (``c``: B's target, as cDNI's context).
  At the end of each of its chunks (the tick B reads) A sends ``m``, backpropagates its own
  loss plus ``scale · M(m, c)`` and updates at once;
  B's true gradient arrives later and only trains ``M`` (op T). Neither network waits.
- ``bptt``: the true ``∂L_B/∂m``: A's backward waits for B's forward and backward (locked).
- ``none``: the ablation. A gets no gradient from B; its message is whatever its own task makes
  of it, and B should fail to count odd digits.

A is trained with truncated BPTT over chunks of ``N`` ticks (its state carries on, its
gradient stops at chunk boundaries); B's chunk is its single tick. Ops: stage 0 (A) runs F, S,
B, U, T per chunk and stage 1 (B) F, B, U per tick; microbatch = the chunk / B-tick index.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from sglab.dni.interface import regression_step
from sglab.dni.synthesizers import MLPSynthesizer
from sglab.ops import Action
from sglab.train.step import NullRecorder
from sglab.rnn.bptt import make_adam
from sglab.rnn.runs import RunOutput
from sglab.rnn.tasks import TaskError

#: How B's gradient reaches A.
TWO_RNN_METHODS = ("dni", "bptt", "none")


@dataclass
class TwoRNNConfig:
    """The two-network system and its training.

    Attributes:
        method: ``dni``, ``bptt`` (true gradient, locked) or ``none`` (no gradient from B).
        tick_ratio: ``N``: B ticks once every ``N`` ticks of A.
        b_ticks: B's ticks per episode (an episode is ``N · b_ticks`` digits).
        hidden_a, hidden_b: core widths; message_size: width of A's message to B.
        encoder_hidden: width of A's digit encoder (a one-hidden-layer MLP on the pixels).
        lr, synth_lr: Adam learning rates of the networks and of A's synthesizer.
        synth_scale: factor on the synthetic gradient A uses.
        synth_context: condition the synthesizer on B's target (cDNI, ``M_B(h_A, c)``). Without
            it the synthesizer sees only the message, and the gradient it can predict from that
            alone carries little of what the message is missing (see docs/rnn.md).
        batch_size, steps: episodes per step and training steps.
        eval_every, eval_episodes: how often and on how many held-out episodes to score.
        seed, device: the usual.
    """

    method: str = "dni"
    tick_ratio: int = 4
    b_ticks: int = 3
    hidden_a: int = 64
    hidden_b: int = 32
    message_size: int = 16
    encoder_hidden: int = 64
    lr: float = 1e-3
    synth_lr: float | None = None
    synth_scale: float = 1.0
    synth_context: bool = True
    batch_size: int = 32
    steps: int = 2000
    eval_every: int = 100
    eval_episodes: int = 512
    seed: int = 0
    device: str = "cpu"

    @property
    def episode_ticks(self) -> int:
        """A's ticks per episode."""
        return self.tick_ratio * self.b_ticks

    def validate(self) -> "TwoRNNConfig":
        """Raise :class:`~sglab.rnn.tasks.TaskError` naming the first bad setting; returns self."""
        if self.method not in TWO_RNN_METHODS:
            raise TaskError(f"two-rnn method must be one of {', '.join(TWO_RNN_METHODS)}, got {self.method!r}")
        for name in ("tick_ratio", "b_ticks", "hidden_a", "hidden_b", "message_size", "encoder_hidden", "batch_size", "steps", "eval_every", "eval_episodes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise TaskError(f"{name} must be an integer >= 1, got {value!r}")
        if self.lr <= 0 or (self.synth_lr is not None and self.synth_lr <= 0):
            raise TaskError(f"learning rates must be > 0, got lr={self.lr}, synth_lr={self.synth_lr}")
        if self.synth_scale < 0:
            raise TaskError(f"synth_scale must be >= 0, got {self.synth_scale}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for config.json."""
        return asdict(self)


class NetworkA(nn.Module):
    """Digit encoder, LSTM core, a count-of-3s readout and a message head."""

    def __init__(self, config: TwoRNNConfig, pixels: int = 784):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(pixels, config.encoder_hidden), nn.ReLU())
        self.core = nn.LSTMCell(config.encoder_hidden, config.hidden_a)
        self.readout = nn.Linear(config.hidden_a, config.episode_ticks + 1)
        self.message = nn.Linear(config.hidden_a, config.message_size)

    def forward(self, digits: torch.Tensor, state):
        """Tick through ``digits`` ``(ticks, batch, pixels)``: (count logits per tick, message, state)."""
        codes = self.encoder(digits)
        logits = []
        for code in codes:
            state = self.core(code, state)
            logits.append(self.readout(state[0]))
        return torch.stack(logits), self.message(state[0]), state


class NetworkB(nn.Module):
    """LSTM core reading A's message, and a count-of-odd-digits readout."""

    def __init__(self, config: TwoRNNConfig):
        super().__init__()
        self.core = nn.LSTMCell(config.message_size, config.hidden_b)
        self.readout = nn.Linear(config.hidden_b, config.tick_ratio + 1)

    def forward(self, message: torch.Tensor, state):
        """One tick: (odd-count logits, state)."""
        state = self.core(message, state)
        return self.readout(state[0]), state


@dataclass
class Episodes:
    """A batch of digit streams and both networks' targets, time-major."""

    digits: torch.Tensor  # (ticks, batch, 784)
    threes_so_far: torch.Tensor  # (ticks, batch): A's target
    odd_in_window: torch.Tensor  # (b_ticks, batch): B's target


def make_episodes(images: torch.Tensor, labels: torch.Tensor, config: TwoRNNConfig, batch: int, generator: torch.Generator) -> Episodes:
    """Sample ``batch`` episodes of ``N · b_ticks`` digits drawn uniformly from ``images`` (on its device)."""
    picks = torch.randint(0, len(labels), (config.episode_ticks, batch), generator=generator)
    digits = labels[picks]
    threes = (digits == 3).long().cumsum(0)
    odd = (digits % 2 == 1).long().view(config.b_ticks, config.tick_ratio, batch).sum(1)
    device = images.device
    return Episodes(images[picks.to(device)], threes.to(device), odd.to(device))


class TwoRNNSystem:
    """Networks A and B, A's message synthesizer and their optimisers; trains one batch of episodes per step."""

    def __init__(self, config: TwoRNNConfig, device: torch.device | str = "cpu"):
        self.config = config.validate()
        self.device = torch.device(device)
        self.a, self.b = NetworkA(config).to(self.device), NetworkB(config).to(self.device)
        self.opt_a, self.opt_b = make_adam(self.a.parameters(), config.lr), make_adam(self.b.parameters(), config.lr)
        self.synthesizer = self.synth_optimizer = None
        if config.method == "dni":
            context = config.tick_ratio + 1 if config.synth_context else 0
            self.synthesizer = MLPSynthesizer((config.message_size,), context_dim=context).to(self.device)
            self.synth_optimizer = make_adam(self.synthesizer.parameters(), config.synth_lr or config.lr)

    def _zeros(self, batch: int, width: int):
        return (torch.zeros(batch, width, device=self.device), torch.zeros(batch, width, device=self.device))

    def train_step(self, episodes: Episodes, recorder=None) -> dict[str, float]:
        """Train both networks on a batch of episodes; returns losses and training accuracies."""
        recorder = recorder or NullRecorder()
        cfg, method = self.config, self.config.method
        batch = episodes.digits.shape[1]
        state_a, state_b = self._zeros(batch, cfg.hidden_a), self._zeros(batch, cfg.hidden_b)
        totals = {"loss_a": 0.0, "loss_b": 0.0, "correct_a": 0.0, "correct_b": 0.0, "synth_loss": 0.0}
        for k in range(cfg.b_ticks):
            ticks = slice(k * cfg.tick_ratio, (k + 1) * cfg.tick_ratio)
            with recorder.op(Action(0, "F", k)):
                logits_a, message, state_a = self.a(episodes.digits[ticks], tuple(s.detach() for s in state_a))
                loss_a = F.cross_entropy(logits_a.flatten(0, 1), episodes.threes_so_far[ticks].flatten(), reduction="sum") / batch
            context = None
            if method == "dni" and cfg.synth_context:
                context = F.one_hot(episodes.odd_in_window[k], cfg.tick_ratio + 1).float()
            if method == "dni":
                with recorder.op(Action(0, "S", k)):
                    with torch.no_grad():
                        synthetic = cfg.synth_scale * self.synthesizer(message.detach(), context) / batch
                self._backward_a(loss_a, message, synthetic, recorder, k)
            received = message.detach().requires_grad_(method != "none")
            with recorder.op(Action(1, "F", k)):
                logits_b, state_b = self.b(received, tuple(s.detach() for s in state_b))
                loss_b = F.cross_entropy(logits_b, episodes.odd_in_window[k])
            with recorder.op(Action(1, "B", k)):
                self.opt_b.zero_grad(set_to_none=True)
                loss_b.backward()
            with recorder.op(Action(1, "U", k)):
                self.opt_b.step()
            if method == "bptt":
                self._backward_a(loss_a, message, received.grad, recorder, k)
            elif method == "none":
                self._backward_a(loss_a, message, None, recorder, k)
            else:
                with recorder.op(Action(0, "T", k)):
                    prediction = self.synthesizer(message.detach(), context)
                    totals["synth_loss"] += regression_step(prediction, batch * received.grad, self.synth_optimizer) / cfg.b_ticks
            totals["loss_a"] += float(loss_a.detach()) / cfg.episode_ticks
            totals["loss_b"] += float(loss_b.detach()) / cfg.b_ticks
            totals["correct_a"] += float((logits_a.argmax(-1) == episodes.threes_so_far[ticks]).float().sum()) / (batch * cfg.episode_ticks)
            totals["correct_b"] += float((logits_b.argmax(-1) == episodes.odd_in_window[k]).float().mean()) / cfg.b_ticks
        return {
            "loss_a": totals["loss_a"],
            "loss_b": totals["loss_b"],
            "accuracy_a": totals["correct_a"],
            "accuracy_b": totals["correct_b"],
            "synth_loss": totals["synth_loss"] if method == "dni" else float("nan"),
        }

    def _backward_a(self, loss_a, message, message_grad, recorder, k: int) -> None:
        """A's B and U: its own loss plus whatever gradient the method gives its message."""
        with recorder.op(Action(0, "B", k)):
            self.opt_a.zero_grad(set_to_none=True)
            if message_grad is None:
                loss_a.backward()
            else:
                torch.autograd.backward([loss_a, message], [None, message_grad.detach()])
        with recorder.op(Action(0, "U", k)):
            self.opt_a.step()

    @torch.no_grad()
    def evaluate(self, episodes: Episodes) -> dict[str, float]:
        """Accuracy of A (count of 3s, every tick) and of B (odd digits, every B tick) on ``episodes``."""
        cfg, batch = self.config, episodes.digits.shape[1]
        state_a, state_b = self._zeros(batch, cfg.hidden_a), self._zeros(batch, cfg.hidden_b)
        correct_a = correct_b = 0.0
        for k in range(cfg.b_ticks):
            ticks = slice(k * cfg.tick_ratio, (k + 1) * cfg.tick_ratio)
            logits_a, message, state_a = self.a(episodes.digits[ticks], state_a)
            logits_b, state_b = self.b(message, state_b)
            correct_a += float((logits_a.argmax(-1) == episodes.threes_so_far[ticks]).float().sum())
            correct_b += float((logits_b.argmax(-1) == episodes.odd_in_window[k]).float().sum())
        return {"accuracy_a": correct_a / (batch * cfg.episode_ticks), "accuracy_b": correct_b / (batch * cfg.b_ticks)}


def _digits(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    from sglab.data import load_dataset

    data = load_dataset("embedded")
    x, y = (data.x_train, data.y_train) if split == "train" else (data.x_test, data.y_test)
    return torch.from_numpy(np.asarray(x, dtype=np.float32).reshape(len(y), -1)), torch.from_numpy(np.asarray(y, dtype=np.int64))


def train_two_rnn(config: TwoRNNConfig, progress: bool = False, data: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None) -> RunOutput:
    """Train the two-network system; held-out accuracy of both networks every ``eval_every`` steps.

    ``data`` maps ``train`` / ``test`` to ``(images (n, 784), labels)``; by default the embedded
    MNIST digits (train digits for training episodes, test digits for evaluation).
    """
    config.validate()
    torch.manual_seed(config.seed)
    device = torch.device(config.device)
    data = data or {split: _digits(split) for split in ("train", "test")}
    (x_train, y_train), (x_test, y_test) = data["train"], data["test"]
    x_train, x_test = x_train.to(device), x_test.to(device)
    system = TwoRNNSystem(config, device)
    generator = torch.Generator().manual_seed(config.seed + 1)
    held_out = make_episodes(x_test, y_test, config, config.eval_episodes, torch.Generator().manual_seed(config.seed + 2))
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()

    def log_eval(step: int) -> dict[str, float]:
        scores = system.evaluate(held_out)
        for network in ("a", "b"):
            rows.append({"step": step, "split": "test", "network": network.upper(), "accuracy": scores[f"accuracy_{network}"], "elapsed_s": time.perf_counter() - start})
        return scores

    scores = log_eval(0)
    bar = tqdm(total=config.steps, disable=not progress, desc=f"two-rnn {config.method} N={config.tick_ratio}")
    for step in range(1, config.steps + 1):
        episodes = make_episodes(x_train, y_train, config, config.batch_size, generator)
        result = system.train_step(episodes)
        for network in ("a", "b"):
            rows.append({"step": step, "split": "train", "network": network.upper(), "accuracy": result[f"accuracy_{network}"], "loss": result[f"loss_{network}"], "synth_loss": result["synth_loss"]})
        if step % config.eval_every == 0 or step == config.steps:
            scores = log_eval(step)
        bar.update(1)
        bar.set_postfix(acc_a=f"{scores['accuracy_a']:.2f}", acc_b=f"{scores['accuracy_b']:.2f}")
    bar.close()
    summary = {
        "task": "two-rnn",
        "method": config.method,
        "tick_ratio": config.tick_ratio,
        "test_accuracy_a": scores["accuracy_a"],
        "test_accuracy_b": scores["accuracy_b"],
        "chance_b": majority_rate_b(config),
        "steps": config.steps,
        "train_time_s": time.perf_counter() - start,
        "seed": config.seed,
    }
    return RunOutput(rows, summary)


def majority_rate_b(config: TwoRNNConfig) -> float:
    """B's accuracy from always answering the most likely count (odd digits ~ Binomial(N, 1/2))."""
    from math import comb

    n = config.tick_ratio
    return max(comb(n, k) for k in range(n + 1)) / 2**n
