"""Truncated BPTT, plain or DNI-aided: a recurrent network as a chain of stages in time.

A batch of sequences is cut into chunks of ``T`` ticks, and chunk ``c`` is stage ``c + 1`` of
a :class:`~sglab.methods.Chain` whose stages share one set of weights (``tied``); stage 0 is
the state the sequences start from (``carried``: the previous window of a stream, or the
initial state). The registry's step graph over that chain orders the ops, and each op is a
call of :mod:`sglab.exec.ops`, as in the feed-forward chain:

- ``F``: the core over the chunk's ticks and the chunk's loss (an observer sees the chunk's start
  and end states, ``input`` and ``h``, its ticks, ``chunk_inputs`` / ``_targets`` / ``_mask``, and the
  ticks after it, ``rest_inputs`` / ``_targets`` / ``_mask``: what a fidelity probe needs for the true
  gradient of the sequence's remaining loss);
- ``S``: the synthetic gradient for the future beyond the chunk's end, ``scale · M(s_end)``
  (and, for DNI+Aux, the auxiliary loss: the core's prediction of that synthetic gradient
  from its state after the chunk's first tick);
- ``B``: backpropagate the chunk's loss and the injected future; ``U``: clip and step;
- ``T`` of interface ``i``: regress ``M(s_i)`` onto the gradient that reached ``s_i``, read off
  the backward of the chunk that starts there. That target is *bootstrapped*: it is the
  in-chunk gradient plus the chunk's own synthetic future backpropagated through it.

``nobprop`` (truncated BPTT) injects nothing: the future is treated as if it did not exist.
Because the same scaled synthetic gradient feeds the target, ``scale`` also acts as a discount
on the bootstrapped future, like TD's γ; with ``scale = 1`` and a perfect synthesizer every
chunk's update equals full BPTT's (see the tests).

Units: a synthesizer predicts the gradient of *one sequence's* loss with respect to that
sequence's state; the runner divides by the batch size when it injects the prediction into the
batch-mean loss and multiplies its regression target back.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import torch
from torch.nn import functional as F

from sglab.dni.synthesizers import State, StateSynthesizer, flatten_state
from sglab.errors import UsageError
from sglab.exec import ops
from sglab.exec.observe import Observer, as_observer
from sglab.methods import Chain, Method
from sglab.models.recurrent import RecurrentNet

#: ``loss_fn(outputs, targets, mask) -> scalar``: a chunk's loss. It must be a *sum* over ticks
#: (averaged over the batch) so that chunk losses add up to the sequence's loss.
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class SequenceResult:
    """What training on one batch of sequences produced.

    Attributes:
        loss: the sequence's task loss (sum of chunk losses, batch mean).
        outputs: readout per tick (detached), ``(ticks, batch, output_size)``.
        end_state: detached state after the last tick (carry it on for continuing streams).
        chunks: number of chunks, i.e. updates.
        synth_loss: mean synthesizer regression loss over the chunks (NaN without synthetic gradients).
        aux_loss: mean DNI+Aux loss over the chunks (NaN unless ``dni-aux``).
    """

    loss: float
    outputs: torch.Tensor
    end_state: State
    chunks: int
    synth_loss: float = float("nan")
    aux_loss: float = float("nan")


class _Chunk:
    """The wires of one chunk-stage: where it starts, what its forward made, what B reads."""

    def __init__(self, inputs, targets, mask, end: int):
        self.inputs, self.targets, self.mask, self.end = inputs, targets, mask, end  # end: the tick after the chunk
        self.start: State = ()
        self.forward = None
        self.loss: torch.Tensor | None = None
        self.roots: list[torch.Tensor] = []
        self.grads: list[torch.Tensor | None] = []
        self.start_grad: State | None = None


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


class RecurrentRunner:
    """Trains a :class:`RecurrentNet` chunk by chunk under ``method`` (nobprop, dni or dni-aux).

    Every chunk ends with an update of the network (U) and, with synthetic gradients, of the
    synthesizer (T): neither waits for the rest of the sequence, which is the backward
    unlocking in time.
    """

    def __init__(self, model: RecurrentNet, method: Method, optimizer: torch.optim.Optimizer,
                 synthesizer: StateSynthesizer | None = None, synth_optimizer: torch.optim.Optimizer | None = None, *,
                 truncation: int = 5, synth_scale: float = 0.1, aux_weight: float = 1.0, clip: float | None = 1.0):
        if method.aux and model.aux_head is None:
            raise UsageError(f"method {method.name} needs a network built with aux=True")
        if method.synthetic_gradients and synthesizer is None:
            raise UsageError(f"method {method.name} needs a state synthesizer")
        self.model, self.method, self.optimizer = model, method, optimizer
        self.synthesizer, self.synth_optimizer = synthesizer, synth_optimizer
        self.truncation, self.synth_scale, self.aux_weight, self.clip = truncation, synth_scale, aux_weight, clip
        self._order = lru_cache(maxsize=None)(self._plan)
        self._steps = 0

    def _plan(self, chunks: int, ends: bool):
        chain = Chain(chunks + 1, losses=frozenset(range(1, chunks + 1)), tied=True, carried=True, open_end=not ends)
        return self.method.step_order(chain)

    def synthetic_gradient(self, state: State) -> State:
        """The gradient injected at a chunk's last state: ``scale · M(s) / batch`` (batch-mean units)."""
        predicted = ops.synthesize(self.synthesizer, state, keep_graph=False)
        factor = self.synth_scale / state[0].shape[0]
        return tuple(factor * g for g in predicted)

    def train_sequence(self, inputs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, loss_fn: LossFn,
                       state: State | None = None, ends: bool = True, observer: Observer | None = None) -> SequenceResult:
        """Train on a batch of sequences ``(ticks, batch, ...)``, one update per chunk of ``T`` ticks.

        ``state`` is where the sequences start (zeros by default). ``ends=True`` means the
        sequences end here, so the last chunk's future is empty (zero gradient); ``False`` is
        for streams that go on (character-level language modelling), where the synthesizer
        speaks for the future at every chunk's end.
        """
        observer = as_observer(observer)
        observer.begin_step(self._steps)
        self._steps += 1
        ticks = inputs.shape[0]
        starts = list(range(0, ticks, self.truncation))
        chunks = [None] + [_Chunk(inputs[b:b + self.truncation], targets[b:b + self.truncation], mask[b:b + self.truncation],
                                  b + self.truncation) for b in starts]
        self._sequence = (inputs, targets, mask)
        self._carried = self.model.initial_state(inputs.shape[1], inputs.device) if state is None else state
        self._loss_fn, self._ends, self._synth, self._aux = loss_fn, ends, [], []
        for action in self._order(len(starts), ends):
            with observer.op(action):
                seen = getattr(self, "_" + action.op)(action.stage, chunks)
            if observer.wants_tensors:
                observer.tensors(action, {k: v.detach() for k, v in seen.items() if torch.is_tensor(v)})
        return SequenceResult(
            loss=sum(float(c.loss.detach()) for c in chunks[1:]),
            outputs=torch.cat([c.forward.outputs.detach() for c in chunks[1:]]),
            end_state=tuple(s.detach() for s in chunks[-1].forward.last_state),
            chunks=len(starts), synth_loss=_mean(self._synth), aux_loss=_mean(self._aux))

    # ---- the ops ----------------------------------------------------------------------

    def _F(self, s: int, chunks: list) -> dict:
        chunk = chunks[s]
        before = self._carried if s == 1 else chunks[s - 1].forward.last_state
        chunk.start = tuple(ops.input_leaf(t, self.method.synthetic_gradients) for t in before)
        chunk.forward = ops.forward(self.model, chunk.inputs, chunk.start)
        chunk.loss = self._loss_fn(chunk.forward.outputs, chunk.targets, chunk.mask)
        chunk.roots, chunk.grads = [chunk.loss], [None]
        inputs, targets, mask = self._sequence
        return {"input": flatten_state(chunk.start), "h": flatten_state(chunk.forward.last_state),
                "chunk_inputs": chunk.inputs, "chunk_targets": chunk.targets, "chunk_mask": chunk.mask,
                "rest_inputs": inputs[chunk.end:], "rest_targets": targets[chunk.end:], "rest_mask": mask[chunk.end:]}

    def _S(self, s: int, chunks: list) -> dict:
        chunk, last_chunk = chunks[s], s == len(chunks) - 1
        last = tuple(t.detach() for t in chunk.forward.last_state)
        seen = {}
        if not (last_chunk and self._ends):
            future = self.synthetic_gradient(last)
            chunk.roots += list(chunk.forward.last_state)
            chunk.grads += [g.detach() for g in future]
            seen["synthetic_gradient"] = flatten_state(future)
        if self.method.aux and self.aux_weight > 0:
            # DNI+Aux: predict, early in the chunk, the synthetic gradient that stands in for its future
            with torch.no_grad():
                ends = last_chunk and self._ends
                target = torch.zeros_like(flatten_state(last)) if ends else self.synthesizer.forward_flat(last)
            aux_loss = F.mse_loss(self.model.predict_future(chunk.forward.first_state), target.detach())
            chunk.roots[0] = chunk.loss + self.aux_weight * aux_loss
            self._aux.append(float(aux_loss.detach()))
        return seen

    def _B(self, s: int, chunks: list) -> dict:
        chunk = chunks[s]
        ops.backward(chunk.roots, chunk.grads, self.optimizer)
        if self.method.synthetic_gradients:
            chunk.start_grad = tuple(t.grad if t.grad is not None else torch.zeros_like(t) for t in chunk.start)
        return {"input_gradient": None if chunk.start_grad is None else flatten_state(chunk.start_grad)}

    def _U(self, s: int, chunks: list) -> dict:
        ops.update(self.optimizer, self.clip, self.model.parameters())
        return {}

    def _T(self, i: int, chunks: list) -> dict:
        """T of interface ``i``: ``M(s_i)`` onto the bootstrapped gradient that reached ``s_i``."""
        entered = chunks[i + 1]
        batch = entered.start[0].shape[0]
        target = batch * flatten_state(entered.start_grad)  # back to per-sequence units
        prediction = self.synthesizer.forward_flat(tuple(t.detach() for t in entered.start))
        self._synth.append(ops.train_synthesizer(prediction, target, self.synth_optimizer))
        return {"prediction": prediction, "target": target}

    def modules(self) -> dict[str, torch.nn.Module]:
        """Trainable modules by role, for checkpoints and parameter counts."""
        found = {"model": self.model, "synthesizer": self.synthesizer}
        return {name: module for name, module in found.items() if module is not None}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Optimizers by role, for checkpoints and learning-rate schedules."""
        found = {"model": self.optimizer, "synthesizer": self.synth_optimizer}
        return {name: opt for name, opt in found.items() if opt is not None}
