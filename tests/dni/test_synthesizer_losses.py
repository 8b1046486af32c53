"""The synthesizer objectives against their definitions: oracles score exactly zero, targets are derivatives.

The oracle problem is linear-quadratic with small integers and a batch of 4, so every number
in it is exact in floating point: ``ℓ_b = ½ h_bᵀQh_b + qᵀh_b``, ``L = mean_b ℓ_b``, the true
gradient ``δ = (hQ + q)/B`` and its derivative along ``v`` is ``vQ/B``.
"""

import copy

import pytest
import torch
from torch import nn

from sglab.dni import losses, targets
from sglab.dni.synthesizers import CriticSynthesizer, make_critic, make_synthesizer
from sglab.exec.chain import classification
from sglab.models.chains import fcn

Q = torch.tensor([[2.0, 1.0, 0.0], [1.0, 3.0, -1.0], [0.0, -1.0, 1.0]])
q = torch.tensor([1.0, -2.0, 0.0])
H = torch.tensor([[1.0, 0.0, 2.0], [-1.0, 1.0, 1.0], [0.0, 2.0, -1.0], [3.0, -2.0, 0.0]])
B = H.shape[0]


def sample_losses(h):
    return 0.5 * ((h @ Q) * h).sum(1) + h @ q


def quadratic(out, y):
    """A criterion whose per-sample losses are ``ℓ_b`` (``y`` is unused)."""
    return sample_losses(out).mean(), torch.zeros(())


def true_gradient(h):
    leaf = h.clone().requires_grad_(True)
    return torch.autograd.grad(quadratic(leaf, None)[0], leaf)[0]


def direct_oracle(extra=None):
    """The linear synthesizer set to ``δ(h) = (hQ + q)/B`` (plus ``extra`` on its weight)."""
    synth = make_synthesizer("linear", (3,))
    with torch.no_grad():
        synth.net[-1].weight.copy_(Q / B + (0 if extra is None else extra))
        synth.net[-1].bias.copy_(q / B)
    return synth


class ShiftedOracle(nn.Module):
    """Equals the oracle at the batch ``H`` but has another Jacobian: only the Sobolev term sees it."""

    def __init__(self):
        super().__init__()
        self.oracle, self.tilt = direct_oracle(), torch.eye(3)

    def forward(self, h, context=None):
        return self.oracle(h) + (h - H) @ self.tilt


def quadratic_critic(offset=0.0, extra=None):
    """The quadratic critic set to each sample's share of the loss, ``L̂ = ℓ/B`` (+ ``offset``; ``extra`` on its Hessian)."""
    critic = make_critic("linear", (3,))
    with torch.no_grad():
        critic.hessian.net[-1].weight.copy_(Q / B + (0 if extra is None else extra))
        critic.hessian.net[-1].bias.copy_(2 * q / B)
        critic.offset.fill_(offset)
    return critic


def sobolev_of(synth, directions):
    leaf = H.clone().requires_grad_(True)
    prediction = synth(leaf)
    made = losses.jacobian_vectors(prediction, leaf, directions, create_graph=True)
    wanted = targets.target_jvps(H, [], targets.close_with_loss(quadratic, None), directions)
    l2 = losses.l2_loss(prediction, true_gradient(H))
    return float(l2.detach()), float(losses.sobolev_loss(prediction, true_gradient(H), made, wanted, 1.0).detach())


def test_the_problem_is_exact():
    assert torch.equal(true_gradient(H), (H @ Q + q) / B)
    v = losses.random_directions(H, 1, "rademacher", torch.Generator().manual_seed(0))[0]
    wanted = targets.target_jvps(H, [], targets.close_with_loss(quadratic, None), [v])[0]
    assert torch.equal(wanted, v @ Q / B)  # the Hessian-vector product of the loss


def test_l2_and_sobolev_losses_are_zero_for_the_oracle_and_positive_otherwise():
    directions = losses.random_directions(H, 3, "rademacher", torch.Generator().manual_seed(0))
    l2, sobolev = sobolev_of(direct_oracle(), directions)
    assert l2 == 0.0 and sobolev == 0.0
    l2, sobolev = sobolev_of(ShiftedOracle(), directions)
    assert l2 == 0.0 and sobolev > 0.1  # same values at the batch, wrong derivatives
    l2, sobolev = sobolev_of(direct_oracle(extra=torch.eye(3) / 8), directions)
    assert 0 < l2 < sobolev


def critic_score(critic):
    value, gradient = critic.value_and_gradient(H)
    return float(losses.critic_loss(gradient, true_gradient(H), value, sample_losses(H) / B, 1.0).detach()), value, gradient


def test_critic_loss_is_zero_for_the_true_loss_and_positive_otherwise():
    loss, value, gradient = critic_score(quadratic_critic())
    assert torch.equal(value, sample_losses(H) / B) and torch.equal(gradient, true_gradient(H))
    assert loss == 0.0
    loss, _, gradient = critic_score(quadratic_critic(offset=1.0))
    assert torch.equal(gradient, true_gradient(H)) and loss > 0  # right gradient, wrong value
    assert critic_score(quadratic_critic(extra=torch.eye(3)))[0] > 0


