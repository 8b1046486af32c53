"""The backward split ``B = I + W`` timed per stage, for zero-bubble schedules' costs.

I is ``autograd.grad`` of a stage's output with respect to its input only, W with respect to its
parameters only, both through the exec ops that split backward (:mod:`sglab.exec.ops`), each
timed in isolation with ``torch.utils.benchmark`` on one retained forward graph of a fixed batch.
Both profilers use it: the micro-benchmark after its steps, the in-run profiler after training
(with a fresh copy of the model: an op's cost depends on shapes, not on the weights' values).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils import benchmark

from sglab.exec import ops

if TYPE_CHECKING:
    from sglab.exec.chain import ChainRunner


def fixed_batch(dataset, input_shape, num_classes, batch_size, device, seed) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``batch_size`` training examples (cycled if fewer), or a seeded random batch."""
    if dataset is not None:
        index = np.arange(batch_size) % len(dataset.x_train)
        x = torch.from_numpy(np.ascontiguousarray(dataset.x_train[index]))
        y = torch.from_numpy(np.ascontiguousarray(dataset.y_train[index])).long()
    else:
        generator = torch.Generator().manual_seed(seed)
        x = torch.rand(batch_size, *input_shape, generator=generator)
        y = torch.randint(0, num_classes, (batch_size,), generator=generator)
    return x.to(device), y.to(device)



def time_split_backward(runner: ChainRunner, x, y, repeats: int, warmup: int, clock=None) -> dict[tuple[int, str], list[int]]:
    """I and W per stage, each timed ``repeats`` times on one retained graph.

    ``clock`` (seconds) replaces torch.utils.benchmark's default timer on CPU, so I and W use the
    same clock as the other ops; on CUDA the default, which synchronises, is kept.
    """
    extra = {} if clock is None else {"timer": clock}
    samples: dict[tuple[int, str], list[int]] = {}
    last = runner.num_stages - 1
    with torch.no_grad():
        inputs = [x]
        for stage in runner.stages[:-1]:
            inputs.append(stage(inputs[-1]))
    for i, stage in enumerate(runner.stages):
        inp = inputs[i].detach().clone().requires_grad_(True)
        out = stage(inp)
        grad = None
        if i == last:
            out = F.cross_entropy(out, y)
        else:  # the incoming gradient's values do not change the cost; its shape does
            grad = torch.randn_like(out)
        params = [p for p in stage.parameters() if p.requires_grad]
        grads = None if grad is None else [grad]
        scope = {"ops": ops, "out": [out], "inp": [inp], "params": params, "grads": grads}
        timers = {  # the exec ops themselves; every repeat reuses the one forward graph (they retain it)
            "I": benchmark.Timer("ops.backward_input(out, grads, inp)", globals=scope,
                                 num_threads=torch.get_num_threads(), **extra),
            "W": benchmark.Timer("ops.backward_weight(out, grads, params)", globals=scope,
                                 num_threads=torch.get_num_threads(), **extra),
        }
        for t in timers.values():
            if warmup:
                t.timeit(warmup)
        for _ in range(repeats):  # alternate I and W so slow drift affects both alike
            for op, t in timers.items():
                samples.setdefault((i, op), []).append(int(round(t.timeit(1).median * 1e9)))
    return samples
