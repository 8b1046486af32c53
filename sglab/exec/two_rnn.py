"""Two recurrent networks, A (stage 0) and B (stage 1), talking through an interface: A's message.

Each B tick closes one chunk of ``N`` ticks of A. Per chunk the two networks are a chain of two
stages, both with a loss of their own, and the registry's step graph over that chain orders the
ops (each a call of :mod:`sglab.exec.ops`); the method says how B's gradient reaches A:

- ``dni`` / ``cdni``: A owns a synthesizer ``M(m) ≈ ∂L_B/∂m`` (cDNI: ``M(m, c)`` with ``c``
  B's target). At the end of its chunk A backpropagates its own loss plus ``scale · M(m, c)``
  and updates at once; B's true gradient arrives later and only trains ``M`` (T). Neither waits.
- ``bprop``: the true ``∂L_B/∂m``: A's backward waits for B's forward and backward (locked).
- ``nobprop``: the ablation. A gets no gradient from B; its message is whatever its own task
  makes of it, and B should fail to count odd digits.

Both networks are trained with truncated BPTT in time: their states carry on from chunk to
chunk, their gradients stop at chunk boundaries. Ops are labelled ``(stage, op, chunk)``.
Besides the message (``h`` of A's F, ``input`` of B's), an observer sees each network's F
``state`` (where its chunk starts, flattened), A's digits (``input``) and B's ``labels``: what a
fidelity probe needs to recompute both networks' chunk.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch.nn import functional as F

from sglab.dni.synthesizers import flatten_state
from sglab.exec import ops
from sglab.exec.observe import Observer, as_observer
from sglab.methods import Chain, Method
from sglab.ops import Action
from sglab.tasks.two_rnn import Episodes

_CHAIN = Chain(2, losses=frozenset({0, 1}))


def loss_b(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """B's loss at one of its ticks: the cross-entropy of its odd-digit count, batch mean."""
    return F.cross_entropy(logits, labels)


class _Tick:
    """The wires of one chunk: A's forward and message, what B received, both losses."""

    def __init__(self, k: int, ticks: slice, state_a, state_b):
        self.k, self.ticks, self.state_a, self.state_b = k, ticks, state_a, state_b
        self.context = self.synthetic = self.received = None


