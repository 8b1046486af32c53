"""DNI-aided truncated BPTT with RecurrentRunner: oracle equivalence with full BPTT, bootstrapped targets, op names."""

from __future__ import annotations

import contextlib

import pytest
import torch
from recurrent_helpers import BATCH, OpRecorder, TensorRecorder, copy_problem, make_runner

from sglab.config import ConfigError
from sglab.dni.synthesizers import StateSynthesizer, flatten_state, split_state
from sglab.errors import UsageError
from sglab.exec.observe import Observer
from sglab.exec.recurrent import RecurrentRunner
from sglab.methods import get_method
from sglab.models.recurrent import RecurrentNet
from sglab.training import CopyConfig


class FutureOracle(torch.nn.Module):
    """A state synthesizer that knows the future: at a boundary state it returns the true gradient
    of every later chunk's loss, in the runner's per-sequence units (it injects ``scale · M(s) / batch``)."""

    def __init__(self, boundaries: list[tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]]):
        super().__init__()
        self.boundaries = boundaries

    def forward(self, state, context=None):
        """``batch ×`` the future's gradient at the boundary whose state this is."""
        for known, gradient in self.boundaries:
            if all(torch.equal(a, b) for a, b in zip(state, known)):
                return tuple(state[0].shape[0] * g for g in gradient)
        raise AssertionError("the runner asked about a state that is no chunk boundary of the reference")

    def forward_flat(self, state):
        """The prediction T regresses (it has no parameters, so nothing is stepped)."""
        return flatten_state(self.forward(state))


class GradientSum(Observer):
    """Adds up the model's parameter gradients as each B op ends (B clears them before it runs)."""

    def __init__(self, model: torch.nn.Module):
        self.model, self.total = model, None

    @contextlib.contextmanager
    def op(self, action):
        yield
        if action.op == "B":
            grads = [p.grad.clone() for p in self.model.parameters()]
            self.total = grads if self.total is None else [t + g for t, g in zip(self.total, grads)]


def _full_bptt(task, batch, model, truncation):
    """Full BPTT's gradients, and each boundary's state with the gradient of the later chunks' loss there
    (boundary 0 is the initial state, whose synthesizer T regresses too).

    Each chunk reads its start state through a copy, so the gradient at the copy is the future's
    gradient with respect to (h, c) as the next chunk's inputs: an LSTM's h is itself a function
    of c, and the total derivative at the previous chunk's c would count the h path twice.
    """
    ticks = batch.inputs.shape[0]
    starts = list(range(0, ticks, truncation))
    state = tuple(s.requires_grad_(True) for s in model.initial_state(BATCH))  # so boundary 0 has a gradient
    losses, copies = [], []
    for begin in starts:
        copies.append(tuple(s * 1.0 for s in state))
        span = slice(begin, begin + truncation)
        forward = model(batch.inputs[span], copies[-1])
        losses.append(task.loss(forward.outputs, batch.targets[span], batch.mask[span]))
        state = forward.last_state
    model.zero_grad()
    sum(losses).backward(retain_graph=True)
    full = [p.grad.clone() for p in model.parameters()]
    boundaries = []
    for k in range(len(starts)):
        future = torch.autograd.grad(sum(losses[k:]), copies[k], retain_graph=True, materialize_grads=True)
        boundaries.append((tuple(s.detach() for s in copies[k]), future))
    return full, boundaries


