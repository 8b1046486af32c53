"""The recurrent probe: at every truncation boundary, δ̂, the bootstrapped target and full BPTT's gradient.

Interface ``i`` is the state ``s_i`` between chunk ``i`` and chunk ``i+1`` (``s_0``: the state the
window starts from). Its true gradient ``δ_i = ∂L_{>i}/∂s_i`` is full BPTT's: the gradient of the
loss of every tick after ``s_i`` to the window's end (the task loss; DNI+Aux's auxiliary loss is
not part of it), run from the real ``s_i`` through the rest of the window. When: at the F of the
chunk that ends in ``s_i`` (chunk 1's F for ``s_0``), so with the weights that chunk ran with,
before its update; no later update has happened, so with a learning rate of 0, or for ``s_0``
always, ``δ_i`` is exactly the gradient full BPTT of the whole window gives ``s_i``. Each tensor of
the state (an LSTM's ``h`` and ``c``) is a variable in its own right, as where the runner cuts a
chunk: ``c`` gets the gradient of what the next tick does with it, not also the one that reaches
it through its own tick's ``h``.

At the same F the probe recomputes chunk ``i`` from its start with those weights; with δ̂_i (the
chunk's S) it gives both updates through the interface, ``J^T δ̂_i`` and ``J^T δ_i``: the raw
gradient of the network's parameters from the future injected at the chunk's end, before clipping
and the optimizer (the chunk's own loss, the same under both, is left out).

Units are the runner's batch-mean ones: ``δ̂_i`` is the injected ``scale · M(s_i) / batch`` (so
with ``synth_scale`` below 1 its norm ratio is discounted too), T's per-sequence target and
prediction are divided by the batch size. A stream's window end (charlm) has no future inside the
window to be true to and is not probed; a sequence's end has an empty future and is not either.
"""

from __future__ import annotations

from typing import Mapping

import torch

from sglab.dni.synthesizers import flatten_state, split_state
from sglab.exec.recurrent import LossFn
from sglab.ops import Action
from sglab.probes import shadow
from sglab.probes.probe import Probe


class RecurrentProbe(Probe):
    """The probe of a :class:`~sglab.exec.recurrent.RecurrentRunner` training with ``loss_fn``."""

    def __init__(self, runner, loss_fn: LossFn):
        super().__init__()
        self.runner, self.loss_fn = runner, loss_fn
        self._chunk = None  # (interface, chunk end state with its graph, parameter leaves)

    def begin_step(self, step: int) -> None:
        """A new window: no chunk graph is pending."""
        super().begin_step(step)
        self._chunk = None

    def complete(self) -> None:
        """Drop the last chunk's graph."""
        self._chunk = None

    def tensors(self, action: Action, tensors: Mapping[str, torch.Tensor]) -> None:
        """True gradients and the chunk's graph at F; δ̂ and the DNI update at S; T's target."""
        s = action.stage
        if action.op == "F":
            self._forward(s, tensors)
        elif action.op == "S" and "synthetic_gradient" in tensors:
            self.record(s, synthetic=tensors["synthetic_gradient"])
            if self._chunk is not None and self._chunk[0] == s:
                _, end, params = self._chunk
                (update,) = shadow.parameter_gradients(end, params, [tensors["synthetic_gradient"]])
                self.record(s, update_dni=update)
                self._chunk = None
        elif action.op == "T":
            batch = tensors["target"].shape[0]
            self.record(s, target=tensors["target"] / batch, prediction=tensors["prediction"] / batch)

    def _forward(self, s: int, t: Mapping[str, torch.Tensor]) -> None:
        self._chunk = None
        weights = shadow.current(self.runner.model)
        if s == 1:
            whole = [torch.cat([t[f"chunk_{k}"], t[f"rest_{k}"]]) for k in ("inputs", "targets", "mask")]
            self.record(0, true=self.future_gradient(weights, t["input"], *whole))
        if t["rest_inputs"].shape[0] == 0:
            return
        true = self.future_gradient(weights, t["h"], t["rest_inputs"], t["rest_targets"], t["rest_mask"])
        learnable, params = shadow.learnable(weights)
        start = split_state(t["input"].detach(), self.runner.model.state_sizes)
        end = flatten_state(shadow.call(self.runner.model, learnable, t["chunk_inputs"], start).last_state)
        (update,) = shadow.parameter_gradients(end, params, [true])
        self.record(s, true=true, update_bprop=update)
        self._chunk = (s, end, params)

    def future_gradient(self, weights: shadow.Weights, state: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor,
                        mask: torch.Tensor) -> torch.Tensor:
        """``∂L/∂s``: the gradient of the loss of the ticks ``inputs`` run from the flat state ``state``."""
        s = shadow.leaf(state)
        forward = shadow.call(self.runner.model, weights, inputs, split_state(s, self.runner.model.state_sizes))
        return shadow.gradient(self.loss_fn(forward.outputs, targets, mask), s)
