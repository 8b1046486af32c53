"""The feed-forward chain's probe: δ̂_i, its target and the true δ_i = ∂L/∂h_i at every interface.

When: at the step's start (``begin_step``) the probe copies every stage's parameters and buffers.
During the step it keeps what the ops show: each stage's input and output ``h_i`` (F), the
batch's labels (the last stage's F), ``δ̂_i`` (S_i) and T_i's prediction and bootstrapped target.
After the step (:meth:`~sglab.probes.probe.Probe.finish`) it computes, for every interface ``i``:

- ``δ_i``: the gradient of the loss of the real labels in the real ``h_i``, through stages
  ``i+1 .. K-1`` with the weights copied at the step's start. Those are the weights the stages
  above ``i`` hold when S_i runs in every feed-forward method (a stage updates only after the S
  of every interface below it), so ``δ_i`` is the gradient backprop would send ``h_i`` for this
  batch. In an unlocked chain ``h_i`` is what stage ``i`` made of its synthetic input.
- the stage's update from each gradient: ``J_i^T δ̂_i`` (what DNI updates stage ``i`` with) and
  ``J_i^T δ_i`` (what backprop would), the raw gradient of stage ``i``'s parameters before the
  optimizer, with ``J_i`` the Jacobian of ``h_i`` in them: stage ``i``'s forward recomputed on
  the input it had, with the weights of the step's start (those of its F and B).

The last stage has its loss, not an interface, so it has no record.
"""

from __future__ import annotations

from typing import Mapping

import torch

from sglab.ops import Action
from sglab.probes import shadow
from sglab.probes.probe import Probe


class ChainProbe(Probe):
    """The probe of a :class:`~sglab.exec.chain.ChainRunner` (read only: see :mod:`sglab.probes.shadow`)."""

    def __init__(self, runner):
        super().__init__()
        self.runner = runner

    def begin_step(self, step: int) -> None:
        """Copy the stages' weights: the shadow passes after the step run on these."""
        super().begin_step(step)
        self._weights = [shadow.frozen(stage) for stage in self.runner.stages]
        self._inputs: dict[int, torch.Tensor] = {}
        self._outputs: dict[int, torch.Tensor] = {}
        self._labels: torch.Tensor | None = None

    def tensors(self, action: Action, tensors: Mapping[str, torch.Tensor]) -> None:
        """Keep the stage inputs and outputs, the labels, δ̂ and T's prediction and target."""
        i = action.stage
        if action.op == "F":
            self._inputs[i], self._outputs[i] = tensors["input"], tensors["h"]
            self._labels = tensors.get("labels", self._labels)
        elif action.op == "S":
            self.record(i, synthetic=tensors["synthetic_gradient"])
        elif action.op == "T":
            self.record(i, prediction=tensors["prediction"], target=tensors["target"])

    def complete(self) -> None:
        """The true gradient and both updates at every interface whose stage ran."""
        for i in range(len(self.runner.stages) - 1):
            if i in self._outputs and self._labels is not None:
                self.record(i, true=self.true_gradient(i))
                self._updates(i)

    def true_gradient(self, i: int) -> torch.Tensor:
        """``δ_i``: the loss gradient in this step's ``h_i`` through the stages above at the step's start weights."""
        h_i = shadow.leaf(self._outputs[i])
        h = h_i
        for j in range(i + 1, len(self.runner.stages)):
            h = shadow.call(self.runner.stages[j], self._weights[j], h)
        loss, _ = self.runner.criterion(h, self._labels)
        return shadow.gradient(loss, h_i)

    def _updates(self, i: int) -> None:
        record = self.last[(i, 0)]
        weights, params = shadow.learnable(self._weights[i])
        h = shadow.call(self.runner.stages[i], weights, self._inputs[i].detach())
        names = ["update_bprop"] + (["update_dni"] if "synthetic" in record else [])
        grads = [record["true"]] + ([record["synthetic"]] if "synthetic" in record else [])
        self.record(i, **dict(zip(names, shadow.parameter_gradients(h, params, grads))))