@pytest.mark.parametrize("core", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("truncation", [1, 3, 4])
def test_oracle_synthesizer_makes_dni_bptt_equal_full_bptt(core, truncation):
    """With the true future gradient at every boundary, the chunks' updates sum to full BPTT's."""
    task, batch, model = copy_problem(core)  # 9 ticks: chunks of 3 and 4 leave a short last chunk
    full, boundaries = _full_bptt(task, batch, model, truncation)
    # lr 0 holds the parameters fixed, so every chunk's gradient is taken at the same point and the sum is comparable
    runner = RecurrentRunner(model, get_method("dni", "recurrent"), torch.optim.SGD(model.parameters(), lr=0.0),
                             FutureOracle(boundaries), None, truncation=truncation, synth_scale=1.0, clip=None)
    summed = GradientSum(model)
    runner.train_sequence(batch.inputs, batch.targets, batch.mask, task.loss, observer=summed)
    for got, want in zip(summed.total, full):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_plain_truncation_differs_from_full_bptt():
    """The oracle test above can fail: without the future gradient the update is different."""
    task, batch, model = copy_problem()
    full, _ = _full_bptt(task, batch, model, truncation=9)
    runner = RecurrentRunner(model, get_method("nobprop", "recurrent"), torch.optim.SGD(model.parameters(), lr=0.0),
                             truncation=3, clip=None)
    summed = GradientSum(model)
    runner.train_sequence(batch.inputs, batch.targets, batch.mask, task.loss, observer=summed)
    assert any(not torch.allclose(g, w, atol=1e-6) for g, w in zip(summed.total, full))


def _fixed_dni_runner(model, synthesizer, scale):
    """DNI with the network and the synthesizer held fixed, so targets can be recomputed by hand."""
    return RecurrentRunner(model, get_method("dni", "recurrent"), torch.optim.SGD(model.parameters(), lr=0.0),
                           synthesizer, None, truncation=3, synth_scale=scale, clip=None)


def test_bootstrapped_target_is_chunk_gradient_plus_backpropagated_synthetic_gradient():
    task, batch, model = copy_problem()
    synthesizer = StateSynthesizer(model.state_sizes)
    torch.nn.init.normal_(synthesizer.net.net[-1].weight)  # a nonzero synthesizer
    start = tuple(torch.randn(BATCH, size) for size in model.state_sizes)
    inputs, targets, mask = batch.inputs[3:9], batch.targets[3:9], batch.mask[3:9]  # two chunks of 3 ticks
    seen = {}
    for ends in (True, False):
        recorder = TensorRecorder()
        _fixed_dni_runner(model, synthesizer, 0.5).train_sequence(inputs, targets, mask, task.loss, state=start,
                                                                  ends=ends, observer=recorder)
        seen[ends] = recorder.seen

    def by_hand(begin, state, with_future):
        """``batch ×`` (in-chunk gradient at the chunk's first state + Jᵀ δ̂ at its last), and the last state."""
        leaf = tuple(s.clone().requires_grad_(True) for s in state)
        forward = model(inputs[begin:begin + 3], leaf)
        loss = task.loss(forward.outputs, targets[begin:begin + 3], mask[begin:begin + 3])
        grads = torch.autograd.grad(loss, leaf, retain_graph=True)
        if with_future:
            synthetic = tuple(0.5 * g / BATCH for g in synthesizer(tuple(s.detach() for s in forward.last_state)))
            through = torch.autograd.grad(forward.last_state, leaf, grad_outputs=synthetic)
            assert flatten_state(through).abs().max() > 0
            grads = tuple(a + b for a, b in zip(grads, through))
        return BATCH * flatten_state(grads), tuple(s.detach() for s in forward.last_state)

    first, middle = by_hand(0, start, with_future=True)
    torch.testing.assert_close(seen[True]["0T0"]["target"], first)  # T of interface 0 follows chunk 0's B
    torch.testing.assert_close(seen[True]["0T0"]["prediction"], synthesizer.forward_flat(start))
    # At a sequence's end the future is empty: the target is the in-chunk gradient alone ...
    last_alone, _ = by_hand(3, middle, with_future=False)
    torch.testing.assert_close(seen[True]["1T0"]["target"], last_alone)
    # ... while a stream that goes on bootstraps its last chunk's target too.
    last_bootstrapped, _ = by_hand(3, middle, with_future=True)
    torch.testing.assert_close(seen[False]["1T0"]["target"], last_bootstrapped)
    assert not torch.allclose(last_alone, last_bootstrapped)


def test_runner_regresses_synthesizer_onto_per_sequence_target():
    """T's target is the gradient that reached the chunk's first state, scaled to one sequence."""
    task, batch, model = copy_problem()
    twin = RecurrentNet(task.input_size, 7, task.output_size)
    twin.load_state_dict(model.state_dict())
    recorder = TensorRecorder()
    make_runner(model, "dni", truncation=4, synth_scale=1.0, clip=None).train_sequence(
        batch.inputs, batch.targets, batch.mask, task.loss, observer=recorder)
    # The synthesizer is still zero in the first chunk, so its target is 5 x the in-chunk gradient at s_0.
    leaf = tuple(s.requires_grad_(True) for s in twin.initial_state(BATCH))
    forward = twin(batch.inputs[:4], leaf)
    grads = torch.autograd.grad(task.loss(forward.outputs, batch.targets[:4], batch.mask[:4]), leaf)
    torch.testing.assert_close(recorder.seen["0T0"]["target"], BATCH * flatten_state(grads))
    assert sorted(name for name in recorder.seen if "T" in name) == ["0T0", "1T0", "2T0"]  # 9 ticks, chunks of 4


def test_zero_initialised_synthesizer_gives_exactly_zero_first_gradient():
    synthesizer = StateSynthesizer((4, 4), hidden_layers=1, width=8)
    out = synthesizer((torch.randn(3, 4), torch.randn(3, 4)))
    assert all(torch.equal(g, torch.zeros(3, 4)) for g in out)
    flat = torch.randn(3, 10)
    torch.testing.assert_close(flatten_state(split_state(flat, (3, 7))), flat)


def test_first_chunk_of_dni_updates_exactly_like_truncated_bptt():
    """A zero synthesizer stands in for "no future": on one chunk DNI and nobprop update identically."""
    task, batch, model = copy_problem()
    twin = RecurrentNet(task.input_size, 7, task.output_size)
    twin.load_state_dict(model.state_dict())
    chunk = slice(0, 4)
    for net, method in ((model, "dni"), (twin, "nobprop")):
        make_runner(net, method, truncation=4).train_sequence(batch.inputs[chunk], batch.targets[chunk],
                                                              batch.mask[chunk], task.loss, ends=False)
    assert not torch.equal(model.readout.weight, RecurrentNet(task.input_size, 7, task.output_size).readout.weight)
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.equal(a, b)


# Chunk c is stage c + 1 (stage 0 is the carried-in state); cT0, the T of interface c, follows chunk c's B.
@pytest.mark.parametrize("method, ends, expected", [
    ("nobprop", True, "1F0 1B0 1U0 2F0 2B0 2U0 3F0 3B0 3U0"),
    ("bptt", True, "1F0 1B0 1U0 2F0 2B0 2U0 3F0 3B0 3U0"),  # the alias of nobprop
    ("dni", True, "1F0 1S0 1B0 0T0 1U0 2F0 2S0 2B0 1T0 2U0 3F0 3B0 2T0 3U0"),
    ("dni", False, "1F0 1S0 1B0 0T0 1U0 2F0 2S0 2B0 1T0 2U0 3F0 3S0 3B0 2T0 3U0"),
    ("dni-aux", True, "1F0 1S0 1B0 0T0 1U0 2F0 2S0 2B0 1T0 2U0 3F0 3S0 3B0 2T0 3U0"),
])
def test_ops_are_named_per_chunk_in_the_shared_vocabulary(method, ends, expected):
    task, batch, _ = copy_problem()
    model = RecurrentNet(task.input_size, 7, task.output_size, aux=method == "dni-aux")
    recorder = OpRecorder()
    make_runner(model, method, truncation=4).train_sequence(batch.inputs, batch.targets, batch.mask, task.loss,
                                                           ends=ends, observer=recorder)
    assert recorder.actions == expected.split()


def test_dni_aux_trains_aux_head_and_shapes_the_core():
    task, batch, _ = copy_problem()
    models = {}
    for weight in (1.0, 0.0):
        torch.manual_seed(0)
        model = RecurrentNet(task.input_size, 7, task.output_size, aux=True)
        runner = make_runner(model, "dni-aux", lr=1e-2, truncation=3, aux_weight=weight)
        for _ in range(3):
            result = runner.train_sequence(batch.inputs, batch.targets, batch.mask, task.loss)
        models[weight] = model
    assert result.synth_loss >= 0 and result.aux_loss != result.aux_loss  # weight 0: no aux loss reported (NaN)
    assert torch.count_nonzero(models[1.0].aux_head.weight) > 0  # it starts at zero
    assert torch.count_nonzero(models[0.0].aux_head.weight) == 0
    assert not torch.equal(models[1.0].core.weight_hh, models[0.0].core.weight_hh)  # the aux loss reached the core


@pytest.mark.parametrize("method", ["nobprop", "dni", "dni-aux"])
def test_training_reduces_copy_loss(method):
    task, batch, _ = copy_problem()
    torch.manual_seed(0)
    model = RecurrentNet(task.input_size, 16, task.output_size, aux=method == "dni-aux")
    runner = make_runner(model, method, lr=1e-2, truncation=3)
    results = [runner.train_sequence(batch.inputs, batch.targets, batch.mask, task.loss) for _ in range(60)]
    losses = [r.loss for r in results]
    assert sum(losses[-10:]) / 10 < 0.8 * losses[0]
    assert results[-1].chunks == 3 and results[-1].outputs.shape == batch.targets.shape


@pytest.mark.parametrize("changes, field", [
    ({"method": "cdni"}, "method"),
    ({"method": "bprop"}, "method"),
    ({"truncation": 0}, "truncation"),
    ({"truncation": 2.5}, "truncation"),
    ({"lr": 0}, "lr"),
    ({"synth_scale": -1}, "synth_scale"),
    ({"clip": 0}, "clip"),
    ({"core": "transformer"}, "core"),
])
def test_bad_training_settings_are_rejected_clearly(changes, field):
    with pytest.raises(ConfigError, match=f"'{field}'"):
        CopyConfig(**changes)


def test_dni_aux_needs_an_aux_head():
    task, _, model = copy_problem()
    with pytest.raises(UsageError, match="aux=True"):
        make_runner(model, "dni-aux")
