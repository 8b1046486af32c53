"""The recurrent probe: its true gradient is full BPTT's, and an oracle synthesizer scores perfectly."""

import pytest
import torch
from torch import nn

from sglab.dni.synthesizers import StateSynthesizer, flatten_state, split_state
from sglab.exec.observe import Observer, Observers
from sglab.exec.recurrent import RecurrentRunner
from sglab.methods import get_method
from sglab.models.recurrent import RecurrentNet
from sglab.probes import RecurrentProbe, shadow
from sglab.tasks.copy import CopyTask

TASK, T, BATCH = CopyTask(bits=3), 2, 4


def sequences(n=3, length=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [TASK.sample(length, BATCH, g) for _ in range(n)]


def full_bptt(model, batch, state=None):
    """``∂L_{>i}/∂s_i`` at every chunk boundary ``s_i``: one graph over the whole sequence from its start,
    differentiated by plain autograd (the loss of the ticks after ``s_i``: chunk ``i``'s own loss
    depends on ``s_i`` through its last output, which is chunk ``i``'s business, not the future's).

    The state's tensors are the boundary's variables each in its own right, as where the runner cuts
    a chunk: an LSTM's ``c`` gets the gradient of what the next tick does with it, not also the one
    that reaches it through this tick's ``h = o · tanh(c)``; a clone at the boundary says so."""
    start = model.initial_state(BATCH) if state is None else state
    current = tuple(s.clone().requires_grad_(True) for s in start)
    boundaries, outputs = [current], []
    for tick, x in enumerate(batch.inputs):
        y, current = model.tick(x, current)
        outputs.append(y)
        if (tick + 1) % T == 0 and tick + 1 < len(batch.inputs):
            current = tuple(t.clone() for t in current)
            boundaries.append(current)
    outputs, grads = torch.stack(outputs), []
    for i, boundary in enumerate(boundaries):
        rest = slice(i * T, None)
        future = TASK.loss(outputs[rest], batch.targets[rest], batch.mask[rest])
        grads.append(flatten_state(torch.autograd.grad(future, boundary, retain_graph=True)))
    return grads


def runner(core="lstm", lr=0.0, synthesizer=None, method="dni"):
    torch.manual_seed(0)
    model = RecurrentNet(TASK.input_size, 8, TASK.output_size, core)
    if synthesizer is None and get_method(method, "recurrent").synthetic_gradients:
        synthesizer = StateSynthesizer(model.state_sizes)
        nn.init.normal_(synthesizer.net.net[-1].weight, std=0.1)
    synth_optimizer = None if synthesizer is None or not list(synthesizer.parameters()) else \
        torch.optim.SGD(synthesizer.parameters(), lr=0.1)
    return RecurrentRunner(model, get_method(method, "recurrent"), torch.optim.Adam(model.parameters(), lr=lr),
                           synthesizer, synth_optimizer, truncation=T, synth_scale=1.0, clip=None)


@pytest.mark.parametrize("core", ["lstm", "gru"])
@pytest.mark.parametrize("method", ["dni", "nobprop"])
def test_with_frozen_weights_the_true_gradient_is_full_bptt_at_every_boundary(core, method):
    run = runner(core, method=method)
    probe = RecurrentProbe(run, TASK.loss)
    for step, batch in enumerate(sequences()):
        expected = full_bptt(run.model, batch)
        run.train_sequence(batch.inputs, batch.targets, batch.mask, TASK.loss, observer=probe)
        probe.finish(step)
        assert sorted(probe.last) == [(i, 0) for i in range(len(expected))]
        for i, grad in enumerate(expected):
            torch.testing.assert_close(probe.last[(i, 0)]["true"], grad, rtol=1e-5, atol=1e-9)


def test_while_learning_the_first_boundary_is_full_bptt_and_a_carried_state_counts():
    run = runner(lr=0.05)
    probe = RecurrentProbe(run, TASK.loss)
    state = tuple(0.5 * torch.ones(BATCH, 8) for _ in range(2))
    for step, batch in enumerate(sequences()):
        expected = full_bptt(run.model, batch, state)[0]
        result = run.train_sequence(batch.inputs, batch.targets, batch.mask, TASK.loss, state=state, ends=False,
                                    observer=probe)
        rows = probe.finish(step)
        torch.testing.assert_close(probe.last[(0, 0)]["true"], expected, rtol=1e-5, atol=1e-9)
        assert all(row["interface"] < result.chunks for row in rows)  # a stream's window end has no future in the window
        state = result.end_state


class StateOracle(nn.Module):
    """``M(s)``: the true per-sequence gradient of the loss of the ticks after ``s``, with the network as it is now.

    Where ``s`` sits in the sequence is set by :class:`Where` before each S and T.
    """

    def __init__(self, model):
        super().__init__()
        self.model = [model]  # a plain list: not this module's parameters
        self.batch, self.offset = None, 0

    def forward(self, state, context=None):
        model, rest = self.model[0], slice(self.offset, None)
        leaf = flatten_state(state).detach().requires_grad_(True)
        with torch.enable_grad():
            out = model(self.batch.inputs[rest], split_state(leaf, model.state_sizes)).outputs
            (grad,) = torch.autograd.grad(TASK.loss(out, self.batch.targets[rest], self.batch.mask[rest]), leaf)
        return split_state(BATCH * grad, model.state_sizes)

    def forward_flat(self, state):
        return flatten_state(self.forward(state))


class Where(Observer):
    """Tells the oracle the tick of the boundary an S or T is about; keeps each chunk's rest of the sequence."""

    wants_tensors = True

    def __init__(self, oracle):
        self.oracle, self.seen = oracle, {}

    def op(self, action):
        self.oracle.offset = action.stage * T
        return super().op(action)

    def tensors(self, action, tensors):
        if action.op == "F":
            self.seen[action.stage] = tensors


def test_with_an_oracle_the_probe_reports_perfect_fidelity_at_every_boundary_while_the_weights_move():
    run = runner(lr=0.05, synthesizer=nn.Module())
    oracle = run.synthesizer = StateOracle(run.model)
    probe, where = RecurrentProbe(run, TASK.loss), Where(oracle)
    for step, batch in enumerate(sequences(length=4)):
        oracle.batch = batch
        run.train_sequence(batch.inputs, batch.targets, batch.mask, TASK.loss, observer=Observers(where, probe))
        metrics = {(r["interface"], r["metric"]): r["value"] for r in probe.finish(step)}
        boundaries = sorted(i for i, _ in probe.last if i > 0)
        assert boundaries == [1, 2, 3, 4]  # 9 ticks: 5 chunks, the last one's future is empty
        for i in boundaries:
            assert metrics[i, "synthetic_cosine"] == pytest.approx(1, abs=1e-6), (step, i)
            assert metrics[i, "synthetic_rel_error"] < 1e-5 and metrics[i, "update_cosine"] == pytest.approx(1, abs=1e-6)
        # The weights did move within the sequence: the gradient with the weights after it is another one.
        rest = where.seen[1]
        after = probe.future_gradient(shadow.current(run.model), rest["h"], rest["rest_inputs"], rest["rest_targets"],
                                      rest["rest_mask"])
        assert float((after - probe.last[(1, 0)]["synthetic"]).norm() / after.norm()) > 1e-3
