"""A chain of ``K`` recurrent networks, each on its own clock, each talking to the next through a DNI.

Clocks. Network ``k`` ticks once for every message of network ``k-1``, and network ``k-1``
sends a message at the end of each of its chunks of ``ratios[k-1]`` ticks; so network ``k``
ticks once every ``ratios[k-1]`` ticks of network ``k-1`` (once every ``prod(ratios[:k])``
symbols). Every network but the last updates at the end of each of its chunks; the last
network's chunk is one tick, and it updates every tick. States carry on from chunk to chunk
and gradients stop at chunk boundaries (truncated BPTT), as in the two-RNN task.

Links. The interface between network ``k`` and ``k+1`` is link ``k``, carrying ``k``'s
message ``m_k``. Only the last network has a loss, so the only gradient a network upstream can
get is through its link: with DNI, link ``k``'s synthesizer ``M_{k+1}(m_k, c) ≈ ∂L/∂m_k``
(cDNI: ``c`` is the one-hot target of the last network's tick the message feeds). At the end
of its chunk network ``k`` backpropagates ``scale · M_{k+1}(m_k, c)`` and updates at once
(``kF kS kB kU``); network ``k+1``'s backward, at the end of *its* chunk, gives the true
``∂L/∂m_k`` of each message it read, and that trains ``M_{k+1}`` (``kT``). Nobody waits for
anybody. A cut link (``cut``; method ``nobprop`` cuts them all) has no synthesizer: the
network above it gets no gradient, runs F only, and so gives the link below it no target.

Ops are ``Action(network, op, chunk)``, through :mod:`sglab.exec.ops`; observers see each one.
The two-RNN runner (:mod:`sglab.exec.two_rnn`) is this clock scheme at ``K = 2`` with a loss
for A too; it stays separate for its task's own targets and its ``bprop`` method.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from sglab.exec import ops
from sglab.exec.observe import Observer, as_observer
from sglab.methods import Method
from sglab.ops import Action
from sglab.tasks.rnn_chain import ChainEpisodes


class _Message:
    """One message on its way across a link: what was sent, the leaf received, its context, its chunk."""

    def __init__(self, sent: torch.Tensor, received: torch.Tensor, context, chunk: int):
        self.sent, self.received, self.context, self.chunk = sent, received, context, chunk


class RNNChainRunner:
    """Networks ``0..K-1``, a synthesizer per open link and their optimizers; trains a batch of episodes per step."""

    def __init__(self, networks, method: Method, optimizers, synthesizers, synth_optimizers, *,
                 ratios: tuple[int, ...], classes: int, cut: frozenset[int] = frozenset(), synth_scale: float = 1.0):
        if len(ratios) != len(networks) - 1 or len(networks) < 2:
            raise ValueError(f"{len(networks)} networks need {len(networks) - 1} ratios, got {len(ratios)}")
        self.networks, self.method, self.net_optimizers = networks, method, optimizers
        self.synthesizers, self.synth_optimizers = synthesizers, synth_optimizers
        self.ratios, self.classes, self.synth_scale = tuple(ratios), classes, synth_scale
        self.cut = frozenset(cut)
        self._steps = 0

    @property
    def num_networks(self) -> int:
        """K."""
        return len(self.networks)

    def link_open(self, k: int) -> bool:
        """Whether link ``k`` (network ``k`` → ``k+1``) carries a synthetic gradient back."""
        return self.method.synthetic_gradients and k not in self.cut

    def learns(self, k: int) -> bool:
        """Whether network ``k`` ever gets a gradient: the last one from its loss, the others through their link."""
        return k == self.num_networks - 1 or self.link_open(k)

    def chunk_ticks(self, k: int) -> int:
        """Ticks per chunk of network ``k`` (one message, one update)."""
        return self.ratios[k] if k < self.num_networks - 1 else 1

    def span(self, k: int) -> int:
        """Symbols (ticks of network 0) per chunk of network ``k``."""
        out = 1
        for r in self.ratios[: k + 1]:
            out *= r
        return out

    # ---- one batch of episodes ---------------------------------------------------------

    def train_step(self, episodes: ChainEpisodes, observer: Observer | None = None) -> dict[str, float]:
        """Train every network on a batch of episodes; returns the last network's loss and accuracy, the synthesizers' losses."""
        observer = as_observer(observer)
        observer.begin_step(self._steps)
        self._steps += 1
        return self._episode(episodes, observer, training=True)

    @torch.no_grad()
    def evaluate(self, episodes: ChainEpisodes) -> dict[str, float]:
        """The last network's loss and accuracy on ``episodes`` with the current weights (nothing learns)."""
        return self._episode(episodes, as_observer(None), training=False)

    def _episode(self, episodes: ChainEpisodes, observer: Observer, training: bool) -> dict[str, float]:
        batch, device = episodes.inputs.shape[1], episodes.inputs.device
        self._e, self._obs, self._training = episodes, observer, training
        self._states = [(torch.zeros(batch, n.hidden, device=device), torch.zeros(batch, n.hidden, device=device))
                        for n in self.networks]
        self._chunks = [0] * self.num_networks
        self._totals = {"loss": 0.0, "correct": 0.0, **{f"synth_loss_{k}": 0.0 for k in range(self.num_networks - 1)}}
        last_ticks = episodes.counts.shape[0]
        for _ in range(last_ticks):
            self._chunk(self.num_networks - 1)
        totals = self._totals
        result = {"loss": totals["loss"] / last_ticks, "accuracy": totals["correct"] / last_ticks}
        for k in range(self.num_networks - 1):
            sent = self.span(self.num_networks - 1) // self.span(k) * last_ticks  # messages over link k
            result[f"synth_loss_{k}"] = totals[f"synth_loss_{k}"] / sent if self._trains_link(k) else float("nan")
        return result

    def _trains_link(self, k: int) -> bool:
        return self._training and self.link_open(k) and self.learns(k + 1)

    def _op(self, k: int, op: str, chunk: int, fn):
        action = Action(k, op, chunk)
        with self._obs.op(action):
            seen = fn()
        if self._obs.wants_tensors:
            self._obs.tensors(action, {n: v.detach() for n, v in seen.items() if torch.is_tensor(v)})
        return seen

    def _inputs(self, k: int) -> tuple[torch.Tensor, list[_Message]]:
        """Network ``k``'s inputs for one chunk: symbols for network 0, else the messages of network ``k-1``."""
        if k == 0:
            start = self._chunks[0] * self.chunk_ticks(0)
            return self._e.inputs[start:start + self.chunk_ticks(0)], []
        messages = [self._chunk(k - 1) for _ in range(self.chunk_ticks(k))]
        return torch.stack([m.received for m in messages]), messages

    def _context(self, k: int, chunk: int):
        """cDNI's context of network ``k``'s message of ``chunk``: the target of the last network's tick it feeds."""
        if not self.method.context:
            return None
        tick = chunk * self.span(k) // self.span(self.num_networks - 1)
        return F.one_hot(self._e.counts[tick], self.classes).float()

    def _chunk(self, k: int) -> _Message | None:
        """Run one chunk of network ``k`` (first the chunks upstream it reads); returns its message (None: the last)."""
        inputs, messages = self._inputs(k)
        chunk, last = self._chunks[k], k == self.num_networks - 1
        self._chunks[k] += 1
        learns = self._training and self.learns(k)
        wires = {}

        def forward():
            start = tuple(s.detach() for s in self._states[k])
            wires["out"], self._states[k] = ops.forward(self.networks[k], inputs, start, learns=learns)
            if last:
                wires["loss"] = F.cross_entropy(wires["out"], self._e.counts[chunk])
            return {"input": inputs, "h": wires["out"], **({"loss": wires["loss"]} if last else {})}

        self._op(k, "F", chunk, forward)
        if last:
            self._score(wires["out"], wires["loss"], chunk)
        if learns:
            self._learn(k, chunk, wires, last)
        if k > 0 and self._trains_link(k - 1):
            for message in messages:
                self._op(k - 1, "T", message.chunk, lambda m=message: self._train_link(k - 1, m))
        if last:
            return None
        sent = wires["out"]
        received = ops.input_leaf(sent, self._trains_link(k))
        return _Message(sent, received, self._context(k, chunk), chunk)

    def _learn(self, k: int, chunk: int, wires: dict, last: bool) -> None:
        """S (not for the last network), B and U of network ``k``'s chunk."""
        if not last:
            context = self._context(k, chunk)
            wires["context"] = context

            def synthesize():
                batch = wires["out"].shape[0]
                with torch.no_grad():
                    wires["grad"] = self.synth_scale * ops.synthesize(self.synthesizers[k], wires["out"], context,
                                                                      keep_graph=False) / batch
                return {"synthetic_gradient": wires["grad"]}

            self._op(k, "S", chunk, synthesize)

        def backward():
            if last:
                ops.backward([wires["loss"]], None, self.net_optimizers[k])
            else:
                ops.backward([wires["out"]], [wires["grad"]], self.net_optimizers[k])
            return {"output_gradient": wires.get("grad")}

        self._op(k, "B", chunk, backward)
        self._op(k, "U", chunk, lambda: ops.update(self.net_optimizers[k]) or {})

    def _train_link(self, k: int, message: _Message) -> dict:
        """T: link ``k``'s synthesizer towards the true gradient of one message, read off network ``k+1``'s backward."""
        batch = message.sent.shape[0]
        prediction = ops.synthesize(self.synthesizers[k], message.sent, message.context)
        target = batch * message.received.grad
        loss = ops.train_synthesizer(prediction, target, self.synth_optimizers[k])
        self._totals[f"synth_loss_{k}"] += loss
        return {"prediction": prediction, "target": target}

    def _score(self, logits: torch.Tensor, loss: torch.Tensor, tick: int) -> None:
        self._totals["loss"] += float(loss.detach())
        self._totals["correct"] += float((logits.argmax(-1) == self._e.counts[tick]).float().mean())

    def modules(self) -> dict[str, torch.nn.Module]:
        """Trainable modules by role (``net0``, ``synth0`` ...), for checkpoints."""
        found = {f"net{k}": n for k, n in enumerate(self.networks)}
        found.update({f"synth{k}": s for k, s in enumerate(self.synthesizers) if s is not None})
        return found

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Optimizers by role, for checkpoints and learning-rate schedules."""
        found = {f"net{k}": o for k, o in enumerate(self.net_optimizers) if o is not None}
        found.update({f"synth{k}": o for k, o in enumerate(self.synth_optimizers) if o is not None})
        return found
