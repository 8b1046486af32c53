"""Training on a GPU: the same step as on the CPU, eager and compiled (skipped without CUDA)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from sglab.training.build import build_chain
from sglab.training.config import ClassifyConfig

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _batch(device: str):
    generator = torch.Generator().manual_seed(0)
    x, y = torch.rand(32, 1, 8, 8, generator=generator), torch.randint(0, 10, (32,), generator=generator)
    return x.to(device), y.to(device)


def _losses(config: ClassifyConfig, steps: int = 3) -> list[float]:
    runner = build_chain(config, (1, 8, 8), 10, config.device)
    x, y = _batch(config.device)
    return [runner.step(x, y).loss for _ in range(steps)]


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("method", ["bprop", "dni", "cdni"])
def test_a_cuda_chain_takes_the_cpu_chains_steps(method):
    config = ClassifyConfig(method=method, layers=3, width=16, synth_width=16, batch_size=32, device="cpu")
    cpu = _losses(config)
    cuda = _losses(replace(config, device="cuda"))
    assert cuda == pytest.approx(cpu, rel=1e-4)


@pytest.mark.cuda
@needs_cuda
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_compiled_cuda_chains_take_the_eager_steps(mode):
    config = ClassifyConfig(method="dni", layers=3, width=16, synth_width=16, batch_size=32, device="cuda")
    eager = _losses(config, steps=5)
    compiled = _losses(replace(config, compile=mode), steps=5)
    assert compiled == pytest.approx(eager, rel=1e-4)
