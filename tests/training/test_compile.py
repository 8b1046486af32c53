"""``ClassifyConfig.compile``: torch.compile'd stages and synthesizers train as the eager ones do."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from sglab.cli import main
from sglab.config import ConfigError
from sglab.training.build import build_chain
from sglab.training.config import ClassifyConfig

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_a_compiled_dni_chain_takes_the_eager_steps_and_keeps_its_checkpoint_keys():
    generator = torch.Generator().manual_seed(0)
    x, y = torch.rand(16, 1, 6, 6, generator=generator), torch.randint(0, 10, (16,), generator=generator)
    config = ClassifyConfig(method="dni", layers=3, width=12, synth_width=12, batch_size=16)
    eager = build_chain(config, (1, 6, 6), 10)
    compiled = build_chain(replace(config, compile="default"), (1, 6, 6), 10)
    assert all(stage._compiled_call_impl is not None for stage in compiled.stages)
    assert all(i.synthesizer._compiled_call_impl is not None for i in compiled.interfaces)
    for _ in range(3):
        a, b = eager.step(x, y), compiled.step(x, y)
        assert b.loss == pytest.approx(a.loss, rel=1e-5) and b.synth_loss == pytest.approx(a.synth_loss, rel=1e-4)
    for mine, theirs in ((eager.stages, compiled.stages), ([i.synthesizer for i in eager.interfaces],
                                                           [i.synthesizer for i in compiled.interfaces])):
        for p, q in zip(mine, theirs, strict=True):
            assert list(p.state_dict()) == list(q.state_dict())
            # Adam divides by the gradient's own size, so a weight whose gradient is rounding noise (a
            # Linear's bias before BatchNorm, a pixel that is nearly constant) steps by up to lr either
            # way: compiled and eager may differ by such steps, never by more than two of them.
            for (name, u), (_, v) in zip(p.state_dict().items(), q.state_dict().items(), strict=True):
                torch.testing.assert_close(u, v, rtol=0, atol=2 * config.lr, msg=lambda m, name=name: f"{name}: {m}")


def test_compile_is_refused_with_an_objective_that_calls_the_modules_functionally():
    with pytest.raises(ConfigError, match="'compile'.*synth_loss 'l2'"):
        ClassifyConfig(method="dni", compile="default", synth_loss="sobolev").validate()
    with pytest.raises(ConfigError, match="compile"):
        ClassifyConfig(compile="fastest").validate()


def test_sglab_train_compile_trains_and_records_the_mode(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--method", "bprop", "--layers", "2", "--width", "16", "--batch-size", "32", "--steps", "4",
                 "--eval-every", "4", "--limit-train", "128", "--compile", "default", "--out", str(out),
                 "--no-progress"]) == 0
    summary = (out / "summary.json").read_text()
    assert '"completed"' in summary and '"compile": "default"' in (out / "config.json").read_text()
