"""Small problems and observers shared by the recurrent tests."""

from __future__ import annotations

import contextlib

import torch

from sglab.dni.synthesizers import StateSynthesizer
from sglab.exec.observe import Observer
from sglab.exec.recurrent import RecurrentRunner
from sglab.methods import get_method
from sglab.models.recurrent import RecurrentNet
from sglab.tasks.copy import CopyTask

BATCH = 5


class OpRecorder(Observer):
    """Records the name of every op a runner runs, in order."""

    def __init__(self):
        self.actions: list[str] = []

    def op(self, action):
        self.actions.append(str(action))
        return contextlib.nullcontext()


class TensorRecorder(Observer):
    """Keeps a copy of every tensor the runner shows, by op name and tensor name."""

    wants_tensors = True

    def __init__(self):
        self.seen: dict[str, dict[str, torch.Tensor]] = {}

    def tensors(self, action, tensors):
        self.seen[str(action)] = {name: t.clone() for name, t in tensors.items()}


def copy_problem(core: str = "lstm", seed: int = 0, length: int = 4, hidden: int = 7):
    """A 3-bit Copy task, one batch of ``BATCH`` sequences (``2 * length + 1`` ticks) and a fresh network."""
    torch.manual_seed(seed)
    task = CopyTask(bits=3)
    batch = task.sample(length, BATCH, torch.Generator().manual_seed(seed))
    model = RecurrentNet(task.input_size, hidden, task.output_size, core=core)
    return task, batch, model


def make_runner(model: RecurrentNet, method: str, lr: float = 1e-3, **options) -> RecurrentRunner:
    """A runner of ``method`` with Adam for the network and (synthetic gradients) a linear state synthesizer."""
    resolved = get_method(method, "recurrent")
    synthesizer = synth_optimizer = None
    if resolved.synthetic_gradients:
        synthesizer = StateSynthesizer(model.state_sizes)
        synth_optimizer = torch.optim.Adam(synthesizer.parameters(), lr=lr)
    return RecurrentRunner(model, resolved, torch.optim.Adam(model.parameters(), lr=lr), synthesizer, synth_optimizer,
                           **options)


def fake_digits(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ten fixed random "digit" patterns plus noise: learnable in seconds, no MNIST needed."""
    prototypes = (torch.rand(10, 784, generator=torch.Generator().manual_seed(99)) > 0.5).float()
    labels = torch.arange(n) % 10
    return prototypes[labels] + 0.3 * torch.rand(n, 784, generator=torch.Generator().manual_seed(seed)), labels


#: A two-RNN system small enough to train in seconds on the fake digits.
TINY_TWO_RNN = dict(tick_ratio=2, b_ticks=3, hidden_a=16, hidden_b=8, message_size=4, encoder_hidden=16, lr=3e-3,
                    batch_size=16, eval_every=100, eval_episodes=128, device="cpu")
