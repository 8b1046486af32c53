"""The chain's probe against gradients known independently: an oracle synthesizer, backprop's own."""

import copy

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from sglab.dni.interface import Interface
from sglab.exec.chain import ChainRunner
from sglab.exec.observe import Observer, Observers
from sglab.methods import get_method
from sglab.models.chains import cnn, fcn
from sglab.probes import ChainProbe, shadow


class Oracle(nn.Module):
    """A cDNI synthesizer whose output is the true gradient: the labels read off its context, the
    stages above as they are when it is called (its own shadow pass, not the probe's)."""

    def __init__(self, stages, i):
        super().__init__()
        self.above = list(stages)[i + 1:]  # a plain list: not this module's parameters

    def forward(self, h, context):
        leaf = h.detach().requires_grad_(True)
        with torch.enable_grad():
            out = leaf
            for stage in self.above:
                weights = {**dict(stage.named_parameters()), **{n: b.clone() for n, b in stage.named_buffers()}}
                out = functional_call(stage, weights, (out,))
            (grad,) = torch.autograd.grad(F.cross_entropy(out, context.argmax(1)), leaf)
        return grad


def batches(n=3, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(size, 1, 8, 8, generator=g), torch.randint(0, 10, (size,), generator=g)) for _ in range(n)]


def oracle_runner(stages, lr=0.05):
    interfaces = [Interface(Oracle(stages, i)) for i in range(len(stages) - 1)]
    optimizers = [torch.optim.Adam(s.parameters(), lr=lr) for s in stages]
    return ChainRunner(stages, get_method("cdni"), optimizers, interfaces)


@pytest.mark.parametrize("make", [lambda: fcn((1, 8, 8), 10, 4, 32), lambda: cnn((1, 8, 8), 10, 3, 4)], ids=["fcn", "cnn"])
def test_with_an_oracle_the_probe_reports_perfect_fidelity_at_every_interface(make):
    torch.manual_seed(0)
    runner = oracle_runner(make())
    probe = ChainProbe(runner)
    for step, (x, y) in enumerate(batches()):
        runner.step(x, y, probe)
        metrics = {(r["interface"], r["metric"]): r["value"] for r in probe.finish(step)}
        for i in range(len(runner.stages) - 1):
            for quantity in ("synthetic", "target", "update"):
                assert metrics[i, f"{quantity}_cosine"] == pytest.approx(1, abs=1e-6), (step, i, quantity)
                assert metrics[i, f"{quantity}_rel_error"] < 1e-5, (step, i, quantity)
            assert metrics[i, "synthetic_cosine_p10"] == pytest.approx(1, abs=1e-6)
            assert metrics[i, "synthetic_norm_ratio"] == pytest.approx(1, abs=1e-5)


def test_the_oracle_test_fails_for_a_probe_that_uses_the_weights_after_the_step():
    torch.manual_seed(0)
    runner = oracle_runner(fcn((1, 8, 8), 10, 4, 32))
    probe = ChainProbe(runner)
    (x, y), = batches(1)
    runner.step(x, y, probe)
    probe._weights = [shadow.frozen(stage) for stage in runner.stages]  # the wrong time: the step has updated them
    metrics = {(r["interface"], r["metric"]): r["value"] for r in probe.finish(0)}
    assert all(metrics[i, "synthetic_rel_error"] > 1e-3 for i in range(2)), metrics


class Spy(Observer):
    """Reads, after each B, the gradient the stage received and the gradient of its parameters."""

    wants_tensors = True

    def __init__(self, stages):
        self.stages, self.received, self.grads = stages, {}, {}

    def tensors(self, action, tensors):
        if action.op == "B":
            self.received[action.stage] = tensors.get("output_gradient")
            self.grads[action.stage] = torch.cat([p.grad.reshape(-1) for p in self.stages[action.stage].parameters()])


@pytest.mark.parametrize("method", ["bprop", "dni", "unlocked"])
def test_the_true_gradient_and_the_updates_are_those_the_real_backward_computes(method):
    torch.manual_seed(1)
    stages = fcn((1, 8, 8), 10, 3, 16)
    interfaces = []
    if method != "bprop":
        from sglab.training.build import build_interfaces
        from sglab.training.config import ClassifyConfig

        config = ClassifyConfig(method=method, layers=3, width=16, synth_width=16, device="cpu")
        interfaces = build_interfaces(config, get_method(method), stages, (1, 8, 8), 10)
        for interface in interfaces:
            nn.init.normal_(interface.synthesizer.net[-1].weight, std=0.1)  # a non-zero δ̂ from the start
    runner = ChainRunner(stages, get_method(method), [torch.optim.Adam(s.parameters(), lr=1e-2) for s in stages], interfaces)
    probe, spy = ChainProbe(runner), Spy(stages)
    for step, (x, y) in enumerate(batches(2)):
        runner.step(x, y, Observers(spy, probe))
        rows = probe.finish(step)
        for i in range(2):
            record = probe.last[(i, 0)]
            if method == "bprop":  # the shadow pass gives the gradient backprop sent, and its update
                torch.testing.assert_close(record["true"], spy.received[i], rtol=1e-5, atol=1e-8)
                update = record["update_bprop"]
            else:  # δ̂ is what B injected, and J^T δ̂ the gradient the stage was updated with
                assert torch.equal(record["synthetic"], spy.received[i])
                update = record["update_dni"]
            torch.testing.assert_close(update, spy.grads[i], rtol=1e-5, atol=1e-7)
    if method == "bprop":  # nothing synthetic to compare: the scales DNI is read against
        assert {r["metric"] for r in rows} == {"true_norm", "update_norm"}


def test_the_probe_changes_nothing_the_runner_computes():
    torch.manual_seed(2)
    plain = oracle_runner(cnn((1, 8, 8), 10, 3, 4))
    watched = copy.deepcopy(plain)
    assert watched.interfaces[0].synthesizer.above[0] is watched.stages[1]  # each oracle reads its own copy
    probe = ChainProbe(watched)
    for step, (x, y) in enumerate(batches()):
        assert plain.step(x, y).loss == watched.step(x, y, probe).loss
        probe.finish(step)
    for a, b in zip(plain.stages.state_dict().values(), watched.stages.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(plain.optimizers, watched.optimizers):
        assert all(torch.equal(u, v) for s, t in zip(a.state.values(), b.state.values()) for u, v in zip(s.values(), t.values()))
