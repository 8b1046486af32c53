"""Truncated BPTT, plain or DNI-aided: the recurrent network as a chain of chunks in time.

A sequence is cut into chunks of ``T`` ticks. Plain truncated BPTT (``bptt``) backpropagates
each chunk's own loss and treats the future as if it did not exist (zero gradient into the
chunk's last state). DNI-aided BPTT (``dni``) lets a synthesizer stand in for that future:

    loss gradient into the chunk's last state  =  scale · M(s_end)          (S op, then B)
    regression target for M at the first state =  ∂(chunk loss)/∂s_start
                                                  + (scale · M(s_end)) backpropagated through the chunk

The target is *bootstrapped*: it is read off the same backward pass that updates the core (it is
the gradient arriving at the chunk's first state), and it is the in-chunk gradient alone at the
end of a sequence, where the future is empty. Because the same scaled synthetic gradient feeds
the target, ``scale`` also acts as a discount on the bootstrapped future, like TD's γ; with
``scale = 1`` and a perfect synthesizer every chunk's update equals full BPTT's (see the tests).

``dni-aux`` adds the paper's auxiliary task (DNI+Aux), as read here: the network also predicts,
from its state after the chunk's first tick, the synthetic gradient ``M(s_end)`` that will stand
in for the future beyond the chunk's end, and that regression loss is backpropagated into the
core with the task loss.

Each chunk's work is named in the shared op vocabulary, stage 0 and microbatch = chunk index:
``F`` (forward over the chunk and its loss), ``S`` (synthesizer forward at the chunk's end),
``B`` (backward), ``U`` (update of the network), ``T`` (synthesizer regression step). Pass any
``recorder`` with ``op(action) -> context manager`` to time or trace them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch
from torch.nn import functional as F

from sglab.dni.interface import regression_step
from sglab.errors import SglabError
from sglab.ops import Action
from sglab.train.step import NullRecorder
from sglab.rnn.model import RecurrentNet
from sglab.rnn.synthesizer import State, StateSynthesizer, flatten_state

#: Training methods for recurrent networks.
METHODS = ("bptt", "dni", "dni-aux")

#: ``loss_fn(outputs, targets, mask) -> scalar``: a chunk's loss. It must be a *sum* over ticks
#: (averaged over the batch) so that chunk losses add up to the sequence's loss.
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
#: ``future(last_state) -> gradient``: what flows into a chunk's last state in place of the future.
FutureGradient = Callable[[State], State]


class RecurrentConfigError(SglabError, ValueError):
    """A recurrent-training setting that cannot work; the message names it."""


@dataclass
class BPTTConfig:
    """How a recurrent network is trained.

    Attributes:
        method: ``bptt`` (plain truncated BPTT), ``dni`` or ``dni-aux``.
        truncation: ``T``, ticks per chunk (one update per chunk).
        lr: Adam learning rate of the network.
        synth_lr: Adam learning rate of the synthesizer (default: ``lr``).
        synth_scale: factor on the synthetic gradient entering each chunk (the paper uses 0.1).
        synth_hidden_layers: 0 for a linear synthesizer, else an MLP with that many hidden layers.
        synth_width: hidden width of the MLP synthesizer.
        aux_weight: weight of the DNI+Aux regression loss (``dni-aux`` only).
        clip: clip the network's gradient norm per update to this value (None: no clipping).
    """

    method: str = "dni"
    truncation: int = 5
    lr: float = 1e-3
    synth_lr: float | None = None
    synth_scale: float = 0.1
    synth_hidden_layers: int = 0
    synth_width: int = 256
    aux_weight: float = 1.0
    clip: float | None = 1.0

    def validate(self) -> "BPTTConfig":
        """Raise :class:`RecurrentConfigError` naming the first bad field; returns self."""
        checks = [
            (self.method in METHODS, "method", f"must be one of {', '.join(METHODS)}, got {self.method!r}"),
            (isinstance(self.truncation, int) and self.truncation >= 1, "truncation", f"must be an integer >= 1, got {self.truncation!r}"),
            (self.lr > 0, "lr", f"must be > 0, got {self.lr}"),
            (self.synth_lr is None or self.synth_lr > 0, "synth_lr", f"must be > 0, got {self.synth_lr}"),
            (self.synth_scale >= 0, "synth_scale", f"must be >= 0, got {self.synth_scale}"),
            (self.synth_hidden_layers >= 0, "synth_hidden_layers", f"must be >= 0, got {self.synth_hidden_layers}"),
            (self.synth_width >= 1, "synth_width", f"must be >= 1, got {self.synth_width}"),
            (self.aux_weight >= 0, "aux_weight", f"must be >= 0, got {self.aux_weight}"),
            (self.clip is None or self.clip > 0, "clip", f"must be > 0 or None, got {self.clip}"),
        ]
        for ok, name, message in checks:
            if not ok:
                raise RecurrentConfigError(f"{name} {message}")
        return self

    @property
    def synthetic(self) -> bool:
        """Whether a synthesizer stands in for the future (``dni``, ``dni-aux``)."""
        return self.method != "bptt"

    @property
    def aux(self) -> bool:
        """Whether the DNI+Aux auxiliary task is on."""
        return self.method == "dni-aux"

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for config.json."""
        return asdict(self)


