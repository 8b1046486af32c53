"""One training step of a method over a chain of stages, executed op by op.

The step runs exactly the ops of ``method.step_graph`` in a topological order, each op a method
here (``_F``, ``_S``, ``_B``, ``_U``, ``_T``, ``_SI``, ``_TI``). Backprop, DNI, cDNI, stochastic
updates and complete unlocking are the same runner over different dependency sets: backward
locking is simply ``B_i`` taking its output gradient from ``B_{i+1}`` instead of from ``S_i``.

Each op runs inside ``recorder.op(action)``, which is how the profiler times them.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from functools import lru_cache

import torch
from torch import nn
from torch.nn import functional as F

from sglab.dni.interface import Interface, regression_step
from sglab.dni.synthesizers import one_hot
from sglab.methods import Method
from sglab.ops import Action


class NullRecorder:
    """A recorder that records nothing: every op runs in a null context."""

    def op(self, action: Action) -> contextlib.AbstractContextManager:
        """Context manager wrapped around one op."""
        return contextlib.nullcontext()


@dataclass
class StepResult:
    """What one step produced: the loss, the batch error and each interface's synthesizer loss."""

    loss: float
    error: float
    synth_loss: dict[int, float] = field(default_factory=dict)
    input_loss: dict[int, float] = field(default_factory=dict)
    active: tuple[bool, ...] = ()


class _StepState:
    """Tensors passed between the ops of one step (the step's "wires")."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, context: torch.Tensor | None):
        self.x, self.y, self.context = x, y, context
        self.inputs: dict[int, torch.Tensor] = {}  # stage -> its input leaf (grad = its input gradient)
        self.outputs: dict[int, torch.Tensor] = {}  # stage -> h_i
        self.synthetic_grads: dict[int, torch.Tensor] = {}  # stage -> δ̂_i (with graph, for T)
        self.synthetic_inputs: dict[int, torch.Tensor] = {}  # stage -> ĥ_{i-1} (with graph, for TI)
        self.loss: torch.Tensor | None = None
        self.result = StepResult(loss=float("nan"), error=float("nan"))


class StepRunner:
    """Runs training steps of ``method`` on ``stages`` with one optimizer per stage.

    ``interfaces[i]`` sits between stage ``i`` and ``i+1`` (``K-1`` of them); they are needed
    only by methods with synthetic gradients or inputs.
    """

    def __init__(
        self,
        stages: nn.ModuleList,
        method: Method,
        optimizers: list[torch.optim.Optimizer],
        interfaces: list[Interface] | None = None,
        num_classes: int = 10,
        synth_loss_weight: float = 1.0,
        generator: torch.Generator | None = None,
    ):
        self.stages, self.method, self.optimizers = stages, method, optimizers
        self.interfaces = interfaces or []
        self.num_classes, self.synth_loss_weight = num_classes, synth_loss_weight
        self.generator = generator or torch.Generator().manual_seed(0)
        self.num_stages = len(stages)
        self._check()
        self._order = lru_cache(maxsize=None)(lambda active: method.step_order(self.num_stages, active))

    def _check(self) -> None:
        if len(self.optimizers) != self.num_stages:
            raise ValueError(f"need one optimizer per stage: {len(self.optimizers)} for {self.num_stages} stages")
        needs = self.method.synthetic_gradients or self.method.synthetic_inputs
        if needs and len(self.interfaces) != self.num_stages - 1:
            raise ValueError(f"method {self.method.name} needs {self.num_stages - 1} interfaces, got {len(self.interfaces)}")

    def sample_active(self) -> tuple[bool, ...]:
        """Which stages run B and U this step (all, unless the method updates stochastically)."""
        if self.method.update_prob >= 1.0:
            return (True,) * self.num_stages
        draws = torch.rand(self.num_stages, generator=self.generator)
        return tuple(bool(d < self.method.update_prob) for d in draws)

    def step(self, x: torch.Tensor, y: torch.Tensor, recorder=None) -> StepResult:
        """Run one training step on the batch ``(x, y)``."""
        recorder = recorder or NullRecorder()
        context = one_hot(y, self.num_classes).to(x.device) if self.method.context else None
        state = _StepState(x, y, context)
        state.result.active = self.sample_active()
        for action in self._order(state.result.active):
            with recorder.op(action):
                getattr(self, "_" + action.op)(action.stage, state)
        return state.result

    # ---- the ops -------------------------------------------------------------------------

    def _SI(self, i: int, state: _StepState) -> None:
        predicted = self.interfaces[i - 1].input_model(state.x, state.context)
        state.synthetic_inputs[i] = predicted
        state.inputs[i] = predicted.detach().requires_grad_(True)

    def _F(self, i: int, state: _StepState) -> None:
        learns = self.method.lower_stages_learn or i == self.num_stages - 1
        if i == 0:
            inp = state.x
        elif i in state.inputs:  # synthetic input from SI
            inp = state.inputs[i]
        else:
            inp = state.outputs[i - 1].detach().requires_grad_(self.method.lower_stages_learn)
            state.inputs[i] = inp
        with torch.set_grad_enabled(learns):
            out = self.stages[i](inp)
        state.outputs[i] = out
        if i == self.num_stages - 1:
            state.loss = F.cross_entropy(out, state.y)
            state.result.loss = float(state.loss.detach())
            state.result.error = float((out.detach().argmax(1) != state.y).float().mean())

    def _S(self, i: int, state: _StepState) -> None:
        synthesizer = self.interfaces[i].synthesizer
        state.synthetic_grads[i] = synthesizer(state.outputs[i].detach(), state.context)

    def _B(self, i: int, state: _StepState) -> None:
        self.optimizers[i].zero_grad(set_to_none=True)
        if i == self.num_stages - 1:
            state.loss.backward()
        elif self.method.synthetic_gradients:
            state.outputs[i].backward(state.synthetic_grads[i].detach())
        else:
            state.outputs[i].backward(state.inputs[i + 1].grad)

    def _U(self, i: int, state: _StepState) -> None:
        self.optimizers[i].step()

    def _T(self, i: int, state: _StepState) -> None:
        # Stage i+1's input gradient: the true one if i+1 is last, else bootstrapped through δ̂_{i+1}.
        target = state.inputs[i + 1].grad
        interface = self.interfaces[i]
        loss = regression_step(state.synthetic_grads[i], target, interface.synthesizer_optimizer, self.synth_loss_weight)
        state.result.synth_loss[i] = loss

    def _TI(self, i: int, state: _StepState) -> None:
        interface = self.interfaces[i - 1]
        loss = regression_step(state.synthetic_inputs[i], state.outputs[i - 1], interface.input_optimizer)
        state.result.input_loss[i - 1] = loss
