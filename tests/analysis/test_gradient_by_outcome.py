"""analysis.gradient_by_outcome: per-example true vs synthetic gradients, split by whether the example is right."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from analysis.gradient_by_outcome import agreement_by_outcome
from sglab.training.build import build_chain
from sglab.training.config import ClassifyConfig


class OracleSynthesizer(nn.Module):
    """Returns the true per-example gradient at its interface, from the stages above and the label in the context."""

    def __init__(self, stages_above: nn.ModuleList):
        super().__init__()
        self.stages_above = stages_above

    def forward(self, h: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            h = h.detach().requires_grad_()
            out = h
            for stage in self.stages_above:
                out = stage(out)
            return torch.autograd.grad(F.cross_entropy(out, context.argmax(1), reduction="sum"), h)[0]


def chain(method: str):
    torch.manual_seed(0)
    runner = build_chain(ClassifyConfig(method=method, layers=4), (12,), 3)
    x, y = torch.randn(300, 12), torch.randint(0, 3, (300,))
    return runner, x, y


def test_an_oracle_synthesizer_agrees_on_right_and_wrong_examples_alike():
    runner, x, y = chain("cdni")
    for i, interface in enumerate(runner.interfaces):
        interface.synthesizer = OracleSynthesizer(runner.stages[i + 1:])
    table = agreement_by_outcome(runner, x, y, batch_size=128)
    assert sorted(set(table["outcome"])) == ["right", "wrong"] and list(table["interface"].unique()) == [0, 1, 2]
    assert (table.groupby("interface")["examples"].sum() == 300).all()
    assert torch.allclose(torch.tensor(table["cosine_mean"].values), torch.ones(len(table), dtype=torch.float64))
    assert torch.allclose(torch.tensor(table["synthetic_norm2_share"].values),
                          torch.tensor(table["true_norm2_share"].values), atol=1e-5)


def test_a_fresh_dni_synthesizer_predicts_nothing_and_the_modules_return_to_training_mode():
    runner, x, y = chain("dni")
    table = agreement_by_outcome(runner, x, y)
    assert torch.allclose(torch.tensor(table.groupby("interface")["true_norm2_share"].sum().values),
                          torch.ones(3, dtype=torch.float64))
    assert table["cosine_mean"].isna().all()  # its zero-initialised output has no direction
    assert all(m.training for m in runner.stages) and all(i.synthesizer.training for i in runner.interfaces)