@dataclass
class ChunkResult:
    """One chunk's forward and backward.

    Attributes:
        loss: the chunk's task loss (detached).
        outputs: readout per tick (detached), ``(ticks, batch, output_size)``.
        start_state: the detached state the chunk started from.
        end_state: the detached state it ended in (the next chunk starts here).
        start_grad: gradient arriving at ``start_state`` (task loss + injected future), or None
            when it was not asked for; for DNI it is the synthesizer's bootstrapped target.
        aux_loss: the DNI+Aux regression loss, when computed.
    """

    loss: float
    outputs: torch.Tensor
    start_state: State
    end_state: State
    start_grad: State | None
    aux_loss: float | None = None


def backward_chunk(
    model: RecurrentNet,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor,
    start_state: State,
    loss_fn: LossFn,
    future: FutureGradient | None = None,
    *,
    aux_weight: float = 0.0,
    aux_target: Callable[[State], torch.Tensor] | None = None,
    need_start_grad: bool = True,
    recorder=None,
    chunk_index: int = 0,
) -> ChunkResult:
    """Forward one chunk and backpropagate into the network's ``.grad`` (ops F, S, B).

    ``future`` gives the gradient that flows into the chunk's last state (None: zero, as plain
    truncation or a sequence's end). With ``aux_weight > 0`` and ``aux_target`` the network's
    aux head regresses, from the state after the first tick, onto ``aux_target(last_state)``.
    Gradients *accumulate* in ``.grad``: the caller zeroes them (this lets a test sum chunks).
    """
    recorder = recorder or NullRecorder()
    start = tuple(s.detach().requires_grad_(need_start_grad) for s in start_state)
    with recorder.op(Action(0, "F", chunk_index)):
        forward = model(inputs, start)
        loss = loss_fn(forward.outputs, targets, mask)
    roots, grads = [loss], [None]
    aux_value = None
    if future is not None or (aux_weight > 0 and aux_target is not None):
        with recorder.op(Action(0, "S", chunk_index)):
            last = tuple(s.detach() for s in forward.last_state)
            if future is not None:
                roots += list(forward.last_state)
                grads += [g.detach() for g in future(last)]
            if aux_weight > 0 and aux_target is not None:
                aux_loss = F.mse_loss(model.predict_future(forward.first_state), aux_target(last).detach())
                roots[0] = loss + aux_weight * aux_loss
                aux_value = float(aux_loss.detach())
    with recorder.op(Action(0, "B", chunk_index)):
        torch.autograd.backward(roots, grads)
    start_grad = None
    if need_start_grad:
        start_grad = tuple(s.grad if s.grad is not None else torch.zeros_like(s) for s in start)
    return ChunkResult(
        loss=float(loss.detach()),
        outputs=forward.outputs.detach(),
        start_state=tuple(s.detach() for s in start),
        end_state=tuple(s.detach() for s in forward.last_state),
        start_grad=start_grad,
        aux_loss=aux_value,
    )


@dataclass
class SequenceResult:
    """What training on one batch of sequences produced.

    Attributes:
        loss: the sequence's task loss (sum of chunk losses, batch mean).
        outputs: readout per tick (detached), ``(ticks, batch, output_size)``.
        end_state: detached state after the last tick (carry it on for continuing streams).
        chunks: number of chunks, i.e. updates.
        synth_loss: mean synthesizer regression loss over the chunks (NaN for ``bptt``).
        aux_loss: mean DNI+Aux loss over the chunks (NaN unless ``dni-aux``).
    """

    loss: float
    outputs: torch.Tensor
    end_state: State
    chunks: int
    synth_loss: float = float("nan")
    aux_loss: float = float("nan")


