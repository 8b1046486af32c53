"""One training step of a method over a feed-forward chain of stages, op by op.

The runner executes exactly the ops of ``method.step_graph`` in its topological order, each
by a call of :mod:`sglab.exec.ops`; backprop, DNI, cDNI, stochastic updates and unlocking,
and complete unlocking are the same runner over different dependency sets: backward locking
is simply ``B_i`` taking its output gradient from ``B_{i+1}`` instead of from ``S_i``.
Each op runs inside ``observer.op(action)``, and an observer that wants them sees its tensors.
With no observer, backprop (whose ops are one forward chain and one backward chain) runs as one
forward and one autograd call: bitwise the same step (tested), without the per-stage backward
calls and input leaves that only an observer of single ops needs.

The synthesizers' objective (:class:`~sglab.dni.losses.SynthObjective`) picks what S and T do:

- ``l2``: S makes ``δ̂_i = M(h_i, c)``; T regresses it onto stage ``i+1``'s input gradient ``δ``
  (the true gradient for the last interface, bootstrapped through ``δ̂_{i+1}`` otherwise).
- ``sobolev``: as ``l2``, and T also matches ``J_M v`` to ``J_δ v`` for ``k`` random directions
  ``v`` drawn from the runner's generator. ``J_δ`` is the derivative in ``h`` of the very target
  ``δ``: a functional copy of stage ``i+1`` (and of any stages after it whose interfaces waited
  for the true gradient this step) closed by the loss (a Hessian-vector product) or by the
  synthesizer whose ``δ̂`` stage ``i+1``'s backward used (:mod:`sglab.dni.targets`). The copies
  use the weights of the forward: every feed-forward order runs ``T_i`` before ``U_{i+1}`` and
  ``T_{i+1}``. With synthetic inputs the target is taken at stage ``i+1``'s input ``ĥ_i``, as ``δ`` is.
- ``critic``: S makes ``δ̂_i = ∂(Σ_b L̂_i(h_i, c))/∂h_i`` by autograd (graph kept), ``L̂`` predicting
  each sample's share ``ℓ_b/B`` of the batch loss; T fits the gradient to ``δ`` as ``l2`` does and
  the value ``L̂_i`` to ``V``: the true share ``ℓ_b/B`` where stage ``i+1``'s gradient came from the
  loss (the last interface), else the critic
  value ``L̂_j(h_j)`` of the interface ``j`` whose ``δ̂_j`` that backward used (``j = i+1`` unless
  it waited): a bootstrapped value, as in TD learning, consistent with the bootstrapped gradient.
  The criterion's batch loss must be the mean of its per-sample losses (both criteria here are).

Only ``l2`` runs in the recurrent and two-RNN runners.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from sglab.dni import losses, targets
from sglab.dni.interface import Interface
from sglab.dni.losses import SynthObjective
from sglab.dni.synthesizers import CriticSynthesizer, one_hot
from sglab.exec import ops
from sglab.exec.observe import Observer, as_observer
from sglab.methods import Chain, Method

#: ``criterion(output, y) -> (loss, error)``: the last stage's loss and its batch error rate.
Criterion = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def classification(output: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy and the fraction of wrong argmax predictions."""
    return F.cross_entropy(output, y), (output.detach().argmax(1) != y).float().mean()


