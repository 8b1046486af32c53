"""DNI-aided truncated BPTT: oracle equivalence with full BPTT, bootstrapped targets, op names."""

from __future__ import annotations

import contextlib

import pytest
import torch

from sglab.errors import SglabError
from sglab.ops import Action
from sglab.rnn.bptt import BPTTConfig, RecurrentTrainer, backward_chunk
from sglab.rnn.model import RecurrentNet
from sglab.rnn.synthesizer import StateSynthesizer, flatten_state, split_state
from sglab.rnn.tasks import CopyTask


class TraceRecorder:
    """Records the order of the ops a trainer runs."""

    def __init__(self):
        self.actions: list[Action] = []

    def op(self, action: Action):
        self.actions.append(action)
        return contextlib.nullcontext()


def _problem(core: str = "lstm", seed: int = 0, length: int = 4):
    torch.manual_seed(seed)
    task = CopyTask(bits=3)
    batch = task.sample(length, 5, torch.Generator().manual_seed(seed))
    model = RecurrentNet(task.input_size, 7, task.output_size, core=core)
    return task, batch, model


def _grads(model) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("core", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("truncation", [1, 3, 4])
def test_oracle_synthesizer_makes_dni_bptt_equal_full_bptt(core, truncation):
    """With the true future gradient at every boundary, the chunks' updates sum to full BPTT's."""
    task, batch, model = _problem(core)
    ticks = batch.inputs.shape[0]  # 9: chunks of 3 and 4 leave a short last chunk

    # Full BPTT over the whole sequence. Each chunk reads its start state through a copy, so the
    # gradient at the copy is the future's gradient with respect to (h, c) as the next chunk's
    # inputs: for an LSTM h is itself a function of c, and the total derivative at the previous
    # chunk's c would count the h path twice once backward_chunk injects into both.
    model.zero_grad()
    bounds = list(range(truncation, ticks, truncation))
    state, losses, boundary_states = model.initial_state(5), [], {}
    for begin in [0, *bounds]:
        end = min(begin + truncation, ticks)
        boundary_states[begin] = state = tuple(s * 1.0 for s in state)
        forward = model(batch.inputs[begin:end], state)
        losses.append(task.loss(forward.outputs, batch.targets[begin:end], batch.mask[begin:end]))
        state = forward.last_state
    sum(losses).backward(retain_graph=True)
    full = _grads(model)
    future = {}
    for k, end in enumerate(bounds):
        later = sum(losses[k + 1 :])
        future[end] = torch.autograd.grad(later, boundary_states[end], retain_graph=True, materialize_grads=True)

    # DNI-aided truncated BPTT with the oracle; parameters held fixed so the updates can be summed.
    model.zero_grad()
    state = model.initial_state(5)
    for begin in [0, *bounds]:
        end = min(begin + truncation, ticks)
        oracle = (lambda s, end=end: future[end]) if end < ticks else None
        chunk = backward_chunk(model, batch.inputs[begin:end], batch.targets[begin:end], batch.mask[begin:end], state, task.loss, oracle)
        state = chunk.end_state
    for got, want in zip(_grads(model), full):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_plain_truncation_differs_from_full_bptt():
    """The oracle test above can fail: without the future gradient the update is different."""
    task, batch, model = _problem()
    forward = model(batch.inputs, model.initial_state(5))
    task.loss(forward.outputs, batch.targets, batch.mask).backward()
    full = _grads(model)
    model.zero_grad()
    state = model.initial_state(5)
    for begin in range(0, 9, 3):
        state = backward_chunk(model, batch.inputs[begin : begin + 3], batch.targets[begin : begin + 3], batch.mask[begin : begin + 3], state, task.loss).end_state
    assert any(not torch.allclose(g, w, atol=1e-6) for g, w in zip(_grads(model), full))


def test_bootstrapped_target_is_chunk_gradient_plus_backpropagated_synthetic_gradient():
    task, batch, model = _problem()
    synthesizer = StateSynthesizer(model.state_sizes)
    torch.nn.init.normal_(synthesizer.net.net[-1].weight)  # a nonzero synthesizer
    start = tuple(torch.randn(5, size) for size in model.state_sizes)
    inputs, targets, mask = batch.inputs[4:7], batch.targets[4:7], batch.mask[4:7]

    # By hand: the in-chunk loss gradient at s_start plus J^T δ̂(s_end).
    leaf = tuple(s.clone().requires_grad_(True) for s in start)
    forward = model(inputs, leaf)
    loss = task.loss(forward.outputs, targets, mask)
    in_chunk = torch.autograd.grad(loss, leaf, retain_graph=True)
    synthetic = tuple(0.5 * g for g in synthesizer(tuple(s.detach() for s in forward.last_state)))
    through = torch.autograd.grad(forward.last_state, leaf, grad_outputs=synthetic)
    want = tuple(a + b for a, b in zip(in_chunk, through))

    chunk = backward_chunk(model, inputs, targets, mask, start, task.loss, lambda s: tuple(0.5 * g for g in synthesizer(s)))
    for got, expected in zip(chunk.start_grad, want):
        torch.testing.assert_close(got, expected)
    # At a sequence's end the future is empty: the target is the in-chunk gradient alone.
    model.zero_grad()
    last = backward_chunk(model, inputs, targets, mask, start, task.loss, None)
    for got, expected in zip(last.start_grad, in_chunk):
        torch.testing.assert_close(got, expected)
    assert not torch.allclose(flatten_state(last.start_grad), flatten_state(chunk.start_grad))


def test_trainer_regresses_synthesizer_onto_per_sequence_bootstrapped_target(monkeypatch):
    """T's target is the gradient that reached the chunk's first state, scaled to one sequence."""
    task, batch, model = _problem()
    trainer = RecurrentTrainer(model, BPTTConfig(method="dni", truncation=4, synth_scale=1.0, clip=None))
    seen = []
    from sglab.rnn import bptt

    def spy(prediction, target, optimizer, weight=1.0):
        seen.append(target.clone())
        return 0.0

    monkeypatch.setattr(bptt, "regression_step", spy)
    model_copy = RecurrentNet(task.input_size, 7, task.output_size)
    model_copy.load_state_dict(model.state_dict())
    trainer.train_sequence(batch.inputs, batch.targets, batch.mask, task.loss)
    # First chunk: the synthesizer is still zero, so its target is 5 x the in-chunk gradient at s_0.
    leaf = tuple(s.requires_grad_(True) for s in model_copy.initial_state(5))
    forward = model_copy(batch.inputs[:4], leaf)
    grads = torch.autograd.grad(task.loss(forward.outputs, batch.targets[:4], batch.mask[:4]), leaf)
    torch.testing.assert_close(seen[0], 5 * flatten_state(grads))
    assert len(seen) == 3  # 9 ticks in chunks of 4: one T per chunk


def test_zero_initialised_synthesizer_gives_exactly_zero_first_gradient():
    synthesizer = StateSynthesizer((4, 4), hidden_layers=1, width=8)
    out = synthesizer((torch.randn(3, 4), torch.randn(3, 4)))
    assert all(torch.equal(g, torch.zeros(3, 4)) for g in out)
    flat = torch.randn(3, 10)
    torch.testing.assert_close(flatten_state(split_state(flat, (3, 7))), flat)


def test_first_chunk_of_dni_updates_exactly_like_bptt():
    """A zero synthesizer stands in for "no future": on one chunk DNI and BPTT update identically."""
    task, batch, model = _problem()
    twin = RecurrentNet(task.input_size, 7, task.output_size)
    twin.load_state_dict(model.state_dict())
    chunk = slice(0, 4)
    for net, method in ((model, "dni"), (twin, "bptt")):
        trainer = RecurrentTrainer(net, BPTTConfig(method=method, truncation=4))
        trainer.train_sequence(batch.inputs[chunk], batch.targets[chunk], batch.mask[chunk], task.loss, ends=False)
    for a, b in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    "method, ends, expected",
    [
        ("bptt", True, ["0F0", "0B0", "0U0", "0F1", "0B1", "0U1", "0F2", "0B2", "0U2"]),
        ("dni", True, ["0F0", "0S0", "0B0", "0U0", "0T0", "0F1", "0S1", "0B1", "0U1", "0T1", "0F2", "0B2", "0U2", "0T2"]),
        ("dni", False, ["0F0", "0S0", "0B0", "0U0", "0T0", "0F1", "0S1", "0B1", "0U1", "0T1", "0F2", "0S2", "0B2", "0U2", "0T2"]),
        ("dni-aux", True, ["0F0", "0S0", "0B0", "0U0", "0T0", "0F1", "0S1", "0B1", "0U1", "0T1", "0F2", "0S2", "0B2", "0U2", "0T2"]),
    ],
)
def test_ops_are_named_per_chunk_in_the_shared_vocabulary(method, ends, expected):
    task, batch, _ = _problem()
    model = RecurrentNet(task.input_size, 7, task.output_size, aux=method == "dni-aux")
    recorder = TraceRecorder()
    RecurrentTrainer(model, BPTTConfig(method=method, truncation=4)).train_sequence(
        batch.inputs, batch.targets, batch.mask, task.loss, ends=ends, recorder=recorder
    )
    assert [str(a) for a in recorder.actions] == expected