def make_adam(params, lr: float) -> torch.optim.Optimizer:
    """Adam, fused where this torch supports it: recurrent training updates every few ticks, so
    the optimizer's per-step overhead is a large share of the time on small cores."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):  # older torch, or a device without a fused kernel
        return torch.optim.Adam(params, lr=lr)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


class RecurrentTrainer:
    """Trains a :class:`RecurrentNet` chunk by chunk with plain or DNI-aided truncated BPTT.

    Every chunk ends with an update of the network (U) and, for DNI, of the synthesizer (T):
    neither waits for the rest of the sequence, which is the backward unlocking in time.
    """

    def __init__(self, model: RecurrentNet, config: BPTTConfig):
        self.config = config.validate()
        if config.aux and model.aux_head is None:
            raise RecurrentConfigError("method dni-aux needs a network built with aux=True")
        self.model = model
        self.optimizer = make_adam(model.parameters(), config.lr)
        self.synthesizer: StateSynthesizer | None = None
        self.synth_optimizer: torch.optim.Optimizer | None = None
        if config.synthetic:
            device = next(model.parameters()).device
            self.synthesizer = StateSynthesizer(model.state_sizes, config.synth_hidden_layers, config.synth_width).to(device)
            self.synth_optimizer = make_adam(self.synthesizer.parameters(), config.synth_lr or config.lr)

    def synthetic_gradient(self, state: State) -> State:
        """The gradient injected at a chunk's last state: ``scale · M(s) / batch`` (batch-mean units)."""
        with torch.no_grad():
            predicted = self.synthesizer(state)
        factor = self.config.synth_scale / state[0].shape[0]
        return tuple(factor * g for g in predicted)

    def _aux_target(self, state: State) -> torch.Tensor:
        with torch.no_grad():
            return self.synthesizer.forward_flat(state)

    @staticmethod
    def _no_future(state: State) -> torch.Tensor:
        # At a sequence's end the future is empty, so the synthetic gradient to predict is zero.
        return torch.zeros_like(flatten_state(state))

    def train_sequence(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        mask: torch.Tensor,
        loss_fn: LossFn,
        state: State | None = None,
        ends: bool = True,
        recorder=None,
    ) -> SequenceResult:
        """Train on a batch of sequences ``(ticks, batch, ...)``, one update per chunk of ``T`` ticks.

        ``state`` is where the sequences start (zeros by default). ``ends=True`` means the
        sequences end here, so the last chunk's future is empty (zero gradient); ``False`` is
        for streams that go on (character-level language modelling), where the synthesizer
        speaks for the future at every chunk's end.
        """
        recorder = recorder or NullRecorder()
        cfg, ticks = self.config, inputs.shape[0]
        if state is None:
            state = self.model.initial_state(inputs.shape[1], inputs.device)
        starts = list(range(0, ticks, cfg.truncation))
        outputs, losses, synth_losses, aux_losses = [], [], [], []
        for k, begin in enumerate(starts):
            end = min(begin + cfg.truncation, ticks)
            last_chunk = ends and end == ticks
            future = self.synthetic_gradient if cfg.synthetic and not last_chunk else None
            aux_target = (self._no_future if last_chunk else self._aux_target) if cfg.aux else None
            self.optimizer.zero_grad(set_to_none=True)
            chunk = backward_chunk(
                self.model,
                inputs[begin:end],
                targets[begin:end],
                mask[begin:end],
                state,
                loss_fn,
                future,
                aux_weight=cfg.aux_weight if cfg.aux else 0.0,
                aux_target=aux_target,
                need_start_grad=cfg.synthetic,
                recorder=recorder,
                chunk_index=k,
            )
            with recorder.op(Action(0, "U", k)):
                if cfg.clip is not None:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip)
                self.optimizer.step()
            if cfg.synthetic:
                with recorder.op(Action(0, "T", k)):
                    synth_losses.append(self._train_synthesizer(chunk))
            state = chunk.end_state
            outputs.append(chunk.outputs)
            losses.append(chunk.loss)
            if chunk.aux_loss is not None:
                aux_losses.append(chunk.aux_loss)
        return SequenceResult(
            loss=sum(losses),
            outputs=torch.cat(outputs),
            end_state=state,
            chunks=len(starts),
            synth_loss=_mean(synth_losses),
            aux_loss=_mean(aux_losses),
        )

    def _train_synthesizer(self, chunk: ChunkResult) -> float:
        """T: regress ``M(s_start)`` onto the bootstrapped gradient that reached ``s_start``."""
        batch = chunk.start_state[0].shape[0]
        target = batch * flatten_state(chunk.start_grad)  # back to per-sequence units
        prediction = self.synthesizer.forward_flat(chunk.start_state)
        return regression_step(prediction, target, self.synth_optimizer)

    def modules(self) -> dict[str, torch.nn.Module]:
        """Trainable modules by role, for checkpoints and parameter counts."""
        found = {"model": self.model, "synthesizer": self.synthesizer}
        return {name: module for name, module in found.items() if module is not None}