class TwoRNNRunner:
    """Networks A and B, A's message synthesizer and their optimizers; trains a batch of episodes per step."""

    def __init__(self, a, b, method: Method, opt_a, opt_b, synthesizer=None, synth_optimizer=None, *,
                 tick_ratio: int, synth_scale: float = 1.0):
        self.a, self.b, self.method, self.opt_a, self.opt_b = a, b, method, opt_a, opt_b
        self.synthesizer, self.synth_optimizer = synthesizer, synth_optimizer
        self.tick_ratio, self.synth_scale = tick_ratio, synth_scale
        self._order = lru_cache(maxsize=None)(lambda: method.step_order(_CHAIN))
        self._steps = 0

    def _zeros(self, batch: int, width: int, device):
        return (torch.zeros(batch, width, device=device), torch.zeros(batch, width, device=device))

    def train_step(self, episodes: Episodes, observer: Observer | None = None) -> dict[str, float]:
        """Train both networks on a batch of episodes; returns losses and training accuracies."""
        observer = as_observer(observer)
        observer.begin_step(self._steps)
        self._steps += 1
        batch, device = episodes.digits.shape[1], episodes.digits.device
        b_ticks = episodes.odd_in_window.shape[0]
        state_a = self._zeros(batch, self.a.core.hidden_size, device)
        state_b = self._zeros(batch, self.b.core.hidden_size, device)
        totals = {"loss_a": 0.0, "loss_b": 0.0, "correct_a": 0.0, "correct_b": 0.0, "synth_loss": 0.0}
        self._episodes, self._totals, self._b_ticks = episodes, totals, b_ticks
        for k in range(b_ticks):
            tick = _Tick(k, slice(k * self.tick_ratio, (k + 1) * self.tick_ratio), state_a, state_b)
            for action in self._order():
                action = Action(action.stage, action.op, k)
                with observer.op(action):
                    seen = getattr(self, f"_{action.op}{action.stage}")(tick)
                if observer.wants_tensors:
                    observer.tensors(action, {n: v.detach() for n, v in seen.items() if torch.is_tensor(v)})
            state_a, state_b = tick.state_a, tick.state_b
            ticks, episode_ticks = tick.ticks, self.tick_ratio * b_ticks
            totals["loss_a"] += float(tick.loss_a.detach()) / episode_ticks
            totals["loss_b"] += float(tick.loss_b.detach()) / b_ticks
            right_a = (tick.logits_a.argmax(-1) == episodes.threes_so_far[ticks]).float().sum()
            totals["correct_a"] += float(right_a) / (batch * episode_ticks)
            totals["correct_b"] += float((tick.logits_b.argmax(-1) == episodes.odd_in_window[k]).float().mean()) / b_ticks
        return {"loss_a": totals["loss_a"], "loss_b": totals["loss_b"], "accuracy_a": totals["correct_a"],
                "accuracy_b": totals["correct_b"],
                "synth_loss": totals["synth_loss"] if self.method.synthetic_gradients else float("nan")}

    # ---- A (stage 0) -------------------------------------------------------------------

    def _F0(self, t: _Tick) -> dict:
        e, batch = self._episodes, self._episodes.digits.shape[1]
        start = tuple(s.detach() for s in t.state_a)
        t.logits_a, t.message, t.state_a = ops.forward(self.a, e.digits[t.ticks], start)
        t.loss_a = F.cross_entropy(t.logits_a.flatten(0, 1), e.threes_so_far[t.ticks].flatten(), reduction="sum") / batch
        if self.method.context:
            t.context = F.one_hot(e.odd_in_window[t.k], self.tick_ratio + 1).float()
        return {"input": e.digits[t.ticks], "state": flatten_state(start), "h": t.message}

    def _S0(self, t: _Tick) -> dict:
        batch = t.message.shape[0]
        with torch.no_grad():
            t.synthetic = self.synth_scale * ops.synthesize(self.synthesizer, t.message, t.context, keep_graph=False) / batch
        return {"synthetic_gradient": t.synthetic}

    def _B0(self, t: _Tick) -> dict:
        if self.method.synthetic_gradients:
            grad = t.synthetic
        elif self.method.gradient == "true":
            grad = t.received.grad
        else:
            grad = None
        if grad is None:
            ops.backward([t.loss_a], None, self.opt_a)
        else:
            ops.backward([t.loss_a, t.message], [None, grad.detach()], self.opt_a)
        return {"output_gradient": grad}

    def _U0(self, t: _Tick) -> dict:
        ops.update(self.opt_a)
        return {}

    def _T0(self, t: _Tick) -> dict:
        batch = t.message.shape[0]
        prediction = ops.synthesize(self.synthesizer, t.message, t.context)
        target = batch * t.received.grad
        self._totals["synth_loss"] += ops.train_synthesizer(prediction, target, self.synth_optimizer) / self._b_ticks
        return {"prediction": prediction, "target": target}

    # ---- B (stage 1) -------------------------------------------------------------------

    def _F1(self, t: _Tick) -> dict:
        t.received = ops.input_leaf(t.message, self.method.gradient in ("true", "synthetic"))
        start, labels = tuple(s.detach() for s in t.state_b), self._episodes.odd_in_window[t.k]
        t.logits_b, t.state_b = ops.forward(self.b, t.received, start)
        t.loss_b = loss_b(t.logits_b, labels)
        return {"input": t.received, "state": flatten_state(start), "labels": labels}

    def _B1(self, t: _Tick) -> dict:
        ops.backward([t.loss_b], None, self.opt_b)
        return {"input_gradient": t.received.grad}

    def _U1(self, t: _Tick) -> dict:
        ops.update(self.opt_b)
        return {}

    @torch.no_grad()
    def evaluate(self, episodes: Episodes) -> dict[str, float]:
        """Accuracy of A (count of 3s, every tick) and of B (odd digits, every B tick) on ``episodes``, and B's loss."""
        batch, device = episodes.digits.shape[1], episodes.digits.device
        b_ticks = episodes.odd_in_window.shape[0]
        state_a = self._zeros(batch, self.a.core.hidden_size, device)
        state_b = self._zeros(batch, self.b.core.hidden_size, device)
        correct_a = correct_b = loss_b = 0.0
        for k in range(b_ticks):
            ticks = slice(k * self.tick_ratio, (k + 1) * self.tick_ratio)
            logits_a, message, state_a = self.a(episodes.digits[ticks], state_a)
            logits_b, state_b = self.b(message, state_b)
            correct_a += float((logits_a.argmax(-1) == episodes.threes_so_far[ticks]).float().sum())
            correct_b += float((logits_b.argmax(-1) == episodes.odd_in_window[k]).float().sum())
            loss_b += float(F.cross_entropy(logits_b, episodes.odd_in_window[k]))
        return {"accuracy_a": correct_a / (batch * self.tick_ratio * b_ticks), "accuracy_b": correct_b / (batch * b_ticks),
                "loss_b": loss_b}

    def modules(self) -> dict[str, torch.nn.Module]:
        """Trainable modules by role, for checkpoints."""
        found = {"a": self.a, "b": self.b, "synthesizer": self.synthesizer}
        return {name: m for name, m in found.items() if m is not None}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Optimizers by role, for checkpoints and learning-rate schedules."""
        found = {"a": self.opt_a, "b": self.opt_b, "synthesizer": self.synth_optimizer}
        return {name: o for name, o in found.items() if o is not None}