def test_critic_value_target_uses_per_sample_losses():
    out, y = torch.randn(6, 10), torch.randint(0, 10, (6,))
    per_sample = targets.per_sample_loss(classification, out, y)
    torch.testing.assert_close(per_sample, nn.functional.cross_entropy(out, y, reduction="none"))
    torch.testing.assert_close(per_sample.mean(), classification(out, y)[0])


@pytest.mark.parametrize("kind, shape, context", [("linear", (6,), 0), ("mlp", (6,), 4), ("mlp", (6,), 0),
                                                  ("conv", (3, 4, 4), 4), ("linear", (3, 4, 4), 0)])
def test_critic_synthetic_gradient_is_autograds_gradient_of_its_loss_estimate(kind, shape, context):
    torch.manual_seed(0)
    critic = make_critic(kind, shape, hidden_layers=2, width=8, context_dim=context)
    for p in critic.parameters():
        nn.init.normal_(p)  # away from zero, so the gradient is non-trivial
    critic.eval()  # one forward per call below: running statistics stay put
    h = torch.randn(5, *shape, requires_grad=True)
    c = torch.eye(4)[[0, 1, 2, 3, 0]] if context else None
    expected = torch.autograd.grad(critic.value(h, c).sum(), h)[0]  # L̂ is each sample's share: the batch's is the sum
    value, gradient = critic.value_and_gradient(h.detach(), c)
    assert value.shape == (5,) and gradient.shape == h.shape
    torch.testing.assert_close(gradient, expected)
    assert torch.count_nonzero(expected) > 0
    torch.testing.assert_close(critic(h.detach(), c), expected)


@pytest.mark.parametrize("kind, shape", [("linear", (6,)), ("mlp", (6,)), ("conv", (3, 4, 4))])
def test_critics_start_with_an_exactly_zero_synthetic_gradient(kind, shape):
    for context in (0, 10):
        critic = make_critic(kind, shape, hidden_layers=2, width=8, context_dim=context)
        assert isinstance(critic, CriticSynthesizer) and critic.quadratic == (kind == "linear")
        value, gradient = critic.value_and_gradient(torch.randn(4, *shape), torch.eye(10)[:4] if context else None)
        assert torch.count_nonzero(gradient) == 0 and torch.count_nonzero(value) == 0


def test_directions_are_seeded_and_of_their_distribution():
    like = torch.zeros(5, 7)
    a = losses.random_directions(like, 2, "rademacher", torch.Generator().manual_seed(3))
    b = losses.random_directions(like, 2, "rademacher", torch.Generator().manual_seed(3))
    assert all(torch.equal(x, y) for x, y in zip(a, b)) and not torch.equal(a[0], a[1])
    assert set(torch.cat(a).unique().tolist()) == {-1.0, 1.0}
    g = losses.random_directions(torch.zeros(4000), 1, "gaussian", torch.Generator().manual_seed(0))[0]
    assert abs(float(g.mean())) < 0.1 and abs(float(g.std()) - 1) < 0.1
    with pytest.raises(ValueError, match="unknown direction distribution 'uniform'"):
        losses.random_directions(like, 1, "uniform", torch.Generator())


def fd_target(h, v, stages, close, eps=1e-6):
    """(δ(h + εv) − δ(h − εv)) / 2ε on deep copies: the definition of J_δ v."""
    def delta(point):
        leaf = point.clone().requires_grad_(True)
        out = leaf
        for stage in copy.deepcopy(stages):
            out = stage(out)
        root, grad = close(out)
        return torch.autograd.grad(root, leaf, grad)[0]
    return (delta(h + eps * v) - delta(h - eps * v)) / (2 * eps)


def snapshot(*modules):
    return [t.clone() for m in modules for t in list(m.parameters()) + list(m.buffers())]


@pytest.mark.parametrize("closing", ["loss", "synthesizer"])
def test_target_directional_derivatives_match_finite_differences_and_touch_nothing(closing):
    torch.manual_seed(0)
    stages = nn.ModuleList([fcn((6,), 10, 3, 8)[1], fcn((6,), 10, 3, 8)[2]]).double()  # BN+ReLU stage, classifier
    synth = make_synthesizer("mlp", (8,), hidden_layers=1, width=8).double()
    nn.init.normal_(synth.net[-1].weight)
    h, y = torch.randn(6, 8, dtype=torch.float64), torch.randint(0, 10, (6,))
    if closing == "loss":
        path, close = stages, targets.close_with_loss(classification, y)
    else:
        path, close = stages[:1], targets.close_with_synthesizer(synth, None)
    before = snapshot(stages, synth)
    directions = losses.random_directions(h, 2, "gaussian", torch.Generator().manual_seed(1))
    for v, got in zip(directions, targets.target_jvps(h, path, close, directions)):
        torch.testing.assert_close(got, fd_target(h, v, path, close), rtol=1e-5, atol=1e-8)
    assert all(torch.equal(a, b) for a, b in zip(before, snapshot(stages, synth)))  # running stats included
    assert all(p.grad is None for p in list(stages.parameters()) + list(synth.parameters()))


def test_objective_is_checked():
    with pytest.raises(ValueError, match="unknown synthesizer loss 'l1'"):
        losses.SynthObjective("l1")
    with pytest.raises(ValueError, match="directions >= 1"):
        losses.SynthObjective("sobolev", directions=0)