def label_context(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """cDNI's context ``c``: the one-hot label of a class, or a regression's target itself."""
    return y.flatten(1) if y.is_floating_point() else one_hot(y, num_classes)


@dataclass
class StepResult:
    """What one step produced: the loss, the batch error and each interface's synthesizer loss."""

    loss: float
    error: float
    synth_loss: dict[int, float] = field(default_factory=dict)
    input_loss: dict[int, float] = field(default_factory=dict)
    active: tuple[bool, ...] = ()
    locked: tuple[bool, ...] = ()


class _Wires:
    """Tensors passed between the ops of one step."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, context: torch.Tensor | None):
        self.x, self.y, self.context = x, y, context
        self.inputs: dict[int, torch.Tensor] = {}  # stage -> its input leaf (grad = its input gradient)
        self.outputs: dict[int, torch.Tensor] = {}  # stage -> h_i
        self.synthetic_grads: dict[int, torch.Tensor] = {}  # stage -> δ̂_i (with graph, for T)
        self.synthetic_inputs: dict[int, torch.Tensor] = {}  # stage -> ĥ_{i-1} (with graph, for TI)
        self.synth_leaves: dict[int, torch.Tensor] = {}  # stage -> h_i as the leaf δ̂_i was made from (sobolev, critic)
        self.values: dict[int, torch.Tensor] = {}  # stage -> L̂_i(h_i, c) per sample (critic, with graph)
        self.sample_losses: torch.Tensor | None = None  # ℓ_b of the last stage (critic)
        self.loss: torch.Tensor | None = None
        self.result = StepResult(loss=float("nan"), error=float("nan"))


class ChainRunner:
    """Runs training steps of ``method`` on ``stages`` with one optimizer per stage.

    ``interfaces[i]`` sits between stage ``i`` and ``i+1`` (``K-1`` of them); they are needed
    only by methods with synthetic gradients or inputs. ``objective`` trains their synthesizers
    (default: the paper's L2 regression); a critic objective needs critic synthesizers.
    """

    def __init__(self, stages: nn.ModuleList, method: Method, optimizers: list[torch.optim.Optimizer],
                 interfaces: list[Interface] | None = None, num_classes: int = 10, synth_loss_weight: float = 1.0,
                 generator: torch.Generator | None = None, criterion: Criterion = classification,
                 objective: SynthObjective | None = None):
        self.stages, self.method, self.optimizers = stages, method, optimizers
        self.objective = objective or SynthObjective()
        self.interfaces = interfaces or []
        self.num_classes, self.synth_loss_weight, self.criterion = num_classes, synth_loss_weight, criterion
        self.generator = generator or torch.Generator().manual_seed(0)
        self.num_stages = len(stages)
        self.chain = Chain(self.num_stages)
        self._check()
        self._order = lru_cache(maxsize=None)(lambda active, locked: method.step_order(self.chain, active, locked))
        self._learns = [method.learns(i, self.chain) for i in range(self.num_stages)]
        self._input_grad = method.gradient in ("true", "synthetic")  # someone reads each stage's input gradient
        self._fusable = method.gradient == "true" and not (method.pipelined or method.split_backward or method.weight_delay
                                                           or method.synthetic_inputs) and method.update_prob >= 1
        self._steps = 0

    def _check(self) -> None:
        if len(self.optimizers) != self.num_stages:
            raise ValueError(f"need one optimizer per stage: {len(self.optimizers)} for {self.num_stages} stages")
        needs = self.method.synthetic_gradients or self.method.synthetic_inputs
        if needs and len(self.interfaces) != self.num_stages - 1:
            raise ValueError(f"method {self.method.name} needs {self.num_stages - 1} interfaces, got {len(self.interfaces)}")
        if self.objective.kind == "critic" and self.method.synthetic_gradients and not all(
                isinstance(interface.synthesizer, CriticSynthesizer) for interface in self.interfaces):
            raise ValueError("the critic objective needs critic synthesizers (sglab.dni.synthesizers.make_critic)")

    def sample_active(self) -> tuple[bool, ...]:
        """Which stages run B and U this step (all, unless the method updates stochastically)."""
        if self.method.update_prob >= 1.0:
            return (True,) * self.num_stages
        return self.method.active(torch.rand(self.num_stages, generator=self.generator).tolist())

    def sample_locked(self) -> tuple[bool, ...]:
        """Which interfaces wait for the true gradient this step (none, unless unlocking is stochastic)."""
        if self.method.unlock_prob >= 1.0 or self.num_stages < 2:
            return (False,) * self.num_stages
        return self.method.locked(torch.rand(self.num_stages - 1, generator=self.generator).tolist()) + (False,)

    def step(self, x: torch.Tensor, y: torch.Tensor, observer: Observer | None = None) -> StepResult:
        """Run one training step on the batch ``(x, y)``."""
        if observer is None and self._fusable:
            return self._fused_step(x, y)
        observer = as_observer(observer)
        observer.begin_step(self._steps)
        self._steps += 1
        context = label_context(y, self.num_classes).to(x.device) if self.method.context else None
        wires = _Wires(x, y, context)
        wires.result.active = active = self.sample_active()
        wires.result.locked = locked = self.method.waiting(active, self.sample_locked())
        for action in self._order(active, locked):
            with observer.op(action):
                seen = getattr(self, "_" + action.op)(action.stage, wires)
            if observer.wants_tensors:
                observer.tensors(action, {k: v.detach() for k, v in seen.items() if v is not None})
        return wires.result

    def _fused_step(self, x: torch.Tensor, y: torch.Tensor) -> StepResult:
        """Backprop's step with nobody watching its ops: every F as one graph, one backward, every U."""
        self._steps += 1
        h = x
        for stage in self.stages:
            h = stage(h)
        loss, error = self.criterion(h, y)
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for optimizer in self.optimizers:
            ops.update(optimizer)
        return StepResult(loss=float(loss.detach()), error=float(error), active=(True,) * self.num_stages,
                          locked=(False,) * self.num_stages)

    # ---- the ops: each gathers its tensors, calls sglab.exec.ops, stores what it made --------

    def _SI(self, i: int, w: _Wires) -> dict:
        predicted, w.inputs[i] = ops.synthetic_input(self.interfaces[i - 1].input_model, w.x, w.context)
        w.synthetic_inputs[i] = predicted
        return {"synthetic_input": predicted}

    def _F(self, i: int, w: _Wires) -> dict:
        if i == 0:
            inp = w.x
        elif i in w.inputs:  # a synthetic input from SI
            inp = w.inputs[i]
        else:
            inp = w.inputs[i] = ops.input_leaf(w.outputs[i - 1], self._input_grad)
        out = w.outputs[i] = ops.forward(self.stages[i], inp, learns=self._learns[i])
        if i == self.num_stages - 1:
            w.loss, error = self.criterion(out, w.y)
            w.result.loss, w.result.error = float(w.loss.detach()), float(error)
            return {"input": inp, "h": out, "labels": w.y, "loss": w.loss}
        return {"input": inp, "h": out}

    def _S(self, i: int, w: _Wires) -> dict:
        synthesizer, kind = self.interfaces[i].synthesizer, self.objective.kind
        if kind == "l2":
            w.synthetic_grads[i] = ops.synthesize(synthesizer, w.outputs[i], w.context)
        else:  # T differentiates δ̂_i with respect to h_i, so h_i enters as a leaf that requires grad
            leaf = w.synth_leaves[i] = ops.input_leaf(w.outputs[i], True)
            if kind == "critic":
                w.values[i], w.synthetic_grads[i] = synthesizer.value_and_gradient(leaf, w.context)
            else:
                w.synthetic_grads[i] = synthesizer(leaf, w.context)
        return {"synthetic_gradient": w.synthetic_grads[i]}

    def _B(self, i: int, w: _Wires) -> dict:
        if i == self.num_stages - 1:
            roots, grad = [w.loss], None
        elif self.method.synthetic_gradients and not w.result.locked[i]:
            roots, grad = [w.outputs[i]], w.synthetic_grads[i].detach()
        else:
            roots, grad = [w.outputs[i]], w.inputs[i + 1].grad
        ops.backward(roots, None if grad is None else [grad], self.optimizers[i])
        inp = w.inputs.get(i)
        return {"output_gradient": grad, "input_gradient": None if inp is None else inp.grad}

    def _U(self, i: int, w: _Wires) -> dict:
        ops.update(self.optimizers[i])
        return {}

    def _T(self, i: int, w: _Wires) -> dict:
        # Stage i+1's input gradient: the true one if i+1 is last, else bootstrapped through δ̂_{i+1}.
        target, prediction = w.inputs[i + 1].grad, w.synthetic_grads[i]
        optimizer = self.interfaces[i].synthesizer_optimizer
        if self.objective.kind == "l2":
            loss = ops.train_synthesizer(prediction, target, optimizer, self.synth_loss_weight)
        else:
            objective = self._sobolev if self.objective.kind == "sobolev" else self._critic
            loss = losses.optimizer_step(objective(i, w, prediction, target), optimizer, self.synth_loss_weight)
        w.result.synth_loss[i] = loss
        return {"prediction": prediction, "target": target}

    def _source(self, i: int, w: _Wires) -> int:
        """The stage whose loss or synthetic gradient stage ``i+1``'s input gradient came from this step."""
        j = i + 1
        while j < self.num_stages - 1 and w.result.locked[j]:  # B_j waited for the true gradient from j+1
            j += 1
        return j

    def _sobolev(self, i: int, w: _Wires, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        j, objective = self._source(i, w), self.objective
        leaf = w.synth_leaves[i]
        directions = losses.random_directions(leaf, objective.directions, objective.distribution, self.generator)
        if j == self.num_stages - 1:
            close = targets.close_with_loss(self.criterion, w.y)
        else:
            close = targets.close_with_synthesizer(self.interfaces[j].synthesizer, w.context)
        wanted = targets.target_jvps(w.inputs[i + 1], self.stages[i + 1:j + 1], close, directions)
        made = losses.jacobian_vectors(prediction, leaf, directions, create_graph=True)
        return losses.sobolev_loss(prediction, target, made, wanted, objective.sobolev_weight)

    def _critic(self, i: int, w: _Wires, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        j = self._source(i, w)
        if j < self.num_stages - 1:
            value = w.values[j].detach()
        else:
            if w.sample_losses is None:
                w.sample_losses = targets.per_sample_loss(self.criterion, w.outputs[j], w.y)
            value = w.sample_losses / w.sample_losses.shape[0]  # each sample's share of the batch loss
        return losses.critic_loss(prediction, target, w.values[i], value, self.objective.value_weight)

    def _TI(self, i: int, w: _Wires) -> dict:
        prediction, target = w.synthetic_inputs[i], w.outputs[i - 1]
        w.result.input_loss[i - 1] = ops.train_synthesizer(prediction, target, self.interfaces[i - 1].input_optimizer)
        return {"prediction": prediction, "target": target}