def test_dni_aux_trains_aux_head_and_shapes_the_core():
    task, batch, model = _problem()
    model = RecurrentNet(task.input_size, 7, task.output_size, aux=True)
    trainer = RecurrentTrainer(model, BPTTConfig(method="dni-aux", truncation=3, lr=1e-2))
    before = model.aux_head.weight.clone()
    for _ in range(3):
        result = trainer.train_sequence(batch.inputs, batch.targets, batch.mask, task.loss)
    assert result.aux_loss >= 0 and result.synth_loss >= 0
    assert not torch.equal(before, model.aux_head.weight)


@pytest.mark.parametrize("method", ["bptt", "dni", "dni-aux"])
def test_training_reduces_copy_loss(method):
    task, batch, _ = _problem()
    torch.manual_seed(0)
    model = RecurrentNet(task.input_size, 16, task.output_size, aux=method == "dni-aux")
    trainer = RecurrentTrainer(model, BPTTConfig(method=method, truncation=3, lr=1e-2))
    losses = [trainer.train_sequence(batch.inputs, batch.targets, batch.mask, task.loss).loss for _ in range(60)]
    assert sum(losses[-10:]) / 10 < 0.8 * losses[0]


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"method": "cdni"}, "method"),
        ({"truncation": 0}, "truncation"),
        ({"truncation": 2.5}, "truncation"),
        ({"lr": 0}, "lr"),
        ({"synth_scale": -1}, "synth_scale"),
        ({"clip": 0}, "clip"),
    ],
)
def test_bad_training_settings_are_rejected_clearly(changes, field):
    with pytest.raises(SglabError, match=field):
        BPTTConfig(**changes).validate()


def test_dni_aux_needs_an_aux_head():
    task, _, model = _problem()
    with pytest.raises(SglabError, match="aux=True"):
        RecurrentTrainer(model, BPTTConfig(method="dni-aux"))
