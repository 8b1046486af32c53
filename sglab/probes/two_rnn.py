"""The two-RNN probe: per chunk, A's synthetic gradient for its message against B's true ∂L_B/∂m.

One interface (A's message, interface 0) and one record per chunk ``k`` (microbatch ``k``). When:

- at A's F of chunk ``k`` the probe copies A's weights and recomputes A's chunk from where it
  started, keeping the message's graph in the copy (under ``dni`` A updates before B runs);
- at B's F of chunk ``k`` it computes ``δ = ∂L_B/∂m``: B's loss on the chunk's labels, B run on
  the real message from its real start state with its weights then, which B updates only after
  its own backward, so ``δ`` is exactly the gradient ``bprop`` sends A and ``dni`` / ``cdni``
  train the synthesizer on (T's target). From the copy's graph it gives both updates through the
  message, ``J_A^T δ̂`` and ``J_A^T δ`` (A's raw parameter gradient from the message, before the
  optimizer; A's own loss, the same under both, is left out).

Units are the runner's batch-mean ones: ``δ̂`` is the injected ``scale · M(m, c) / batch``; T's
per-episode target and prediction are divided by the batch size.
"""

from __future__ import annotations

from typing import Mapping

import torch

from sglab.dni.synthesizers import split_state
from sglab.exec.two_rnn import loss_b
from sglab.ops import Action
from sglab.probes import shadow
from sglab.probes.probe import Probe


class TwoRNNProbe(Probe):
    """The probe of a :class:`~sglab.exec.two_rnn.TwoRNNRunner`."""

    def __init__(self, runner):
        super().__init__()
        self.runner = runner
        self._message = None  # A's message of the current chunk, with its graph in a copy of A's weights

    def begin_step(self, step: int) -> None:
        """New episodes: no message graph is pending."""
        super().begin_step(step)
        self._message = None

    def complete(self) -> None:
        """Drop the last chunk's graph."""
        self._message = None

    def tensors(self, action: Action, tensors: Mapping[str, torch.Tensor]) -> None:
        """A's chunk at its F, δ̂ at S, δ and the updates at B's F, T's target."""
        k, t = action.microbatch, tensors
        if (action.stage, action.op) == (0, "F"):
            weights, params = shadow.learnable(shadow.frozen(self.runner.a))
            start = split_state(t["state"].detach(), self._sizes(self.runner.a))
            self._message = (shadow.call(self.runner.a, weights, t["input"], start)[1], params)
        elif (action.stage, action.op) == (0, "S"):
            self.record(0, k, synthetic=t["synthetic_gradient"])
        elif (action.stage, action.op) == (1, "F"):
            self._true(k, t)
        elif (action.stage, action.op) == (0, "T"):
            batch = t["target"].shape[0]
            self.record(0, k, target=t["target"] / batch, prediction=t["prediction"] / batch)

    def _true(self, k: int, t: Mapping[str, torch.Tensor]) -> None:
        m = shadow.leaf(t["input"])
        start = split_state(t["state"].detach(), self._sizes(self.runner.b))
        logits, _ = shadow.call(self.runner.b, shadow.current(self.runner.b), m, start)
        true = shadow.gradient(loss_b(logits, t["labels"]), m)
        self.record(0, k, true=true)
        record = self.last[(0, k)]
        message, params = self._message
        names = ["update_bprop"] + (["update_dni"] if "synthetic" in record else [])
        grads = [true] + ([record["synthetic"]] if "synthetic" in record else [])
        self.record(0, k, **dict(zip(names, shadow.parameter_gradients(message, params, grads))))
        self._message = None

    @staticmethod
    def _sizes(network) -> tuple[int, int]:
        return (network.core.hidden_size, network.core.hidden_size)
