"""The DNI core against its definitions: oracle equals backprop, zero init, bootstrapped targets."""

import copy

import pytest
import torch
from torch import nn

from sglab.dni.interface import Interface
from sglab.dni.synthesizers import ConvSynthesizer, InputSynthesizer, make_synthesizer
from sglab.exec.chain import ChainRunner
from sglab.methods import get_method
from sglab.models.chains import cnn, fcn


def batch(n=16, shape=(1, 8, 8), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, *shape, generator=g), torch.randint(0, 10, (n,), generator=g)


def true_output_gradients(stages, x, y):
    """δ_i = ∂L/∂h_i for every stage output, by plain autograd on the whole chain."""
    outputs, h = [], x
    for stage in stages:
        h = stage(h)
        h.retain_grad()
        outputs.append(h)
    nn.functional.cross_entropy(h, y).backward()
    stages.zero_grad()
    return [o.grad.detach().clone() for o in outputs]


class Oracle(nn.Module):
    """A synthesizer that returns the true gradient it was handed."""

    def __init__(self, gradient):
        super().__init__()
        self.gradient = gradient
        self.bias = nn.Parameter(torch.zeros(()))  # so T has something to step

    def forward(self, h, context=None):
        return self.gradient + 0 * self.bias


def adam(stages):
    return [torch.optim.Adam(s.parameters(), lr=1e-2) for s in stages]


@pytest.mark.parametrize("make", [lambda: fcn((1, 8, 8), 10, 4, 32), lambda: cnn((1, 8, 8), 10, 3, 8)])
def test_oracle_synthesizer_makes_dni_update_equal_backprop(make):
    torch.manual_seed(0)
    stages = make()
    x, y = batch()
    deltas = true_output_gradients(copy.deepcopy(stages), x, y)

    bprop_stages = copy.deepcopy(stages)
    ChainRunner(bprop_stages, get_method("bprop"), adam(bprop_stages)).step(x, y)

    dni_stages = copy.deepcopy(stages)
    interfaces = []
    for delta in deltas[:-1]:
        oracle = Oracle(delta)
        interfaces.append(Interface(oracle, torch.optim.SGD(oracle.parameters(), lr=0.1)))
    ChainRunner(dni_stages, get_method("dni"), adam(dni_stages), interfaces).step(x, y)

    for a, b in zip(bprop_stages.parameters(), dni_stages.parameters()):
        assert torch.equal(a, b)  # bitwise: same ops in the same order
    moved = any(not torch.equal(a, b) for a, b in zip(stages.parameters(), dni_stages.parameters()))
    assert moved, "the step must have changed the parameters"


@pytest.mark.parametrize(
    "synth",
    [
        make_synthesizer("linear", (32,)),
        make_synthesizer("mlp", (32,), hidden_layers=2, width=16, context_dim=10),
        ConvSynthesizer(8, hidden_layers=2, hidden_channels=4, context_dim=10),
    ],
)
def test_zero_initialised_synthesizers_give_exactly_zero_first_gradient(synth):
    shape = (5, 8, 4, 4) if isinstance(synth, ConvSynthesizer) else (5, 32)
    context = torch.eye(10)[:5] if getattr(synth, "context_dim", 10) else None
    out = synth(torch.randn(shape), context)
    assert out.shape == shape
    assert torch.count_nonzero(out) == 0


def test_bootstrapped_target_is_next_synthetic_gradient_backpropagated_through_next_stage():
    torch.manual_seed(1)
    stages = fcn((1, 8, 8), 10, 3, 16)
    interfaces = []
    for _ in range(2):
        synth = make_synthesizer("linear", (16,))
        nn.init.normal_(synth.net[-1].weight)  # non-zero, so the target is non-trivial
        interfaces.append(Interface(synth, torch.optim.SGD(synth.parameters(), lr=0.0)))
    runner = ChainRunner(stages, get_method("dni"), [torch.optim.SGD(s.parameters(), lr=0.0) for s in stages], interfaces)
    reference = copy.deepcopy(stages)
    x, y = batch()
    targets = {}
    original = runner._T

    def spy(i, state):
        targets[i] = state.inputs[i + 1].grad.clone()
        original(i, state)

    runner._T = spy
    runner.step(x, y)

    h0 = reference[0](x).detach()
    h0.requires_grad_(True)
    h1 = reference[1](h0)
    delta1_hat = interfaces[1].synthesizer(h1.detach())
    (expected,) = torch.autograd.grad(h1, h0, grad_outputs=delta1_hat.detach())
    torch.testing.assert_close(targets[0], expected)
    # the last interface's target is the true loss gradient w.r.t. h1
    h1_leaf = h1.detach().requires_grad_(True)
    (true_delta,) = torch.autograd.grad(nn.functional.cross_entropy(reference[2](h1_leaf), y), h1_leaf)
    torch.testing.assert_close(targets[1], true_delta)


def test_cdni_synthetic_gradient_depends_on_the_label():
    torch.manual_seed(2)
    synth = make_synthesizer("mlp", (16,), hidden_layers=1, width=8, context_dim=10)
    nn.init.normal_(synth.net[-1].weight)
    synth.eval()
    h = torch.randn(4, 16)
    a = synth(h, torch.eye(10)[[0, 1, 2, 3]])
    b = synth(h, torch.eye(10)[[4, 5, 6, 7]])
    assert not torch.allclose(a, b)
    conv = ConvSynthesizer(4, hidden_layers=1, hidden_channels=4, context_dim=10)
    nn.init.normal_(conv.net[-1].weight)
    conv.eval()
    maps = torch.randn(2, 4, 3, 3)
    assert not torch.allclose(conv(maps, torch.eye(10)[[0, 1]]), conv(maps, torch.eye(10)[[2, 3]]))


def test_input_synthesizer_predicts_target_shape():
    assert InputSynthesizer((1, 8, 8), (16,), 1, 8)(torch.rand(3, 1, 8, 8)).shape == (3, 16)
    assert InputSynthesizer((1, 8, 8), (4, 4, 4), 1, 8)(torch.rand(3, 1, 8, 8)).shape == (3, 4, 4, 4)


def test_bad_synthesizer_kind_is_rejected_clearly():
    with pytest.raises(ValueError, match="unknown synthesizer kind 'rnn'"):
        make_synthesizer("rnn", (3,))
    with pytest.raises(ValueError, match=r"conv synthesizer needs \(C, H, W\)"):
        make_synthesizer("conv", (3,))
