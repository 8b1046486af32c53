"""The step-time benchmark's hand-written loops do what sglab's step does, and ``fused_adam`` is fused Adam."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import pandas as pd
import pytest
import torch

from sglab.training.build import build_chain
from sglab.training.config import ClassifyConfig

SPEC = importlib.util.spec_from_file_location("step_time", Path(__file__).parents[1] / "benchmarks" / "step_time.py")
step_time = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(step_time)


def _batch():
    generator = torch.Generator().manual_seed(3)
    return torch.rand(16, 1, 8, 8, generator=generator), torch.randint(0, 10, (16,), generator=generator)


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("method", ["bprop", "dni"])
def test_the_plain_loop_makes_sglab_steps_weights(method, fused):
    x, y = _batch()
    config = ClassifyConfig(method=method, layers=3, width=12, synth_width=20, batch_size=16, fused_adam=fused)
    runner = build_chain(config, (1, 8, 8), 10)
    stages = copy.deepcopy(runner.stages)
    optimizers = [step_time.adam(s.parameters(), config.lr, fused) for s in stages]
    synths = [copy.deepcopy(i.synthesizer) for i in runner.interfaces]
    synth_optimizers = [step_time.adam(s.parameters(), config.lr, fused) for s in synths]
    for _ in range(3):
        runner.step(x, y)
        if method == "bprop":
            step_time.plain_bprop_step(stages, optimizers, x, y)
        else:
            step_time.plain_dni_step(stages, optimizers, synths, synth_optimizers, x, y)
    for mine, theirs in ((runner.stages, stages), ([i.synthesizer for i in runner.interfaces], synths)):
        for a, b in zip(mine, theirs, strict=True):
            for p, q in zip(a.parameters(), b.parameters(), strict=True):
                torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    assert any(not torch.equal(p, q) for p, q in zip(runner.stages[0].parameters(),
                                                        build_chain(config, (1, 8, 8), 10).stages[0].parameters()))


def test_fused_adam_config_builds_fused_optimizers():
    runner = build_chain(ClassifyConfig(method="dni", layers=2, width=8, synth_width=8, fused_adam=True), (1, 4, 4), 10)
    optimizers = runner.optimizers + [i.synthesizer_optimizer for i in runner.interfaces]
    assert all(o.defaults["fused"] for o in optimizers)
    plain = build_chain(ClassifyConfig(method="dni", layers=2, width=8, synth_width=8), (1, 4, 4), 10)
    assert not any(o.defaults.get("fused") for o in plain.optimizers)


def test_matmuls_count_every_product_of_a_dni_step():
    config = ClassifyConfig(method="dni", layers=3, width=12, synth_width=20, synth_hidden_layers=1)
    runner = build_chain(config, (1, 8, 8), 10)
    shapes = step_time.matmuls(runner, torch.zeros(16, 1, 8, 8))
    # stages: 64→12 (no input gradient), 12→12, 12→10; synthesizers 12→20→12 twice (first layer: no input gradient)
    assert shapes == [(16, 64, 12, 2), (16, 12, 12, 3), (16, 12, 10, 3),
                      (16, 12, 20, 2), (16, 20, 12, 3), (16, 12, 20, 2), (16, 20, 12, 3)]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_the_benchmark_times_compiled_settings_beside_the_eager_ones(tmp_path, monkeypatch):
    monkeypatch.setitem(step_time.MODELS, "tiny", dict(model="fcn", layers=2, width=8, synth_width=8))
    assert step_time.main(["--out", str(tmp_path), "--models", "tiny", "--rounds", "2", "--steps", "1",
                           "--warmup", "1", "--compile", "default"]) == 0
    rows = pd.read_csv(tmp_path / "step_time.csv")
    assert sorted(set(rows["optimizer"])) == ["adam", "adam+compile-default", "adam-fused"]
    assert (rows["sglab_step_ms"] > 0).all() and len(rows) == 6
